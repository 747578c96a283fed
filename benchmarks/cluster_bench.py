"""`--cluster` against one process: images/s and fixed costs, on a real two-node Ray cluster on
loopback (issue 21).

Both nodes live on this one 2-core machine, so this measures overhead, not speed-up: what a
cluster costs before its first image (start, actors) and per image (Ray Data's batches, one
thread per actor). From these, `scaling` below says how many machines pay off for a job.

    python benchmarks/cluster_bench.py [--images 24] [--work DIR]

Writes benchmarks/results/cluster.json and cluster.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))


def listing_seconds(root: Path, count: int = 100_000) -> float:
    """The driver's listing of `count` image files (empty files: listing reads no pixels)."""
    from vggdeploy.dataset import list_images

    folder = root / "listing"
    if not folder.is_dir():
        for i in range(count):
            sub = folder / f"{i // 1000:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{i:06d}.jpg").touch()
    t0 = time.perf_counter()
    assert len(list_images(folder)) == count
    return time.perf_counter() - t0


def artifacts(work: Path, images: int) -> dict:
    import vggdeploy as vd
    from vggdeploy.mnist import write_image_folder

    out = {}
    mini = work / "vgg-mini"
    if not (mini / "dense.onnx").exists():
        vd.export_onnx(vd.load_model("vgg-mini"), ["dense"], mini, verify=False)
    vgg = work / "vgg16"
    if not (vgg / "dense.onnx").exists():
        vd.export_onnx(vd.load_model("vgg16", "random", seed=0), ["dense"], vgg, verify=False)
    out["vgg-mini"] = (mini / "dense.onnx", write_image_folder(work / "digits", count=images)
                       if not (work / "digits").exists() else work / "digits")
    photos = work / "photos"
    if not photos.exists():
        import skimage.io

        from vggdeploy.data import sample_photos

        pictures = sample_photos()
        for i in range(images):
            (photos / str(i % 10)).mkdir(parents=True, exist_ok=True)
            skimage.io.imsave(photos / str(i % 10) / f"{i}.png", pictures[i % len(pictures)][1], check_contrast=False)
    out["vgg16"] = (vgg / "dense.onnx", photos)
    return out


def timed_eval(artifact, data, protocol, cluster=None) -> dict:
    from vggdeploy.dataset import load_dataset
    from vggdeploy.evaluate import Protocol, evaluate
    from vggdeploy.artifact import Artifact

    samples, _ = load_dataset(data)
    pre = Artifact.open(artifact).meta.preprocessing
    scales = () if protocol == "center" else (pre["resize"],)
    if cluster is None:  # warm: imports, thread pools and the runtime's first call are paid here, not timed
        evaluate([artifact], samples[:2], Protocol(protocol, scales), "cpu")
    t0 = time.perf_counter()
    row = evaluate([artifact], samples, Protocol(protocol, scales), "cpu", cluster=cluster)[0]
    wall = time.perf_counter() - t0
    return {"images": row["images"], "seconds": round(wall, 2), "images_per_s": round(row["images"] / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "cluster")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from vggdeploy.isa import cpu_isa
    from vggdeploy.ray_local import LoopbackCluster

    result = {"cpu": cpu_isa().as_dict(), "date": time.strftime("%Y-%m-%d %H:%M"), "images": args.images,
              "listing_100k_s": round(listing_seconds(args.work), 2), "rows": []}
    models = artifacts(args.work, args.images)
    for model, (artifact, data) in models.items():
        for protocol in ("center", "dense"):
            result["rows"].append({"model": model, "protocol": protocol, "mode": "single process",
                                   **timed_eval(artifact, data, protocol)})
            print(result["rows"][-1], flush=True)
    cluster = LoopbackCluster(args.work)
    t0 = time.perf_counter()
    cluster.start()
    result["cluster_start_s"] = round(time.perf_counter() - t0, 1)
    try:
        from vggdeploy.cluster import ClusterOptions

        for workers in (1, 2):
            opts = ClusterOptions(cluster.address, workers=workers)
            for model, (artifact, data) in models.items():
                for protocol in ("center", "dense"):
                    result["rows"].append({"model": model, "protocol": protocol, "mode": f"ray, {workers} worker(s)",
                                           **timed_eval(artifact, data, protocol, opts)})
                    print(result["rows"][-1], flush=True)
        # a job of one image: what a cluster costs before its first result (actor start, model load)
        artifact, data = models["vgg-mini"]
        one = args.work / "one"
        one.mkdir(exist_ok=True)
        first = next(data.rglob("*.png"))
        (one / "0").mkdir(exist_ok=True)
        (one / "0" / first.name).write_bytes(first.read_bytes())
        result["one_image_job_s"] = timed_eval(artifact, one, "center", ClusterOptions(cluster.address, workers=2))["seconds"]
    finally:
        t0 = time.perf_counter()
        cluster.stop()
        result["cluster_stop_s"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "cluster.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    from vggdeploy.tables import table

    single = {(x["model"], x["protocol"]): x["images_per_s"] for x in r["rows"] if x["mode"] == "single process"}
    rows = [[x["model"], x["protocol"], x["mode"], x["images"], x["seconds"], x["images_per_s"],
             round(x["images_per_s"] / single[x["model"], x["protocol"]], 2)] for x in r["rows"]]
    return "\n".join([
        "# eval on a Ray cluster vs one process (issue 21)", "",
        f"`python benchmarks/cluster_bench.py --images {r['images']}`, {r['date']}, one run on {r['cpu']['cpu']} "
        f"({r['cpu']['int8_class']}), 2 cores. Both nodes (one CPU each) run on this one machine: the figures show "
        "Ray's overhead, not a speed-up.", "",
        table(["model", "protocol", "mode", "images", "wall s", "images/s", "vs one process"], rows, markdown=True), "",
        "Fixed costs, same run:", "",
        f"- starting the two-node cluster: {r['cluster_start_s']} s; stopping it: {r['cluster_stop_s']} s",
        f"- a job of one image on 2 workers (listing, actor start, model load, one inference): {r['one_image_job_s']} s",
        f"- the driver listing 100,000 files (no decoding): {r['listing_100k_s']} s", "",
        "Scaling model: a job of N images takes about F + N x t / W seconds on W machines, with F the fixed "
        "cost (here the one-image job) and t the seconds per image of one process on one machine (1 / its "
        "images/s above). Extra machines pay off once N x t is large against F; with this run's figures, the "
        "number of images whose work equals F once:", "",
        table(["model", "protocol", "t (s/image)", "N where N x t = F"],
              [[m, p, round(1 / ips, 3), round(r["one_image_job_s"] * ips)] for (m, p), ips in single.items()],
              markdown=True), ""])


if __name__ == "__main__":
    main()
