"""GPU truth in one run, on any GPU host, with a network or without one: every GPU path whose parts
are present runs (parity against eager PyTorch FP32 on the CPU, then CUDA-event timing at batch 1
and 8); every other path is named with the reason it could not run.

    python benchmarks/gpu_bench.py [--model vgg16] [--runs 30] [--work DIR]

Paths: eager PyTorch on CUDA in FP32 (TF32 off) and under FP16 autocast; torch.compile (inductor)
of the FP16 one on CUDA (compile time recorded); the FP32 ONNX on ONNX Runtime's CUDA provider
(onnxruntime-gpu); TensorRT engines (FP32, FP16, INT8) of the dense form through Polygraphy.
Seeded weights: speed does not depend on the values, and nothing is downloaded. Inputs are the
photos bundled in scikit-image, or seeded noise where it is missing (said in the report).
Writes benchmarks/results/gpu.json and gpu.md. Exit 0 when every path that ran passed parity, 1
when one failed, 3 when no GPU path ran (no CUDA device: one line). `make gpu-check` and
`make gpu-check-host` run it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
BATCHES = (1, 8)


class Unavailable(Exception):
    """A path that can't run on this host, and why."""


def inputs(v, batch: int):
    from vggdeploy.data import photo_batch, random_batch

    try:
        return "photos", photo_batch(v, (224, 224), batch)[1]
    except ImportError as e:  # scikit-image or torchvision missing on the host
        return f"seeded noise ({e.name} missing)", random_batch(v, (224, 224), batch, seed=batch)


class Ctx:
    """The model, its eager CPU reference outputs per batch, and what every path shares."""

    def __init__(self, model: str, runs: int, work: Path):
        import torch

        import vggdeploy as vd
        from vggdeploy.backends.eager import TorchRunner

        self.runs, self.work = runs, work
        self.loaded = vd.load_model(model, "random", seed=0)
        self.variant = self.loaded.variant
        self.feeds, self.reference = {}, {}
        with TorchRunner(self.loaded.model, ["logits"]) as cpu:
            for b in BATCHES:
                self.input_kind, x = inputs(self.variant, b)
                self.feeds[b] = {"input": x}
                self.reference[b] = cpu.infer(self.feeds[b])["logits"]
        self.torch = torch

    def parity(self, runner, precision: str) -> dict:
        """Logits against eager CPU FP32 at each batch (host numpy in and out)."""
        import numpy as np

        from vggdeploy.parity import THRESHOLDS

        th = THRESHOLDS[precision]
        worst_rel, worst_cos, agree = 0.0, 1.0, []
        for b, feed in self.feeds.items():
            got, ref = runner.infer(feed)["logits"].astype(np.float32), self.reference[b]
            worst_rel = max(worst_rel, float(np.linalg.norm(got - ref) / np.linalg.norm(ref)))
            cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
            worst_cos = min(worst_cos, float(cos.min()))
            agree += list(got.argmax(1) == ref.argmax(1))
        top1 = float(np.mean(agree))
        return {"rel_l2": round(worst_rel, 6), "cosine": round(worst_cos, 6), "top1_agree": round(top1, 3),
                "thresholds": precision,
                "passed": worst_rel <= th.rel_l2 and worst_cos >= th.cosine and top1 >= th.top1}

    def time(self, make, device_io: bool = True) -> list[dict]:
        from vggdeploy.bench import time_runner_cuda

        rows = []
        for b, feed in self.feeds.items():
            rows += time_runner_cuda(make, feed, runs=self.runs, device_io=device_io)
        return rows


def autocast_fp16(module):
    import torch

    class Fp16(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            with torch.autocast("cuda", torch.float16):
                return self.m(x).float()

    return Fp16(module)


def eager_path(ctx: Ctx, fp16: bool, compiled: bool) -> dict:
    from vggdeploy.backends.eager import TorchRunner

    module = autocast_fp16(ctx.loaded.model) if fp16 else ctx.loaded.model
    extra = {}
    if compiled:
        import torch

        module = torch.compile(module.cuda().eval())
        with TorchRunner(module, ["logits"], device="cuda") as r:
            t0 = time.perf_counter()
            for feed in ctx.feeds.values():  # one compilation per batch size
                r.infer(feed)
            extra["compile_s"] = round(time.perf_counter() - t0, 1)
    with TorchRunner(module, ["logits"], device="cuda") as r:
        parity = ctx.parity(r, "fp16" if fp16 else "fp32")
    rows = ctx.time(lambda io: TorchRunner(module, ["logits"], device="cuda", device_io=io))
    return {"parity": parity, "rows": rows, **extra}


def exported(ctx: Ctx, form: str) -> Path:
    import vggdeploy as vd

    path = ctx.work / f"{form}.onnx"
    if not path.exists():
        try:
            vd.export_onnx(ctx.loaded, [form], ctx.work, verify=False, force=True)
        except ImportError as e:
            raise Unavailable(f"exporting to ONNX needs {e.name} (pip install onnxscript)") from None
    return path


def ort_cuda_path(ctx: Ctx) -> dict:
    import vggdeploy as vd
    from vggdeploy.errors import MissingEnvironment

    try:
        import onnxruntime as ort
    except ImportError:
        raise Unavailable("onnxruntime is not installed") from None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Unavailable(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (onnxruntime-gpu is not installed)")
    path = exported(ctx, "classifier")
    try:
        with vd.make_runner("onnxruntime-cuda", path) as r:
            parity = ctx.parity(r, "fp32")
    except MissingEnvironment as e:
        raise Unavailable(str(e)) from None
    return {"parity": parity, "rows": ctx.time(lambda io: vd.make_runner("onnxruntime-cuda", path), device_io=False)}


def tensorrt_path(ctx: Ctx, precision: str) -> dict:
    import vggdeploy as vd
    from vggdeploy.engine import build_engine, plan_build
    from vggdeploy.gpu import missing_for_tensorrt
    from vggdeploy.precision import to_fp16, to_int8

    missing = missing_for_tensorrt()
    if missing:
        raise Unavailable("; ".join(missing))
    fp32 = exported(ctx, "dense")
    src = {"fp32": lambda: fp32, "fp16": lambda: to_fp16(fp32, verify=False, force=True).path,
           "int8": lambda: to_int8(fp32, target="tensorrt", method="entropy", verify=False, force=True).path}[precision]()
    t0 = time.perf_counter()
    engine = build_engine(plan_build(src, ["input:1x3x224x224:8x3x224x224:8x3x224x224"], force=True))
    build_s = round(time.perf_counter() - t0, 1)
    with vd.make_runner("tensorrt", engine) as r:  # FP32: Polygraphy's build turns TF32 off, so FP32's thresholds
        parity = ctx.parity(r, precision)
    return {"parity": parity, "rows": ctx.time(lambda io: vd.make_runner("tensorrt", engine, device_io=io)),
            "build_s": build_s}


PATHS = {
    "eager-cuda fp32": lambda c: eager_path(c, fp16=False, compiled=False),
    "eager-cuda fp16-autocast": lambda c: eager_path(c, fp16=True, compiled=False),
    "torch.compile-cuda fp16-autocast": lambda c: eager_path(c, fp16=True, compiled=True),
    "onnxruntime-cuda fp32": ort_cuda_path,
    "tensorrt fp32": lambda c: tensorrt_path(c, "fp32"),
    "tensorrt fp16": lambda c: tensorrt_path(c, "fp16"),
    "tensorrt int8": lambda c: tensorrt_path(c, "int8"),
}


def main() -> int:
    from vggdeploy.gpu import cuda_info, tensorrt_version

    info = cuda_info()
    if not info.available:
        print(f"error: gpu-check needs a GPU host: {info.problem}", file=sys.stderr)
        return 3
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "gpu")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args.model, args.runs, args.work)
    torch = ctx.torch
    system = {"gpu": torch.cuda.get_device_name(0), "driver": info.driver, "torch": torch.__version__,
              "cuda": torch.version.cuda, "python": platform.python_version(), "model": args.model,
              "inputs": ctx.input_kind, "tensorrt": tensorrt_version()}
    results = {}
    for name, run in PATHS.items():
        t0 = time.perf_counter()
        try:
            results[name] = {"ran": True, **run(ctx)}
        except Unavailable as e:
            results[name] = {"ran": False, "reason": str(e)}
        except Exception as e:  # a path that fails is reported, and the others still run
            results[name] = {"ran": False, "reason": f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {'ran' if results[name]['ran'] else 'not run: ' + results[name]['reason']} "
              f"({results[name]['wall_s']} s)", file=sys.stderr)
        write(system, results, final=name == list(PATHS)[-1])  # a run cut off by its time limit keeps what it measured
    ran = [r for r in results.values() if r["ran"]]
    if not ran:
        return 3
    return 0 if all(r["parity"]["passed"] for r in ran) else 1


def write(system: dict, results: dict, final: bool) -> None:
    from vggdeploy.tables import table

    out = HERE / "results"
    (out / "gpu.json").write_text(json.dumps({"system": system, "paths": results}, indent=2) + "\n")
    timing = [[name, r["runtime"], r["timing"], r["batch"], r["median_ms"], r["images_per_s"], r.get("gpu_mem_mb")]
              for name, res in results.items() if res["ran"] for r in res["rows"]]
    parity = [[name, res["parity"]["passed"], res["parity"]["rel_l2"], res["parity"]["cosine"], res["parity"]["top1_agree"],
               res["parity"]["thresholds"], res.get("compile_s", res.get("build_s", ""))]
              for name, res in results.items() if res["ran"]]
    md = [f"# GPU check: {system['model']} on {system['gpu']} (driver CUDA {system['driver']}, torch {system['torch']}, "
          f"TensorRT {system['tensorrt'] or 'absent'})", "",
          f"Inputs: {system['inputs']}, 224x224, batch {', '.join(map(str, BATCHES))}. Parity: logits against eager PyTorch "
          "FP32 on the CPU. Timing: CUDA events, median.", "",
          "## Parity", "", table(["path", "passed", "rel L2", "cosine", "top-1 agree", "thresholds", "compile/build s"], parity,
                                 markdown=True), "",
          "## Timing", "", table(["path", "runtime", "timing", "batch", "median ms", "img/s", "GPU MB held"], timing, markdown=True),
          "", "## Paths that did not run", ""]
    md += [f"- {name}: {r['reason']}" for name, r in results.items() if not r["ran"]] or ["- none"]
    md += [] if final else ["", f"(partial: {len(results)} of {len(PATHS)} paths so far)"]
    (out / "gpu.md").write_text("\n".join(md) + "\n")
    if final:
        print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
