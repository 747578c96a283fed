"""OpenVINO as a runner: the same ONNX artifacts, on CPU, at the INT8 GEMM limit (DESIGN.md fact 3).

LATENCY hint (one request, all cores on one batch) by default; THROUGHPUT splits a batch
across OpenVINO's parallel streams. The model cache makes a second start fast; OpenVINO never
prunes it (a VGG16 FP32 blob is 575 MB), so after each compile the least recently used blobs
beyond $VGGDEPLOY_OPENVINO_CACHE_GB (default 4; 0: no cache) are deleted.

On CPUs with AVX512-BF16 or AMX, OpenVINO runs float layers in bfloat16 unless told otherwise:
a silent precision change, so `inference_precision` is f32 unless you ask for bf16.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from ..store import cache_root, write_error
from ..signals import reset_signal_stack
from ..errors import BadInput, MissingEnvironment
from .base import ArtifactRunner

log = logging.getLogger("vggdeploy")
DEFAULT_CACHE = cache_root() / "openvino"
HINTS = ("latency", "throughput")
CACHE_GB = 4.0


def cache_limit_bytes() -> int:
    raw = os.environ.get("VGGDEPLOY_OPENVINO_CACHE_GB", str(CACHE_GB))
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not 0 <= gb < math.inf:
        raise BadInput(f"VGGDEPLOY_OPENVINO_CACHE_GB={raw!r} is not a size in GB", hint="e.g. 4, or 0 to keep no model cache")
    return int(gb * 1e9)


def prune_cache(cache_dir: Path, limit: int) -> list[Path]:
    """Delete the least recently used compiled blobs (by access time where the filesystem keeps
    it) until the folder holds at most `limit` bytes; the most recent one stays whatever its size.
    Another process may prune or write the same folder at once: a blob gone meanwhile is skipped."""
    blobs = []
    for blob in cache_dir.glob("*.blob"):
        try:
            st = blob.stat()
        except FileNotFoundError:
            continue
        blobs.append((max(st.st_atime, st.st_mtime), st.st_size, blob))
    blobs.sort(reverse=True)
    total, deleted = sum(size for _, size, _ in blobs), []
    for _, size, blob in reversed(blobs[1:]):
        if total <= limit:
            break
        total -= size
        blob.unlink(missing_ok=True)
        deleted.append(blob)
    return deleted


class OpenVinoRunner(ArtifactRunner):
    name = "openvino"

    def __init__(self, path: str | Path, hint: str = "latency", device: str = "CPU", cache_dir: str | Path | None = DEFAULT_CACHE,
                 threads: int | None = None, inference_precision: str = "f32", low_memory: bool = False,
                 profile: bool = False):
        if hint not in HINTS:
            raise BadInput(f"unknown OpenVINO hint {hint!r}", hint=f"choose from: {', '.join(HINTS)}")
        super().__init__(path)
        self.hint, self.device, self.threads = hint, device, threads
        self.inference_precision = inference_precision
        self.low_memory = low_memory  # no cache of per-shape kernels (dynamic-shape checks)
        self.profile = profile  # performance counters on (layer_times)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.compiled = self.request = self.queue = None
        self.used_cache = False

    def _activate(self) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MissingEnvironment("OpenVINO is not installed", hint="pip install openvino") from None
        self.load_spec()
        core = ov.Core()
        limit = cache_limit_bytes() if self.cache_dir else 0
        if self.cache_dir and limit:
            self.used_cache = write_error(self.cache_dir) is None
            if self.used_cache:
                core.set_property({"CACHE_DIR": str(self.cache_dir)})
            else:
                log.warning("OpenVINO cache folder %s can't be written: running without a model cache", self.cache_dir)
        config = {"PERFORMANCE_HINT": self.hint.upper(), "INFERENCE_PRECISION_HINT": self.inference_precision}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.profile:
            config["PERF_COUNT"] = True
        if self.low_memory and self.device == "CPU":
            config["CPU_RUNTIME_CACHE_CAPACITY"] = 0
        try:
            self.compiled = core.compile_model(str(self.path), self.device, config)
        except RuntimeError as e:
            raise self.load_error("OpenVINO", e) from None
        if self.used_cache:
            prune_cache(self.cache_dir, limit)
        self.request = self.compiled.create_infer_request()
        reset_signal_stack()
        self.name = f"openvino[{self.device},{self.hint},{self.inference_precision}]"

    @property
    def config(self) -> dict:
        prop = self.compiled.get_property
        return {"device": self.device, "hint": self.hint, "streams": int(prop("NUM_STREAMS")),
                "threads": int(prop("INFERENCE_NUM_THREADS")), "requests": int(prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
                "precision": prop("INFERENCE_PRECISION_HINT").to_string()}

    @property
    def output_names(self) -> list[str]:
        # OpenVINO keeps the ONNX outputs' order, not always their names (an FP16 graph's I/O
        # Casts give them aliases)
        return self.graph_outputs or [o.get_any_name() for o in self.compiled.outputs]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = next(iter(feed.values()))
        if self.hint == "throughput" and len(x) > 1:
            return self._infer_streams(x)
        res = self.request.infer({0: x})
        return {name: res[out] for name, out in zip(self.output_names, self.compiled.outputs)}

    def layer_times(self, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
        """From OpenVINO's performance counters (one infer request, the whole batch): each executed
        node's real time, summed by its type and the precision its kernel ran in (e.g. Convolution (I8))."""
        from .base import median_by_type

        self.require_profiler()
        self.check_feed(feed)
        x = next(iter(feed.values()))
        self.request.infer({0: x})
        per_run = []
        for _ in range(runs):
            self.request.infer({0: x})
            times: dict[str, float] = {}
            for p in self.request.profiling_info:
                if p.status == p.Status.EXECUTED:
                    key = f"{p.node_type} ({p.exec_type.rsplit('_', 1)[-1].upper()})"
                    times[key] = times.get(key, 0.0) + p.real_time.total_seconds() * 1e3
            per_run.append(times)
        return median_by_type(per_run)

    def _infer_streams(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One request per stream, each on a slice of the batch."""
        from openvino import AsyncInferQueue

        if self.queue is None:
            self.queue = AsyncInferQueue(self.compiled, self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        parts = np.array_split(x, min(len(self.queue), len(x)))
        results: dict[int, list] = {}
        self.queue.set_callback(lambda req, i: results.__setitem__(i, [req.get_output_tensor(k).data.copy()
                                                                      for k in range(len(self.compiled.outputs))]))
        for i, part in enumerate(parts):
            self.queue.start_async({0: part}, i)
        self.queue.wait_all()
        return {name: np.concatenate([results[i][k] for i in range(len(parts))])
                for k, name in enumerate(self.output_names)}

    def serve(self, feed: dict[str, np.ndarray], concurrency: int, requests: int) -> tuple[list[float], float]:
        """OpenVINO's own async queue with `concurrency` infer requests in flight."""
        import time

        from openvino import AsyncInferQueue

        self.check_feed(feed)
        x = next(iter(feed.values()))
        queue, latencies = AsyncInferQueue(self.compiled, concurrency), []
        queue.set_callback(lambda req, t0: latencies.append((time.perf_counter() - t0) * 1e3))
        start = time.perf_counter()
        for _ in range(requests):
            queue.start_async({0: x}, time.perf_counter())
        queue.wait_all()
        return latencies, time.perf_counter() - start

    def _deactivate(self) -> None:
        self.compiled = self.request = self.queue = None
