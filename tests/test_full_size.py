"""Full-size VGGs end to end (a minute or so each on 2 cores)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vggdeploy import make_runner

pytestmark = pytest.mark.slow


def test_vgg11_bn_classifier_and_dense_through_the_console_script(tmp_path):
    out = tmp_path / "vgg11_bn"
    proc = subprocess.run([sys.executable, "-m", "vggdeploy", "export", "vgg11_bn", "--weights", "random",
                           "--form", "classifier,dense", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    dense = manifest["artifacts"]["dense.onnx"]
    assert dense["parity"]["cases"] == 8 and dense["parity"]["rel_l2"] < 1e-4
    assert dense["input_sizes"] == {"min": [224, 224], "stride": 32}
    # fact 7 on the artifacts: at 224² the dense ONNX is the classifier ONNX
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    with make_runner("onnxruntime", out / "dense.onnx") as d, make_runner("onnxruntime", out / "classifier.onnx") as c:
        np.testing.assert_allclose(d.infer({"input": x})["logits"], c.infer({"input": x})["logits"], rtol=1e-4, atol=1e-5)
        score_map = d.infer({"input": np.zeros((1, 3, 480, 640), np.float32)})["score_map"]
    assert score_map.shape == (1, 1000, 480 // 32 - 6, 640 // 32 - 6)


def test_vgg16_int8_for_tensorrt_follows_the_rules_and_agrees(tmp_path):
    import onnx

    from vggdeploy import export_onnx, load_model
    from vggdeploy.precision import to_int8
    from vggdeploy.qdq import qdq_violations

    loaded = load_model("vgg16", "random", seed=0)
    export_onnx(loaded, ["classifier"], tmp_path, verify=False)
    path = to_int8(tmp_path / "classifier.onnx", target="tensorrt", method="entropy", backend="onnxruntime")
    assert qdq_violations(onnx.load(str(path), load_external_data=False)) == []
    parity = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][path.name]["parity"]
    assert parity["cosine"] >= 0.99 and parity["top1_agreement"] >= 0.75
