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
