"""GPU paths: run where a CUDA device and TensorRT exist; skipped here with the reason (conftest)."""

import numpy as np
import pytest

from vggdeploy import THRESHOLDS, MissingEnvironment, check_parity, default_cases, make_runner


def has_cuda_provider() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(has_cuda_provider(), reason="this ONNX Runtime has CUDA")
def test_asking_for_cuda_without_it_is_an_environment_error(mini_artifacts, run):
    with pytest.raises(MissingEnvironment, match="no CUDAExecutionProvider"):
        make_runner("onnxruntime-cuda", mini_artifacts / "classifier.onnx").activate()
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--backend", "onnxruntime-cuda", "--runs", "1", "--strict")
    assert code == 3 and "onnxruntime-gpu" in err


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["onnxruntime-cuda", "onnxruntime-tensorrt"])
@pytest.mark.parametrize("form", ["classifier", "dense"])
def test_gpu_providers_match_cpu(mini_artifacts, backend, form):
    if not has_cuda_provider():
        pytest.skip("onnxruntime-gpu is not installed (this ONNX Runtime has no CUDAExecutionProvider)")
    path = mini_artifacts / f"{form}.onnx"
    cases = default_cases(__import__("vggdeploy").get_variant("vgg-mini"), form, (32, 32))
    with make_runner("onnxruntime", path) as cpu, make_runner(backend, path) as gpu:
        report = check_parity(cpu, gpu, cases, THRESHOLDS["fp16"])  # ORT's CUDA provider allows TF32 (use_tf32=1)
    assert report.passed
    assert np.isfinite([r.max_abs for r in report.results]).all()


# ---------------------------------------------------------------- TensorRT engines (GPU host only)

# Polygraphy's CreateConfig turns TF32 off (tf32=False), so FP32 engines are judged as FP32
ENGINE_THRESHOLDS = {"fp32": "fp32", "fp16": "fp16", "int8-tensorrt": "int8"}


@pytest.fixture(scope="module")
def mini_engines(tmp_path_factory, mini_artifacts):
    """FP32, FP16 and INT8 engines of vgg-mini's dense form (default profiles: 32-128 and 128-256)."""
    import shutil

    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from vggdeploy.engine import build_engine, plan_build
    from vggdeploy.precision import to_fp16, to_int8

    out = tmp_path_factory.mktemp("engines")
    for f in mini_artifacts.iterdir():
        shutil.copy(f, out)
    srcs = {"fp32": out / "dense.onnx", "fp16": to_fp16(out / "dense.onnx", verify=False),
            "int8-tensorrt": to_int8(out / "dense.onnx", target="tensorrt", verify=False)}
    return {p: build_engine(plan_build(src, timing_cache=out / "timing.cache")) for p, src in srcs.items()}


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-tensorrt"])
def test_engine_matches_eager_cuda_at_batch_1_8_and_each_profiles_maximum(mini_engines, precision):
    import json

    from vggdeploy import get_variant
    from vggdeploy.data import photo_batch
    from vggdeploy.backends.tensorrt import Profile
    from vggdeploy.parity import Case

    v = get_variant("vgg-mini")
    engine = mini_engines[precision]
    entry = json.loads((engine.parent / "manifest.json").read_text())["artifacts"][engine.name]
    assert entry["kind"] == "tensorrt-engine" and len(entry["profiles"]) == 2
    profiles = [Profile.from_json(p) for p in entry["profiles"]]
    cases = [Case("photos b1@48", *photo_batch(v, (48, 48), 1)), Case("photos b8@64", *photo_batch(v, (64, 64), 8))]
    cases += [Case(f"photos at profile {i}'s max {p.max}", *photo_batch(v, p.max[2:], p.max[0])) for i, p in enumerate(profiles)]
    with make_runner("torch-cuda", engine.parent / "dense.onnx") as ref, make_runner("tensorrt", engine) as got:
        report = check_parity(ref, got, cases, THRESHOLDS[ENGINE_THRESHOLDS[precision]])
        assert got.active == 1  # the last case ran on the second profile
    assert report.passed, report.failures


@pytest.mark.gpu
def test_engine_reloads_from_disk_equal_to_eager_and_a_mismatch_is_refused(mini_engines):
    import json

    from vggdeploy import get_variant
    from vggdeploy.data import photo_batch

    engine = mini_engines["fp16"]
    _, x = photo_batch(get_variant("vgg-mini"), (64, 64), 4)
    with make_runner("torch-cuda", engine.parent / "dense.onnx") as ref:
        expected = ref.infer({"input": x})["logits"]
    for _ in range(2):  # two deserialisations of the same file, each against eager
        with make_runner("tensorrt", engine) as r:
            got = r.infer({"input": x})["logits"]
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-2 * np.abs(expected).max())
        assert (got.argmax(1) == expected.argmax(1)).all()
    manifest_path = engine.parent / "manifest.json"
    original = manifest_path.read_text()
    m = json.loads(original)
    m["artifacts"][engine.name]["tensorrt"] = "9.0.0"
    manifest_path.write_text(json.dumps(m))
    try:
        with pytest.raises(__import__("vggdeploy").BadInput, match="built with TensorRT 9.0.0"):
            make_runner("tensorrt", engine).activate()
    finally:
        manifest_path.write_text(original)


@pytest.mark.gpu
def test_device_outputs_are_copies_not_polygraphy_buffers(mini_engines):
    import torch

    with make_runner("tensorrt", mini_engines["fp32"], device_io=True) as r:
        a = r.infer({"input": torch.zeros((2, 1, 64, 64), device="cuda")})["logits"]
        kept = a.clone()
        r.infer({"input": torch.randn((2, 1, 64, 64), device="cuda")})
    assert torch.equal(a, kept)


@pytest.mark.gpu
def test_engine_bench_is_plausible(mini_engines, run):
    """CUDA-event rows in both I/O modes; an FP16 engine is faster than eager FP32 on CUDA at batch 8."""
    import json

    from vggdeploy.bench import time_runner_cuda
    from vggdeploy.data import photo_batch
    from vggdeploy import get_variant

    code, out, err = run("bench", mini_engines["fp16"], "--backend", "tensorrt", "--batch", "1,8", "--runs", "20", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["timing"] for r in rows} == {"cuda-events,host-io", "cuda-events,device-io"}
    assert all(0 < r["median_ms"] < 1000 and r["gpu_mem_mb"] > 0 for r in rows)
    feed = {"input": photo_batch(get_variant("vgg-mini"), (256, 256), 8)[1]}
    engine = time_runner_cuda(lambda io: make_runner("tensorrt", mini_engines["fp16"], device_io=io), feed, runs=30)
    eager = time_runner_cuda(lambda io: make_runner("torch-cuda", mini_engines["fp16"].parent / "dense.onnx", device_io=io),
                             feed, runs=30)
    assert engine[1]["median_ms"] < eager[1]["median_ms"], (engine, eager)


@pytest.mark.gpu
def test_onnxruntime_cuda_bench_times_host_io_only(mini_artifacts, run):
    import json

    if not has_cuda_provider():
        pytest.skip("onnxruntime-gpu is not installed (this ONNX Runtime has no CUDAExecutionProvider)")
    code, out, err = run("bench", mini_artifacts / "classifier.onnx", "--backend", "onnxruntime-cuda", "--batch", "1",
                         "--runs", "5", "--json", "--no-eager")
    assert code == 0, err
    assert {r["timing"] for r in json.loads(out)} == {"cuda-events,host-io"}


@pytest.mark.gpu
def test_cpp_tensorrt_example_builds_and_agrees_with_python(mini_engines, tmp_path):
    """examples/cpp/vgg_classify_trt, built against TENSORRT_ROOT (TensorRT's pip wheels have no
    C++ headers), on a photo: the same top-5 as the Python TensorRT runner."""
    import os
    import subprocess
    from pathlib import Path

    import skimage.data
    import skimage.io

    from vggdeploy.artifact import Artifact
    from vggdeploy.dataset import Sample
    from vggdeploy.evaluate import Protocol, prepare

    root = os.environ.get("TENSORRT_ROOT")
    if not root:
        pytest.skip("TENSORRT_ROOT is not set: TensorRT's C++ headers come with its tar or deb install, not its pip wheels")
    here = Path(__file__).parents[1] / "examples" / "cpp"
    subprocess.run(["bash", here / "build.sh"], check=True, capture_output=True, env={**os.environ, "TENSORRT_ROOT": root})
    binary = here / "build" / "vgg_classify_trt"
    assert binary.exists(), "CMake found no TensorRT under TENSORRT_ROOT"
    image = tmp_path / "camera.png"
    skimage.io.imsave(image, skimage.data.camera())
    engine = mini_engines["fp32"]
    res = subprocess.run([str(binary), str(engine), str(image), "5"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = [int(line.split("\t")[1]) for line in res.stdout.splitlines()]
    pre = Artifact.open(engine.parent / "dense.onnx").meta.preprocessing
    x = prepare(Sample(image, 0), Protocol("center"), pre).center[None]
    with make_runner("tensorrt", engine) as r:
        logits = r.infer({"input": x})["logits"][0]
    assert got == list(np.argsort(-logits)[:5])
