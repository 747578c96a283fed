"""SIGINT and SIGTERM: SIGTERM raised as `Terminated` where the process is, so that what cleans up
after Ctrl-C (staging folders, a Parquet part being written, bench's child) runs for it too; and a
repair for the signal stack OpenVINO's CPU plugin leaves behind."""

from __future__ import annotations

import ctypes
import signal
import threading


class Terminated(BaseException):
    """SIGTERM, raised in the main thread once `install` ran (exit 143)."""


def _terminate(signum, frame):
    raise Terminated()


def install() -> None:
    """Raise Terminated on SIGTERM (the main thread only: Python handles signals there)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def reset_signal_stack() -> None:
    """Drop the calling thread's alternate signal stack. OpenVINO 2026's CPU plugin installs one per
    compile and restores them out of order, leaving the main thread's pointing at memory it has
    unmapped: the next SIGINT or SIGTERM (Python's handlers ask for that stack) then dies of SIGSEGV
    instead of stopping cleanly. Call after OpenVINO compiles on this thread. Linux only; else a no-op."""
    try:
        sigaltstack = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return
    sigaltstack(ctypes.byref(_StackT(None, 2, 0)), None)  # SS_DISABLE: handlers run on the thread's own stack
