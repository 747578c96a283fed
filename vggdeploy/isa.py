"""What this CPU offers INT8, detected at run time (DESIGN.md fact 18).

ONNX Runtime multiplies uint8 activations by int8 weights (U8S8) on x86 with `VPMADDUBSW`
unless the CPU has VNNI or AMX: that instruction adds pairs of products into a saturating 16-bit
lane, so two large products (255 x 127 x 2 = 64,770 > 32,767) are clipped. With VNNI (AVX-512
VNNI or AVX-VNNI) or AMX the sum is 32-bit and exact. OpenVINO (oneDNN) compensates on its own
and is exact everywhere. An INT8 artifact is copied to other machines, so the layout records
where it is exact and the runner checks the CPU it actually runs on.

Features come from numpy's run-time dispatch (CPUID and the OS's saved register state: what this
process can execute, also under an emulator); AVX-VNNI and AMX, which numpy does not probe, from
the kernel's /proc/cpuinfo flags on Linux, where those agree with numpy's (not under an emulator).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

# numpy's feature names -> the kernel's (/proc/cpuinfo) spelling, which the reports use
_NUMPY_NAMES = {"AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
                "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16"}
_KERNEL_ONLY = ("avx_vnni", "amx_tile", "amx_int8", "amx_bf16")

# what each INT8 class means, for `doctor` and warnings
MEANING = {
    "amx": "AMX: INT8 tiles; every layout is exact on ONNX Runtime and OpenVINO",
    "vnni": "VNNI: 32-bit INT8 dot products; every layout is exact on ONNX Runtime and OpenVINO",
    "avx512": "AVX-512 without VNNI: ONNX Runtime's U8S8 saturates in 16 bits (use a u8s7 layout or OpenVINO)",
    "avx2": "AVX2 without VNNI: ONNX Runtime's U8S8 saturates in 16 bits (use a u8s7 layout or OpenVINO)",
    "x86": "x86 without AVX2: ONNX Runtime's U8S8 saturates in 16 bits (use a u8s7 layout or OpenVINO)",
    "other": "not x86: no 16-bit saturation in ONNX Runtime's INT8 kernels",
}


@dataclass(frozen=True)
class CpuIsa:
    """A CPU's model name and the features that decide INT8's exactness and speed."""

    model: str
    machine: str
    features: tuple[str, ...]

    @property
    def x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")

    @property
    def int8_class(self) -> str:
        """amx, vnni, avx512 (no VNNI), avx2 (no VNNI), x86 (older), or other (not x86)."""
        f = set(self.features)
        if not self.x86:
            return "other"
        if "amx_int8" in f:
            return "amx"
        if {"avx512_vnni", "avx_vnni"} & f:
            return "vnni"
        return "avx512" if "avx512bw" in f else "avx2" if "avx2" in f else "x86"

    @property
    def u8s8_exact(self) -> bool:
        """Whether ONNX Runtime's U8S8 kernels are exact here (no 16-bit saturation)."""
        return self.int8_class in ("amx", "vnni", "other")

    def describe(self) -> str:
        return f"{self.model} ({', '.join(self.features) or 'no AVX2'}): {MEANING[self.int8_class]}"

    def as_dict(self) -> dict:
        return {"cpu": self.model, "isa": list(self.features), "int8_class": self.int8_class}


@functools.cache
def cpu_isa() -> CpuIsa:
    """This machine's CPU, probed once per process."""
    machine = platform.machine()
    model, kernel_flags = platform.processor() or machine, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                kernel_flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as np_features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as np_features
    features = {name for key, name in _NUMPY_NAMES.items() if np_features.get(key)}
    # AVX-VNNI and AMX build on AVX2's register state. The kernel's flags are the host's: under an
    # emulator (QEMU's -cpu EPYC-Milan on a Sapphire Rapids host) they name features this process
    # can't execute, so they count only where they agree with what numpy probed
    same_cpu = set(_NUMPY_NAMES.values()) & kernel_flags == features
    if "avx2" in features and same_cpu:
        features |= {f for f in _KERNEL_ONLY if f in kernel_flags}
    return CpuIsa(model, machine, tuple(sorted(features)))


__all__ = ["CpuIsa", "MEANING", "cpu_isa"]
