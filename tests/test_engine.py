"""TensorRT engines: everything decided before TensorRT is called, and every no-GPU path, for real here."""

import json
import os
import shlex

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vggdeploy import BadInput, MissingEnvironment, make_runner
from vggdeploy.backends.tensorrt import Profile, choose_profile, engine_problems
from vggdeploy.engine import default_profiles, engine_entry, parse_profile, parse_workspace, plan_build
from vggdeploy.forms import form_spec
from vggdeploy.gpu import Gpu, cuda_info
from vggdeploy.variants import get_variant

# these check what a machine without a GPU answers; every other test here runs on a GPU host too
no_gpu = pytest.mark.skipif(cuda_info().available, reason="checks what happens without a GPU")

# trtexec's options that vggdeploy prints (samples/common/sampleOptions.cpp, TensorRT 11.1: each is
# read by a getAndDelOption call there; an option it doesn't know is an error)
TRTEXEC_OPTIONS = {"--onnx", "--saveEngine", "--stronglyTyped", "--noTF32", "--profile", "--minShapes", "--optShapes",
                   "--maxShapes", "--memPoolSize", "--builderOptimizationLevel", "--hardwareCompatibilityLevel",
                   "--timingCacheFile", "--profilingVerbosity"}
SHAPES = ("--minShapes", "--optShapes", "--maxShapes")


def trtexec_profiles(command: str) -> list[dict[str, str]]:
    """The optimization profiles trtexec reads from a command line, by its own rules
    (sampleOptions.cpp, getOptimizationProfiles and BuildOptions::parse): `--profile=i` takes the
    shape options that follow it directly, one position each; indices are unique and cover 0..n-1;
    without --profile each shape option may appear once ("Multiple --minShapes/--optShapes/
    --maxShapes without --profile are not allowed"). Raises ValueError as trtexec would refuse."""
    opts = [(a.partition("=")[0], a.partition("=")[2], pos) for pos, a in enumerate(shlex.split(command)[1:])]
    unknown = {name for name, _, _ in opts} - TRTEXEC_OPTIONS
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}")
    left = [o for o in opts if o[0] in SHAPES]
    profiles: dict[int, dict[str, str]] = {}
    for _, index, pos in (o for o in opts if o[0] == "--profile"):
        profile: dict[str, str] = {}
        for step in (1, 2, 3):
            hit = next((o for o in left if o[2] == pos + step and o[0] not in profile), None)
            if hit is None:
                break
            profile[hit[0]] = hit[1]
            left.remove(hit)
        if int(index) in profiles:
            raise ValueError("Optimization profile index cannot be the same.")
        profiles[int(index)] = profile
    if profiles and sorted(profiles) != list(range(len(profiles))):
        raise ValueError("Found invalid or missing shape spec at profile index")
    if not profiles:
        first: dict[str, str] = {}
        for o in list(left):
            if o[0] not in first:
                first[o[0]] = o[1]
                left.remove(o)
        profiles = {0: first}
    if left:
        raise ValueError("Multiple --minShapes/--optShapes/--maxShapes without --profile are not allowed.")
    return [profiles[i] for i in sorted(profiles)]


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
        f"trtexec --onnx={d} --saveEngine={tmp_path / 'd.plan'} --stronglyTyped --noTF32 --profilingVerbosity=detailed "
        "--profile=0 --minShapes=input:1x1x32x32 --optShapes=input:4x1x80x80 --maxShapes=input:16x1x128x128 "
        "--profile=1 --minShapes=input:1x1x128x128 --optShapes=input:1x1x192x192 --maxShapes=input:4x1x256x256 "
        f"--memPoolSize=workspace:2048M --builderOptimizationLevel=4 --hardwareCompatibilityLevel=ampere+ "
        f"--timingCacheFile={tmp_path / 't.cache'}")
    # trtexec reads the same two profiles from it
    assert trtexec_profiles(plan.trtexec_command()) == [
        {"--minShapes": f"input:{'x'.join(map(str, p.min))}", "--optShapes": f"input:{'x'.join(map(str, p.opt))}",
         "--maxShapes": f"input:{'x'.join(map(str, p.max))}"} for p in plan.profiles]
    one = plan_build(mini_artifacts / "classifier.onnx", out=tmp_path / "c.plan")  # one profile: no --profile needed
    assert "--profile" not in one.trtexec_command() and len(trtexec_profiles(one.trtexec_command())) == 1
    # the printed vggdeploy command parses back to the same build
    args = shlex.split(plan.vggdeploy_command())[2:]
    sub = build.make_context("build", args)
    again = plan_build(sub.params["onnx_path"], list(sub.params["profiles"]), timing_cache=sub.params["timing_cache"],
                       workspace=sub.params["workspace"], opt_level=sub.params["opt_level"],
                       hardware_compat=sub.params["hardware_compat"], out=sub.params["out"])
    assert again.trtexec_command() == plan.trtexec_command()


def test_trtexec_rules_refuse_what_trtexec_refuses():
    """The rule model above, on lines trtexec refuses (so that it can fail)."""
    two_triples = ("trtexec --onnx=m.onnx --minShapes=input:1x3x8x8 --optShapes=input:1x3x8x8 --maxShapes=input:1x3x8x8 "
                   "--minShapes=input:1x3x9x9 --optShapes=input:1x3x9x9 --maxShapes=input:1x3x9x9")
    with pytest.raises(ValueError, match="without --profile"):
        trtexec_profiles(two_triples)  # what vggdeploy printed before: trtexec refused it
    with pytest.raises(ValueError, match="cannot be the same"):
        trtexec_profiles("trtexec --profile=0 --minShapes=a:1 --profile=0 --minShapes=a:2")
    with pytest.raises(ValueError, match="missing shape spec"):
        trtexec_profiles("trtexec --profile=1 --minShapes=a:1 --optShapes=a:1 --maxShapes=a:1")
    with pytest.raises(ValueError, match="without --profile"):  # a triple not right behind its --profile
        trtexec_profiles("trtexec --profile=0 --onnx=m.onnx --minShapes=a:1 --optShapes=a:1 --maxShapes=a:1")
    with pytest.raises(ValueError, match="unknown"):
        trtexec_profiles("trtexec --onnx=m.onnx --fp16")


def test_polygraphy_failures_are_one_line_and_its_log_stays_off_stdout(capsys):
    """Polygraphy reports a failed parse or build with G_LOGGER.critical (PolygraphyException) after
    TensorRT's errors as `[E]` lines, and prints INFO to stdout: both handled by polygraphy_calls."""
    from polygraphy.logger import G_LOGGER

    from vggdeploy.trt_calls import polygraphy_calls

    with polygraphy_calls("a step"):
        G_LOGGER.info("Building engine with configuration: ...")
        G_LOGGER.warning("a warning")
    assert capsys.readouterr().out == ""
    with pytest.raises(BadInput) as e:
        with polygraphy_calls("TensorRT's build of dense.onnx"):
            G_LOGGER.error("In node 3 (parseGraph): INVALID_NODE: Invalid Node - Conv_3")
            G_LOGGER.critical("Failed to parse ONNX model. Does the model file exist and contain a valid ONNX model?")
    assert str(e.value) == "TensorRT's build of dense.onnx failed: In node 3 (parseGraph): INVALID_NODE: Invalid Node - Conv_3"
    assert "--debug" in e.value.hint
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    with pytest.raises(BadInput, match="failed: Could not load the CUDA runtime library"):
        with polygraphy_calls("starting x.plan"):
            G_LOGGER.critical("Could not load the CUDA runtime library. Is it on your loader path?")


def test_polygraphy_finds_the_cuda_runtime_pip_installed():
    """torch's CUDA 13 wheels put libcudart in nvidia/cu13/lib, outside Polygraphy's search list;
    after expose_pip_cuda_runtime its wrapper loads that file (libcudart loads without a GPU)."""
    import subprocess
    import sys

    from vggdeploy.gpu import pip_cuda_runtime_dirs

    dirs = pip_cuda_runtime_dirs()
    if not dirs:
        pytest.skip("no pip CUDA runtime in this environment (a CPU build of torch)")
    code = """
import json, os
from polygraphy.cuda import cuda
before = [os.path.realpath(d) for d in cuda._find_cuda_lib_dirs()]
from vggdeploy.gpu import expose_pip_cuda_runtime
added = [str(d) for d in expose_pip_cuda_runtime()]
lib = cuda.wrapper().handle._name
print(json.dumps({"before": before, "added": added, "lib": lib}))
"""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    pip_dir = os.path.realpath(dirs[0])
    assert pip_dir not in got["before"]  # the finding: Polygraphy alone never looks there
    assert os.path.realpath(got["added"][0]) == pip_dir
    assert os.path.dirname(os.path.realpath(got["lib"])) == pip_dir and "libcudart.so" in got["lib"]


@no_gpu
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


@no_gpu
def test_export_engine_keeps_cpu_artifacts_then_exits_3(run, tmp_path):
    code, out, err = run("export", "vgg-mini", "--form", "dense", "--fp16", "--engine", "--out", tmp_path / "e",
                         "--no-verify")
    assert code == 3 and "dense.fp16.plan" in err
    assert {p.name for p in (tmp_path / "e").iterdir()} == {"dense.onnx", "dense.onnx.data", "dense.fp16.onnx",
                                                            "dense.fp16.onnx.data", "manifest.json",
                                                            ".manifest.json.lock"}
    code, _, err = run("export", "vgg-mini", "--int8", "--target", "cpu", "--engine", "--out", tmp_path / "f")
    assert code == 2 and "--target tensorrt" in err and not (tmp_path / "f").exists()


@no_gpu
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
    compat = entry.with_details(hardware_compat="ampere+")
    assert engine_problems(compat, "11.4.0.106", Gpu(0, "NVIDIA A100", "8.0"), plan.out) == []
    assert "Ampere and newer" in engine_problems(compat, "11.4.0.106", Gpu(0, "Tesla T4", "7.5"), plan.out)[0]
    plan.out.write_bytes(b"engine bytes")  # truncated
    assert "truncated" in engine_problems(entry, "11.4.0.106", gpu, plan.out)[0]


def test_eager_runner_rebuilt_from_an_artifact_matches_it(mini_artifacts):
    x = np.random.default_rng(1).standard_normal((2, 1, 40, 48), dtype=np.float32)
    with make_runner("torch", mini_artifacts / "dense.onnx") as ref, \
            make_runner("onnxruntime", mini_artifacts / "dense.onnx") as got:
        np.testing.assert_allclose(ref.infer({"input": x})["logits"], got.infer({"input": x})["logits"], atol=1e-5)


@no_gpu
def test_doctor_says_per_verb_what_runs_here(run):
    code, out, _ = run("doctor")
    assert code == 0
    assert "verb: build / --engine" in out and "no NVIDIA driver" in out
    assert next(line for line in out.splitlines() if line.startswith("verb: export")).split()[2] == "ok"
    cache = next(line for line in out.splitlines() if line.startswith("cache"))
    assert os.environ["VGGDEPLOY_CACHE"] in cache and "kept under 4 GB" in cache


def test_doctor_names_an_onnxruntime_tensorrt_version_mismatch(tmp_path):
    """The provider's needed TensorRT is read off its ELF: here a real shared library linking
    libnvinfer.so.10, as onnxruntime-gpu 1.31.1's libonnxruntime_providers_tensorrt.so does."""
    import shutil
    import subprocess

    from vggdeploy.gpu import linked_tensorrt_major, version_mismatch

    if not shutil.which("cc"):
        pytest.skip("no C compiler to make a shared library")
    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", tmp_path / "libnvinfer.so.10", tmp_path / "a.c",
                    "-Wl,-soname,libnvinfer.so.10"], check=True)
    provider = tmp_path / "libprovider.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", provider, tmp_path / "a.c", "-Wl,--no-as-needed",
                    str(tmp_path / "libnvinfer.so.10")], check=True)
    assert linked_tensorrt_major(provider) == 10
    assert linked_tensorrt_major(tmp_path / "libnvinfer.so.10") is None  # names itself, links no TensorRT
    assert version_mismatch(10, "11.4.0.106") == ("ONNX Runtime's TensorRT provider needs TensorRT 10 (libnvinfer.so.10), "
                                                  "this is TensorRT 11.4.0.106: it falls back to CUDA")
    assert version_mismatch(10, "10.16.1.11") is None and version_mismatch(None, "11.4.0") is None


def test_onnx_runners_refuse_a_torch_tensor_in_one_line(mini_artifacts):
    """bench's device-io mode once handed CUDA tensors to ONNX Runtime: `x.dtype.kind` raised AttributeError."""
    import torch

    x = torch.zeros((1, 1, 32, 32))
    for backend in ("onnxruntime", "openvino"):
        with make_runner(backend, mini_artifacts / "classifier.onnx") as r, \
                pytest.raises(BadInput, match="is a torch.Tensor; .* takes numpy arrays"):
            r.infer({"input": x})


def test_qdq_weight_axis_follows_the_consumers_output_channels():
    """Conv and Gemm(transB=1) weights are per-channel on axis 0; MatMul's (K, N) and Gemm(transB=0)'s on axis 1."""
    from onnx import numpy_helper

    from vggdeploy.qdq import qdq_violations

    def graph(op: str, w_shape, axis: int, **attrs):
        k, n = (w_shape[1], w_shape[0]) if op != "MatMul" and attrs.get("transB") else w_shape
        inits = [numpy_helper.from_array(np.ones(w_shape, np.int8), "w_q"),
                 numpy_helper.from_array(np.ones(w_shape[axis], np.float32), "w_s"),
                 numpy_helper.from_array(np.zeros(w_shape[axis], np.int8), "w_z"),
                 numpy_helper.from_array(np.array(0.1, np.float32), "x_s"),
                 numpy_helper.from_array(np.array(0, np.int8), "x_z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"], name="qx"),
                 helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"], name="dqx"),
                 helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"], name="dqw", axis=axis),
                 helper.make_node(op, ["xd", "wd"], ["y"], name="fc", **attrs)]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], inits)
        return helper.make_model(g)

    assert qdq_violations(graph("MatMul", (8, 4), axis=1)) == []
    assert qdq_violations(graph("Gemm", (4, 8), axis=0, transB=1)) == []
    assert qdq_violations(graph("Gemm", (8, 4), axis=1)) == []
    assert qdq_violations(graph("MatMul", (8, 4), axis=0)) == [
        "DequantizeLinear dqw: weight scales on axis 0, TensorRT wants the output channels' axis 1"]
    assert "axis 1, TensorRT wants the output channels' axis 0" in qdq_violations(graph("Gemm", (4, 8), axis=1, transB=1))[0]


def test_engines_are_built_from_what_each_artifact_declares(mini_copy):
    """`export --engine` builds the typed (FP16/INT8-tensorrt) artifacts it made, else the FP32 ones,
    judged by the precision each declares, not by its file name."""
    from vggdeploy.artifact import Artifact
    from vggdeploy.engine import engine_sources
    from vggdeploy.precision import to_fp16

    fp32 = Artifact.open(mini_copy / "classifier.onnx")
    fp16 = to_fp16(fp32, verify=False)
    (mini_copy / "dense.onnx").rename(mini_copy / "dense.fp16-named.onnx")  # a name that says fp16
    misnamed = Artifact.open(mini_copy / "dense.fp16-named.onnx")
    assert [a.path for a in engine_sources([fp32, fp16, misnamed])] == [fp16.path]
    assert [a.path for a in engine_sources([fp32, misnamed])] == [fp32.path, misnamed.path]
