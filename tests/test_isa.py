"""INT8 that keeps its accuracy on whichever x86 CPU runs it: ISA detection, the layout recorded in
the artifact, and a real AVX2 CPU's kernels (QEMU's emulation of an AMD Zen 3, whatever CPU this is)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from vggdeploy import export_onnx, load_model, make_runner
from vggdeploy.isa import cpu_isa
from vggdeploy.layouts import CPU_DEFAULT, layout_of
from vggdeploy.mnist import split
from vggdeploy.precision import to_int8

CHILD = Path(__file__).with_name("avx2_child.py")
QEMU = shutil.which("qemu-x86_64")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The trained vgg-mini in FP32, INT8 in the default layout and in u8s8-tensor (the old default),
    calibrated on 256 training digits; the 1,000 held-out digits beside them."""
    out = tmp_path_factory.mktemp("isa")
    export_onnx(load_model("vgg-mini"), ["classifier"], out)
    np.savez(out / "calib.npz", input=split()["train_x"][:256])
    np.savez(out / "digits.npz", x=split()["test_x"], y=split()["test_y"])
    files = {"fp32": out / "classifier.onnx",
             "default": to_int8(out / "classifier.onnx", target="cpu", calib=str(out / "calib.npz"))}
    files["u8s8"] = to_int8(out / "classifier.onnx", out / "u8s8", target="cpu", cpu_layout="u8s8-tensor",
                            calib=str(out / "calib.npz"))
    return out, files


def correct(path: Path) -> int:
    x, y = split()["test_x"], split()["test_y"]
    with make_runner("onnxruntime", path) as r:
        return int((r.infer({"input": x})["logits"].argmax(1) == y).sum())


def test_isa_matches_the_kernel_flags():
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0] if Path("/proc/cpuinfo").exists() else ""
    isa = cpu_isa()
    for feature in ("avx2", "avx512f", "avx512_vnni"):
        assert (feature in isa.features) == (f" {feature} " in f"{flags} "), feature
    assert isa.int8_class in ("amx", "vnni", "avx512", "avx2", "x86", "other")
    assert isa.u8s8_exact == (isa.int8_class in ("amx", "vnni", "other"))


def test_the_artifact_says_what_it_assumes(digits, run):
    out, files = digits
    meta = {p.key: p.value for p in onnx.load(str(files["default"]), load_external_data=False).metadata_props}
    assert meta["vggdeploy.int8_layout"] == CPU_DEFAULT == "u8s7-channel"
    assert meta["vggdeploy.int8_exact_on"] == "any CPU"
    entry = json.loads((out / "manifest.json").read_text())["artifacts"][files["default"].name]
    assert entry["int8_layout"] == entry["cpu_layout"] == "u8s7-channel" and entry["exact_on"] == "any CPU"
    assert entry["parity"]["cpu"]["int8_class"] == cpu_isa().int8_class  # where the parity check ran
    code, stdout, err = run("inspect", files["default"])
    assert code == 0, err
    assert "int8    layout u8s7-channel: exact on any CPU" in stdout
    code, stdout, _ = run("inspect", files["u8s8"])
    assert "u8s8-tensor: exact on VNNI or AMX CPUs on ONNX Runtime" in stdout
    assert ("onnxruntime SATURATES" in stdout) == (not cpu_isa().u8s8_exact)


def test_the_portable_layout_has_7_bit_weights(digits):
    """What makes it exact without VNNI: |w| <= 64, so 255 x 64 x 2 fits VPMADDUBSW's 16 bits."""
    from onnx import numpy_helper

    def weight_range(path):
        model = onnx.load(str(path))
        inits = {t.name: t for t in model.graph.initializer}
        return max(int(np.abs(numpy_helper.to_array(inits[n.input[0]]).astype(np.int32)).max())
                   for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[0]].data_type == onnx.TensorProto.INT8)

    _, files = digits
    assert weight_range(files["default"]) <= 64
    assert weight_range(files["u8s8"]) == 127


def test_old_artifacts_are_judged_by_the_layout_they_imply(digits):
    _, files = digits
    for name, implied in (("u8s8", "u8s8-tensor"), ("default", "u8s8-channel")):
        graph = onnx.load(str(files[name]), load_external_data=False)
        precision = {p.key: p.value for p in graph.metadata_props}["vggdeploy.precision"]
        assert layout_of(precision, None, graph) == implied  # written before layouts were recorded: 8-bit weights
    assert layout_of("int8-tensorrt") == "s8s8-channel"
    assert layout_of("fp32") is None


def test_bad_layout_choices_are_refused_in_one_line(run, digits):
    out, files = digits
    code, _, err = run("quantize", files["fp32"], "--int8", "--target", "cpu", "--cpu-layout", "avx512")
    assert code == 2 and "'avx512' is not one of" in err and "u8s7-channel" in err
    code, _, err = run("quantize", files["fp32"], "--int8", "--target", "tensorrt", "--cpu-layout", "u8s7-tensor")
    assert code == 2 and "--cpu-layout applies to --target cpu" in err


def test_choosing_a_vnni_only_layout_says_what_it_costs(digits, caplog):
    out, _ = digits
    with caplog.at_level("WARNING", logger="vggdeploy"):
        to_int8(out / "classifier.onnx", out / "again", target="cpu", cpu_layout="u8s8-channel",
                calib=str(out / "calib.npz"), verify=False)
    assert any("u8s8-channel is exact only on VNNI or AMX" in r.message and "953 of 1,000" in r.message
               for r in caplog.records)


def test_here_every_layout_keeps_accuracy_where_exact(digits):
    _, files = digits
    fp32 = correct(files["fp32"])
    assert abs(correct(files["default"]) - fp32) <= 3
    if cpu_isa().u8s8_exact:
        assert abs(correct(files["u8s8"]) - fp32) <= 3


@pytest.mark.slow
def test_on_an_avx2_cpu_the_default_keeps_accuracy_and_the_old_one_is_flagged(digits):
    """ONNX Runtime under QEMU's user-mode Zen 3 (CPUID: AVX2, no AVX-512, no VNNI), so it runs its
    AVX2 kernels whose 16-bit sums saturate, on the same files as here."""
    if not QEMU or not cpu_isa().x86:
        if os.environ.get("VGGDEPLOY_REQUIRE_QEMU"):
            pytest.fail("qemu-x86_64 is required here (apt-get install qemu-user)")
        pytest.skip("needs qemu-x86_64 on an x86 host (apt-get install qemu-user)")
    out, files = digits
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([QEMU, "-cpu", "EPYC-Milan", sys.executable, str(CHILD), str(out / "digits.npz"),
                           *map(str, files.values())], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["isa"]["int8_class"] == "avx2" and "avx512f" not in got["isa"]["isa"]
    c = got["correct"]
    fp32, default, u8s8 = (c[str(files[k])] for k in ("fp32", "default", "u8s8"))
    assert fp32 == correct(files["fp32"])  # FP32 is exact on any CPU: the emulation computes faithfully
    assert abs(default - fp32) <= 3  # the portable layout: as here
    assert u8s8 <= correct(files["u8s8"]) - 5  # the old default saturates there (953 vs 962 measured)
    warnings = [line for line in done.stderr.splitlines() if "saturate" in line]
    assert len(warnings) == 1 and "u8s8-tensor" in warnings[0] and "--cpu-layout u8s7-channel" in warnings[0]
    # `cpu` there: ONNX Runtime for the portable layout (fastest on AVX2), OpenVINO (exact) for the old one
    assert got["cpu_backend"][str(files["default"])] == "onnxruntime"
    assert got["cpu_backend"][str(files["u8s8"])] == "openvino"
