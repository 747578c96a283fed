"""`--json` on every verb that reports: one JSON document on stdout, in the schema the README gives."""

import json

import pytest

from vggdeploy.mnist import write_image_folder


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("digits"), 20)


def as_json(run, *argv):
    code, out, err = run(*argv, "--json", "-q")
    assert code == 0, err
    return json.loads(out)


def test_every_reporting_verb_speaks_json(run, mini_copy, tmp_path, digits):
    exported = as_json(run, "export", "vgg-mini", "--out", tmp_path / "e", "--fp16")
    assert [a["precision"] for a in exported["artifacts"]] == ["fp32", "fp16"]
    assert all(a["path"].endswith(".onnx") and "parity" in a and "files" in a for a in exported["artifacts"])
    quantized = as_json(run, "quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu")
    assert quantized["artifacts"][0]["precision"] == "int8-cpu" and quantized["artifacts"][0]["calibration"]["count"]
    converted = as_json(run, "convert", mini_copy / "classifier.onnx")
    assert converted["artifacts"][0]["kind"] == "openvino-ir"
    assert as_json(run, "verify", mini_copy) == {"folder": str(mini_copy), "ok": True, "problems": []}
    rows = as_json(run, "doctor")["rows"]
    assert {"component", "status", "detail"} == set(rows[0]) and any(r["component"] == "cpu" for r in rows)
    results = as_json(run, "eval", mini_copy / "classifier.onnx", "--data", digits)["results"]
    assert results[0]["images"] == 20 and "top1_err" in json.dumps(results[0])
    model = as_json(run, "triton", mini_copy / "classifier.onnx", "--repo", tmp_path / "repo")
    assert model["platform"] == "onnxruntime_onnx" and "config.pbtxt" in model["files"]
    summary = as_json(run, "extract", mini_copy / "features.onnx", "--data", digits, "--out", tmp_path / "emb")
    assert summary["written"] == 20


def test_build_json_refusal_stays_one_line(run, mini_copy):
    code, out, err = run("build", mini_copy / "classifier.onnx", "--json")
    assert code == 3 and out == "" and "error: " in err  # no GPU here: the refusal, not a JSON document
