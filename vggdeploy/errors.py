"""Typed errors; each carries the exit code the CLI returns (DESIGN.md conventions)."""

from __future__ import annotations


class VggDeployError(Exception):
    """Base: one clear line (the message) and an optional hint."""

    exit_code = 2

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
