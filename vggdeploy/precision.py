"""FP16 and calibrated INT8 artifacts from an FP32 ONNX (DESIGN.md facts 1-3, 8): the public entry
points, made in fp16.py and int8.py (their shared steps in derived.py, graph edits in graph_edits.py).

TensorRT 11 builds only strongly typed networks, so precision lives in the ONNX: an FP16
graph for FP16, a Q/DQ graph for INT8. INT8 has a target: `tensorrt` (the layout its parser
wants) or `cpu` (the layout measured fastest on the CPU runtimes, see benchmarks/).
"""

from .fp16 import to_fp16
from .int8 import check_calibration, to_int8
from .layouts import CPU_DEFAULT, CPU_LAYOUTS, LAYOUTS, METHODS

__all__ = ["CPU_DEFAULT", "CPU_LAYOUTS", "LAYOUTS", "METHODS", "check_calibration", "to_fp16", "to_int8"]
