"""Benchmark runs and their reports: every runtime beside eager PyTorch in one run, JSON, Markdown,
a self-contained HTML page checked in a real headless browser, and merging runs."""

import json
from pathlib import Path
import os
import re
import shutil
import subprocess
import sys

import pytest

from vggdeploy.isa import cpu_isa


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, mini_artifacts):
    from vggdeploy.cli import main

    out = tmp_path_factory.mktemp("run")
    code = main(["bench", str(mini_artifacts / "dense.onnx"), str(mini_artifacts / "classifier.onnx"),
                 "--backends", "onnxruntime,openvino", "--batch", "1,4", "--size", "32,64x96", "--runs", "3",
                 "--out", str(out)])
    assert code == 0
    return out


@pytest.mark.slow
def test_run_json_holds_every_runtime_beside_eager(bench_run):
    run = json.loads((bench_run / "bench.json").read_text())
    assert run["schema"] == "vggdeploy-bench/1" and not run["interrupted"]
    assert run["system"]["cores"] >= 1 and "onnxruntime" in run["system"]["versions"]
    assert run["gemm_gmacs"]["int8"] > 0 and run["gemm_gmacs"]["fp32"] > 0
    got = {(r["form"], r["backend"], r["size"], r["batch"]) for r in run["results"]}
    for backend in ("onnxruntime", "openvino", "eager"):
        for b in (1, 4):
            assert ("dense", backend, "32x32", b) in got and ("dense", backend, "64x96", b) in got
            assert ("classifier", backend, "32x32", b) in got
    assert ("classifier", "onnxruntime", "64x96", 1) not in got  # the classifier keeps its fixed size
    for r in run["results"]:
        assert r["p50_ms" if "p50_ms" in r else "median_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["floor_ms"] > 0 and r["vs_floor"] > 0 and r["peak_rss_mb"] > 10
        assert r["cpu_isa"] == cpu_isa().int8_class  # each row says what INT8 meant on the CPU that ran it
        assert r["speedup_vs_eager"] == 1.0 if r["backend"] == "eager" else r["speedup_vs_eager"] > 0
    # each runtime ran in its own process: their peaks differ (eager holds torch, ORT does not)
    assert len({r["peak_rss_mb"] for r in run["results"]}) > 1


@pytest.mark.slow
def test_markdown_and_html_reports(bench_run):
    md = (bench_run / "bench.md").read_text()
    assert "| dense | fp32 | openvino[CPU,throughput,f32] | streams 2, threads 2, requests 2 | 64x96 | 4 |" in md or \
        os.cpu_count() != 2  # OpenVINO's throughput hint: a stream per core
    assert "| dense | fp32 | onnxruntime[CPU] | threads auto, optimization all | 64x96 | 4 |" in md and "compute floor" in md
    assert "CPU INT8" in md
    html = (bench_run / "report.html").read_text()
    assert html.count("<img") == 3 and "data:image/png;base64," in html
    # nothing fetched from outside (the embedded PNGs' base64 may spell "http" by chance, so they are cut out)
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html.split("<body>")[1])
    assert "Accuracy parity" in html  # the artifact folder's manifest holds parity figures


@pytest.mark.slow
def test_eval_results_join_the_html_report(bench_run, mini_artifacts, run, tmp_path):
    from vggdeploy.mnist import write_image_folder

    data = write_image_folder(tmp_path / "digits", 20)
    code, _, err = run("eval", mini_artifacts / "dense.onnx", "--data", data, "--protocol", "dense", "--scales", "32,40",
                       "--out", bench_run)
    assert code == 0, err
    html = (bench_run / "report.html").read_text()
    assert "Accuracy under the paper's protocols" in html and "<td>dense</td><td>32,40</td>" in html


@pytest.mark.slow
def test_report_merges_runs_and_refuses_foreign_json(bench_run, tmp_path, run):
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((bench_run / "bench.json").read_text())
    data["system"]["cpu"] = "another machine"
    (other / "bench.json").write_text(json.dumps(data))
    code, out, _ = run("report", bench_run, other, "--out", tmp_path / "merged")
    assert code == 0
    md = (tmp_path / "merged" / "bench.md").read_text()
    assert "## Run 2" in md and "another machine" in md
    (tmp_path / "foreign.json").write_text('{"results": []}')
    (tmp_path / "broken.json").write_text("{")
    for bad, message in (("foreign.json", "not a vggdeploy benchmark"), ("broken.json", "not JSON"),
                         ("missing.json", "not found")):
        code, _, err = run("report", tmp_path / bad)
        assert code == 2 and message in err


@pytest.mark.parametrize("args, message", [
    (["--backends", "tpu"], "'tpu' is not one of"), (["--size", "16"], "too small"),
    (["--out", "/proc/nope"], "cannot write"), (["--duration", "-1"], "positive duration"),
])
def test_bench_bad_input(mini_artifacts, run, args, message):
    code, _, err = run("bench", mini_artifacts / "dense.onnx", "--runs", "1", "--batch", "1", *args)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_unavailable_backend_is_skipped_with_a_line_or_strict_exit_3(mini_artifacts, run):
    code, out, err = run("bench", mini_artifacts / "classifier.onnx", "--backends", "onnxruntime,torch-cuda",
                         "--batch", "1", "--runs", "1", "--no-eager")
    assert code == 0 and "skipped classifier.onnx on torch-cuda" in err and "onnxruntime" in out
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--backends", "torch-cuda", "--batch", "1",
                       "--runs", "1", "--no-eager", "--strict")
    assert code == 3


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (CI installs it)")
def test_report_renders_in_a_real_browser(bench_run, tmp_path):
    import numpy as np
    from PIL import Image

    page = (bench_run / "report.html").resolve()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and dom.stdout.count("<img") == 3 and "<table>" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", *flags, f"--screenshot={shot}", "--window-size=1280,2200", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2200, 1280) and pixels.std() > 20  # plots and tables drawn, not a blank page
    # the wide results table scrolls inside its own box: the page itself is no wider than the window
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>document.body.setAttribute('data-fits', "
                                              "document.documentElement.scrollWidth <= window.innerWidth)</script></body>"))
    dom = subprocess.run(["chromium", *flags, "--window-size=1280,900", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert 'data-fits="true"' in dom.stdout and "class=\"scroll\"" in dom.stdout


def test_every_latency_series_is_drawn_distinctly_and_noisy_ratios_are_marked():
    """Series that share points stay visible (colour, marker, line style and fill differ from the
    next), and a speed-up resting on a NOISY row, its own or eager's, is marked as such."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vggdeploy.report import _distinct_styles, _noisy_ratio

    fig, ax = plt.subplots()
    _distinct_styles(ax, 6)
    lines = [ax.plot([1, 2], [1, 2])[0] for _ in range(6)]  # six series on the very same points
    styles = [(ln.get_color(), ln.get_marker(), ln.get_linestyle(), str(ln.get_markerfacecolor())) for ln in lines]
    assert len(set(styles)) == 6 and all(a[1:] != b[1:] for a, b in zip(styles, styles[1:]))
    plt.close(fig)
    row = {"model": "m", "form": "classifier", "size": "32x32", "batch": 1, "timing": "wall-clock", "backend": "onnxruntime",
           "median_ms": 1.0, "std_ms": 0.01}
    quiet_eager, noisy_eager = {**row, "backend": "eager", "std_ms": 0.1}, {**row, "backend": "eager", "std_ms": 0.9}
    assert not _noisy_ratio(row, [row, quiet_eager]) and _noisy_ratio(row, [row, noisy_eager])
    assert _noisy_ratio({**row, "std_ms": 0.5}, [quiet_eager])


@pytest.mark.slow
def test_serving_load_reports_throughput_per_requests_in_flight(mini_artifacts, run, tmp_path):
    code, out, err = run("bench", mini_artifacts / "classifier.onnx", "--backends", "onnxruntime,openvino", "--batch", "2",
                         "--concurrency", "1,3", "--runs", "6", "--no-eager", "--out", tmp_path, "--json")
    assert code == 0, err
    rows = json.loads(out)
    serving = {(r["backend"], r["concurrency"]): r for r in rows if r["timing"].startswith("serving")}
    assert set(serving) == {("onnxruntime", 1), ("onnxruntime", 3), ("openvino", 1), ("openvino", 3)}
    assert all(r["runs"] >= 6 and r["images_per_s"] > 0 and r["p99_ms"] >= r["median_ms"] for r in serving.values())
    assert "Throughput vs requests in flight" in (tmp_path / "report.html").read_text()


def test_a_variant_name_stands_for_its_artifact_folder(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run("bench", "vgg-mini", "--runs", "1")
    assert code == 2 and "vggdeploy export vgg-mini" in err
    assert run("export", "vgg-mini", "--no-verify")[0] == 0
    code, out, err = run("bench", "vgg-mini", "--runs", "2", "--batch", "1", "--no-eager")
    assert code == 0 and "classifier" in out, err


@pytest.mark.slow
def test_rows_say_what_ran_and_how_steady(bench_run, mini_artifacts, run, tmp_path):
    rows = json.loads((bench_run / "bench.json").read_text())["results"]
    eager = [r for r in rows if r["backend"] == "eager"]
    assert eager and all(r["artifact"].startswith("eager:") and r["artifact_mb"] is None for r in eager)
    assert "std/p50" in (bench_run / "bench.md").read_text()
    # the settings each runtime ran with, as it reports them once loaded
    ov = {r["batch"]: r["config"] for r in rows if r["backend"] == "openvino" and r["form"] == "classifier"}
    assert ov[1]["hint"] == "latency" and ov[1]["streams"] == 1 and ov[4]["hint"] == "throughput"
    assert ov[4]["streams"] >= 1 and ov[4]["threads"] >= 1 and ov[4]["precision"] == "f32"
    assert all(r["config"]["threads"] == torch_threads() for r in eager)
    assert {r["config"]["optimization"] for r in rows if r["backend"] == "onnxruntime"} == {"all"}
    code, _, err = run("bench", mini_artifacts / "features.onnx", "--backends", "onnxruntime", "--batch", "1",
                       "--runs", "2", "--out", tmp_path / "f")
    assert code == 0, err
    sizes = {r["size"] for r in json.loads((tmp_path / "f" / "bench.json").read_text())["results"]}
    assert sizes == {"32x32"}  # the variant's own input size, not the features form's 16x16 minimum


def test_a_series_names_the_settings_that_differ_by_batch():
    from vggdeploy.report import _series_runtime

    rows = [{"runtime": "openvino[CPU,latency,f32]", "batch": 1, "backend": "cpu"},
            {"runtime": "openvino[CPU,throughput,f32]", "batch": 8, "backend": "cpu"}]
    assert _series_runtime(rows) == "openvino[CPU,f32] (latency b1, throughput b8)"
    assert _series_runtime(rows[:1]) == "openvino[CPU,latency,f32]"


def torch_threads() -> int:
    """The benchmark child's torch thread count (its default: one per core torch sees)."""
    return int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                              capture_output=True, text=True, check=True).stdout)


@pytest.mark.slow
def test_an_onnx_without_metadata_is_benched_like_trtexec_would(run, tmp_path):
    """`bench` refused an ONNX with no vggdeploy metadata (a Keras export): now timed on random data at
    the graph's shape (or --shape for its free dims), beside vggdeploy artifacts, with no eager row and why."""
    import onnx
    from user_models import foreign_onnx

    keras = foreign_onnx(tmp_path / "keras.onnx", shape=(2, 56, 56, 3))  # NHWC
    graph = onnx.load(keras)
    for d in graph.graph.input[0].type.tensor_type.shape.dim[1:3]:
        d.dim_param = "free"  # H and W left free, as exporters often do
    onnx.save(graph, keras)
    code, _, err = run("bench", keras, "--runs", "2", "--batch", "1")
    assert code == 2 and "is ?x?x3 after the batch" in err and "--shape" in err
    code, _, err = run("bench", keras, "--shape", "3x56x56", "--runs", "2", "--batch", "1")
    assert code == 2 and "--shape 3x56x56 does not fit keras.onnx's input ?x?x3" in err
    code, out, err = run("bench", keras, "--shape", "56x56x3", "--runs", "2", "--batch", "1,2", "--backends", "onnxruntime,openvino",
                         "--out", tmp_path / "run")
    assert code == 0, err
    assert "no eager row (it has no vggdeploy metadata" in err and "Traceback" not in err
    rows = json.loads((tmp_path / "run" / "bench.json").read_text())["results"]
    assert {(r["runtime"].split("[")[0], r["batch"]) for r in rows} == {(b, n) for b in ("onnxruntime", "openvino") for n in (1, 2)}
    assert all(r["size"] == "56x56" and r["floor_ms"] is None and r["images_per_s"] > 0 for r in rows)
    assert (tmp_path / "run" / "report.html").stat().st_size > 0
    assert run("report", tmp_path / "run")[0] == 0  # the run reads back


def test_shape_is_for_onnx_without_metadata(mini_artifacts, run):
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--shape", "1x32x32", "--runs", "1", "--batch", "1")
    assert code == 2 and "--shape applies to an ONNX without vggdeploy metadata" in err


@pytest.mark.slow
def test_profile_layers_sums_each_runtimes_profiler_by_layer_type(mini_artifacts, run, tmp_path):
    """`bench --profile-layers`: OpenVINO's performance counters and ONNX Runtime's profiler, by layer type,
    in bench.json, bench.md and the report; the profiler's files left nowhere."""
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    code, _, err = run("bench", mini_artifacts / "classifier.onnx", "--backends", "onnxruntime,openvino", "--runs", "3",
                       "--batch", "1,2", "--profile-layers", "--out", tmp_path / "run")
    assert code == 0, err
    rows = json.loads((tmp_path / "run" / "bench.json").read_text())["results"]
    profiled = {(r["runtime"].split("[")[0], r["batch"]): r["layers"] for r in rows if "layers" in r}
    assert set(profiled) == {(b, n) for b in ("onnxruntime", "openvino") for n in (1, 2)}  # eager has no profiler
    assert "Conv" in profiled[("onnxruntime", 1)] and "Convolution (F32)" in profiled[("openvino", 1)]
    for layers in profiled.values():  # each layer type's time, summed, is about the batch's latency (not zero, not x runs)
        assert 0 < sum(layers.values()) < 50 and list(layers.values()) == sorted(layers.values(), reverse=True)
    assert "Time per layer type" in (tmp_path / "run" / "bench.md").read_text()
    assert "Time per layer type (--profile-layers)" in (tmp_path / "run" / "report.html").read_text()
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if "ort-profile" in n]
    assert not list(Path.cwd().glob("onnxruntime_profile*.json"))
