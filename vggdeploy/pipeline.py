"""The export pipeline composed in one call: FP32 forms, their FP16/INT8 artifacts, TensorRT engines.

    loaded = load_model("vgg16", "imagenet")
    deploy(loaded, ["classifier", "dense"], Path("engines/vgg16"),
           precision=PrecisionPlan(fp16=True, int8=Int8Options("cpu")))

`vggdeploy export` is this function behind its options; `vggdeploy quantize` is `derive`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .backends import CHECK_BACKENDS
from .errors import BadInput
from .layouts import Int8Options
from .limits import give_back_freed_memory


def refuse_without_int8(given: dict[str, object]) -> None:
    """Raise BadInput naming the first INT8 setting given ({flag: value, None when not given}):
    they apply to --int8, which was not given."""
    flag, value = next(((k, v) for k, v in given.items() if v is not None), (None, None))
    if flag:
        given_as = flag if value is True else f"{flag} {value}"  # a flag has no value to show
        raise BadInput(f"{given_as} applies to --int8", hint=f"add --int8, or drop {flag}")


def _check_float_settings(fp16: bool, io: str, backend: str) -> None:
    if backend not in CHECK_BACKENDS:
        raise BadInput(f"unknown --backend {backend!r}", hint=f"choose from: {', '.join(CHECK_BACKENDS)}")
    if io not in ("fp32", "fp16"):
        raise BadInput(f"unknown --io {io!r}", hint="fp32 (default) or fp16")
    if io != "fp32" and not fp16:
        raise BadInput(f"--io {io} applies to --fp16", hint="add --fp16, or drop --io")


@dataclass(frozen=True)
class PrecisionPlan:
    """What to derive from each FP32 artifact, judged whole on construction: an FP16 artifact (`io`:
    its input/output type), an INT8 one (`int8`: its options; `calib`: the calibration source, None
    for the bundled samples; `keep_fp32`: first, last or node names left in float), and the runtime
    that checks them (`backend`). Raises BadInput naming the option."""

    fp16: bool = False
    io: str = "fp32"
    int8: Int8Options | None = None
    calib: str | None = None
    keep_fp32: tuple[str, ...] = ()
    backend: str = "cpu"

    def __post_init__(self):
        _check_float_settings(self.fp16, self.io, self.backend)
        if self.int8 is None:
            refuse_without_int8({"--calib": self.calib, "--keep-fp32": ",".join(self.keep_fp32) or None})

    @classmethod
    def from_flags(cls, *, fp16: bool = False, io: str = "fp32", int8: bool = False, target: str | None = None,
                   calib: str | None = None, calib_method: str = "minmax", calib_count: int | None = None,
                   keep_fp32: str | None = None, cpu_layout: str | None = None, quantizer: str = "ort",
                   max_drop: float | None = None, eval_data: Path | None = None, no_equalize: bool = False,
                   backend: str = "cpu") -> "PrecisionPlan":
        """The plan from `export`'s and `quantize`'s flags (a keyword per flag, as the CLI names them),
        judged in the order a user reads them: the FP16 settings and the check's runtime, then an INT8
        setting given without --int8 (BadInput naming both), then the INT8 options and the budget."""
        _check_float_settings(fp16, io, backend)
        if not int8:
            refuse_without_int8({"--target": target, "--calib": calib, "--calib-count": calib_count, "--keep-fp32": keep_fp32,
                                 "--cpu-layout": cpu_layout, "--calib-method": None if calib_method == "minmax" else calib_method,
                                 "--quantizer": None if quantizer == "ort" else quantizer, "--no-equalize": no_equalize or None,
                                 "--max-drop": None if max_drop is None else f"{max_drop:g}", "--eval-data": eval_data})
            return cls(fp16, io, None, None, (), backend)
        budget = None
        if max_drop is not None or eval_data is not None:
            from .budget import AccuracyBudget

            if max_drop is None or eval_data is None:
                given, other = ("--max-drop", "--eval-data") if max_drop is not None else ("--eval-data", "--max-drop")
                raise BadInput(f"{given} needs {other}", hint="--max-drop POINTS --eval-data DIR: the budget and the images it is judged on")
            budget = AccuracyBudget(max_drop, eval_data)
        options = Int8Options(target, calib_method, calib_count, cpu_layout, quantizer, not no_equalize, budget)
        keep = tuple(t.strip() for t in (keep_fp32 or "").split(",") if t.strip())
        return cls(fp16, io, options, calib, keep, backend)

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
            out.append(to_fp16(p, io=plan.io, reference=make_ref(), verify=verify, force=force, backend=plan.backend))
            give_back_freed_memory()
        if plan.int8:
            out.append(to_int8(p, options=plan.int8, calib=plan.calib, keep_fp32=list(plan.keep_fp32),
                               reference=make_ref(), verify=verify, force=force, backend=plan.backend))
            give_back_freed_memory()
    return out


def check_export_options(forms: list[str], precision: PrecisionPlan, size: tuple[int, int] | None = None,
                         taps: list[str] | None = None, engine: bool = False) -> None:
    """The combinations `deploy` refuses, judged without a model (the CLI calls it before loading one)."""
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
           verify: bool = True, force: bool = False, engine: bool = False, release_model: bool = False) -> list:
    """Export `loaded` (weights.load_model) in `forms` into `out_dir`, each checked against eager
    PyTorch; then what `precision` asks for, checked against eager PyTorch too (its outputs are
    recorded once per form); then TensorRT engines (FP16/INT8-tensorrt ones if made, else FP32) when
    `engine`. Every option and the calibration data are judged before the first export.
    `release_model`: set `loaded.model` to None once its outputs are recorded and the FP32 forms
    exported, so its weights are freed before the FP16/INT8 checks if the caller holds no other
    reference (the CLI does this: 0.55 GB for VGG16). Returns the Artifacts written, FP32 first. Raises
    BadInput, CheckFailed (a parity or graph check; nothing of that artifact is written),
    MissingEnvironment (engines without a GPU host)."""
    out_dir = Path(out_dir)
    from .export import eager_outputs, export_onnx, plan_export
    from .forms import form_spec
    from .progress import step

    check_export_options(forms, precision, size, taps, engine)
    if precision.int8:
        from .precision import check_calibration

        with step("reading the calibration data"):
            for f in forms:  # the data INT8 will read, judged before the FP32 export
                spec = form_spec(loaded.variant, f, size if f == "classifier" else None, taps)
                check_calibration(precision.calib, loaded.variant, spec, precision.int8.calib_count)
            if precision.int8.budget:  # the budget's images too
                from .budget import load_eval_set
                from .export import metadata

                meta = metadata(loaded, form_spec(loaded.variant, forms[0], size if forms[0] == "classifier" else None, taps))
                load_eval_set(precision.int8.budget, meta.preprocessing, loaded.variant.num_classes)
    specs = plan_export(loaded, forms, out_dir, size=size, taps=taps, opset=opset, force=force)
    expected = {spec.form: eager_outputs(loaded, spec) for spec in specs} if verify else {}
    paths = export_onnx(loaded, forms, out_dir, size=size, taps=taps, opset=opset, verify=verify, force=force,
                        backend=precision.backend, expected=expected, specs=specs)
    if release_model:
        loaded.model = None
    expected = {form: e.compact() for form, e in expected.items()}  # the FP32 checks are done: float16 suffices now
    give_back_freed_memory()
    paths += derive(paths, precision, verify=verify, force=force, reference=expected.get if expected else None)
    if engine:
        from .engine import build_engines, engine_sources

        paths += build_engines(engine_sources(paths), force=force)
    return paths
