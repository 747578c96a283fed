"""OpenVINO: the same artifacts, parity with eager PyTorch, INT8 of both targets, hints, cache, bad input."""

import os
import sys

import numpy as np
import pytest

from vggdeploy import THRESHOLDS, BadInput, MissingEnvironment, check_parity, default_cases, make_runner
from vggdeploy.backends import default_cpu_backend
from vggdeploy.isa import cpu_isa
from vggdeploy.backends.eager import TorchRunner
from vggdeploy.models import build_form, output_names
from vggdeploy.precision import to_int8
from vggdeploy.variants import default_taps

pytest.importorskip("openvino")


@pytest.mark.parametrize("form", ["classifier", "dense", "features"])
def test_parity_with_eager_pytorch_on_every_form(mini, mini_artifacts, form, tmp_path):
    taps = default_taps(mini.variant) if form == "features" else None
    ref = TorchRunner(build_form(mini.model, form, taps), output_names(form, taps))
    cases = default_cases(mini.variant, form, (32, 32) if form == "classifier" else (40, 48))
    with ref, make_runner("openvino", mini_artifacts / f"{form}.onnx", cache_dir=tmp_path) as got:
        report = check_parity(ref, got, cases, THRESHOLDS["fp32"])
    assert report.passed, [r for r in report.failures]
    assert report.candidate == "openvino[CPU,latency,f32]"


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_int8_of_both_targets_agrees_with_fp32(mini_copy, target, tmp_path):
    from vggdeploy.mnist import split

    np.savez(tmp_path / "calib.npz", input=split()["train_x"][:128])
    q = to_int8(mini_copy / "classifier.onnx", target=target, calib=str(tmp_path / "calib.npz"), backend="openvino")
    x = split()["test_x"][:500]
    with make_runner("onnxruntime", mini_copy / "classifier.onnx") as fp32, make_runner("openvino", q) as int8:
        agree = (fp32.infer({"input": x})["logits"].argmax(1) == int8.infer({"input": x})["logits"].argmax(1)).mean()
    assert agree >= 0.98


def test_dynamic_batch_and_size_and_throughput_hint(mini_artifacts, tmp_path):
    x = np.random.default_rng(0).standard_normal((8, 1, 48, 72), dtype=np.float32)
    with make_runner("openvino", mini_artifacts / "dense.onnx", cache_dir=tmp_path) as lat, \
            make_runner("openvino", mini_artifacts / "dense.onnx", hint="throughput", cache_dir=tmp_path) as thr:
        a, b = lat.infer({"input": x}), thr.infer({"input": x})
        one = lat.infer({"input": x[:1]})
    assert a["score_map"].shape == (8, 10, 3, 6)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one["logits"], a["logits"][:1], rtol=1e-5, atol=1e-5)


def test_model_cache_is_written_and_reused(mini_artifacts, tmp_path):
    cache = tmp_path / "cache"
    with make_runner("openvino", mini_artifacts / "classifier.onnx", cache_dir=cache) as r:
        assert r.used_cache
    assert any(cache.iterdir())
    with make_runner("openvino", mini_artifacts / "classifier.onnx", cache_dir=cache) as r:
        r.infer({"input": np.zeros((1, 1, 32, 32), np.float32)})


def test_model_cache_is_bounded(mini_artifacts, tmp_path, monkeypatch):
    """OpenVINO never prunes its cache: the runner keeps it under VGGDEPLOY_OPENVINO_CACHE_GB,
    least recently used blobs first, the one just used kept."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for age, name in enumerate(["new.blob", "mid.blob", "old.blob"]):
        (cache / name).write_bytes(b"x" * 1000)
        os.utime(cache / name, (1e9 - age * 100, 1e9 - age * 100))
    monkeypatch.setenv("VGGDEPLOY_OPENVINO_CACHE_GB", "0.0000025")  # 2,500 bytes: two old blobs must go
    with make_runner("openvino", mini_artifacts / "classifier.onnx", cache_dir=cache) as r:
        assert r.used_cache
    left = sorted(p.name for p in cache.glob("*.blob"))
    assert len(left) == 1 and left[0] not in {"mid.blob", "old.blob", "new.blob"}  # just compiled, kept
    monkeypatch.setenv("VGGDEPLOY_OPENVINO_CACHE_GB", "0")
    with make_runner("openvino", mini_artifacts / "classifier.onnx", cache_dir=tmp_path / "none") as r:
        assert not r.used_cache
    assert not (tmp_path / "none").exists()
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("VGGDEPLOY_OPENVINO_CACHE_GB", bad)
        with pytest.raises(BadInput, match="not a size in GB"):
            make_runner("openvino", mini_artifacts / "classifier.onnx", cache_dir=cache).__enter__()


def test_unwritable_cache_runs_without_it(mini_artifacts, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with make_runner("openvino", mini_artifacts / "classifier.onnx", cache_dir=blocker / "cache") as r:
        out = r.infer({"input": np.zeros((2, 1, 32, 32), np.float32)})
        assert not r.used_cache
    assert out["logits"].shape == (2, 10)
    assert "running without a model cache" in caplog.text


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_input_size_the_artifact_does_not_allow(mini_artifacts, backend):
    with make_runner(backend, mini_artifacts / "dense.onnx") as r:
        with pytest.raises(BadInput, match="too small for the dense form"):
            r.infer({"input": np.zeros((1, 1, 16, 40), np.float32)})
    with make_runner(backend, mini_artifacts / "classifier.onnx") as r:
        with pytest.raises(BadInput, match="takes 32x32 only"):
            r.infer({"input": np.zeros((1, 1, 40, 40), np.float32)})


def test_openvino_missing_is_an_environment_error(mini_artifacts, monkeypatch, run):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` meets where it isn't installed
    with pytest.raises(MissingEnvironment, match="OpenVINO is not installed"):
        make_runner("openvino", mini_artifacts / "classifier.onnx").activate()
    from vggdeploy.bench import bench_artifact  # in-process: the CLI times runtimes in child processes

    with pytest.raises(MissingEnvironment) as e:
        bench_artifact(mini_artifacts / "classifier.onnx", "openvino", [1], runs=1)
    assert "pip install openvino" in e.value.hint
    assert default_cpu_backend("int8") == "onnxruntime"  # the CPU default falls back


def test_cli_bench_uses_the_fastest_cpu_runtime_per_precision(run, mini_copy):
    assert run("quantize", mini_copy / "classifier.onnx", "--int8", "--target", "cpu")[0] == 0
    code, out, err = run("bench", mini_copy / "classifier.int8-cpu.onnx", "--batch", "1,4", "--runs", "2")
    assert code == 0, err
    if cpu_isa().int8_class in ("vnni", "amx"):  # measured fastest there: OpenVINO; on AVX2: ONNX Runtime
        assert "openvino[CPU,latency,f32]" in out and "openvino[CPU,throughput,f32]" in out
    else:
        assert "onnxruntime[CPU]" in out and "openvino" not in out


def test_fp16_artifact_keeps_its_output_names(mini_copy):
    from vggdeploy.precision import to_fp16

    path = to_fp16(mini_copy / "dense.onnx", backend="openvino")
    with make_runner("openvino", path) as r:
        out = r.infer({"input": np.zeros((2, 1, 40, 48), np.float32)})
    assert list(out) == ["score_map", "logits"] and out["logits"].dtype == np.float32


def test_convert_to_openvino_ir_runs_the_same(run, mini_copy):
    code, out, err = run("convert", mini_copy / "dense.onnx", "--to", "openvino")
    assert code == 0, err
    xml = mini_copy / "dense.xml"
    assert xml.exists() and (mini_copy / "dense.bin").exists()
    x = np.random.default_rng(1).standard_normal((2, 1, 40, 56), dtype=np.float32)
    with make_runner("openvino", mini_copy / "dense.onnx") as a, make_runner("openvino", xml) as b:
        np.testing.assert_allclose(a.infer({"input": x})["logits"], b.infer({"input": x})["logits"], rtol=1e-5, atol=1e-6)
    assert run("convert", mini_copy / "dense.onnx")[0] == 2  # exists: --force needed


@pytest.mark.parametrize("feed, message", [
    ([np.zeros((1, 1, 32, 32), np.float32)], "a feed is one {input name: batch} dict"),
    ({"input": np.zeros((1, 1, 32, 32), np.float32), "extra": np.zeros(1)}, "a feed is one {input name: batch} dict"),
    ({"image": np.zeros((1, 1, 32, 32), np.float32)}, "input 'image': the model's input is 'input'"),
    ({"input": np.zeros((1, 32, 32), np.float32)}, "input 'input' has shape (1, 32, 32): give a non-empty (N, C, H, W) batch"),
    ({"input": np.zeros((0, 1, 32, 32), np.float32)}, "input 'input' has shape (0, 1, 32, 32): give a non-empty"),
    ({"input": np.full((1, 1, 32, 32), np.nan, np.float32)}, "input 'input' holds NaN or infinite values"),
])
def test_every_backend_refuses_the_same_bad_feeds_the_same_way(mini_artifacts, feed, message):
    """Runner.infer checks the feed before any backend sees it (Polygraphy's BaseRunner.infer)."""
    for backend in ("onnxruntime", "openvino", "torch"):
        with make_runner(backend, mini_artifacts / "classifier.onnx") as runner:
            with pytest.raises(BadInput) as e:
                runner.infer(feed)
            assert str(e.value).startswith(message), (backend, str(e.value))
