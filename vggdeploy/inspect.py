"""What an ONNX artifact holds: I/O and dynamic axes, metadata, op counts, parameters."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from .artifacts import read_manifest, side_files
from .errors import BadInput
from .metadata import ArtifactMeta


ADOPT_HINT = ("a VGG ONNX from another exporter: `vggdeploy adopt {path}` (states its layout and preprocessing); "
              "a PyTorch model: `vggdeploy export`")
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


def load_graph(path: Path) -> onnx.ModelProto:
    """The graph without its external weights (cheap: kB, not the 500 MB side file)."""
    from .filetypes import require_onnx

    require_onnx(path)
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise BadInput(f"{path} is not an ONNX model ({type(e).__name__})",
                       hint="a checkpoint (.pth, .safetensors, a timm or Lightning folder) goes to `vggdeploy export CHECKPOINT`") from None


def _value_info(v: onnx.ValueInfoProto) -> dict:
    t = v.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims,
            "dynamic_axes": {i: d for i, d in enumerate(dims) if isinstance(d, str)}}


def graph_io(model: onnx.ModelProto) -> tuple[list[tuple[str, int, list[int]]], list[tuple[str, int, list[int]]]]:
    """Inputs (initializers left out) and outputs as (name, ONNX element type, dims with -1 for free)."""
    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]

    inits = {t.name for t in model.graph.initializer}
    return ([(v.name, v.type.tensor_type.elem_type, dims(v)) for v in model.graph.input if v.name not in inits],
            [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in model.graph.output])


def shown_metadata(model: onnx.ModelProto) -> dict:
    """Every metadata prop, JSON values decoded: what `inspect` shows (ArtifactMeta reads them)."""
    out = {}
    for p in model.metadata_props:
        try:
            out[p.key] = json.loads(p.value)
        except json.JSONDecodeError:
            out[p.key] = p.value
    return out


def inspect_onnx(path: str | Path) -> dict:
    """What an artifact holds: files and sizes, I/O with dynamic axes, metadata, op counts, parameter
    count and initializer types, and an INT8 artifact's layout. Takes an ONNX file or the OpenVINO IR
    (.xml) `convert` writes. Raises BadInput for a file that is neither."""
    path = Path(path)
    if path.suffix == ".xml":
        from .backends.openvino import describe_ir

        return {**describe_ir(path), **_quality(path)}
    model = load_graph(path)
    init = list(model.graph.initializer)
    dtypes = Counter(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in init)
    return {
        "path": str(path),
        "files": {p.name: p.stat().st_size for p in side_files(path)},
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value_info(v) for v in model.graph.input],
        "outputs": [_value_info(v) for v in model.graph.output],
        "metadata": shown_metadata(model),
        "ops": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "parameters": parameter_count(model),
        "initializer_dtypes": dict(dtypes),
        "int8": int8_info(model, _meta_or_none(model, path)),
        **_quality(path),
    }


def _quality(path: Path) -> dict:
    """What the manifest measured when the artifact was made: each layer's error against FP32
    (ranked) and the accuracy budget's search; nothing for a file outside a vggdeploy folder."""
    try:
        entry = read_manifest(path.parent)["artifacts"].get(path.name) or {}
    except BadInput:  # a foreign or damaged manifest: inspect still describes the file
        entry = {}
    return {"layer_errors": entry.get("layer_errors"), "accuracy_budget": entry.get("accuracy_budget")}


def parameter_count(model: onnx.ModelProto) -> int:
    """The model's weights and biases, in whatever type they are stored (an INT8 graph's int8 weights
    count; its quantization scales and zero points, and shape constants, do not)."""
    quant_params = {name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                    for name in n.input[1:]}
    stored = FLOAT_TYPES | {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer
                   if t.data_type in stored and t.name not in quant_params))


def _meta_or_none(model: onnx.ModelProto, path: Path) -> ArtifactMeta | None:
    """What the file declares; None for a foreign file, or damaged metadata (inspect still shows it)."""
    try:
        return ArtifactMeta.from_props({p.key: p.value for p in model.metadata_props}, path)
    except BadInput:
        return None


def int8_info(model: onnx.ModelProto, meta: ArtifactMeta | None) -> dict | None:
    """An INT8 artifact's layout (declared, or implied for one written before layouts were recorded),
    where it is exact, and whether it is exact on this CPU with each runtime."""
    from .isa import cpu_isa
    from .layouts import LAYOUTS, layout_of

    name = layout_of(meta.precision, meta.int8_layout, model) if meta else None
    if name is None:
        return None
    isa = cpu_isa()
    return {"layout": name, "declared": meta.int8_layout is not None, "exact_on": LAYOUTS[name].exact_on,
            "this_cpu": isa.as_dict(),
            "exact_here": {rt: LAYOUTS[name].exact_here(isa, rt) for rt in ("onnxruntime", "openvino")}}
