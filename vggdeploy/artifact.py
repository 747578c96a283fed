"""An artifact opened once: what runners and stages need to know about an ONNX file, read in one pass.

`Artifact.open(path)` parses the graph's header (never its weights), checks its side files and its
metadata, and keeps the answers; `Artifact.of(path_or_artifact)` accepts either, so a path still
works everywhere (`make_runner(backend, "engines/vgg16/classifier.onnx")`). The stages that write
artifacts return them as Artifacts, which stand in for their paths (os.PathLike, and a path's
attributes: `.name`, `.parent`, `.stat()`). Frozen and picklable: no
protobuf inside. A foreign ONNX opens too (`meta` None); engines and OpenVINO IRs open as files of
their kind (their facts live elsewhere: the engine's manifest entry, the IR's source ONNX).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import BadInput
from .manifest import ManifestEntry
from .metadata import ArtifactMeta

if TYPE_CHECKING:
    import onnx  # the graph is read on demand: the CLI starts without onnx

KINDS = {".onnx": "onnx", ".plan": "tensorrt-engine", ".xml": "openvino-ir"}  # as manifest entries name them
ADOPT_HINT = ("a VGG ONNX from another exporter: `vggdeploy adopt {path}` (states its layout and preprocessing); "
              "a PyTorch model: `vggdeploy export`")
DERIVED_HINTS = {".plan": "build it with `vggdeploy build`", ".xml": "convert it with `vggdeploy convert`"}


def kind_of(artifact: "str | Path | Artifact") -> str:
    """An artifact's kind (onnx, tensorrt-engine, openvino-ir; other for anything else), without
    opening a path: the one place a file's suffix says what it is."""
    return artifact.kind if isinstance(artifact, Artifact) else KINDS.get(Path(artifact).suffix, "other")


def load_graph(path: Path) -> onnx.ModelProto:
    """The graph without its external weights (cheap: kB, not the 500 MB side file)."""
    import onnx

    from .filetypes import require_onnx

    require_onnx(path)
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise BadInput(f"{path} is not an ONNX model ({type(e).__name__})",
                       hint="a checkpoint (.pth, .safetensors, a timm or Lightning folder) goes to `vggdeploy export CHECKPOINT`") from None


def graph_io(model: onnx.ModelProto) -> tuple[list[tuple[str, int, list[int]]], list[tuple[str, int, list[int]]]]:
    """Inputs (initializers left out) and outputs as (name, ONNX element type, dims with -1 for free)."""
    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]

    inits = {t.name for t in model.graph.initializer}
    return ([(v.name, v.type.tensor_type.elem_type, dims(v)) for v in model.graph.input if v.name not in inits],
            [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in model.graph.output])


@dataclass(frozen=True)
class Artifact:
    """One artifact file: its path and kind, what it declares (`meta`, None for foreign files and for
    engines and IRs, whose `source` ONNX declares it), its graph's input (name and element type) and
    output names, an INT8 artifact's layout, and its folder's manifest entry (`entry`)."""

    path: Path
    kind: str
    meta: ArtifactMeta | None = None
    input_name: str | None = None
    input_dtype: str | None = None
    outputs: tuple[str, ...] = ()
    int8_layout: str | None = None
    io: tuple = ((), ())  # (inputs, outputs) as (name, ONNX element type, dims with -1 for free); weights left out
    entry: ManifestEntry | None = None  # its manifest entry (None: not in a vggdeploy folder's manifest)
    source: "Artifact | None" = None  # an engine's or IR's source ONNX, as its entry names it

    def __fspath__(self) -> str:  # an Artifact works wherever its path did: open(), Path(), os.* ...
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __getattr__(self, name: str):  # ... and its path's attributes: name, parent, stat(), with_name() ...
        if name.startswith("__") or name == "path":
            raise AttributeError(name)
        return getattr(self.path, name)

    def __hash__(self) -> int:
        return hash((self.path, self.kind))

    @classmethod
    def open(cls, path: str | Path, manifest: dict | None = None) -> "Artifact":
        """The single read: the ONNX header (side files and metadata checked, BadInput naming the
        file otherwise); other kinds by their suffix alone. `manifest`: its folder's, if already read."""
        from .store import entry_of, read_manifest
        from .filetypes import require_model_file

        path = Path(path)
        if path.is_file():
            require_model_file(path, "a model artifact")  # a photo given where a model goes: said at once
        if path.suffix == ".onnx":
            return cls.from_graph(path, load_graph(path), manifest)
        if path.suffix not in DERIVED_HINTS:
            return cls(path, KINDS.get(path.suffix, "other"))
        manifest = manifest if manifest is not None else read_manifest(path.parent)
        entry = entry_of(path, manifest)
        named = entry.source if entry else None
        source = cls.open(path.with_name(named), manifest) if isinstance(named, str) and path.with_name(named).is_file() else None
        return cls(path, KINDS[path.suffix], entry=entry, source=source)

    @classmethod
    def from_graph(cls, path: Path, graph, manifest: dict | None = None) -> "Artifact":
        """The artifact at `path` whose header `graph` (an onnx.ModelProto) is already read."""
        from onnx.helper import tensor_dtype_to_np_dtype

        from .store import check_onnx_files
        from .layouts import layout_of

        entry = check_onnx_files(path, graph, manifest)
        meta = ArtifactMeta.from_props({p.key: p.value for p in graph.metadata_props}, path)
        first = graph.graph.input[0] if graph.graph.input else None
        dtype = np.dtype(tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type)).name if first else None
        layout = layout_of(meta.precision, meta.int8_layout, graph) if meta else None
        ins, outs = graph_io(graph)
        return cls(Path(path), "onnx", meta, first.name if first else None, dtype,
                   tuple(o.name for o in graph.graph.output), layout,
                   (tuple((n, t, tuple(d)) for n, t, d in ins), tuple((n, t, tuple(d)) for n, t, d in outs)), entry)

    @classmethod
    def of(cls, artifact: "str | Path | Artifact") -> "Artifact":
        """`artifact` itself, or the artifact at that path opened."""
        return artifact if isinstance(artifact, Artifact) else cls.open(artifact)

    @property
    def precision(self) -> str:
        """fp32, fp16, int8-tensorrt or int8-cpu (fp32 for files that declare none)."""
        return self.meta.precision if self.meta else "fp32"

    @property
    def form(self) -> str | None:
        return self.meta.form if self.meta else None

    def declared(self) -> ArtifactMeta:
        """Its metadata; BadInput (with the way to adopt it) for a file without vggdeploy metadata."""
        if self.meta is None:
            raise BadInput(f"{self.path} has no vggdeploy metadata", hint=ADOPT_HINT.format(path=self.path))
        return self.meta

    @property
    def variant(self):
        """The Variant it declares (architecture, preprocessing); BadInput as `declared`."""
        return self.declared().to_variant()

    @property
    def spec(self):
        """The FormSpec it declares (its input sizes), None for foreign files."""
        return self.meta.spec if self.meta else None


def described(artifact: "str | Path | Artifact") -> Artifact:
    """The ONNX artifact whose metadata describes `artifact`: itself, or the source its folder's
    manifest records for an engine (.plan) or an OpenVINO IR (.xml); BadInput if none is recorded."""
    from .errors import BadInput

    opened = Artifact.of(artifact)
    if opened.kind == "onnx":
        return opened
    if opened.kind == "other":
        from .filetypes import sniff

        what = sniff(opened.path) if opened.path.is_file() else None
        raise BadInput(f"{opened.path.name} is {what or 'not a model artifact'}"
                       + (", not a model artifact" if what else " (an ONNX .onnx, TensorRT .plan or OpenVINO .xml)"),
                       hint="a checkpoint goes to `vggdeploy export CHECKPOINT` first" if what and "torch" in what
                       else "give an ONNX artifact (.onnx), an engine (.plan) or an OpenVINO IR (.xml)")
    if opened.source is None:
        raise BadInput(f"{opened.path} is not in its folder's manifest.json",
                       hint=DERIVED_HINTS.get(opened.path.suffix, "give an ONNX artifact"))
    return opened.source
