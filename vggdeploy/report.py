"""Human-readable tables (plain text for logs, Markdown for files)."""

from __future__ import annotations

import logging

from .parity import ParityReport

log = logging.getLogger("vggdeploy")


def table(headers: list[str], rows: list[list], markdown: bool = False) -> str:
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("---" for _ in headers) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.7g}" if 1e-3 <= abs(x) < 1e7 or x == 0 else f"{x:.2e}"
    return str(x)


def parity_rows(report: ParityReport) -> list[list]:
    return [[r.case, r.output, r.max_abs, r.rel_l2, r.cosine, r.top1, r.top5,
             ", ".join(r.failed_inputs) or "ok"] for r in report.results]


PARITY_HEADERS = ["case", "output", "max abs", "rel L2", "cosine", "top-1", "top-5", "status"]


def log_parity(report: ParityReport) -> None:
    th = report.thresholds
    log.info("parity %s vs %s (rel L2 <= %g, cosine >= %g, top-1 >= %g, top-5 >= %g):\n%s",
             report.candidate, report.reference, th.rel_l2, th.cosine, th.top1, th.top5,
             table(PARITY_HEADERS, parity_rows(report)))
