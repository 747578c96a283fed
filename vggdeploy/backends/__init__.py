"""One runner interface for every runtime (modelled on Polygraphy's runners).

    with make_runner("onnxruntime", "engines/vgg16/classifier.onnx") as r:
        out = r.infer({"input": batch})        # {output name: np.ndarray}
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from .base import Runner

BACKENDS = ("cpu", "onnxruntime", "openvino", "tensorrt", "onnxruntime-cuda", "onnxruntime-tensorrt",
            "torch", "torch-cuda")
GPU_BACKENDS = ("tensorrt", "onnxruntime-cuda", "onnxruntime-tensorrt", "torch-cuda")


# The CPU runtime measured fastest per precision (benchmarks/results/cpu.md): for INT8 OpenVINO
# reaches the GEMM floor on both targets' layouts, ORT runs the TensorRT layout 5x slower.
CPU_DEFAULTS = {"fp32": "onnxruntime", "fp16": "openvino", "int8": "openvino"}


def default_cpu_backend(precision: str = "fp32") -> str:
    choice = CPU_DEFAULTS[precision.split("-")[0]]
    if choice == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "onnxruntime"
    return choice


def artifact_precision(path: Path) -> str:
    """The precision in a vggdeploy artifact's metadata (fp32 for other models and formats)."""
    if path.suffix != ".onnx":
        return "fp32"
    from ..inspect import load_graph, metadata_of

    return metadata_of(load_graph(path)).get("vggdeploy.precision", "fp32")


def make_runner(backend: str, model_path: str | Path, **options) -> Runner:
    """A runner for a serialized artifact. Imports the runtime only when asked for.

    backend "cpu" picks the fastest CPU runtime for the precision the artifact declares;
    "tensorrt" takes a .plan engine; "torch"/"torch-cuda" rebuild eager PyTorch from the weights
    a vggdeploy artifact names (the baseline for parity and speed).
    """
    if backend == "cpu":
        backend = default_cpu_backend(artifact_precision(Path(model_path)))
    if backend.startswith("onnxruntime"):
        from .ort import OrtRunner

        provider = {"onnxruntime": "CPUExecutionProvider", "onnxruntime-cuda": "CUDAExecutionProvider",
                    "onnxruntime-tensorrt": "TensorrtExecutionProvider"}.get(backend)
        if provider is None:
            raise BadInput(f"unknown backend {backend!r}", hint=f"choose from: {', '.join(BACKENDS)}")
        return OrtRunner(model_path, provider=provider, **options)
    if backend == "tensorrt":
        from .tensorrt import TensorRTRunner

        return TensorRTRunner(model_path, **options)
    if backend in ("torch", "torch-cuda"):
        from .eager import eager_for_artifact

        return eager_for_artifact(model_path, device="cuda" if backend == "torch-cuda" else "cpu", **options)
    if backend == "openvino":
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(model_path, **options)
    raise BadInput(f"unknown backend {backend!r}", hint=f"choose from: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "GPU_BACKENDS", "CPU_DEFAULTS", "Runner", "default_cpu_backend", "make_runner"]
