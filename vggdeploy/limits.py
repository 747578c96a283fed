"""The process's memory: its address-space limit, judged before any library is loaded, and freed heap
handed back between a pipeline's stages.

Under `ulimit -v` / `prlimit --as`, torch, ONNX Runtime and OpenBLAS reserve address space they never
touch and fail wherever the limit falls: a Python MemoryError, a C++ `std::bad_alloc` abort, or
OpenBLAS spinning forever in its thread setup (seen at 4 GiB). So a limit below what a run measured
is refused up front, in one line.
"""

from __future__ import annotations

import ctypes
import gc
import resource

from .errors import OutOfMemory

# measured on a 2-core Xeon with prlimit --as: `export vgg-mini` needs 4 GiB, `export vgg16` 6 GiB
MIN_ADDRESS_SPACE = 6 << 30


def address_space_limit() -> int | None:
    """The soft RLIMIT_AS in bytes, or None where there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def check_address_space() -> None:
    """Refuse (OutOfMemory, exit 3) an address-space limit too small for torch and the runtimes."""
    limit = address_space_limit()
    if limit is not None and limit < MIN_ADDRESS_SPACE:
        raise OutOfMemory(f"the address space is limited to {limit / (1 << 30):.1f} GiB (ulimit -v / prlimit --as); "
                          f"vggdeploy needs {MIN_ADDRESS_SPACE >> 30} GiB or more",
                          hint="the runtimes reserve address space they never touch: raise or remove the limit "
                               "(a memory limit on resident memory, as containers set, is fine)")


__all__ = ["MIN_ADDRESS_SPACE", "address_space_limit", "check_address_space"]


def give_back_freed_memory() -> None:
    """Collect garbage and hand glibc's freed heap pages back to the kernel (malloc_trim): after a
    model's weights and a stage's sessions are released, glibc keeps their pages for reuse, and the
    next stage's peak lands on top of them (0.25 GB after VGG16's eager model). A no-op off glibc."""
    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own symbols: glibc's, where it is linked
    if trim is not None:
        trim(0)
