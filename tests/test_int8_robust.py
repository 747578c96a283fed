"""INT8 on models with outlier channels: cross-layer equalization, the per-layer error report and the
accuracy budget, on the bundled trained vgg-mini with outliers planted by tests/user_models.py
(FP32 unchanged; DESIGN.md fact 23)."""

import json
import math
import shutil

import numpy as np
import onnx
import pytest
import torch
from user_models import plant_outlier_channels

from vggdeploy import export_onnx, load_model, make_runner
from vggdeploy.equalize import equalize
from vggdeploy.mnist import split, write_image_folder
from vggdeploy.precision import to_int8

PLANTED = "node_Conv_33"  # vgg-mini's third convolution: it reads the outlier channels of the second


def outlier_model(tmp_path, pairs=((1, 1000.0),)):
    """The bundled vgg-mini with outlier channels planted after each (layer, scale), saved as a user's
    checkpoint and exported (classifier form)."""
    loaded = load_model("vgg-mini")
    for layer, s in pairs:
        plant_outlier_channels(loaded.model, layer, [0, 1], s)
    ckpt = tmp_path / "finetuned.pth"
    torch.save(loaded.model.state_dict(), ckpt)
    out = tmp_path / "art"
    export_onnx(load_model(str(ckpt)), ["classifier"], out)
    return out / "classifier.onnx"


@pytest.fixture(scope="module")
def outliers(tmp_path_factory):
    return outlier_model(tmp_path_factory.mktemp("outliers"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("digits"), 200, sizes=(32, 32))


def correct(path, backend="onnxruntime") -> int:
    d = split()
    with make_runner(backend, path) as r:
        return int((r.infer({"input": d["test_x"]})["logits"].argmax(1) == d["test_y"]).sum())


def test_equalization_keeps_the_fp32_function_and_the_features_taps(tmp_path, outliers):
    import onnxruntime as ort

    x = split()["test_x"][:64]
    model = onnx.load(str(outliers))
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    done = equalize(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    assert len(done.pairs) == 5 and done.max_scale > 100  # 3 conv pairs, 2 FC pairs; the planted 1000x undone
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    again = equalize(model)
    assert again.max_scale < 1.01  # already equalized: nothing moves
    export_onnx(load_model("vgg-mini"), ["features"], tmp_path / "f", taps=["relu1_1", "relu2_1", "relu3_2"])
    features = onnx.load(str(tmp_path / "f" / "features.onnx"))
    feeds = {"input": x[:8]}
    ref = ort.InferenceSession(features.SerializeToString()).run(None, feeds)
    done = equalize(features)
    assert len(done.pairs) == 1  # conv3_1 -> conv3_2 only: every other middle tensor is a tap
    for a, b in zip(ref, ort.InferenceSession(features.SerializeToString()).run(None, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_default_int8_keeps_accuracy_where_plain_calibration_collapses(outliers, tmp_path, target):
    import hashlib

    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in outliers.parent.iterdir() if f.is_file()}
    fp32 = correct(outliers)
    plain = to_int8(outliers, tmp_path / "plain", target=target, equalize=False, verify=False)
    assert correct(plain) < 500  # of 1,000: the planted channels set the ranges (113 measured)
    # checked against eager PyTorch rebuilt from the checkpoint: a failed check raises and writes nothing
    ours = to_int8(outliers, tmp_path / "ours", target=target, reference=make_runner("torch", outliers))
    entry = json.loads((tmp_path / "ours" / "manifest.json").read_text())["artifacts"][ours.path.name]
    assert entry["parity"]["reference"].startswith("torch") and entry["parity"]["top1_agreement"] >= 0.75
    assert entry["calibration"]["equalization"]["max_scale"] > 100
    for backend in ("onnxruntime", "openvino"):
        assert abs(correct(ours, backend) - fp32) <= 10  # within 1 point
    # equalization rescales a private copy's side file in place: the user's FP32 files are untouched
    assert {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in outliers.parent.iterdir() if f.is_file()} == before
    errors = entry["layer_errors"]
    assert {e["node"] for e in errors} == {n.name for n in onnx.load(str(outliers), load_external_data=False).graph.node
                                          if n.op_type in ("Conv", "Gemm")}
    assert errors == sorted(errors, key=lambda e: -e["added"]) and all(e["rel_l2"] < 0.2 for e in errors)


def test_per_layer_error_ranks_the_planted_layer_first_and_inspect_shows_it(outliers, tmp_path, run):
    plain = to_int8(outliers, tmp_path, target="cpu", equalize=False, verify=False)
    errors = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][plain.path.name]["layer_errors"]
    assert errors[0]["node"] == PLANTED and errors[0]["added"] > 0.5 and errors[0]["cosine"] < 0.5
    code, out, _ = run("inspect", plain.path)
    assert code == 0 and f"layer   {PLANTED} (Conv) adds" in out.splitlines()[next(
        i for i, line in enumerate(out.splitlines()) if line.startswith("layer"))]
    code, out, _ = run("inspect", plain.path, "--json")
    assert json.loads(out)["layer_errors"][0]["node"] == PLANTED


def test_budget_keeps_the_planted_layer_in_float(outliers, digits, tmp_path, run):
    folder = tmp_path / "art"
    shutil.copytree(outliers.parent, folder)
    code, _, err = run("quantize", folder / "classifier.onnx", "--int8", "--target", "cpu", "--no-equalize",
                       "--max-drop", "1", "--eval-data", digits)
    assert code == 0, err
    entry = json.loads((folder / "manifest.json").read_text())["artifacts"]["classifier.int8-cpu.onnx"]
    budget = entry["accuracy_budget"]
    assert budget["kept_fp32"] == [PLANTED] and budget["drop"] <= 1 and budget["ranking"][0] == PLANTED
    assert budget["tries"][0]["score"] < 50 and budget["latency_ms_b1"]["with_kept_fp32"] > 0
    assert PLANTED in entry["fp32_nodes"]  # and the max-pool in front of it, which the cpu target quantizes
    assert abs(correct(folder / "classifier.int8-cpu.onnx") - correct(outliers)) <= 10
    code, out, _ = run("inspect", folder / "classifier.int8-cpu.onnx")
    assert f"with 1 layer(s) in float ({PLANTED})" in out
    # tensorrt: the kept layer has no Q/DQ, and the graph still follows TensorRT's rules
    code, _, err = run("quantize", folder / "classifier.onnx", "--int8", "--target", "tensorrt", "--no-equalize",
                       "--max-drop", "1", "--eval-data", digits)
    assert code == 0, err
    code, out, _ = run("inspect", "--check-qdq", "tensorrt", folder / "classifier.int8-tensorrt.onnx")
    assert code == 0 and "kept in float" in out


def test_a_budget_that_cant_be_met_exits_1_and_writes_nothing(tmp_path, digits, run):
    """Outliers in four pairs need four layers in float; at most half of vgg-mini's seven may be."""
    model = outlier_model(tmp_path, pairs=((0, 1000.0), (1, 1000.0), (2, 1000.0), (4, 1000.0)))
    before = sorted(p.name for p in model.parent.iterdir())
    code, _, err = run("quantize", model, "--int8", "--target", "cpu", "--no-equalize", "--max-drop", "0.5",
                       "--eval-data", digits)
    assert code == 1 and "--max-drop 0.5 can't be met" in err and "at most 3 may be" in err
    assert sorted(p.name for p in model.parent.iterdir()) == before


@pytest.mark.parametrize("args, message", [
    (["--max-drop", "-1"], "--max-drop -1"),
    (["--max-drop", "nan"], "--max-drop nan"),
    (["--max-drop", "101"], "--max-drop 101"),
    (["--max-drop", "1"], "--max-drop needs --eval-data"),
    (["--eval-data", "."], "--eval-data needs --max-drop"),
])
def test_bad_budgets_are_refused_before_any_work(mini_copy, args, message, run, tmp_path):
    before = sorted(p.name for p in mini_copy.iterdir())
    code, _, err = run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu", *args,
                       *(["--eval-data", str(tmp_path)] if "--max-drop" in args and "needs" not in message else []))
    assert code == 2 and message in err and len([x for x in err.splitlines() if x.startswith("error:")]) == 1
    assert sorted(p.name for p in mini_copy.iterdir()) == before


def test_bad_eval_data_and_budget_without_int8(mini_copy, tmp_path, run):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu", "--max-drop", "1",
                       "--eval-data", empty)
    assert code == 2 and "has no images" in err
    eleven = write_image_folder(tmp_path / "eleven", 20, sizes=(32, 32))
    shutil.copytree(eleven / "0", eleven / "zz-extra")  # an 11th class folder: label 10 for a 10-class model
    code, _, err = run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu", "--max-drop", "1",
                       "--eval-data", eleven)
    assert code == 2 and "label 10 is outside the model's 10 classes" in err
    code, _, err = run("export", "vgg-mini", "--max-drop", "1", "--eval-data", eleven, "--out", tmp_path / "x")
    assert code == 2 and "--max-drop 1 applies to --int8" in err and not (tmp_path / "x").exists()
    unlabelled = tmp_path / "loose"
    unlabelled.mkdir()
    for i, p in enumerate(sorted((eleven / "1").iterdir())[:5]):
        shutil.copy(p, unlabelled / f"{i}.png")
    code, _, err = run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu", "--max-drop", "1",
                       "--eval-data", unlabelled, "--force")
    assert code == 0, err  # no labels: scored as top-1 agreement with FP32
    entry = json.loads((mini_copy / "manifest.json").read_text())["artifacts"]["classifier.int8-cpu.onnx"]
    assert "agreement with FP32" in entry["accuracy_budget"]["eval"] and math.isfinite(entry["accuracy_budget"]["drop"])


def test_the_report_draws_each_layers_error(outliers, tmp_path, run):
    folder = tmp_path / "art"
    shutil.copytree(outliers.parent, folder)
    to_int8(folder / "classifier.onnx", target="cpu", equalize=False, verify=False)
    code, _, err = run("bench", folder / "classifier.int8-cpu.onnx", "--backend", "onnxruntime", "--batch", "1",
                       "--runs", "2", "--no-eager", "--out", tmp_path / "run")
    assert code == 0, err
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Per-layer error against FP32" in html and f"<td>{PLANTED}</td>" in html
    md = (tmp_path / "run" / "bench.md").read_text()
    assert "Layers adding the most error against FP32" in md and f"| {PLANTED} |" in md


def test_a_graph_that_still_has_batchnorm_is_folded_then_equalized():
    """A foreign graph (adopted) may keep Conv -> BatchNormalization: folded first, function unchanged."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 3, 3, 3)), "gamma": rng.uniform(0.5, 2, 8) * np.r_[1000, 1, 1, 1, 1, 1, 1, 1],
             "beta": rng.standard_normal(8), "mean": rng.standard_normal(8), "var": rng.uniform(0.5, 2, 8),
             "w2": rng.standard_normal((4, 8, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    done = equalize(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert done.folded_batchnorms == 1 and [n.op_type for n in model.graph.node] == ["Conv", "Relu", "Conv"]
    assert done.pairs and done.max_scale > 10  # the 1000x channel brought back
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-3 * np.abs(before).max())
