"""Latency measurement for any runner, and the machine's GEMM rates (the compute floor)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .backends.base import Runner, as_input


def time_runner(runner: Runner, feed: dict[str, np.ndarray], warmup: int = 2, runs: int = 10,
                max_seconds: float = 30.0, duration: float | None = None) -> dict:
    """Wall-clock latency per batch (ms) after `warmup` calls (the first one reported as
    `first_ms`): `runs` timed calls, or as many as fit in `duration` seconds (at least 3);
    stops early after max_seconds."""
    t0 = time.perf_counter()
    runner.infer(feed)
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup - 1):
        runner.infer(feed)
    times, start = [], time.perf_counter()
    limit = duration if duration else max_seconds
    while (len(times) < 3 or time.perf_counter() - start < limit) and (duration or len(times) < runs):
        t0 = time.perf_counter()
        runner.infer(feed)
        times.append((time.perf_counter() - t0) * 1e3)
    batch = len(next(iter(feed.values())))
    return latency_stats(times, batch) | {"first_ms": round(first, 2)}


def latency_stats(times_ms: list[float], batch: int) -> dict:
    t = np.asarray(times_ms)
    med = float(np.median(t))
    return {"median_ms": round(med, 3), "p90_ms": round(float(np.percentile(t, 90)), 3),
            "p99_ms": round(float(np.percentile(t, 99)), 3), "mean_ms": round(float(t.mean()), 3),
            "std_ms": round(float(t.std()), 3), "min_ms": round(float(t.min()), 3), "max_ms": round(float(t.max()), 3),
            "runs": len(t), "batch": batch, "images_per_s": round(batch * 1e3 / med, 2)}


def time_runner_cuda(make, feed: dict[str, np.ndarray], warmup: int = 3, runs: int = 20,
                     device_io: bool = True) -> list[dict]:
    """GPU timing with CUDA events, after a synchronised warm-up, two ways: `host` (numpy in and
    out: the host<->device copies included) and, with `device_io`, `device` (input already a CUDA
    tensor, outputs left on the GPU: the engine alone). Events are recorded on the runner's own
    stream. `make(device_io)` returns an active-able runner. Each row's `gpu_mem_mb` is the device
    memory the runner holds after warm-up (cudaMemGetInfo, so TensorRT's own allocations count,
    which torch's allocator statistics miss), `torch_peak_mb` torch's allocator peak in that row."""
    import torch

    name, x = next(iter(feed.items()))
    batch = len(x)
    rows = {}
    for mode, on_device in (("host", False), ("device", True))[:2 if device_io else 1]:
        runner = make(on_device)
        free = None
        if torch.cuda.is_available():  # else activation says what is missing, in one line
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            free = torch.cuda.mem_get_info()[0]
        with runner:
            stream = torch.cuda.ExternalStream(runner.stream_handle) if hasattr(runner, "stream_handle") else None
            data = {name: torch.from_numpy(x).cuda()} if on_device else feed
            for _ in range(warmup):
                runner.infer(data)
            torch.cuda.synchronize()
            held = (free - torch.cuda.mem_get_info()[0]) / 2**20
            times = []
            for _ in range(runs):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(stream)
                runner.infer(data)
                end.record(stream)
                end.synchronize()
                times.append(start.elapsed_time(end))
            rows[mode] = {**latency_stats(times, batch), "timing": f"cuda-events,{mode}-io", "runtime": runner.name,
                          "config": runner.config, "gpu_mem_mb": round(held, 1),
                          "torch_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
            del data
    return list(rows.values())


def time_serving(runner: Runner, feed: dict[str, np.ndarray], concurrency: int, runs: int) -> dict:
    """Throughput with `concurrency` requests in flight (after one warm-up round): images/s over the
    wall time, and the per-request latency percentiles a client sees."""
    runner.serve(feed, concurrency, concurrency)
    requests = max(runs, 2 * concurrency)
    latencies, wall = runner.serve(feed, concurrency, requests)
    batch = len(next(iter(feed.values())))
    return latency_stats(latencies, batch) | {"concurrency": concurrency,
                                              "images_per_s": round(requests * batch / wall, 2)}


@dataclass(frozen=True)
class ForeignInput:
    """The input of an ONNX without vggdeploy metadata, as trtexec takes one: its name, element type and
    dims after the batch (from the graph, or --shape where the graph leaves them free). Timed on
    standard-normal data: no preprocessing is known."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    @classmethod
    def of(cls, artifact, shape: tuple[int, ...] | None, batches: list[int]) -> "ForeignInput":
        """Judged against the graph: BadInput for a free dim without --shape, a --shape of another
        rank or against a fixed dim, or a batch the graph fixes otherwise."""
        from .errors import BadInput

        ins = artifact.io[0]
        if len(ins) != 1:
            raise BadInput(f"{artifact.name} has {len(ins)} inputs; bench feeds one", hint="give an ONNX with one image input")
        name, _, dims = ins[0]
        if not dims:
            raise BadInput(f"{artifact.name}'s input {name!r} has no shape", hint="give --shape, e.g. 3x224x224")
        batch, rest = dims[0], tuple(dims[1:])
        if batch > 0 and set(batches) != {batch}:
            raise BadInput(f"{artifact.name} fixes the batch at {batch}", hint=f"--batch {batch}")
        graph_dims = "x".join(str(d) if d > 0 else "?" for d in rest)
        if shape is not None:
            if len(shape) != len(rest) or any(f > 0 and f != g for f, g in zip(rest, shape)):
                raise BadInput(f"--shape {'x'.join(map(str, shape))} does not fit {artifact.name}'s input "
                               f"{graph_dims} (after the batch)")
            rest = shape
        if any(d <= 0 for d in rest):
            raise BadInput(f"{artifact.name}'s input {name!r} is {graph_dims} "
                           "after the batch, and it has no vggdeploy metadata to say the size",
                           hint="give --shape with every dim after the batch, e.g. --shape 3x224x224")
        return cls(name, artifact.input_dtype or "float32", rest)

    @property
    def size(self) -> str:
        """H x W where the channel dim is first or last (1 to 4 channels), else every dim."""
        d = self.dims
        hw = d[1:] if len(d) == 3 and d[0] <= 4 else d[:2] if len(d) == 3 and d[-1] <= 4 else d
        return "x".join(map(str, hw))

    def batch(self, n: int) -> np.ndarray:
        return np.random.default_rng(0).standard_normal((n, *self.dims)).astype(self.dtype)


def bench_artifact(path, backend: str, batches: list[int], size: tuple[int, int] | None = None,
                   runs: int = 10, hint: str = "auto", duration: float | None = None,
                   concurrency: list[int] | None = None, foreign: ForeignInput | None = None,
                   profile_layers: bool = False) -> list[dict]:
    """Time one artifact (a path or an Artifact) on one runtime at several batch sizes, on the bundled photos
    (an ONNX without vggdeploy metadata: on `foreign`'s random input). Each batch size loads the runtime
    anew: `start_s` + `first_ms` is the cold start. `profile_layers`: each row also gets `layers`, ms per
    layer type from the runtime's own profiler, in a separate run (profiling slows the timed one). The
    options are the caller's to judge (benchrun.run_bench judges a whole run's before any is timed)."""
    from .backends import GPU_BACKENDS, cpu_backend_for, make_runner
    from .artifact import described
    from .data import photo_batch

    source = described(path)
    if foreign is None:
        v, spec = source.variant, source.spec
        size = size or tuple(spec.size)
        label, name, inputs = f"{size[0]}x{size[1]}", "input", lambda b: photo_batch(v, size, b)[1]
    else:
        label, name, inputs = foreign.size, foreign.name, foreign.batch
    if backend == "cpu":
        # resolved here, not by make_runner, because the OpenVINO hint depends on it
        backend = cpu_backend_for(path, source.precision, source.int8_layout)
    rows = []
    if backend in GPU_BACKENDS or backend == "torch-compile-cuda":
        for b in batches:
            # ONNX Runtime's run takes and returns host arrays: only the row with the copies applies
            feed = {name: inputs(b)}
            for row in time_runner_cuda(lambda io: make_runner(backend, path, **({"device_io": io} if io else {})),
                                        feed, runs=runs, device_io=not backend.startswith("onnxruntime")):
                rows.append({**row, "size": label, **_layers(profile_layers, backend, path, feed, runs)})
        return rows
    for b in batches:
        options = {"size": size} if backend == "pt2e" else {}  # PT2E is calibrated at the size it runs
        if backend == "openvino":
            options["hint"] = hint if hint != "auto" else ("latency" if b == 1 else "throughput")
        t0 = time.perf_counter()
        with make_runner(backend, path, **options) as runner:
            start = time.perf_counter() - t0
            feed = {name: as_input(runner, inputs(b))}
            stats = time_runner(runner, feed, runs=runs, duration=duration)
            rows.append({"runtime": runner.name, "config": runner.config, "size": label,
                         "start_s": round(start, 2), "timing": "wall-clock", "concurrency": 1, **stats})
        rows[-1] |= _layers(profile_layers, backend, path, feed, runs)
        for n in concurrency or []:  # a server's load: n requests in flight, the runtime's throughput setting
            with make_runner(backend, path, **({"hint": "throughput"} if backend == "openvino" else {})) as runner:
                rows.append({"runtime": runner.name, "config": runner.config, "size": label, "start_s": None,
                             "timing": f"serving,{n}-in-flight", **time_serving(runner, feed, n, runs)})
    return rows


PROFILED = ("onnxruntime", "openvino", "tensorrt", "onnxruntime-cuda", "onnxruntime-tensorrt")


def _layers(wanted: bool, backend: str, path, feed: dict[str, np.ndarray], runs: int) -> dict:
    """{"layers": ms per layer type, "layers_runtime": the profiled runner} from a runner with its
    profiler on (OpenVINO at its latency hint: one request runs the whole batch), or nothing (not
    asked; eager and peers have no profile here)."""
    from .backends import make_runner

    if not wanted or backend not in PROFILED:
        return {}
    with make_runner(backend, path, profile=True, **({"hint": "latency"} if backend == "openvino" else {})) as runner:
        return {"layers": runner.layer_times(feed, runs), "layers_runtime": runner.name}


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
    from .signals import reset_signal_stack

    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model, b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                       "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    reset_signal_stack()
    return lambda feed: req.infer(list(feed.values()))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
