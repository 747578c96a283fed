"""Export through the CLI and the library: files, manifest, metadata, parity, and bad input."""

import json

import numpy as np
import onnx
import pytest

from vggdeploy import CheckFailed, check_parity, default_cases, inspect_onnx, load_model, make_runner
from vggdeploy.store import sha256_file
from vggdeploy.backends.eager import TorchRunner
from vggdeploy.models import build_form
from vggdeploy.parity import THRESHOLDS


def test_all_forms_are_written_with_manifest_and_metadata(mini_artifacts):
    manifest = json.loads((mini_artifacts / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"classifier.onnx", "dense.onnx", "features.onnx"}
    for name, entry in manifest["artifacts"].items():
        for fname, f in entry["files"].items():
            assert sha256_file(mini_artifacts / fname) == f["sha256"]
        assert entry["parity"]["rel_l2"] < 1e-4
        onnx.checker.check_model(str(mini_artifacts / name), full_check=True)
    info = inspect_onnx(mini_artifacts / "dense.onnx")
    meta = info["metadata"]
    assert meta["vggdeploy.form"] == "dense" and meta["vggdeploy.variant"] == "vgg-mini"
    assert meta["vggdeploy.input_sizes"] == {"min": [32, 32], "stride": 8}
    assert meta["vggdeploy.preprocessing"]["mean"] == [0.1307]
    assert meta["vggdeploy.class_names"] == [str(d) for d in range(10)]
    assert info["inputs"][0]["dynamic_axes"] == {0: "batch", 2: "height", 3: "width"}
    assert [o["name"] for o in info["outputs"]] == ["score_map", "logits"]
    # BN is folded into the convs by the exporter: conv and FC weights and biases remain
    assert info["ops"]["Conv"] == 7 and "BatchNormalization" not in info["ops"]
    assert info["parameters"] == 209_226
    classifier = inspect_onnx(mini_artifacts / "classifier.onnx")
    assert classifier["inputs"][0]["shape"] == ["batch", 1, 32, 32]


def test_dense_onnx_runs_at_any_size_and_matches_classifier_at_minimum(mini_artifacts):
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32), dtype=np.float32)
    with make_runner("onnxruntime", mini_artifacts / "dense.onnx") as dense, \
            make_runner("onnxruntime", mini_artifacts / "classifier.onnx") as clf:
        np.testing.assert_allclose(dense.infer({"input": x})["logits"], clf.infer({"input": x})["logits"],
                                   rtol=1e-5, atol=1e-6)
        big = dense.infer({"input": np.zeros((1, 1, 72, 96), np.float32)})
    assert big["score_map"].shape == (1, 10, 72 // 8 - 3, 96 // 8 - 3)


def test_parity_fails_and_names_inputs_when_weights_differ(mini_artifacts):
    other = load_model("vgg-mini", "random", seed=1)
    cases = default_cases(other.variant, "classifier", (32, 32))
    with TorchRunner(build_form(other.model, "classifier"), ["logits"]) as ref, \
            make_runner("onnxruntime", mini_artifacts / "classifier.onnx") as got:
        report = check_parity(ref, got, cases, THRESHOLDS["fp32"])
    assert not report.passed
    with pytest.raises(CheckFailed, match="astronaut"):
        report.raise_on_failure()


def test_cli_export_inspect_and_refusal_to_overwrite(run, tmp_path):
    out = tmp_path / "a"
    code, stdout, err = run("export", "vgg-mini", "--weights", "random", "--form", "classifier,features",
                            "--taps", "relu1_1,pool3", "--out", out)
    assert code == 0, err
    assert (out / "classifier.onnx").exists() and (out / "features.onnx.data").exists()
    assert "parity onnxruntime[CPU] vs torch" in err
    code, stdout, _ = run("inspect", out / "features.onnx")
    assert code == 0 and "relu1_1" in stdout and "dynamic: 0=batch, 2=height, 3=width" in stdout
    before = sha256_file(out / "classifier.onnx")
    code, _, err = run("export", "vgg-mini", "--weights", "random", "--seed", "3", "--out", out)
    assert code == 2 and "already exists" in err and "--force" in err
    assert sha256_file(out / "classifier.onnx") == before
    code, _, err = run("export", "vgg-mini", "--weights", "random", "--seed", "3", "--out", out, "--force")
    assert code == 0 and sha256_file(out / "classifier.onnx") != before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"]["classifier.onnx"]["weights"] == "random:3"
    assert "features.onnx" in manifest["artifacts"]


def test_failed_parity_leaves_nothing_behind(run, tmp_path, monkeypatch):
    from vggdeploy import parity

    impossible = parity.Thresholds(rel_l2=0.0, cosine=1.01, top1=1.0, top5=1.0)
    monkeypatch.setitem(parity.THRESHOLDS, "fp32", impossible)
    out = tmp_path / "b"
    code, _, err = run("export", "vgg-mini", "--weights", "random", "--out", out)
    assert code == 1 and "parity failed" in err
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize("argv,code,message", [
    (["export", "vgg61"], 2, "unknown variant 'vgg61'"),
    (["export", "vgg-mini", "--weights", "random", "--form", "dense,bogus"], 2, "'bogus' is not one of 'classifier'"),
    (["export", "vgg-mini", "--weights", "random", "--size", "7"], 2, "too small for the classifier form"),
    (["export", "vgg-mini", "--weights", "random", "--size", "3x-2"], 2, "bad size"),
    (["export", "vgg-mini", "--weights", "random", "--form", "features", "--taps", "relu9_9"], 2, "unknown tap"),
    (["export", "vgg-mini", "--weights", "random", "--opset", "11"], 2, "opset 11 is not supported"),
    (["export", "C"], 2, "C has no published weights"),
    (["export", "vgg16", "--weights", "bundled"], 2, "vgg16 has no bundled weights"),
    (["export", "vgg-mini", "--form", ""], 2, "no form given"),
    (["export", "vgg-mini", "--form", "dense", "--size", "64"], 2, "--size sets the classifier form's input size"),
    (["export", "missing.pth"], 2, "checkpoint missing.pth not found"),
    (["inspect", "nothing.onnx"], 2, "nothing.onnx not found"),
])
def test_bad_input_gets_one_clear_line(run, argv, code, message):
    got, _, err = run(*argv)
    assert got == code
    first = err.strip().splitlines()[0]
    assert first.startswith("error: ") and message in first
    assert "Traceback" not in err


def test_unwritable_output(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run("export", "vgg-mini", "--weights", "random", "--out", blocker / "sub")
    assert code == 2 and "cannot write to" in err


def test_not_an_onnx_file(run, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    code, _, err = run("inspect", bad)
    assert code == 2 and "is not an ONNX model" in err


def test_nan_outputs_fail_parity():
    from vggdeploy.parity import Case, compare_output

    ref = np.ones((2, 10), np.float32)
    got = ref.copy()
    got[1, 3] = np.nan
    r = compare_output(Case("c", ["a", "b"], ref), "logits", ref, got, THRESHOLDS["fp16"], is_logits=True)
    assert r.failed_inputs == ["b"]


def test_running_an_artifact_does_not_import_torch(mini_artifacts):
    import subprocess
    import sys

    code = ("import sys, numpy as np, vggdeploy\n"
            f"with vggdeploy.make_runner('onnxruntime', {str(mini_artifacts / 'dense.onnx')!r}) as r:\n"
            "    out = r.infer({'input': np.zeros((1, 1, 40, 40), np.float32)})\n"
            "assert out['score_map'].shape == (1, 10, 2, 2)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1500:]


def test_deploy_runs_eager_once_per_form_and_can_release_the_weights(tmp_path, monkeypatch):
    """FP32, FP16 and INT8 checks compare with one recording of eager PyTorch per form; with
    release_model the weights are freed before the FP16/INT8 checks (nothing else keeps them: the
    exporter's rewriter once did, through the last graph it matched)."""
    import gc
    import weakref

    import vggdeploy.parity as parity
    from vggdeploy import Int8Options, PrecisionPlan, deploy

    recorded, compared, record, compare = [], [], parity.record_outputs, parity.compare
    monkeypatch.setattr(parity, "record_outputs", lambda ref, *a, **k: recorded.append(ref.name) or record(ref, *a, **k))
    monkeypatch.setattr(parity, "compare", lambda exp, got, *a, **k: compared.append(exp.reference) or compare(exp, got, *a, **k))
    loaded = load_model("vgg-mini", "random", 0)
    weight = weakref.ref(next(loaded.model.parameters()))
    paths = deploy(loaded, ["classifier", "dense"], tmp_path, precision=PrecisionPlan(fp16=True, int8=Int8Options("cpu")),
                   release_model=True)
    assert sorted(p.name for p in paths) == sorted(f"{f}{p}.onnx" for f in ("classifier", "dense")
                                                   for p in ("", ".fp16", ".int8-cpu"))
    assert recorded == ["torch", "torch"] and compared == ["torch"] * 6
    gc.collect()
    assert loaded.model is None and weight() is None
