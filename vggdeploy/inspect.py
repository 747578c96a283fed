"""What an ONNX artifact holds: I/O and dynamic axes, metadata, op counts, parameters."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from .artifact import kind_of, load_graph
from .store import entry_of, side_files
from .errors import BadInput, MissingEnvironment
from .metadata import ArtifactMeta


FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


def _value_info(v: onnx.ValueInfoProto) -> dict:
    t = v.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims,
            "dynamic_axes": {i: d for i, d in enumerate(dims) if isinstance(d, str)}}


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
    if kind_of(path) == "openvino-ir":
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
        entry = entry_of(path) or {}
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


def describe_ir(xml: Path) -> dict:
    """What `vggdeploy inspect` shows for an OpenVINO IR: I/O (dynamic axes named by their bounds),
    op counts and parameters from the IR; metadata from the source ONNX its manifest entry names."""
    try:
        import openvino as ov
    except ImportError:
        raise MissingEnvironment("OpenVINO is not installed", hint="pip install openvino") from None
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise BadInput(f"{xml} is not an OpenVINO IR (NAME.xml beside NAME.bin)")
    try:
        model = ov.Core().read_model(str(xml))
    except RuntimeError as e:
        raise BadInput(f"OpenVINO can't read {xml.name}: {str(e).splitlines()[0][:300]}") from None

    def port(p) -> dict:
        dims = [d.get_length() if d.is_static else "?" for d in p.get_partial_shape()]
        return {"name": p.get_any_name(), "dtype": p.get_element_type().get_type_name(), "shape": dims,
                "dynamic_axes": {i: "?" for i, d in enumerate(dims) if d == "?"}}

    ops = Counter(op.get_type_name() for op in model.get_ordered_ops())
    consts = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    dtypes = Counter(c.get_element_type().get_type_name() for c in consts)
    params = sum(int(np.prod(c.get_output_shape(0))) for c in consts if c.get_element_type().is_real())
    entry = entry_of(xml) or {}
    source = xml.with_name(entry["source"]) if isinstance(entry.get("source"), str) else None
    return {"path": str(xml), "files": {p.name: p.stat().st_size for p in (xml, xml.with_suffix(".bin"))},
            "ir_version": "openvino", "opsets": {}, "producer": f"OpenVINO {ov.get_version()}",
            "inputs": [port(p) for p in model.inputs], "outputs": [port(p) for p in model.outputs],
            "metadata": shown_metadata(load_graph(source)) if source and source.is_file() else {},
            "ops": dict(ops.most_common()), "parameters": params, "initializer_dtypes": dict(dtypes), "int8": None,
            "source": entry.get("source")}


def describe_text(info: dict) -> list[str]:
    """`inspect_onnx`'s answer as the lines `vggdeploy inspect` prints (the caller escapes what can't be printed)."""
    files = ", ".join(f"{n}: {size / 1e6:.1f} MB" for n, size in info["files"].items())
    lines = [f"{info['path']}  ({files})", f"opsets {info['opsets']}, producer {info['producer']}, IR {info['ir_version']}"]
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            dyn = f"  dynamic: {', '.join(f'{i}={d}' for i, d in v['dynamic_axes'].items())}" if v["dynamic_axes"] else ""
            lines.append(f"{kind[:-1]:7} {v['name']}: {v['dtype']} {v['shape']}{dyn}")
    dtypes = ", ".join(f"{k}: {n}" for k, n in info["initializer_dtypes"].items())
    lines += [f"parameters {info['parameters']:,} ({dtypes} tensors)", "ops " + ", ".join(f"{k} {n}" for k, n in info["ops"].items())]
    if info["int8"]:
        i8 = info["int8"]
        here = ", ".join(f"{rt} {'exact' if ok else 'SATURATES'}" for rt, ok in i8["exact_here"].items())
        lines.append(f"int8    layout {i8['layout']}{'' if i8['declared'] else ' (implied: written before layouts were recorded)'}"
                     f": exact on {i8['exact_on']}; on this CPU ({i8['this_cpu']['int8_class']}): {here}")
    for e in (info["layer_errors"] or [])[:5]:
        lines.append(f"layer   {e['node']} ({e['op']}) adds {e['added']:.4f} relative L2 against FP32 "
                     f"(its output: {e['rel_l2']:.4f}, cosine {e['cosine']:.5f})")
    if info["layer_errors"] and len(info["layer_errors"]) > 5:
        lines.append(f"layer   ... {len(info['layer_errors'])} layers in all, ranked by the error each adds (--json lists them)")
    if info["accuracy_budget"]:
        b = info["accuracy_budget"]
        lines.append(f"budget  --max-drop {b['max_drop']:g} on {b['eval']}: FP32 {b['fp32']:.2f}, INT8 {b['int8']:.2f} "
                     f"with {len(b['kept_fp32'])} layer(s) in float ({', '.join(b['kept_fp32']) or 'none'})")
    for k, val in info["metadata"].items():
        text = json.dumps(val) if not isinstance(val, str) else val
        if isinstance(val, list) and len(text) > 100:  # class names: a thousand of them
            text = f"{json.dumps(val[:5])[:-1]}, ... ({len(val)} in all)]"
        lines.append(f"meta {k} = {text}")
    return lines
