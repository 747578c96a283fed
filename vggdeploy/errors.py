"""Typed errors; each carries the exit code the CLI returns (DESIGN.md conventions)."""

from __future__ import annotations

from contextvars import ContextVar

# set while the CLI runs: hints then name options as flags (--force), else as Python arguments (force=True)
CLI_SPELLING: ContextVar[bool] = ContextVar("vggdeploy_cli_spelling", default=False)


def spelled(flag: str, argument: str) -> str:
    """An option named in a hint, as the caller gives it: the CLI's `flag` or the API's `argument`."""
    return flag if CLI_SPELLING.get() else argument


class VggDeployError(Exception):
    """Base: one clear line (the message) and an optional hint."""

    exit_code = 2
    exit_now = False  # True where the process can't shut down normally (the CLI exits at once)

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __reduce__(self):  # keep the hint when raised in a benchmark's child process
        return type(self), (str(self), self.hint)


class BadInput(VggDeployError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2


class CheckFailed(VggDeployError):
    """A parity or accuracy check failed (exit 1)."""

    exit_code = 1


class MissingEnvironment(VggDeployError):
    """The environment lacks something: no GPU, no TensorRT, no network (exit 3)."""

    exit_code = 3


class OutOfMemory(MissingEnvironment):
    """The process ran out of memory or address space (exit 3)."""

    HINT = ("raise the limit (ulimit -v, prlimit --as, the container's): on a 2-core Xeon, VGG16's export ran under "
            "prlimit --as=6G and --form all --fp16 --int8 under 12G; or use a smaller model or batch")

    @classmethod
    def of(cls, e: BaseException) -> OutOfMemory:
        return cls(f"out of memory: {first_line(e)[:200]}", hint=cls.HINT)


def printable(text: str) -> str:
    """Untrusted text (metadata, file names) with control characters escaped, so a terminal shows
    it as written instead of obeying ANSI escape sequences."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


OUT_OF_MEMORY_SIGNS = ("can't allocate memory", "Cannot allocate memory", "Failed to allocate memory", "Unable to allocate",
                       "failed to map segment", "bad_alloc")  # torch, errno, ONNX Runtime's arena, numpy, ld.so, C++


def out_of_memory(e: BaseException) -> bool:
    """Whether an exception is the process running out of memory or address space (`ulimit -v`,
    `prlimit --as`, a cgroup), however the library that hit it words it."""
    return isinstance(e, MemoryError) or any(sign in str(e) for sign in OUT_OF_MEMORY_SIGNS)


def first_line(e: BaseException) -> str:
    """An exception's first line of text, or its type's name where it has none."""
    return next(iter(str(e).strip().splitlines()), type(e).__name__)
