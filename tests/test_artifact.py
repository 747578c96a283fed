"""An artifact opened once (issue 17): make_runner reads an ONNX graph's header and its folder's
manifest once, whatever the backend; an Artifact is frozen, picklable and accepted wherever a path is."""

import contextlib
import pickle
from unittest import mock

import numpy as np
import onnx
import pytest

from vggdeploy import make_runner
from vggdeploy.artifact import Artifact


@pytest.fixture
def reads():
    """Counts of ONNX parses (onnx.load, onnx.load_model) and manifest reads while the test runs,
    counted at the source: every name they are bound to, in onnx and in every vggdeploy module that
    imported them (a module that bound the name at import would otherwise escape the count)."""
    import sys

    import vggdeploy.store as store

    counts = {"onnx.load": 0, "manifest": 0}
    originals = {onnx.load_model: "onnx.load", store.read_manifest: "manifest"}

    def counted(name, real):
        def call(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        call.__wrapped__ = real
        return call

    wrappers = [(real, counted(name, real)) for real, name in originals.items()]
    with contextlib.ExitStack() as stack:  # modules imported later bind the wrappers themselves
        for module in [onnx] + [m for n, m in list(sys.modules.items()) if n.startswith("vggdeploy") and m]:
            for attr, value in list(vars(module).items()):
                for real, wrapper in wrappers:  # a module imported under an earlier count holds its wrapper
                    if value is real or getattr(value, "__wrapped__", None) is real:
                        stack.enter_context(mock.patch.object(module, attr, wrapper))
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
    assert artifact.meta is None and artifact.spec is None and artifact.precision == "fp32" and artifact.outputs == ("y",)


# per verb: its arguments, and the most graph parses and manifest reads it may make
VERBS = {
    "eval": (lambda d, data, tmp: ["eval", d / "classifier.onnx", d / "dense.onnx", "--data", data], 2, 1),
    "extract": (lambda d, data, tmp: ["extract", d / "features.onnx", "--data", data, "--out", tmp / "x"], 1, 1),
    "bench": (lambda d, data, tmp: ["bench", d / "classifier.onnx", "--duration", "0.1", "--batch", "1", "--no-eager"], 1, 1),
    "verify": (lambda d, data, tmp: ["verify", d], 3, 1),  # three ONNX in the folder
    "triton": (lambda d, data, tmp: ["triton", d / "classifier.onnx", "--repo", tmp / "repo"], 1, 1),
    # the source, then the FP16 file before it is published; the second manifest read is the locked update
    # the source's manifest, the output folder's judged before the work (publish last: issue 31), and the
    # read-modify-write under the lock when publishing
    "quantize": (lambda d, data, tmp: ["quantize", d / "classifier.onnx", "--fp16"], 2, 3),
    # the output folder judged before the work, then the locked update when publishing; the parse is the parity check's
    "export": (lambda d, data, tmp: ["export", "vgg-mini", "--out", tmp / "e"], 1, 2),
    "convert": (lambda d, data, tmp: ["convert", d / "classifier.onnx"], 1, 2),
}


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_reads_each_artifact_once(mini_copy, tmp_path, reads, verb):
    """Each verb parses each artifact's graph once and its folder's manifest once (issue 17)."""
    from click.testing import CliRunner

    from vggdeploy.cli import cli
    from vggdeploy.mnist import write_image_folder

    if verb == "triton":
        pytest.importorskip("tritonclient", reason="the triton extra is not installed")
    args, parses, manifests = VERBS[verb]
    data = write_image_folder(tmp_path / "digits", 4, sizes=(32, 48))
    before = dict(reads)
    result = CliRunner().invoke(cli, [str(a) for a in args(mini_copy, data, tmp_path)])
    assert result.exit_code == 0, result.output
    assert (reads["onnx.load"] - before["onnx.load"], reads["manifest"] - before["manifest"]) == (parses, manifests), reads


def test_a_build_plan_reads_its_onnx_once(mini_artifacts, tmp_path, reads):
    from vggdeploy.engine import plan_build

    plan = plan_build(mini_artifacts / "dense.onnx", out=tmp_path / "dense.plan")
    # the source's manifest, and the output folder's judged before the build (a damaged one refused then)
    assert reads == {"onnx.load": 1, "manifest": 2} and plan.meta.form == "dense" and plan.profiles


def test_metadata_reads_back_what_it_writes_and_old_artifacts_still_read(mini_artifacts):
    """ArtifactMeta writes the props export wrote before it existed, byte for byte; an artifact from
    before the optional keys (precision, head, taps, class names) reads with their defaults."""
    from vggdeploy.metadata import ArtifactMeta

    for form in ("features", "dense"):
        graph = onnx.load(str(mini_artifacts / f"{form}.onnx"), load_external_data=False)
        props = {p.key: p.value for p in graph.metadata_props}
        meta = ArtifactMeta.from_props(props)
        assert meta.to_props() == {k: v for k, v in props.items() if k.startswith("vggdeploy.")}
        assert ArtifactMeta.from_props(meta.to_props()) == meta
        optional = ("vggdeploy.precision", "vggdeploy.head", "vggdeploy.taps", "vggdeploy.class_names", "vggdeploy.version")
        old = ArtifactMeta.from_props({k: v for k, v in props.items() if k not in optional})
        assert old.precision == "fp32" and old.head is None and old.class_names is None
        if form == "dense":  # FC1's window, read off the dense form's sizes when the head is not recorded
            assert old.to_variant().pool == meta.to_variant().pool
    assert ArtifactMeta.from_props({"producer": "someone else"}) is None


def test_metadata_keys_are_written_in_one_place():
    """Every `vggdeploy.*` metadata key string lives in vggdeploy/metadata.py (issue 17)."""
    import re
    from pathlib import Path

    import vggdeploy

    package = Path(vggdeploy.__file__).parent
    raw = {f.relative_to(package).as_posix(): re.findall(r"[\"']vggdeploy\.[a-z_0-9]+[\"']", f.read_text())
           for f in package.rglob("*.py") if f.name != "metadata.py"}
    assert {name: keys for name, keys in raw.items() if keys} == {}


def test_reads_are_counted_whatever_name_they_were_imported_under(mini_artifacts, reads):
    """The count sees a manifest read through the typed readers a module bound at import (benchrun's
    `entries`, the store's `entry_of`), and a parse through onnx.load_model as well as onnx.load."""
    from vggdeploy import benchrun, store

    benchrun.entries(mini_artifacts)
    store.entry_of(mini_artifacts / "dense.onnx")
    onnx.load_model(str(mini_artifacts / "dense.onnx"), load_external_data=False)
    assert reads == {"onnx.load": 1, "manifest": 2}


# the last commit before the typed ManifestEntry, Preprocessing and WeightsSource (issue 29)
PREVIOUS_RELEASE = "e77d08e"


@pytest.mark.slow
def test_artifacts_made_by_the_previous_release_still_read(run, tmp_path):
    """The previous release's package, taken from git, exports every form with FP16 and INT8; this
    release then verifies, opens, inspects, re-quantizes and predicts with what it wrote."""
    import io
    import os
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    from vggdeploy.manifest import ManifestEntry
    from vggdeploy.preprocessing import Preprocessing
    from vggdeploy.sources import WeightsSource

    repo = Path(__file__).resolve().parents[1]
    has = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"], capture_output=True)
    if has.returncode:
        pytest.skip(f"this checkout has no git history back to {PREVIOUS_RELEASE} (a shallow clone)")
    package = subprocess.run(["git", "-C", str(repo), "archive", PREVIOUS_RELEASE, "vggdeploy"], capture_output=True, check=True)
    old = tmp_path / "previous"
    old.mkdir()
    tarfile.open(fileobj=io.BytesIO(package.stdout)).extractall(old, filter="data")
    out = tmp_path / "made-before"
    made = subprocess.run([sys.executable, "-m", "vggdeploy", "-q", "export", "vgg-mini", "--form", "all", "--fp16",
                           "--int8", "--target", "cpu", "--out", str(out)], cwd=old, capture_output=True, text=True,
                          env={**os.environ, "VGGDEPLOY_CACHE": str(tmp_path / "cache")}, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]

    assert run("verify", out)[0] == 0
    for path in sorted(out.glob("*.onnx")):
        art = Artifact.open(path)
        assert isinstance(art.entry, ManifestEntry) and art.entry.kind == "onnx" and art.entry.form == art.meta.form
        assert isinstance(art.meta.preprocessing, Preprocessing) and art.meta.preprocessing.crop == 32
        assert WeightsSource.parse(art.meta.weights).kind == "bundled"
        assert art.entry.get("parity") and art.entry["files"]
    assert run("inspect", out / "classifier.int8-cpu.onnx")[0] == 0
    assert run("quantize", out / "dense.onnx", "--fp16", "--force")[0] == 0  # derived anew from an old FP32 artifact
    import skimage.data
    import skimage.io

    skimage.io.imsave(tmp_path / "coffee.png", skimage.data.coffee())
    code, stdout, err = run("predict", out / "classifier.int8-cpu.onnx", tmp_path / "coffee.png", "--json")
    assert code == 0 and "coffee.png" in stdout, err


def test_typed_records_read_back_what_they_wrote(mini_artifacts):
    """A manifest entry, a preprocessing table and a weights string each read into their type and
    written back unchanged (manifests and metadata keep their JSON)."""
    import json

    from vggdeploy.manifest import ManifestEntry
    from vggdeploy.preprocessing import Preprocessing
    from vggdeploy.sources import WeightsSource

    for name, record in json.loads((mini_artifacts / "manifest.json").read_text())["artifacts"].items():
        entry = ManifestEntry.from_json(record)
        assert entry.to_json() == record and entry.kind == record["kind"] and entry.get("parity") == record.get("parity")
        assert ("layer_errors" in entry) == bool(record.get("layer_errors"))
    props = {p.key: p.value for p in onnx.load(str(mini_artifacts / "classifier.onnx"), load_external_data=False).metadata_props}
    table = json.loads(props["vggdeploy.preprocessing"])
    assert Preprocessing.from_table(table).to_table() == table
    for text in ("imagenet", "random:7", "bundled:vgg-mini-mnist.pth", "/data/ckpt/epoch=3.ckpt", "adopted:keras.onnx"):
        assert str(WeightsSource.parse(text)) == text
    assert WeightsSource.parse("random:7").seed == 7 and not WeightsSource.parse("adopted:k.onnx").rebuildable
