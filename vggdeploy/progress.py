"""Progress on long steps: a live line on a terminal, log lines elsewhere, never a long silence.

rich draws the live line (a spinner, a bar when the step has a count, elapsed time) because it
writes to stderr beside click's output without tearing it, and is already in the dependency tree
(NNCF's progress bars). When stderr is not a terminal (CI, a log file, a pipe) each step is one
"... done in N s" line, and a step that runs longer says "still running" every HEARTBEAT seconds,
so a log never goes silent for long; nothing is said when a step starts, so a refusal raised
inside one stays the only line on stderr. Under `-q` (the logger at WARNING) steps say nothing. The
Python API logs the same steps on the "vggdeploy" logger.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("vggdeploy")
QUICK = 1.0  # a step quicker than this says nothing (a refusal right after it stays the only line)
HEARTBEAT = 5.0  # seconds of silence before a step says it is still running (issue 19: never 10)


@contextmanager
def step(what: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Run a long step: yields `advance(n=1)` for steps with a `total` count of units."""
    if not log.isEnabledFor(logging.INFO):
        yield lambda n=1: None
        return
    t0 = time.perf_counter()
    live = _live(what, total) if sys.stderr.isatty() else None
    if live is not None:
        with live as (progress, task):
            yield lambda n=1: progress.advance(task, n)
    else:
        done = [0]  # no line at the start: a step that fails fast leaves its error alone on stderr
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(what, total, done, stop, t0), daemon=True)
        beat.start()
        try:
            yield lambda n=1: done.__setitem__(0, done[0] + n)
        finally:
            stop.set()
            beat.join()
    took = time.perf_counter() - t0
    if took >= QUICK:
        log.info("%s: done in %.1f s", what, took)


def _heartbeat(what: str, total: int | None, done: list[int], stop: threading.Event, t0: float) -> None:
    while not stop.wait(HEARTBEAT):
        count = f", {done[0]} of {total}" if total else ""
        log.info("%s: still running (%.0f s%s)", what, time.perf_counter() - t0, count)


@contextmanager
def _rich(what: str, total: int | None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    columns += [BarColumn(), MofNCompleteColumn()] if total else []
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True) as progress:
        yield progress, progress.add_task(what, total=total)


def _live(what: str, total: int | None):
    try:
        import rich  # noqa: F401
    except ImportError:  # rich is optional: log lines then, as in a pipe
        return None
    return _rich(what, total)


__all__ = ["HEARTBEAT", "step"]
