"""The records runs leave: a benchmark's bench.json and an evaluation's eval.json, read and judged
against what the reports read from them."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadInput
from .manifest import ManifestEntry

SCHEMA = "vggdeploy-bench/1"
# the keys every eval.json row holds (the reports' columns, less the rates a fused row has none of)
EVAL_KEYS = ("artifact", "precision", "runtime", "protocol", "scales", "flip", "images", "top1_err", "top5_err", "skipped")


def load_runs(paths: list[Path]) -> list[dict]:
    """bench.json files (or folders holding one), checked against the schema."""
    runs = []
    for p in map(Path, paths):
        f = p / "bench.json" if p.is_dir() else p
        try:
            data = json.loads(f.read_text())
        except FileNotFoundError:
            raise BadInput(f"{f} not found", hint="give a run folder written by `vggdeploy bench --out`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{f} is not JSON ({e})") from None
        except RecursionError:
            raise BadInput(f"{f} nests too deeply to be a benchmark run") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("results"), list):
            raise BadInput(f"{f} is not a vggdeploy benchmark ({SCHEMA})")
        problem = _run_problem(data)
        if problem:
            raise BadInput(f"{f}: {problem}", hint="re-run `vggdeploy bench --out DIR` to write it anew")
        runs.append(data)
    return runs


RUN_KEYS = {"created": str, "command": str, "system": dict, "gemm_gmacs": dict}
ROW_KEYS = {"artifact": str, "model": str, "form": str, "precision": str, "backend": str, "runtime": str, "size": str,
            "batch": int, "timing": str, "median_ms": (int, float), "images_per_s": (int, float),
            "floor_ms": (int, float, type(None))}  # None: an ONNX without vggdeploy metadata


def _run_problem(run: dict) -> str | None:
    """What a bench.json lacks that the reports read, or None."""
    for key, kind in RUN_KEYS.items():
        if not isinstance(run.get(key), kind):
            return f"{key!r} is missing or not a {kind.__name__}"
    system = {"cpu": str, "cores": int, "isa": list, "versions": dict}
    bad = [k for k, kind in system.items() if not isinstance(run["system"].get(k), kind)]
    if bad:
        return f"'system' has no valid {bad[0]!r}"
    for i, r in enumerate(run["results"]):
        bad = [k for k, kind in ROW_KEYS.items() if not isinstance(r, dict) or not isinstance(r.get(k), kind)]
        if bad:
            return f"result {i} has no valid {bad[0]!r}"
    return None


def read_evals(out_dir) -> list[dict] | None:
    """The rows of the eval.json in out_dir (None: there is none). BadInput for one that is not
    `vggdeploy eval --out`'s."""
    path = Path(out_dir) / "eval.json"
    if not path.is_file():
        return None
    try:
        evals = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not JSON ({type(e).__name__})", hint="remove it, or rewrite it with `vggdeploy eval --out`") from None
    keys = EVAL_KEYS
    if not isinstance(evals, list) or not all(isinstance(r, dict) and all(k in r for k in keys) for r in evals):
        raise BadInput(f"{path} is not `vggdeploy eval --out`'s (a list of rows with {', '.join(keys)})",
                       hint="remove it, or rewrite it with `vggdeploy eval --out`")
    return evals


def manifest_entries(results: list[dict]) -> dict[str, ManifestEntry]:
    """{artifact path: its manifest entry} for each artifact timed in `results`, each folder's
    manifest read once; artifacts outside a vggdeploy folder, or with a damaged manifest, are left out."""
    from .store import entry_of, read_manifest

    entries, manifests = {}, {}
    for r in results:
        path = Path(r["artifact"])
        if r["artifact"].startswith("eager:") or r["artifact"] in entries or not (path.parent / "manifest.json").is_file():
            continue
        if path.parent not in manifests:  # validated, once per folder
            try:
                manifests[path.parent] = read_manifest(path.parent)
            except BadInput:
                manifests[path.parent] = None  # damaged: the report still renders, without its artifacts' figures
        if manifests[path.parent] is not None:
            entry = entry_of(path, manifests[path.parent])
            if entry:
                entries[r["artifact"]] = entry
    return entries


__all__ = ["SCHEMA", "load_runs", "manifest_entries", "read_evals"]
