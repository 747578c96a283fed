"""vggdeploy against what a PyTorch user would pick instead (issue 28), in one run on one machine.

1. Speed: VGG16 classifier (seeded weights: speed does not depend on the values), batch 1 and 8:
   our FP32 and default INT8 (cpu target) on ONNX Runtime and OpenVINO, eager PyTorch, and the
   peers `torch.compile` (inductor, freezing) and PT2E INT8 (torchao X86InductorQuantizer,
   compiled), all through `vggdeploy bench`'s own protocol (each runtime in a process of its own),
   repeated for --rounds rounds; the median of the rounds' p50s.
2. Accuracy beside speed: each INT8's top-1 agreement with FP32 and logit error on the bundled
   photos (VGG16), from the same runners.
3. ModelOpt for the TensorRT graph: NVIDIA ModelOpt's ONNX PTQ (`modelopt.onnx.quantization.quantize`,
   int8, max calibration, `calibration_eps=["cpu"]`, its defaults otherwise) against
   `--target tensorrt` on the same FP32 ONNX and calibration digits (vgg-mini, vgg-mini-jitter):
   accuracy on the 1,000 held-out digits on ONNX Runtime and OpenVINO, TensorRT's Q/DQ rules
   (qdq.py) on both files, file size. ModelOpt runs in a child whose PYTHONPATH holds --modelopt-site,
   a folder made by `pip install --no-deps --target DIR nvidia-modelopt==0.47.0 onnx-graphsurgeon
   onnxconverter-common==1.16.0 cppimport lief pulp omegaconf antlr4-python3-runtime nvidia-ml-py
   onnxslim` (its `[onnx]` extra would replace onnxruntime with onnxruntime-gpu 1.24).

    python benchmarks/peers.py [--rounds 3] [--runs 10] [--modelopt-site DIR] [--work DIR]

Writes benchmarks/results/peers.md and peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
BATCHES = [1, 8]
MODELOPT = """
import sys, numpy as np
sys.path.insert(0, sys.argv[3])
from modelopt.onnx.quantization import quantize
calib = np.load(sys.argv[4])
quantize(onnx_path=sys.argv[1], quantize_mode="int8", calibration_data={"input": calib}, calibration_method="max",
         calibration_eps=["cpu"], output_path=sys.argv[2])
"""


def speed(work: Path, rounds: int, runs: int) -> tuple[list[dict], dict]:
    import vggdeploy as vd
    from vggdeploy.benchrun import run_bench
    from vggdeploy.precision import to_int8

    folder = work / "vgg16"
    if not (folder / "classifier.onnx").exists():
        vd.export_onnx(vd.load_model("vgg16", "random", seed=0), ["classifier"], folder, force=True)
    fp32, int8 = folder / "classifier.onnx", folder / "classifier.int8-cpu.onnx"
    if not int8.exists():
        to_int8(fp32, target="cpu", force=True)
    u8s8 = folder / "u8s8" / "classifier.int8-cpu.onnx"  # 8-bit weights: exact only on VNNI/AMX CPUs
    if not u8s8.exists():
        to_int8(fp32, u8s8.parent, target="cpu", cpu_layout="u8s8-channel", force=True)
    per_row: dict[tuple, list[dict]] = {}
    system = None
    for i in range(rounds):
        run = run_bench([fp32, int8, u8s8], ["onnxruntime", "openvino"], BATCHES, runs=runs, peers=["torch-compile", "pt2e"])
        system = run["system"]
        for r in run["results"]:
            layout = " (u8s8-channel)" if "/u8s8/" in r["artifact"] else ""
            per_row.setdefault((r["precision"] + layout, r["backend"], r["runtime"], r["batch"]), []).append(r)
        print(f"round {i + 1} of {rounds} done", file=sys.stderr)
    rows = []
    for (precision, backend, runtime, batch), rs in per_row.items():
        rows.append({"precision": precision, "backend": backend, "runtime": runtime, "batch": batch,
                     "peer": rs[0].get("peer", False), "p50_ms": round(statistics.median(r["median_ms"] for r in rs), 2),
                     "round_p50s": [r["median_ms"] for r in rs],
                     "compile_s": rs[0].get("compile_s")})
    for batch in BATCHES:  # ratios from the medians of one run's rounds
        same = [r for r in rows if r["batch"] == batch]
        eager = next(r["p50_ms"] for r in same if r["backend"] == "eager")
        best_peer = {p: min(r["p50_ms"] for r in same if r["peer"] and r["precision"] == p) for p in ("fp32", "int8")}
        fastest_peer = min(r["p50_ms"] for r in same if r["peer"])
        for r in same:
            r["vs_eager"] = round(eager / r["p50_ms"], 2)
            r["vs_fastest_peer"] = round(fastest_peer / r["p50_ms"], 2)
            kind = r["precision"].split(" ")[0]
            r["vs_same_precision_peer"] = round(best_peer[kind] / r["p50_ms"], 2) if kind in best_peer else None
    return rows, system


def accuracy(work: Path) -> list[dict]:
    """Each INT8 against FP32 on the bundled photos (VGG16, seeded)."""
    import vggdeploy as vd
    from vggdeploy.data import photo_batch

    folder = work / "vgg16"
    fp32, int8 = folder / "classifier.onnx", folder / "classifier.int8-cpu.onnx"
    _, x = photo_batch(vd.get_variant("vgg16"), (224, 224))
    with vd.make_runner("onnxruntime", fp32) as r:
        ref = r.infer({"input": x})["logits"]
    rows = []
    u8s8 = folder / "u8s8" / "classifier.int8-cpu.onnx"
    for label, backend, path in (("ours INT8 (default, u8s7-channel)", "onnxruntime", int8),
                                 ("ours INT8 (default, u8s7-channel)", "openvino", int8),
                                 ("ours INT8 (u8s8-channel: VNNI/AMX only)", "onnxruntime", u8s8),
                                 ("ours INT8 (u8s8-channel: VNNI/AMX only)", "openvino", u8s8),
                                 ("PT2E INT8 (peer)", "pt2e", fp32)):
        with vd.make_runner(backend, path) as r:
            got = r.infer({"input": x})["logits"]
        rows.append({"int8": label, "runtime": backend, "agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
                     "logit_rel_l2": round(float(np.linalg.norm(got - ref) / np.linalg.norm(ref)), 4)})
    return rows


def modelopt(work: Path, site: Path | None) -> list[dict]:
    import vggdeploy as vd
    from vggdeploy.store import side_files
    from vggdeploy.mnist import split
    from vggdeploy.precision import to_int8
    from vggdeploy.qdq import qdq_violations

    import onnx

    d = split()
    x, y = d["test_x"], d["test_y"]
    rows = []
    for name in ("vgg-mini", "vgg-mini-jitter"):
        folder = work / name
        fp32 = folder / "classifier.onnx"
        if not fp32.exists():
            vd.export_onnx(vd.load_model(name), ["classifier"], folder, force=True)
        ours = to_int8(fp32, target="tensorrt", verify=False, force=True).path
        files = {"ours --target tensorrt": ours}
        calib = folder / "calib.npy"
        np.save(calib, d["train_x"][:256])  # the 256 digits to_int8 calibrates on by default
        theirs = folder / "classifier.modelopt.onnx"
        if site is None:
            rows.append({"model": name, "quantizer": "ModelOpt ONNX PTQ", "failed": "not run: give --modelopt-site DIR"})
        else:
            done = subprocess.run([sys.executable, "-c", MODELOPT, str(fp32), str(theirs), str(site), str(calib)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
            if done.returncode:
                rows.append({"model": name, "quantizer": "ModelOpt ONNX PTQ", "failed": done.stderr.strip().splitlines()[-1]})
            else:
                files["ModelOpt ONNX PTQ (defaults)"] = theirs
        with vd.make_runner("onnxruntime", fp32) as r:
            ref = r.infer({"input": x})["logits"]
        rows.append({"model": name, "quantizer": "FP32", "correct": {"onnxruntime": int((ref.argmax(1) == y).sum())}})
        for label, path in files.items():
            correct, agree = {}, {}
            for rt in ("onnxruntime", "openvino"):
                import onnxruntime as ort

                if rt == "onnxruntime":
                    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    got = s.run(None, {s.get_inputs()[0].name: x.astype(np.float16 if "16" in s.get_inputs()[0].type else np.float32)})[0]
                else:
                    import openvino as ov

                    got = ov.Core().compile_model(str(path), "CPU")(x)[0]
                got = np.asarray(got, np.float32)
                correct[rt], agree[rt] = int((got.argmax(1) == y).sum()), float((got.argmax(1) == ref.argmax(1)).mean())
            model = onnx.load(str(path), load_external_data=False)
            ops = sorted({n.op_type for n in model.graph.node})
            rows.append({"model": name, "quantizer": label, "correct": correct, "agreement": agree,
                         "qdq_violations": qdq_violations(model), "bytes": sum(f.stat().st_size for f in side_files(path)),
                         "quantized_nodes": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
                         "float16": "Cast" in ops and any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--modelopt-site", type=Path)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "peers")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from vggdeploy.tables import table

    rows, system = ([], None) if args.skip_speed else speed(args.work, args.rounds, args.runs)
    acc = accuracy(args.work)
    mo = modelopt(args.work, args.modelopt_site)
    (HERE / "results" / "peers.json").write_text(json.dumps({"system": system, "speed": rows, "accuracy": acc,
                                                            "modelopt": mo}, indent=2) + "\n")
    cpu = f"{system['cpu']} ({system['int8_isa']}), {system['cores']} cores" if system else "not measured"
    md = [f"# vggdeploy against what users would pick instead ({cpu})", "",
          f"VGG16 classifier, 224x224, seeded weights; `vggdeploy bench`'s protocol (each runtime in a process of its own); "
          f"p50 ms, the median of {args.rounds} rounds. `vs fastest peer`: the fastest of torch.compile and PT2E at that "
          "batch over this row (above 1: faster than every peer). `python benchmarks/peers.py`.", "",
          table(["precision", "runtime", "peer", "batch", "p50 ms", "vs eager", "vs fastest peer", "vs same-precision peer",
                 "compile s"],
                [[r["precision"], r["runtime"], "peer" if r["peer"] else ("" if r["backend"] != "eager" else "baseline"),
                  r["batch"], r["p50_ms"], r["vs_eager"], r["vs_fastest_peer"], r["vs_same_precision_peer"] or "-",
                  r["compile_s"] or "-"] for r in sorted(rows, key=lambda r: (r["batch"], r["p50_ms"]))], markdown=True),
          "", "## INT8 accuracy beside speed (VGG16, the 8 bundled photos, against FP32)", "",
          table(["INT8", "runtime", "top-1 agreement", "logit rel L2"],
                [[r["int8"], r["runtime"], r["agreement"], r["logit_rel_l2"]] for r in acc], markdown=True),
          "", "## ModelOpt's ONNX PTQ against `--target tensorrt` (vgg-mini models, 1,000 held-out digits)", "",
          table(["model", "quantizer", "correct ORT", "correct OpenVINO", "agreement ORT", "Q/DQ rule violations", "MB",
                 "notes"],
                [[r["model"], r["quantizer"], r.get("correct", {}).get("onnxruntime", "-"), r.get("correct", {}).get("openvino", "-"),
                  r.get("agreement", {}).get("onnxruntime", "-"), len(r["qdq_violations"]) if "qdq_violations" in r else "-",
                  round(r["bytes"] / 1e6, 3) if "bytes" in r else "-",
                  r.get("failed") or ("; ".join(r["qdq_violations"][:2]) if r.get("qdq_violations") else "")
                  + (" float parts in FP16" if r.get("float16") else "")] for r in mo], markdown=True)]
    (HERE / "results" / "peers.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
