"""A VGG ONNX from another exporter, adopted and then taken by every verb; and the foreign graphs
adopt refuses, each in one line with nothing written.

The foreign model is timm's VGG class exported by torch's TorchScript-based exporter (not vggdeploy's
dynamo path) behind Keras' conventions: channels last, BGR, caffe-style 0-255 mean subtraction, a
softmax at the end, input and output named as Keras names them.
"""

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch

from vggdeploy.adoption import AdoptOptions, adopt
from vggdeploy.backends import make_runner
from vggdeploy.errors import BadInput

from user_models import CAFFE_MEAN_BGR, foreign_onnx

timm = pytest.importorskip("timm", reason="timm is a test dependency (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def adopted(tmp_path_factory):
    root = tmp_path_factory.mktemp("adopt")
    src = foreign_onnx(root / "keras_vgg.onnx")
    (root / "classes.txt").write_text("cat\ndog\nfox\nowl\n")
    r = cli("adopt", src, "--out", root / "art", "--channels", "BGR", "--pixels", "0-255",
            "--mean", ",".join(map(str, CAFFE_MEAN_BGR)), "--classes", root / "classes.txt")
    assert r.returncode == 0, r.stderr
    return src, root / "art" / "classifier.onnx"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vggdeploy", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_adopted_copy_takes_vggdeploys_input_and_matches_the_original(adopted):
    src, art = adopted
    meta = {p.key: p.value for p in onnx.load(str(art), load_external_data=False).metadata_props}
    assert meta["vggdeploy.config"] == "mini" and json.loads(meta["vggdeploy.class_names"]) == ["cat", "dog", "fox", "owl"]
    pre = json.loads(meta["vggdeploy.preprocessing"])
    np.testing.assert_allclose(pre["mean"], [m / 255 for m in CAFFE_MEAN_BGR[::-1]])  # RGB order, 0-1 pixels
    np.testing.assert_allclose(pre["std"], [1 / 255] * 3)
    x = np.random.default_rng(0).standard_normal((3, 3, 56, 56)).astype(np.float32) * 60  # NCHW RGB, pixel - mean
    import onnxruntime as ort

    want = ort.InferenceSession(str(src)).run(None, {"input_1": x[:, ::-1].transpose(0, 2, 3, 1).copy()})[0]
    with make_runner("onnxruntime", art) as r:
        np.testing.assert_allclose(r.infer({"input": x})["logits"], want, rtol=1e-4, atol=1e-6)
    manifest = json.loads((art.parent / "manifest.json").read_text())["artifacts"]["classifier.onnx"]
    assert manifest["parity"]["reference"].startswith("original ONNX") and manifest["adopted"]["layout"] == "NHWC"


@pytest.mark.slow  # about a minute: ten CLI runs
def test_every_verb_takes_the_adopted_artifact(adopted, tmp_path):
    import shutil

    from vggdeploy.engine import plan_build
    from vggdeploy.mnist import write_image_folder

    art = shutil.copytree(adopted[1].parent, tmp_path / "art") / "classifier.onnx"
    for args in (["quantize", art, "--fp16"], ["quantize", art, "--int8", "--target", "cpu"],
                 ["quantize", art, "--int8", "--target", "tensorrt"], ["verify", art.parent], ["convert", art],
                 ["inspect", art.with_suffix(".xml")], ["triton", art, "--repo", tmp_path / "repo"]):
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr)
    r = cli("bench", art.parent, "--duration", "0.2", "--batch", "1", "--out", tmp_path / "bench")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {row["precision"] for row in rows["results"]} == {"fp32", "fp16", "int8-cpu", "int8-tensorrt"}
    assert any("no PyTorch model" in s["reason"] for s in rows["skipped"])  # no eager row, and why
    digits = write_image_folder(tmp_path / "digits", 40)
    for d in range(4, 10):  # the model has 4 classes: digits 0-3 stand for them
        shutil.rmtree(digits / str(d), ignore_errors=True)
    r = cli("eval", art, art.with_suffix(".xml"), "--data", digits, "--out", tmp_path / "eval")
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "eval" / "eval.json").read_text())) == 2
    assert plan_build(art).profiles[0].max == (32, 3, 56, 56)  # the engine plan, decided without a GPU
    assert (tmp_path / "repo" / "art-classifier-fp32" / "config.pbtxt").exists()


def test_build_of_a_foreign_onnx_with_only_a_dynamic_batch(tmp_path):
    from vggdeploy.engine import plan_build

    plan = plan_build(foreign_onnx(tmp_path / "k.onnx"))
    assert [(p.min, p.opt, p.max) for p in plan.profiles] == [((1, 56, 56, 3), (8, 56, 56, 3), (32, 56, 56, 3))]


def test_layout_is_read_off_the_shape(tmp_path):
    src = foreign_onnx(tmp_path / "nchw.onnx", channels_last=False, shape=(2, 3, 56, 56))
    art = adopt(src, tmp_path / "art", AdoptOptions(pixels="0-255", mean=CAFFE_MEAN_BGR[::-1]))
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["artifacts"][art.name]["adopted"]["layout"] == "NCHW"


def two_inputs(path):
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return torch.nn.functional.max_pool2d(a + b, 2).flatten(1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Two(), (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)), str(path), dynamo=False,
                          input_names=["a", "b"], dynamic_axes={"a": {0: "n"}, "b": {0: "n"}})


def no_batch_axis(path):
    from timm.models.vgg import VGG

    net = VGG([16, "M", 32, "M", 64, 64, "M"], num_classes=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Sequential(torch.nn.Unflatten(0, (1, 3)), net), (torch.rand(3, 56, 56),), str(path),
                          dynamo=False, input_names=["image"])


def not_a_vgg(path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 26 * 26, 4))
    foreign_onnx(path, net=net)


BAD = {
    "two inputs": (two_inputs, [], "has 2 inputs"),
    "NHWC declared NCHW": (lambda p: foreign_onnx(p), ["--layout", "NCHW"], "channels last, not NCHW"),
    "no batch axis": (no_batch_axis, [], "has 3 axes"),
    "fixed batch": (lambda p: foreign_onnx(p, dynamic=()), [], "fixed batch of 2"),
    "gray for RGB": (lambda p: foreign_onnx(p), ["--channels", "gray"], "--channels gray contradicts"),
    "mean count": (lambda p: foreign_onnx(p), ["--mean", "1,2"], "--mean has 2 value"),
    "not a VGG": (not_a_vgg, [], "match no VGG configuration"),
    "class names": (lambda p: foreign_onnx(p), ["--classes", "CLASSES"], "2 class names for .* 4 outputs"),
    "bad std": (lambda p: foreign_onnx(p), ["--std", "0,1,1"], "--std 0.0,1.0,1.0: give positive"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD)
def test_foreign_graphs_adopt_refuses(tmp_path, case):
    make, args, message = BAD[case]
    make(tmp_path / "m.onnx")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    args = [str(tmp_path / "classes.txt") if a == "CLASSES" else a for a in args]
    r = cli("adopt", tmp_path / "m.onnx", "--out", tmp_path / "out", *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[0].startswith("error: "), r.stderr
    assert len(lines) <= 2 and __import__("re").search(message, lines[0]), r.stderr
    assert not (tmp_path / "out").exists()


def test_metadata_less_onnx_points_at_adopt(tmp_path):
    src = foreign_onnx(tmp_path / "k.onnx")
    r = cli("triton", src, "--repo", tmp_path / "repo")
    assert r.returncode == 2 and "vggdeploy adopt" in r.stderr and not (tmp_path / "repo").exists()
    with pytest.raises(BadInput, match="fixed batch"):
        adopt(foreign_onnx(tmp_path / "f.onnx", dynamic=()), tmp_path / "o")


def test_resize_only_and_probabilities_are_the_models_own_recipe(tmp_path):
    """Keras' tumour model resizes the whole image to its input and ends in softmax: adopted with
    --resize-only --output probabilities, the output is named `probabilities`, predict's scores are the
    original's (not softmaxed twice), preprocessing squeezes the photo to 56x56, and eval and triton
    take it. Declaring a logits graph as probabilities is refused."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    import vggdeploy as vd
    from vggdeploy.data import sample_photos

    src = foreign_onnx(tmp_path / "keras.onnx")
    r = cli("adopt", src, "--out", tmp_path / "art", "--resize-only", "--output", "probabilities", "--pixels", "0-255",
            "--channels", "BGR", "--mean", ",".join(map(str, CAFFE_MEAN_BGR)))
    assert r.returncode == 0 and "looks like probabilities" not in r.stderr, r.stderr
    art = vd.Artifact.open(tmp_path / "art" / "classifier.onnx")
    assert art.outputs == ("probabilities",) and art.meta.preprocessing.resize_only
    photo = sample_photos()[1][1]  # chelsea, 300x451: a centre crop would cut its sides off
    Image.fromarray(photo).save(tmp_path / "cat.png")
    x = vd.preprocess(tmp_path / "cat.png", art)
    t = F.resize(torch.from_numpy(photo).permute(2, 0, 1), [56, 56], antialias=True)
    want = F.normalize(F.to_dtype(t, torch.float32, scale=True), list(art.meta.preprocessing.mean),
                       list(art.meta.preprocessing.std)).numpy()
    np.testing.assert_allclose(x, want, atol=1e-6)
    rows = vd.predict(art, [tmp_path / "cat.png"], top=4)
    with make_runner("onnxruntime", art) as runner:
        probs = runner.infer({"input": x[None]})["probabilities"][0]
    assert [t["score"] for t in rows[0]["top"]] == pytest.approx(sorted(probs, reverse=True), abs=1e-6)
    (tmp_path / "data" / "0").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "data" / "0" / "cat.png")
    r = cli("eval", tmp_path / "art" / "classifier.onnx", "--data", tmp_path / "data", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["results"][0]["top5_err"] is None, r.stderr  # 4 classes: no top-5
    r = cli("triton", tmp_path / "art" / "classifier.onnx", "--repo", tmp_path / "repo", "--json")
    assert r.returncode == 0, r.stderr
    assert 'name: "probabilities"' in (tmp_path / "repo" / "art-classifier-fp32" / "config.pbtxt").read_text()

    class Logits(torch.nn.Module):  # the same network without its softmax
        def __init__(self):
            super().__init__()
            from timm.models.vgg import VGG

            self.net = VGG([16, "M", 32, "M", 64, 64, "M"], num_classes=4).eval()

        def forward(self, x):
            return self.net(x.permute(0, 3, 1, 2))

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits().eval(), (torch.rand(2, 56, 56, 3),), str(tmp_path / "logits.onnx"), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    r = cli("adopt", tmp_path / "logits.onnx", "--out", tmp_path / "l", "--output", "probabilities")
    assert r.returncode == 2 and "is not probabilities" in r.stderr and not (tmp_path / "l").exists()
    r = cli("adopt", tmp_path / "logits.onnx", "--out", tmp_path / "l2", "--resize", "64", "--resize-only")
    assert r.returncode == 2 and "give one of them" in r.stderr


def _untrusted(root, case):
    """The foreign model, damaged or crafted one way (the ways a file from the internet can be)."""
    import copy
    import os

    from onnx import helper

    m = onnx.load(str(foreign_onnx(root / "base.onnx")))
    nodes = m.graph.node
    if case in ("dotdot", "absolute", "offset", "symlink", "fifo"):
        onnx.save(m, str(root / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
        if case in ("symlink", "fifo"):
            os.rename(root / "m.data", root / "real.data")
            os.symlink("real.data", root / "m.data") if case == "symlink" else os.mkfifo(root / "m.data")
            return
        m = onnx.load(str(root / "m.onnx"), load_external_data=False)
        ext = m.graph.initializer[0].external_data
        where = {"dotdot": "../../../../etc/passwd", "absolute": "/etc/passwd"}
        for e in ext:
            e.value = where[case] if e.key == "location" and case in where else "1000000000" if e.key == "offset" and case == "offset" else e.value
    elif case == "custom":
        nodes[3].domain = "com.acme"
        m.opset_import.append(helper.make_opsetid("com.acme", 1))
    elif case in ("opset 99", "opset 1"):
        m.opset_import[0].version = int(case.split()[1])
    elif case == "cycle":
        nodes[2].input[0] = nodes[5].output[0]
    elif case == "duplicate name":
        nodes[4].output[0] = nodes[2].output[0]
    elif case == "zero dim":
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 0
    else:  # an inner tensor carries a name vggdeploy adds ("input", "logits")
        old, new = nodes[3].output[0], case.split()[-1]
        for n in nodes:
            n.input[:] = [new if i == old else i for i in n.input]
        nodes[3].output[0] = new
    onnx.save(copy.deepcopy(m), str(root / "m.onnx"))


UNTRUSTED = {"dotdot": "external data '../../../../etc/passwd' is not a file beside",
             "absolute": "external data '/etc/passwd' is not a file beside", "offset": "reaches byte 1000",
             "symlink": "not a regular file \\(a symbolic link\\)", "fifo": "not a regular file \\(a FIFO",
             "custom": "custom domain\\(s\\) com.acme", "opset 99": "stamped opset 99", "opset 1": "stamped opset 1;",
             "cycle": "not a valid ONNX graph: Nodes in a graph must be topologically sorted",
             "duplicate name": "not a valid ONNX graph: .*single static assignment", "zero dim": "has an empty axis"}


@pytest.mark.slow
@pytest.mark.parametrize("case", [*UNTRUSTED, "inner input", "inner logits"])
def test_untrusted_graphs_are_judged_before_any_runtime_reads_them(tmp_path, case):
    """adopt and convert check a foreign graph themselves (the runtimes blocked these reads, then
    crashed with tracebacks); a graph whose inner tensors carry our names is adopted, not refused."""
    _untrusted(tmp_path, case)
    for verb in (["adopt", tmp_path / "m.onnx", "--out", tmp_path / "out"], ["convert", tmp_path / "m.onnx"]):
        r = cli(*verb)
        if case.startswith("inner"):
            assert r.returncode == 0, r.stderr
            continue
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) <= 2 and __import__("re").search(UNTRUSTED[case], lines[0]), r.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "m.xml").exists()
