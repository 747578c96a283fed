"""Calibrated INT8 (Q/DQ) artifacts from an FP32 ONNX (DESIGN.md facts 2-3, 8). INT8 has a target:
`tensorrt` (the layout its parser wants) or `cpu` (the layout measured fastest on the CPU runtimes,
see benchmarks/); cross-layer equalization first, an accuracy budget on demand."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx

from .store import artifact_sha256, cache_root, copy_into, prepare_out_dir, staging
from .backends.base import Runner
from .budget import AccuracyBudget, load_eval_set
from .calibration import Reader, calibration_sizes, load_calibration
from .equalize import Equalization, equalize
from .errors import CheckFailed
from .forms import FormSpec
from .artifact import Artifact
from .naming import derived_name
from .parity import Expected
from .layouts import CPU_DEFAULT, LAYOUTS, Int8Options
from .progress import step
from .qdq import qdq_violations
from .variants import Variant
from .derived import finish, measure_layers, set_meta, source_model
from .graph_edits import COMPUTE_OPS, input_path, resolve_keep_fp32, touching_outputs

log = logging.getLogger("vggdeploy")


CACHE_DIR = cache_root() / "calibration"




# cpu target: pooling and reshaping between quantized layers run on the 8-bit tensors too. ORT only
# quantizes them behind an already quantized tensor unless forced; forced, the ReLU before each pool
# gets the Q/DQ, so the conv writes u8 and the pool reads u8 (NNCF's layout; benchmarks/nncf_bench.py)
CPU_PASS_THROUGH = ["MaxPool", "AveragePool", "Reshape", "Flatten"]


def to_int8(artifact: Path | Artifact, out_dir: Path | None = None, *, target: str | None = None, method: str = "minmax",
            calib: str | None = None, calib_count: int | None = None, keep_fp32: list[str] | None = None,
            cpu_layout: str | None = None, quantizer: str = "ort", equalize: bool = True,
            budget: AccuracyBudget | None = None, reference: Runner | Expected | None = None, verify: bool = True, force: bool = False,
            backend: str = "cpu", options: Int8Options | None = None) -> Artifact:
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
    MissingEnvironment (the quantizer's package is missing). `options`: an Int8Options already judged
    (a PrecisionPlan's), in place of target, method, calib_count, cpu_layout, quantizer, equalize and budget."""
    options = options or Int8Options(target, method, calib_count, cpu_layout, quantizer, equalize, budget)
    target, method, calib_count, quantizer, equalize, budget = (options.target, options.method, options.calib_count,
                                                                options.quantizer, options.equalize, options.budget)
    src = Path(artifact)
    graph, opened = source_model(artifact)
    meta, v, spec = opened.meta, opened.variant, opened.spec
    out_dir = Path(out_dir or src.parent)
    tag = f"int8-{target}"
    name = derived_name(src, tag)
    prepare_out_dir(out_dir, [name], force)
    excluded = resolve_keep_fp32(graph, keep_fp32 or [])
    layout = int8_layout(options)
    data = load_calibration(calib, v, calibration_sizes(v, spec.form, spec.size, spec.min_size), calib_count,
                            spec.min_size, meta.preprocessing)
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
            set_meta(model, source_props | meta.replace(precision=tag, calibration=info, fp32_nodes=tuple(in_float),
                                                         int8_layout=layout, int8_exact_on=LAYOUTS[layout].exact_on).to_props())
            onnx.save(model, str(staged))  # graph only: the side file is already beside it
            latest["calibration"], latest["in_float"], latest["graph"] = info, in_float, model
            return info

        latest: dict = {}
        quantize([])
        errors = measure_layers(private, staged, data.batches, (fp32_graph, latest["graph"]))
        kept, budget_info = [], None
        if options.budget:
            kept, budget_info = _fit_budget(options.budget, budget_set, private, staged, errors, excluded, quantize, backend)
            if kept:  # the manifest describes the artifact written: its kept layers add nothing now
                errors = measure_layers(private, staged, data.batches, (fp32_graph, latest["graph"]))
        extra_entry = {"target": target, "quantizer": quantizer, "calibration": latest["calibration"],
                       "fp32_nodes": latest["in_float"], "int8_layout": layout, "exact_on": LAYOUTS[layout].exact_on,
                       "layer_errors": errors, "accuracy_budget": budget_info}
        if target == "cpu" and quantizer == "ort":
            extra_entry["cpu_layout"] = layout
        return finish(staged, out_dir, opened, tag, v, spec, reference, verify, backend, extra_entry, force)


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
    with step(f"equalizing the channels of {private.name}"):  # VGG16's dense form: about 15 s
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
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    ops = COMPUTE_OPS + (CPU_PASS_THROUGH if target == "cpu" else [])
    layout = LAYOUTS[layout_name]
    act, weight = getattr(QuantType, layout.activation), getattr(QuantType, layout.weight)
    if target == "tensorrt":
        extra = {"ActivationSymmetric": True, "AddQDQPairToWeight": True}
    else:
        extra = {"ActivationSymmetric": act == QuantType.QInt8, "ForceQuantizeNoInputCheck": True}
        excluded = excluded + touching_outputs(graph, CPU_PASS_THROUGH)
    extra |= {"WeightSymmetric": weight == QuantType.QInt8, "QuantizeBias": False, "DedicatedQDQPair": target == "tensorrt",
              "OpTypesToExcludeOutputQuantization": COMPUTE_OPS}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    op_set = hashlib.sha256(",".join(ops).encode()).hexdigest()[:8]
    graph_tag = "-cle" if equalization else ""  # equalized weights have other activation ranges
    cache = CACHE_DIR / f"{artifact_sha256(src)[:16]}{graph_tag}-{data.sha256[:16]}-{method}-{op_set}.json"
    hit = cache.exists()
    if hit:
        log.info("using the cached ranges in %s", cache)
    with _quiet_root_logger():
        if not hit:
            _calibrate_ort(private, data, ops, method, cache, advance)
        quantize_static(str(private), str(staged), None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=layout.per_channel, activation_type=act,
                        weight_type=weight, reduce_range=layout.reduce_range, nodes_to_exclude=excluded,
                        calibrate_method=_calibration_method(method), use_external_data_format=True,
                        extra_options=extra, calibration_cache_path=str(cache))
    return {"method": method, "cache": str(cache), "cache_hit": hit}


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, {"minmax": "MinMax"}.get(method, method.title()))


def _calibrate_ort(private: Path, data, ops: list[str], method: str, cache: Path, advance=None) -> None:
    """ONNX Runtime's calibrator on `private`, its ranges saved to `cache` for quantize_static to read.
    Apart from quantize_static, whose calibration holds its own copy of the weights beside the
    calibrator's and its session's (VGG16's dense form: 0.5 GB more at the journey's peak); a step's
    batches at a time, as its CalibStridedMinMax option does."""
    import tempfile

    from onnxruntime.quantization import create_calibrator, save_tensors_data

    reader = Reader(data.batches, on_batch=advance)
    with tempfile.TemporaryDirectory(prefix="ort.quant.", dir=private.parent) as tmp:
        calibrator = create_calibrator(private, ops, augmented_model_path=str(Path(tmp) / "augmented_model.onnx"),
                                       calibrate_method=_calibration_method(method), use_external_data_format=True)
        for start in range(0, len(reader), data.stride):
            reader.set_range(start_index=start, end_index=start + data.stride)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache)


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
