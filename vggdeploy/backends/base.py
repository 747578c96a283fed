"""The runner interface: activate, infer on numpy batches, deactivate; a context manager."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runner(ABC):
    name: str = "runner"

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    @abstractmethod
    def activate(self) -> None:
        """Load the model; expensive work happens here, not in __init__."""

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: {input name: array} -> {output name: array}, in output order."""

    def deactivate(self) -> None:
        """Release the model."""

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
        from pathlib import Path

        self.path = Path(path)
        self.spec = None
        self.int8_layout: str | None = None
        self.input_dtype: np.dtype | None = None  # float16 for an `--io fp16` artifact
        self.graph_outputs: list[str] = []

    def load_spec(self) -> None:
        """Read the declared input sizes and the output names from the graph (not the weights)."""
        from ..forms import spec_from_metadata
        from ..inspect import check_metadata, load_graph, metadata_of

        if self.path.suffix != ".onnx":  # e.g. an OpenVINO IR: no vggdeploy metadata to check against
            return
        from onnx.helper import tensor_dtype_to_np_dtype

        from ..artifacts import check_onnx_files
        from ..layouts import layout_of

        graph = load_graph(self.path)
        check_onnx_files(self.path, graph)
        meta = metadata_of(graph)
        if "vggdeploy.form" in meta:
            check_metadata(meta, self.path)
        self.spec = spec_from_metadata(meta)
        self.int8_layout = layout_of(meta, graph)
        self.graph_outputs = [o.name for o in graph.graph.output]
        self.input_dtype = np.dtype(tensor_dtype_to_np_dtype(graph.graph.input[0].type.tensor_type.elem_type))

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        from ..errors import BadInput

        for name, x in feed.items():
            if self.spec is not None and x.ndim == 4:
                self.spec.check_size(*x.shape[2:])
            if self.input_dtype is not None and x.dtype.kind == "f" and x.dtype != self.input_dtype:
                raise BadInput(f"input {name!r} is {x.dtype}; {self.path.name} takes {self.input_dtype}",
                               hint=f"cast the batch: x.astype(np.{self.input_dtype})")
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                raise BadInput(f"input {name!r} holds NaN or infinite values", hint="check the preprocessing")

    def load_error(self, runtime: str, e: Exception):
        """A runtime's refusal to load the model, as one line (its message's first)."""
        from ..errors import BadInput, first_line

        return BadInput(f"{runtime} can't load {self.path.name}: {first_line(e)[:300]}",
                        hint=f"`vggdeploy verify {self.path.parent}` checks the artifact folder")


def as_input(runner: Runner, x: np.ndarray) -> np.ndarray:
    """A float32 batch in the runner's input type (float16 for an `--io fp16` artifact)."""
    dtype = getattr(runner, "input_dtype", None)
    return x if dtype is None or x.dtype == dtype else x.astype(dtype)
