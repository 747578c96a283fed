"""INT8 layouts as data: what each one is, on which CPUs it is exact, and which CPU runtime runs it.

An INT8 artifact is copied to machines other than the one that made it (DESIGN.md fact 18), so
its layout is recorded in its metadata (`vggdeploy.int8_layout`) and judged against the CPU it
runs on (isa.py), not the one it was made on. Torch-free: runners import this.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import BadInput, MissingEnvironment
from .isa import CpuIsa

if TYPE_CHECKING:
    from .budget import AccuracyBudget

TARGETS = ("tensorrt", "cpu")  # where an INT8 graph runs: TensorRT's Q/DQ rules, or CPU runtimes'
METHODS = ("minmax", "entropy", "percentile")  # ONNX Runtime's calibration methods
QUANTIZERS = ("ort", "nncf", "modelopt")



@dataclass(frozen=True)
class Int8Layout:
    """Activation and weight types (ONNX Runtime's QuantType names), weight scales per output
    channel or per tensor, and weights in 7 bits (`reduce_range`), which keeps ONNX Runtime's
    U8S8 pair sums within 16 bits (255 x 64 x 2 < 32,767) on CPUs without VNNI."""

    activation: str
    weight: str
    per_channel: bool
    reduce_range: bool = False

    @property
    def portable(self) -> bool:
        """Exact on ONNX Runtime on every x86 CPU, not only on VNNI/AMX ones. 7-bit or unsigned
        weights are exact by construction; signed activations measured exact under AVX2 (ORT's
        x86 kernels never see them: benchmarks/results/int8_layouts-*.md)."""
        return self.reduce_range or self.weight == "QUInt8" or self.activation == "QInt8"

    @property
    def exact_on(self) -> str:
        return "any CPU" if self.portable else "VNNI or AMX CPUs on ONNX Runtime; any CPU on OpenVINO"

    def exact_here(self, isa: CpuIsa, runtime: str) -> bool:
        """Whether this layout keeps its accuracy on `runtime` on this CPU."""
        return self.portable or runtime != "onnxruntime" or isa.u8s8_exact


# Measured in benchmarks/int8_layouts.py (results/int8_layouts-*.md). u8s7-channel is the cpu
# target's default: exact on every CPU and runtime, the same kernels (so the same speed) as u8s8,
# and per-channel scales win back the weights' eighth bit.
CPU_LAYOUTS = {
    "u8s7-channel": Int8Layout("QUInt8", "QInt8", per_channel=True, reduce_range=True),
    "u8s7-tensor": Int8Layout("QUInt8", "QInt8", per_channel=False, reduce_range=True),
    "u8s8-tensor": Int8Layout("QUInt8", "QInt8", per_channel=False),
    "u8s8-channel": Int8Layout("QUInt8", "QInt8", per_channel=True),
    "s8s8-tensor": Int8Layout("QInt8", "QInt8", per_channel=False),
    "u8u8-tensor": Int8Layout("QUInt8", "QUInt8", per_channel=False),
}
CPU_DEFAULT = "u8s7-channel"
TENSORRT_LAYOUT = "s8s8-channel"  # what TensorRT's parser wants (DESIGN.md fact 2)
LAYOUTS = {**CPU_LAYOUTS, TENSORRT_LAYOUT: Int8Layout("QInt8", "QInt8", per_channel=True)}


def layout_of(precision: str, declared: str | None = None, graph=None) -> str | None:
    """The INT8 layout an artifact of `precision` declares (`declared`, its metadata's int8_layout),
    or, for one written before layouts were recorded, the one its target and Q/DQ `graph` imply
    (every layout then had 8-bit weights); None if not INT8."""
    if not precision.startswith("int8"):
        return None
    if declared in LAYOUTS:
        return declared
    if precision == "int8-tensorrt" or graph is None:
        return TENSORRT_LAYOUT if precision == "int8-tensorrt" else "u8s8-tensor"
    signed, per_channel = _qdq_traits(graph)
    return "s8s8-tensor" if signed else "u8s8-channel" if per_channel else "u8s8-tensor"


def _qdq_traits(graph) -> tuple[bool, bool]:
    """(activations signed, weight scales per channel), from the graph's header (no weights read)."""
    inits = {t.name: t for t in graph.graph.initializer}
    int8 = 3  # onnx.TensorProto.INT8
    quantize = [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    signed = any(len(n.input) > 2 and n.input[2] in inits and inits[n.input[2]].data_type == int8 for n in quantize)
    per_channel = any(n.op_type == "DequantizeLinear" and n.input[1] in inits and
                      sum(inits[n.input[1]].dims) > 1 for n in graph.graph.node)
    return signed, per_channel


def cpu_runtime(layout: str, isa: CpuIsa) -> str:
    """The CPU runtime that runs an INT8 layout fastest while exact, on this CPU. Measured for VGG16
    (DESIGN.md facts 3, 12, 18; benchmarks/results/int8_layouts-*.md): u8 activations with s8
    weights on OpenVINO where the CPU has VNNI/AMX (43-46 ms vs ONNX Runtime 48-52 on a Zen 4), on
    ONNX Runtime where it has not (113 ms vs 147 on a Zen 3), unless ORT would saturate there (then
    OpenVINO: exact); s8 activations on OpenVINO (ORT: 233 ms); u8 weights on ORT (OpenVINO: 277)."""
    spec = LAYOUTS[layout]
    if spec.weight == "QUInt8":
        return "onnxruntime"
    if isa.int8_class in ("vnni", "amx") or spec.activation == "QInt8":
        return "openvino"
    return "onnxruntime" if spec.exact_here(isa, "onnxruntime") else "openvino"



NNCF_INSTALL = "pip install 'vggdeploy[nncf]'  (or: pip install nncf)"
FP16_IO = ("fp32", "fp16")


@dataclass(frozen=True)
class Fp16Options:
    """How an FP16 artifact is made, judged on construction: its input/output type `io` (fp32: Casts
    at the edges, a drop-in for the FP32 artifact; fp16: half the input bytes). Raises BadInput."""

    io: str = "fp32"

    def __post_init__(self):
        if self.io not in FP16_IO:
            raise BadInput(f"unknown --io {self.io!r}", hint="fp32 (default) or fp16")


@dataclass(frozen=True)
class Int8Options:
    """How an INT8 artifact is made, judged whole on construction (before any model is read):
    `target` tensorrt or cpu, ORT's calibration `method`, `calib_count` inputs per size (None: all the
    source has), the `cpu_layout` (cpu target; None: CPU_DEFAULT), the `quantizer` (ort, or NNCF's
    defaults for the cpu target), and whether the FP32 graph is `equalize`d first (cross-layer
    equalization: equalize.py), and an accuracy `budget`. Raises BadInput naming the option, MissingEnvironment for NNCF."""

    target: str | None
    method: str = "minmax"
    calib_count: int | None = None
    cpu_layout: str | None = None
    quantizer: str = "ort"
    equalize: bool = True
    budget: AccuracyBudget | None = None  # budget.py: keep layers in float until top-1 is within it

    def __post_init__(self):
        if not self.target:
            raise BadInput("--int8 needs --target", hint=f"one of: {', '.join(TARGETS)} (a TensorRT INT8 graph is slow "
                                                          "on CPUs and a CPU one is rejected by TensorRT)")
        for flag, value, allowed in (("--target", self.target, TARGETS), ("--calib-method", self.method, METHODS),
                                     ("--quantizer", self.quantizer, QUANTIZERS)):
            if value not in allowed:
                raise BadInput(f"unknown {flag} {value!r}", hint=f"choose from: {', '.join(allowed)}")
        if self.cpu_layout and self.cpu_layout not in CPU_LAYOUTS:
            raise BadInput(f"unknown CPU layout {self.cpu_layout!r}", hint=f"choose from: {', '.join(CPU_LAYOUTS)}")
        if self.calib_count is not None and self.calib_count < 1:
            raise BadInput(f"--calib-count {self.calib_count}: give a positive count",
                           hint="or leave it out to use all the source has")
        if self.cpu_layout and self.target == "tensorrt":
            raise BadInput("--cpu-layout applies to --target cpu", hint="TensorRT's layout is fixed (s8s8, per channel)")
        if self.quantizer == "nncf":  # NNCF writes CPU graphs only, picks its own ranges and layout
            if self.target != "cpu":
                raise BadInput("--quantizer nncf makes CPU graphs (unsigned 8-bit activations), which TensorRT's "
                               "Q/DQ rules reject", hint="use --target cpu with nncf; --target tensorrt uses --quantizer ort")
            if self.method != "minmax":
                raise BadInput(f"--calib-method {self.method} applies to --quantizer ort",
                               hint="NNCF chooses its own ranges; drop --calib-method")
            if self.cpu_layout:
                raise BadInput("--cpu-layout applies to --quantizer ort", hint="NNCF chooses its own layout; drop --cpu-layout")
            if importlib.util.find_spec("nncf") is None:
                raise MissingEnvironment("NNCF is not installed", hint=NNCF_INSTALL)
        if self.quantizer == "modelopt":  # ModelOpt writes TensorRT's Q/DQ graphs
            from .modelopt_quantize import METHODS as MODELOPT_METHODS, MODELOPT_INSTALL

            if self.target != "tensorrt":
                raise BadInput("--quantizer modelopt makes TensorRT graphs (symmetric 8-bit, FP16 float parts)",
                               hint="use --target tensorrt with modelopt; --target cpu uses --quantizer ort or nncf")
            if self.method not in MODELOPT_METHODS:
                raise BadInput(f"--calib-method {self.method} is not one of ModelOpt's",
                               hint=f"with --quantizer modelopt: {', '.join(MODELOPT_METHODS)}")
            if importlib.util.find_spec("modelopt") is None:
                raise MissingEnvironment("NVIDIA ModelOpt is not installed", hint=MODELOPT_INSTALL)

    @property
    def layout(self) -> str:
        """The layout the artifact gets: TensorRT's, NNCF's own (u8s8 per channel), or the cpu layout asked."""
        if self.target == "tensorrt":
            return TENSORRT_LAYOUT
        return "u8s8-channel" if self.quantizer == "nncf" else self.cpu_layout or CPU_DEFAULT

__all__ = ["CPU_DEFAULT", "CPU_LAYOUTS", "Int8Layout", "Int8Options", "LAYOUTS", "METHODS", "QUANTIZERS", "TARGETS",
           "TENSORRT_LAYOUT", "cpu_runtime", "layout_of"]
