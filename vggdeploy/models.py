"""Torch modules: a VGG built from a variant, and its dense and features forms."""

from __future__ import annotations

import torch
from torch import nn

from .errors import BadInput
from .forms import FORMS
from .variants import Variant, all_taps, layer_plan

class VGG(nn.Module):
    """Same module names as torchvision's VGG (features, avgpool, classifier)."""

    def __init__(self, v: Variant):
        super().__init__()
        self.variant = v
        layers, channels = [], v.in_channels
        for spec in layer_plan(v.config, v.batch_norm, v.in_channels):
            if spec.kind == "conv":
                layers.append(nn.Conv2d(channels, spec.out_channels, spec.kernel, padding=spec.kernel // 2))
                channels = spec.out_channels
            elif spec.kind == "bn":
                layers.append(nn.BatchNorm2d(spec.out_channels))
            elif spec.kind == "relu":
                layers.append(nn.ReLU(inplace=True))
            elif spec.kind == "pool":
                layers.append(nn.MaxPool2d(2, 2))
            elif spec.kind == "lrn":  # AlexNet's settings, as the paper uses them
                layers.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(v.pool)
        self.classifier = nn.Sequential(
            nn.Linear(channels * v.pool * v.pool, v.hidden), nn.ReLU(True), nn.Dropout(v.dropout),
            nn.Linear(v.hidden, v.hidden), nn.ReLU(True), nn.Dropout(v.dropout),
            nn.Linear(v.hidden, v.num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:  # torchvision's scheme
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class DenseVGG(nn.Module):
    """The paper's dense evaluation: FC1 as a pool x pool conv, FC2/FC3 as 1x1 convs.

    Returns the class score map (N, classes, H/32 - 6, W/32 - 6 for ImageNet VGGs) and its
    spatial mean. No adaptive pool: every score-map cell sees one 7x7 window of pool5.
    """

    def __init__(self, vgg: VGG):
        super().__init__()
        v = vgg.variant
        fc1, fc2, fc3 = (vgg.classifier[i] for i in (0, 3, 6))
        self.features = vgg.features
        self.head = nn.Sequential(
            _fc_as_conv(fc1, fc1.in_features // (v.pool * v.pool), v.pool), nn.ReLU(),
            _fc_as_conv(fc2, fc2.in_features, 1), nn.ReLU(),
            _fc_as_conv(fc3, fc3.in_features, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.head(self.features(x))
        return scores, scores.mean(dim=(2, 3))


def _fc_as_conv(fc: nn.Linear, channels: int, k: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, fc.out_features, k, device="meta")
    # torch flattens (C, H, W), so the reshape is exact; a view shares FC1's 400 MB, no copy
    conv.weight = nn.Parameter(fc.weight.detach().reshape(fc.out_features, channels, k, k))
    conv.bias = nn.Parameter(fc.bias.detach())
    return conv


class FeaturesVGG(nn.Module):
    """The conv backbone up to the deepest tap; returns the taps in the order asked."""

    def __init__(self, vgg: VGG, taps: list[str]):
        super().__init__()
        known = {s.tap: s.index for s in layer_plan(vgg.variant.config, vgg.variant.batch_norm)}
        unknown = [t for t in taps if t not in known]
        if unknown or not taps:
            raise BadInput(
                f"unknown tap(s) {', '.join(unknown) or '(none given)'} for {vgg.variant.name}",
                hint=f"choose from: {', '.join(all_taps(vgg.variant))}",
            )
        self.taps = list(taps)
        self.indices = [known[t] for t in taps]
        # inplace ReLUs would overwrite a conv tap before it is returned
        self.features = nn.Sequential(
            *(nn.ReLU() if isinstance(m, nn.ReLU) else m for m in vgg.features[: max(self.indices) + 1])
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.indices:
                out[i] = x
        return tuple(out[i] for i in self.indices)


def build_form(vgg: VGG, form: str, taps: list[str] | None = None) -> nn.Module:
    """`vgg` (put in eval mode) as the torch module of `form`: itself for "classifier", a
    DenseVGG (FC layers as convolutions, sharing their weights) for "dense", a FeaturesVGG returning
    `taps` for "features". Raises BadInput for an unknown form or tap."""
    vgg.eval()
    if form == "classifier":
        return vgg
    if form == "dense":
        return DenseVGG(vgg).eval()
    if form == "features":
        return FeaturesVGG(vgg, taps or []).eval()
    raise BadInput(f"unknown form {form!r}", hint=f"choose from: {', '.join(FORMS)}")


def output_names(form: str, taps: list[str] | None = None) -> list[str]:
    return {"classifier": ["logits"], "dense": ["score_map", "logits"], "features": list(taps or [])}[form]
