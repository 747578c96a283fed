from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# the suite's calibration ranges and OpenVINO blobs go to a folder of its own, removed at the end:
# neither read from nor left in the user's cache (set before vggdeploy reads it at import)
TEST_CACHE = tempfile.mkdtemp(prefix="vggdeploy-test-cache-")
os.environ["VGGDEPLOY_CACHE"] = TEST_CACHE

from vggdeploy import load_model  # noqa: E402
from vggdeploy.cli import main


def gpu_reason() -> str | None:
    """Why GPU tests can't run here, or None where they can."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device on this machine"
    return None  # tests that need TensorRT or onnxruntime-gpu skip on their own, saying which


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """VGGDEPLOY_REQUIRE_GPU=1 (make gpu-check): a `gpu` test that skips fails instead, so a GPU
    check can't pass by skipping."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("VGGDEPLOY_REQUIRE_GPU") and "gpu" in item.keywords and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"VGGDEPLOY_REQUIRE_GPU=1 and this gpu test skipped: {reason}"


def pytest_collection_modifyitems(config, items):
    reason = gpu_reason()
    if reason:
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def run(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def _run(*argv: str):
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture(scope="session")
def mini():
    return load_model("vgg-mini", "random", seed=0)


@pytest.fixture(scope="session")
def mini_artifacts(tmp_path_factory, mini) -> Path:
    """vgg-mini exported once in all three forms (verified), shared read-only by tests."""
    from vggdeploy import export_onnx

    out = tmp_path_factory.mktemp("mini")
    export_onnx(mini, ["classifier", "dense", "features"], out)
    return out


@pytest.fixture
def mini_copy(tmp_path, mini_artifacts) -> Path:
    dst = tmp_path / "art"
    shutil.copytree(mini_artifacts, dst)
    return dst
