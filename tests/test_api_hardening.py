"""The Python API and the small verbs under rough use (issue 31): runners refuse a wrong feed the same
way on every runtime and say when they are not active, paths may be str, an all-zero model passes
parity, repeated taps and a damaged eval.json or an empty run are one line, not a traceback."""

import json

import numpy as np
import pytest
import torch

import vggdeploy as vd
from vggdeploy.errors import BadInput

RUNTIMES = ["onnxruntime", "openvino", "torch"]


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runners_refuse_a_wrong_feed_alike(mini_artifacts, backend):
    runner = vd.make_runner(backend, mini_artifacts / "classifier.onnx")
    ok = np.zeros((1, 1, 32, 32), np.float32)
    with pytest.raises(BadInput, match="is not active: it was never activated"):
        runner.infer({"input": ok})
    with runner:
        for x, message in ((ok.astype(np.int32), "is int32: give a float batch"),
                           (np.zeros((1, 3, 32, 32), np.float32), "has 3 channel\\(s\\); the model takes 1"),
                           (np.zeros((1, 32, 32, 1), np.float32), "has 32 channel\\(s\\)")):
            with pytest.raises(BadInput, match=message):
                runner.infer({"input": x})
        assert runner.infer({"input": ok})["logits"].shape == (1, 10)
    with pytest.raises(BadInput, match="is not active"):
        runner.infer({"input": ok})


def test_paths_may_be_str(mini, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (art,) = vd.export_onnx(mini, ["classifier"], "out")
    assert vd.to_fp16(str(art), "half").path.parent.name == "half"
    assert vd.predict(str(art), [str(vd.__path__[0]) + "/../README.md"])[0]["error"]


def test_an_all_zero_model_passes_parity(tmp_path):
    loaded = vd.load_model("vgg-mini", "random", seed=0)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.zero_()
    (art,) = vd.export_onnx(loaded, ["classifier"], tmp_path)
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][art.name]
    assert entry["parity"]["cosine"] == 1.0


def test_repeated_taps_are_one_line(run, mini_artifacts, tmp_path):
    code, _, err = run("export", "vgg-mini", "--weights", "random", "--form", "features",
                       "--taps", "relu1_1,relu1_1", "--out", tmp_path / "t")
    assert code == 2 and "relu1_1 given more than once" in err and not (tmp_path / "t").exists()
    code, _, err = run("extract", mini_artifacts / "features.onnx", "--data", tmp_path, "--taps", "relu1_1,relu1_1",
                       "--out", tmp_path / "e")
    assert code == 2 and "names relu1_1 more than once" in err and not (tmp_path / "e").exists()


def test_report_of_a_damaged_eval_or_an_empty_run(run, mini_artifacts, tmp_path):
    folder = tmp_path / "run"
    assert run("bench", mini_artifacts / "classifier.onnx", "--runs", "1", "--batch", "1", "--no-eager",
               "--out", folder)[0] == 0
    before = (folder / "report.html").read_bytes()
    for text in ("{bad", '[{"x": 1}]'):
        (folder / "eval.json").write_text(text)
        code, _, err = run("report", folder)
        assert code == 2 and "eval.json is not" in err and "Traceback" not in err
        assert (folder / "report.html").read_bytes() == before  # judged before anything is written
    (folder / "eval.json").unlink()
    data = json.loads((folder / "bench.json").read_text())
    (folder / "bench.json").write_text(json.dumps({**data, "results": []}))
    code, _, err = run("report", folder)
    assert code == 0 and "holds no results" in (folder / "report.html").read_text()
