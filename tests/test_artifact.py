"""An artifact opened once (issue 17): make_runner reads an ONNX graph's header and its folder's
manifest once, whatever the backend; an Artifact is frozen, picklable and accepted wherever a path is."""

import pickle
from unittest import mock

import numpy as np
import onnx
import pytest

from vggdeploy import make_runner
from vggdeploy.artifact import Artifact


@pytest.fixture
def reads():
    """Counts of onnx.load calls and manifest reads while the test runs."""
    import vggdeploy.artifacts as artifacts

    counts = {"onnx.load": 0, "manifest": 0}
    load, read_manifest = onnx.load, artifacts.read_manifest

    def counted(name, real):
        def call(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        return call

    with mock.patch("onnx.load", counted("onnx.load", load)), \
            mock.patch.object(artifacts, "read_manifest", counted("manifest", read_manifest)):
        yield counts


@pytest.mark.parametrize("backend", ["cpu", "onnxruntime", "openvino"])
def test_make_runner_reads_the_artifact_once(mini_artifacts, reads, backend):
    with make_runner(backend, mini_artifacts / "dense.onnx") as runner:
        runner.infer({"input": np.zeros((2, 1, 40, 48), np.float32)})
    assert reads == {"onnx.load": 1, "manifest": 1}


def test_an_opened_artifact_is_not_read_again(mini_artifacts, reads):
    artifact = Artifact.open(mini_artifacts / "classifier.onnx")
    assert (artifact.kind, artifact.form, artifact.precision, artifact.input_name) == ("onnx", "classifier", "fp32", "input")
    assert artifact.spec.size == (32, 32) and artifact.outputs == ("logits",)
    assert pickle.loads(pickle.dumps(artifact)) == artifact and Artifact.of(artifact) is artifact
    before = dict(reads)
    with make_runner("cpu", artifact) as runner:
        runner.infer({"input": np.zeros((1, 1, 32, 32), np.float32)})
    assert reads == before


def test_a_foreign_onnx_opens_with_no_metadata(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3, 8, 8])
    model = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    onnx.save(model, str(tmp_path / "relu.onnx"))
    artifact = Artifact.open(tmp_path / "relu.onnx")
    assert artifact.meta == {} and artifact.spec is None and artifact.precision == "fp32" and artifact.outputs == ("y",)


def test_eval_reads_each_artifact_once(mini_artifacts, tmp_path, reads):
    """`eval` opens each artifact once: selection, protocol checks and the runner share it."""
    from click.testing import CliRunner

    from vggdeploy.cli import cli
    from vggdeploy.mnist import write_image_folder

    data = write_image_folder(tmp_path / "digits", 6, sizes=(32, 48))
    before = dict(reads)
    result = CliRunner().invoke(cli, ["eval", str(mini_artifacts / "classifier.onnx"), str(mini_artifacts / "dense.onnx"),
                                      "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    assert reads["onnx.load"] - before["onnx.load"] == 2 and reads["manifest"] - before["manifest"] <= 2
