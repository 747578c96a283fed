"""`bench --peers`: what a PyTorch user would pick instead (torch.compile, PT2E INT8), timed from the
same weights by the same child-process protocol as every other row, and reported apart from ours."""

import json
import subprocess
import sys

import numpy as np
import pytest
from user_models import foreign_onnx

from vggdeploy import make_runner
from vggdeploy.mnist import split
from vggdeploy.precision import to_int8

pytest.importorskip("torchao", reason="torchao is in the dev extra (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory, mini_artifacts):
    import shutil

    from vggdeploy.cli import main

    folder = tmp_path_factory.mktemp("peers")
    for f in mini_artifacts.iterdir():
        shutil.copy(f, folder)
    to_int8(folder / "classifier.onnx", target="cpu", verify=False)
    out = folder / "run"
    code = main(["bench", str(folder / "classifier.onnx"), str(folder / "classifier.int8-cpu.onnx"), "--backend",
                 "onnxruntime", "--batch", "1,4", "--runs", "3", "--peers", "torch-compile,pt2e", "--out", str(out)])
    assert code == 0
    return folder, json.loads((out / "bench.json").read_text())


@pytest.mark.slow  # a bench run with two compiles per peer: make test-slow
def test_peers_are_timed_beside_eager_once_per_weights(peer_run):
    _, run = peer_run
    peers = [r for r in run["results"] if r["peer"]]
    assert {(r["backend"], r["precision"], r["batch"]) for r in peers} == {
        ("torch-compile", "fp32", 1), ("torch-compile", "fp32", 4), ("pt2e", "int8", 1), ("pt2e", "int8", 4)}
    assert all(r["artifact"].startswith("peer:") and r["compile_s"] >= 0 and r["median_ms"] > 0 for r in peers)
    assert {r["runtime"] for r in peers} == {"torch.compile[inductor,freezing]", "pt2e[X86InductorQuantizer,compiled,freezing]"}
    ours = [r for r in run["results"] if not r["peer"] and r["backend"] != "eager"]
    for r in ours:  # against the fastest peer of the same model, form, size and batch
        best = max(p["images_per_s"] for p in peers if p["batch"] == r["batch"])
        assert r["speedup_vs_best_peer"] == round(r["images_per_s"] / best, 2)
    assert all(r["speedup_vs_eager"] for r in peers)


@pytest.mark.slow  # a bench run with two compiles per peer: make test-slow
def test_the_report_draws_peers_apart_and_states_the_speedup_against_the_fastest(peer_run):
    folder, _ = peer_run
    html = (folder / "run" / "report.html").read_text()
    assert "Speed-up over the fastest peer" in html and "<th>vs best peer</th>" in html
    md = (folder / "run" / "bench.md").read_text()
    assert "| vs best peer |" in md and "pt2e[X86InductorQuantizer,compiled,freezing]" in md


def test_pt2e_peer_is_calibrated_and_close_to_fp32(mini_artifacts):
    """The PT2E peer is a real INT8 model: close to FP32 on held-out digits, not a copy of it."""
    x = split()["test_x"][:200]
    with make_runner("onnxruntime", mini_artifacts / "classifier.onnx") as ref, \
            make_runner("pt2e", mini_artifacts / "classifier.onnx") as peer:
        want, got = ref.infer({"input": x})["logits"], peer.infer({"input": x})["logits"]
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert 0 < np.linalg.norm(got - want) / np.linalg.norm(want) < 0.2


def test_bad_peers(mini_artifacts, run, tmp_path):
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--peers", "torch-compile,tensorflow", "--runs", "1")
    assert code == 2 and "unknown peer 'tensorflow'" in err and "pt2e" in err
    # an adopted ONNX has no PyTorch model: one line, and the other rows still run
    src = foreign_onnx(tmp_path / "keras.onnx")
    assert subprocess.run([sys.executable, "-m", "vggdeploy", "adopt", src, "--out", tmp_path / "a", "--channels", "BGR",
                           "--pixels", "0-255"], capture_output=True).returncode == 0
    code, out, err = run("bench", tmp_path / "a" / "classifier.onnx", "--backend", "onnxruntime", "--peers", "pt2e",
                         "--runs", "1", "--batch", "1", "--json")
    assert code == 0 and "no PyTorch model behind it" in err
    assert [r["backend"] for r in json.loads(out)] == ["onnxruntime"]


def test_pt2e_without_torchao_exits_3_with_the_install_line(mini_artifacts):
    """A real process in which `import torchao` fails, as on a machine without it."""
    code = "import sys; sys.modules['torchao'] = None; from vggdeploy.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "bench", str(mini_artifacts / "classifier.onnx"), "--peers", "pt2e",
                           "--runs", "1"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "needs torchao" in done.stderr and "pip install 'vggdeploy[peers]'" in done.stderr
