"""The README's journey on a full-size VGG, as one command in a fresh process: wall time, peak RSS and
the longest silence of its log (issue 19's targets: <= 3 GB peak RSS for VGG16, no silence over 10 s).

    python benchmarks/journey_bench.py [--variant vgg16]

runs `vggdeploy export VARIANT --weights random --seed 0 --form all --fp16 --int8 --target cpu` with
stderr a pipe (so progress is log lines, as in CI or a log file). Writes benchmarks/results/journey.json
and journey.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="vgg16")
    args = ap.parse_args()
    from vggdeploy.isa import cpu_isa

    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "vggdeploy", "export", args.variant, "--weights", "random", "--seed", "0",
                "--form", "all", "--fp16", "--int8", "--target", "cpu", "--out", out]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        lines: list[tuple[float, str]] = []
        reader = threading.Thread(target=lambda: lines.extend((time.perf_counter() - t0, ln.rstrip()) for ln in proc.stderr))
        reader.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        reader.join()
        if os.waitstatus_to_exitcode(status):
            raise SystemExit("the journey failed:\n" + "\n".join(line for _, line in lines[-20:]))
        size = sum(p.stat().st_size for p in Path(out).iterdir() if p.is_file())
    times = [0.0] + [t for t, _ in lines] + [wall]
    gaps = [(b - a, (lines[i][1] if i < len(lines) else "(end)")) for i, (a, b) in enumerate(zip(times, times[1:]))]
    longest = max(gaps)
    isa = cpu_isa()
    result = {"cpu": isa.model, "int8_isa": isa.int8_class, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "command": " ".join(["vggdeploy", *argv[3:-2]]), "wall_s": round(wall, 1),
              "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 2), "artifacts_gb": round(size / 1e9, 2),  # GB = 1e9 bytes
              "longest_silence_s": round(longest[0], 1), "silence_before": longest[1], "log_lines": len(lines)}
    (HERE / "results" / "journey.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# The journey on {args.variant} ({isa.model}, {result['cores']} cores, {result['date']})", "",
          f"`{result['command']}`, stderr a pipe.", "",
          "| wall s | peak RSS GB | artifacts GB | longest silence s | log lines |", "|---|---|---|---|---|",
          f"| {result['wall_s']} | {result['peak_rss_gb']} | {result['artifacts_gb']} | {result['longest_silence_s']} "
          f"| {result['log_lines']} |", "",
          f"The longest silence ended with: `{longest[1]}`. Targets: peak RSS <= 3 GB, no silence over 10 s."]
    (HERE / "results" / "journey.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
