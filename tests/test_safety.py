"""The second hardening round (issue 20), with real files: nothing outside a command's declared
outputs is touched, every option is judged before work starts, tampered files are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from vggdeploy.mnist import split


def one_error_line(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below folder (links as links), to compare before and after a command."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        out[key] = b"-> " + os.readlink(p).encode() if p.is_symlink() else p.read_bytes() if p.is_file() else b"<dir>"
    return out


# ------------------------------------------------------------------ 1. nothing outside the outputs

@pytest.mark.parametrize("args", [["--int8", "--target", "cpu"], ["--int8", "--target", "tensorrt"], ["--fp16"]])
def test_quantize_writes_nothing_beside_its_source(run, mini_copy, tmp_path, args):
    """ONNX Runtime's quantizer writes NAME-inferred.onnx beside its input; the FP16 probe did too."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (mini_copy / "classifier-inferred.onnx").symlink_to(victim)
    (mini_copy / "dense-inferred.onnx").write_text("the user's own file")
    before = snapshot(mini_copy)
    for form in ("classifier", "dense"):
        code, _, err = run("quantize", mini_copy / f"{form}.onnx", *args)
        assert code == 0, err
    assert victim.read_text() == "keep me"
    after = snapshot(mini_copy)
    new = sorted(set(after) - set(before))
    assert all(".fp16." in n or ".int8-" in n for n in new if n != "manifest.json"), new
    assert {k: v for k, v in after.items() if k in before and k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}  # symlink and user file as they were


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", "a\nb", ".", "..", "", "-rf", "x" * 200])
def test_triton_names_are_plain_names(run, mini_artifacts, tmp_path, name):
    repo = tmp_path / "repo"
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text("name: 'other'")
    before = snapshot(tmp_path)
    code, _, err = run("triton", mini_artifacts / "dense.onnx", "--repo", repo, "--name", name, "--force")
    assert code == 2 and one_error_line(err) and ("is not a plain name" in err or "is empty" in err), err
    assert snapshot(tmp_path) == before


def test_triton_force_replaces_exactly_one_model(run, mini_artifacts, tmp_path):
    repo = tmp_path / "repo"
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text("name: 'other'")
    assert run("triton", mini_artifacts / "dense.onnx", "--repo", repo, "--name", "m")[0] == 0
    (repo / "m" / "stale.txt").write_text("from the old model")
    code, out, err = run("triton", mini_artifacts / "classifier.onnx", "--repo", repo, "--name", "m", "--force")
    assert code == 0, err
    assert sorted(p.name for p in repo.iterdir()) == ["m", "other"]  # no staging left, the sibling kept
    assert not (repo / "m" / "stale.txt").exists() and (repo / "other" / "config.pbtxt").read_text() == "name: 'other'"
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "link").symlink_to(outside, target_is_directory=True)
    code, _, err = run("triton", mini_artifacts / "dense.onnx", "--repo", repo, "--name", "link", "--force")
    assert code == 2 and "not a model folder (a symlink)" in err
    assert (repo / "link").is_symlink() and outside.is_dir()


# ------------------------------------------------------------------ 2. options judged before work

@pytest.fixture(scope="module")
def bad_calib(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    x = split()["train_x"][:16].copy()
    x[3, 0, 5, 5] = np.nan
    np.savez(d / "nan.npz", input=x)
    np.savez(d / "empty.npz")
    np.save(d / "zero.npy", np.zeros((0, 1, 32, 32), np.float32))
    return d


EXPORT_REFUSALS = [
    (["--int8", "--target", "cpu", "--calib", "/nonexistent"], "not found"),
    (["--int8", "--target", "cpu", "--calib", "{d}/nan.npz"], "NaN"),
    (["--int8", "--target", "cpu", "--calib", "{d}/empty.npz"], "holds no arrays"),
    (["--int8", "--target", "cpu", "--calib", "{d}/zero.npy"], "holds no inputs"),
    (["--int8", "--target", "cpu", "--keep-fp32", "bogus"], "node names exist only once the graph does"),
    (["--backend", "bogus"], "'bogus' is not one of"),
    (["--int8", "--target", "cpu", "--calib-count", "999999"], "fewer than the 999999 asked"),
    (["--int8", "--target", "cpu", "--calib-count", "0"], "give a positive count"),
    (["--int8", "--target", "cpu", "--calib-count", "-1"], "give a positive count"),
    (["--calib", "samples"], "--calib samples applies to --int8"),
    (["--target", "cpu"], "--target cpu applies to --int8"),
    (["--calib-method", "entropy"], "--calib-method entropy applies to --int8"),
    (["--io", "fp16"], "--io fp16 applies to --fp16"),
    (["--int8", "--target", "tensorrt", "--cpu-layout", "u8s7-tensor"], "--cpu-layout applies to --target cpu"),
    (["--taps", "relu1_1"], "--taps names the features form's outputs"),
    (["--seed", str(2**64)], "--seed"),
    (["--out", ""], "is empty"),
    (["--out", "{d}/x\udcff"], "is not valid UTF-8"),
    (["--target", "gpu", "--int8"], "'gpu' is not one of 'tensorrt', 'cpu'"),
]


@pytest.mark.parametrize("args,message", EXPORT_REFUSALS)
def test_export_judges_every_option_before_any_work(run, tmp_path, bad_calib, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = [a.format(d=bad_calib) for a in args]
    code, stdout, err = run("export", "vgg-mini", *([] if "--out" in argv else ["--out", out]), *argv)
    assert code == 2 and message in err and one_error_line(err), err
    assert not out.exists() and not (tmp_path / "engines").exists() and stdout == ""


@pytest.mark.parametrize("args,message", [
    (["--duration", "inf"], "--duration inf"), (["--duration", "nan"], "--duration nan"),
    (["--duration", "-1"], "--duration -1"), (["--batch", "0"], "--batch"), (["--backends", "bogus"], "'bogus' is not one of"),
])
def test_bench_refuses_bad_timing_options(run, mini_artifacts, args, message):
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", *args)
    assert code == 2 and message in err and one_error_line(err), err


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    from vggdeploy.mnist import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("digits") / "data", count=20)


@pytest.mark.parametrize("args,message", [
    (["--batch", "0"], "--batch 0"), (["--batch", "-1"], "--batch -1"),
    (["--protocol", "dense", "--scales", "99999"], "scale 99999 is above 4096"),
    (["--protocol", "multicrop", "--scales", "48", "--crops", "500"], "--crops 500"),
    (["--protocol", "centre"], "'centre' is not one of"),
])
def test_eval_refuses_bad_options(run, mini_artifacts, digits_folder, args, message):
    code, _, err = run("eval", mini_artifacts / "dense.onnx", "--data", digits_folder, *args)
    assert code == 2 and message in err and one_error_line(err), err


def test_eval_refuses_negative_labels_and_unreadable_folders(run, mini_artifacts, tmp_path):
    data = tmp_path / "flat"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.png").write_bytes(b"not a png")
    (data / "labels.txt").write_text("0\n-1\n2\n")
    code, _, err = run("eval", mini_artifacts / "classifier.onnx", "--data", data)
    assert code == 2 and "label -1 is negative" in err
    (data / "labels.txt").write_text("0\n1\n2\n")
    code, _, err = run("eval", mini_artifacts / "classifier.onnx", "--data", data)
    assert code == 2 and "none of the 3 images could be read" in err and one_error_line(err), err


# ------------------------------------------------------------------ 3. tampered files are one line

def set_meta(path: Path, key: str, value: str | None) -> None:
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if value is None:
        props.pop(key)
    else:
        props[key] = value
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))  # the graph only: its weights stay in the side file
    (path.parent / "manifest.json").unlink(missing_ok=True)  # its recorded size no longer holds


@pytest.mark.parametrize("key,value", [
    ("vggdeploy.precision", "int4-bogus"), ("vggdeploy.preprocessing", '"a string"'),
    ("vggdeploy.preprocessing", '{"std": [1], "crop": 32, "resize": 32}'), ("vggdeploy.num_classes", '"ten"'),
    ("vggdeploy.input_sizes", '{"fixed": []}'), ("vggdeploy.input_sizes", '"224"'), ("vggdeploy.config", "Z"),
    ("vggdeploy.variant", None), ("vggdeploy.batch_norm", '"maybe"'),
])
@pytest.mark.parametrize("verb", ["bench", "quantize", "eval", "triton"])
def test_tampered_metadata_is_one_line_naming_the_key(run, mini_copy, digits_folder, tmp_path, key, value, verb):
    path = mini_copy / "classifier.onnx"
    set_meta(path, key, value)
    args = {"bench": ["--runs", "1", "--no-eager"], "quantize": ["--fp16"], "eval": ["--data", digits_folder],
            "triton": ["--repo", tmp_path / "repo"]}[verb]
    code, _, err = run(verb, path, *args)
    assert code == 2 and key in err and one_error_line(err), err


@pytest.mark.parametrize("tamper,message", [
    (lambda m: m["artifacts"].__setitem__("classifier.onnx", "a string"), "entry is a str"),
    (lambda m: m["artifacts"]["classifier.onnx"].__setitem__("files", ["classifier.onnx"]), "'files' is a list"),
    (lambda m: m["artifacts"]["classifier.onnx"]["files"].__setitem__("/etc/passwd", {"sha256": "0" * 64, "bytes": 1}),
     "absolute or escaping paths are refused"),
    (lambda m: m["artifacts"]["classifier.onnx"]["files"].__setitem__("../x", {"sha256": "0" * 64, "bytes": 1}),
     "absolute or escaping paths are refused"),
    (lambda m: m["artifacts"]["classifier.onnx"]["files"]["classifier.onnx"].pop("sha256"), "lacks a sha256"),
])
@pytest.mark.parametrize("verb", ["verify", "bench"])
def test_tampered_manifest_is_one_line(run, mini_copy, tamper, message, verb):
    manifest = json.loads((mini_copy / "manifest.json").read_text())
    tamper(manifest)
    (mini_copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(verb, mini_copy, *(["--runs", "1", "--no-eager"] if verb == "bench" else []))
    assert code == 2 and message in err and one_error_line(err), err


def test_deeply_nested_json_is_one_line(run, mini_copy, tmp_path):
    (mini_copy / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run("verify", mini_copy)
    assert code == 2 and "nests too deeply" in err and one_error_line(err), err
    (tmp_path / "bench.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run("report", tmp_path / "bench.json")
    assert code == 2 and "nests too deeply" in err


def test_a_bench_run_lacking_keys_is_one_line(run, tmp_path):
    run_json = {"schema": "vggdeploy-bench/1", "results": [{"model": "x"}], "created": "now", "command": "x",
                "system": {"cpu": "x", "cores": 2, "isa": [], "versions": {}}, "gemm_gmacs": {}}
    (tmp_path / "bench.json").write_text(json.dumps(run_json))
    code, _, err = run("report", tmp_path / "bench.json")
    assert code == 2 and "result 0 has no valid 'artifact'" in err and one_error_line(err), err


def test_non_numeric_external_data_offset(run, mini_copy):
    path = mini_copy / "classifier.onnx"
    model = onnx.load(str(path), load_external_data=False)
    t = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    next(e for e in t.external_data if e.key == "offset").value = "abc"
    onnx.save(model, str(path))
    code, _, err = run("bench", path, "--runs", "1", "--no-eager")
    assert code == 2 and "non-numeric external-data offset" in err and one_error_line(err), err


def test_bad_checkpoints_are_one_line(run, tmp_path, mini):
    (tmp_path / "empty.pth").write_bytes(b"")
    code, _, err = run("export", tmp_path / "empty.pth", "--out", tmp_path / "o1")
    assert code == 2 and "cannot read checkpoint" in err and one_error_line(err), err
    sd = {k: v.clone() for k, v in mini.model.state_dict().items()}
    sd["features.0.weight"] = torch.randn(16, 4, 3, 3)
    torch.save(sd, tmp_path / "four.pth")
    code, _, err = run("export", tmp_path / "four.pth", "--out", tmp_path / "o2")
    assert code == 2 and "takes 4 input channels" in err and one_error_line(err), err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("method", ["entropy", "percentile", "minmax"])
@pytest.mark.parametrize("count", [1, 7, 9, 20])
def test_any_calibration_count_works_with_every_method(mini_copy, tmp_path, method, count):
    from vggdeploy.precision import to_int8

    np.savez(tmp_path / "c.npz", input=split()["train_x"][:count])
    path = to_int8(mini_copy / "classifier.onnx", tmp_path / "out", target="tensorrt", method=method,
                   calib=str(tmp_path / "c.npz"), verify=False)
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(meta["vggdeploy.calibration"])["count"] == count


def test_a_huge_staging_number_is_not_ours(run, mini_copy):
    odd = mini_copy / ".staging-99999999999999999999-x"
    odd.mkdir()
    code, out, err = run("clean", mini_copy)
    assert code == 0 and "removed 0" in out, err
    assert odd.is_dir()


# ------------------------------------------------------------------ 4. integrity

def test_verify_catches_a_swapped_side_file_of_the_same_size(run, mini_copy, tmp_path):
    from vggdeploy import export_onnx, load_model

    export_onnx(load_model("vgg-mini", "random", seed=1), ["classifier"], tmp_path / "other", verify=False)
    data = mini_copy / "classifier.onnx.data"
    other = (tmp_path / "other" / "classifier.onnx.data").read_bytes()
    assert len(other) == data.stat().st_size and other != data.read_bytes()
    data.write_bytes(other)
    code, out, err = run("verify", mini_copy)
    assert code == 1 and "classifier.onnx.data changed (sha256 differs" in out, out + err


# ------------------------------------------------------------------ 5. smaller

def test_inspect_escapes_control_characters(run, mini_copy):
    set_meta(mini_copy / "classifier.onnx", "vggdeploy.weights", "evil\x1b[2J\x1b[31mred")
    code, out, _ = run("inspect", mini_copy / "classifier.onnx")
    assert code == 0 and "\x1b" not in out and "evil\\x1b[2J" in out


def test_debug_keeps_the_exit_code():
    done = subprocess.run([sys.executable, "-m", "vggdeploy", "--debug", "export", "vgg-mini", "--target", "cpu"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" in done.stderr and "error: --target cpu applies to --int8" in done.stderr


def test_a_folder_named_like_a_variant_does_not_shadow_it(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vgg-mini").mkdir()
    code, out, err = run("export", "vgg-mini", "--out", tmp_path / "o", "--no-verify")
    assert code == 0, err


def test_bench_and_eval_take_the_openvino_ir(run, mini_copy, digits_folder):
    assert run("convert", mini_copy / "dense.onnx")[0] == 0
    code, out, err = run("bench", mini_copy / "dense.xml", "--runs", "1", "--no-eager", "--batch", "1")
    assert code == 0 and "openvino[CPU" in out, err
    code, out, err = run("eval", mini_copy / "dense.xml", "--data", digits_folder)
    assert code == 0 and "dense.xml" in out, err
    code, _, err = run("bench", mini_copy / "dense.xml", "--backend", "onnxruntime", "--runs", "1", "--no-eager")
    assert code == 3 and "OpenVINO IR runs on openvino" in err


def test_fp16_io_artifacts_bench_on_every_cpu_runtime(run, mini_copy):
    assert run("quantize", mini_copy / "classifier.onnx", "--fp16", "--io", "fp16")[0] == 0
    for backend in ("openvino", "onnxruntime"):
        code, out, err = run("bench", mini_copy / "classifier.fp16.onnx", "--backend", backend, "--runs", "1",
                             "--no-eager", "--batch", "1")
        assert code == 0, err
