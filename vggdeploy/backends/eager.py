"""Eager PyTorch as a runner: the reference every artifact is compared with."""

from __future__ import annotations

import numpy as np
import torch

from .base import Runner


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, module: torch.nn.Module, output_names: list[str], input_name: str = "input"):
        self.module, self._outputs, self.input_name = module, output_names, input_name

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def activate(self) -> None:
        self.module.eval()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(feed[self.input_name])))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {n: t.float().numpy() for n, t in zip(self._outputs, out)}
