"""How fast the CLI answers what needs no model: `--help`, `list`, and refusals of bad options
(issue 19's target: under 2 s each). Wall time and peak RSS of each command as a fresh process, the
median of `--repeat` runs.

    python benchmarks/refusal_bench.py [--repeat 5]

Writes benchmarks/results/refusals.json and refusals.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

COMMANDS = [["--help"], ["list"], ["export", "--help"], ["export", "vgg16", "--form", "dens"],
            ["export", "vgg16", "--int8", "--target", "gpu"], ["bench", "x.onnx", "--backend", "ov"],
            ["eval", "x.onnx", "--data", "d", "--protocol", "centre"], ["quantize", "x.onnx", "--int8", "--target", "cpu",
                                                                        "--calib-method", "kl"],
            ["triton", "x.onnx", "--repo", "r", "--platform", "tf"], ["export", "vgg16", "--calib-count", "5"],
            ["export", "vgg16", "--io", "fp16"]]
TARGET_S = 2.0


def one(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) of this child alone (wait4's rusage), exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vggdeploy", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from vggdeploy.isa import cpu_isa

    rows = []
    for cmd in COMMANDS:
        runs = [one(cmd) for _ in range(args.repeat)]
        rows.append({"command": "vggdeploy " + " ".join(cmd), "median_s": round(statistics.median(r[0] for r in runs), 3),
                     "max_s": round(max(r[0] for r in runs), 3), "peak_rss_mb": round(max(r[1] for r in runs), 1),
                     "exit": runs[0][2], "under_target": max(r[0] for r in runs) < TARGET_S})
    isa = cpu_isa()
    result = {"cpu": isa.model, "int8_isa": isa.int8_class, "date": time.strftime("%Y-%m-%d %H:%M"),
              "repeat": args.repeat, "target_s": TARGET_S, "rows": rows}
    out = HERE / "results"
    (out / "refusals.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# CLI answers without a model ({isa.model}, {result['date']}, median of {args.repeat})", "",
             f"Target: every command under {TARGET_S} s (the slowest of the runs).", "",
             "| command | exit | median s | slowest s | peak RSS MB | under target |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r['command']}` | {r['exit']} | {r['median_s']} | {r['max_s']} | {r['peak_rss_mb']} | "
              f"{'yes' if r['under_target'] else 'NO'} |" for r in rows]
    (out / "refusals.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
