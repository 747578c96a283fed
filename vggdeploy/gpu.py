"""What a GPU host has: the NVIDIA driver, CUDA devices, TensorRT. Read without torch or TensorRT.

The driver is asked directly (libcuda's cuInit / cuDeviceGet*), so the answer does not depend on
which torch build is installed, and a machine without a driver is told apart from one without a
device (DESIGN.md fact 5: TensorRT's Builder on such a host raises a bare TypeError).
"""

from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass

from .errors import MissingEnvironment

_COMPUTE_MAJOR, _COMPUTE_MINOR = 75, 76  # CUdevice_attribute values


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: str  # "8.6"


@dataclass(frozen=True)
class CudaInfo:
    driver: str | None  # CUDA driver API version, "13.0"; None without a driver
    gpus: tuple[Gpu, ...]
    problem: str | None  # why there is no usable device, in words

    @property
    def available(self) -> bool:
        return bool(self.gpus)


def cuda_info() -> CudaInfo:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return CudaInfo(None, (), "no NVIDIA driver (libcuda.so.1 not found)")
    if lib.cuInit(0) != 0:
        return CudaInfo(None, (), "the NVIDIA driver is installed but cuInit failed (no device, or a driver problem)")
    version, count = ctypes.c_int(), ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    lib.cuDeviceGetCount(ctypes.byref(count))
    driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    gpus = []
    for i in range(count.value):
        dev, name, major, minor = ctypes.c_int(), ctypes.create_string_buffer(256), ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        lib.cuDeviceGetName(name, 256, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _COMPUTE_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _COMPUTE_MINOR, dev)
        gpus.append(Gpu(i, name.value.decode(), f"{major.value}.{minor.value}"))
    return CudaInfo(driver, tuple(gpus), None if gpus else "the NVIDIA driver sees no CUDA device")


def tensorrt_version() -> str | None:
    try:
        return importlib.import_module("tensorrt").__version__
    except ImportError:
        return None


def missing_for_tensorrt() -> list[str]:
    """What this machine lacks to build or run a TensorRT engine (empty where it can)."""
    missing = []
    info = cuda_info()
    if not info.available:
        missing.append(info.problem)
    if tensorrt_version() is None:
        missing.append("TensorRT is not installed (pip install tensorrt, on a machine with an NVIDIA GPU)")
    return missing


def require_tensorrt(hint: str | None = None) -> tuple[object, Gpu]:
    """The tensorrt module and the GPU it will use, or MissingEnvironment naming what is missing."""
    missing = missing_for_tensorrt()
    if missing:
        raise MissingEnvironment("; ".join(missing), hint=hint)
    return importlib.import_module("tensorrt"), cuda_info().gpus[0]
