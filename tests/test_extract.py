"""`vggdeploy extract` on one machine: Parquet embeddings of a folder of real images, equal to the
runner's own outputs, error rows for unreadable files, refusals before any work."""

import json

import numpy as np
import pytest

from vggdeploy import make_runner

pq = pytest.importorskip("pyarrow.parquet", reason="extract writes Parquet: pip install 'vggdeploy[extract]'")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 held-out digits as PNGs in nested folders, one truncated JPEG among them."""
    from vggdeploy.mnist import write_image_folder

    folder = write_image_folder(tmp_path_factory.mktemp("img") / "data", count=40)
    (folder / "3" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)  # a JPEG cut short
    return folder


def test_extract_matches_the_runner_image_by_image(run, mini_artifacts, images, tmp_path):
    from vggdeploy.extraction import plan_extract

    out = tmp_path / "emb"
    code, stdout, err = run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out,
                            "--batch", "7")
    assert code == 0, err
    assert "41 of 41 image(s) written" in stdout and "1 unreadable" in stdout
    table = pq.read_table(out / "part-00000.parquet")
    meta = table.schema.metadata
    plan = plan_extract(mini_artifacts / "features.onnx")
    assert meta[b"vggdeploy.artifact_sha256"].decode() == plan.sha256 and meta[b"vggdeploy.precision"] == b"fp32"
    rows = table.to_pylist()
    assert len(rows) == 41 and len({r["path"] for r in rows}) == 41
    broken = [r for r in rows if r["error"]]
    assert len(broken) == 1 and broken[0]["path"].endswith("broken.jpg") and broken[0][plan.outputs[0]] is None
    good = [r for r in rows if not r["error"]][:5]
    x = np.stack([plan.pre(r["path"]) for r in good])
    with make_runner("onnxruntime", mini_artifacts / "features.onnx") as r:
        ref = r.infer({"input": x})
    for tap in plan.outputs:
        np.testing.assert_allclose(np.array([g[tap] for g in good]), ref[tap].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    summary = json.loads((out / "_extract.json").read_text())
    assert summary["images"] == 41 and summary["written"] == 41 and summary["errors"] == 1


def test_pool_none_keeps_the_map_and_its_shape(run, mini_artifacts, images, tmp_path):
    code, _, err = run("extract", mini_artifacts / "dense.onnx", "--data", images, "--out", tmp_path / "d",
                       "--taps", "score_map", "--pool", "none")
    assert code == 0, err
    row = next(r for r in pq.read_table(tmp_path / "d" / "part-00000.parquet").to_pylist() if not r["error"])
    assert np.prod(row["score_map_shape"]) == len(row["score_map"]) and row["score_map_shape"][0] == 10


@pytest.mark.parametrize("args,message,code", [
    (["{a}/classifier.onnx"], "is the classifier form", 2),
    (["{a}/features.onnx", "--taps", "nope"], "has no output 'nope'", 2),
    (["{a}/features.onnx", "--batch", "0"], "--batch 0", 2),
    (["{a}/features.onnx", "--workers", "2"], "--workers applies to --cluster", 2),
    (["{a}/features.onnx", "--cluster", "auto", "--workers", "0"], "--workers 0", 2),
    (["{a}/features.onnx", "--backend", "bogus"], "'bogus' is not one of", 2),
])
def test_extract_refuses_before_any_work(run, mini_artifacts, images, tmp_path, args, message, code):
    out = tmp_path / "never"
    got, _, err = run("extract", *[a.format(a=mini_artifacts) for a in args], "--data", images, "--out", out)
    assert got == code and message in err, err
    assert not out.exists()


def test_existing_output_and_empty_folders_are_refused(run, mini_artifacts, images, tmp_path):
    out = tmp_path / "o"
    assert run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out)[0] == 0
    code, _, err = run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out)
    assert code == 2 and "already exists" in err and "--force" in err
    assert run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out, "--force")[0] == 0
    (tmp_path / "empty").mkdir()
    code, _, err = run("extract", mini_artifacts / "features.onnx", "--data", tmp_path / "empty", "--out", tmp_path / "e")
    assert code == 2 and "no images" in err


def test_listing_a_folder_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from vggdeploy.dataset import list_images, load_dataset; from vggdeploy.extraction import "
            "plan_extract; from vggdeploy.cluster import ClusterOptions; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_cluster_without_ray_is_exit_3_with_the_install_line(run, mini_artifacts, images, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it isn't installed
    code, _, err = run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", tmp_path / "o",
                       "--cluster", "auto")
    assert code == 3 and "--cluster needs Ray" in err and "pip install 'vggdeploy[ray]'" in err
    assert not (tmp_path / "o").exists()


def _running_extract(mini_artifacts, tmp_path):
    """A `vggdeploy extract` over 5,000 images, once it has begun writing; (process, out folder)."""
    import os
    import subprocess
    import sys
    import time

    from vggdeploy.mnist import write_image_folder

    data = write_image_folder(tmp_path / "many", count=1000)
    for copy in range(1, 5):  # 5,000 images (hard links): a job that is surely still running at the signal
        for f in list((data).glob("[0-9]/*.png")):
            (data / f"copy{copy}" / f.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(f, data / f"copy{copy}" / f.parent.name / f.name)
    out = tmp_path / "emb"
    proc = subprocess.Popen([sys.executable, "-m", "vggdeploy", "extract", str(mini_artifacts / "features.onnx"),
                             "--data", str(data), "--out", str(out), "--batch", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".part-00000.parquet.*")) and time.monotonic() < deadline:  # written under a hidden name
        time.sleep(0.2)
    time.sleep(0.5)
    assert proc.poll() is None, "the job ended before the signal"
    return proc, out


def test_ctrl_c_keeps_the_rows_written(mini_artifacts, tmp_path):
    """A real SIGINT to a running `vggdeploy extract`: the Parquet file it leaves is whole."""
    import signal

    proc, out = _running_extract(mini_artifacts, tmp_path)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "interrupted" in stdout, stderr
    table = pq.read_table(out / "part-00000.parquet")
    summary = json.loads((out / "_extract.json").read_text())
    assert 0 < table.num_rows == summary["written"] < 5000 and summary["interrupted"]


def test_sigterm_leaves_no_part_and_exits_143(mini_artifacts, tmp_path):
    """SIGTERM mid-run: exit 143, and neither a footerless part under its final name nor the hidden one."""
    import signal

    proc, out = _running_extract(mini_artifacts, tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in stderr, stderr
    assert not list(out.glob("*parquet*")), sorted(p.name for p in out.iterdir())


def test_every_parquet_reader_opens_the_output_folder(run, mini_artifacts, images, tmp_path):
    """The folder itself is the dataset: pandas, pyarrow, duckdb and Ray Data read it as written (the
    summary is `_extract.json`, a name they skip)."""
    import pandas as pd

    out = tmp_path / "emb"
    assert run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out)[0] == 0
    assert len(pd.read_parquet(out)) == 41 and pq.read_table(out).num_rows == 41
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.connect().execute(f"select count(*) from read_parquet('{out}/*.parquet')").fetchall() == [(41,)]
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.data.read_parquet(str(out)).count() == 41
    finally:
        ray.shutdown()


def test_force_replaces_only_what_vggdeploy_wrote(run, mini_artifacts, images, tmp_path):
    """--force over an earlier run (its part and an old-style extract.json) replaces them; a folder
    holding another tool's Parquet file is refused, with and without --force, and the file stays."""
    import shutil

    out = tmp_path / "emb"
    assert run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out)[0] == 0
    shutil.copy(out / "part-00000.parquet", out / "part-00001-earlier.parquet")  # a cluster run's part name
    (out / "extract.json").write_text("{}")  # what an earlier release wrote
    assert run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out, "--force")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["_extract.json", "part-00000.parquet"]
    assert pq.read_table(out).num_rows == 41  # exactly once
    other = tmp_path / "spark"
    other.mkdir()
    pq.write_table(pq.read_table(out / "part-00000.parquet").replace_schema_metadata({}),
                   other / "part-00000-c000.snappy.parquet")
    for extra in ([], ["--force"]):
        code, _, err = run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", other, *extra)
        assert code == 2 and ("not empty" in err if not extra else "Parquet files vggdeploy did not write" in err), err
    assert sorted(p.name for p in other.iterdir()) == ["part-00000-c000.snappy.parquet"]


def test_a_second_extract_into_a_folder_being_written_is_refused(run, mini_artifacts, images, tmp_path):
    """One writer per output folder: while another process holds it (as a running extract does), a
    second extract is refused in one line and writes nothing; once that process is gone (the kernel
    drops its lock, however it ended), the folder takes a run."""
    import subprocess
    import sys

    out = tmp_path / "emb"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from vggdeploy.store import sole_writer\n"
                               f"with sole_writer(Path({str(out)!r}), 'extract'):\n"
                               "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out)
        assert code == 2 and f"another vggdeploy extract is writing to {out}" in err, err
        assert list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()
    assert run("extract", mini_artifacts / "features.onnx", "--data", images, "--out", out)[0] == 0
    assert pq.read_table(out).num_rows == 41
