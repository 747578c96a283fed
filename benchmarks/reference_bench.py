"""This CPU's reference table, through `vggdeploy bench` itself (issue 9).

vgg16 and vgg19 (seeded weights: speed does not depend on the values, and nothing is downloaded),
all three forms, FP32 / FP16 / INT8 (cpu target), batch 1 and 8, the dense form at 224, 384 and
512; each on the fastest CPU runtime for its precision (`--backends cpu`), beside eager PyTorch.
Then the speed targets, in the same run: the best INT8 path against the INT8 compute floor at
batch 1 and at batch 32 (OpenVINO's throughput mode), and batch 32's images/s against batch 1's.

    python benchmarks/reference_bench.py [--models vgg16,vgg19] [--runs 5] [--work DIR]

Writes benchmarks/results/reference/ (bench.json, bench.md, report.html) and targets.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import vggdeploy as vd  # noqa: E402
from vggdeploy.backends import default_cpu_backend  # noqa: E402
from vggdeploy.benchrun import add_speedups, run_bench  # noqa: E402
from vggdeploy.isa import cpu_isa  # noqa: E402
from vggdeploy.layouts import CPU_DEFAULT  # noqa: E402
from vggdeploy.precision import to_fp16, to_int8  # noqa: E402
from vggdeploy.report_files import write_reports  # noqa: E402
from vggdeploy.tables import table  # noqa: E402


def artifacts(name: str, work: Path) -> Path:
    """All three forms, FP16 and INT8-cpu, exported once (seed 0) and reused."""
    out = work / name
    missing = [f for f in ("classifier", "dense", "features") if not (out / f"{f}.onnx").exists()]
    if missing:
        vd.export_onnx(vd.load_model(name, "random", seed=0), missing, out)
    for form in ("classifier", "dense", "features"):
        if not (out / f"{form}.fp16.onnx").exists():
            to_fp16(out / f"{form}.onnx")
        if not (out / f"{form}.int8-cpu.onnx").exists():
            to_int8(out / f"{form}.onnx", target="cpu")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vgg16,vgg19")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "reference")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "reference")
    args = ap.parse_args()
    folders = {m: artifacts(m, args.work) for m in args.models.split(",")}
    runs = []
    for folder in folders.values():
        files = {f: [folder / f"{f}.onnx", folder / f"{f}.fp16.onnx", folder / f"{f}.int8-cpu.onnx"]
                 for f in ("classifier", "dense", "features")}
        runs.append(run_bench(files["classifier"] + files["features"], ["cpu"], [1, 8], [(224, 224)], args.runs))
        runs.append(run_bench(files["dense"], ["cpu"], [1, 8], [(224, 224), (384, 384), (512, 512)], args.runs))
    # the targets: VGG16's best INT8 path at batch 1 (latency) and 32 (throughput), in this same run
    int8 = folders[args.models.split(",")[0]] / "classifier.int8-cpu.onnx"
    best = default_cpu_backend("int8-cpu", CPU_DEFAULT)  # this CPU's INT8 runtime (layouts.cpu_runtime)
    runs.append(run_bench([int8], [best], [1, 32], None, args.runs, eager=False))
    run = {**runs[0], "results": [r for x in runs for r in x["results"]], "skipped": [s for x in runs for s in x["skipped"]],
           "interrupted": any(x["interrupted"] for x in runs)}
    add_speedups(run["results"])
    write_reports([run], args.out)
    target = [r for r in runs[-1]["results"] if r["timing"] == "wall-clock"]
    b1, b32 = (next(r for r in target if r["batch"] == b) for b in (1, 32))
    checks = [("best INT8 path, batch 1, p50 over the INT8 floor", b1["vs_floor"], "<= 1.3", b1["vs_floor"] <= 1.3),
              ("best INT8 path, batch 32 (throughput mode), p50 over the floor", b32["vs_floor"], "<= 1.15",
               b32["vs_floor"] <= 1.15),
              ("images/s at batch 32 over batch 1", round(b32["images_per_s"] / b1["images_per_s"], 2), ">= 1.1",
               b32["images_per_s"] >= 1.1 * b1["images_per_s"])]
    text = ("# Speed targets (issue 9), measured in the reference run\n\n"
            f"Measured on {cpu_isa().describe()}.\n\n"
            f"{int8.parent.name} classifier INT8 (cpu target, {CPU_DEFAULT}) on {b1['runtime']} / {b32['runtime']}; INT8 floor from "
            f"the GEMM rate measured in the same run ({run['gemm_gmacs']['int8']} GMAC/s): {b1['floor_ms']} ms at "
            f"batch 1, {b32['floor_ms']} ms at batch 32.\n\n"
            + table(["target", "measured", "goal", "met"], [list(c) for c in checks], markdown=True) + "\n")
    (args.out / "targets.md").write_text(text)
    print(text)
    return 0 if all(c[3] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
