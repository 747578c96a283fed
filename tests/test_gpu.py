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
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--backend", "onnxruntime-cuda", "--runs", "1")
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
