"""The runner interface: activate, infer on numpy batches, deactivate; a context manager."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Runner(ABC):
    """One model on one runtime (Polygraphy's runner shape): `activate` loads it, `infer` runs a
    checked batch, `deactivate` releases it; use it as a context manager. `name` says the runtime that
    runs it once active (e.g. openvino[CPU,latency,f32]); `config` its settings."""

    name: str = "runner"
    active: bool = False  # between activate() and deactivate()
    channels: int | None = None  # the input's channel count, where the model declares it

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        """Load the model; expensive work happens here, not in __init__."""
        self._activate()
        self.active = True

    @abstractmethod
    def _activate(self) -> None:
        """The backend's load."""

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: {input name: (N, C, H, W) array} -> {output name: array}, in output order.

        The feed is checked here, before the backend sees it, so every backend refuses the same bad
        feeds the same way (BadInput: not one 4-D batch, an empty batch, NaN or infinite values, and
        for an artifact a size or dtype it does not take); then the backend's `_infer` runs it.
        """
        if not self.active:
            from ..errors import BadInput

            raise BadInput(f"{self.name} is not active: it was never activated, or was closed",
                           hint="use it as a context manager (`with runner: runner.infer(...)`) or call runner.activate()")
        self.check_feed(feed)
        return self._infer(feed)

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The backend's run of a checked feed."""

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        """BadInput unless `feed` is one {name: batch} with a non-empty (N, C, H, W) batch whose
        values (for numpy floats) are finite. Backends add what their model declares."""
        from ..errors import BadInput

        if not isinstance(feed, dict) or len(feed) != 1:
            raise BadInput("a feed is one {input name: batch} dict", hint='e.g. runner.infer({"input": batch})')
        for name, x in feed.items():
            expected = getattr(self, "input_name", None)
            if expected and name != expected:
                raise BadInput(f"input {name!r}: the model's input is {expected!r}", hint=f"runner.infer({{{expected!r}: batch}})")
            shape = tuple(getattr(x, "shape", ()))
            if len(shape) != 4 or not shape[0]:
                raise BadInput(f"input {name!r} has shape {shape}: give a non-empty (N, C, H, W) batch",
                               hint="one image is x[None] (a batch of one)")
            if self.channels and shape[1] != self.channels:
                raise BadInput(f"input {name!r} has {shape[1]} channel(s); the model takes {self.channels}",
                               hint="give (N, C, H, W) batches: channels first")
            if isinstance(x, np.ndarray) and x.dtype.kind != "f":
                raise BadInput(f"input {name!r} is {x.dtype}: give a float batch (preprocessed pixels)",
                               hint="x.astype(np.float32)")
            if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
                raise BadInput(f"input {name!r} holds NaN or infinite values", hint="check the preprocessing")

    def layer_times(self, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
        """Milliseconds per layer type in one inference of `feed` (the median over `runs`, after one
        warm-up), from the runtime's own profiler; the runner must have been made with profile=True.
        Runtimes without one say so (MissingEnvironment)."""
        from ..errors import MissingEnvironment

        raise MissingEnvironment(f"{self.name} has no per-layer profiler here",
                                 hint="--profile-layers reads OpenVINO's performance counters, ONNX Runtime's "
                                      "profiler and TensorRT's IProfiler")

    def require_profiler(self) -> None:
        """BadInput unless the runner was made with profile=True (its runtime's profiler on)."""
        if not getattr(self, "profile", False):
            from ..errors import BadInput

            raise BadInput(f"{self.name} was made without its profiler", hint="make_runner(..., profile=True)")

    def deactivate(self) -> None:
        """Release the model."""
        self.active = False
        self._deactivate()

    def _deactivate(self) -> None:
        """The backend's release."""

    @property
    def config(self) -> dict:
        """The settings the runtime runs with once active (threads, streams, hints), as it reports
        them where it can: benchmark rows record it."""
        return {}

    def serve(self, feed: dict[str, np.ndarray], concurrency: int, requests: int) -> tuple[list[float], float]:
        """A server's load: `requests` inferences of `feed` with `concurrency` in flight. Returns each
        request's latency (ms) and the wall time (s). Threads calling `infer` (ONNX Runtime's
        sessions are thread-safe); runtimes with their own queue override this."""
        import time
        from concurrent.futures import ThreadPoolExecutor

        def one(_):
            t0 = time.perf_counter()
            self.infer(feed)
            return (time.perf_counter() - t0) * 1e3

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(one, range(requests)))
        return latencies, time.perf_counter() - start

    @property
    @abstractmethod
    def output_names(self) -> list[str]: ...


class ArtifactRunner(Runner):
    """A runner for a vggdeploy ONNX artifact: checks inputs against the sizes it declares."""

    def __init__(self, path):
        """path: an artifact's path or an opened `Artifact` (then nothing is read again)."""
        from ..artifact import Artifact

        self.artifact = path if isinstance(path, Artifact) else None
        self.path = self.artifact.path if self.artifact else Path(path)
        self.spec = None
        self.int8_layout: str | None = None
        self.input_dtype: np.dtype | None = None  # float16 for an `--io fp16` artifact
        self.graph_outputs: list[str] = []
        self.input_name: str | None = None

    def load_spec(self) -> None:
        """The declared input sizes, input and output names from the artifact (opened once)."""
        from ..artifact import Artifact, kind_of

        if kind_of(self.artifact or self.path) != "onnx":  # e.g. an OpenVINO IR: no vggdeploy metadata to check against
            return
        self.artifact = Artifact.of(self.artifact or self.path)
        a = self.artifact
        self.spec, self.int8_layout, self.graph_outputs = a.spec, a.int8_layout, list(a.outputs)
        self.input_name = a.input_name
        self.input_dtype = np.dtype(a.input_dtype) if a.input_dtype else None
        dims = a.io[0][0][2] if a.io[0] else []
        self.channels = dims[1] if len(dims) == 4 and dims[1] > 0 else None

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        """The base checks, then the sizes and the input type the artifact declares."""
        from ..errors import BadInput

        super().check_feed(feed)
        for name, x in feed.items():
            if not isinstance(x, np.ndarray):  # e.g. a CUDA torch tensor: its dtype has no numpy `kind`
                raise BadInput(f"input {name!r} is a {type(x).__module__}.{type(x).__name__}; {self.name} takes numpy arrays",
                               hint="pass x.cpu().numpy() (only the tensorrt and torch runners take device tensors)")
            if self.spec is not None:
                self.spec.check_size(*x.shape[2:])
            if self.input_dtype is not None and x.dtype.kind == "f" and x.dtype != self.input_dtype:
                raise BadInput(f"input {name!r} is {x.dtype}; {self.path.name} takes {self.input_dtype}",
                               hint=f"cast the batch: x.astype(np.{self.input_dtype})")

    def load_error(self, runtime: str, e: Exception):
        """A runtime's refusal to load the model, as one line (its message's first)."""
        from ..errors import BadInput, OutOfMemory, first_line, out_of_memory

        if out_of_memory(e):
            return OutOfMemory.of(e)
        return BadInput(f"{runtime} can't load {self.path.name}: {first_line(e)[:300]}",
                        hint=f"`vggdeploy verify {self.path.parent}` checks the artifact folder")


def median_by_type(per_run: list[dict[str, float]]) -> dict[str, float]:
    """{layer type: ms} for each run -> each type's median over the runs, largest first."""
    types = {t for run in per_run for t in run}
    median = {t: float(np.median([run.get(t, 0.0) for run in per_run])) for t in types}
    return {t: round(ms, 3) for t, ms in sorted(median.items(), key=lambda kv: -kv[1])}


def as_input(runner: Runner, x: np.ndarray) -> np.ndarray:
    """A float32 batch in the runner's input type (float16 for an `--io fp16` artifact)."""
    dtype = getattr(runner, "input_dtype", None)
    return x if dtype is None or x.dtype == dtype else x.astype(dtype)
