"""The paper's protocols on deployed artifacts (issue 10): accuracy and speed, in one run.

1. Accuracy: the bundled vgg-mini-jitter (trained by scripts/train_mini.py with the paper's wide
   scale jitter, S in [32, 64] for 32x32 crops, as 256-512 for 224) exported in the dense form,
   FP32 / FP16 / INT8 (cpu target), on the 1,000 held-out MNIST digits written as 32x32 PNGs,
   under center (Q = 48, the middle of the jitter range, crop 32), dense, multicrop (3x3 grid)
   and dense+multicrop at scales 40, 48, 56 (no flips: digits are not mirror-symmetric; one row
   with flips shows what they do to digits).
2. Speed: VGG16's dense form (seeded weights) on the bundled photos, dense protocol at 256, 384,
   512 with flips: end-to-end images/s (decoding and resizing in worker threads) against the
   runtime alone on the same, already prepared inputs.

    python benchmarks/protocols_bench.py [--images 1000] [--photos 8]

Writes benchmarks/results/protocols.md and protocols.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

import vggdeploy as vd  # noqa: E402
from vggdeploy.dataset import load_dataset  # noqa: E402
from vggdeploy.evaluate import Protocol, evaluate, prepare, run_protocol  # noqa: E402
from vggdeploy.mnist import write_image_folder  # noqa: E402
from vggdeploy.precision import to_fp16, to_int8  # noqa: E402
from vggdeploy.tables import table  # noqa: E402

SCALES = (40, 48, 56)
MODEL = "vgg-mini-jitter"


def accuracy(work: Path, images: int) -> list[dict]:
    out = work / MODEL
    if not (out / "dense.onnx").exists():
        vd.export_onnx(vd.load_model(MODEL), ["dense"], out)
    files = {"fp32": out / "dense.onnx", "fp16": out / "dense.fp16.onnx", "int8-cpu": out / "dense.int8-cpu.onnx"}
    if not files["fp16"].exists():
        to_fp16(files["fp32"])
    if not files["int8-cpu"].exists():
        to_int8(files["fp32"], target="cpu")
    data = work / "digits32"
    if not data.exists():
        write_image_folder(data, images, sizes=(32, 32))
    samples, _ = load_dataset(data)
    protocols = [Protocol("center"), Protocol("dense", SCALES), Protocol("multicrop", SCALES, crops=3),
                 Protocol("dense+multicrop", SCALES, crops=3), Protocol("dense", SCALES, flip=True)]
    rows = []
    for precision, path in files.items():
        for p in protocols:
            (row,) = evaluate([path], samples, p, backend="cpu")
            rows.append(row)
            print(precision, p.name, p.flip, row["top1_err"], row["images_per_s"], flush=True)
    return rows


def speed(work: Path, photos: int) -> dict:
    import skimage.data
    import skimage.io

    from vggdeploy.data import SAMPLE_PHOTOS

    out = work / "vgg16"
    if not (out / "dense.onnx").exists():
        vd.export_onnx(vd.load_model("vgg16", "random", seed=0), ["dense"], out, verify=False)
    folder = Path(tempfile.mkdtemp()) / "photos" / "0"
    folder.mkdir(parents=True)
    for i in range(photos):
        name = SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)]
        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img
        skimage.io.imsave(folder / f"{i:02d}-{name}.jpg", img[..., :3] if img.ndim == 3 else img, quality=92,
                          check_contrast=False)
    samples, _ = load_dataset(folder.parent)
    p = Protocol("dense", (256, 384, 512), flip=True)
    pre = vd.Artifact.open(out / "dense.onnx").meta.preprocessing
    with vd.make_runner("cpu", out / "dense.onnx") as r:
        run_protocol(r, samples[:1], p, pre)  # warm-up: kernels for each size
        end_to_end = run_protocol(r, samples, p, pre)
        prepared = [prepare(s, p, pre) for s in samples]
        t0 = time.perf_counter()
        for q in prepared:
            for x in q.dense:
                r.infer({"input": x})
        runtime_alone = time.perf_counter() - t0
        name = r.name
    e2e, alone = len(samples) / end_to_end.wall_s, len(samples) / runtime_alone
    return {"model": "vgg16 dense (seed 0)", "runtime": name, "images": len(samples), "scales": list(p.scales),
            "flip": True, "end_to_end_images_per_s": round(e2e, 3), "runtime_alone_images_per_s": round(alone, 3),
            "ratio": round(alone / e2e, 3), "target": 1.25}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "protocols")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = accuracy(args.work, args.images)
    s = speed(args.work, args.photos)
    results = HERE / "results"
    (results / "protocols.json").write_text(json.dumps({"accuracy": rows, "speed": s}, indent=2) + "\n")
    acc = table(["precision", "runtime", "protocol", "scales", "flip", "images", "top-1 err %", "img/s"],
                [[r["precision"], r["runtime"], r["protocol"], ",".join(map(str, r["scales"])) or "-", r["flip"],
                  r["images"], r["top1_err"], r["images_per_s"]] for r in rows], markdown=True)
    err = {(r["precision"], r["protocol"], r["flip"]): r["top1_err"] for r in rows}
    order = [f"{p}: dense+multicrop {err[(p, 'dense+multicrop', False)]} / dense {err[(p, 'dense', False)]} / "
             f"center {err[(p, 'center', False)]} -> "
             + ("holds" if err[(p, 'dense+multicrop', False)] <= err[(p, 'dense', False)] <= err[(p, 'center', False)]
                else "does not hold") for p in ("fp32", "fp16", "int8-cpu")]
    text = ("# The paper's protocols on deployed artifacts\n\n"
            f"## Accuracy: {MODEL} (dense form) on {rows[0]['images']} held-out 32x32 digits, scales "
            f"{', '.join(map(str, SCALES))}; multicrop 3x3 per scale\n\n{acc}\n\n"
            "The paper's ordering (error: dense+multicrop <= dense <= center), top-1 error %:\n\n"
            + "\n".join(f"- {line}" for line in order) + "\n\n"
            f"## Speed: {s['model']}, dense protocol at {', '.join(map(str, s['scales']))} with flips, "
            f"{s['images']} photos, {s['runtime']}\n\n"
            + table(["end-to-end img/s", "runtime alone img/s", "ratio", "target"],
                    [[s["end_to_end_images_per_s"], s["runtime_alone_images_per_s"], s["ratio"], f"<= {s['target']}"]],
                    markdown=True) + "\n")
    (results / "protocols.md").write_text(text)
    print(text)
    return 0 if s["ratio"] <= s["target"] else 1


if __name__ == "__main__":
    sys.exit(main())
