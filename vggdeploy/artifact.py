"""An artifact opened once: what runners and stages need to know about an ONNX file, read in one pass.

`Artifact.open(path)` parses the graph's header (never its weights), checks its side files and its
metadata, and keeps the answers; `Artifact.of(path_or_artifact)` accepts either, so a path still
works everywhere (`make_runner(backend, "engines/vgg16/classifier.onnx")`). Frozen and picklable: no
protobuf inside. A foreign ONNX opens too (empty `meta`); engines and OpenVINO IRs open as files of
their kind (their facts live elsewhere: the engine's manifest entry, the IR's source ONNX).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = {".onnx": "onnx", ".plan": "plan", ".xml": "openvino-ir"}


@dataclass(frozen=True)
class Artifact:
    """One artifact file: its path and kind, its vggdeploy metadata (`meta`, {} for foreign files),
    its graph's input (name and element type) and output names, and an INT8 artifact's layout."""

    path: Path
    kind: str
    meta: dict
    input_name: str | None = None
    input_dtype: str | None = None
    outputs: tuple[str, ...] = ()
    int8_layout: str | None = None

    @classmethod
    def open(cls, path: str | Path) -> "Artifact":
        """The single read: the ONNX header (side files and metadata checked, BadInput naming the
        file otherwise); other kinds by their suffix alone."""
        from onnx.helper import tensor_dtype_to_np_dtype

        from .inspect import checked_metadata, load_graph
        from .layouts import layout_of

        path = Path(path)
        if path.suffix != ".onnx":
            return cls(path, KINDS.get(path.suffix, "other"), {})
        graph = load_graph(path)
        meta = checked_metadata(path, graph)
        first = graph.graph.input[0] if graph.graph.input else None
        dtype = np.dtype(tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type)).name if first else None
        return cls(path, "onnx", meta, first.name if first else None, dtype,
                   tuple(o.name for o in graph.graph.output), layout_of(meta, graph))

    @classmethod
    def of(cls, artifact: "str | Path | Artifact") -> "Artifact":
        """`artifact` itself, or the artifact at that path opened."""
        return artifact if isinstance(artifact, Artifact) else cls.open(artifact)

    @property
    def precision(self) -> str:
        """fp32, fp16, int8-tensorrt or int8-cpu (fp32 for files that declare none)."""
        return str(self.meta.get("vggdeploy.precision", "fp32"))

    @property
    def form(self) -> str | None:
        return self.meta.get("vggdeploy.form")

    @property
    def variant(self):
        """The Variant it declares (architecture, preprocessing); BadInput for a file without vggdeploy
        metadata."""
        from .errors import BadInput
        from .inspect import ADOPT_HINT, variant_from_metadata

        if self.form is None:
            raise BadInput(f"{self.path} has no vggdeploy metadata", hint=ADOPT_HINT.format(path=self.path))
        return variant_from_metadata(self.meta)

    @property
    def spec(self):
        """The FormSpec it declares (its input sizes), None for foreign files."""
        from .forms import spec_from_metadata

        return spec_from_metadata(self.meta)
