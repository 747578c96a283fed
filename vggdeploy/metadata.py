"""The `vggdeploy.*` metadata an ONNX artifact carries: every key, its type and its check, in one place.

ONNX metadata_props are strings: tables and lists are stored as JSON, names as they are.
`ArtifactMeta.from_props` reads them (and checks a vggdeploy artifact's against the schema, so an
edited or damaged file is refused naming the key), `to_props` writes them. The C++ example, generated
Triton `model.py` files and engines' manifest entries read the same keys; artifacts written before an
optional key existed still read (the field keeps its default).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput, printable
from .preprocessing import Preprocessing
from .sources import WeightsSource

PREFIX = "vggdeploy."
PRECISIONS = ("fp32", "fp16", "int8-tensorrt", "int8-cpu")


def _count(x, top: int = 16384) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 < x <= top


def _size(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(_count(i) for i in x)


def _numbers(x) -> bool:
    return isinstance(x, list) and 1 <= len(x) <= 4 and all(isinstance(i, (int, float)) and not isinstance(i, bool)
                                                            and np.isfinite(i) for i in x)


def _names(x) -> bool:
    return isinstance(x, list) and all(isinstance(t, str) for t in x)


def _preprocessing(x) -> bool:
    return (isinstance(x, dict) and _numbers(x.get("mean")) and _numbers(x.get("std"))
            and len(x["mean"]) == len(x["std"]) and all(s > 0 for s in x["std"])
            and _count(x.get("crop")) and _count(x.get("resize")))


def _input_sizes(x) -> bool:
    return isinstance(x, dict) and (_size(x.get("fixed")) or (_size(x.get("min")) and _count(x.get("stride"))))


def _config(x) -> bool:
    from .variants import CONFIGS

    return isinstance(x, str) and x in CONFIGS


# field: (required, check of the decoded value, what it must be); fields not listed
# (version, weights, calibration, ...) are written by vggdeploy and only shown or passed on
ADOPTED_NO_EAGER = "an adopted ONNX has no PyTorch model behind it to run eagerly"
SCHEMA = {
    "form": (True, lambda x: x in ("classifier", "dense", "features"), "classifier, dense or features"),
    "variant": (True, lambda x: isinstance(x, str) and 0 < len(x) <= 128, "a name"),
    "config": (True, _config, "a known VGG configuration"),
    "batch_norm": (True, lambda x: isinstance(x, bool), "true or false"),
    "num_classes": (True, lambda x: _count(x, 1_000_000), "a positive whole number"),
    "input_sizes": (True, _input_sizes, "{fixed: [H, W]} or {min: [H, W], stride: N}"),
    "preprocessing": (True, _preprocessing, "a table with mean, std (1-4 numbers), crop and resize"),
    "precision": (False, lambda x: x in PRECISIONS, ", ".join(PRECISIONS[:-1]) + " or " + PRECISIONS[-1]),
    "taps": (False, _names, "a list of names"),
    "head": (False, lambda x: isinstance(x, dict) and set(x) == {"pool", "hidden"} and all(_count(i) for i in x.values()),
             "{pool: N, hidden: N} (the classifier's window and width)"),
    "class_names": (False, _names, "a list of names"),
}
JSON_FIELDS = {"batch_norm", "num_classes", "input_sizes", "preprocessing", "taps", "head", "class_names",
               "fp32_nodes", "calibration", "adopted"}


@dataclass(frozen=True)
class ArtifactMeta:
    """What a vggdeploy artifact declares: its form and architecture (`variant` is the variant's name,
    `config` its layer configuration), preprocessing, input sizes, precision, and how it was made."""

    form: str
    variant: str
    config: str
    batch_norm: bool
    num_classes: int
    input_sizes: dict
    preprocessing: Preprocessing
    precision: str = "fp32"
    taps: tuple[str, ...] | None = None  # the features form's outputs
    head: dict | None = None  # {pool, hidden}: FC1's window and width, when not the ImageNet VGGs' 7 and 4096
    class_names: tuple[str, ...] | None = None
    version: str | None = None  # of vggdeploy that wrote it
    weights: str | None = None  # imagenet, random:SEED, bundled:..., a checkpoint path, adopted:FILE
    weights_sha256: str | None = None
    weights_prefix: str | None = None
    io: str | None = None  # an FP16 artifact's input/output type
    fp32_nodes: tuple[str, ...] | None = None  # nodes FP16/INT8 left in float
    calibration: dict | None = None
    int8_layout: str | None = None
    int8_exact_on: str | None = None
    adopted: dict | None = None  # what the user stated when adopting a foreign ONNX

    @property
    def is_adopted(self) -> bool:
        """Adopted from a foreign ONNX: no checkpoint behind it to rebuild eager PyTorch from (the
        `adopted` record; artifacts adopted before that record existed say it in `weights` only)."""
        return self.adopted is not None or (self.weights is not None and not WeightsSource.parse(self.weights).rebuildable)

    @classmethod
    def from_props(cls, props: Mapping[str, str], path: Path | str = "the artifact") -> "ArtifactMeta | None":
        """The metadata in ONNX `props` ({key: string}); None when they hold no vggdeploy form (a
        foreign file). Raises BadInput naming the file and the key when a value is missing or wrong."""
        if PREFIX + "form" not in props:
            return None
        values = {}
        for f in dataclasses.fields(cls):
            raw = props.get(PREFIX + f.name)
            if raw is None:
                continue
            try:
                values[f.name] = json.loads(raw) if f.name in JSON_FIELDS else raw
            except json.JSONDecodeError:
                values[f.name] = raw  # judged below, or passed on as written
        for name, (required, ok, want) in SCHEMA.items():
            if name not in values and not required:
                continue
            if name not in values or not ok(values[name]):
                what = "is missing" if name not in values else f"is {printable(repr(values[name]))[:60]}"
                raise BadInput(f"{Path(path).name}: metadata {PREFIX}{name} {what}; it must be {want}",
                               hint="the artifact was edited or damaged: re-export it")
        for name in ("taps", "class_names", "fp32_nodes"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        values["preprocessing"] = Preprocessing.from_table(values["preprocessing"])
        return cls(**values)

    def to_props(self) -> dict[str, str]:
        """The ONNX metadata_props that declare it (fields left at None are not written)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Preprocessing):
                value = value.to_table()
            if f.name in JSON_FIELDS:
                value = json.dumps(list(value) if isinstance(value, tuple) else value)
            out[PREFIX + f.name] = str(value)
        return out

    def replace(self, **changes) -> "ArtifactMeta":
        """A copy with `changes` (e.g. precision="fp16" for a derived artifact)."""
        return dataclasses.replace(self, **changes)

    @property
    def spec(self):
        """The FormSpec it declares: form, input sizes, taps."""
        from .forms import FormSpec

        sizes = self.input_sizes
        fixed = tuple(sizes["fixed"]) if "fixed" in sizes else None
        return FormSpec(self.form, fixed or tuple(sizes["min"]), min(fixed) if fixed else sizes["min"][0],
                        sizes.get("stride", 1), tuple(self.taps or ()))

    def to_variant(self):
        """The Variant it declares: architecture and preprocessing."""
        from .variants import Variant

        pre = self.preprocessing
        dense_pool = self.input_sizes["min"][0] // self.input_sizes["stride"] if self.form == "dense" else 7
        return Variant(self.variant, self.config, self.batch_norm, num_classes=self.num_classes,
                       in_channels=len(pre.mean), image_size=pre.crop, resize=pre.resize,
                       mean=pre.mean, std=pre.std, **(self.head or {"pool": dense_pool}))
