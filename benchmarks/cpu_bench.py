"""CPU speed of every precision on every CPU runtime, and accuracy on the trained model (issues 3, 4).

One run, side by side: VGG16 at 224², batch 1 and 8, eager PyTorch, torch.compile, and ONNX
Runtime and OpenVINO on the FP32, FP16, INT8-tensorrt and INT8-cpu artifacts (each CPU
layout), with the compute floor (VGG16's MACs over the GEMM rates measured in the same run).
Then the trained vgg-mini on its 1,000 held-out digits: accuracy and top-1 agreement with FP32
for each precision and runtime.

    python benchmarks/cpu_bench.py [--runs 10] [--no-compile] [--work DIR]

Writes benchmarks/results/cpu.json, cpu.md and cpu.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import vggdeploy as vd  # noqa: E402
from vggdeploy.backends.eager import TorchRunner  # noqa: E402
from vggdeploy.bench import gemm_rates, time_runner  # noqa: E402
from vggdeploy.data import photo_batch  # noqa: E402
from vggdeploy.isa import cpu_isa  # noqa: E402
from vggdeploy.mnist import accuracy, split  # noqa: E402
from vggdeploy.precision import CPU_LAYOUTS, to_fp16, to_int8  # noqa: E402
from vggdeploy.tables import table  # noqa: E402
from vggdeploy.variants import cost  # noqa: E402


def artifacts(loaded, work: Path) -> dict[str, Path]:
    """FP32, FP16, INT8-tensorrt and one INT8-cpu file per layout, made once and reused."""
    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "classifier.onnx"
    if not fp32.exists():
        vd.export_onnx(loaded, ["classifier"], work, verify=False)
    out = {"fp32": fp32, "fp16": work / "classifier.fp16.onnx", "int8-tensorrt": work / "classifier.int8-tensorrt.onnx"}
    if not out["fp16"].exists():
        to_fp16(fp32, verify=False)
    if not out["int8-tensorrt"].exists():
        to_int8(fp32, target="tensorrt", verify=False)
    for layout in CPU_LAYOUTS:
        layout_dir = work / layout
        path = layout_dir / "classifier.int8-cpu.onnx"
        if not path.exists():
            to_int8(fp32, layout_dir, target="cpu", cpu_layout=layout, verify=False)
        out[f"int8-cpu[{layout}]"] = path
    return out


def speed(files: dict[str, Path], loaded, runs: int, compile_: bool) -> list[dict]:
    rows = []
    feeds = {b: {"input": photo_batch(loaded.variant, (224, 224), b)[1]} for b in (1, 8)}
    refs = {}
    module = vd.build_form(loaded.model, "classifier")
    torch.set_num_threads(os.cpu_count())
    runners = [("eager", "fp32", lambda: TorchRunner(module, ["logits"]))]
    if compile_:
        runners.append(("torch.compile", "fp32", lambda: TorchRunner(torch.compile(module), ["logits"])))
    for precision, path in files.items():
        runners.append(("onnxruntime", precision, lambda p=path: vd.make_runner("onnxruntime", p)))
        runners.append(("openvino", precision, lambda p=path: vd.make_runner("openvino", p, hint="latency")))
    runners.append(("openvino-bf16", "fp32", lambda: vd.make_runner("openvino", files["fp32"], inference_precision="bf16")))
    runners.append(("openvino-throughput", "int8-cpu[u8s8-tensor]",
                    lambda: vd.make_runner("openvino", files["int8-cpu[u8s8-tensor]"], hint="throughput")))
    for backend, precision, make in runners:
        t0 = time.perf_counter()
        with make() as r:
            start_s = time.perf_counter() - t0
            for b, feed in feeds.items():
                if backend == "openvino-throughput" and b == 1:
                    continue
                stats = time_runner(r, feed, warmup=2 if backend != "torch.compile" else 3, runs=runs if b == 1 else max(3, runs // 2))
                logits = r.infer(feed)["logits"]
                if (backend, precision) == ("eager", "fp32"):
                    refs[b] = logits
                agree = float((logits.argmax(1) == refs[b].argmax(1)).mean())
                rows.append({"backend": backend, "precision": precision, **stats, "start_s": round(start_s, 1),
                             "top1_agree_photos": agree})
                print(rows[-1], flush=True)
    return rows


def mini_accuracy(work: Path) -> list[dict]:
    """vgg-mini on MNIST held-out: FP32/FP16/INT8 x method x target x runtime."""
    loaded = vd.load_model("vgg-mini")
    d = work / "mini"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "classifier.onnx").exists():
        vd.export_onnx(loaded, ["classifier"], d, verify=False)
    calib = d / "calib.npz"
    np.savez(calib, input=split()["train_x"][:512])
    files = {"fp32": d / "classifier.onnx", "fp16": to_fp16(d / "classifier.onnx", verify=False, force=True)}
    for method in ("minmax", "entropy", "percentile"):
        for target in ("tensorrt", "cpu"):
            out = d / method
            files[f"int8-{target} ({method})"] = to_int8(d / "classifier.onnx", out, target=target, method=method,
                                                         calib=str(calib), verify=False, force=True)
    files["int8-tensorrt (minmax, first+last FP32)"] = to_int8(
        d / "classifier.onnx", d / "keep", target="tensorrt", calib=str(calib), keep_fp32=["first", "last"],
        verify=False, force=True)
    x, y = split()["test_x"], split()["test_y"]
    rows, ref = [], None
    for backend in ("onnxruntime", "openvino"):
        for name, path in files.items():
            with vd.make_runner(backend, path) as r:
                logits = np.concatenate([r.infer({"input": x[i:i + 100]})["logits"] for i in range(0, len(x), 100)])
            ref = logits if name == "fp32" and ref is None else ref
            rows.append({"backend": backend, "artifact": name, "top1": accuracy(logits, y),
                         "agree_fp32": float((logits.argmax(1) == ref.argmax(1)).mean())})
            print(rows[-1], flush=True)
    return rows


def plot(rows: list[dict], floor: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b1 = [r for r in rows if r["batch"] == 1]
    labels = [f"{r['backend']} {r['precision']}" for r in b1]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(b1) + 1.5))
    ax.barh(labels, [r["median_ms"] for r in b1], color=["tab:gray" if "torch" in r["backend"] or r["backend"] == "eager"
                                                        else "tab:blue" if r["backend"] == "onnxruntime" else "tab:green" for r in b1])
    for name, ms in floor.items():
        ax.axvline(ms, ls="--", color="tab:red" if name == "int8" else "tab:orange", label=f"{name} GEMM floor {ms:.0f} ms")
    ax.invert_yaxis()
    ax.set_xlabel("VGG16 224², batch 1: median latency (ms), lower is better")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--work", type=Path, default=HERE / ".work")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    loaded = vd.load_model("vgg16", "random", seed=0)
    files = artifacts(loaded, args.work / "vgg16")
    rates = gemm_rates()
    macs = cost(loaded.variant)[1]
    floor = {k: macs / (rates[k] * 1e9) * 1e3 for k in ("fp32", "int8")}
    rows = speed(files, loaded, args.runs, not args.no_compile)
    del loaded
    acc = mini_accuracy(args.work)
    machine = {"cpus": os.cpu_count(), "cpu": cpu_isa().describe(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu.json").write_text(json.dumps({"machine": machine, "gemm_gmacs": rates, "floor_ms_batch1": floor,
                                                   "speed": rows, "mini_accuracy": acc}, indent=2) + "\n")
    base = {b: next(r["median_ms"] for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32"
                    and r["batch"] == b) for b in (1, 8)}
    eager = {b: next(r["median_ms"] for r in rows if r["backend"] == "eager" and r["batch"] == b) for b in (1, 8)}
    speed_md = table(["backend", "artifact", "batch", "median ms", "img/s", "vs ORT FP32", "vs eager", "x INT8 floor",
                      "top-1 agree (photos)"],
                     [[r["backend"], r["precision"], r["batch"], r["median_ms"], r["images_per_s"],
                       f"{base[r['batch']] / r['median_ms']:.2f}x", f"{eager[r['batch']] / r['median_ms']:.2f}x",
                       f"{r['median_ms'] / (floor['int8'] * r['batch']):.2f}", r["top1_agree_photos"]] for r in rows],
                     markdown=True)
    acc_md = table(["runtime", "artifact", "held-out top-1", "agreement with FP32"],
                   [[r["backend"], r["artifact"], f"{100 * r['top1']:.1f}%", f"{100 * r['agree_fp32']:.1f}%"] for r in acc],
                   markdown=True)
    plot(rows, floor, args.out / "cpu.png")
    (args.out / "cpu.md").write_text(
        f"# CPU speed and accuracy\n\n{machine['cpus']} cores ({machine['cpu']}), {machine['date']}, one run.\n\n"
        f"Measured GEMM rates (best of ONNX Runtime and OpenVINO, 2048³): FP32 {rates['fp32']} GMAC/s, "
        f"INT8 {rates['int8']} GMAC/s (all: {rates}). "
        f"VGG16 224² is {macs / 1e9:.2f} GMAC: floor at batch 1 {floor['fp32']:.0f} ms FP32, {floor['int8']:.0f} ms INT8.\n\n"
        "## VGG16 224² (random weights, seed 0; INT8 calibrated on the bundled photos)\n\n" + speed_md +
        "\n\n![latency](cpu.png)\n\n## vgg-mini on 1,000 held-out MNIST digits\n\n" + acc_md + "\n")
    print((args.out / "cpu.md").read_text())


if __name__ == "__main__":
    main()
