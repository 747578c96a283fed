"""vggdeploy's `int8-cpu` artifact against NNCF's default quantization, on OpenVINO (issue 12).

NNCF + OpenVINO is what a CPU user would otherwise take. Both quantize the same FP32 ONNX from the
same calibration set (NNCF's defaults, `--quantizer nncf`, vs ours, `--quantizer ort`):

1. Speed: VGG16 classifier (seeded weights; speed does not depend on the values), batch 1 and 8,
   on OpenVINO (and ONNX Runtime for reference), each artifact in blocks of its own, alternating
   for --rounds rounds; the median of the blocks' p50s. The INT8 floor from the GEMM rate measured
   in the same run. The layout vggdeploy wrote before this issue is timed beside them.
2. Where the time goes: OpenVINO's per-layer performance counters at batch 1, by layer type and
   the precision it ran in.
3. Accuracy: the bundled trained vgg-mini and vgg-mini-jitter on the 1,000 held-out digits, on
   OpenVINO: top-1 accuracy, top-1 agreement with FP32 and the logits' error against FP32;
   McNemar's exact test says whether an accuracy difference is more than chance.

    python benchmarks/nncf_bench.py [--rounds 3] [--runs 10] [--work DIR]

Needs NNCF (`pip install -e '.[nncf]'`). Writes benchmarks/results/nncf.md and nncf.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
# vggdeploy is imported inside the functions: `--profile` runs OpenVINO in a child that must not
# import torch (its OpenMP threads slow OpenVINO down, DESIGN.md fact 16)

QUANTIZERS = ("before", "ort", "nncf")
LABEL = {"before": "vggdeploy before issue 16 (u8s8-tensor: 8-bit weights)", "ort": "vggdeploy now (default, ort)",
         "nncf": "NNCF defaults (--quantizer nncf)"}


def quantize(fp32: Path, out: Path, q: str) -> None:
    """No parity check on the photos: the digits below measure closeness to FP32 on real inputs."""
    from vggdeploy import precision

    layout = {"before": "u8s8-tensor"}.get(q)  # the cpu target's default before issue 16
    precision.to_int8(fp32, out, target="cpu", quantizer="ort" if q == "before" else q, cpu_layout=layout,
                      verify=False)


def quantized(name: str, work: Path, seed: int | None = 0) -> dict[str, Path]:
    """The FP32 classifier and one int8-cpu artifact per quantizer, each in a folder of its own."""
    import vggdeploy as vd

    fp32 = work / name / "classifier.onnx"
    if not fp32.exists():
        model = vd.load_model(name, "random", seed=seed) if seed is not None else vd.load_model(name)
        vd.export_onnx(model, ["classifier"], fp32.parent)
    out = {"fp32": fp32}
    for q in QUANTIZERS:
        path = work / name / q / "classifier.int8-cpu.onnx"
        if not path.exists():
            quantize(fp32, path.parent, q)
        out[q] = path
    return out


def speed(files: dict[str, Path], rounds: int, runs: int) -> tuple[list[dict], dict]:
    """Alternating blocks; per quantizer, backend and batch: the median of the blocks' p50 (ms)."""
    from vggdeploy.benchrun import run_bench

    p50s, vs_floor, rates = defaultdict(list), defaultdict(list), []
    for _ in range(rounds):
        for q in QUANTIZERS:
            run = run_bench([files[q]], ["openvino", "onnxruntime"], [1, 8], None, runs, eager=False)
            rates.append(run["gemm_gmacs"]["int8"])
            for r in run["results"]:
                p50s[q, r["backend"], r["batch"]].append(r["median_ms"])
                vs_floor[q, r["backend"], r["batch"]].append(r["vs_floor"])
    rows = [{"quantizer": q, "backend": b, "batch": n, "p50_ms": round(statistics.median(v), 2),
             "blocks_ms": [round(x, 1) for x in v], "x_floor": round(statistics.median(vs_floor[q, b, n]), 2)}
            for (q, b, n), v in sorted(p50s.items(), key=lambda kv: (kv[0][1], kv[0][2], QUANTIZERS.index(kv[0][0])))]
    return rows, {"int8_gmacs_per_block": rates}


def layer_profile(path: Path, runs: int = 30) -> dict[str, float]:
    """ms per (layer type, precision it ran in) at batch 1, from OpenVINO's performance counters: the
    median over runs of each type's sum."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                           "PERF_COUNT": True})
    request = compiled.create_infer_request()
    shape = [1] + [d.get_length() for d in list(compiled.inputs[0].get_partial_shape())[1:]]  # batch 1
    x = np.random.default_rng(0).random(shape, np.float32)
    for _ in range(5):
        request.infer({0: x})
    per_run = defaultdict(list)
    for i in range(runs):
        request.infer({0: x})
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                key = f"{p.node_type} ({p.exec_type.rsplit('_', 1)[-1]})"
                while len(per_run[key]) <= i:
                    per_run[key].append(0.0)
                per_run[key][i] += p.real_time.total_seconds() * 1e3
    median = {k: statistics.median(v) for k, v in per_run.items()}  # the shared machine's hiccups left out
    return {k: round(v, 3) for k, v in sorted(median.items(), key=lambda kv: -kv[1])}


def profiles(files: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Each in a clean interpreter, as bench times them (torch's threads stay out of OpenVINO's way)."""
    out = {}
    for q in QUANTIZERS:
        done = subprocess.run([sys.executable, __file__, "--profile", str(files[q])], capture_output=True, text=True,
                              check=True)
        out[q] = json.loads(done.stdout)
    return out


def accuracy(name: str, files: dict[str, Path]) -> list[dict]:
    """On the 1,000 held-out digits, on OpenVINO: top-1 accuracy, and how close to FP32 (top-1
    agreement, logits' relative L2 error); for ours vs NNCF, McNemar's exact test on the digits
    only one of the two gets right."""
    from scipy.stats import binomtest

    import vggdeploy as vd
    from vggdeploy.mnist import center, split

    x, y = center(split()["test_x"], vd.get_variant(name)), split()["test_y"]  # as its classifier sees digits

    def logits(path):
        with vd.make_runner("openvino", path) as r:
            return np.concatenate([r.infer({"input": x[i:i + 100]})["logits"] for i in range(0, len(x), 100)])

    ref = logits(files["fp32"])
    got = {q: logits(files[q]) for q in QUANTIZERS}
    right = {q: got[q].argmax(1) == y for q in QUANTIZERS}
    only_ours, only_nncf = int((right["ort"] & ~right["nncf"]).sum()), int((right["nncf"] & ~right["ort"]).sum())
    rows = [{"model": name, "quantizer": "fp32", "accuracy_pct": round(100 * float((ref.argmax(1) == y).mean()), 1)}]
    for q in QUANTIZERS:
        rel = np.linalg.norm(got[q] - ref, axis=1) / np.linalg.norm(ref, axis=1)
        rows.append({"model": name, "quantizer": q, "accuracy_pct": round(100 * float(right[q].mean()), 1),
                     "agreement_pct": round(100 * float((got[q].argmax(1) == ref.argmax(1)).mean()), 1),
                     "logit_rel_l2": round(float(rel.mean()), 4)})
    rows[-1] |= {"only_ours_right": only_ours, "only_nncf_right": only_nncf,
                 "mcnemar_p": round(binomtest(only_ours, only_ours + only_nncf).pvalue, 3) if only_ours + only_nncf else 1.0}
    return rows


def verdict(rows: list[dict], acc: list[dict]) -> list[list]:
    """Speed: the per-round ratio ours/NNCF (alternating blocks), against NNCF's own block-to-block
    spread; accuracy: not significantly lower (McNemar), and at least as close to FP32."""
    ov = {(r["quantizer"], r["batch"]): r for r in rows if r["backend"] == "openvino"}
    checks = []
    for n in (1, 8):
        ours, peer = ov["ort", n]["blocks_ms"], ov["nncf", n]["blocks_ms"]
        ratio = statistics.median(a / b for a, b in zip(ours, peer))
        spread = max(abs(b / statistics.median(peer) - 1) for b in peer)
        checks.append([f"OpenVINO batch {n}: ours / NNCF p50, median of rounds", round(ratio, 3),
                       f"<= 1 + NNCF's own spread ({spread:.3f})", ratio <= 1 + spread])
    checks.append(["OpenVINO batch 1: ours over the INT8 floor", ov["ort", 1]["x_floor"], "<= 1.15",
                   ov["ort", 1]["x_floor"] <= 1.15])
    for model in dict.fromkeys(r["model"] for r in acc):
        by = {r["quantizer"]: r for r in acc if r["model"] == model}
        ours, peer = by["ort"], by["nncf"]
        diff = round(ours["accuracy_pct"] - peer["accuracy_pct"], 1)
        checks += [[f"{model}: accuracy ours - NNCF (pt); McNemar p", f"{diff:+}; p = {peer['mcnemar_p']}",
                    ">= 0, or p >= 0.05", diff >= 0 or peer["mcnemar_p"] >= 0.05],
                   [f"{model}: agreement with FP32, ours - NNCF (pt)", round(ours["agreement_pct"] - peer["agreement_pct"], 1),
                    ">= 0", ours["agreement_pct"] >= peer["agreement_pct"]],
                   [f"{model}: logit error vs FP32, ours / NNCF", round(ours["logit_rel_l2"] / peer["logit_rel_l2"], 2),
                    "<= 1", ours["logit_rel_l2"] <= peer["logit_rel_l2"]]]
    return [[*c[:3], bool(c[3])] for c in checks]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "nncf")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile:
        print(json.dumps(layer_profile(args.profile)))
        return 0
    from vggdeploy.benchrun import system_info
    from vggdeploy.tables import table

    vgg16 = quantized("vgg16", args.work)
    digits = {m: quantized(m, args.work, seed=None) for m in ("vgg-mini", "vgg-mini-jitter")}
    rows, extra = speed(vgg16, args.rounds, args.runs)
    prof = profiles(vgg16)
    acc = [r for m, files in digits.items() for r in accuracy(m, files)]
    checks = verdict(rows, acc)
    layers = sorted({k for p in prof.values() for k in p}, key=lambda k: -max(p.get(k, 0) for p in prof.values()))
    md = ["# vggdeploy int8-cpu vs NNCF's default quantization, both on OpenVINO (issue 12)", "",
          f"`python benchmarks/nncf_bench.py --rounds {args.rounds} --runs {args.runs}`; {system_info()['cpu']}, "
          f"{len(extra['int8_gmacs_per_block'])} blocks. Both quantize the same FP32 ONNX from the same calibration "
          "set (VGG16: the 8 bundled photos; the digit models: 256 training digits).", "",
          "## Verdict", "", table(["check", "measured", "goal", "met"], checks, markdown=True), "",
          "## VGG16 classifier 224x224, p50 ms (median over alternating blocks)", "",
          table(["quantizer", "runtime", "batch", "p50 ms", "blocks (ms)", "x INT8 floor"],
                [[LABEL[r["quantizer"]], r["backend"], r["batch"], r["p50_ms"], " / ".join(map(str, r["blocks_ms"])),
                  r["x_floor"]] for r in rows], markdown=True), "",
          "## Where the time goes: OpenVINO performance counters, VGG16 batch 1 (ms per inference)", "",
          table(["layer type (ran in)", *[LABEL[q] for q in QUANTIZERS]],
                [[k, *[prof[q].get(k, "-") for q in QUANTIZERS]] for k in layers]
                + [["sum", *[round(sum(prof[q].values()), 2) for q in QUANTIZERS]]], markdown=True), "",
          "## Accuracy on the 1,000 held-out digits (32x32), OpenVINO", "",
          "vgg-mini is trained at 32x32; vgg-mini-jitter at scales 32-64 (32x32 crops) sees them as its "
          "classifier does (resized to 48, centre crop 32). Logit error: mean over digits of |int8 - fp32| / |fp32| (L2).", "",
          table(["model", "quantizer", "top-1 accuracy %", "top-1 agreement with FP32 %", "logit error vs FP32"],
                [[r["model"], LABEL.get(r["quantizer"], "FP32"), r["accuracy_pct"], r.get("agreement_pct", "-"),
                  r.get("logit_rel_l2", "-")] for r in acc], markdown=True), "",
          "Digits only one of the two gets right (ours / NNCF): "
          + "; ".join(f"{r['model']} {r['only_ours_right']} / {r['only_nncf_right']}" for r in acc if "mcnemar_p" in r)
          + ".", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nncf.md").write_text("\n".join(md))
    (args.out / "nncf.json").write_text(json.dumps({"system": system_info(), "speed": rows, **extra, "profile": prof,
                                                    "accuracy": acc, "checks": checks}, indent=1))
    print("\n".join(md))
    return 0 if all(c[3] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
