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
CHECK_BACKENDS = ("cpu", "onnxruntime", "openvino")  # what export/quantize check on; each has a low-memory mode


# The CPU runtime measured fastest per precision (benchmarks/results/cpu.md); for INT8 it depends
# on the layout and on this CPU's ISA too (layouts.cpu_runtime, DESIGN.md fact 18).
CPU_DEFAULTS = {"fp32": "onnxruntime", "fp16": "openvino", "int8": "openvino"}


def default_cpu_backend(precision: str = "fp32", layout: str | None = None) -> str:
    """The CPU runtime for an artifact of this precision (and INT8 layout) on this CPU."""
    from ..isa import cpu_isa
    from ..layouts import cpu_runtime, layout_of

    kind = precision.split("-")[0]
    choice = CPU_DEFAULTS[kind]
    if kind == "int8":
        choice = cpu_runtime(layout or layout_of(precision), cpu_isa())
    if choice == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "onnxruntime"
    return choice


def cpu_backend_for(path, precision: str = "fp32", layout: str | None = None) -> str:
    """`cpu` resolved for one artifact (a path or an Artifact): an OpenVINO IR runs on OpenVINO, an
    ONNX on the fastest exact runtime for its precision and layout here."""
    from ..artifact import kind_of

    return "openvino" if kind_of(path) == "openvino-ir" else default_cpu_backend(precision, layout)


def artifact_precision(path) -> tuple[str, str | None]:
    """The precision and INT8 layout an artifact (path or Artifact) declares (fp32 for other models and formats)."""
    from ..artifact import Artifact, kind_of

    if kind_of(path) != "onnx":
        return "fp32", None
    artifact = Artifact.of(path)
    return artifact.precision, artifact.int8_layout


def make_runner(backend: str, artifact, **options) -> Runner:
    """A runner for a serialized artifact (a path, or an `Artifact` already opened). Imports the
    runtime only when asked for; an ONNX artifact's graph header is read once, whatever the backend.

    backend "cpu" picks the fastest CPU runtime for the precision the artifact declares;
    "tensorrt" takes a .plan engine; "torch"/"torch-cuda" rebuild eager PyTorch from the weights
    a vggdeploy artifact names (the baseline for parity and speed).
    """
    from ..artifact import Artifact, kind_of

    path = artifact.path if isinstance(artifact, Artifact) else Path(artifact)
    if kind_of(artifact) == "onnx" and backend in ("cpu", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "openvino"):
        artifact = Artifact.of(artifact)
    if backend == "cpu":
        backend = cpu_backend_for(artifact, *artifact_precision(artifact))
    if backend.startswith("onnxruntime"):
        from .ort import OrtRunner

        provider = {"onnxruntime": "CPUExecutionProvider", "onnxruntime-cuda": "CUDAExecutionProvider",
                    "onnxruntime-tensorrt": "TensorrtExecutionProvider"}.get(backend)
        if provider is None:
            raise BadInput(f"unknown backend {backend!r}", hint=f"choose from: {', '.join(BACKENDS)}")
        return OrtRunner(artifact, provider=provider, **options)
    if backend == "tensorrt":
        from .tensorrt import TensorRTRunner

        return TensorRTRunner(path, **options)
    if backend in ("torch-compile", "pt2e", "torch-compile-cuda"):  # what users would pick instead (peers.py)
        from .peers import peer_for_artifact

        return peer_for_artifact(artifact, backend, **options)
    if backend in ("torch", "torch-cuda"):
        from .eager import eager_for_artifact

        return eager_for_artifact(artifact, device="cuda" if backend == "torch-cuda" else "cpu", **options)
    if backend == "openvino":
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(artifact, **options)
    raise BadInput(f"unknown backend {backend!r}", hint=f"choose from: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "GPU_BACKENDS", "CPU_DEFAULTS", "Runner", "cpu_backend_for", "default_cpu_backend", "make_runner"]
