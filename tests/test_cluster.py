"""eval and extract on a real two-node Ray cluster on loopback (127.0.0.2 head, 127.0.0.3 worker,
one CPU each), compared image by image with the single-process path; a node killed mid-job; a
truncated JPEG. No traffic leaves 127.0.0.0/8. Each node is a `ray start --block` child stopped by
PID (never `ray stop`, which stops every Ray process on the machine)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from vggdeploy.ray_local import LoopbackCluster, _wait

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported yet: Ray reads its auth settings at import
        if os.environ.get("VGGDEPLOY_REQUIRE_RAY"):
            pytest.fail("Ray is required here (pip install -e '.[dev]')")
        pytest.skip("pip install 'vggdeploy[ray]' (the dev extra has it)")
    c = LoopbackCluster(tmp_path_factory.mktemp("ray"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trained vgg-mini: dense (FP32, INT8) and features forms; 60 held-out digits and a truncated JPEG."""
    from vggdeploy import export_onnx, load_model
    from vggdeploy.mnist import write_image_folder
    from vggdeploy.precision import to_int8

    out = tmp_path_factory.mktemp("mini")
    export_onnx(load_model("vgg-mini"), ["dense", "features"], out)
    int8 = to_int8(out / "dense.onnx", target="cpu")
    data = write_image_folder(out / "digits", count=60)
    (data / "7" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    return {"fp32": out / "dense.onnx", "int8": int8, "features": out / "features.onnx", "data": data}


def single(artifact, samples, p, pre):
    from vggdeploy import make_runner
    from vggdeploy.evaluate import run_protocol

    with make_runner("cpu", artifact) as r:
        return run_protocol(r, samples, p, pre)


@pytest.mark.parametrize("protocol", ["center", "dense+multicrop"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_eval_on_the_cluster_equals_single_process(cluster, trained, protocol, precision):
    from vggdeploy.cluster import ClusterOptions
    from vggdeploy.evaluate import run_protocol_on_cluster
    from vggdeploy.dataset import load_dataset
    from vggdeploy.evaluate import Protocol
    from vggdeploy.artifact import Artifact

    samples, _ = load_dataset(trained["data"])
    pre = Artifact.open(trained[precision]).meta.preprocessing
    p = Protocol(protocol, () if protocol == "center" else (40, 48), flip=protocol != "center", crops=2)
    here = single(trained[precision], samples, p, pre)
    there, runtime = run_protocol_on_cluster(ClusterOptions(cluster.address, workers=2), trained[precision], samples,
                                             p, pre, "cpu", batch=8)
    assert "(ray)" in runtime
    assert sorted(here.paths) == there.paths and len(there.paths) == 60  # the same rows, each once
    assert list(there.failed) == [str((trained["data"] / "7" / "truncated.jpg").resolve())]
    mine = dict(zip(here.paths, here.posteriors))
    got = np.array(there.posteriors)
    want = np.array([mine[k] for k in there.paths])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_cli_eval_and_extract_on_the_cluster(cluster, trained, run, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.chdir(trained["data"].parent)  # a relative --data is resolved before it is shipped
    code, out, err = run("eval", trained["fp32"], "--data", trained["data"].name, "--cluster", cluster.address,
                         "--workers", "2", "--out", tmp_path / "eval")
    assert code == 0, err
    assert run("eval", trained["fp32"], "--data", trained["data"], "--out", tmp_path / "eval1")[0] == 0

    rows_on, rows_off = (json.loads((tmp_path / d / "eval.json").read_text())[0] for d in ("eval", "eval1"))
    assert rows_on["top1_err"] == rows_off["top1_err"] and rows_on["images"] == rows_off["images"] == 60
    assert len(rows_on["skipped"]) == len(rows_off["skipped"]) == 1
    code, out, err = run("extract", trained["features"], "--data", trained["data"], "--out", tmp_path / "emb",
                         "--cluster", cluster.address, "--workers", "2", "--batch", "8")
    assert code == 0 and "61 of 61 image(s) written" in out and "1 unreadable" in out, err
    code, out, err = run("eval", trained["fp32"], "--data", trained["data"], "--cluster", cluster.address, "--json")
    assert code == 0 and json.loads(out)["results"][0]["images"] == 60, (out, err)  # stdout: the JSON alone
    assert run("extract", trained["features"], "--data", trained["data"], "--out", tmp_path / "emb1")[0] == 0
    a = pq.read_table(list((tmp_path / "emb").glob("*.parquet"))).sort_by("path").to_pylist()
    b = pq.read_table(tmp_path / "emb1" / "part-00000.parquet").sort_by("path").to_pylist()
    assert [r["path"] for r in a] == [r["path"] for r in b] and [r["error"] is None for r in a] == [r["error"] is None for r in b]
    for ra, rb in zip(a, b):
        for k in ra:
            if k not in ("path", "error") and ra[k] is not None:
                np.testing.assert_allclose(ra[k], rb[k], atol=1e-6)


def test_an_unreachable_cluster_is_one_line_in_bounded_time(trained):
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # never imported here: the cluster fixture sets auth first
        pytest.skip("pip install 'vggdeploy[ray]'")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vggdeploy", "eval", str(trained["fp32"]), "--data",
                           str(trained["data"]), "--cluster", "127.0.0.9:1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "cannot reach a Ray cluster at 127.0.0.9:1" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and time.monotonic() - t0 < 90


def many_images(data, folder):
    """480 images: the 60 digits, 8 times each."""
    for i, f in enumerate(sorted(data.rglob("*.png")) * 8):
        (folder / str(i % 10)).mkdir(parents=True, exist_ok=True)
        (folder / str(i % 10) / f"{i}.png").write_bytes(f.read_bytes())
    return folder


def test_a_node_killed_mid_job_loses_no_row(cluster, trained, tmp_path):
    """Last in this module: it takes the second node down."""
    from vggdeploy.cluster import ClusterOptions
    from vggdeploy.extraction import extract, read_embeddings

    import ray

    many = many_images(trained["data"], tmp_path / "many")
    result = {}
    job = threading.Thread(target=lambda: result.update(extract(
        trained["features"], many, tmp_path / "out", batch=4, cluster=ClusterOptions(cluster.address, workers=2))))
    job.start()
    _wait(lambda: ray.available_resources().get("CPU", 0) == 0, 120, "two actors at work (every CPU held)")
    assert job.is_alive()  # mid-job
    os.kill(cluster.raylet_pid("127.0.0.3"), signal.SIGKILL)
    job.join(600)
    table = read_embeddings(tmp_path / "out")
    paths = table.column("path").to_pylist()
    assert result["written"] == len(paths) == len(set(paths)) == 480  # every row exactly once
    assert table.column("error").null_count == 480
    assert sum(n["Alive"] for n in ray.nodes()) == 1
