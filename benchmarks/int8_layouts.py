"""Which INT8 layout for the cpu target keeps accuracy and speed on every x86 CPU (issue 16).

Accuracy: the trained vgg-mini, calibrated on 256 training digits (minmax), on its 1,000
held-out digits, each candidate layout (and the tensorrt target) on ONNX Runtime and OpenVINO on
this CPU, and on ONNX Runtime under QEMU's user-mode emulation of an AVX2-only AMD Zen 3
(`qemu-x86_64 -cpu EPYC-Milan`: CPUID says AVX2 and no AVX-512/VNNI, so ONNX Runtime dispatches
its AVX2 kernels, whose `VPMADDUBSW` saturates exactly as on the silicon). Speed: VGG16 224² with
seeded weights, batch 1 and 8, each layout on both runtimes (each runner timed in a block of
its own), against the INT8 floor from the GEMM rate measured in the same run. Emulated speed
means nothing, so speed rows are for this CPU only: the CPU is named in the output.

    python benchmarks/int8_layouts.py [--part accuracy|speed|all] [--runs 10] [--work DIR]

Writes benchmarks/results/int8_layouts-<int8 class>.json and .md (one file per kind of CPU, so
runs on an AVX2 and a VNNI machine stand side by side).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import vggdeploy as vd  # noqa: E402
from vggdeploy.isa import cpu_isa  # noqa: E402 (the emulated child imports no more than this and ORT)

EMULATED_CPU = "EPYC-Milan"  # AMD Zen 3: AVX2, FMA, no AVX-512, no VNNI


def candidates(fp32: Path, work: Path, calib: str | None) -> dict[str, Path]:
    """Every cpu layout and the tensorrt target, quantized once from the same FP32 ONNX."""
    from vggdeploy.precision import CPU_LAYOUTS, to_int8

    out = {}
    for layout in CPU_LAYOUTS:
        path = work / layout / "classifier.int8-cpu.onnx"
        if not path.exists():
            to_int8(fp32, path.parent, target="cpu", cpu_layout=layout, calib=calib, verify=False, force=True)
        out[layout] = path
    path = work / "tensorrt" / "classifier.int8-tensorrt.onnx"
    if not path.exists():
        to_int8(fp32, path.parent, target="tensorrt", calib=calib, verify=False, force=True)
    out["tensorrt layout"] = path
    return out


def predictions(backend: str, path: Path, x: np.ndarray) -> np.ndarray:
    with vd.make_runner(backend, path) as r:
        return np.concatenate([r.infer({"input": x[i:i + 250]})["logits"].argmax(1) for i in range(0, len(x), 250)])


def emulated_predictions(paths: list[Path], x_file: Path) -> list[np.ndarray] | None:
    """ONNX Runtime's predictions under an emulated AVX2 CPU, or None without qemu-x86_64."""
    qemu = shutil.which("qemu-x86_64")
    if not qemu or not cpu_isa().x86:
        return None
    cmd = [qemu, "-cpu", EMULATED_CPU, sys.executable, __file__, "--child", str(x_file), *map(str, paths)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [np.array(p) for p in json.loads(done.stdout.splitlines()[-1])["predictions"]]


def accuracy_rows(work: Path) -> list[dict]:
    from vggdeploy.mnist import split
    from vggdeploy.precision import CPU_LAYOUTS

    d = work / "mini"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "classifier.onnx").exists():
        vd.export_onnx(vd.load_model("vgg-mini"), ["classifier"], d, verify=False)
    data = split()
    np.savez(d / "calib.npz", input=data["train_x"][:256])
    np.save(d / "test_x.npy", data["test_x"])
    files = {"fp32": d / "classifier.onnx", **candidates(d / "classifier.onnx", d, str(d / "calib.npz"))}
    y = data["test_y"]
    t0 = time.perf_counter()
    emulated = emulated_predictions(list(files.values()), d / "test_x.npy")
    print(f"emulated {EMULATED_CPU} run: {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for i, (name, path) in enumerate(files.items()):
        row = {"layout": name, "portable": CPU_LAYOUTS[name].portable if name in CPU_LAYOUTS else None}
        for backend in ("onnxruntime", "openvino"):
            row[f"{backend} here"] = int((predictions(backend, path, data["test_x"]) == y).sum())
        row[f"onnxruntime {EMULATED_CPU}"] = int((emulated[i] == y).sum()) if emulated else None
        rows.append(row)
        print(row, flush=True)
    return rows


def speed_rows(work: Path, runs: int) -> tuple[list[dict], dict]:
    from vggdeploy.bench import gemm_rates, time_runner
    from vggdeploy.data import photo_batch
    from vggdeploy.variants import cost

    loaded = vd.load_model("vgg16", "random", seed=0)
    d = work / "vgg16"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "classifier.onnx").exists():
        vd.export_onnx(loaded, ["classifier"], d, verify=False)
    macs = cost(loaded.variant)[1]
    files = candidates(d / "classifier.onnx", d, None)
    feeds = {b: {"input": photo_batch(loaded.variant, (224, 224), b)[1]} for b in (1, 8)}
    del loaded
    rates = gemm_rates()
    rows = []
    for name, path in files.items():
        for backend in ("onnxruntime", "openvino"):
            for b, feed in feeds.items():
                options = {"hint": "latency" if b == 1 else "throughput"} if backend == "openvino" else {}
                with vd.make_runner(backend, path, **options) as r:
                    stats = time_runner(r, feed, runs=runs if b == 1 else max(3, runs // 2))
                floor = macs * b / (rates["int8"] * 1e9) * 1e3
                rows.append({"layout": name, "backend": backend, "batch": b, "median_ms": stats["median_ms"],
                             "images_per_s": stats["images_per_s"], "x_int8_floor": round(stats["median_ms"] / floor, 2)})
                print(rows[-1], flush=True)
    return rows, rates


def child(x_file: str, paths: list[str]) -> None:
    """Runs under the emulator: ONNX Runtime only (no torch), predictions as JSON."""
    x = np.load(x_file)
    print(json.dumps({"isa": cpu_isa().as_dict(),
                      "predictions": [predictions("onnxruntime", Path(p), x).tolist() for p in paths]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["accuracy", "speed", "all"], default="all")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "int8_layouts")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])
    from vggdeploy.benchrun import system_info
    from vggdeploy.precision import CPU_DEFAULT
    from vggdeploy.tables import table

    isa = cpu_isa()
    stem = args.out / f"int8_layouts-{isa.int8_class}"
    # a part run alone keeps the other part of an earlier run on the same kind of CPU
    result = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").exists() else {}
    result |= {"cpu": isa.as_dict(), "date": time.strftime("%Y-%m-%d %H:%M"), "default": CPU_DEFAULT,
               "versions": system_info()["versions"]}
    if args.part in ("accuracy", "all"):
        result["accuracy"] = accuracy_rows(args.work)
    if args.part in ("speed", "all"):
        result["speed"], result["gemm_gmacs"] = speed_rows(args.work, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# INT8 cpu layouts on {isa.model} ({isa.int8_class})\n",
          f"Measured {result['date']} on {isa.describe()}. Default layout: `{CPU_DEFAULT}`.\n"]
    if "accuracy" in result:
        cols = list(result["accuracy"][0])
        md += ["## vgg-mini, correct of 1,000 held-out digits (minmax, 256 calibration digits)\n",
               f"`onnxruntime {EMULATED_CPU}`: ONNX Runtime under `qemu-x86_64 -cpu {EMULATED_CPU}` (AVX2, no VNNI).\n",
               table(cols, [[r[c] for c in cols] for r in result["accuracy"]], markdown=True), ""]
    if "speed" in result:
        md += [f"## VGG16 224², p50 latency on this CPU ({isa.model})\n",
               f"INT8 floor from the GEMM rate measured in the same run: {result['gemm_gmacs']['int8']} GMAC/s.\n",
               table(["layout", "runtime", "batch", "p50 ms", "img/s", "x INT8 floor"],
                     [[r["layout"], r["backend"], r["batch"], r["median_ms"], r["images_per_s"], r["x_int8_floor"]]
                      for r in result["speed"]], markdown=True), ""]
    stem.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
