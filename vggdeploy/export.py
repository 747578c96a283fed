"""torch -> ONNX for the three forms, with metadata, checks, CPU parity and an atomic publish."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from ._version import __version__
from .artifact import Artifact
from .store import prepare_out_dir, staging
from .backends.eager import TorchRunner
from .publish import publish_checked, record_reference, verify_artifact
from .forms import DEFAULT_OPSET, FormSpec, check_memory, check_opset, form_spec
from .manifest import ManifestEntry
from .metadata import ArtifactMeta
from .naming import artifact_name
from .parity import Expected
from .preprocessing import Preprocessing
from .models import build_form, output_names
from .progress import step
from .variants import Variant
from .weights import LoadedModel

log = logging.getLogger("vggdeploy")



def metadata(loaded: LoadedModel, spec: FormSpec, precision: str = "fp32") -> ArtifactMeta:
    """What an artifact exported from `loaded` in the form `spec` declares."""
    v = loaded.variant
    names = class_names(loaded)
    return ArtifactMeta(
        form=spec.form, variant=v.name, config=v.config, batch_norm=v.batch_norm, num_classes=v.num_classes,
        input_sizes=spec.input_sizes(),
        preprocessing=Preprocessing.of_variant(v),
        precision=precision, taps=tuple(spec.taps) or None, head={"pool": v.pool, "hidden": v.hidden},
        class_names=tuple(names) if names else None, version=__version__, weights=loaded.weights,
        weights_sha256=loaded.weights_sha256, weights_prefix=loaded.prefix)


def class_names(loaded: LoadedModel) -> list[str] | None:
    v = loaded.variant
    if v.tv_weights and loaded.weights == "imagenet":
        from torchvision.models import get_weight

        return list(get_weight(v.tv_weights).meta["categories"])
    if v.config == "mini" and v.num_classes == 10:
        return [str(d) for d in range(10)]
    return None


def export_onnx(loaded: LoadedModel, forms: list[str], out_dir: Path, *, size: tuple[int, int] | None = None,
                taps: list[str] | None = None, opset: int = DEFAULT_OPSET, verify: bool = True, force: bool = False,
                backend: str = "onnxruntime", expected: Mapping[str, Expected] | None = None,
                specs: list[FormSpec] | None = None) -> list[Artifact]:
    """Export each form to out_dir/FORM.onnx (+ .data), check it on `backend` against eager PyTorch
    (or `expected[form]`, its outputs recorded by `eager_outputs`), record it in the manifest.
    `specs`: `plan_export`'s answer for these arguments, when the caller has judged them already.
    Returns the Artifacts. Raises BadInput (opset, memory, existing files), CheckFailed."""
    out_dir = Path(out_dir)
    specs = specs or plan_export(loaded, forms, out_dir, size=size, taps=taps, opset=opset, force=force)
    return [export_one(loaded, spec, out_dir, opset=opset, verify=verify, backend=backend, force=force,
                       expected=(expected or {}).get(spec.form)) for spec in specs]


def plan_export(loaded: LoadedModel, forms: list[str], out_dir: Path, *, size: tuple[int, int] | None = None,
                taps: list[str] | None = None, opset: int = DEFAULT_OPSET, force: bool = False) -> list[FormSpec]:
    """The forms' specs, once the opset, the memory they need and `out_dir` are judged (nothing written)."""
    check_opset(opset)
    return prepare_export(loaded, [form_spec(loaded.variant, f, size if f == "classifier" else None, taps) for f in forms],
                          out_dir, force)


def prepare_export(loaded: LoadedModel, specs: list[FormSpec], out_dir: Path, force: bool = False) -> list[FormSpec]:
    """`specs` back, once the memory they need and `out_dir` are judged (nothing written)."""
    for spec in specs:
        check_memory(loaded.variant, spec.size, batch=8)  # the exporter's example and the parity batches
    prepare_out_dir(Path(out_dir), [artifact_name(s.form) for s in specs], force)
    return specs


def eager_outputs(loaded: LoadedModel, spec: FormSpec) -> Expected:
    """Eager PyTorch's outputs on the form's check cases, which every artifact of that form is compared with."""
    from .parity import default_cases

    runner = TorchRunner(build_form(loaded.model, spec.form, list(spec.taps)), output_names(spec.form, list(spec.taps)),
                         low_memory=True)
    return record_reference(runner, default_cases(loaded.variant, spec.form, spec.size))


def export_one(loaded: LoadedModel, spec: FormSpec, out_dir: Path, *, opset: int, verify: bool,
               backend: str = "onnxruntime", expected: Expected | None = None, force: bool = False) -> Artifact:
    v, name = loaded.variant, artifact_name(spec.form)
    module = build_form(loaded.model, spec.form, list(spec.taps))
    outputs = output_names(spec.form, list(spec.taps))
    entry = ManifestEntry("onnx", spec.form, "fp32", v.name, details={
        "opset": opset,
        "input": {"name": "input", "shape": ["batch", v.in_channels, *(("height", "width") if spec.dynamic_hw else spec.size)]},
        "input_sizes": spec.input_sizes(), "outputs": outputs,
        "weights": loaded.weights, "weights_sha256": loaded.weights_sha256,
    })
    with staging(out_dir) as tmp:
        staged = tmp / name
        with step(f"exporting {v.name} {spec.form} form (opset {opset})"):
            program = _torch_export(module, v, spec, outputs, opset)
            program.model.metadata_props.update(metadata(loaded, spec).to_props())
            program.model.doc_string = f"{v.name} ({spec.form} form) exported by vggdeploy {__version__}"
            program.save(staged, external_data=True)  # a 550 MB single-file save peaks at 4 GB RSS
            del program, module
            _forget_matched_graphs()
        check = (lambda path: verify_artifact(path, expected or eager_outputs(loaded, spec), v, spec, backend=backend)) if verify else None
        return publish_checked(staged, out_dir, entry, check, force)


def _forget_matched_graphs() -> None:
    """onnxscript's rewrite rules (the exporter's optimizer) keep the last graph they matched, whose
    values hold the model's parameters: the weights outlived the model (0.55 GB for VGG16, issue 19)."""
    import gc

    try:  # private names (onnxscript 0.7): if they move, the weights stay until exit, the export still works
        from onnxscript.rewriter._basics import MatchResult
        from onnxscript.rewriter._matcher import PatternMatcher
    except ImportError:
        log.debug("onnxscript's matchers not found: the exporter may keep the last graph (and the weights)")
        return
    for obj in gc.get_objects():
        if PatternMatcher in type(obj).__mro__:  # (isinstance would ask lazy objects for their __class__)
            obj.__dict__.update(_graph=None, _current_node=None, _tracer=None, _match=MatchResult())


def _torch_export(module: torch.nn.Module, v: Variant, spec: FormSpec, outputs: list[str], opset: int):
    example = torch.randn(2, v.in_channels, *spec.size)
    batch = torch.export.Dim("batch", min=1)
    dims = {0: batch}
    if spec.dynamic_hw:
        dims |= {2: torch.export.Dim("height", min=spec.min_size), 3: torch.export.Dim("width", min=spec.min_size)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=(dims,), input_names=["input"],
                                 output_names=outputs, opset_version=opset, verbose=False)
