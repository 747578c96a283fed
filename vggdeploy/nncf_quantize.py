"""NNCF (OpenVINO's post-training quantizer) as the `cpu` target's other quantizer: `--quantizer nncf`.

NNCF's ONNX backend with its defaults, fed the same calibration set as ONNX Runtime's quantizer, one
input per sample as NNCF expects. Its output is a Q/DQ ONNX like ours, so every runner, check and
report takes it unchanged. NNCF 3.4 caches statistics only for weight compression, so its ranges are
computed on every run.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import onnx

from .store import save_onnx
from .calibration import CalibrationSet
from .errors import BadInput, first_line

log = logging.getLogger("vggdeploy")


class _Samples:
    """The calibration inputs one by one, each time NNCF iterates (a folder's decoded as read)."""

    def __init__(self, data: CalibrationSet):
        self.data = data

    def __iter__(self):
        for b in self.data.batches:
            for i in range(len(b)):
                yield {"input": b[i:i + 1]}


def quantize_nncf(src: Path, out: Path, data: CalibrationSet, keep_fp32: list[str]) -> str:
    """NNCF's default post-training quantization of `src`, written to `out` (+ `out.data`); NNCF's version."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # NNCF imports it: "No CUDA runtime"
    import nncf

    model = onnx.load(str(src))
    samples = _Samples(data)
    scope = nncf.IgnoredScope(names=keep_fp32) if keep_fp32 else None
    try:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for the artifacts' paths
            quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=data.count * len(data.sizes),
                                      ignored_scope=scope)
    except (nncf.ValidationError, ValueError, RuntimeError) as e:
        raise BadInput(f"NNCF could not quantize {src.name} with calibration set {data.source}: "
                       f"{type(e).__name__}: {first_line(e)}") from None
    save_onnx(quantized, out)
    return nncf.__version__
