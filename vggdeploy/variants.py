"""Every VGG as data: the paper's configurations, torchvision's eight, and a small trainable one.

A config is a tuple of tokens: an int is a 3x3 conv with that many output channels,
``(n, 1)`` a 1x1 conv (config C), ``"M"`` a 2x2 max pool, ``"LRN"`` local response
normalisation (config A-LRN). Module indices follow torchvision's ``make_layers`` so that
torchvision state dicts load unchanged.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .errors import BadInput

CONFIGS: dict[str, tuple] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "A-LRN": (64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "C": (64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M",
          512, 512, (512, 1), "M", 512, 512, (512, 1), "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    # DESIGN.md fact 11: trains on MNIST padded to 32x32 in under a minute on 2 cores.
    "mini": (16, "M", 32, "M", 64, 64, "M"),
}

ASSETS = Path(__file__).parent / "assets"  # checkpoints shipped with the package (Variant.bundled)

# ImageNet preprocessing as torchvision's VGG weights declare it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Variant:
    name: str
    config: str
    batch_norm: bool = False
    tv_weights: str | None = None  # torchvision weights enum entry, e.g. "VGG16_Weights.IMAGENET1K_V1"
    num_classes: int = 1000
    hidden: int = 4096  # width of FC1/FC2
    pool: int = 7  # adaptive pool output side: FC1 becomes a pool x pool conv in the dense form
    in_channels: int = 3
    image_size: int = 224  # classifier-form default input side
    resize: int = 256  # preprocessing: shorter side before the centre crop
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    dropout: float = 0.5
    bundled: str | None = None  # a checkpoint file in ASSETS
    aliases: tuple[str, ...] = field(default=())

    @property
    def layers(self) -> tuple:
        return CONFIGS[self.config]

    @property
    def stride(self) -> int:
        """Total down-sampling of the backbone (32 for the ImageNet VGGs)."""
        return 2 ** self.layers.count("M")

    @property
    def min_dense_size(self) -> int:
        """Smallest input side whose pool5 covers one FC1 window."""
        return self.stride * self.pool

    @property
    def weight_layers(self) -> int:
        return sum(1 for t in self.layers if t not in ("M", "LRN")) + 3


def _tv(depth: int, bn: bool, config: str) -> Variant:
    suffix = "_bn" if bn else ""
    enum = f"VGG{depth}{'_BN' if bn else ''}_Weights.IMAGENET1K_V1"
    return Variant(f"vgg{depth}{suffix}", config, bn, tv_weights=enum)


def _paper(config: str, bn: bool) -> Variant:
    return Variant(f"{config}{'-BN' if bn else ''}", config, bn)


VARIANTS: dict[str, Variant] = {
    v.name.lower(): v
    for v in [
        *(_tv(d, bn, c) for d, c in ((11, "A"), (13, "B"), (16, "D"), (19, "E")) for bn in (False, True)),
        *(_paper(c, bn) for c in ("A", "B", "C", "D", "E") for bn in (False, True)),
        _paper("A-LRN", False),
        Variant("vgg-mini", "mini", True, num_classes=10, hidden=128, pool=4, in_channels=1,
                image_size=32, resize=32, mean=(0.1307,), std=(0.3081,), dropout=0.2,
                bundled="vgg-mini-mnist.pth", aliases=("mnist",)),
        # trained with the paper's wide scale jitter (S in [32, 64], as 256-512 for 224 crops); its
        # single-scale test size is the middle, Q = 48 (sec. 4.1): where the test protocols matter
        Variant("vgg-mini-jitter", "mini", True, num_classes=10, hidden=128, pool=4, in_channels=1,
                image_size=32, resize=48, mean=(0.1307,), std=(0.3081,), dropout=0.2,
                bundled="vgg-mini-jitter-mnist.pth"),
    ]
}


def get_variant(name: str) -> Variant:
    """The Variant named `name`, case-insensitive: a torchvision name (vgg16_bn), the paper's
    configuration letter (D) or an alias. Raises BadInput with the closest names otherwise."""
    key = name.lower()
    for v in VARIANTS.values():
        if key == v.name.lower() or key in v.aliases:
            return v
    close = difflib.get_close_matches(key, list(VARIANTS), n=3, cutoff=0.4)
    hint = f"closest: {', '.join(VARIANTS[c].name for c in close)}" if close else "see `vggdeploy list`"
    raise BadInput(f"unknown variant {name!r}", hint=f"{hint} (or pass a checkpoint path)")


@dataclass(frozen=True)
class LayerSpec:
    index: int  # position in the torchvision `features` Sequential
    kind: str  # conv, bn, relu, pool, lrn
    tap: str  # conv1_1, relu1_1, pool1, ...
    out_channels: int = 0
    kernel: int = 0


@cache
def layer_plan(config: str, batch_norm: bool, in_channels: int = 3) -> tuple[LayerSpec, ...]:
    """The backbone, layer by layer, with torchvision indices and the usual tap names."""
    plan, index, stage, conv_in_stage = [], 0, 1, 0
    for token in CONFIGS[config]:
        if token == "M":
            plan.append(LayerSpec(index, "pool", f"pool{stage}"))
            index, stage, conv_in_stage = index + 1, stage + 1, 0
        elif token == "LRN":
            plan.append(LayerSpec(index, "lrn", f"lrn{stage}_{conv_in_stage}"))
            index += 1
        else:
            out, kernel = token if isinstance(token, tuple) else (token, 3)
            conv_in_stage += 1
            tag = f"{stage}_{conv_in_stage}"
            plan.append(LayerSpec(index, "conv", f"conv{tag}", out, kernel))
            if batch_norm:
                plan.append(LayerSpec(index + 1, "bn", f"bn{tag}", out))
            plan.append(LayerSpec(index + 1 + batch_norm, "relu", f"relu{tag}", out))
            index += 2 + batch_norm
    return tuple(plan)


def default_taps(v: Variant) -> list[str]:
    """Last ReLU of each stage (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 for VGG16)."""
    taps, last = [], None
    for spec in layer_plan(v.config, v.batch_norm, v.in_channels):
        if spec.kind == "relu":
            last = spec.tap
        elif spec.kind == "pool" and last:
            taps.append(last)
    return taps


def all_taps(v: Variant) -> list[str]:
    return [s.tap for s in layer_plan(v.config, v.batch_norm, v.in_channels)]


def cost(v: Variant, size: int | None = None) -> tuple[int, int]:
    """(trainable parameters, multiply-accumulates) of the classifier at size x size."""
    side = size or v.image_size
    channels, params, macs = v.in_channels, 0, 0
    for spec in layer_plan(v.config, v.batch_norm, v.in_channels):
        if spec.kind == "conv":
            k2 = spec.kernel * spec.kernel
            params += channels * spec.out_channels * k2 + spec.out_channels
            macs += channels * spec.out_channels * k2 * side * side
            channels = spec.out_channels
        elif spec.kind == "bn":
            params += 2 * spec.out_channels
        elif spec.kind == "pool":
            side //= 2
    for fan_in, fan_out in ((channels * v.pool * v.pool, v.hidden), (v.hidden, v.hidden), (v.hidden, v.num_classes)):
        params += fan_in * fan_out + fan_out
        macs += fan_in * fan_out
    return params, macs


def macs_at(v: Variant, form: str, h: int, w: int) -> int:
    """Multiply-accumulates of one input at h x w: the backbone at that size, plus the classifier
    once (classifier form), or once per score-map cell (dense form, FC layers as convolutions)."""
    c, macs = v.in_channels, 0
    for spec in layer_plan(v.config, v.batch_norm, v.in_channels):
        if spec.kind == "conv":
            macs += c * spec.out_channels * spec.kernel ** 2 * h * w
            c = spec.out_channels
        elif spec.kind == "pool":
            h, w = h // 2, w // 2
    head = c * v.pool * v.pool * v.hidden + v.hidden * v.hidden + v.hidden * v.num_classes
    if form == "classifier":
        return macs + head
    if form == "dense":
        return macs + head * max(h - v.pool + 1, 0) * max(w - v.pool + 1, 0)
    return macs


def peak_bytes(v: Variant, h: int, w: int, batch: int = 1) -> int:
    """Rough FP32 memory of one forward pass: the weights plus the largest input+output pair of
    activations (what a runtime holds at once in inference)."""
    params, _ = cost(v)
    c, peak = v.in_channels, 0
    for spec in layer_plan(v.config, v.batch_norm, v.in_channels):
        if spec.kind == "conv":
            peak = max(peak, (c + spec.out_channels) * h * w)
            c = spec.out_channels
        elif spec.kind == "pool":
            h, w = max(h // 2, 1), max(w // 2, 1)
    return 4 * (params + batch * peak)


# torchvision's published ImageNet-1K accuracy and file of each weights entry (its WeightsEnum meta),
# as data so that `vggdeploy list` needs no torchvision import; tests/test_variants.py checks it.
PUBLISHED = {
    "vgg11": (69.02, 88.628, "vgg11-8a719046.pth", 506.84),
    "vgg11_bn": (70.37, 89.81, "vgg11_bn-6002323d.pth", 506.881),
    "vgg13": (69.928, 89.246, "vgg13-19584684.pth", 507.545),
    "vgg13_bn": (71.586, 90.374, "vgg13_bn-abd245e5.pth", 507.59),
    "vgg16": (71.592, 90.382, "vgg16-397923af.pth", 527.796),
    "vgg16_bn": (73.36, 91.516, "vgg16_bn-6c64b313.pth", 527.866),
    "vgg19": (72.376, 90.876, "vgg19-dcbb9e9d.pth", 548.051),
    "vgg19_bn": (74.218, 91.842, "vgg19_bn-c79401a0.pth", 548.143),
}


def published_metrics(v: Variant) -> dict:
    """torchvision's published ImageNet top-1/top-5 and file, where weights exist."""
    if not v.tv_weights or v.name not in PUBLISHED:
        return {}
    top1, top5, file, size = PUBLISHED[v.name]
    return {"top1": top1, "top5": top5, "url": f"https://download.pytorch.org/models/{file}", "file_size_mb": size}


def variant_rows() -> list[dict]:
    """A row per variant, as `vggdeploy list` shows it: layers, parameters, MACs and FLOPs at its input
    size, torchvision's published top-1/top-5, and where its weights come from."""
    rows = []
    for v in VARIANTS.values():
        params, macs = cost(v)
        pub = published_metrics(v)
        rows.append({"name": v.name, "config": v.config, "bn": v.batch_norm, "weight_layers": v.weight_layers,
                     "params_m": round(params / 1e6, 2), "input": v.image_size, "gmacs": round(macs / 1e9, 2),
                     "gflops": round(2 * macs / 1e9, 2), "top1": pub.get("top1"), "top5": pub.get("top5"),
                     "weights": "imagenet" if v.tv_weights else ("train script" if v.config == "mini" else "-")})
    return rows
