"""examples/cpp: the C++ program (ONNX Runtime's C++ API) against Python on the same images.

CI builds it first (`examples/cpp/build.sh`, with VGGDEPLOY_REQUIRE_CPP=1 so a failed build fails
here instead of skipping)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vggdeploy import load_model, make_runner
from vggdeploy.dataset import Sample
from vggdeploy.evaluate import Protocol, prepare

BINARY = Path(__file__).parents[1] / "examples" / "cpp" / "build" / "vgg_classify"
if not BINARY.exists():
    if os.environ.get("VGGDEPLOY_REQUIRE_CPP"):
        raise RuntimeError(f"{BINARY} was not built: run examples/cpp/build.sh")
    pytest.skip("examples/cpp is not built here (bash examples/cpp/build.sh builds it; CI does)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from vggdeploy import export_onnx

    out = tmp_path_factory.mktemp("trained")
    export_onnx(load_model("vgg-mini-jitter"), ["classifier", "dense", "features"], out)
    return out


def classify(model: Path, image: Path, k: int = 5):
    res = subprocess.run([str(BINARY), str(model), str(image), str(k)], capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    return res.returncode, [(int(r[1]), float(r[2]), r[3]) for r in rows], res.stderr


def python_logits(model: Path, image: Path) -> np.ndarray:
    from vggdeploy.artifact import Artifact

    pre = Artifact.open(model).meta.preprocessing
    x = prepare(Sample(image, 0), Protocol("center"), pre).center[None]
    with make_runner("onnxruntime", model) as r:
        return r.infer({"input": x})["logits"][0]


def digit(tmp_path, h, w) -> Path:
    """A held-out digit as an h x w PNG."""
    import skimage.io
    import skimage.transform

    from vggdeploy.mnist import write_image_folder

    src = next(write_image_folder(tmp_path / "src", 1, sizes=(32, 32)).rglob("*.png"))
    img = (skimage.transform.resize(skimage.io.imread(src), (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)
    path = tmp_path / f"digit-{h}x{w}.png"
    skimage.io.imsave(path, img, check_contrast=False)
    return path


@pytest.mark.parametrize("form", ["classifier", "dense"])
def test_top5_and_scores_equal_python(trained, tmp_path, form):
    image = digit(tmp_path, 48, 48)  # the model's resize: C++ and Python take the same pixels
    code, rows, err = classify(trained / f"{form}.onnx", image)
    assert code == 0, err
    ref = python_logits(trained / f"{form}.onnx", image)
    order = np.argsort(-ref)[:5]
    assert [r[0] for r in rows] == list(order)
    np.testing.assert_allclose([r[1] for r in rows], ref[order], atol=1e-4)
    assert [r[2] for r in rows] == [str(i) for i in order]  # class names from the metadata


def test_an_image_that_needs_resizing_keeps_its_top1(trained, tmp_path):
    image = digit(tmp_path, 72, 60)
    code, rows, err = classify(trained / "classifier.onnx", image)
    assert code == 0, err
    assert rows[0][0] == int(np.argmax(python_logits(trained / "classifier.onnx", image)))


def test_bad_input_is_one_line(trained, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    code, _, err = classify(trained / "classifier.onnx", broken)
    assert code == 2 and err.startswith("error: cannot read image")
    code, _, err = classify(trained / "features.onnx", digit(tmp_path, 48, 48))
    assert code == 2 and "no `logits` output" in err
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "classifier.onnx").write_bytes((trained / "classifier.onnx").read_bytes())  # no .onnx.data
    code, _, err = classify(lonely / "classifier.onnx", digit(tmp_path, 48, 48))
    assert code == 1 and err.startswith("error: ONNX Runtime") and len(err.strip().splitlines()) == 1


def test_fp16_io_artifact_gives_pythons_top5(trained, tmp_path):
    """`--io fp16`: the input is packed and the logits read in the model's own element type."""
    from vggdeploy.precision import to_fp16

    model = to_fp16(trained / "classifier.onnx", tmp_path / "fp16io", io="fp16", verify=False).path
    image = digit(tmp_path, 48, 48)
    code, rows, err = classify(model, image)
    assert code == 0, err
    pre_model = trained / "classifier.onnx"
    x = prepare(Sample(image, 0), Protocol("center"), __import__("vggdeploy").Artifact.open(pre_model).meta.preprocessing).center[None]
    with make_runner("onnxruntime", model) as r:
        ref = r.infer({"input": x.astype(np.float16)})["logits"][0].astype(np.float32)
    order = np.argsort(-ref)[:5]
    assert [r[0] for r in rows] == list(order)
    np.testing.assert_allclose([r[1] for r in rows], ref[order], atol=2e-3)


CHECK = BINARY.with_name("artifact_io_check")  # the code vgg_classify_trt shares, built where TensorRT is absent


def test_shared_fp16_conversion_is_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(5000) * 10.0 ** rng.integers(-9, 6, 5000),
                        [0.0, -0.0, 65504, 65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, 1.00048828125, 1.00146484375]]).astype(np.float32)
    res = subprocess.run([str(CHECK), "half"], input="\n".join(repr(float(v)) for v in x), capture_output=True, text=True,
                         timeout=60, check=True)
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16)
    assert len(rows) == len(x)
    np.testing.assert_array_equal(np.array([int(r[0]) for r in rows], np.uint16), ref.view(np.uint16))
    np.testing.assert_array_equal(np.array([float(r[1]) for r in rows], np.float32), ref.astype(np.float32))


def test_shared_metadata_reads_an_engine_entry_with_null_class_names(mini_copy):
    """engine.py writes `class_names: null` for a model without names; nlohmann's value() threw on it."""
    import json

    from vggdeploy.engine import BuildPlan, engine_entry, plan_build
    from vggdeploy.gpu import Gpu

    plan = plan_build(mini_copy / "dense.onnx")
    out = mini_copy / "dense.plan"
    out.write_bytes(b"\0" * 64)
    bare = BuildPlan(plan.onnx, out, plan.profiles, plan.precision, plan.form)  # no metadata: no names
    manifest = mini_copy / "manifest.json"
    m = json.loads(manifest.read_text())
    m["artifacts"]["dense.plan"] = engine_entry(bare, "10.16.1", Gpu(0, "H100", "9.0"), 1.0).to_json()
    assert m["artifacts"]["dense.plan"]["class_names"] is None
    manifest.write_text(json.dumps(m))
    res = subprocess.run([str(CHECK), "entry", str(manifest), "dense.plan"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "class_names\t0", res.stderr
