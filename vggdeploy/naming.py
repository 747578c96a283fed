"""Artifact file names, in one place.

FORM.onnx is an FP32 export (classifier.onnx), FORM.PRECISION.onnx one derived from it by
`quantize` (dense.fp16.onnx, classifier.int8-cpu.onnx), FORM.PRECISION.plan a TensorRT engine
(dense.fp16.plan); an ONNX's weights are NAME.data beside it (artifacts.side_files).
"""

from __future__ import annotations

from pathlib import Path


def artifact_name(form: str, precision: str = "fp32", kind: str = "onnx") -> str:
    """The file name of `form` at `precision`: classifier.onnx, dense.fp16.onnx, dense.fp32.plan."""
    return f"{form}.{kind}" if precision == "fp32" and kind == "onnx" else f"{form}.{precision}.{kind}"


def derived_name(source: Path, precision: str) -> str:
    """The FP16/INT8 artifact made from the ONNX `source`, beside it: classifier.onnx -> classifier.int8-cpu.onnx."""
    return source.name.removesuffix(".onnx") + f".{precision}.onnx"


def engine_name(source: Path, meta) -> str:
    """FORM.PRECISION.plan for a vggdeploy artifact (its ArtifactMeta: dense.fp16.plan), STEM.plan for
    other ONNX files (meta None)."""
    if meta is not None:
        return artifact_name(meta.form, meta.precision, "plan")
    return source.name.removesuffix(".onnx") + ".plan"
