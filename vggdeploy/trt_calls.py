"""Calling TensorRT through Polygraphy so that a user sees one line, not a log or a traceback.

Polygraphy prints its log (and TensorRT's, which it forwards) to stdout, which would break
`--json`, and reports a failed parse or build by logging at CRITICAL and raising
`PolygraphyException` (`G_LOGGER.critical`): it never returns an empty engine. Inside
`polygraphy_calls`, its log goes into a buffer (shown on stderr with `--debug`), and the exception
becomes BadInput with TensorRT's own error lines.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from pathlib import Path

from .errors import BadInput
from .gpu import expose_pip_cuda_runtime

log = logging.getLogger("vggdeploy")


def _error_lines(text: str) -> list[str]:
    """Polygraphy's `[E]` lines (TensorRT's parser and builder errors come through as these), or its `[!]` ones."""
    lines = [line.strip() for line in text.splitlines()]
    errors = [line.removeprefix("[E]").strip() for line in lines if line.startswith("[E]")]
    return errors or [line.removeprefix("[!]").strip() for line in lines if line.startswith("[!]")]


@contextlib.contextmanager
def polygraphy_calls(action: str, hint: str | None = None):
    """Run Polygraphy/TensorRT calls: log off stdout, failures as BadInput("ACTION failed: REASON")."""
    from polygraphy.exception import PolygraphyException

    expose_pip_cuda_runtime()
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    except PolygraphyException as e:
        reasons = _error_lines(buffer.getvalue()) or [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]
        raise BadInput(f"{action} failed: {' / '.join(dict.fromkeys(reasons))[:500]}",
                       hint=hint or "run with --debug for TensorRT's log") from None
    finally:
        if log.isEnabledFor(logging.DEBUG) and buffer.getvalue():
            sys.stderr.write(buffer.getvalue())


def check_timing_cache_loads(trt, path: Path) -> None:
    """BadInput unless TensorRT takes the cache at `path` (absent is fine: the build writes one).
    `setTimingCache` returning false is TensorRT's documented sign of a cache it can't use (another
    version or device, or corrupt); Polygraphy's CreateConfig ignores that bool, so ask here."""
    if not path.exists():
        return
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    config = builder.create_builder_config()
    cache = config.create_timing_cache(path.read_bytes())
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BadInput(f"timing cache {path} is corrupt or from another TensorRT version or GPU",
                       hint="delete it; the build writes a new one")
