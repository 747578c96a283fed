"""The head of a real two-node Ray cluster on loopback lost mid-job (its GCS SIGKILLed). A module of its
own: its cluster must not run beside test_cluster's (both use 127.0.0.2 and 127.0.0.3), and no process of
this test joins it as a driver (Ray ends every driver 60 s after its head goes)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from vggdeploy.ray_local import LoopbackCluster, _wait

from test_cluster import many_images

pytestmark = pytest.mark.slow


def test_losing_the_head_mid_job_is_one_line_and_keeps_nothing(tmp_path):
    """Was: exit 1 after Ray's 60 s, no `error:` line, and a partial output that a --force rerun added
    to. Now: one line, exit 3, nothing under --out, and a rerun without --force completes it."""
    import importlib.util

    from vggdeploy import export_onnx, load_model
    from vggdeploy.extraction import read_embeddings
    from vggdeploy.mnist import write_image_folder

    if importlib.util.find_spec("ray") is None:
        pytest.skip("pip install 'vggdeploy[ray]' (the dev extra has it)")
    export_onnx(load_model("vgg-mini"), ["features"], tmp_path / "m")
    features, out = tmp_path / "m" / "features.onnx", tmp_path / "out"
    many = many_images(write_image_folder(tmp_path / "digits", count=60), tmp_path / "many")
    (tmp_path / "ray").mkdir()
    lost = LoopbackCluster(tmp_path / "ray")
    try:
        lost.start(connect=False)
        t0 = time.monotonic()
        job = subprocess.Popen([sys.executable, "-m", "vggdeploy", "extract", str(features), "--data", str(many),
                                "--out", str(out), "--cluster", lost.address, "--workers", "2", "--batch", "4"],
                               env=lost.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait(lambda: list(out.glob(".staging-*")), 120, "the job under way")
        time.sleep(3)
        os.kill(lost.gcs_pid(), signal.SIGKILL)
        _, err = job.communicate(timeout=120)
        seconds = time.monotonic() - t0
    finally:
        lost.stop()
    assert job.returncode == 3, err
    assert err.startswith("error: lost the Ray cluster's head mid-job") and "Traceback" not in err, err
    assert "core_worker.cc" not in err and seconds < 60
    assert list(out.iterdir()) == []  # no part, no staging: a reader sees nothing of the lost run
    done = subprocess.run([sys.executable, "-m", "vggdeploy", "extract", str(features), "--data", str(many),
                           "--out", str(out), "--batch", "16"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    paths = read_embeddings(out).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 480
