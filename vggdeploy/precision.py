"""FP16 and calibrated INT8 artifacts from an FP32 ONNX (DESIGN.md facts 1-3, 8).

TensorRT 11 builds only strongly typed networks, so precision lives in the ONNX: an FP16
graph for FP16, a Q/DQ graph for INT8. INT8 has a target: `tensorrt` (the layout its parser
wants) or `cpu` (the layout measured fastest on the CPU runtimes, see benchmarks/).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx

from .store import artifact_sha256, cache_root, copy_into, prepare_out_dir, save_onnx, side_files, staging
from .backends.base import Runner
from .budget import AccuracyBudget, load_eval_set
from .calibration import Reader, calibration_sizes, load_calibration, probe_samples
from .equalize import Equalization, equalize
from .errors import BadInput, CheckFailed
from .export import publish_checked, verify_artifact
from .forms import FormSpec
from .artifact import Artifact
from .artifact import load_graph
from .naming import derived_name
from .parity import Expected
from .layouts import CPU_DEFAULT, LAYOUTS, METHODS, Int8Options  # noqa: F401 (METHODS: the API's list)
from .progress import step
from .qdq import qdq_violations, compute_nodes
from .variants import Variant

log = logging.getLogger("vggdeploy")

FP16_SAFE = 65504 / 4  # keep a node in FP32 when its activations come within 4x of FP16's max
NO_LARGER_OUTPUT = {"Relu", "MaxPool", "Dropout", "Flatten", "Reshape", "Identity"}
CACHE_DIR = cache_root() / "calibration"


COMPUTE_OPS = ["Conv", "Gemm", "MatMul"]
# cpu target: pooling and reshaping between quantized layers run on the 8-bit tensors too. ORT only
# quantizes them behind an already quantized tensor unless forced; forced, the ReLU before each pool
# gets the Q/DQ, so the conv writes u8 and the pool reads u8 (NNCF's layout; benchmarks/nncf_bench.py)
CPU_PASS_THROUGH = ["MaxPool", "AveragePool", "Reshape", "Flatten"]


def source_model(path: Path) -> tuple[onnx.ModelProto, Artifact]:
    """The FP32 artifact's graph header and the artifact (read once; BadInput unless it is an FP32
    vggdeploy artifact the onnx package can read)."""
    graph = load_graph(path)
    opened = Artifact.from_graph(path, graph)
    meta = opened.declared()
    linked = [f for f in side_files(path)[1:] if f.stat().st_nlink > 1]
    if linked:  # ONNX Runtime and OpenVINO read them; the onnx package, which converts, refuses
        raise BadInput(f"{linked[0].name} has {linked[0].stat().st_nlink} hard links: the onnx package refuses to "
                       "read hard-linked weights", hint="copy the files (cp) instead of linking them (ln, cp -l)")
    if meta.precision != "fp32" or any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.graph.node):
        raise BadInput(f"{path} is already {meta.precision if meta.precision != 'fp32' else 'quantized'}",
                       hint="convert the FP32 artifact")
    return graph, opened


# ---------------------------------------------------------------------------- FP16

def to_fp16(artifact: Path | Artifact, out_dir: Path | None = None, *, io: str = "fp32", reference: Runner | Expected | None = None,
            verify: bool = True, force: bool = False, backend: str = "cpu") -> Artifact:
    """FORM.fp16.onnx beside the FP32 `artifact` (a path or an Artifact; or in `out_dir`): the FP32 artifact in FP16, nodes whose
    activations come near FP16's range kept in FP32, I/O in FP32 unless io="fp16"; checked against
    `reference` (default: the FP32 ONNX) on `backend`, then published and recorded in the manifest.
    Returns it (an Artifact). Raises BadInput (not an FP32 vggdeploy artifact, output exists without
    `force`), CheckFailed (onnx.checker or parity failed; nothing is written)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if io not in ("fp32", "fp16"):
        raise BadInput(f"unknown --io {io!r}", hint="fp32 (default) or fp16")
    src = Path(artifact)
    graph, opened = source_model(src)
    meta, v, spec = opened.meta, opened.variant, opened.spec
    out_dir = Path(out_dir or src.parent)
    name = derived_name(src, "fp16")
    prepare_out_dir(out_dir, [name], force)
    with staging(out_dir) as tmp, step(f"converting {src.name} to FP16"):
        private = copy_into(src, tmp / "source")
        keep = sorted(_overflowing_nodes(private, graph, v, spec))
        if keep:
            log.info("keeping %d node(s) in FP32 (activations near FP16's range): %s", len(keep), ", ".join(keep))
        # the converter sees the graph without its weights (their types change, their bytes do not);
        # the weights follow one tensor at a time (a whole VGG16 in memory twice peaked at 4 GB RSS)
        with _shapes_from_dims():
            model = convert_float_to_float16(onnx.ModelProto.FromString(graph.SerializeToString()),
                                             keep_io_types=io == "fp32", node_block_list=keep or None,
                                             disable_shape_infer=True)
        _drop_round_trips(model.graph)
        _topological_sort(model.graph)  # the converter appends its I/O Casts at the end
        del model.graph.value_info[:]  # and leaves stale FP16 types on blocked nodes' outputs
        _set_meta(model, meta.replace(precision="fp16", io=io, fp32_nodes=tuple(keep)).to_props())
        staged = tmp / name
        _stream_weights(model, graph, private, staged)
        save_onnx(model, staged)
        samples = probe_samples(v, calibration_sizes(v, spec.form, spec.size, spec.min_size))
        errors = _layer_errors(private, staged, samples.batches, (graph, model))  # the graphs as written, not read again
        del model
        return _finish(staged, out_dir, opened, "fp16", v, spec, reference, verify, backend,
                       {"io": io, "fp32_nodes": keep, "layer_errors": errors}, force)


@contextlib.contextmanager
def _shapes_from_dims():
    """The converter reads each initializer it converts whole (from disk, for external data) only to
    learn its shape; the dims say it, and the weights are not in memory here."""
    import onnxruntime.transformers.float16 as converter

    original = converter.make_value_info_from_tensor
    converter.make_value_info_from_tensor = lambda t: onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims)
    try:
        yield
    finally:
        converter.make_value_info_from_tensor = original


def _stream_weights(model: onnx.ModelProto, fp32: onnx.ModelProto, src: Path, staged: Path,
                   chunk: int = 1 << 22) -> None:
    """Write the external weights of the converted `model` to `staged`'s side file, read from the
    FP32 artifact `src` memory-mapped, a chunk at a time: tensors the converter made FLOAT16 are
    converted with its own rounding and clamping (convert_np_to_float16), the others copied."""
    from onnxruntime.transformers.float16 import convert_np_to_float16

    was_float = {t.name for t in fp32.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    data = staged.with_name(staged.name + ".data")
    with open(data, "xb") as out:
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in t.external_data}
            values = np.memmap(src.parent / info["location"], dtype=np.uint8, mode="r",
                               offset=int(info.get("offset", 0)), shape=(int(info["length"]),))
            if t.name in was_float and t.data_type == onnx.TensorProto.FLOAT16:
                values = values.view(np.float32)
                convert = lambda a: convert_np_to_float16(np.asarray(a)).tobytes()  # noqa: E731
            else:
                convert = lambda a: np.asarray(a).tobytes()  # noqa: E731
            offset = out.tell()
            for start in range(0, values.size, chunk):
                out.write(convert(values[start:start + chunk]))
            del values
            del t.external_data[:]
            for key, value in (("location", data.name), ("offset", offset), ("length", out.tell() - offset)):
                t.external_data.add(key=key, value=str(value))


def _overflowing_nodes(src: Path, graph: onnx.ModelProto, v: Variant, spec: FormSpec) -> set[str]:
    """Nodes that read or write tensors reaching FP16_SAFE on the bundled photos or the parity
    check's noise (run once in FP32 on ORT)."""
    import onnxruntime as ort

    from .data import photo_batch, random_batch

    probe = onnx.shape_inference.infer_shapes(graph)
    known = {o.name for o in probe.graph.output} | {t.name for t in graph.graph.initializer}  # (weights: 0.5 GB)
    # a pass-through op's output never exceeds its input's magnitude: measure its input only (half the
    # activations of a VGG are ReLU and pool outputs; every measured one is held at once)
    derived = {n.output[0]: n.input[0] for n in graph.graph.node if n.op_type in NO_LARGER_OUTPUT}
    float_values = [vi for vi in probe.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
                    and vi.name not in known and vi.name not in derived]
    probe.graph.output.extend(float_values)
    probe_path = src.with_name(f"probe-{src.name}")  # src is a private copy: its .data side file resolves
    onnx.save(probe, str(probe_path))
    # ranges of the graph as written: no fusion, no pre-packed weight copies, no arena (-1 GB on VGG16)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.disable_prepacking", "1")
    sess = ort.InferenceSession(str(probe_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    peaks: dict[str, float] = {}
    for hw in calibration_sizes(v, spec.form, spec.size, spec.min_size)[:2]:
        batch = np.concatenate([photo_batch(v, hw, 4)[1], random_batch(v, hw, 2, seed=0)])
        for image in batch:  # one at a time: the activations are outputs here (1.4 GB for six on VGG16)
            outs = sess.run(None, {"input": image[None]})
            for k, a in zip(names, outs):
                if a.dtype.kind == "f" and a.size:
                    peaks[k] = max(peaks.get(k, 0.0), float(np.abs(a).max()))
            del outs
    for out, inp in derived.items():  # graph.node is in topological order
        peaks.setdefault(out, peaks.get(inp, 0.0))
    # a node reading a large tensor must stay FP32 too: casting its input to FP16 would overflow
    return {n.name for n in graph.graph.node
            if max((peaks.get(t, 0.0) for t in [*n.input, *n.output]), default=0.0) >= FP16_SAFE}


# ---------------------------------------------------------------------------- INT8

def to_int8(artifact: Path | Artifact, out_dir: Path | None = None, *, target: str, method: str = "minmax",
            calib: str | None = None, calib_count: int | None = None, keep_fp32: list[str] | None = None,
            cpu_layout: str | None = None, quantizer: str = "ort", equalize: bool = True,
            budget: AccuracyBudget | None = None, reference: Runner | Expected | None = None, verify: bool = True, force: bool = False,
            backend: str = "cpu") -> Artifact:
    """FORM.int8-TARGET.onnx beside the FP32 `artifact` (or in `out_dir`): a Q/DQ graph calibrated on `calib`
    (an image folder, a .npy/.npz of (N, C, H, W) float32, or None for the bundled samples; the first
    `calib_count` of them) by `method`, for `target` "tensorrt" (its parser's layout) or "cpu"
    (`cpu_layout`, default the portable u8s7-channel; `quantizer` "ort" or "nncf"); `keep_fp32` names
    Conv/Gemm nodes (or first/last) left in float; `equalize` applies cross-layer equalization to a
    private copy of the FP32 graph before calibration (the function is unchanged; outlier channels
    stop setting the activation scales: equalize.py); with a `budget` (budget.py), the layers that add
    the most error are kept in float, fewest first, until top-1 on its data is within it (CheckFailed
    with the best found, nothing written, if half the layers are not enough). Checked against `reference` (default: the FP32
    ONNX) on `backend`, then published and recorded. Returns it (an Artifact). Raises BadInput (bad options or
    calibration data, output exists without `force`), CheckFailed (parity failed; nothing written),
    MissingEnvironment (the quantizer's package is missing)."""
    options = Int8Options(target, method, calib_count, cpu_layout, quantizer, equalize, budget)
    src = Path(artifact)
    graph, opened = source_model(src)
    meta, v, spec = opened.meta, opened.variant, opened.spec
    out_dir = Path(out_dir or src.parent)
    tag = f"int8-{target}"
    name = derived_name(src, tag)
    prepare_out_dir(out_dir, [name], force)
    excluded = resolve_keep_fp32(graph, keep_fp32 or [])
    layout = int8_layout(options)
    data = load_calibration(calib, v, calibration_sizes(v, spec.form, spec.size, spec.min_size), calib_count,
                            spec.min_size)
    budget_set = load_eval_set(options.budget, meta.preprocessing, v.num_classes) if options.budget else None
    with staging(out_dir) as tmp:
        staged = tmp / name
        log.info("INT8 for %s by %s (%s): calibrating on %d of %d input(s) x %d size(s) from %s", target, quantizer,
                 "its defaults" if quantizer == "nncf" else method, data.count, data.available, len(data.sizes),
                 data.source)
        private = copy_into(src, tmp / "source")  # quantizers write beside their input (NAME-inferred.onnx)
        equalization, fp32_graph = equalize_copy(private) if equalize else (None, graph)

        def quantize(kept_float: list[str]) -> dict:
            """`staged`, quantized with `excluded` and `kept_float` left in float, metadata set."""
            in_float = sorted({*excluded, *kept_float, *input_path(graph, kept_float)})
            for old in (staged, staged.with_name(staged.name + ".data")):
                old.unlink(missing_ok=True)
            with step(f"quantizing {src.name} for {target}", total=len(data.batches)) as advance:
                if quantizer == "nncf":
                    from .nncf_quantize import quantize_nncf

                    info = {"method": "nncf-default", "nncf": quantize_nncf(private, staged, data, in_float)}
                elif quantizer == "modelopt":
                    from .modelopt_quantize import quantize_modelopt

                    info = {"method": method, **quantize_modelopt(private, staged, data, in_float, method)}
                else:
                    info = _quantize_ort(src, private, staged, graph, data, target, method, in_float, layout,
                                         equalization, advance)
            model = onnx.load(str(staged), load_external_data=False)
            if quantizer == "modelopt":  # it leaves the Gemm layers in float by default: declared as such
                from .modelopt_quantize import left_in_float

                in_float = sorted({*in_float, *left_in_float(model)})
            if target == "tensorrt":
                problems = qdq_violations(model, allow_float=set(in_float))
                if problems:
                    raise CheckFailed(f"the TensorRT INT8 graph breaks {len(problems)} rule(s): {problems[0]}")
            info |= {"source": data.source, "count": data.count, "sizes": [list(s) for s in data.sizes],
                     "data_sha256": data.sha256, "equalization": equalization.to_json() if equalization else None}
            source_props = {p.key: p.value for p in graph.metadata_props}  # NNCF drops them
            _set_meta(model, source_props | meta.replace(precision=tag, calibration=info, fp32_nodes=tuple(in_float),
                                                         int8_layout=layout, int8_exact_on=LAYOUTS[layout].exact_on).to_props())
            onnx.save(model, str(staged))  # graph only: the side file is already beside it
            latest["calibration"], latest["in_float"], latest["graph"] = info, in_float, model
            return info

        latest: dict = {}
        quantize([])
        errors = _layer_errors(private, staged, data.batches, (fp32_graph, latest["graph"]))
        kept, budget_info = [], None
        if options.budget:
            kept, budget_info = _fit_budget(options.budget, budget_set, private, staged, errors, excluded, quantize, backend)
            if kept:  # the manifest describes the artifact written: its kept layers add nothing now
                errors = _layer_errors(private, staged, data.batches, (fp32_graph, latest["graph"]))
        extra_entry = {"target": target, "quantizer": quantizer, "calibration": latest["calibration"],
                       "fp32_nodes": latest["in_float"], "int8_layout": layout, "exact_on": LAYOUTS[layout].exact_on,
                       "layer_errors": errors, "accuracy_budget": budget_info}
        if target == "cpu" and quantizer == "ort":
            extra_entry["cpu_layout"] = layout
        return _finish(staged, out_dir, opened, tag, v, spec, reference, verify, backend, extra_entry, force)


def _fit_budget(budget, data, fp32: Path, staged: Path, errors: list[dict], excluded: list[str], quantize,
                backend: str) -> tuple[list[str], dict]:
    """Keep the fewest layers in float (ranked by the error they add) until INT8's top-1 on the
    budget's data is within `budget.max_drop` of FP32's; re-quantizes `staged` as it goes. Returns the
    layers kept and the manifest's record. Raises CheckFailed with the best found if it can't."""
    from .backends import make_runner
    from .bench import time_runner
    from .budget import score, search, unmet

    def logits(path: Path) -> np.ndarray:
        with make_runner(backend, path) as r:
            outs = [r.infer({"input": data.x[i:i + 32]}) for i in range(0, len(data.x), 32)]
            return np.concatenate([o.get("logits", o.get("probabilities")) for o in outs])  # ranked: either will do

    def latency(path: Path) -> float:
        with make_runner(backend, path) as r:
            return time_runner(r, {"input": data.x[:1]}, warmup=2, runs=5)["median_ms"]

    fp32_logits = logits(fp32)
    fp32_pred = fp32_logits.argmax(1)
    fp32_score = score(fp32_logits, data, fp32_pred)
    all_int8_ms = latency(staged)
    ranking = [e["node"] for e in errors if e["node"] not in excluded]
    limit = max(1, len(errors) // 2)

    def evaluate(kept: list[str]) -> float:
        if kept:
            quantize(kept)
        got = score(logits(staged), data, fp32_pred)
        log.info("accuracy budget: %d layer(s) in float (%s): %.2f (FP32 %.2f)", len(kept), ", ".join(kept) or "none",
                 got, fp32_score)
        return got

    with step(f"fitting --max-drop {budget.max_drop:g} on {data.source}"):
        result = search(ranking, fp32_score, evaluate, budget.max_drop, limit)
    if not result.met:
        raise unmet(budget, result, limit, len(errors))
    if result.tries[-1]["kept_fp32"] != result.kept:
        quantize(result.kept)  # the search ended on another try
    record = {"max_drop": budget.max_drop, "eval_data": str(budget.eval_data), "eval": data.source,
              "fp32": round(result.fp32, 3), "int8": round(result.int8, 3), "drop": round(result.drop, 3),
              "kept_fp32": result.kept, "ranking": ranking, "tries": result.tries,
              "latency_ms_b1": {"all_int8": all_int8_ms, "with_kept_fp32": latency(staged) if result.kept else all_int8_ms,
                                "backend": backend}}
    log.info("accuracy budget met: %.2f points below FP32 with %d layer(s) in float", result.drop, len(result.kept))
    return result.kept, record


def equalize_copy(private: Path) -> tuple[Equalization, onnx.ModelProto]:
    """Cross-layer equalization of the private FP32 copy, in place (its side file rescaled through a
    memory map: the weights are never held twice). Returns what was done and the copy's graph (BatchNorms
    folded away, where it had any)."""
    model = onnx.load(str(private), load_external_data=False)
    done = equalize(model, base_dir=private.parent)
    onnx.save(model, str(private))  # the graph: inline tensors, and BatchNorms folded away if there were any
    log.info("equalized %d layer pair(s) of %s in %d pass(es) (largest channel scale %.3g)", len(done.pairs),
             private.name, done.passes, done.max_scale)
    return done, model


def _quantize_ort(src: Path, private: Path, staged: Path, graph: onnx.ModelProto, data, target: str, method: str,
                  excluded: list[str], layout_name: str, equalization: Equalization | None, advance=None) -> dict:
    """ONNX Runtime's static quantizer on `private` (a private copy of `src`), with ranges cached per
    model, data, method and op set."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    ops = COMPUTE_OPS + (CPU_PASS_THROUGH if target == "cpu" else [])
    layout = LAYOUTS[layout_name]
    act, weight = getattr(QuantType, layout.activation), getattr(QuantType, layout.weight)
    if target == "tensorrt":
        extra = {"ActivationSymmetric": True, "AddQDQPairToWeight": True}
    else:
        extra = {"ActivationSymmetric": act == QuantType.QInt8, "ForceQuantizeNoInputCheck": True}
        excluded = excluded + _touching_outputs(graph, CPU_PASS_THROUGH)
    extra |= {"WeightSymmetric": weight == QuantType.QInt8, "QuantizeBias": False, "DedicatedQDQPair": target == "tensorrt",
              "OpTypesToExcludeOutputQuantization": COMPUTE_OPS, "CalibStridedMinMax": data.stride}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    op_set = hashlib.sha256(",".join(ops).encode()).hexdigest()[:8]
    graph_tag = "-cle" if equalization else ""  # equalized weights have other activation ranges
    cache = CACHE_DIR / f"{artifact_sha256(src)[:16]}{graph_tag}-{data.sha256[:16]}-{method}-{op_set}.json"
    hit = cache.exists()
    if hit:
        log.info("using the cached ranges in %s", cache)
    with _quiet_root_logger():
        quantize_static(str(private), str(staged), Reader(data.batches, on_batch=advance), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=layout.per_channel, activation_type=act,
                        weight_type=weight, reduce_range=layout.reduce_range, nodes_to_exclude=excluded,
                        calibrate_method=getattr(CalibrationMethod, {"minmax": "MinMax"}.get(method, method.title())),
                        use_external_data_format=True, extra_options=extra, calibration_cache_path=str(cache))
    return {"method": method, "cache": str(cache), "cache_hit": hit}


def _touching_outputs(graph: onnx.ModelProto, op_types: list[str]) -> list[str]:
    """Nodes of these types that read or write a graph output: the features form's outputs stay float."""
    outputs = {o.name for o in graph.graph.output}
    return [n.name for n in graph.graph.node if n.op_type in op_types and outputs & {*n.input, *n.output}]


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizer logs advice to the root logger on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def check_calibration(calib: str | None, v: Variant, spec: FormSpec, count: int | None) -> None:
    """Read the calibration data a form would get, and drop it: BadInput now rather than after an export."""
    load_calibration(calib, v, calibration_sizes(v, spec.form, spec.size, spec.min_size), count, spec.min_size)


def int8_layout(options: Int8Options) -> str:
    """The layout an INT8 artifact gets; a cpu layout that is exact only on some CPUs says so."""
    name = options.layout
    if not LAYOUTS[name].portable and options.quantizer == "ort":  # NNCF's own layout: said in its README row
        log.warning("%s is exact only on %s: ONNX Runtime on AVX2 or AVX-512 CPUs without VNNI saturates its "
                    "16-bit sums (measured: 953 of 1,000 digits vs 963 in FP32); %s keeps accuracy on every CPU",
                    name, LAYOUTS[name].exact_on, CPU_DEFAULT)
    return name


def input_path(graph: onnx.ModelProto, nodes: list[str]) -> list[str]:
    """The non-compute nodes (pooling, ReLU, reshapes) between each named compute node and the compute
    layer before it: the cpu target quantizes them too, so a layer kept in float needs them in float
    (a quantized max-pool in front of it would still round its input with the outlier's scale)."""
    producer = {o: n for n in graph.graph.node for o in n.output}
    by_name = {n.name: n for n in graph.graph.node}
    path = []
    for name in nodes:
        src = producer.get(by_name[name].input[0]) if name in by_name else None
        while src is not None and src.op_type not in COMPUTE_OPS:
            path.append(src.name)
            src = producer.get(src.input[0]) if src.input else None
    return path


def resolve_keep_fp32(graph: onnx.ModelProto, keep: list[str]) -> list[str]:
    """`first`, `last` or node names -> the compute nodes left unquantized."""
    nodes = compute_nodes(graph)
    by_name = {n.name: n for n in nodes}
    out = []
    for k in keep:
        if k == "first":
            out.append(nodes[0].name)
        elif k == "last":
            out.append(nodes[-1].name)
        elif k in by_name:
            out.append(k)
        else:
            raise BadInput(f"--keep-fp32: no Conv/Gemm/MatMul node {k!r}",
                           hint=f"use first, last, or one of: {', '.join(list(by_name)[:6])} ...")
    return sorted(set(out))


# ---------------------------------------------------------------------------- shared

def _drop_round_trips(graph: onnx.GraphProto) -> None:
    """Remove FP32 -> FP16 -> FP32 Cast pairs that the converter puts between two FP32 (blocked)
    nodes: the detour through FP16 is what blocking them was meant to avoid."""
    def cast_to(n):
        return next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None

    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    rename = {}
    for n in graph.node:
        src = producer.get(n.input[0]) if n.input else None
        if cast_to(n) == onnx.TensorProto.FLOAT and src is not None and cast_to(src) == onnx.TensorProto.FLOAT16 \
                and n.output[0] not in outputs:
            rename[n.output[0]] = src.input[0]
    kept = [n for n in graph.node if n.output[0] not in rename]
    for n in kept:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    used = {i for n in kept for i in n.input} | outputs
    kept = [n for n in kept if cast_to(n) != onnx.TensorProto.FLOAT16 or n.output[0] in used]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in kept]
    del graph.node[:]
    graph.node.extend(copies)


def _topological_sort(graph: onnx.GraphProto) -> None:
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node], []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise CheckFailed("the converted graph has a cycle or a dangling input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _layer_errors(fp32: Path, derived: Path, batches, graphs: tuple[onnx.ModelProto, onnx.ModelProto]) -> list[dict]:
    """The manifest's per-layer error list (layer_error.py), and a log line naming the worst layer."""
    from .layer_error import layer_errors

    with step(f"measuring each layer of {derived.name} against FP32"):
        errors = layer_errors(fp32, derived, batches, graphs)
    if errors:
        worst = errors[0]
        log.info("largest per-layer error: %s (%s) adds %.4f relative L2 (output %.4f, cosine %.5f)",
                 worst.node, worst.op, worst.added, worst.rel_l2, worst.cosine)
    return [e.to_json() for e in errors]


def _set_meta(model: onnx.ModelProto, values: dict[str, str]) -> None:
    onnx.helper.set_model_props(model, {p.key: p.value for p in model.metadata_props} | values)


def _finish(staged: Path, out_dir: Path, src: Artifact, precision: str, v: Variant, spec: FormSpec, reference: Runner | Expected | None,
            verify: bool, backend: str, extra: dict, force: bool) -> Artifact:
    """Check, compare with the reference (default: the FP32 ONNX), publish, record."""
    from .backends.ort import OrtRunner

    entry = {"kind": "onnx", "form": spec.form, "precision": precision, "source": src.path.name, "variant": v.name,
             "input_sizes": spec.input_sizes(), **extra}
    check = (lambda path: verify_artifact(path, reference or OrtRunner(src), v, spec, precision, backend)) if verify else None
    return publish_checked(staged, out_dir, entry, check, force)
