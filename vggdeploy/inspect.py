"""What an ONNX artifact holds: I/O and dynamic axes, metadata, op counts, parameters."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from .artifacts import check_onnx_files, side_files
from .errors import BadInput, printable
from .forms import FormSpec, spec_from_metadata
from .variants import CONFIGS, Variant


ADOPT_HINT = ("a VGG ONNX from another exporter: `vggdeploy adopt {path}` (states its layout and preprocessing); "
              "a PyTorch model: `vggdeploy export`")
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


def load_graph(path: Path) -> onnx.ModelProto:
    """The graph without its external weights (cheap: kB, not the 500 MB side file)."""
    if not path.is_file():
        raise BadInput(f"{path} not found")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise BadInput(f"{path} is not an ONNX model ({type(e).__name__})") from None


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


def metadata_of(model: onnx.ModelProto) -> dict:
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

        return describe_ir(path)
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
        "metadata": metadata_of(model),
        "ops": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "parameters": parameter_count(model),
        "initializer_dtypes": dict(dtypes),
        "int8": int8_info(model),
    }


def parameter_count(model: onnx.ModelProto) -> int:
    """The model's weights and biases, in whatever type they are stored (an INT8 graph's int8 weights
    count; its quantization scales and zero points, and shape constants, do not)."""
    quant_params = {name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                    for name in n.input[1:]}
    stored = FLOAT_TYPES | {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer
                   if t.data_type in stored and t.name not in quant_params))


def int8_info(model: onnx.ModelProto) -> dict | None:
    """An INT8 artifact's layout (declared, or implied for one written before layouts were recorded),
    where it is exact, and whether it is exact on this CPU with each runtime."""
    from .isa import cpu_isa
    from .layouts import LAYOUTS, META_KEY, layout_of

    meta = metadata_of(model)
    name = layout_of(meta, model)
    if name is None:
        return None
    isa = cpu_isa()
    return {"layout": name, "declared": META_KEY in meta, "exact_on": LAYOUTS[name].exact_on,
            "this_cpu": isa.as_dict(),
            "exact_here": {rt: LAYOUTS[name].exact_here(isa, rt) for rt in ("onnxruntime", "openvino")}}


def checked_metadata(path: Path, graph: onnx.ModelProto) -> dict:
    """The metadata of the ONNX at `path` (header `graph`), once its side files are checked and, for a
    vggdeploy artifact, its metadata against the schema: BadInput naming the file otherwise."""
    check_onnx_files(path, graph)
    meta = metadata_of(graph)
    if "vggdeploy.form" in meta:
        check_metadata(meta, path)
    return meta


def source_variant(path: Path, graph: onnx.ModelProto | None = None) -> tuple[dict, Variant, FormSpec]:
    """The variant (architecture and preprocessing) and form a vggdeploy artifact declares."""
    meta = checked_metadata(path, graph or load_graph(path))
    if "vggdeploy.form" not in meta:
        raise BadInput(f"{path} has no vggdeploy metadata", hint=ADOPT_HINT.format(path=path))
    return meta, variant_from_metadata(meta), spec_from_metadata(meta)


def variant_from_metadata(meta: dict) -> Variant:
    """The Variant (architecture and preprocessing) that checked vggdeploy metadata declares."""
    pre = meta["vggdeploy.preprocessing"]
    return Variant(meta["vggdeploy.variant"], meta["vggdeploy.config"], meta["vggdeploy.batch_norm"],
                   num_classes=int(meta["vggdeploy.num_classes"]), in_channels=len(pre["mean"]),
                   image_size=pre["crop"], resize=pre["resize"], mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                   **meta.get("vggdeploy.head", {"pool": _dense_pool(meta)}))


def _dense_pool(meta: dict) -> int:
    """FC1's window: the dense form's minimum size over its stride (7 for ImageNet VGGs)."""
    sizes = meta["vggdeploy.input_sizes"]
    return sizes["min"][0] // sizes["stride"] if meta["vggdeploy.form"] == "dense" else 7


def _count(x, top: int = 16384) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 < x <= top


def _size(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(_count(i) for i in x)


def _numbers(x) -> bool:
    return isinstance(x, list) and 1 <= len(x) <= 4 and all(isinstance(i, (int, float)) and not isinstance(i, bool)
                                                            and np.isfinite(i) for i in x)


def _preprocessing(x) -> bool:
    return (isinstance(x, dict) and _numbers(x.get("mean")) and _numbers(x.get("std"))
            and len(x["mean"]) == len(x["std"]) and all(s > 0 for s in x["std"])
            and _count(x.get("crop")) and _count(x.get("resize")))


def _input_sizes(x) -> bool:
    return isinstance(x, dict) and (_size(x.get("fixed")) or (_size(x.get("min")) and _count(x.get("stride"))))


# What a vggdeploy artifact's metadata must hold, key by key (values after metadata_of's JSON decoding)
METADATA_SCHEMA = {
    "vggdeploy.form": (True, lambda x: x in ("classifier", "dense", "features"), "classifier, dense or features"),
    "vggdeploy.variant": (True, lambda x: isinstance(x, str) and 0 < len(x) <= 128, "a name"),
    "vggdeploy.config": (True, lambda x: isinstance(x, str) and x in CONFIGS, "a known VGG configuration"),
    "vggdeploy.batch_norm": (True, lambda x: isinstance(x, bool), "true or false"),
    "vggdeploy.num_classes": (True, lambda x: _count(x, 1_000_000), "a positive whole number"),
    "vggdeploy.input_sizes": (True, _input_sizes, "{fixed: [H, W]} or {min: [H, W], stride: N}"),
    "vggdeploy.preprocessing": (True, _preprocessing, "a table with mean, std (1-4 numbers), crop and resize"),
    "vggdeploy.precision": (False, lambda x: x in ("fp32", "fp16", "int8-tensorrt", "int8-cpu"),
                            "fp32, fp16, int8-tensorrt or int8-cpu"),
    "vggdeploy.taps": (False, lambda x: isinstance(x, list) and all(isinstance(t, str) for t in x), "a list of names"),
    "vggdeploy.head": (False, lambda x: isinstance(x, dict) and set(x) == {"pool", "hidden"} and all(_count(i) for i in x.values()),
                       "{pool: N, hidden: N} (the classifier's window and width)"),
    "vggdeploy.class_names": (False, lambda x: isinstance(x, list) and all(isinstance(t, str) for t in x),
                              "a list of names"),
}


def check_metadata(meta: dict, path: Path) -> None:
    """BadInput naming the file and the key when a vggdeploy artifact's metadata is missing a key or
    holds a value of the wrong kind (edited or damaged), before anything reads it."""
    for key, (required, ok, want) in METADATA_SCHEMA.items():
        if key not in meta and not required:
            continue
        if key not in meta or not ok(meta[key]):
            what = "is missing" if key not in meta else f"is {printable(repr(meta[key]))[:60]}"
            raise BadInput(f"{path.name}: metadata {key} {what}; it must be {want}",
                           hint="the artifact was edited or damaged: re-export it")
