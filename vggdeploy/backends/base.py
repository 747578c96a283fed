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
    @abstractmethod
    def output_names(self) -> list[str]: ...


class ArtifactRunner(Runner):
    """A runner for a vggdeploy ONNX artifact: checks inputs against the sizes it declares."""

    def __init__(self, path):
        from pathlib import Path

        self.path = Path(path)
        self.spec = None
        self.graph_outputs: list[str] = []

    def load_spec(self) -> None:
        """Read the declared input sizes and the output names from the graph (not the weights)."""
        from ..forms import spec_from_metadata
        from ..inspect import load_graph, metadata_of

        if self.path.suffix != ".onnx":  # e.g. an OpenVINO IR: no vggdeploy metadata to check against
            return
        graph = load_graph(self.path)
        self.spec = spec_from_metadata(metadata_of(graph))
        self.graph_outputs = [o.name for o in graph.graph.output]

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        for x in feed.values():
            if self.spec is not None and x.ndim == 4:
                self.spec.check_size(*x.shape[2:])
