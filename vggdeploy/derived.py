"""What FP16 and INT8 artifacts share: the FP32 source read once, the per-layer error against it,
their metadata, and the last step (checked against the reference, published, recorded)."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from .store import side_files
from .backends.base import Runner
from .errors import BadInput
from .publish import publish_checked, verify_artifact
from .forms import FormSpec
from .manifest import ManifestEntry
from .artifact import Artifact, load_graph
from .parity import Expected
from .progress import step
from .variants import Variant

log = logging.getLogger("vggdeploy")


def source_model(artifact: Path | Artifact) -> tuple[onnx.ModelProto, Artifact]:
    """The FP32 artifact's graph header and the artifact (a path opened here; an Artifact as it was
    opened, its graph read once more for the converters; BadInput unless it is an FP32 vggdeploy
    artifact the onnx package can read)."""
    path = Path(artifact)
    graph = load_graph(path)
    opened = artifact if isinstance(artifact, Artifact) else Artifact.from_graph(path, graph)
    meta = opened.declared()
    linked = [f for f in side_files(path)[1:] if f.stat().st_nlink > 1]
    if linked:  # ONNX Runtime and OpenVINO read them; the onnx package, which converts, refuses
        raise BadInput(f"{linked[0].name} has {linked[0].stat().st_nlink} hard links: the onnx package refuses to "
                       "read hard-linked weights", hint="copy the files (cp) instead of linking them (ln, cp -l)")
    if meta.precision != "fp32" or any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.graph.node):
        raise BadInput(f"{path} is already {meta.precision if meta.precision != 'fp32' else 'quantized'}",
                       hint="convert the FP32 artifact")
    return graph, opened


def measure_layers(fp32: Path, derived: Path, batches, graphs: tuple[onnx.ModelProto, onnx.ModelProto]) -> list[dict]:
    """The manifest's per-layer error list (layer_error.py), and a log line naming the worst layer."""
    from .layer_error import layer_errors

    with step(f"measuring each layer of {derived.name} against FP32"):
        errors = layer_errors(fp32, derived, batches, graphs)
    if errors:
        worst = errors[0]
        log.info("largest per-layer error: %s (%s) adds %.4f relative L2 (output %.4f, cosine %.5f)",
                 worst.node, worst.op, worst.added, worst.rel_l2, worst.cosine)
    return [e.to_json() for e in errors]


def set_meta(model: onnx.ModelProto, values: dict[str, str]) -> None:
    onnx.helper.set_model_props(model, {p.key: p.value for p in model.metadata_props} | values)


def finish(staged: Path, out_dir: Path, src: Artifact, precision: str, v: Variant, spec: FormSpec, reference: Runner | Expected | None,
            verify: bool, backend: str, extra: dict, force: bool) -> Artifact:
    """Check, compare with the reference (default: the FP32 ONNX), publish, record."""
    from .backends.ort import OrtRunner

    entry = ManifestEntry("onnx", spec.form, precision, v.name, src.path.name,
                          details={"input_sizes": spec.input_sizes(), **extra})
    check = (lambda path: verify_artifact(path, reference or OrtRunner(src), v, spec, precision, backend)) if verify else None
    return publish_checked(staged, out_dir, entry, check, force)
