"""Eager PyTorch as a runner: the reference every artifact is compared with, on CPU or CUDA."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import MissingEnvironment
from .base import Runner


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, module: torch.nn.Module, output_names: list[str], input_name: str = "input",
                 device: str = "cpu", device_io: bool = False, low_memory: bool = False):
        """device "cuda" runs on the GPU (the reference for TensorRT); device_io takes and returns
        torch tensors on that device instead of numpy arrays. low_memory: CPU convolutions without
        oneDNN, which copies every kernel into its own layout on each call (VGG16's FC1 as a 7x7
        convolution: 0.4 GB); about 15% slower, so for checks, never for timing."""
        self.module, self._outputs, self.input_name = module, output_names, input_name
        self.device, self.device_io, self.low_memory = torch.device(device), device_io, low_memory
        first = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
        self.channels = first.in_channels if first is not None else None

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def _activate(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise MissingEnvironment("eager PyTorch on CUDA needs a CUDA device and a CUDA build of torch",
                                     hint=f"this torch is {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
        self.module.eval().to(self.device)
        if self.device.type == "cuda":
            exact_fp32_on_cuda()
            self.name = f"torch[cuda:{torch.cuda.get_device_name(self.device)}]"

    @property
    def config(self) -> dict:
        return {"device": str(self.device), "threads": torch.get_num_threads(), "onednn": not self.low_memory}

    @property
    def stream_handle(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = next(iter(feed.values()))
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        with torch.inference_mode(), _onednn(not (self.low_memory and self.device.type == "cpu")):
            out = self.module(x.to(self.device, non_blocking=True))
        out = out if isinstance(out, (tuple, list)) else (out,)
        if self.device_io:
            return dict(zip(self._outputs, out))
        return {n: t.float().cpu().numpy() for n, t in zip(self._outputs, out)}


def exact_fp32_on_cuda() -> None:
    """The FP32 reference: no TF32 in convolutions or matmuls (torch allows it in cuDNN by default).
    torch 2.9+ spells it `fp32_precision = "ieee"`; the `allow_tf32` flags are its legacy form."""
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False


@contextlib.contextmanager
def _onednn(enabled: bool):
    if enabled:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that TF32 needs an Intel GPU when the flags are set
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def eager_for_artifact(path, device: str = "cpu", **options) -> TorchRunner:
    """Eager PyTorch from the same weights as a vggdeploy artifact (its metadata names the variant,
    the weights and the form): the baseline for parity and speed on that artifact."""
    from ..metadata import ADOPTED_NO_EAGER
    from ..artifact import Artifact
    from ..errors import BadInput
    from ..artifact import ADOPT_HINT
    from ..models import build_form, output_names
    from ..sources import WeightsSource
    from ..weights import load_model

    meta = Artifact.of(path).meta
    if meta is None or meta.weights is None:
        raise BadInput(f"{path} has no vggdeploy metadata: eager PyTorch can't be rebuilt from it",
                       hint=ADOPT_HINT.format(path=path))
    if meta.is_adopted:
        raise BadInput(f"{Path(path).name}: {ADOPTED_NO_EAGER}", hint="compare runtimes with each other (bench --backends)")
    source = WeightsSource.parse(meta.weights)
    if source.kind == "checkpoint":  # its architecture is read off its tensors again
        loaded = load_model(source.value, prefix=meta.weights_prefix)
    else:
        loaded = load_model(meta.variant, source.kind, source.seed)
    if loaded.weights_sha256 != meta.weights_sha256:
        raise BadInput(f"the weights {meta.weights} no longer match {Path(path).name} (sha256 differs)")
    form, taps = meta.form, list(meta.taps) if meta.taps else None
    return TorchRunner(build_form(loaded.model, form, taps), output_names(form, taps), device=device, **options)
