"""Served fast (issue 11): images/s through a real tritonserver (python platform: vggdeploy's
fastest CPU runner in model.py) at 1, 4 and 16 requests in flight, against the runner's own
images/s at the same request batch, in the same run. Goal: served >= 0.8x the runner.

    python benchmarks/triton_bench.py [--artifact PATH] [--batch 8] [--requests 48]

Needs scripts/triton_env.sh's environment (.venv-triton). Default artifact: VGG16's INT8 (cpu
target) classifier from benchmarks/reference_bench.py's work folder (made if missing).
Writes benchmarks/results/triton.md and triton.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import vggdeploy as vd  # noqa: E402
from vggdeploy.tables import table  # noqa: E402
from vggdeploy.triton import TritonOptions, write_repository  # noqa: E402
from vggdeploy.triton_server import start_server  # noqa: E402


def default_artifact() -> Path:
    out = HERE / ".work" / "reference" / "vgg16"
    path = out / "classifier.int8-cpu.onnx"
    if not path.exists():
        if not (out / "classifier.onnx").exists():
            vd.export_onnx(vd.load_model("vgg16", "random", seed=0), ["classifier"], out)
        vd.to_int8(out / "classifier.onnx", target="cpu")
    return path


def served(url: str, x: np.ndarray, concurrency: int, requests: int) -> float:
    """images/s with `concurrency` gRPC requests in flight (a semaphore keeps exactly that many)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    slots, done, errors = threading.Semaphore(concurrency), threading.Event(), []
    left = [requests]
    lock = threading.Lock()

    def callback(result, error):
        if error:
            errors.append(error)
        slots.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    t0 = time.perf_counter()
    for _ in range(requests):
        slots.acquire()
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        client.async_infer("model", [inp], callback)
    done.wait(600)
    if errors:
        raise RuntimeError(errors[0])
    return requests * len(x) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--env", type=Path, default=HERE.parent / ".venv-triton")
    args = ap.parse_args()
    artifact = args.artifact or default_artifact()
    meta = vd.Artifact.open(artifact).meta
    v_size, channels = meta.spec.size, len(meta.preprocessing.mean)
    x = np.random.default_rng(0).standard_normal((args.batch, channels, *v_size)).astype(np.float32)
    with vd.make_runner("cpu", artifact, **({"hint": "throughput"} if "int8" in artifact.name else {})) as r:
        r.infer({"input": x})
        t0 = time.perf_counter()
        for _ in range(max(3, args.requests // 8)):
            r.infer({"input": x})
        own = max(3, args.requests // 8) * args.batch / (time.perf_counter() - t0)
        runtime = r.name
    repo = Path(tempfile.mkdtemp()) / "repo"
    write_repository(artifact, repo, TritonOptions("model", platform="python", max_batch=max(16, args.batch),
                                                   dynamic_batching=False))
    rows = []
    with start_server(repo, args.env) as urls:
        served(urls["grpc"], x, 1, 2)  # warm-up
        for n in (1, 4, 16):
            ips = served(urls["grpc"], x, n, args.requests)
            rows.append({"in_flight": n, "served_images_per_s": round(ips, 2), "runner_images_per_s": round(own, 2),
                         "ratio": round(ips / own, 3)})
            print(rows[-1], flush=True)
    (HERE / "results" / "triton.json").write_text(json.dumps({"artifact": str(artifact.name), "runner": runtime,
                                                              "batch": args.batch, "rows": rows}, indent=2) + "\n")
    text = (f"# Served through tritonserver (python platform) vs the runner alone\n\n{artifact.parent.name}/"
            f"{artifact.name}, request batch {args.batch}, runner {runtime}, one run; goal: served >= 0.8x.\n\n"
            + table(["requests in flight", "served img/s", "runner img/s", "ratio"],
                    [[r["in_flight"], r["served_images_per_s"], r["runner_images_per_s"], r["ratio"]] for r in rows],
                    markdown=True) + "\n")
    (HERE / "results" / "triton.md").write_text(text)
    print(text)
    return 0 if all(r["ratio"] >= 0.8 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
