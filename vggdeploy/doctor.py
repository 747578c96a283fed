"""What this machine can run. Every probe is an import or a query: nothing is installed."""

from __future__ import annotations

import importlib.metadata as md


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def diagnose() -> list[tuple[str, str, str]]:
    """(component, ok/no, detail) rows: hardware and libraries, then what each verb can do here."""
    from .gpu import cuda_info, missing_for_tensorrt, tensorrt_mismatch, tensorrt_version
    from .backends import default_cpu_backend
    from .isa import cpu_isa
    from .layouts import CPU_DEFAULT

    rows = []
    info = cuda_info()
    gpus = ", ".join(f"{g.name} (sm {g.compute_capability})" for g in info.gpus)
    rows.append(("gpu", "ok" if info.available else "no", gpus or info.problem))
    rows.append(("cuda driver", "ok" if info.driver else "no", info.driver or "none"))
    isa = cpu_isa()
    rows.append(("cpu", "ok" if isa.u8s8_exact else "note", isa.describe()))
    import torch

    rows.append(("torch", "ok", f"{torch.__version__}; built for CUDA {torch.version.cuda or 'none'}; "
                              f"CUDA usable: {torch.cuda.is_available()}"))
    providers: list[str] = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        rows.append(("onnxruntime", "ok", f"{ort.__version__}; providers: {', '.join(providers)}"))
    except ImportError:
        rows.append(("onnxruntime", "no", "pip install onnxruntime (CPU) or onnxruntime-gpu, never both"))
    try:
        import openvino as ov

        rows.append(("openvino", "ok", f"{ov.get_version()}; devices: {', '.join(ov.Core().available_devices)}"))
    except ImportError:
        rows.append(("openvino", "no", "pip install openvino"))
    trt = tensorrt_version()
    rows.append(("tensorrt", "ok" if trt else "no", trt or "not installed (pip install 'vggdeploy[gpu]' on a GPU host)"))
    mismatch = tensorrt_mismatch()
    if mismatch:
        rows.append(("onnxruntime + tensorrt", "no", f"{mismatch} (`make setup-gpu` pins a set that works together)"))
    for dist in ("onnx", "polygraphy", "onnxslim", "tritonclient"):
        v = _version(dist)
        rows.append((dist, "ok" if v else "no", v or f"pip install {dist}"))

    trt_missing = missing_for_tensorrt() + ([] if _version("polygraphy") else ["pip install polygraphy"])
    gpu_ort = [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in providers]
    verbs = [
        ("export/quantize", True, "CPU: torch, ONNX, ONNX Runtime"),
        ("quantize --quantizer nncf", bool(_version("nncf")),
         f"NNCF {_version('nncf')}" if _version("nncf") else "pip install 'vggdeploy[nncf]'"),
        ("bench --backend cpu", True, "ONNX Runtime / OpenVINO on this CPU; INT8 (cpu target, "
                                      f"{CPU_DEFAULT}) on {default_cpu_backend('int8-cpu', CPU_DEFAULT)}"),
        ("build / --engine", not trt_missing, "; ".join(trt_missing) or "TensorRT engines can be built here"),
        ("bench --backend tensorrt", not trt_missing, "; ".join(trt_missing) or "ok"),
        ("bench onnxruntime-cuda", "CUDAExecutionProvider" in gpu_ort and info.available,
         "ok" if "CUDAExecutionProvider" in gpu_ort and info.available else "needs onnxruntime-gpu and a CUDA device"),
        ("bench onnxruntime-tensorrt", "TensorrtExecutionProvider" in gpu_ort and info.available and not mismatch,
         mismatch or ("ok" if "TensorrtExecutionProvider" in gpu_ort and info.available
                      else "needs onnxruntime-gpu, TensorRT and a CUDA device")),
        ("torch-cuda reference", torch.cuda.is_available(), "ok" if torch.cuda.is_available() else "no usable CUDA in torch"),
    ]
    rows += [(f"verb: {name}", "ok" if ok else "no", detail) for name, ok, detail in verbs]
    rows.append(("cache", "ok", _cache_use()))
    return rows


def _cache_use() -> str:
    from .store import cache_root
    from .backends.openvino import cache_limit_bytes

    root = cache_root()
    used = {d: sum(f.stat().st_size for f in (root / d).rglob("*") if f.is_file()) if (root / d).is_dir() else 0
            for d in ("calibration", "openvino")}
    limit = cache_limit_bytes()
    bound = f"kept under {limit / 1e9:g} GB by VGGDEPLOY_OPENVINO_CACHE_GB" if limit else "not used: VGGDEPLOY_OPENVINO_CACHE_GB=0"
    return (f"{root}: calibration {used['calibration'] / 1e6:.1f} MB, "
            f"OpenVINO models {used['openvino'] / 1e9:.2f} GB ({bound})")
