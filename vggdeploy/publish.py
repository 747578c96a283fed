"""The last step of every stage that writes an artifact: onnx.checker, the parity check against a
reference, then publishing (store.publish_recorded: moved into place and recorded in the manifest,
last, under the folder's lock). Any failure leaves the folder as it was."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import onnx

from ._version import __version__
from .artifact import Artifact
from .backends.base import Runner
from .errors import CheckFailed, first_line
from .forms import FormSpec
from .manifest import ManifestEntry
from .parity import Expected
from .progress import step
from .store import publish_recorded, side_files
from .variants import Variant

log = logging.getLogger("vggdeploy")


def publish_checked(staged: Path, out_dir: Path, entry: ManifestEntry, verify: Callable[[Artifact], dict] | None,
                    force: bool = False) -> Artifact:
    """onnx.checker's full check, then the parity check, then move into out_dir and record in the
    manifest. Any failure leaves out_dir as it was. Returns the published artifact (read once)."""
    try:
        onnx.checker.check_model(str(staged), full_check=True)
    except onnx.checker.ValidationError as e:
        raise CheckFailed(f"onnx.checker rejected {staged.name}: {first_line(e)}") from None
    opened = Artifact.open(staged)
    if verify:
        entry = entry.with_details(parity=verify(opened))
    final, recorded = publish_recorded(side_files(staged), out_dir, entry.with_details(versions=tool_versions()), force)
    return dataclasses.replace(opened, path=final, entry=recorded)


def verify_artifact(path: Path | Artifact, reference: Runner | Expected, v: Variant, spec: FormSpec, precision: str = "fp32",
                    backend: str = "onnxruntime") -> dict:
    """`backend` running the artifact against `reference` (a runner, run first and released, or its
    recorded outputs) on the form's default cases; raises CheckFailed on a mismatch."""
    from .backends import make_runner
    from .isa import cpu_isa
    from .parity import THRESHOLDS, compare, default_cases, log_parity

    kind = precision.split("-")[0]
    if isinstance(reference, Expected):
        expected = reference.photos_only() if kind == "int8" else reference
    else:
        expected = record_reference(reference, default_cases(v, spec.form, spec.size, noise=kind != "int8"))
    with step(f"checking {path.name} against {expected.reference}", total=len(expected.cases)) as advance, \
            make_runner(backend, path, **_low_memory(backend)) as got:
        report = compare(expected, got, THRESHOLDS[kind], on_case=advance)
    log_parity(report)
    report.raise_on_failure()
    worst = lambda key, pick: pick(getattr(r, key) for r in report.results)  # noqa: E731
    summary = {"reference": report.reference, "backend": report.candidate, "cpu": cpu_isa().as_dict(),
               "cases": len({r.case for r in report.results}),
               "max_abs": worst("max_abs", max), "rel_l2": worst("rel_l2", max), "cosine": worst("cosine", min)}
    top1 = [r.top1 for r in report.results if r.top1 is not None]
    if top1:
        summary["top1_agreement"] = min(top1)
    return summary


def record_reference(reference: Runner, cases: list) -> Expected:
    """`reference`'s outputs on `cases`, with progress; the runner is released on return."""
    from .parity import record_outputs

    with step(f"running {reference.name} on {len(cases)} check cases", total=len(cases)) as advance:
        return record_outputs(reference, cases, on_case=advance)


def _low_memory(backend: str) -> dict:
    """A check's runtimes trade speed for memory (the journey's peak, issue 19) where they can."""
    from .backends import CHECK_BACKENDS

    return {"low_memory": True} if backend in CHECK_BACKENDS else {}


def tool_versions() -> dict[str, str]:
    """The versions of the tools that made and checked an artifact, for its manifest entry."""
    import onnxruntime
    import torch

    return {"vggdeploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


__all__ = ["publish_checked", "record_reference", "tool_versions", "verify_artifact"]
