"""What each form accepts: a fixed size (classifier) or a minimum size (dense, features).

No torch here: runners read these rules from an artifact's metadata to check their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput
from .variants import Variant, default_taps, layer_plan, peak_bytes

FORMS = ("classifier", "dense", "features")


@dataclass(frozen=True)
class FormSpec:
    """What one exported form accepts: a fixed size (classifier) or a minimum (dense, features)."""

    form: str
    size: tuple[int, int]  # classifier: the fixed size; others: the example size used for export
    min_size: int
    stride: int
    taps: tuple[str, ...] = ()

    @property
    def dynamic_hw(self) -> bool:
        return self.form != "classifier"

    def input_sizes(self) -> dict:
        if self.dynamic_hw:
            return {"min": [self.min_size, self.min_size], "stride": self.stride}
        return {"fixed": list(self.size)}

    def check_size(self, h: int, w: int) -> None:
        if not self.dynamic_hw and (h, w) != tuple(self.size):
            raise BadInput(f"the {self.form} form takes {self.size[0]}x{self.size[1]} only, got {h}x{w}",
                           hint="use the dense or features form for other sizes")
        if min(h, w) < self.min_size:
            raise BadInput(f"{h}x{w} is too small for the {self.form} form (minimum {self.min_size}x{self.min_size})")


def form_spec(v: Variant, form: str, size: tuple[int, int] | None = None, taps: list[str] | None = None) -> FormSpec:
    """The FormSpec of `form` ("classifier", "dense" or "features") for variant `v`: its export size
    (default: the variant's), whether H and W are dynamic, its smallest input and, for the features
    form, its taps (default: the last ReLU of each stage). Raises BadInput for an unknown form or tap.
    """
    if form not in FORMS:
        raise BadInput(f"unknown form {form!r}", hint=f"choose from: {', '.join(FORMS)}")
    taps = tuple(taps or default_taps(v)) if form == "features" else ()
    repeated = sorted({t for t in taps if taps.count(t) > 1})
    if repeated:
        raise BadInput(f"tap(s) {', '.join(repeated)} given more than once", hint="name each tap once: one output per tap")
    if form == "classifier":
        min_size = v.stride  # pool5 must keep at least one cell; the adaptive pool does the rest
    elif form == "dense":
        min_size = v.min_dense_size  # pool5 must hold one full FC1 window
    else:
        plan = {s.tap: s.index for s in layer_plan(v.config, v.batch_norm)}
        deepest = max((plan[t] for t in taps if t in plan), default=0)
        min_size = 2 ** sum(1 for s in layer_plan(v.config, v.batch_norm) if s.kind == "pool" and s.index <= deepest)
    default = (v.image_size, v.image_size) if form == "classifier" else (v.min_dense_size + v.stride, v.min_dense_size + 2 * v.stride)
    spec = FormSpec(form, tuple(size or default), min_size, v.stride, taps)
    if min(spec.size) < min_size:
        raise BadInput(f"{spec.size[0]}x{spec.size[1]} is too small for the {form} form of {v.name} "
                       f"(minimum {min_size}x{min_size})")
    return spec


def check_memory(v: Variant, size: tuple[int, int], batch: int = 1, share: float = 0.8) -> None:
    """Refuse, before any allocation, a size and batch whose forward pass would not fit in memory."""
    import psutil

    need, have = peak_bytes(v, *size, batch), psutil.virtual_memory().available
    if need > share * have:
        raise BadInput(f"{v.name} at {size[0]}x{size[1]}, batch {batch} needs about {need / 2**30:.1f} GiB; "
                       f"{have / 2**30:.1f} GiB of memory is available", hint="use a smaller size or batch")


MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 18  # the dynamo exporter starts at 18; ORT 1.32 runs <= 23


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"opset {opset} is not supported", hint=f"choose {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
