"""Export wall time and peak RSS for vgg16 and vgg19 in each form (issue 2's benchmark).

Each export runs in a fresh process (`vggdeploy export ... --weights random`), timed from the
outside; peak RSS is the child's ru_maxrss. Both with and without the parity check, since ONNX
Runtime's session for the check holds its own copy of the weights.

    python benchmarks/export_bench.py [--variants vgg16,vgg19] [--forms classifier,dense,features]

Writes benchmarks/results/export.json and export.md. Target (2 cores): <= 45 s, <= 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from vggdeploy.tables import table  # noqa: E402

CHILD = """
import resource, sys
from vggdeploy.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def measure(variant: str, form: str, verify: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = ["-q", "export", variant, "--weights", "random", "--form", form, "--out", out]
        argv += [] if verify else ["--no-verify"]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{variant} {form} failed: {proc.stderr[-800:]}")
        peak_kb = int(proc.stderr.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in Path(out).glob("*.onnx*"))
    return {"variant": variant, "form": form, "verify": verify, "wall_s": round(wall, 1),
            "peak_rss_gb": round(peak_kb / 1e6, 2), "artifact_mb": round(size / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="vgg16,vgg19")
    ap.add_argument("--forms", default="classifier,dense,features")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    rows = []
    for v in args.variants.split(","):
        for f in args.forms.split(","):
            for verify in (False, True):
                rows.append(measure(v, f, verify))
                print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (args.out / "export.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    headers = ["variant", "form", "parity check", "wall (s)", "peak RSS (GB)", "artifact (MB)"]
    md = table(headers, [[r["variant"], r["form"], "yes" if r["verify"] else "no", r["wall_s"], r["peak_rss_gb"],
                          r["artifact_mb"]] for r in rows], markdown=True)
    (args.out / "export.md").write_text(
        f"# Export time and memory\n\n{machine['cpus']} cores, Python {machine['python']}, {machine['date']}. "
        "One fresh process per row; wall time includes Python start-up and model construction.\n"
        "Target: any form of vgg19 in <= 45 s and <= 3 GB peak RSS.\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
