"""The `vggdeploy` command: parses, calls the library, prints. No logic the library lacks."""

from __future__ import annotations

import errno
import json
import os
import logging
import sys
import traceback
from pathlib import Path

import click

from .adoption import CHANNELS, LAYOUTS as INPUT_LAYOUTS, OUTPUTS, PIXELS
from .backends import BACKENDS
from .engine import HARDWARE_COMPAT
from .errors import CLI_SPELLING, BadInput, OutOfMemory, VggDeployError, out_of_memory, printable
from .limits import check_address_space
from . import signals
from .signals import Terminated
from .evaluate import PROTOCOLS
from .extraction import POOLS
from .forms import FORMS
from .cli_options import (OutPath, choice_list, parse_dims, cluster_options, echo_artifacts, json_option, parse_floats, parse_ints,
                          parse_size, precision_options, pure_stdout, split_list)
from .triton import ACCELERATORS, KINDS, PLATFORMS

log = logging.getLogger("vggdeploy")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="vggdeploy")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Export, optimise, check and benchmark VGG networks for deployment."""
    ctx.obj = {"debug": debug}
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False  # ONNX Runtime's quantizer configures the root logger
    log.setLevel(logging.WARNING if quiet else logging.INFO)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """Every VGG variant: layers, parameters, GFLOPs at 224², published accuracy."""
    from .tables import table
    from .variants import variant_rows

    rows = variant_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ["name", "config", "BN", "layers", "params (M)", "input", "GMACs", "GFLOPs", "top-1", "top-5", "weights"]
    click.echo(table(headers, [list(r.values()) for r in rows]))
    click.echo("\nGMACs/GFLOPs at the input size shown (224² for ImageNet VGGs; GFLOPs = 2 x MACs). "
               "top-1/top-5: torchvision's published ImageNet-1K accuracy for the weights 'imagenet' loads.")


@cli.command()
@click.argument("model")
@click.option("--form", "forms", default="classifier", show_default=True, callback=choice_list(FORMS, ("all",)),
              help="classifier, dense, features, comma-separated, or 'all'.")
@click.option("--weights", help="imagenet (default for torchvision names), bundled (vgg-mini), random, or a checkpoint PATH.")
@click.option("--seed", default=0, show_default=True, help="Seed for --weights random.")
@click.option("--prefix", help="Module prefix of the VGG in a checkpoint holding several (e.g. 'model_ema.'); "
                               "default: found from the tensors.")
@click.option("--size", help="Classifier input size: N or HxW (default: the variant's, 224).")
@click.option("--taps", help="Features form outputs, comma-separated (default: last ReLU of each stage).")
@click.option("--opset", default=18, show_default=True, help="ONNX opset (18-23).")
@click.option("--out", "out_dir", type=OutPath(), help="Artifact folder (default engines/NAME).")
@click.option("--force", is_flag=True, help="Overwrite existing artifacts.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against eager PyTorch.")
@click.option("--engine", is_flag=True, help="Also build TensorRT engines (FP16/INT8-tensorrt if asked, else FP32) "
                                             "with the default profiles; needs a GPU host.")
@precision_options
@json_option
def export(model, forms, weights, seed, prefix, size, taps, opset, out_dir, force, no_verify, engine, as_json,
           **precision) -> None:
    """Export MODEL (a variant name or a checkpoint) to ONNX, checked against eager PyTorch."""
    from .filetypes import check_model_arg
    from .pipeline import ExportOptions, PrecisionPlan

    check_model_arg(model, weights)
    options = ExportOptions(tuple(FORMS) if forms == "all" else tuple(split_list(forms) or ()),
                            PrecisionPlan.from_flags(**precision), parse_size(size), tuple(split_list(taps) or ()) or None,
                            opset, engine)
    if not 0 <= seed < 2**63:
        raise BadInput(f"--seed {seed}: give a whole number from 0 to 2**63 - 1")
    from .progress import step

    with step(f"loading {model}"):
        from .weights import load_model  # torch: only once every option above is judged

        loaded = load_model(model, weights, seed, prefix)  # before the exporter's imports: a wrong checkpoint goes fast
        from .pipeline import deploy
    if loaded.inferred:
        log.info(loaded.inferred)
    out_dir = out_dir or Path("engines") / loaded.folder_name
    echo_artifacts(deploy(loaded, list(options.forms), out_dir, options=options, verify=not no_verify, force=force,
                          release_model=True), as_json)


@cli.command()
@click.argument("onnx_path", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=OutPath(), help="Artifact folder (default engines/NAME).")
@click.option("--name", help="The model's name (default: the file's stem).")
@click.option("--layout", type=click.Choice(INPUT_LAYOUTS), help="The input's layout (default: read off its shape).")
@click.option("--channels", type=click.Choice(CHANNELS), default="RGB", show_default=True,
              help="The channel order the model was trained on.")
@click.option("--pixels", type=click.Choice(PIXELS), default="0-1", show_default=True,
              help="The pixel range its normalisation starts from.")
@click.option("--mean", help="Per-channel mean, in the model's channel order and pixel range (default 0).")
@click.option("--std", help="Per-channel std, likewise (default 1).")
@click.option("--size", help="Input size HxW, for a graph that leaves height and width free.")
@click.option("--resize", type=int, help="Shorter side before the centre crop (default: crop x 256/224).")
@click.option("--resize-only", is_flag=True, help="The model's recipe is a plain resize to the input size, no crop.")
@click.option("--output", "output_kind", type=click.Choice(OUTPUTS), default="logits", show_default=True,
              help="What the graph's output is: logits, or probabilities (it ends in softmax; named so, not softmaxed again).")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path), help="Class names, one per line.")
@click.option("--force", is_flag=True, help="Overwrite an existing artifact.")
@json_option
def adopt(onnx_path, out_dir, name, layout, channels, pixels, mean, std, size, resize, resize_only, output_kind, classes_file,
          force, as_json) -> None:
    """Make a VGG ONNX exported elsewhere (Keras/tf2onnx, torch.onnx, a model zoo) a vggdeploy artifact:
    a copy with vggdeploy's input (NCHW, RGB, normalised as stated), output `logits`, metadata and a
    manifest entry, checked against the original. Every verb then takes it."""
    from .filetypes import require_onnx

    require_onnx(onnx_path)
    from .adoption import AdoptOptions, adopt as adopt_onnx

    names = None
    if classes_file is not None:
        try:
            names = tuple(line.strip() for line in classes_file.read_text().splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"cannot read --classes {classes_file}: {getattr(e, 'strerror', None) or e}") from None
    options = AdoptOptions(layout, channels, pixels, parse_floats(mean, "--mean"), parse_floats(std, "--std"),
                           parse_size(size), resize, names, name, resize_only, output_kind)
    echo_artifacts([adopt_onnx(onnx_path, out_dir or Path("engines") / (name or onnx_path.stem), options, force=force)],
                   as_json)


@cli.command()
@click.argument("onnx_path", type=click.Path(path_type=Path))
@click.option("--profile", "profiles", multiple=True,
              help="NAME:MIN:OPT:MAX, shapes NxCxHxW (repeat for several profiles). Default: from the artifact's form.")
@click.option("--timing-cache", type=click.Path(path_type=Path), help="TensorRT timing cache file (read and updated).")
@click.option("--workspace", help="Workspace memory pool limit, e.g. 4G or 512M.")
@click.option("--opt-level", type=int, help="Builder optimisation level 0-5 (TensorRT's default 3).")
@click.option("--hardware-compat", default="none", show_default=True, type=click.Choice(list(HARDWARE_COMPAT)), help="none or ampere+ (one engine for Ampere and newer).")
@click.option("--out", type=OutPath(), help="Engine file (default FORM.PRECISION.plan beside the ONNX).")
@click.option("--force", is_flag=True, help="Overwrite an existing engine.")
@json_option
def build(onnx_path: Path, profiles, timing_cache, workspace, opt_level, hardware_compat, out, force, as_json) -> None:
    """Build a strongly typed TensorRT engine from an FP32, FP16 or INT8-tensorrt ONNX (needs a GPU)."""
    from .engine import build_engines

    echo_artifacts(build_engines([onnx_path], force=force, profiles=list(profiles), timing_cache=timing_cache,
                                 workspace=workspace, opt_level=opt_level, hardware_compat=hardware_compat, out=out), as_json)


@cli.command()
@click.argument("onnx_path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite existing artifacts.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against the FP32 ONNX.")
@precision_options
@json_option
def quantize(onnx_path: Path, force, no_verify, as_json, **precision) -> None:
    """FP16 and/or INT8 artifacts from an existing FP32 ONNX (written beside it, compared with it)."""
    from .filetypes import require_onnx

    require_onnx(onnx_path)
    from .pipeline import PrecisionPlan, derive

    plan = PrecisionPlan.from_flags(**precision)
    if plan.empty:
        raise BadInput("nothing to do", hint="pass --fp16 and/or --int8 --target tensorrt|cpu")
    echo_artifacts(derive([onnx_path], plan, verify=not no_verify, force=force), as_json)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check-qdq", type=click.Choice(["tensorrt"]), help="Check the Q/DQ layout for a target; exit 1 on violations.")
def inspect(path: Path, as_json: bool, check_qdq: str | None) -> None:
    """Inputs, outputs, dynamic axes, metadata, op counts and parameters of an ONNX file."""
    from .errors import CheckFailed
    from .inspect import describe_text, inspect_onnx
    from .qdq import artifact_qdq_violations

    if check_qdq:
        problems, kept = artifact_qdq_violations(path)
        for line in problems:
            click.echo(f"violation: {line}")
        if problems:
            raise CheckFailed(f"{path.name}: {len(problems)} Q/DQ rule violation(s) for {check_qdq}")
        click.echo(f"{path.name}: Q/DQ layout follows TensorRT's rules" + (f" ({len(kept)} node(s) kept in float)" if kept else ""))
        return

    info = inspect_onnx(path)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for line in describe_text(info):
        click.echo(printable(line))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backends", "--backend", "backends", default="cpu", show_default=True, callback=choice_list(BACKENDS),
              help="Comma-separated: cpu (fastest per precision), onnxruntime, openvino, tensorrt (.plan engines), "
                   "onnxruntime-cuda, onnxruntime-tensorrt, torch-cuda.")
@click.option("--batch", default="1,8", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--size", help="Input sizes for the dense and features forms, comma-separated: 224,384,512x640 "
                             "(default: the artifact's fixed or minimum size).")
@click.option("--shape", help="An ONNX without vggdeploy metadata: its input's dims after the batch, e.g. 3x224x224 "
                              "(default: the graph's; timed on random data, with no eager row).")
@click.option("--runs", default=10, show_default=True, help="Timed runs per batch size.")
@click.option("--duration", type=float, help="Seconds of timed runs per batch size (instead of --runs).")
@click.option("--hint", type=click.Choice(["latency", "throughput", "auto"]), default="auto", show_default=True,
              help="OpenVINO performance hint (auto: latency for batch 1, throughput above).")
@click.option("--concurrency", help="Also a server's load: N requests in flight, comma-separated (e.g. 1,4,16): "
                                   "images/s and p99 at each (OpenVINO's async queue, threads for ONNX Runtime).")
@click.option("--no-eager", is_flag=True, help="Skip the eager PyTorch baseline.")
@click.option("--profile-layers", is_flag=True, help="Also ms per layer type from each runtime's profiler (OpenVINO's "
                                                    "performance counters, ONNX Runtime's profiler, TensorRT's IProfiler), "
                                                    "in a separate run; drawn in the report.")
@click.option("--peers", metavar="LIST", help="Also time what a PyTorch user would pick instead, from the same weights: "
                                              "torch-compile (inductor, freezing), pt2e (torchao's X86InductorQuantizer INT8, "
                                              "pip install 'vggdeploy[peers]'), torch-compile-cuda (FP16 autocast; added "
                                              "with torch-compile on GPU runs).")
@click.option("--strict", is_flag=True, help="Exit 3 when a backend can't run here, instead of skipping it.")
@click.option("--out", "out_dir", type=OutPath(), help="Run folder for bench.json, bench.md, report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def bench(paths, backends, batch, size, shape, runs, duration, hint, concurrency, no_eager, profile_layers, peers, strict,
          out_dir, as_json) -> None:
    """Latency and throughput of artifacts (ONNX files, .plan engines, or artifact folders) on each
    runtime, beside eager PyTorch from the same weights, each runtime in a process of its own.
    GPU runtimes are timed with CUDA events, with and without host<->device copies."""
    from .store import require_writable
    from .benchrun import run_bench
    from .report import bench_table
    from .report_files import write_reports

    sizes = [parse_size(t) for t in split_list(size)] if size else None
    if out_dir:
        require_writable(out_dir)  # before the long run, not after it
    run = run_bench(list(paths), split_list(backends) or [], parse_ints(batch, "--batch"), sizes, runs, duration,
                    eager=not no_eager, strict=strict, hint=hint, peers=split_list(peers) if peers else None,
                    concurrency=parse_ints(concurrency, "--concurrency") if concurrency else None,
                    shape=parse_dims(shape, "--shape") if shape else None, profile_layers=profile_layers)
    if out_dir:
        for f in write_reports([run], out_dir):
            log.info("wrote %s", f)
    if as_json:
        click.echo(json.dumps(run["results"], indent=2))
    else:
        click.echo(bench_table(run))
    if run["interrupted"]:  # what was measured is written and shown; the exit still says the run was cut
        raise Terminated() if run["interrupted_by"] == "SIGTERM" else KeyboardInterrupt()


@cli.command("eval")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="An ImageFolder tree (a folder per class) or images with a labels.txt.")
@click.option("--labels", type=click.Path(path_type=Path), help="Labels file (default DATA/labels.txt): LABEL or NAME LABEL lines.")
@click.option("--protocol", default="center", show_default=True, type=click.Choice(PROTOCOLS), help="The paper's test protocol.")
@click.option("--scales", help="Test scales Q (shorter side), comma-separated (default: resize x 1, 1.5, 2: 256,384,512).")
@click.option("--flip", is_flag=True, help="Also the horizontally flipped image (dense) or crops (multicrop).")
@click.option("--crops", default=5, show_default=True, help="multicrop: an N x N grid of crops per scale.")
@click.option("--backend", default="cpu", show_default=True, type=click.Choice(BACKENDS), help="Runtime (cpu: fastest per precision).")
@click.option("--fuse", is_flag=True, help="Also the fusion of the artifacts (their averaged posteriors).")
@click.option("--batch", default=16, show_default=True, help="Images per batch for the center protocol.")
@click.option("--out", "out_dir", type=OutPath(), help="Write eval.json and eval.md here.")
@click.option("--per-image", type=OutPath(), metavar="FILE",
              help="Also each image's row, as `predict` writes it (top-5, label, correct): FILE.json, .csv or .parquet.")
@cluster_options
@json_option
def eval_cmd(artifacts, data, labels, protocol, scales, flip, crops, backend, fuse, batch, out_dir, per_image, cluster,
             workers, cpus_per_worker, as_json) -> None:
    """Top-1/top-5 error of deployed ARTIFACTS (files, folders or a variant's engines/NAME) under the
    VGG paper's protocols, on labelled images; on a Ray cluster with --cluster."""
    from .dataset import load_dataset
    from .cluster import ClusterOptions
    from .evaluate import evaluate, protocol_for, select_artifacts
    from .prediction import check_rows_path, write_rows
    from .report import eval_columns, eval_rows
    from .report_files import write_eval
    from .tables import table

    if per_image:
        check_rows_path(per_image)
    if out_dir:
        from .store import require_writable

        require_writable(out_dir)  # before the evaluation, not after it
    with pure_stdout(as_json):
        ray_opts = ClusterOptions.from_flags(cluster, workers, cpus_per_worker)
        files = select_artifacts(list(artifacts), protocol)
        samples, _ = load_dataset(data, labels)
        qs = tuple(parse_ints(scales, "--scales")) if scales and protocol != "center" else None
        images = [] if per_image else None
        rows = evaluate(files, samples, protocol_for(files, protocol, qs, flip, crops), backend, fuse, batch,
                        cluster=ray_opts, per_image=images)
    if per_image:
        log.info("wrote %s", write_rows(images, per_image))
    columns = eval_columns(rows)
    click.echo(json.dumps({"results": rows}, indent=2) if as_json else table([h for _, h in columns], eval_rows(rows, columns)))
    if out_dir:
        write_eval(rows, out_dir)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", default=5, show_default=True, help="Classes per image.")
@click.option("--backend", default="cpu", show_default=True, type=click.Choice(BACKENDS), help="Runtime (cpu: fastest per precision).")
@click.option("--batch", default=16, show_default=True, help="Images per batch.")
@click.option("--out", type=OutPath(), metavar="FILE", help="Write the rows to FILE.json, .csv or .parquet (top-k as columns).")
@json_option
def predict(artifact, images, top, backend, batch, out, as_json) -> None:
    """Top classes of each image (files, or folders searched recursively) from a classifier or dense
    ARTIFACT, preprocessed as its metadata declares. An unreadable image is an error row (exit 0)."""
    from .prediction import check_rows_path, predict as predict_images, write_rows
    from .tables import table

    if out:
        check_rows_path(out)
    rows = predict_images(artifact, list(images), top=top, backend=backend, batch=batch)
    if out:
        log.info("wrote %s", write_rows(rows, out))
    if as_json:
        click.echo(json.dumps({"rows": rows}, indent=2))
        return
    shown = [[r["path"], r["error"] or ", ".join(f"{t['name']} {t['score']:.3f}" for t in r["top"])] for r in rows]
    click.echo(table(["image", f"top-{top} (name score)"], [[printable(a), printable(b)] for a, b in shown]))


@cli.command("extract")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Image folder (searched recursively).")
@click.option("--out", "out_dir", required=True, type=OutPath(), help="Folder for the Parquet file(s) and _extract.json (a name Parquet readers skip).")
@click.option("--taps", help="Outputs to keep, comma-separated (default: every tap of the features form; logits "
                             "of the dense form, or score_map).")
@click.option("--pool", default="gap", show_default=True, type=click.Choice(POOLS),
              help="Per tap: global average, global max, or none (the raw map, flattened, with its shape).")
@click.option("--batch", default=16, show_default=True, help="Images per batch (and per Parquet row group).")
@click.option("--backend", default="cpu", show_default=True, type=click.Choice(BACKENDS), help="Runtime (cpu: fastest per precision).")
@click.option("--force", is_flag=True, help="Replace the results in an existing --out folder.")
@cluster_options
@json_option
def extract_cmd(artifact, data, out_dir, taps, pool, batch, backend, force, cluster, workers, cpus_per_worker,
                as_json) -> None:
    """Embeddings of every image in DATA from a features (or dense) ARTIFACT, as Parquet: a row per
    image (path, error, one vector per tap), the artifact's sha256 and precision in the file's metadata."""
    from .cluster import ClusterOptions
    from .extraction import extract

    with pure_stdout(as_json):
        summary = extract(artifact, data, out_dir, taps=split_list(taps), pool=pool, batch=batch, backend=backend,
                          force=force, cluster=ClusterOptions.from_flags(cluster, workers, cpus_per_worker))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['written']} of {summary['images']} image(s) written to {out_dir}"
               f" ({summary['errors']} unreadable, written as error rows)"
               + (" - interrupted" if summary["interrupted"] else ""))


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--repo", required=True, type=OutPath(), help="Triton model repository folder.")
@click.option("--name", help="Model name (default: the artifact's folder and file, e.g. vgg16-dense-fp16).")
@click.option("--platform", default="onnxruntime_onnx", show_default=True, type=click.Choice(PLATFORMS),
              help="onnxruntime_onnx, tensorrt_plan (a .plan), openvino, or python (vggdeploy's CPU runner).")
@click.option("--max-batch", default=8, show_default=True, help="max_batch_size (0: no batching dimension).")
@click.option("--dynamic-batching", is_flag=True, help="Let Triton merge concurrent requests into batches.")
@click.option("--max-queue-delay-us", default=0, show_default=True, help="How long the batcher may wait for more.")
@click.option("--instances", default=1, show_default=True, help="Model instances.")
@click.option("--kind", default="cpu", show_default=True, type=click.Choice(KINDS), help="Instance group.")
@click.option("--accelerator", type=click.Choice(list(ACCELERATORS)), help="ONNX Runtime's execution accelerator: tensorrt (gpu) or openvino (cpu).")
@click.option("--force", is_flag=True, help="Replace the model if the repository already holds it.")
@json_option
def triton(artifact, repo, name, platform, max_batch, dynamic_batching, max_queue_delay_us, instances, kind,
           accelerator, force, as_json) -> None:
    """Write a Triton model repository entry for ARTIFACT: config.pbtxt (Triton's own schema, linted),
    the model file(s), labels.txt and a README with the tritonserver and perf_analyzer commands."""
    from .triton import TritonOptions, default_name, write_repository

    opts = TritonOptions(default_name(artifact) if name is None else name, platform, max_batch, dynamic_batching, max_queue_delay_us, instances, kind, accelerator)
    model_dir = write_repository(artifact, repo, opts, force)
    click.echo(json.dumps({"model": str(model_dir), "name": opts.name, "platform": opts.platform,
                           "files": sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())},
                          indent=2) if as_json else model_dir)


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=OutPath(), help="Where to write (default: the first run's folder).")
def report(runs, out_dir) -> None:
    """Rebuild bench.md and report.html from bench.json files or run folders (several are merged,
    e.g. a CPU run and a GPU run of the same model)."""
    from .runs import load_runs
    from .report_files import write_reports

    loaded = load_runs(list(runs))
    target = out_dir or (runs[0] if runs[0].is_dir() else runs[0].parent)
    for f in write_reports(loaded, target, write_json=False):
        click.echo(f)


@cli.command()
@click.argument("onnx_path", type=click.Path(path_type=Path))
@click.option("--to", "fmt", type=click.Choice(["openvino"]), default="openvino", show_default=True,
              help="Target format.")
@click.option("--force", is_flag=True, help="Overwrite an existing IR.")
@json_option
def convert(onnx_path: Path, fmt: str, force: bool, as_json: bool) -> None:
    """Convert an ONNX artifact for a runtime's own format (OpenVINO IR: NAME.xml + NAME.bin)."""
    from .filetypes import require_onnx

    require_onnx(onnx_path)
    from .convert import save_ir

    echo_artifacts([save_ir(onnx_path, force=force)], as_json)


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@json_option
def verify(folder: Path, as_json: bool) -> None:
    """Re-check every artifact in FOLDER against its manifest: files, sizes, sha256, ONNX loads."""
    from .store import verify_folder
    from .errors import CheckFailed

    problems = verify_folder(folder)
    if as_json:
        click.echo(json.dumps({"folder": str(folder), "ok": not problems, "problems": problems}, indent=2))
    for line in [] if as_json else problems:
        click.echo(f"problem: {line}")
    if problems:
        raise CheckFailed(f"{folder}: {len(problems)} problem(s) against the manifest")
    if not as_json:
        click.echo(f"{folder}: every artifact matches its manifest")


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
def clean(folder: Path) -> None:
    """Remove what killed runs left in FOLDER (.staging-PID-* of processes that are gone)."""
    from .store import clean_stale

    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder")
    removed = clean_stale(folder)
    click.echo(f"removed {len(removed)} leftover(s)" + "".join(f"\n  {p.name}" for p in removed))


@cli.command()
@json_option
def doctor(as_json: bool) -> None:
    """What this machine can run: runtimes, execution providers, GPU, TensorRT."""
    from .doctor import diagnose

    rows = diagnose()
    if as_json:
        click.echo(json.dumps({"rows": [{"component": n, "status": st, "detail": d} for n, st, d in rows]}, indent=2))
        return
    for name, status, detail in rows:
        click.echo(f"{name:22} {status:5} {detail}")


GLOBAL_FLAGS = ("--debug", "-q", "--quiet")


def hoist_global_flags(argv: list[str]) -> list[str]:
    """`vggdeploy export vgg16 -q` as `vggdeploy -q export vgg16`: the group's flags work after the verb too."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]


def report_error(e: VggDeployError, debug: bool) -> int:
    """One `error:` line and its hint (the traceback too under --debug); the exit code to return."""
    if debug:
        traceback.print_exc()
    click.echo(f"error: {printable(str(e))}", err=True)
    if e.hint:
        click.echo(f"hint: {e.hint}", err=True)
    if e.exit_now:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.exit_code)
    return e.exit_code


def main(argv: list[str] | None = None) -> int:
    argv = hoist_global_flags(list(argv if argv is not None else sys.argv[1:]))
    debug = "--debug" in argv
    spelling = CLI_SPELLING.set(True)
    signals.install()
    verb = next((a for a in argv if not a.startswith("-")), "")
    try:
        if verb not in ("", "list", "clean", "doctor") and not {"-h", "--help"} & set(argv):
            check_address_space()  # before torch or a runtime loads
        cli.main(args=argv, prog_name="vggdeploy", standalone_mode=False)
        return 0
    except VggDeployError as e:
        return report_error(e, debug)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # click's usage errors, as one line like ours
        click.echo(f"error: {printable(e.format_message())}", err=True)
        click.echo(f"hint: `vggdeploy {verb + ' ' if verb in cli.commands else ''}--help` lists the options", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except Terminated:
        click.echo("terminated", err=True)
        return 143
    except OSError as e:  # disk full, permissions, a folder where a file was expected: the write was staged
        if out_of_memory(e):  # ENOMEM is an OSError too
            return report_error(OutOfMemory.of(e), debug)
        if debug:
            traceback.print_exc()
        click.echo(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
        click.echo("hint: nothing was published; free space or fix the path and re-run" if e.errno == errno.ENOSPC
                   else "hint: check the path and its permissions", err=True)
        return 3 if e.errno == errno.ENOSPC else 2
    except Exception as e:  # wherever a library ran out of memory or address space, in its own words
        if not out_of_memory(e):
            raise
        return report_error(OutOfMemory.of(e), debug)
    finally:
        CLI_SPELLING.reset(spelling)
