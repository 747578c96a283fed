"""NNCF (OpenVINO's post-training quantizer) as the `cpu` target's other quantizer: `--quantizer nncf`.

NNCF's ONNX backend with its defaults, fed the same calibration set as ONNX Runtime's quantizer, one
input per sample as NNCF expects. Its output is a Q/DQ ONNX like ours, so every runner, check and
report takes it unchanged. NNCF 3.4 caches statistics only for weight compression, so its ranges are
computed on every run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from pathlib import Path

import onnx

from .artifacts import save_onnx
from .calibration import CalibrationSet
from .errors import BadInput, MissingEnvironment, first_line

log = logging.getLogger("vggdeploy")
INSTALL = "pip install 'vggdeploy[nncf]'  (or: pip install nncf)"


def check_nncf_options(target: str, method: str, cpu_layout: str | None) -> None:
    """Before any work: NNCF writes CPU graphs only, picks its own ranges and layout, and must be installed."""
    if target != "cpu":
        raise BadInput("--quantizer nncf makes CPU graphs (unsigned 8-bit activations), which TensorRT's "
                       "Q/DQ rules reject", hint="use --target cpu with nncf; --target tensorrt uses --quantizer ort")
    if method != "minmax":
        raise BadInput(f"--calib-method {method} applies to --quantizer ort",
                       hint="NNCF chooses its own ranges; drop --calib-method")
    if cpu_layout:
        raise BadInput("--cpu-layout applies to --quantizer ort", hint="NNCF chooses its own layout; drop --cpu-layout")
    if importlib.util.find_spec("nncf") is None:
        raise MissingEnvironment("NNCF is not installed", hint=INSTALL)


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
