"""Triton model repositories: configs parsed back with Triton's own schema, the lint, bad input,
and (where scripts/triton_env.sh has made the server's environment) a real tritonserver serving
the python-platform repository over HTTP and gRPC."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="pip install 'tritonclient[grpc,http]' (the dev extra has it)")

from vggdeploy import BadInput, make_runner  # noqa: E402
from vggdeploy.triton import TritonOptions, build_config, lint, read_config, write_repository  # noqa: E402

ROOT = Path(__file__).parents[1]


def test_classifier_repository_parses_back_with_tritons_schema(mini_artifacts, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    repo = write_repository(mini_artifacts / "classifier.onnx", tmp_path / "repo",
                            TritonOptions("mini", max_batch=16, dynamic_batching=True, max_queue_delay_us=500,
                                          instances=2, accelerator="openvino"))
    cfg = read_config(repo / "config.pbtxt")
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    assert [(i.name, list(i.dims), i.data_type) for i in cfg.input] == [("input", [1, 32, 32], pb.TYPE_FP32)]
    assert [(o.name, list(o.dims), o.label_filename) for o in cfg.output] == [("logits", [10], "labels.txt")]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert cfg.optimization.execution_accelerators.cpu_execution_accelerator[0].name == "openvino"
    assert sorted(p.name for p in (repo / "1").iterdir()) == ["classifier.onnx.data", "model.onnx"]
    assert (repo / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    assert "perf_analyzer -m mini" in (repo / "README.md").read_text()
    with make_runner("onnxruntime", repo / "1" / "model.onnx") as r:  # the copied pair still loads
        assert r.infer({"input": np.zeros((1, 1, 32, 32), np.float32)})["logits"].shape == (1, 10)


@pytest.mark.parametrize("form, dims", [("dense", {"input": [1, -1, -1], "score_map": [10, -1, -1], "logits": [10]}),
                                        ("features", {"input": [1, -1, -1]})])
def test_free_sizes_are_minus_one_and_no_batch_dim(mini_artifacts, tmp_path, form, dims):
    cfg = read_config(write_repository(mini_artifacts / f"{form}.onnx", tmp_path / "r", TritonOptions(form))
                      / "config.pbtxt")
    got = {t.name: list(t.dims) for t in [*cfg.input, *cfg.output]}
    assert {k: got[k] for k in dims} == dims
    unbatched = build_config(mini_artifacts / f"{form}.onnx", TritonOptions(form, max_batch=0))
    assert list(unbatched.input[0].dims) == [-1, 1, -1, -1]


def test_tensorrt_plan_gets_a_profile_per_group(mini_copy, tmp_path):
    from vggdeploy.store import record
    from vggdeploy.engine import engine_entry, plan_build
    from vggdeploy.gpu import Gpu

    plan = plan_build(mini_copy / "dense.onnx")
    plan.out.write_bytes(b"\0" * 64)  # the file's bytes are not read: its manifest entry is
    record(plan.out.parent, plan.out.name, engine_entry(plan, "11.4.0", Gpu(0, "L4", "8.9"), 1.0))
    repo = write_repository(plan.out, tmp_path / "r", TritonOptions("trt", platform="tensorrt_plan", kind="gpu",
                                                                    max_batch=4))
    cfg = read_config(repo / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and list(cfg.instance_group[0].profile) == ["0", "1"]
    assert (repo / "1" / "model.plan").exists()
    with pytest.raises(BadInput, match="exceeds the engine's largest profile batch 16"):
        write_repository(plan.out, tmp_path / "r2", TritonOptions("trt", platform="tensorrt_plan", kind="gpu",
                                                                  max_batch=64))


@pytest.mark.parametrize("artifact, opts, message", [
    ("classifier.onnx", TritonOptions("m", accelerator="tensorrt", kind="cpu"), "GPU execution accelerator on a CPU"),
    ("classifier.onnx", TritonOptions("m", platform="tensorrt_plan", kind="gpu"), "does not take a .onnx"),
    ("classifier.onnx", TritonOptions("m", platform="python", kind="gpu"), "CPU instance groups"),
    ("classifier.onnx", TritonOptions("m", platform="openvino", accelerator="openvino"), "onnxruntime_onnx platform only"),
    ("classifier.onnx", TritonOptions("m", platform="triton"), "unknown platform"),
    ("classifier.onnx", TritonOptions("m", kind="tpu"), "unknown --kind"),
    ("classifier.onnx", TritonOptions("m", max_batch=-1), "--max-batch >= 0"),
])
def test_lint_and_bad_options(mini_artifacts, tmp_path, artifact, opts, message):
    with pytest.raises(BadInput, match=message):
        write_repository(mini_artifacts / artifact, tmp_path / "repo", opts)
    assert not (tmp_path / "repo" / "m").exists()


def test_lint_catches_hand_edited_configs(mini_artifacts):
    path = mini_artifacts / "classifier.onnx"
    cfg = build_config(path, TritonOptions("m"))
    cfg.instance_group[0].profile.append("0")
    cfg.input[0].dims[1] = 64
    problems = lint(cfg, path)
    assert any("`profile` applies to tensorrt_plan only" in p for p in problems)
    assert any("dims [1, 64, 32] contradict the artifact's input [1, 32, 32]" in p for p in problems)


def test_repository_refuses_to_overwrite_and_checks_side_files(mini_copy, tmp_path, run):
    code, out, _ = run("triton", mini_copy / "dense.onnx", "--repo", tmp_path / "repo", "--name", "d")
    assert code == 0 and out.strip().endswith("repo/d")
    code, _, err = run("triton", mini_copy / "dense.onnx", "--repo", tmp_path / "repo", "--name", "d")
    assert code == 2 and "already exists" in err
    assert run("triton", mini_copy / "dense.onnx", "--repo", tmp_path / "repo", "--name", "d", "--force")[0] == 0
    (mini_copy / "classifier.onnx.data").unlink()
    code, _, err = run("triton", mini_copy / "classifier.onnx", "--repo", tmp_path / "repo")
    assert code == 2 and "is missing" in err
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".staging-")]


# ---------------------------------------------------------------- served for real (python platform)

SERVER_ENV = ROOT / ".venv-triton"


@pytest.fixture(scope="module")
def server(tmp_path_factory, mini_artifacts):
    if not (SERVER_ENV / ".installed").exists():
        if os.environ.get("VGGDEPLOY_REQUIRE_TRITON"):
            pytest.fail("scripts/triton_env.sh did not make .venv-triton")
        pytest.skip("no tritonserver environment here (bash scripts/triton_env.sh makes one; CI does)")
    from vggdeploy.triton_server import start_server

    repo = tmp_path_factory.mktemp("repo")
    for form in ("classifier", "dense"):
        write_repository(mini_artifacts / f"{form}.onnx", repo, TritonOptions(
            form, platform="python", max_batch=8, dynamic_batching=True, max_queue_delay_us=20000))
    with start_server(repo, SERVER_ENV) as urls:
        yield urls


def test_served_answers_equal_the_runner_over_http_and_grpc(server, mini_artifacts):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    with make_runner("cpu", mini_artifacts / "classifier.onnx") as r:
        want = r.infer({"input": x})["logits"]
    for module, url in ((httpclient, server["http"]), (grpcclient, server["grpc"])):
        client = module.InferenceServerClient(url)
        inp = module.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("classifier", [inp]).as_numpy("logits")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_form_answers_two_sizes(server, mini_artifacts):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server["http"])
    with make_runner("cpu", mini_artifacts / "dense.onnx") as r:
        for hw in ((32, 32), (48, 72)):
            x = np.random.default_rng(1).standard_normal((1, 1, *hw)).astype(np.float32)
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            res = client.infer("dense", [inp])
            want = r.infer({"input": x})
            np.testing.assert_allclose(res.as_numpy("score_map"), want["score_map"], rtol=1e-5, atol=1e-5)
            assert res.as_numpy("score_map").shape == (1, 10, hw[0] // 8 - 3, hw[1] // 8 - 3)


def test_concurrent_requests_are_batched(server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server["grpc"])
    before = client.get_inference_statistics("classifier").model_stats[0]
    x = np.zeros((1, 1, 32, 32), np.float32)
    done = []

    def callback(result, error):
        done.append(error)

    for _ in range(32):
        inp = grpcclient.InferInput("input", [1, 1, 32, 32], "FP32")
        inp.set_data_from_numpy(x)
        client.async_infer("classifier", [inp], callback)
    deadline = time.time() + 60
    while len(done) < 32 and time.time() < deadline:
        time.sleep(0.05)
    assert len(done) == 32 and not any(done)
    after = client.get_inference_statistics("classifier").model_stats[0]
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == 32 and executions < inferences  # the dynamic batcher merged requests


def test_the_generated_readme_serves_as_printed(tmp_path, mini_artifacts):
    """The model folder's README, followed literally: its first bash block run from the model folder
    with only ENV set (as the README says), then queried with tritonclient."""
    import re
    import signal
    import subprocess

    if not (SERVER_ENV / ".installed").exists():
        if os.environ.get("VGGDEPLOY_REQUIRE_TRITON"):
            pytest.fail("scripts/triton_env.sh did not make .venv-triton")
        pytest.skip("no tritonserver environment here (bash scripts/triton_env.sh makes one; CI does)")
    import tritonclient.http as httpclient

    repo = tmp_path / "repo"
    model = write_repository(mini_artifacts / "classifier.onnx", repo, TritonOptions("classifier", platform="python"))
    block = re.search(r"```bash\n(.*?)```", (model / "README.md").read_text(), re.S).group(1)
    assert "--backend-directory" in block and "VGGDEPLOY_PYTHONPATH" in block
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VGGDEPLOY_PYTHONPATH", "LD_LIBRARY_PATH")}
    proc = subprocess.Popen(["bash", "-c", block], cwd=model, env={**env, "ENV": str(SERVER_ENV)},
                            stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = httpclient.InferenceServerClient("127.0.0.1:8000")
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if client.is_model_ready("classifier"):
                    break
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        with make_runner("cpu", mini_artifacts / "classifier.onnx") as r:
            want = r.infer({"input": x})["logits"]
        np.testing.assert_allclose(client.infer("classifier", [inp]).as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
