"""The export pipeline composed in one call: FP32 forms, their FP16/INT8 artifacts, TensorRT engines.

    loaded = load_model("vgg16", "imagenet")
    deploy(loaded, ["classifier", "dense"], Path("engines/vgg16"),
           precision=PrecisionPlan(fp16=True, int8=Int8Options("cpu")))

`vggdeploy export` is this function behind its options; `vggdeploy quantize` is `derive`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .backends import CHECK_BACKENDS
from .errors import BadInput
from .forms import check_opset
from .layouts import Fp16Options, Int8Options
from .limits import give_back_freed_memory


def refuse_without_int8(given: dict[str, object]) -> None:
    """Raise BadInput naming the first INT8 setting given ({flag: value, None when not given}):
    they apply to --int8, which was not given."""
    flag, value = next(((k, v) for k, v in given.items() if v is not None), (None, None))
    if flag:
        given_as = flag if value is True else f"{flag} {value}"  # a flag has no value to show
        raise BadInput(f"{given_as} applies to --int8", hint=f"add --int8, or drop {flag}")


@dataclass(frozen=True)
class PrecisionPlan:
    """What to derive from each FP32 artifact, judged whole on construction: an FP16 artifact (`io`:
    its input/output type), an INT8 one (`int8`: its options; `calib`: the calibration source, None
    for the bundled samples; `keep_fp32`: first, last or node names left in float), and the runtime
    that checks them (`backend`). Raises BadInput naming the option. `fp16_options`: the FP16
    settings as to_fp16 takes them (judged here, once)."""

    fp16: bool = False
    io: str = "fp32"
    int8: Int8Options | None = None
    calib: str | None = None
    keep_fp32: tuple[str, ...] = ()
    backend: str = "cpu"
    fp16_options: Fp16Options = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.backend not in CHECK_BACKENDS:
            raise BadInput(f"unknown --backend {self.backend!r}", hint=f"choose from: {', '.join(CHECK_BACKENDS)}")
        object.__setattr__(self, "fp16_options", Fp16Options(self.io))
        if self.io != "fp32" and not self.fp16:
            raise BadInput(f"--io {self.io} applies to --fp16", hint="add --fp16, or drop --io")
        if self.int8 is None:
            refuse_without_int8({"--calib": self.calib, "--keep-fp32": ",".join(self.keep_fp32) or None})

    @classmethod
    def from_flags(cls, *, fp16: bool = False, io: str = "fp32", int8: bool = False, target: str | None = None,
                   calib: str | None = None, calib_method: str = "minmax", calib_count: int | None = None,
                   keep_fp32: Sequence[str] = (), cpu_layout: str | None = None, quantizer: str = "ort",
                   max_drop: float | None = None, eval_data: Path | None = None, no_equalize: bool = False,
                   backend: str = "cpu") -> "PrecisionPlan":
        """The plan from `export`'s and `quantize`'s flags (a keyword per flag, as the CLI names them;
        `keep_fp32` already split), judged once: without --int8, the FP16 settings and the check's
        runtime, then an INT8 setting given without it (BadInput naming both); with it, the INT8
        options and the budget, then the rest."""
        if not int8:
            plan = cls(fp16, io, None, None, (), backend)
            refuse_without_int8({"--target": target, "--calib": calib, "--calib-count": calib_count,
                                 "--keep-fp32": ",".join(keep_fp32) or None,
                                 "--cpu-layout": cpu_layout, "--calib-method": None if calib_method == "minmax" else calib_method,
                                 "--quantizer": None if quantizer == "ort" else quantizer, "--no-equalize": no_equalize or None,
                                 "--max-drop": None if max_drop is None else f"{max_drop:g}", "--eval-data": eval_data})
            return plan
        budget = None
        if max_drop is not None or eval_data is not None:
            from .budget import AccuracyBudget

            if max_drop is None or eval_data is None:
                given, other = ("--max-drop", "--eval-data") if max_drop is not None else ("--eval-data", "--max-drop")
                raise BadInput(f"{given} needs {other}", hint="--max-drop POINTS --eval-data DIR: the budget and the images it is judged on")
            budget = AccuracyBudget(max_drop, eval_data)
        options = Int8Options(target, calib_method, calib_count, cpu_layout, quantizer, not no_equalize, budget)
        return cls(fp16, io, options, calib, tuple(keep_fp32), backend)

    @property
    def empty(self) -> bool:
        return not (self.fp16 or self.int8)


def derive(paths: list, plan: PrecisionPlan, *, verify: bool = True, force: bool = False,
           reference: Callable[[str], object] | None = None) -> list:
    """The FP16/INT8 artifacts `plan` asks for, from each FP32 ONNX in `paths`, each checked against
    `reference(form)` (a Runner, or a parity.Expected recording; default: the FP32 ONNX itself).
    Returns them (Artifacts)."""
    from .precision import to_fp16, to_int8

    out = []
    for p in paths:
        make_ref = (lambda: reference(p.stem)) if reference else (lambda: None)  # noqa: B023 (used in this iteration)
        if plan.fp16:
            out.append(to_fp16(p, options=plan.fp16_options, reference=make_ref(), verify=verify, force=force,
                               backend=plan.backend))
            give_back_freed_memory()
        if plan.int8:
            out.append(to_int8(p, options=plan.int8, calib=plan.calib, keep_fp32=list(plan.keep_fp32),
                               reference=make_ref(), verify=verify, force=force, backend=plan.backend))
            give_back_freed_memory()
    return out


@dataclass(frozen=True)
class ExportOptions:
    """What `deploy` makes, judged whole on construction, without a model (the CLI builds it before
    loading one): the `forms`, the classifier's input `size`, the features form's `taps`, the ONNX
    `opset`, the `precision` plan, and whether TensorRT `engine`s are built. Raises BadInput naming
    the option."""

    forms: tuple[str, ...]
    precision: PrecisionPlan = PrecisionPlan()
    size: tuple[int, int] | None = None
    taps: tuple[str, ...] | None = None
    opset: int = 18
    engine: bool = False

    def __post_init__(self):
        _check_export_options(list(self.forms), self.precision, self.size, self.taps, self.engine)
        check_opset(self.opset)


def _check_export_options(forms: list[str], precision: PrecisionPlan, size: tuple[int, int] | None,
                          taps: Sequence[str] | None, engine: bool) -> None:
    if not forms:
        raise BadInput("no form given", hint="--form classifier,dense,features or all")
    if engine and precision.int8 and precision.int8.target != "tensorrt" and not precision.fp16:
        raise BadInput("--engine builds TensorRT engines; --int8 --target cpu makes a CPU-only graph",
                       hint="use --int8 --target tensorrt with --engine")
    names = [k for k in precision.keep_fp32 if k not in ("first", "last")]
    if names:
        raise BadInput(f"--keep-fp32 {names[0]}: node names exist only once the graph does",
                       hint="use first/last here, or name nodes with `vggdeploy quantize` after export")
    if size and "classifier" not in forms:
        raise BadInput("--size sets the classifier form's input size",
                       hint="the dense and features forms take any size from their minimum up")
    if taps and "features" not in forms:
        raise BadInput("--taps names the features form's outputs", hint="add --form features (or all), or drop --taps")


def deploy(loaded, forms: list[str], out_dir: Path, *, precision: PrecisionPlan = PrecisionPlan(),
           size: tuple[int, int] | None = None, taps: list[str] | None = None, opset: int = 18,
           verify: bool = True, force: bool = False, engine: bool = False, release_model: bool = False,
           options: ExportOptions | None = None) -> list:
    """Export `loaded` (weights.load_model) in `forms` into `out_dir`, each checked against eager
    PyTorch; then what `precision` asks for, checked against eager PyTorch too (its outputs are
    recorded once per form); then TensorRT engines (FP16/INT8-tensorrt ones if made, else FP32) when
    `engine`. Every option and the calibration data are judged before the first export.
    `release_model`: set `loaded.model` to None once its outputs are recorded and the FP32 forms
    exported, so its weights are freed before the FP16/INT8 checks if the caller holds no other
    reference (the CLI does this: 0.55 GB for VGG16). Returns the Artifacts written, FP32 first. Raises
    BadInput, CheckFailed (a parity or graph check; nothing of that artifact is written),
    MissingEnvironment (engines without a GPU host). `options`: an ExportOptions already judged, in
    place of forms, precision, size, taps, opset and engine."""
    out_dir = Path(out_dir)
    from .export import eager_outputs, export_onnx, prepare_export
    from .forms import form_spec
    from .progress import step

    options = options or ExportOptions(tuple(forms), precision, size, tuple(taps) if taps else None, opset, engine)
    precision = options.precision
    specs = [form_spec(loaded.variant, f, options.size if f == "classifier" else None, options.taps) for f in options.forms]
    if precision.int8:
        from .precision import check_calibration

        with step("reading the calibration data"):
            for spec in specs:  # the data INT8 will read, judged before the FP32 export
                check_calibration(precision.calib, loaded.variant, spec, precision.int8.calib_count)
            if precision.int8.budget:  # the budget's images too
                from .budget import load_eval_set
                from .export import metadata

                load_eval_set(precision.int8.budget, metadata(loaded, specs[0]).preprocessing, loaded.variant.num_classes)
    prepare_export(loaded, specs, out_dir, force)
    expected = {spec.form: eager_outputs(loaded, spec) for spec in specs} if verify else {}
    paths = export_onnx(loaded, list(options.forms), out_dir, opset=options.opset, verify=verify, force=force,
                        backend=precision.backend, expected=expected, specs=specs)
    if release_model:
        loaded.model = None
    expected = {form: e.compact() for form, e in expected.items()}  # the FP32 checks are done: float16 suffices now
    give_back_freed_memory()
    paths += derive(paths, precision, verify=verify, force=force, reference=expected.get if expected else None)
    if options.engine:
        from .engine import build_engines, engine_sources

        paths += build_engines(engine_sources(paths), force=force)
    return paths
