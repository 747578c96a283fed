"""INT8 on models with outlier channels, ours against what users would pick instead (issue 27).

Models: the bundled trained vgg-mini and vgg-mini-jitter, and vgg-mini with outlier channels planted
at s = 10, 100 and 1000 (two output channels of its second convolution scaled by s, the third
convolution's matching inputs divided by s: FP32 unchanged; tests/user_models.py). Quantizers, all
calibrated on the same 256 training digits:

- ours: vggdeploy's default (cross-layer equalization, then ONNX Runtime's minmax in the cpu target's
  u8s7-channel layout), and the tensorrt target (its S8S8 layout) the same way;
- ours + budget: `--max-drop 0.5 --eval-data` 300 other training digits, without equalization,
  to show what the budget alone finds;
- ORT defaults: `onnxruntime.quantization.quantize_static` with its defaults (QDQ, U8S8 per tensor);
- NNCF defaults: `nncf.quantize` through `--quantizer nncf --no-equalize`;
- PT2E: torchao's `X86InductorQuantizer` (default config), `prepare_pt2e`/`convert_pt2e`, then
  `torch.compile`.

Each: top-1 on the 1,000 held-out digits, top-1 agreement with FP32, the logits' relative L2 error
against FP32; ONNX artifacts on ONNX Runtime and OpenVINO. VGG16 (seeded): agreement and logit error
on the bundled photos and batch-1 latency (p50, alternating blocks) with and without equalization,
on both runtimes.

    python benchmarks/int8_robustness.py [--rounds 3] [--work DIR]

Writes benchmarks/results/int8_robustness.md and .json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
SCALES = (10, 100, 1000)
RUNTIMES = ("onnxruntime", "openvino")


def digits_folder(out: Path, start: int, count: int) -> Path:
    """Training digits [start, start+count) as a labelled PNG folder (not the held-out ones we score on)."""
    import skimage.io

    from vggdeploy import get_variant
    from vggdeploy.mnist import split

    v = get_variant("vgg-mini")
    d = split()
    for i in range(start, start + count):
        img = ((d["train_x"][i, 0] * v.std[0] + v.mean[0]) * 255).clip(0, 255).round().astype(np.uint8)
        folder = out / str(int(d["train_y"][i]))
        folder.mkdir(parents=True, exist_ok=True)
        skimage.io.imsave(folder / f"{i:05d}.png", img, check_contrast=False)
    return out


def models(work: Path) -> dict:
    """name -> (LoadedModel, FP32 classifier ONNX)."""
    import torch
    from user_models import plant_outlier_channels

    import vggdeploy as vd

    out = {}
    for name in ("vgg-mini", "vgg-mini-jitter", *[f"vgg-mini outliers s={s}" for s in SCALES]):
        folder = work / name.replace(" ", "-").replace("=", "")
        if name.startswith("vgg-mini outliers"):
            loaded = vd.load_model("vgg-mini")
            plant_outlier_channels(loaded.model, 1, [0, 1], float(name.split("=")[1]))
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(loaded.model.state_dict(), folder / "finetuned.pth")
            loaded = vd.load_model(str(folder / "finetuned.pth"))
        else:
            loaded = vd.load_model(name)
        if not (folder / "classifier.onnx").exists():
            vd.export_onnx(loaded, ["classifier"], folder, force=True)
        out[name] = (loaded, folder / "classifier.onnx")
    return out


def ort_defaults(fp32: Path, out: Path, calib: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    out.mkdir(parents=True, exist_ok=True)
    path = out / "classifier.ort-defaults.onnx"
    quantize_static(str(fp32), str(path), Reader(), use_external_data_format=True)
    return path


def pt2e_logits(loaded, calib: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """PT2E INT8 with X86InductorQuantizer's defaults, compiled: logits on x, and the compile time."""
    import copy

    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = copy.deepcopy(loaded.model).eval()
    b = 8  # export specializes the batch: one size throughout (256 and 1,000 are multiples)
    example = (torch.from_numpy(calib[:b]),)
    with torch.no_grad():
        exported = torch.export.export(model, example).module()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for i in range(0, len(calib), b):
            prepared(torch.from_numpy(calib[i:i + b]))
        from vggdeploy.backends.peers import compiled as compile_frozen

        compiled = compile_frozen(convert_pt2e(prepared))
        t0 = time.perf_counter()
        compiled(torch.from_numpy(x[:b]))
        compile_s = time.perf_counter() - t0
        logits = np.concatenate([compiled(torch.from_numpy(x[i:i + b])).numpy() for i in range(0, len(x), b)])
    return logits, compile_s


def onnx_logits(path: Path, backend: str, x: np.ndarray) -> np.ndarray:
    from vggdeploy import make_runner

    with make_runner(backend, path) as r:
        return r.infer({"input": x})["logits"]


def judge(logits: np.ndarray, ref: np.ndarray, y: np.ndarray | None) -> dict:
    out = {"agreement": round(float((logits.argmax(1) == ref.argmax(1)).mean()), 4),
           "logit_rel_l2": round(float(np.linalg.norm(logits - ref) / np.linalg.norm(ref)), 4)}
    if y is not None:
        out["correct"] = int((logits.argmax(1) == y).sum())
    return out


def accuracy_rows(work: Path) -> list[dict]:
    from vggdeploy.mnist import split
    from vggdeploy.precision import to_int8

    d = split()
    x, y, calib = d["test_x"], d["test_y"], d["train_x"][:256]  # to_int8's default samples: these 256
    budget_data = digits_folder(work / "budget-digits", 3000, 300)
    from vggdeploy.budget import AccuracyBudget

    rows = []
    for name, (loaded, fp32) in models(work).items():
        ref = onnx_logits(fp32, "onnxruntime", x)
        rows.append({"model": name, "quantizer": "FP32", "runtime": "onnxruntime", **judge(ref, ref, y)})
        made = {
            "ours (cpu target, default)": lambda o: to_int8(fp32, o, target="cpu", verify=False, force=True).path,
            "ours (tensorrt target, default)": lambda o: to_int8(fp32, o, target="tensorrt", verify=False, force=True).path,
            "ours without equalization (cpu)": lambda o: to_int8(fp32, o, target="cpu", equalize=False, verify=False,
                                                                 force=True).path,
            "ours without equalization (tensorrt)": lambda o: to_int8(fp32, o, target="tensorrt", equalize=False,
                                                                      verify=False, force=True).path,
            "ours + budget 0.5 (cpu, no equalization)": lambda o: to_int8(
                fp32, o, target="cpu", equalize=False, budget=AccuracyBudget(0.5, budget_data), verify=False, force=True).path,
            "ORT defaults (quantize_static)": lambda o: ort_defaults(fp32, o, calib),
            "NNCF defaults": lambda o: to_int8(fp32, o, target="cpu", quantizer="nncf", equalize=False, verify=False,
                                               force=True).path,
        }
        for label, make in made.items():
            out = fp32.parent / label.replace(" ", "-").replace("+", "plus").replace("(", "").replace(")", "").replace(",", "")
            try:
                path = make(out)
            except Exception as e:  # a budget that can't be met, say: the row says so
                rows.append({"model": name, "quantizer": label, "runtime": "-", "failed": str(e).splitlines()[0]})
                continue
            manifest = path.parent / "manifest.json"  # absent for ORT's own quantize_static
            kept = json.loads(manifest.read_text())["artifacts"][path.name].get("fp32_nodes") if manifest.exists() else None
            for rt in RUNTIMES:
                rows.append({"model": name, "quantizer": label, "runtime": rt, **judge(onnx_logits(path, rt, x), ref, y),
                             **({"kept_fp32": kept} if kept else {})})
        logits, compile_s = pt2e_logits(loaded, calib, x)
        rows.append({"model": name, "quantizer": "PT2E X86InductorQuantizer", "runtime": "torch.compile",
                     **judge(logits, ref, y), "compile_s": round(compile_s, 1)})
        print(f"{name}: done", file=sys.stderr)
    return rows


def vgg16_rows(work: Path, rounds: int) -> list[dict]:
    """VGG16 (seeded): equalization's cost or gain in agreement and logit error on the photos, and
    in batch-1 latency, on both runtimes (blocks alternating, the median of the blocks' p50s)."""
    import vggdeploy as vd
    from vggdeploy.bench import time_runner
    from vggdeploy.data import photo_batch
    from vggdeploy.precision import to_int8

    loaded = vd.load_model("vgg16", "random", seed=0)
    folder = work / "vgg16"
    if not (folder / "classifier.onnx").exists():
        vd.export_onnx(loaded, ["classifier"], folder, force=True, verify=False)
    fp32 = folder / "classifier.onnx"
    _, photos = photo_batch(loaded.variant, (224, 224))
    ref = onnx_logits(fp32, "onnxruntime", photos)
    paths = {eq: to_int8(fp32, folder / ("cle" if eq else "plain"), target="cpu", equalize=eq, verify=False, force=True).path
             for eq in (True, False)}
    times: dict[tuple, list[float]] = {(eq, rt): [] for eq in paths for rt in RUNTIMES}
    for _ in range(rounds):  # blocks alternate, so a slow stretch of the machine hits every row alike
        for (eq, rt), got in times.items():
            with vd.make_runner(rt, paths[eq]) as r:
                got.append(time_runner(r, {"input": photos[:1]}, warmup=3, runs=20)["median_ms"])
    return [{"model": "vgg16 (seeded)", "quantizer": f"ours (cpu){'' if eq else ' without equalization'}", "runtime": rt,
             **judge(onnx_logits(paths[eq], rt, photos), ref, None), "p50_ms_b1": round(statistics.median(got), 2),
             "block_p50s": [round(t, 2) for t in got]}
            for (eq, rt), got in times.items()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "int8_robustness")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from vggdeploy.isa import cpu_isa
    from vggdeploy.tables import table

    rows = accuracy_rows(args.work) + vgg16_rows(args.work, args.rounds)
    isa = cpu_isa()
    system = {"cpu": isa.describe(), "python": platform.python_version(), "rounds": args.rounds}
    results = HERE / "results"
    (results / "int8_robustness.json").write_text(json.dumps({"system": system, "rows": rows}, indent=2) + "\n")
    headers = ["model", "quantizer", "runtime", "correct /1000", "agreement", "logit rel L2", "notes"]
    md = [f"# INT8 on outlier channels: ours against the peers ({system['cpu']})", "",
          "vgg-mini models: top-1 on the 1,000 held-out digits (`correct`), top-1 agreement with FP32 and the logits' "
          "relative L2 error against FP32 on them; all quantizers calibrated on the same 256 training digits. "
          "VGG16 (seeded weights): agreement and logit error on the bundled photos, batch-1 p50 (median of "
          f"{args.rounds} blocks). `python benchmarks/int8_robustness.py`.", "",
          table(headers, [[r["model"], r["quantizer"], r["runtime"], r.get("correct", "-"), r.get("agreement", "-"),
                           r.get("logit_rel_l2", "-"),
                           "; ".join(x for x in (f"p50 {r['p50_ms_b1']} ms" if "p50_ms_b1" in r else "",
                                                  f"compile {r['compile_s']} s" if "compile_s" in r else "",
                                                  f"kept in float: {', '.join(r['kept_fp32'])}" if r.get("kept_fp32") else "",
                                                  f"failed: {r['failed']}" if "failed" in r else "") if x)]
                          for r in rows], markdown=True)]
    (results / "int8_robustness.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
