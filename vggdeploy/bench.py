"""Latency measurement for any runner, and the machine's GEMM rates (the compute floor)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from .backends.base import Runner


def time_runner(runner: Runner, feed: dict[str, np.ndarray], warmup: int = 2, runs: int = 10,
                max_seconds: float = 30.0) -> dict:
    """Median and spread of wall-clock latency per batch (ms); stops early after max_seconds."""
    for _ in range(warmup):
        runner.infer(feed)
    times, start = [], time.perf_counter()
    while len(times) < runs and (len(times) < 3 or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        runner.infer(feed)
        times.append((time.perf_counter() - t0) * 1e3)
    batch = len(next(iter(feed.values())))
    med = statistics.median(times)
    return {"median_ms": round(med, 2), "min_ms": round(min(times), 2), "max_ms": round(max(times), 2),
            "runs": len(times), "batch": batch, "images_per_s": round(batch * 1e3 / med, 2)}


def bench_artifact(path: Path, backend: str, batches: list[int], size: tuple[int, int] | None = None,
                   runs: int = 10, hint: str = "auto") -> list[dict]:
    """Time one artifact on one runtime at several batch sizes, on the bundled photos."""
    from .backends import default_cpu_backend, make_runner
    from .data import photo_batch
    from .errors import BadInput
    from .precision import source_variant

    meta, v, spec = source_variant(path)
    if not batches or min(batches) < 1:
        raise BadInput("--batch needs positive batch sizes")
    size = size or tuple(spec.size)
    spec.check_size(*size)
    if backend == "cpu":
        # resolved here, not by make_runner, because the OpenVINO hint depends on it
        backend = default_cpu_backend(meta.get("vggdeploy.precision", "fp32"))
    rows = []
    for b in batches:
        options = {}
        if backend == "openvino":
            options["hint"] = hint if hint != "auto" else ("latency" if b == 1 else "throughput")
        t0 = time.perf_counter()
        with make_runner(backend, path, **options) as runner:
            start = time.perf_counter() - t0
            stats = time_runner(runner, {"input": photo_batch(v, size, b)[1]}, runs=runs)
            rows.append({"runtime": runner.name, "size": f"{size[0]}x{size[1]}", "start_s": round(start, 2), **stats})
    return rows


def gemm_rates(n: int = 2048, runs: int = 5) -> dict[str, float]:
    """Best GMAC/s on n^3 GEMMs: FP32 MatMul and INT8 (u8 x s8) on ONNX Runtime and OpenVINO.

    The floor for a model is its MACs over the best rate of its precision (DESIGN.md fact 12).
    """
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a8, b8 = rng.integers(0, 100, (n, n)).astype(np.uint8), rng.integers(-50, 50, (n, n)).astype(np.int8)
    af, bf = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    vi = helper.make_tensor_value_info
    int8_graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8",
                                   [vi("a", TensorProto.UINT8, [n, n]), vi("b", TensorProto.INT8, [n, n])],
                                   [vi("c", TensorProto.INT32, [n, n])])
    # the Q/DQ form OpenVINO lowers to an INT8 GEMM: float input, quantized on the fly, int8 weights
    qdq_graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["a", "s", "zu"], ["aq"]),
         helper.make_node("DequantizeLinear", ["aq", "s", "zu"], ["ad"]),
         helper.make_node("DequantizeLinear", ["w", "s", "zs"], ["wd"]),
         helper.make_node("MatMul", ["ad", "wd"], ["c"])], "qdq",
        [vi("a", TensorProto.FLOAT, [n, n])], [vi("c", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("zu", TensorProto.UINT8, [], [128]),
         helper.make_tensor("zs", TensorProto.INT8, [], [0]),
         helper.make_tensor("w", TensorProto.INT8, [n, n], b8.tobytes(), raw=True)])
    fp32_graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "fp32",
                                   [vi("a", TensorProto.FLOAT, [n, n]), vi("b", TensorProto.FLOAT, [n, n])],
                                   [vi("c", TensorProto.FLOAT, [n, n])])
    cases = {"fp32/onnxruntime": (fp32_graph, {"a": af, "b": bf}), "int8/onnxruntime": (int8_graph, {"a": a8, "b": b8}),
             "fp32/openvino": (fp32_graph, {"a": af, "b": bf}), "int8/openvino": (qdq_graph, {"a": af})}
    rates = {}
    for key, (graph, feed) in cases.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
        run = _ort(model) if key.endswith("onnxruntime") else _openvino(model)
        if run is None:
            continue
        run(feed)
        rates[key] = round(n ** 3 / min(_timed(lambda: run(feed)) for _ in range(runs)) / 1e9, 1)
    for precision in ("fp32", "int8"):
        rates[precision] = max(v for k, v in rates.items() if k.startswith(precision + "/"))
    return rates


def _ort(model: bytes):
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return lambda feed: sess.run(None, feed)


def _openvino(model: bytes):
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model, b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                       "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    return lambda feed: req.infer(list(feed.values()))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
