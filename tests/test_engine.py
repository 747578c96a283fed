"""TensorRT engines: everything decided before TensorRT is called, and every no-GPU path, for real here."""

import json
import os
import shlex

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vggdeploy import BadInput, MissingEnvironment, make_runner
from vggdeploy.backends.tensorrt import choose_profile
from vggdeploy.engine import (Profile, default_profiles, engine_entry, engine_problems, parse_profile, parse_workspace,
                              plan_build)
from vggdeploy.forms import form_spec
from vggdeploy.gpu import Gpu, cuda_info
from vggdeploy.variants import get_variant

pytestmark = pytest.mark.skipif(cuda_info().available, reason="checks the no-GPU paths")


@pytest.mark.parametrize("name", ["vgg16", "vgg-mini"])
def test_default_profiles_cover_what_each_form_allows(name):
    v = get_variant(name)
    c = v.in_channels
    (clf,) = default_profiles(form_spec(v, "classifier"), c)
    assert clf.min == (1, c, v.image_size, v.image_size) and clf.max == (32, c, v.image_size, v.image_size)
    for form in ("dense", "features"):
        spec = form_spec(v, form)
        small, big = default_profiles(spec, c)
        assert small.min[2:] == (spec.min_size, spec.min_size)  # from the form's minimum
        assert small.max[2:] == big.min[2:] == (16 * v.stride,) * 2  # 512 for ImageNet VGGs
        assert big.max[2:] == (32 * v.stride,) * 2
        for p in (small, big):
            assert all(a <= b <= d for a, b, d in zip(p.min, p.opt, p.max))
            assert p.opt[2] % v.stride == 0


def test_vgg16_dense_profiles_are_224_to_512_and_512_to_1024():
    v = get_variant("vgg16")
    small, big = default_profiles(form_spec(v, "dense"), 3)
    assert (small.min, small.opt, small.max) == ((1, 3, 224, 224), (4, 3, 352, 352), (16, 3, 512, 512))
    assert (big.min, big.opt, big.max) == ((1, 3, 512, 512), (1, 3, 768, 768), (4, 3, 1024, 1024))


def test_profile_text_round_trips_and_bad_text_is_refused():
    p = parse_profile("input:1x3x224x224:8x3x384x384:16x3x512x512")
    assert p == Profile("input", (1, 3, 224, 224), (8, 3, 384, 384), (16, 3, 512, 512))
    assert parse_profile(str(p)) == p
    for bad in ("input:1x3x224x224", "input:1x3xAx224:1x3x224x224:1x3x224x224", ":1x1:1x1:1x1"):
        with pytest.raises(BadInput, match="bad --profile"):
            parse_profile(bad)


def test_choose_profile_picks_by_shape_and_names_all_when_none_fits():
    profiles = default_profiles(form_spec(get_variant("vgg16"), "dense"), 3)
    assert choose_profile(profiles, (2, 3, 256, 320)) == 0
    assert choose_profile(profiles, (1, 3, 640, 800)) == 1
    with pytest.raises(BadInput, match=r"outside every optimization profile.*0: .*1: "):
        choose_profile(profiles, (32, 3, 224, 224))


@pytest.mark.parametrize("profile, message", [
    ("input:1x1x32x32:8x1x32x32:4x1x32x32", "out of order"),
    ("input:1x1x16x16:1x1x32x32:1x1x64x64", "too small for the dense form"),
    ("x:1x1x32x32:1x1x32x32:1x1x32x32", "names input 'x'"),
    ("input:1x1x32:1x1x32:1x1x32", "has 3 dims"),
    ("input:1x3x32x32:1x3x32x32:1x3x32x32", "axis 1 of 'input' is fixed at 1"),
])
def test_profiles_outside_the_form_or_out_of_order_are_refused(mini_artifacts, profile, message):
    with pytest.raises(BadInput, match=message):
        plan_build(mini_artifacts / "dense.onnx", [profile])


def test_classifier_profile_must_keep_its_fixed_size(mini_artifacts):
    with pytest.raises(BadInput, match="takes 32x32 only"):
        plan_build(mini_artifacts / "classifier.onnx", ["input:1x1x32x32:1x1x48x48:1x1x64x64"])


def foreign_onnx(path, dims):
    """A one-Relu ONNX not made by vggdeploy, with the given input dims (ints or names)."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_foreign_onnx_profiles_come_from_static_dims_or_must_be_given(tmp_path):
    static = plan_build(foreign_onnx(tmp_path / "net.onnx", [2, 3, 64, 64]))
    assert static.profiles == [Profile("x", (2, 3, 64, 64), (2, 3, 64, 64), (2, 3, 64, 64))]
    assert static.out.name == "net.plan" and static.precision == "fp32"
    with pytest.raises(BadInput, match="axis 0 of 'x' is fixed at 2"):  # no dynamic axes, dynamic profile
        plan_build(tmp_path / "net.onnx", ["x:1x3x64x64:2x3x64x64:4x3x64x64"])
    dynamic = foreign_onnx(tmp_path / "dyn.onnx", ["N", 3, "H", "W"])
    with pytest.raises(BadInput, match="dynamic axes") as e:
        plan_build(dynamic)
    assert "--profile x:MIN:OPT:MAX" in e.value.hint
    given = plan_build(dynamic, ["x:1x3x32x32:4x3x64x64:8x3x128x128"])
    assert given.profiles[0].max == (8, 3, 128, 128)


def test_engine_names_and_bad_artifacts(mini_artifacts, tmp_path):
    assert plan_build(mini_artifacts / "dense.onnx").out.name == "dense.fp32.plan"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(BadInput, match="not an ONNX model"):
        plan_build(junk)
    with pytest.raises(BadInput, match="not found"):
        plan_build(tmp_path / "missing.onnx")


def test_int8_cpu_graph_is_refused(mini_copy):
    from vggdeploy.precision import to_int8

    cpu = to_int8(mini_copy / "classifier.onnx", target="cpu", verify=False)
    with pytest.raises(BadInput, match="TensorRT's parser rejects its layout"):
        plan_build(cpu)


def test_options_are_checked_before_any_build(mini_artifacts, tmp_path):
    src = mini_artifacts / "dense.onnx"
    assert parse_workspace("4G") == 4 << 30 and parse_workspace("512M") == 512 << 20
    for bad in ("abc", "-1G", "12"):
        with pytest.raises(BadInput, match="bad --workspace"):
            plan_build(src, workspace=bad)
    with pytest.raises(BadInput, match="out of range"):
        plan_build(src, opt_level=9)
    with pytest.raises(BadInput, match="unknown --hardware-compat"):
        plan_build(src, hardware_compat="hopper")
    empty = tmp_path / "empty.cache"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match="empty"):
        plan_build(src, timing_cache=empty)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BadInput, match="can't be written"):
        plan_build(src, timing_cache=a_file / "t.cache")


def test_trtexec_and_build_commands(mini_artifacts, tmp_path, run):
    from vggdeploy.cli import build

    plan = plan_build(mini_artifacts / "dense.onnx", timing_cache=tmp_path / "t.cache", workspace="2G", opt_level=4,
                      hardware_compat="ampere+", out=tmp_path / "d.plan")
    d = mini_artifacts / "dense.onnx"
    assert plan.trtexec_command() == (
        f"trtexec --onnx={d} --saveEngine={tmp_path / 'd.plan'} --stronglyTyped "
        "--minShapes=input:1x1x32x32 --optShapes=input:4x1x80x80 --maxShapes=input:16x1x128x128 "
        "--minShapes=input:1x1x128x128 --optShapes=input:1x1x192x192 --maxShapes=input:4x1x256x256 "
        f"--memPoolSize=workspace:2048M --builderOptimizationLevel=4 --hardwareCompatibilityLevel=ampere+ "
        f"--timingCacheFile={tmp_path / 't.cache'}")
    # the printed vggdeploy command parses back to the same build
    args = shlex.split(plan.vggdeploy_command())[2:]
    sub = build.make_context("build", args)
    again = plan_build(sub.params["onnx_path"], list(sub.params["profiles"]), timing_cache=sub.params["timing_cache"],
                       workspace=sub.params["workspace"], opt_level=sub.params["opt_level"],
                       hardware_compat=sub.params["hardware_compat"], out=sub.params["out"])
    assert again.trtexec_command() == plan.trtexec_command()


def test_build_without_gpu_exits_3_prints_the_commands_and_writes_nothing(mini_copy, run):
    before = sorted(p.name for p in mini_copy.iterdir())
    code, out, err = run("build", mini_copy / "dense.onnx", "--profile", "input:1x1x32x32:2x1x64x64:4x1x96x96")
    assert code == 3
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [next(
        line for line in lines if line.startswith("error: can't build a TensorRT engine here: no NVIDIA driver"))]
    assert "profile 0: input min (1, 1, 32, 32) opt (2, 1, 64, 64) max (4, 1, 96, 96)" in lines[0]
    assert any(line.strip().startswith("trtexec --onnx=") and "--maxShapes=input:4x1x96x96" in line for line in lines)
    assert any(line.strip().startswith("vggdeploy build ") for line in lines)
    assert "Traceback" not in err
    assert sorted(p.name for p in mini_copy.iterdir()) == before


def test_export_engine_keeps_cpu_artifacts_then_exits_3(run, tmp_path):
    code, out, err = run("export", "vgg-mini", "--form", "dense", "--fp16", "--engine", "--out", tmp_path / "e",
                         "--no-verify")
    assert code == 3 and "dense.fp16.plan" in err
    assert {p.name for p in (tmp_path / "e").iterdir()} == {"dense.onnx", "dense.onnx.data", "dense.fp16.onnx",
                                                            "dense.fp16.onnx.data", "manifest.json",
                                                            ".manifest.json.lock"}
    code, _, err = run("export", "vgg-mini", "--int8", "--target", "cpu", "--engine", "--out", tmp_path / "f")
    assert code == 2 and "--target tensorrt" in err and not (tmp_path / "f").exists()


def test_tensorrt_and_cuda_runners_say_what_is_missing(mini_artifacts, tmp_path, run):
    fake = tmp_path / "dense.fp32.plan"
    fake.write_bytes(b"\0" * 64)
    with pytest.raises(MissingEnvironment, match="no NVIDIA driver"):
        make_runner("tensorrt", fake).activate()
    with pytest.raises(MissingEnvironment, match="CUDA"):
        make_runner("torch-cuda", mini_artifacts / "dense.onnx").activate()
    for backend in ("tensorrt", "torch-cuda"):
        code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--backend", backend, "--runs", "1",
                           "--strict", "--no-eager")
        assert code == 3 and len([x for x in err.splitlines() if x.startswith("error:")]) == 1
        assert "Traceback" not in err


def test_engine_manifest_entry_and_mismatch_detection(mini_copy):
    plan = plan_build(mini_copy / "dense.onnx")
    plan.out.write_bytes(b"engine bytes" * 100)  # stands in for the serialized engine: only its size and hash are read
    gpu = Gpu(0, "NVIDIA L4", "8.9")
    entry = engine_entry(plan, "11.4.0.106", gpu, build_s=12.34)
    assert entry["kind"] == "tensorrt-engine" and entry["source"] == "dense.onnx" and entry["precision"] == "fp32"
    assert entry["gpu"] == {"name": "NVIDIA L4", "compute_capability": "8.9"} and entry["tensorrt"] == "11.4.0.106"
    assert [Profile.from_json(p) for p in entry["profiles"]] == plan.profiles
    assert entry["trtexec"].startswith("trtexec --onnx=") and entry["bytes"] == 1200 and entry["build_s"] == 12.3
    assert entry["preprocessing"]["crop"] == 32 and entry["class_names"] == [str(d) for d in range(10)]
    manifest = json.loads((mini_copy / "manifest.json").read_text())
    assert entry["source_sha256"] != manifest["artifacts"]["dense.onnx"]["files"]["dense.onnx"]["sha256"]  # graph + data
    assert engine_problems(entry, "11.4.0.106", gpu, plan.out) == []
    problems = engine_problems(entry, "10.13.0", Gpu(0, "NVIDIA A100", "8.0"), plan.out)
    assert any("TensorRT 11.4.0.106, this is 10.13.0" in p for p in problems)
    assert any("compute capability 8.9" in p for p in problems)
    compat = {**entry, "hardware_compat": "ampere+"}
    assert engine_problems(compat, "11.4.0.106", Gpu(0, "NVIDIA A100", "8.0"), plan.out) == []
    assert "Ampere and newer" in engine_problems(compat, "11.4.0.106", Gpu(0, "Tesla T4", "7.5"), plan.out)[0]
    plan.out.write_bytes(b"engine bytes")  # truncated
    assert "truncated" in engine_problems(entry, "11.4.0.106", gpu, plan.out)[0]


def test_eager_runner_rebuilt_from_an_artifact_matches_it(mini_artifacts):
    x = np.random.default_rng(1).standard_normal((2, 1, 40, 48), dtype=np.float32)
    with make_runner("torch", mini_artifacts / "dense.onnx") as ref, \
            make_runner("onnxruntime", mini_artifacts / "dense.onnx") as got:
        np.testing.assert_allclose(ref.infer({"input": x})["logits"], got.infer({"input": x})["logits"], atol=1e-5)


def test_doctor_says_per_verb_what_runs_here(run):
    code, out, _ = run("doctor")
    assert code == 0
    assert "verb: build / --engine" in out and "no NVIDIA driver" in out
    assert next(line for line in out.splitlines() if line.startswith("verb: export")).split()[2] == "ok"
    cache = next(line for line in out.splitlines() if line.startswith("cache"))
    assert os.environ["VGGDEPLOY_CACHE"] in cache and "kept under 4 GB" in cache
