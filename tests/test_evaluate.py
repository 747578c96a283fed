"""The paper's protocols on deployed artifacts: exact identities, real labelled images, bad input."""

import json

import numpy as np
import pytest
import torch

from vggdeploy import BadInput, make_runner
from vggdeploy.dataset import load_dataset, read_image
from vggdeploy.evaluate import Protocol, evaluate, run_protocol
from vggdeploy.prediction import softmax
from vggdeploy.mnist import write_image_folder


@pytest.fixture(scope="module")
def digits32(tmp_path_factory):
    """60 held-out digits as 32x32 PNGs: already at vgg-mini's crop size."""
    return write_image_folder(tmp_path_factory.mktemp("d32") / "data", 60, sizes=(32, 32))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """40 held-out digits at sizes and aspect ratios from 32 to 48 px."""
    return write_image_folder(tmp_path_factory.mktemp("dv") / "data", 40, sizes=(32, 48))


def pre_of(path):
    from vggdeploy.artifact import Artifact

    return Artifact.open(path).meta.preprocessing


def test_center_at_crop_size_equals_the_classifier_run_directly(mini_artifacts, digits32):
    samples, _ = load_dataset(digits32)
    path = mini_artifacts / "classifier.onnx"
    pre = pre_of(path)
    with make_runner("onnxruntime", path) as r:
        run = run_protocol(r, samples, Protocol("center"), pre, batch=7)
        x = np.stack([(read_image(s.path).transpose(2, 0, 1) / 255.0 - pre.mean[0]) / pre.std[0]
                      for s in samples]).astype(np.float32)
        direct = softmax(r.infer({"input": x})["logits"].astype(np.float64))
    assert run.labels == [s.label for s in samples]
    np.testing.assert_allclose(np.array(run.posteriors), direct, atol=1e-6)


def test_dense_at_the_training_size_equals_center_without_flips(mini_artifacts, digits32):
    samples, _ = load_dataset(digits32)
    path = mini_artifacts / "dense.onnx"
    with make_runner("onnxruntime", path) as r:
        center = run_protocol(r, samples, Protocol("center"), pre_of(path))
        dense = run_protocol(r, samples, Protocol("dense", (32,)), pre_of(path))
    np.testing.assert_allclose(np.array(dense.posteriors), np.array(center.posteriors), atol=1e-6)


def test_protocols_on_varied_sizes_and_flips_and_crops(mini_artifacts, digits):
    samples, _ = load_dataset(digits)
    path = mini_artifacts / "dense.onnx"
    rows = evaluate([path], samples, Protocol("dense+multicrop", (32, 40), flip=True, crops=3), backend="onnxruntime")
    (row,) = rows
    assert row["images"] == 40 and 0 <= row["top1_err"] <= 100 and row["top5_err"] <= row["top1_err"]
    assert row["images_per_s"] > 0 and row["runtime_images_per_s"] >= row["images_per_s"]
    # multicrop's inputs: 3x3 crops and their flips per scale
    from vggdeploy.evaluate import prepare

    q = prepare(samples[0], Protocol("dense+multicrop", (32, 40), flip=True, crops=3), pre_of(path))
    assert [m.shape for m in q.multicrop] == [(18, 1, 32, 32)] * 2 and q.dense[0].shape[0] == 2
    assert min(q.dense[1].shape[2:]) == 40


def test_fusion_and_labels_file_and_unreadable_images(mini_artifacts, digits, tmp_path, run):
    flat = tmp_path / "flat"
    flat.mkdir()
    samples, _ = load_dataset(digits)
    for i, s in enumerate(samples):
        (flat / f"img{i:03d}.png").write_bytes(s.path.read_bytes())
    (flat / "zz-broken.png").write_bytes(b"not a png")  # sorted last: its label is the last line
    (flat / "labels.txt").write_text("".join(f"{s.label}\n" for s in samples) + "3\n")
    code, out, err = run("eval", mini_artifacts / "dense.onnx", mini_artifacts / "classifier.onnx", "--data", flat,
                         "--fuse", "--out", tmp_path / "out", "--backend", "onnxruntime")
    assert code == 0, err
    rows = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert [r["images"] for r in rows] == [40, 40, 40] and rows[2]["model"] == "fusion"
    assert len(rows[0]["skipped"]) == 1 and rows[0]["skipped"][0].startswith("zz-broken.png: ")
    assert rows[0]["top1_err"] == rows[1]["top1_err"]  # dense at the crop size is the classifier
    assert (tmp_path / "out" / "eval.md").read_text().count("|") > 20
    named = tmp_path / "named"
    named.mkdir()
    (named / "a.png").write_bytes(samples[0].path.read_bytes())
    (named / "labels.txt").write_text(f"a.png {samples[0].label}\n")
    assert load_dataset(named)[0][0].label == samples[0].label


def test_bad_input(mini_artifacts, digits, tmp_path, run, mini):
    empty = tmp_path / "empty"
    empty.mkdir()
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "x.png").write_bytes(next(digits.rglob("*.png")).read_bytes())
    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    (mismatch / "x.png").write_bytes(next(digits.rglob("*.png")).read_bytes())
    (mismatch / "labels.txt").write_text("1\n2\n")
    cases = [
        (["--data", empty], "no images"), (["--data", loose], "unlabelled images"),
        (["--data", mismatch], "2 labels for 1 images"),
        (["--data", digits, "--protocol", "dense", "--scales", "16"], "below the dense form's minimum 32"),
        (["--data", digits, "--protocol", "multicrop", "--scales", "24"], "below the crop size 32"),
        (["--data", digits, "--protocol", "sparse"], "'sparse' is not one of"),
    ]
    for args, message in cases:
        code, _, err = run("eval", mini_artifacts / "dense.onnx", *args)
        assert code == 2 and message in err, (args, err)
    code, _, err = run("eval", mini_artifacts / "classifier.onnx", "--data", digits, "--protocol", "dense")
    assert code == 2 and "needs the dense form" in err and "--form dense" in err
    # artifacts of different class counts can't be fused
    sd = {k: v.clone() for k, v in mini.model.state_dict().items()}
    sd["classifier.6.weight"], sd["classifier.6.bias"] = sd["classifier.6.weight"][:5], sd["classifier.6.bias"][:5]
    torch.save(sd, tmp_path / "five.pth")
    assert run("export", tmp_path / "five.pth", "--out", tmp_path / "five", "--no-verify")[0] == 0
    code, _, err = run("eval", mini_artifacts / "classifier.onnx", tmp_path / "five" / "classifier.onnx",
                       "--data", digits, "--fuse")
    assert code == 2 and "different class counts" in err
    with pytest.raises(BadInput, match="labels file"):
        load_dataset(digits, tmp_path / "nope.txt")
