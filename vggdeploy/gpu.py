"""What a GPU host has: the NVIDIA driver, CUDA devices, TensorRT. Read without torch or TensorRT.

The driver is asked directly (libcuda's cuInit / cuDeviceGet*), so the answer does not depend on
which torch build is installed, and a machine without a driver is told apart from one without a
device (DESIGN.md fact 5: TensorRT's Builder on such a host raises a bare TypeError).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

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
        missing.append("TensorRT is not installed (pip install 'vggdeploy[gpu]' on a machine with an NVIDIA GPU)")
    return missing


def require_tensorrt(hint: str | None = None) -> tuple[object, Gpu]:
    """The tensorrt module and the GPU it will use, or MissingEnvironment naming what is missing."""
    missing = missing_for_tensorrt()
    if missing:
        raise MissingEnvironment("; ".join(missing), hint=hint)
    return importlib.import_module("tensorrt"), cuda_info().gpus[0]


@functools.cache  # polygraphy_calls wraps each TensorRT inference: no sys.path scan per call
def pip_cuda_runtime_dirs() -> tuple[Path, ...]:
    """Folders where pip's CUDA wheels put libcudart: `nvidia/cu13/lib` (torch's cuda-toolkit 13
    wheels) and `nvidia/cuda_runtime/lib` (nvidia-cuda-runtime-cu12), in sys.path order."""
    found = []
    for entry in sys.path:
        root = Path(entry or ".") / "nvidia"
        if not root.is_dir():
            continue
        for lib in sorted(root.glob("*/lib/libcudart.so*")):
            if lib.parent not in found:
                found.append(lib.parent)
    return tuple(found)


def expose_pip_cuda_runtime() -> list[Path]:
    """Let Polygraphy find the CUDA runtime that pip installed. Its `cuda` wrapper globs
    `libcudart.so*` in LD_LIBRARY_PATH's folders, /usr/local/cuda/lib64, /usr/lib, /lib and
    nvidia/cuda_runtime/lib, then loads the match by full path; torch's CUDA 13 wheels put it in
    nvidia/cu13/lib, which it misses (TrtRunner then raises OSError on a host without a system
    toolkit). Prepending the pip folders to this process's LD_LIBRARY_PATH is enough, since
    Polygraphy reads the variable itself. Returns the folders added."""
    current = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    added = [d for d in pip_cuda_runtime_dirs() if str(d) not in current]
    if added:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, added), *current])
    return added


def ort_tensorrt_provider_lib() -> Path | None:
    """ONNX Runtime's TensorRT provider library (onnxruntime-gpu), or None where it has none."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "capi" / "libonnxruntime_providers_tensorrt.so"
    return lib if lib.is_file() else None


def needed_libraries(lib: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared library (what `readelf -d` lists
    as NEEDED), read from its .dynamic section and that section's string table."""
    import struct

    data = lib.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    needed = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for i in range(size // (entsize or 16)):
            tag, value = struct.unpack_from("<qQ", data, offset + i * 16)
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\x00", strtab + value)
                needed.append(data[strtab + value:end].decode())
    return needed


def linked_tensorrt_major(lib: Path) -> int | None:
    """The TensorRT major version a shared library links (`libnvinfer.so.N` among its needed
    libraries: 10 for onnxruntime-gpu 1.31's TensorRT provider), or None."""
    for name in needed_libraries(lib):
        match = re.fullmatch(r"libnvinfer\.so\.(\d+)", name)
        if match:
            return int(match.group(1))
    return None


def tensorrt_mismatch() -> str | None:
    """Why ONNX Runtime's TensorRT provider can't load the installed TensorRT, or None."""
    lib = ort_tensorrt_provider_lib()
    return version_mismatch(linked_tensorrt_major(lib) if lib else None, tensorrt_version())


def version_mismatch(needs: int | None, installed: str | None) -> str | None:
    """The provider links one TensorRT major version, and pip resolves a plain `tensorrt` to the
    newest: onnxruntime-gpu 1.31's provider needs TensorRT 10, and with TensorRT 11 it falls back to CUDA."""
    if needs is None or installed is None or int(installed.split(".")[0]) == needs:
        return None
    return (f"ONNX Runtime's TensorRT provider needs TensorRT {needs} (libnvinfer.so.{needs}), this is TensorRT {installed}: "
            f"it falls back to CUDA")
