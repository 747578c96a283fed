"""Calibration on a folder of real images: any count with every method, all of the folder by
default, "N of M" in the log, the dense form's several sizes, and images read as they are used."""

import json
import logging
from collections.abc import Sequence

import numpy as np
import pytest

from vggdeploy import BadInput, get_variant
from vggdeploy.calibration import load_calibration
from vggdeploy.mnist import write_image_folder
from vggdeploy.precision import METHODS, to_int8


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """500 real digit images (PNG, sizes 32-48), in folders per class."""
    return write_image_folder(tmp_path_factory.mktemp("digits"), 500)


def calibration_of(folder, name):
    return json.loads((folder / "manifest.json").read_text())["artifacts"][name]["calibration"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("count", [1, 7, 9, 20])
def test_any_count_with_every_method(mini_copy, digits, method, count, caplog):
    with caplog.at_level(logging.INFO, logger="vggdeploy"):
        to_int8(mini_copy / "classifier.onnx", target="cpu", method=method, calib=str(digits), calib_count=count,
                verify=False)
    got = calibration_of(mini_copy, "classifier.int8-cpu.onnx")
    assert (got["count"], got["method"]) == (count, method)
    assert f"calibrating on {count} of 500 input(s)" in caplog.text


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_whole_folder_by_default_at_every_dense_size(mini_copy, digits, method, caplog):
    with caplog.at_level(logging.INFO, logger="vggdeploy"):
        to_int8(mini_copy / "dense.onnx", target="tensorrt", method=method, calib=str(digits), verify=False)
    got = calibration_of(mini_copy, "dense.int8-tensorrt.onnx")
    assert got["count"] == 500 and len(got["sizes"]) == 3
    assert "calibrating on 500 of 500 input(s) x 3 size(s)" in caplog.text


def test_folder_is_decoded_as_it_is_read(digits):
    data = load_calibration(str(digits), get_variant("vgg-mini"), [(32, 32), (40, 48)], None, 32)
    assert all(isinstance(c, Sequence) and not isinstance(c, list) for c in data.chunks)  # no decoded list kept
    assert len(data.batches) == 2 * 500 // 4 and data.batches[0].shape == (4, 1, 32, 32)
    assert data.batches[125].shape == (4, 1, 40, 48)
    assert data.stride * 4 <= 64 and len(data.chunks[0]) % data.stride == 0


def test_large_inputs_are_calibrated_one_at_a_time():
    """A batch holds at most BATCH_PIXELS an input plane: ImageNet-size photos one at a time (ONNX
    Runtime's calibration session keeps the arena its largest batch grew), vgg-mini's digits eight."""
    photos = load_calibration(None, get_variant("vgg16"), [(224, 224), (256, 320)], 4, 224)
    assert [b.shape for b in photos.batches] == [(1, 3, 224, 224)] * 4 + [(1, 3, 256, 320)] * 4
    digits = load_calibration(None, get_variant("vgg-mini"), [(32, 32)], 64, 32)
    assert {b.shape for b in digits.batches} == {(8, 1, 32, 32)}


def test_a_damaged_image_is_refused_before_any_work(tmp_path, digits, mini_copy):
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(BadInput, match="cannot read image .*broken.png"):
        to_int8(mini_copy / "classifier.onnx", target="cpu", calib=str(tmp_path / "calib"))
    assert not (mini_copy / "classifier.int8-cpu.onnx").exists()


def test_images_read_by_one_rule_for_calibration_eval_and_extract(tmp_path):
    """A 16-bit image reads as its 8-bit twin (by the type's range, not stretched to its own maximum);
    gray becomes three channels for calibration; a stack of pages is refused in one line."""
    import skimage.io

    from vggdeploy.calibration import _read
    from vggdeploy.dataset import read_image

    dim = np.random.default_rng(0).integers(0, 100, (32, 40), dtype=np.uint8)  # a dark image: max 99
    skimage.io.imsave(tmp_path / "8.png", dim, check_contrast=False)
    skimage.io.imsave(tmp_path / "16.png", dim.astype(np.uint16) * 257, check_contrast=False)
    assert np.array_equal(read_image(tmp_path / "8.png"), read_image(tmp_path / "16.png"))
    assert _read(tmp_path / "16.png").shape == (32, 40, 3)
    skimage.io.imsave(tmp_path / "pages.tif", np.zeros((3, 8, 8, 3), np.uint8), check_contrast=False)
    with pytest.raises(BadInput, match="not a single 2-D image|cannot decode pages.tif"):
        _read(tmp_path / "pages.tif")
