"""A bench run's and an eval's files written into their folder: bench.json, bench.md, report.html,
eval.json and eval.md, each atomically. What the pages show is rendered by report.py from the runs,
the evals and the artifacts' manifest entries read here."""

from __future__ import annotations

import json
from pathlib import Path

from .report import eval_columns, eval_rows, render_html, render_markdown
from .runs import load_runs, manifest_entries, read_evals
from .store import atomic_write_text, require_writable
from .tables import table


def write_eval(evals: list[dict], out_dir) -> None:
    """eval.json and eval.md in out_dir; in a benchmark run's folder its report.html is rebuilt with them."""
    out_dir = Path(out_dir)
    require_writable(out_dir)
    atomic_write_text(out_dir / "eval.json", json.dumps(evals, indent=2) + "\n")
    columns = eval_columns(evals)
    atomic_write_text(out_dir / "eval.md", table([h for _, h in columns], eval_rows(evals, columns), markdown=True) + "\n")
    if (out_dir / "bench.json").is_file():
        write_reports(load_runs([out_dir]), out_dir, write_json=False)


def write_reports(runs: list[dict], out_dir, write_json: bool = True) -> list:
    """bench.json (for a single new run), bench.md and report.html in out_dir, each written
    atomically; an eval.json already in out_dir (from `vggdeploy eval --out`) joins the page."""
    out_dir = Path(out_dir)
    require_writable(out_dir)
    written = []
    if write_json:
        atomic_write_text(out_dir / "bench.json", json.dumps(runs[0], indent=2) + "\n")
        written.append(out_dir / "bench.json")
    evals = read_evals(out_dir)  # judged before anything is written
    entries = manifest_entries([r for run in runs for r in run["results"]])
    atomic_write_text(out_dir / "bench.md", render_markdown(runs, entries))
    atomic_write_text(out_dir / "report.html", render_html(runs, evals, entries))
    return written + [out_dir / "bench.md", out_dir / "report.html"]


__all__ = ["write_eval", "write_reports"]
