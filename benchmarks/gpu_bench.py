"""GPU truth, in one run on a GPU host: TensorRT engines of vgg16 and vgg19 (FP32, FP16, INT8;
classifier and dense forms; batch 1, 8, 64) beside eager PyTorch on CUDA, timed with CUDA events
with and without host<->device copies, and each engine's parity against eager CUDA PyTorch.

    python benchmarks/gpu_bench.py [--models vgg16,vgg19] [--runs 50] [--work DIR]

Run through `make gpu-check` (which runs the `gpu` tests first). Writes benchmarks/results/gpu.json
and gpu.md. Seeded weights (`--weights random`): speed does not depend on the values, and the
run needs no download; parity is measured on the bundled photos as everywhere else.
On a machine without a GPU or TensorRT it says what is missing in one line and exits 3.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from vggdeploy.gpu import missing_for_tensorrt  # noqa: E402

BATCHES = (1, 8, 64)
# FP32 engines may pick TF32 kernels (TensorRT's default on Ampere+): judged like FP16
GPU_THRESHOLDS = {"fp32": "fp16", "fp16": "fp16", "int8": "int8"}


def profiles(form: str) -> list[str]:
    """Batch 1-64 at 224² for both forms; the dense form gets a second, larger H×W profile."""
    p = ["input:1x3x224x224:8x3x224x224:64x3x224x224"]
    return p + ["input:1x3x256x256:1x3x384x384:8x3x512x512"] if form == "dense" else p


def main() -> int:
    missing = missing_for_tensorrt()
    if missing:
        print(f"error: gpu-check needs a GPU host: {'; '.join(missing)}", file=sys.stderr)
        return 3
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vgg16,vgg19")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "gpu")
    args = ap.parse_args()

    import torch

    import vggdeploy as vd
    from vggdeploy.bench import time_runner_cuda
    from vggdeploy.data import photo_batch
    from vggdeploy.engine import build_engine, plan_build
    from vggdeploy.parity import THRESHOLDS, check_parity, default_cases
    from vggdeploy.precision import to_fp16, to_int8
    from vggdeploy.report import table

    rows, parity = [], []
    for name in args.models.split(","):
        loaded = vd.load_model(name, "random", seed=0)
        out = args.work / name
        for form in ("classifier", "dense"):
            fp32 = out / f"{form}.onnx"
            if not fp32.exists():
                vd.export_onnx(loaded, [form], out, verify=False)
            onnx_files = {"fp32": fp32, "fp16": out / f"{form}.fp16.onnx", "int8": out / f"{form}.int8-tensorrt.onnx"}
            if not onnx_files["fp16"].exists():
                to_fp16(fp32, verify=False)
            if not onnx_files["int8"].exists():
                to_int8(fp32, target="tensorrt", method="entropy", verify=False)
            spec = vd.form_spec(loaded.variant, form)
            with vd.make_runner("torch-cuda", fp32) as ref:
                for precision, src in onnx_files.items():
                    plan = plan_build(src, profiles(form), force=True)
                    engine = build_engine(plan)
                    with vd.make_runner("tensorrt", engine) as got:
                        report = check_parity(ref, got, default_cases(loaded.variant, form, spec.size,
                                                                      noise=precision != "int8"), THRESHOLDS[GPU_THRESHOLDS[precision]])
                    parity.append({"model": name, "form": form, "precision": precision, "passed": report.passed,
                                   "rel_l2": max(r.rel_l2 for r in report.results),
                                   "cosine": min(r.cosine for r in report.results)})
                    for b in BATCHES:
                        feed = {"input": photo_batch(loaded.variant, (224, 224), b)[1]}
                        for r in time_runner_cuda(lambda io, e=engine: vd.make_runner("tensorrt", e, device_io=io),
                                                  feed, runs=args.runs):
                            rows.append({"model": name, "form": form, "precision": precision, **r})
            for b in BATCHES:  # eager PyTorch on CUDA (FP32, TF32 off: the exact reference)
                feed = {"input": photo_batch(loaded.variant, (224, 224), b)[1]}
                for r in time_runner_cuda(lambda io: vd.make_runner("torch-cuda", fp32, device_io=io), feed, runs=args.runs):
                    rows.append({"model": name, "form": form, "precision": "fp32", **r})
    system = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "tensorrt": __import__("tensorrt").__version__, "python": platform.python_version()}
    results = HERE / "results"
    (results / "gpu.json").write_text(json.dumps({"system": system, "timings": rows, "parity": parity}, indent=2) + "\n")
    headers = ["model", "form", "precision", "runtime", "timing", "batch", "median ms", "img/s"]
    md = [f"# GPU benchmark ({system['gpu']}, TensorRT {system['tensorrt']}, torch {system['torch']})", "",
          table(headers, [[r["model"], r["form"], r["precision"], r["runtime"], r["timing"], r["batch"], r["median_ms"],
                           r["images_per_s"]] for r in rows], markdown=True), "", "## Parity against eager PyTorch on CUDA", "",
          table(["model", "form", "precision", "passed", "rel L2", "cosine"],
                [[p["model"], p["form"], p["precision"], p["passed"], p["rel_l2"], p["cosine"]] for p in parity], markdown=True)]
    (results / "gpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(p["passed"] for p in parity) else 1


if __name__ == "__main__":
    sys.exit(main())
