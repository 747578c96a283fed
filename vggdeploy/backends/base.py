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
