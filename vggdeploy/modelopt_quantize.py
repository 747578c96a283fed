"""NVIDIA ModelOpt's ONNX post-training quantization as the `tensorrt` target's other quantizer:
`--quantizer modelopt` (the tool NVIDIA recommends for TensorRT's explicit INT8).

ModelOpt 0.47 runs its calibration on ONNX Runtime's CPU provider (`calibration_eps=["cpu"]`), so it
works without a GPU. With its defaults it quantizes the convolutions, leaves the Gemm (FC) layers
in float and casts the float parts to FP16 (`high_precision_dtype="fp16"`), keeping FP32 I/O;
vggdeploy records the layers it left in float. Its `[onnx]` extra pins onnxruntime-gpu and an older
onnx, so it is installed without dependencies (MODELOPT_INSTALL). It calibrates on one input
shape: the first size of the calibration set.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import numpy as np
import onnx

from .artifacts import save_onnx
from .calibration import CalibrationSet
from .errors import BadInput, first_line

log = logging.getLogger("vggdeploy")
MODELOPT_INSTALL = ("pip install --no-deps nvidia-modelopt==0.47.0 onnx-graphsurgeon onnxconverter-common==1.16.0 cppimport "
                    "lief pulp omegaconf antlr4-python3-runtime nvidia-ml-py onnxslim  (`make setup-modelopt`; its [onnx] "
                    "extra would replace onnxruntime with onnxruntime-gpu)")
METHODS = {"minmax": "max", "entropy": "entropy"}  # ONNX Runtime's names -> ModelOpt's


def quantize_modelopt(src: Path, out: Path, data: CalibrationSet, keep_fp32: list[str], method: str) -> dict:
    """ModelOpt's INT8 PTQ of `src` with its defaults, written to `out` (+ `out.data`)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from modelopt import __version__
    from modelopt.onnx.quantization import quantize

    size = data.sizes[0]
    calib = np.concatenate([b for b in data.chunks[0]])
    raw = out.with_name(f"modelopt-{out.name}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its log: stdout is for the artifacts' paths
            quantize(onnx_path=str(src), quantize_mode="int8", calibration_data={"input": calib},
                     calibration_method=METHODS[method], calibration_eps=["cpu"], nodes_to_exclude=keep_fp32 or None,
                     output_path=str(raw), use_external_data_format=True)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise BadInput(f"ModelOpt could not quantize {src.name} with calibration set {data.source}: "
                       f"{type(e).__name__}: {first_line(e)}") from None
    save_onnx(onnx.load(str(raw)), out)
    for f in raw.parent.glob(f"{raw.name}*"):
        f.unlink()
    return {"modelopt": __version__, "calibrated_size": list(size), "calibrated_inputs": len(calib)}


def left_in_float(model: onnx.ModelProto) -> list[str]:
    """Conv/Gemm/MatMul nodes whose data input is not dequantized: the quantizer left them in float."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return sorted(n.name for n in model.graph.node
                  if n.op_type in ("Conv", "Gemm", "MatMul") and producer.get(n.input[0]) != "DequantizeLinear")
