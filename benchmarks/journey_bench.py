"""The README's journey on a full-size VGG, as one command in a fresh process, from three weight sources:
wall time, peak memory counted three ways, and the longest silence of its log (issue 19's targets:
<= 3 GB peak RSS for VGG16, no silence over 10 s).

    python benchmarks/journey_bench.py [--variant vgg16] [--sources random,timm-folder,dataparallel]

runs `vggdeploy export VARIANT|CHECKPOINT --form all --fp16 --int8 --target cpu` with stderr a pipe
(so progress is log lines, as in CI or a log file), from `--weights random`, a timm-layout checkpoint
folder (model.safetensors as the hub holds it; `pre_logits.fc1` a 7x7 conv, `head.fc`) and a
DataParallel `.pth` (`module.` names), the two checkpoints made here first from the same weights as
`--weights random --seed 0` (torchvision's and timm's own random inits leave a VGG's logits near zero,
which INT8's parity rightly refuses). The command runs under GNU `time -v` where it is
installed, and the peak is read three ways: the kernel's high-water mark of the vggdeploy process
(VmHWM, polled every 50 ms: it only grows), `wait4`'s ru_maxrss for the process `time` ran, and
what `time -v` prints. Each journey runs with an empty $VGGDEPLOY_CACHE, as a user's first run: cached
calibration ranges skip ONNX Runtime's calibration, the part of INT8 that needs the most memory (an earlier
version of this script, run on a warm cache, reported its `--weights random` journey 1.5 GB low).
Writes benchmarks/results/journey.json and journey.md.
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
SOURCES = ("random", "timm-folder", "dataparallel")


def make_source(source: str, variant: str, folder: Path) -> list[str]:
    """The MODEL and --weights arguments for one source (checkpoints written into folder)."""
    import torch

    if source == "random":
        return [variant, "--weights", "random", "--seed", "0"]
    from vggdeploy.weights import load_model

    sd = load_model(variant, weights="random", seed=0).model.state_dict()  # the same weights as `random`
    if source == "timm-folder":
        from safetensors.torch import save_file

        timm_names = {"classifier.0": ("pre_logits.fc1", (4096, 512, 7, 7)), "classifier.3": ("pre_logits.fc2", (4096, 4096, 1, 1)),
                      "classifier.6": ("head.fc", None)}
        renamed = {}
        for name, t in sd.items():
            module, _, param = name.rpartition(".")
            target, shape = timm_names.get(module, (module, None))
            renamed[f"{target}.{param}"] = t.reshape(shape).contiguous() if shape and param == "weight" else t
        hub = folder / f"timm-{variant}"
        hub.mkdir()
        save_file(renamed, hub / "model.safetensors")
        return [str(hub)]
    torch.save({f"module.{k}": t for k, t in sd.items()}, folder / f"{variant}-dataparallel.pth")  # as DataParallel names them
    return [str(folder / f"{variant}-dataparallel.pth")]


def vm_hwm_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def run_journey(model_args: list[str], out: Path) -> dict:
    gnu_time = Path("/usr/bin/time").exists()
    timing_file = out / "time-v.txt"
    argv = [sys.executable, "-m", "vggdeploy", "export", *model_args, "--form", "all", "--fp16", "--int8",
            "--target", "cpu", "--out", str(out / "artifacts")]
    wrapped = ["/usr/bin/time", "-v", "-o", str(timing_file), *argv] if gnu_time else argv
    env = {**os.environ, "VGGDEPLOY_CACHE": str(out / "cache")}  # cold: nothing calibrated or compiled before
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrapped, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter() - t0, ln.rstrip()) for ln in proc.stderr))
    reader.start()
    hwm, done = [0], threading.Event()

    def poll():  # the vggdeploy process: `time`'s child, or the process itself
        while not done.wait(0.05):
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            pids = [int(p) for p in kids.read_text().split()] if gnu_time and kids.exists() else [proc.pid]
            hwm[0] = max([hwm[0], *map(vm_hwm_kb, pids)])

    poller = threading.Thread(target=poll)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    reader.join()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("the journey failed:\n" + "\n".join(line for _, line in lines[-20:]))
    time_v = None
    if gnu_time:
        said = timing_file.read_text()
        time_v = next(int(line.split(":")[1]) for line in said.splitlines() if "Maximum resident set size" in line)
    size = sum(p.stat().st_size for p in (out / "artifacts").iterdir() if p.is_file())
    times = [0.0] + [t for t, _ in lines] + [wall]
    gaps = [(b - a, (lines[i][1] if i < len(lines) else "(end)")) for i, (a, b) in enumerate(zip(times, times[1:]))]
    longest = max(gaps)
    gb = lambda kb: round(kb * 1024 / 1e9, 2) if kb else None  # noqa: E731  (GB = 1e9 bytes)
    return {"command": " ".join(["vggdeploy", *argv[3:-2]]), "wall_s": round(wall, 1),
            "peak_vmhwm_gb": gb(hwm[0]), "peak_wait4_gb": gb(usage.ru_maxrss), "peak_time_v_gb": gb(time_v),
            "artifacts_gb": round(size / 1e9, 2), "longest_silence_s": round(longest[0], 1),
            "silence_before": longest[1], "log_lines": len(lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="vgg16")
    ap.add_argument("--sources", default=",".join(SOURCES))
    args = ap.parse_args()
    from vggdeploy.isa import cpu_isa

    isa = cpu_isa()
    rows = []
    for source in args.sources.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            model_args = make_source(source, args.variant, Path(tmp))
            rows.append({"source": source, **run_journey(model_args, Path(tmp))})
            print(json.dumps(rows[-1]), flush=True)
    result = {"cpu": isa.model, "int8_isa": isa.int8_class, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "variant": args.variant, "runs": rows}
    (HERE / "results" / "journey.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# The journey on {args.variant} ({isa.model}, {result['cores']} cores, {result['date']})", "",
          "`vggdeploy export MODEL --form all --fp16 --int8 --target cpu`, stderr a pipe, from three weight sources, "
          "each with an empty cache (a first run: ONNX Runtime calibrates).", "",
          "| source | wall s | peak GB: VmHWM | wait4 ru_maxrss | time -v | artifacts GB | longest silence s | log lines |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['source']} | {r['wall_s']} | {r['peak_vmhwm_gb']} | {r['peak_wait4_gb']} | {r['peak_time_v_gb'] or '-'} | "
           f"{r['artifacts_gb']} | {r['longest_silence_s']} | {r['log_lines']} |" for r in rows]
    md += ["", "VmHWM: the vggdeploy process's resident high-water mark (the kernel's, polled every 50 ms; it only grows). "
           "wait4 and time -v: the ru_maxrss the kernel reports for the process GNU time ran. Targets: peak RSS <= 3 GB, "
           "no silence over 10 s."]
    (HERE / "results" / "journey.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
