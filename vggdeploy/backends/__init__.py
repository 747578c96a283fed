"""One runner interface for every runtime (modelled on Polygraphy's runners).

    with make_runner("onnxruntime", "engines/vgg16/classifier.onnx") as r:
        out = r.infer({"input": batch})        # {output name: np.ndarray}
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from .base import Runner

BACKENDS = ("onnxruntime", "openvino", "onnxruntime-cuda", "onnxruntime-tensorrt")


def make_runner(backend: str, model_path: str | Path, **options) -> Runner:
    """A runner for a serialized artifact. Imports the runtime only when asked for."""
    if backend.startswith("onnxruntime"):
        from .ort import OrtRunner

        provider = {"onnxruntime": "CPUExecutionProvider", "onnxruntime-cuda": "CUDAExecutionProvider",
                    "onnxruntime-tensorrt": "TensorrtExecutionProvider"}.get(backend)
        if provider is None:
            raise BadInput(f"unknown backend {backend!r}", hint=f"choose from: {', '.join(BACKENDS)}")
        return OrtRunner(model_path, provider=provider, **options)
    if backend == "openvino":
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(model_path, **options)
    raise BadInput(f"unknown backend {backend!r}", hint=f"choose from: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Runner", "make_runner"]
