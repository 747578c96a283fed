"""`vggdeploy predict` and `vd.preprocess`: per-image top-k from a user's timm checkpoint, equal to
timm's own forward on real photos; error rows; the rows `eval --per-image` writes; every image mode
Pillow opens, and images whose header declares a size beyond the bound."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vggdeploy as vd

timm = pytest.importorskip("timm", reason="timm is a test dependency (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The bundled real photos as JPEG and PNG files, one corrupt file among them."""
    from vggdeploy.data import sample_photos

    folder = tmp_path_factory.mktemp("photos")
    for i, (name, img) in enumerate(sample_photos()):
        Image.fromarray(img[..., :3] if img.ndim == 3 else img).save(folder / f"{name}.{'jpg' if i % 2 else 'png'}")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    return folder


@pytest.fixture(scope="module")
def timm_model(tmp_path_factory):
    """timm's VGG class (3 channels, 10 classes) saved as a user saves it; exported with no flags."""
    from timm.models.vgg import VGG

    torch.manual_seed(3)
    model = VGG([16, "M", 32, "M", 64, 64, "M"], num_classes=10, in_chans=3).eval()
    folder = tmp_path_factory.mktemp("timm")
    torch.save(model.state_dict(), folder / "mine.pth")
    arts = vd.export_onnx(vd.load_model(str(folder / "mine.pth")), ["classifier", "features"], folder / "art", verify=False)
    return model, {a.form: a for a in arts}


def test_predict_equals_timms_forward_on_photos(timm_model, photos, run):
    """timm's own eval transform (PIL), set to the recipe the artifact declares, and timm's forward:
    the same classes and scores as `vggdeploy predict` on the same files."""
    from timm.data import create_transform

    model, arts = timm_model
    pre = arts["classifier"].meta.preprocessing
    transform = create_transform(input_size=(3, pre.crop, pre.crop), crop_pct=pre.crop / pre.resize,
                                 interpolation="bilinear", mean=pre.mean, std=pre.std)
    code, out, err = run("predict", arts["classifier"].path, photos, "--top", "3", "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    good = [r for r in rows if not r["error"]]
    assert len(rows) == 9 and len(good) == 8
    with torch.no_grad():
        want = torch.softmax(model(torch.stack([transform(Image.open(r["path"]).convert("RGB")) for r in good])), 1).numpy()
    got = np.array([[t["score"] for t in r["top"]] for r in good])
    np.testing.assert_allclose(got, -np.sort(-want, axis=1)[:, :3], atol=0.02)  # PIL's resize vs torchvision's
    for r, w in zip(good, want):
        top2 = np.sort(w)[-2:]
        if top2[1] - top2[0] > 0.05:
            assert r["top"][0]["class"] == int(w.argmax()), r
    assert [t["name"] for t in good[0]["top"]] == [str(t["class"]) for t in good[0]["top"]]


def test_predict_rows_files_and_refusals(timm_model, photos, run, tmp_path):
    _, arts = timm_model
    code, out, err = run("predict", arts["classifier"].path, photos / "corrupt.jpg", photos / "chelsea.jpg",
                         "--out", tmp_path / "p.csv")
    assert code == 0 and "cannot decode corrupt.jpg" in out and "chelsea.jpg" in out, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("path,error,top1_class,top1_name,top1_score") and len(lines) == 3
    assert run("predict", arts["classifier"].path, photos, "--out", tmp_path / "p.parquet")[0] == 0
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "p.parquet").num_rows == 9
    code, _, err = run("predict", arts["features"].path, photos)
    assert code == 2 and "features form" in err and "vggdeploy extract" in err
    for bad, message in ((photos / "chelsea.jpg", "JPEG image, not a model artifact"), (tmp_path / "nope.onnx", "not found")):
        code, _, err = run("predict", bad, photos)
        assert code == 2 and message in err, err
    code, _, err = run("predict", arts["classifier"].path, photos, "--out", tmp_path / "p.txt")
    assert code == 2 and "write rows as .json, .csv, .parquet" in err


def test_preprocess_is_what_eval_feeds(timm_model, photos):
    """vd.preprocess (a path or an array) is the center protocol's input for the artifact."""
    from vggdeploy.dataset import Sample
    from vggdeploy.evaluate import Protocol, prepare

    _, arts = timm_model
    art = arts["classifier"]
    x = vd.preprocess(photos / "coffee.png", art)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x, prepare(Sample(photos / "coffee.png", 0), Protocol("center"), art.meta.preprocessing).center)
    np.testing.assert_array_equal(vd.preprocess(np.asarray(Image.open(photos / "coffee.png")), str(art.path)), x)


def test_eval_per_image_writes_predicts_rows(mini_artifacts, run, tmp_path):
    from vggdeploy.mnist import write_image_folder

    data = write_image_folder(tmp_path / "d", count=20)
    code, _, err = run("eval", mini_artifacts / "classifier.onnx", "--data", data, "--per-image", tmp_path / "rows.json")
    assert code == 0, err
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert len(rows) == 20 and all(r["correct"] == (r["top"][0]["class"] == r["label"]) for r in rows)
    code, pred, _ = run("predict", mini_artifacts / "classifier.onnx", data, "--json")
    assert [r["top"] for r in json.loads(pred)["rows"]] == [r["top"] for r in rows]


@pytest.mark.parametrize("mode", ["LA", "P-transparent", "CMYK", "I;16", "1", "RGBA"])
def test_every_image_mode_reads_as_its_rgb_or_gray(mode, tmp_path):
    """Each mode Pillow opens reads as the picture it shows: never two channels, never CMY as RGB."""
    from vggdeploy.dataset import read_image

    rgb = (np.random.default_rng(0).random((24, 30, 3)) * 255).astype(np.uint8)
    gray = rgb[..., 0]
    im = {"LA": Image.fromarray(gray).convert("LA"), "P-transparent": Image.fromarray(rgb).convert("P"),
          "CMYK": Image.fromarray(rgb).convert("CMYK"), "I;16": Image.fromarray(gray.astype(np.uint16) * 257),
          "1": Image.fromarray(gray > 127), "RGBA": Image.fromarray(np.dstack([rgb, gray]))}[mode]
    path = tmp_path / f"x.{'tif' if mode == 'CMYK' else 'png'}"
    im.save(path, **({"transparency": 0} if mode == "P-transparent" else {}))
    x = read_image(path)
    want = {"LA": gray[..., None], "I;16": gray[..., None], "1": ((gray > 127) * 255).astype(np.uint8)[..., None],
            "CMYK": rgb, "RGBA": rgb}.get(mode)
    assert x.dtype == np.uint8 and x.shape[2] in (1, 3)
    if want is not None:
        assert np.abs(x.astype(int) - want).max() <= 1, mode
    else:  # a palette image: its palette's colours
        assert np.abs(x.astype(int) - np.asarray(im.convert("RGB"))).max() == 0


def test_declared_size_beyond_the_bound_is_an_error_row_before_decoding(mini_artifacts, run, tmp_path):
    """A 20000x1 PNG (a few hundred bytes) is refused from its header: an error row, the run goes on."""
    from vggdeploy.mnist import write_image_folder

    data = write_image_folder(tmp_path / "d", count=4)
    Image.new("L", (20000, 1)).save(data / "0" / "strip.png")
    code, out, err = run("predict", mini_artifacts / "classifier.onnx", data, "--json")
    assert code == 0, err
    bad = [r for r in json.loads(out)["rows"] if r["error"]]
    assert len(bad) == 1 and "20000x1" in bad[0]["error"] and "aspect" in bad[0]["error"]


VERBS_TAKING_A_MODEL = [
    ("export", "{img}"), ("export", "vgg61"), ("export", "vgg16", "--weights", "{img}"), ("export", "{onnx_as_model}"),
    ("adopt", "{img}"), ("adopt", "{ckpt}"), ("quantize", "{img}", "--fp16"), ("inspect", "{img}"), ("bench", "{img}"),
    ("bench", "{ckpt}"), ("eval", "{img}", "--data", "{dir}"), ("predict", "{img}", "{img}"),
    ("extract", "{img}", "--data", "{dir}", "--out", "{dir}/o"), ("triton", "{img}", "--repo", "{dir}/r"),
    ("build", "{img}"), ("convert", "{img}"), ("convert", "{empty}"),
]


@pytest.mark.parametrize("argv", VERBS_TAKING_A_MODEL, ids=lambda a: "-".join(a[:2]).replace("{", "").replace("}", ""))
def test_a_photo_or_a_wrong_file_as_the_model_is_refused_before_torch(argv, tmp_path):
    """Every verb that takes a model, given a photo, a checkpoint where an ONNX goes (or the reverse),
    an empty file or a name that is no variant: exit 2 in one line, before torch is imported."""
    import subprocess
    import sys

    from vggdeploy.data import sample_photos

    Image.fromarray(sample_photos()[1][1]).save(tmp_path / "cat.jpg")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "model.pth")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")  # an ONNX header's first bytes
    names = {"img": tmp_path / "cat.jpg", "ckpt": tmp_path / "model.pth", "dir": tmp_path, "empty": tmp_path / "empty.onnx",
             "onnx_as_model": tmp_path / "model.onnx"}
    args = [a.format(**names) for a in argv]
    code = (f"import sys; from vggdeploy.cli import main; rc = main({args!r}); "
            "print(rc, 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "2 False", done.stderr
    assert lines[0].startswith("error: ") and len(lines) <= 3, done.stderr
