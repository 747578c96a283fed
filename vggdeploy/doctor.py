"""What this machine can run. Every probe is an import or a query: nothing is installed."""

from __future__ import annotations

import importlib
import importlib.metadata as md


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def diagnose() -> list[tuple[str, str, str]]:
    rows = []
    import torch

    cuda = torch.cuda.is_available()
    rows.append(("torch", "ok", f"{torch.__version__}; CUDA device: {torch.cuda.get_device_name(0) if cuda else 'none'}"))
    try:
        import onnxruntime as ort

        rows.append(("onnxruntime", "ok", f"{ort.__version__}; providers: {', '.join(ort.get_available_providers())}"))
    except ImportError:
        rows.append(("onnxruntime", "no", "pip install onnxruntime (CPU) or onnxruntime-gpu, never both"))
    try:
        import openvino as ov

        rows.append(("openvino", "ok", f"{ov.get_version()}; devices: {', '.join(ov.Core().available_devices)}"))
    except ImportError:
        rows.append(("openvino", "no", "pip install openvino"))
    rows.append(tensorrt_status(cuda))
    for dist in ("onnx", "polygraphy", "onnxslim", "tritonclient"):
        v = _version(dist)
        rows.append((dist, "ok" if v else "no", v or f"pip install {dist}"))
    return rows


def tensorrt_status(cuda: bool) -> tuple[str, str, str]:
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        return ("tensorrt", "no", "not installed (pip install tensorrt on a machine with an NVIDIA GPU)")
    if not cuda:
        return ("tensorrt", "no", f"{trt.__version__} installed, but no CUDA device is visible")
    return ("tensorrt", "ok", trt.__version__)
