"""The options verbs share and how their text is parsed: sizes, comma lists, output paths, the
precision and cluster option groups, the --json artifact listing. Parsing only: the rules each
option obeys are the library's (PrecisionPlan.from_flags, ClusterOptions.from_flags, ...)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from .errors import BadInput, printable
from .layouts import CPU_LAYOUTS, METHODS, QUANTIZERS, TARGETS


def parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise BadInput(f"bad size {text!r}", hint="give N or HxW, e.g. 224 or 256x320") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise BadInput(f"bad size {text!r}", hint="give N or HxW with positive numbers, e.g. 224 or 256x320")
    return parts[0], parts[1]


class OutPath(click.Path):
    """An output path: an empty one (it would mean the current directory) or one that is not UTF-8
    (ONNX's tools take UTF-8 paths only) is refused before any work."""

    def __init__(self):
        super().__init__(path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: give a folder or file name", param, ctx)
        try:
            str(value).encode("utf-8")
        except UnicodeEncodeError:
            self.fail(f"{printable(repr(value))} is not valid UTF-8: give a UTF-8 path", param, ctx)
        return super().convert(value, param, ctx)


def split_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def json_option(f):
    """--json: the verb's result as one JSON document on stdout (schemas: README, Machine-readable output)."""
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")(f)


def echo_artifacts(paths: list, as_json: bool) -> None:
    """The paths written, one per line; or {"artifacts": [each one's manifest entry and path]}."""
    if not as_json:
        for p in paths:
            click.echo(p)
        return
    from .store import entry_of, read_manifest

    manifests: dict[Path, dict] = {}  # for what returns a bare path: read once per folder
    records = []
    for p in paths:
        entry = getattr(p, "entry", None)  # a published Artifact carries the entry it recorded
        if entry is None:
            if p.parent not in manifests:
                manifests[p.parent] = read_manifest(p.parent)
            entry = entry_of(p, manifests[p.parent])
        records.append({"path": str(p), **(entry.to_json() if entry else {})})
    click.echo(json.dumps({"artifacts": records}, indent=2))


def choice_list(allowed: tuple[str, ...], extra: tuple[str, ...] = ()):
    """A click callback for a comma-separated list of choices: judged while the options are parsed,
    before any import or work."""
    def check(ctx, param, value):
        for item in split_list(value) or []:
            if item not in allowed + extra:
                raise click.BadParameter(f"{item!r} is not one of {', '.join(map(repr, allowed + extra))}")
        return value
    return check


def parse_ints(text: str, option: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; anything else is a usage error naming the option."""
    try:
        values = [int(t) for t in split_list(text) or []]
    except ValueError:
        raise BadInput(f"{option} {text!r}: give whole numbers separated by commas, e.g. 1,8") from None
    if not values or min(values) < 1:
        raise BadInput(f"{option} {text!r}: give positive whole numbers, e.g. 1,8")
    return values


def parse_dims(text: str, option: str) -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224): positive dims, separated by x."""
    try:
        dims = tuple(int(t) for t in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1 or max(dims) > 1 << 20:
        raise BadInput(f"{option} {text!r}: give positive dims separated by x, e.g. 3x224x224")
    return dims


def precision_options(f):
    """--fp16/--int8 and their settings, shared by `export` and `quantize`."""
    for opt in reversed([
        click.option("--fp16", is_flag=True, help="Also write FORM.fp16.onnx (for strongly typed TensorRT)."),
        click.option("--io", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]),
                     help="FP16 artifact's input/output type."),
        click.option("--int8", is_flag=True, help="Also write FORM.int8-TARGET.onnx (Q/DQ, calibrated)."),
        click.option("--target", type=click.Choice(TARGETS), help="INT8 target (required with --int8)."),
        click.option("--calib", help="Calibration data: image folder, .npy/.npz, or 'samples' (default)."),
        click.option("--calib-method", default="minmax", show_default=True, type=click.Choice(METHODS),
                     help="ONNX Runtime's calibration method."),
        click.option("--calib-count", type=int, help="Inputs per size to calibrate on (default: all the source has; for vgg-mini's bundled digits, 256 of 4,000). Error if fewer."),
        click.option("--keep-fp32", callback=lambda ctx, param, value: tuple(split_list(value) or ()),
                     help="Compute nodes left unquantized: first, last, or node names (comma-separated)."),
        click.option("--cpu-layout", type=click.Choice(list(CPU_LAYOUTS)), help="INT8 layout for --target cpu: u8s7-channel (default: exact on every CPU), "
                                          "u8s7-tensor, u8s8-tensor, u8s8-channel (exact on ONNX Runtime only with "
                                          "VNNI/AMX), s8s8-tensor, u8u8-tensor."),
        click.option("--quantizer", default="ort", show_default=True, type=click.Choice(QUANTIZERS),
                     help="INT8 quantizer: ONNX Runtime's (both targets), NNCF's defaults (cpu target; "
                          "pip install 'vggdeploy[nncf]'), or NVIDIA ModelOpt's ONNX PTQ (tensorrt target; make setup-modelopt)."),
        click.option("--max-drop", type=float, metavar="POINTS",
                     help="Accuracy budget: keep the fewest layers in float until INT8's top-1 on --eval-data is within "
                          "POINTS of FP32's (exit 1 if it can't be met)."),
        click.option("--eval-data", type=click.Path(path_type=Path), metavar="DIR",
                     help="Images for --max-drop: a labelled folder as `eval --data` takes (unlabelled: agreement with FP32)."),
        click.option("--no-equalize", is_flag=True, help="INT8 without cross-layer equalization of the FP32 weights first "
                                                          "(on by default: it keeps outlier channels from setting the ranges)."),
        click.option("--backend", default="cpu", show_default=True, type=click.Choice(["cpu", "onnxruntime", "openvino"]),
                     help="Runtime for the parity check: cpu (fastest per precision), onnxruntime, openvino."),
    ]):
        f = opt(f)
    return f


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(t) for t in split_list(text) or [""])
    except ValueError:
        raise BadInput(f"{option} {text!r}: give numbers separated by commas, e.g. 0.485,0.456,0.406") from None


def cluster_options(f):
    """--cluster and its sizes, shared by `eval` and `extract`."""
    for opt in reversed([
        click.option("--cluster", help="Run on a Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
                                       "(pip install 'vggdeploy[ray]' here and on every node)."),
        click.option("--workers", type=int, help="With --cluster: actors, each holding one runner (default 2)."),
        click.option("--cpus-per-worker", type=int, help="With --cluster: CPUs and runtime threads per actor (default 1)."),
    ]):
        f = opt(f)
    return f


@contextlib.contextmanager
def pure_stdout(active: bool):
    """With --json: what libraries print to stdout while the work runs (Ray's "(raylet)" and worker
    lines, whether printed by Python or by C++) goes to stderr, so that stdout holds the one JSON
    document the verb prints after."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
