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
    path = mini_artifacts / f"{form}.onnx"
    cases = default_cases(__import__("vggdeploy").get_variant("vgg-mini"), form, (32, 32))
    with make_runner("onnxruntime", path) as cpu, make_runner(backend, path) as gpu:
        report = check_parity(cpu, gpu, cases, THRESHOLDS["fp16"])  # TF32/FP16 kernels may be picked
    assert report.passed
    assert np.isfinite([r.max_abs for r in report.results]).all()


# ---------------------------------------------------------------- TensorRT engines (GPU host only)

# FP32 engines may use TF32 kernels (TensorRT's default on Ampere+): judged with FP16's thresholds
ENGINE_THRESHOLDS = {"fp32": "fp16", "fp16": "fp16", "int8-tensorrt": "int8"}


@pytest.fixture(scope="module")
def mini_engines(tmp_path_factory, mini_artifacts):
    """FP32, FP16 and INT8 engines of vgg-mini's dense form (default profiles: 32-128 and 128-256)."""
    import shutil

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
def test_engine_matches_eager_cuda_at_two_sizes_across_profiles(mini_engines, precision):
    from vggdeploy import get_variant

    v = get_variant("vgg-mini")
    engine = mini_engines[precision]
    manifest = __import__("json").loads((engine.parent / "manifest.json").read_text())["artifacts"][engine.name]
    assert manifest["kind"] == "tensorrt-engine" and len(manifest["profiles"]) == 2
    from vggdeploy.data import photo_batch
    from vggdeploy.parity import Case

    cases = default_cases(v, "dense", (32, 32), noise=precision != "int8-tensorrt")  # 32-61 px: profile 0
    cases.append(Case("photos@160x192", *photo_batch(v, (160, 192), 3)))  # profile 1
    with make_runner("torch-cuda", engine.parent / "dense.onnx") as ref, make_runner("tensorrt", engine) as got:
        report = check_parity(ref, got, cases, THRESHOLDS[ENGINE_THRESHOLDS[precision]])
        assert got.active == 1  # the last case switched profiles
    assert report.passed, report.failures


@pytest.mark.gpu
def test_engine_reloads_from_disk_and_a_mismatch_is_refused(mini_engines):
    import json

    engine = mini_engines["fp16"]
    x = np.zeros((1, 1, 32, 32), np.float32)
    with make_runner("tensorrt", engine) as a:
        first = a.infer({"input": x})["logits"]
    with make_runner("tensorrt", engine) as b:  # a second deserialisation of the same file
        np.testing.assert_array_equal(b.infer({"input": x})["logits"], first)
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
def test_engine_bench_times_with_cuda_events(mini_engines, run):
    code, out, err = run("bench", mini_engines["fp16"], "--backend", "tensorrt", "--batch", "1,4", "--runs", "5", "--json")
    assert code == 0, err
    rows = __import__("json").loads(out)
    assert {r["timing"] for r in rows} == {"cuda-events,host-io", "cuda-events,device-io"}
    assert all(r["median_ms"] > 0 for r in rows)
