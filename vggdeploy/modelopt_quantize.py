"""NVIDIA ModelOpt's ONNX post-training quantization as the `tensorrt` target's other quantizer:
`--quantizer modelopt` (the tool NVIDIA recommends for TensorRT's explicit INT8).

ModelOpt 0.47 runs its calibration on ONNX Runtime's CPU provider (`calibration_eps=["cpu"]`), so it
works without a GPU. With its defaults it quantizes the convolutions, leaves the Gemm (FC) layers
in float and casts the float parts to FP16 (`high_precision_dtype="fp16"`), keeping FP32 I/O;
vggdeploy records the layers it left in float. Its `[onnx]` extra pins onnxruntime-gpu and an older
onnx, so it is installed without dependencies (MODELOPT_INSTALL). It calibrates on one input
shape: the first size of the calibration set.

It runs in a child process: importing ModelOpt patches ONNX Runtime's calibrators for the whole
process (`modelopt.onnx.quantization.ort_patching`), after which ONNX Runtime's own `quantize_static`
fails ("Histogram has not been collected") in the process that imported it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import onnx

from .store import save_onnx
from .calibration import CalibrationSet
from .errors import BadInput

log = logging.getLogger("vggdeploy")
MODELOPT_INSTALL = ("pip install --no-deps nvidia-modelopt==0.47.0 onnx-graphsurgeon onnxconverter-common==1.16.0 cppimport "
                    "lief pulp omegaconf antlr4-python3-runtime nvidia-ml-py onnxslim  (`make setup-modelopt`; its [onnx] "
                    "extra would replace onnxruntime with onnxruntime-gpu)")
METHODS = {"minmax": "max", "entropy": "entropy"}  # ONNX Runtime's names -> ModelOpt's


_CHILD = """
import json, sys
import numpy as np
from modelopt import __version__
from modelopt.onnx.quantization import quantize
src, raw, calib, method, exclude = sys.argv[1:6]
quantize(onnx_path=src, quantize_mode="int8", calibration_data={"input": np.load(calib)}, calibration_method=method,
         calibration_eps=["cpu"], nodes_to_exclude=json.loads(exclude) or None, output_path=raw,
         use_external_data_format=True)
print(__version__)
"""


def quantize_modelopt(src: Path, out: Path, data: CalibrationSet, keep_fp32: list[str], method: str) -> dict:
    """ModelOpt's INT8 PTQ of `src` with its defaults, in a child process, written to `out` (+ `out.data`)."""
    import json
    import subprocess

    calib = np.concatenate([b for b in data.chunks[0]])
    raw, calib_file = out.with_name(f"modelopt-{out.name}"), out.with_name(f"modelopt-{out.stem}-calibration.npy")
    np.save(calib_file, calib)
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(raw), str(calib_file), METHODS[method],
                               json.dumps(keep_fp32)], capture_output=True, text=True)
        if done.returncode:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no output"]
            raise BadInput(f"ModelOpt could not quantize {src.name} with calibration set {data.source}: {lines[-1][:300]}",
                           hint="run with --debug for its log")
        log.debug("%s", done.stderr)
        save_onnx(onnx.load(str(raw)), out)
    finally:
        for f in [calib_file, *raw.parent.glob(f"{raw.name}*")]:
            f.unlink(missing_ok=True)
    return {"modelopt": done.stdout.strip().splitlines()[-1], "calibrated_size": list(data.sizes[0]),
            "calibrated_inputs": len(calib)}


def left_in_float(model: onnx.ModelProto) -> list[str]:
    """Conv/Gemm/MatMul nodes whose data input is not dequantized: the quantizer left them in float."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return sorted(n.name for n in model.graph.node
                  if n.op_type in ("Conv", "Gemm", "MatMul") and producer.get(n.input[0]) != "DequantizeLinear")
