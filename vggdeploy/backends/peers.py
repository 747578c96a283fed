"""What a PyTorch user would pick instead of vggdeploy, as runners from the same weights as an
artifact, so `bench --peers` times them by the same protocol as every other row (DESIGN.md fact 22):

- `torch-compile`: `torch.compile` (inductor, freezing) of the eager FP32 model on the CPU;
- `pt2e`: PT2E INT8: torchao's `X86InductorQuantizer` with its default config, `prepare_pt2e`,
  calibrated on the same images as the artifact's INT8 (or the default samples), `convert_pt2e`,
  then `torch.compile` with freezing (torchao's recipe for CPU inference);
- `torch-compile-cuda`: `torch.compile` of the model under FP16 autocast on CUDA (GPU hosts).

Compilation happens on the first inference of each input shape: a bench row's `first_ms` is the
compile time.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from ..errors import BadInput, MissingEnvironment
from .eager import TorchRunner

PEERS = ("torch-compile", "pt2e", "torch-compile-cuda")
PEERS_INSTALL = "pip install 'vggdeploy[peers]'"


def check_peers(names: list[str]) -> None:
    """BadInput for an unknown peer, MissingEnvironment (with the install line) for PT2E without torchao."""
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise BadInput(f"unknown peer {unknown[0]!r}", hint=f"choose from: {', '.join(PEERS)}")
    if "pt2e" in names and importlib.util.find_spec("torchao") is None:
        raise MissingEnvironment("--peers pt2e needs torchao (PT2E's X86InductorQuantizer)", hint=PEERS_INSTALL)


class _Fp16Autocast(torch.nn.Module):
    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        with torch.autocast("cuda", torch.float16):
            out = self.module(x)
        return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with inductor's freezing, as users set it for inference: weights become constants
    (PT2E's INT8 weights are then packed once instead of dequantized on every call)."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    return torch.compile(module)


class CompiledRunner(TorchRunner):
    """torch.compile of the eager model: FP32 with inductor's freezing on the CPU, FP16 autocast on CUDA."""

    def _activate(self) -> None:
        super()._activate()
        cuda = self.device.type == "cuda"
        self.module = compiled(_Fp16Autocast(self.module) if cuda else self.module)
        self.name = f"torch.compile[inductor,{'fp16-autocast,cuda' if cuda else 'freezing'}]"


class Pt2eRunner(TorchRunner):
    """PT2E INT8 (torchao's X86InductorQuantizer, default config), calibrated on `calibration`
    (an (N, C, H, W) batch at the size it runs), then compiled."""

    def __init__(self, module: torch.nn.Module, output_names: list[str], calibration: np.ndarray, **options):
        super().__init__(module, output_names, **options)
        self.calibration = calibration

    def _activate(self) -> None:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        super()._activate()
        example = torch.from_numpy(self.calibration[:8])
        with torch.no_grad():
            batch = torch.export.Dim("batch", min=1, max=4096)
            exported = torch.export.export(self.module, (example,), dynamic_shapes=({0: batch},)).module()
            quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(exported, quantizer)
            for i in range(0, len(self.calibration), 32):
                prepared(torch.from_numpy(self.calibration[i:i + 32]))
            self.module = compiled(convert_pt2e(prepared))
        self.name = "pt2e[X86InductorQuantizer,compiled,freezing]"


def peer_for_artifact(artifact, peer: str, size: tuple[int, int] | None = None, **options) -> TorchRunner:
    """A peer runner from the weights a vggdeploy artifact names. `size`: the H x W PT2E is
    calibrated at (default: the artifact's own size)."""
    from ..artifact import Artifact
    from ..calibration import load_calibration
    from .eager import eager_for_artifact

    check_peers([peer])
    eager = eager_for_artifact(artifact, device="cuda" if peer.endswith("cuda") else "cpu", **options)
    if peer != "pt2e":
        return CompiledRunner(eager.module, eager.output_names, device=str(eager.device), **options)
    opened = Artifact.of(artifact)
    meta, spec = opened.meta, opened.spec
    calibration = meta.calibration or {}
    source = calibration.get("source")
    from pathlib import Path

    source = source if isinstance(source, str) and Path(source).exists() else None  # else the default samples
    data = load_calibration(source, opened.variant, [tuple(size or spec.size)], calibration.get("count"), spec.min_size)
    return Pt2eRunner(eager.module, eager.output_names, np.concatenate(data.batches), **options)
