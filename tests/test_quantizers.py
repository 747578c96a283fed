"""The cpu target's INT8 layout (pools on 8-bit tensors) and NNCF as its other quantizer (issue 12)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from vggdeploy import make_runner
from vggdeploy.mnist import split
from vggdeploy.precision import to_int8


def producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_cpu_target_pools_run_on_8_bit_tensors(mini_copy):
    """Each MaxPool reads a DequantizeLinear whose Q reads the ReLU, and writes a QuantizeLinear with the
    same scale: the conv writes u8 and the pool pools u8 (exact: max commutes with rounding)."""
    model = onnx.load(str(to_int8(mini_copy / "classifier.onnx", target="cpu", verify=False)), load_external_data=False)
    made_by, pools = producers(model), [n for n in model.graph.node if n.op_type == "MaxPool"]
    consumers = {i: n for n in model.graph.node for i in n.input}
    assert pools
    for pool in pools:
        dq = made_by[pool.input[0]]
        q = made_by[dq.input[0]]
        assert (dq.op_type, q.op_type, made_by[q.input[0]].op_type) == ("DequantizeLinear", "QuantizeLinear", "Relu")
        after = consumers[pool.output[0]]
        assert after.op_type == "QuantizeLinear" and after.input[1] == dq.input[1]  # one scale through the pool


def test_tensorrt_target_layout_unchanged(mini_copy):
    model = onnx.load(str(to_int8(mini_copy / "classifier.onnx", target="tensorrt", verify=False)),
                      load_external_data=False)
    made_by = producers(model)
    assert all(made_by[n.input[0]].op_type == "Relu" for n in model.graph.node if n.op_type == "MaxPool")


def test_features_outputs_stay_float(mini_copy):
    """The features form's outputs are ReLU outputs that also feed pools: those pools stay float."""
    path = to_int8(mini_copy / "features.onnx", target="cpu", verify=False)
    model = onnx.load(str(path), load_external_data=False)
    made_by = producers(model)
    assert {made_by[o.name].op_type for o in model.graph.output} == {"Relu"}
    with make_runner("onnxruntime", path) as q, make_runner("onnxruntime", mini_copy / "features.onnx") as f:
        x = split()["test_x"][:8]
        got, ref = q.infer({"input": x}), f.infer({"input": x})
    for name, a in got.items():
        assert np.linalg.norm(a - ref[name]) / np.linalg.norm(ref[name]) < 0.1


def test_calibration_cache_is_kept_per_op_set(mini_copy):
    """The cpu target calibrates more tensors (pool inputs) than tensorrt: its ranges are cached apart."""
    def entry(target):
        to_int8(mini_copy / "classifier.onnx", target=target, verify=False, force=True)
        return json.loads((mini_copy / "manifest.json").read_text())["artifacts"][f"classifier.int8-{target}.onnx"]

    first, again, other = entry("cpu"), entry("cpu"), entry("tensorrt")
    assert again["calibration"]["cache_hit"] and again["calibration"]["cache"] == first["calibration"]["cache"]
    assert other["calibration"]["cache"] != first["calibration"]["cache"]


def test_nncf_quantizer_on_trained_digits(tmp_path):
    """NNCF's defaults through vggdeploy: the same calibration digits, metadata, manifest and parity check."""
    pytest.importorskip("nncf", reason="NNCF is in the dev extra: pip install -e '.[dev]'")
    from vggdeploy import export_onnx, load_model

    export_onnx(load_model("vgg-mini"), ["classifier"], tmp_path)
    fp32, x, y = tmp_path / "classifier.onnx", split()["test_x"], split()["test_y"]
    path = to_int8(fp32, target="cpu", quantizer="nncf")
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][path.name]
    assert entry["quantizer"] == "nncf" and entry["calibration"]["count"] == 256 and "parity" in entry
    assert "cpu_layout" not in entry
    with make_runner("openvino", path) as q, make_runner("openvino", fp32) as f:
        got, ref = q.infer({"input": x})["logits"], f.infer({"input": x})["logits"]
    assert abs(int((got.argmax(1) == y).sum()) - int((ref.argmax(1) == y).sum())) <= 10  # of 1,000 digits
    assert (got.argmax(1) == ref.argmax(1)).sum() >= 980


def test_nncf_from_the_cli_on_the_dense_form(run, tmp_path):
    """`export --int8 --target cpu --quantizer nncf`: the dense form calibrates at its three sizes."""
    pytest.importorskip("nncf", reason="NNCF is in the dev extra: pip install -e '.[dev]'")
    code, stdout, err = run("export", "vgg-mini", "--form", "dense", "--out", tmp_path, "--int8", "--target", "cpu",
                            "--quantizer", "nncf")
    assert code == 0, err
    assert stdout.split() == [str(tmp_path / "dense.onnx"), str(tmp_path / "dense.int8-cpu.onnx")]  # no progress bars
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["dense.int8-cpu.onnx"]
    assert entry["quantizer"] == "nncf" and len(entry["calibration"]["sizes"]) == 3 and "parity" in entry
    code, out, _ = run("doctor")
    assert "quantize --quantizer nncf" in out and "NNCF 3." in out


@pytest.mark.parametrize("argv,message", [
    (["--int8", "--target", "tensorrt", "--quantizer", "nncf"], "TensorRT's Q/DQ rules reject"),
    (["--int8", "--target", "cpu", "--quantizer", "nncf", "--calib-method", "entropy"],
     "--calib-method entropy applies to --quantizer ort"),
    (["--int8", "--target", "cpu", "--quantizer", "nncf", "--cpu-layout", "s8s8-tensor"],
     "--cpu-layout applies to --quantizer ort"),
    (["--fp16", "--quantizer", "nncf"], "--quantizer nncf applies to --int8"),
])
def test_bad_nncf_options(run, mini_copy, argv, message):
    code, _, err = run("quantize", mini_copy / "classifier.onnx", *argv)
    assert code == 2 and message in err.splitlines()[0]
    assert not [p for p in mini_copy.iterdir() if ".int8-" in p.name or p.name.startswith(".staging-")]


def test_nncf_missing_exits_3_with_the_install_line(mini_copy):
    """A real process in which `import nncf` fails, as on a machine without it."""
    code = ("import sys; sys.modules['nncf'] = None; from vggdeploy.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "export", "vgg-mini", "--out", str(mini_copy / "new"), "--int8",
                           "--target", "cpu", "--quantizer", "nncf"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "NNCF is not installed" in done.stderr and "pip install" in done.stderr
    assert not (mini_copy / "new").exists()  # judged before the export


def test_nncf_with_unusable_calibration_leaves_nothing(run, mini_copy, tmp_path):
    pytest.importorskip("nncf", reason="NNCF is in the dev extra: pip install -e '.[dev]'")
    bad = np.zeros((4, 1, 32, 32), np.float32)
    bad[2, 0, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "wide.npy", np.zeros((4, 1, 40, 40), np.float32))
    for source, message in (("nan.npy", "NaN or infinite"), ("wide.npy", "don't fit this model")):
        code, _, err = run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu", "--quantizer", "nncf",
                           "--calib", tmp_path / source)
        assert code == 2 and message in err.splitlines()[0]
    assert not [p for p in mini_copy.iterdir() if ".int8-" in p.name or p.name.startswith(".staging-")]


# ---------------------------------------------------------------- NVIDIA ModelOpt (tensorrt target)

def test_modelopt_quantizer_on_trained_digits(tmp_path, run):
    """ModelOpt's ONNX PTQ (CPU calibration) through vggdeploy: the Gemm layers it leaves in float
    are declared, so TensorRT's Q/DQ check passes; accuracy on held-out digits stays near FP32.
    CI installs it (`make setup-modelopt`); elsewhere this skips with the reason."""
    pytest.importorskip("modelopt", reason="NVIDIA ModelOpt is not installed: make setup-modelopt")
    from vggdeploy import export_onnx, load_model

    export_onnx(load_model("vgg-mini"), ["classifier"], tmp_path)
    path = to_int8(tmp_path / "classifier.onnx", target="tensorrt", quantizer="modelopt")  # parity checked
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][path.name]
    assert entry["quantizer"] == "modelopt" and entry["calibration"]["modelopt"].startswith("0.")
    gemms = {n.name for n in onnx.load(str(path.path), load_external_data=False).graph.node if n.op_type == "Gemm"}
    assert gemms and gemms <= set(entry["fp32_nodes"])  # ModelOpt's defaults leave the FC layers in float
    code, out, _ = run("inspect", "--check-qdq", "tensorrt", path.path)
    assert code == 0 and "kept in float" in out
    x, y = split()["test_x"], split()["test_y"]
    with make_runner("onnxruntime", path) as q, make_runner("onnxruntime", tmp_path / "classifier.onnx") as f:
        got, ref = q.infer({"input": x})["logits"], f.infer({"input": x})["logits"]
    assert abs(int((got.argmax(1) == y).sum()) - int((ref.argmax(1) == y).sum())) <= 10


@pytest.mark.parametrize("argv,message", [
    (["--int8", "--target", "cpu", "--quantizer", "modelopt"], "--quantizer modelopt makes TensorRT graphs"),
    (["--int8", "--target", "tensorrt", "--quantizer", "modelopt", "--calib-method", "percentile"],
     "--calib-method percentile is not one of ModelOpt's"),
])
def test_bad_modelopt_options(run, mini_copy, argv, message):
    code, _, err = run("quantize", mini_copy / "classifier.onnx", *argv)
    assert code == 2 and message in err.splitlines()[0]


def test_modelopt_missing_exits_3_with_the_install_line(mini_copy):
    code = ("import sys; sys.modules['modelopt'] = None; from vggdeploy.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "quantize", str(mini_copy / "classifier.onnx"), "--int8",
                           "--target", "tensorrt", "--quantizer", "modelopt"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "ModelOpt is not installed" in done.stderr and "pip install --no-deps nvidia-modelopt" in done.stderr
