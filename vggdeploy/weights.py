"""Where a model's weights come from: torchvision's ImageNet weights, a checkpoint file, or a seed.

A checkpoint with no variant name is matched against every configuration: the architecture
(config, BN, classes, classifier width, input channels) is read off its tensors' shapes.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .store import sha256_file
from .checkpoints import FOLDER_FILES, SUFFIXES, read_checkpoint
from .errors import BadInput, MissingEnvironment
from .models import VGG
from .sources import WeightsSource
from .variants import ASSETS, CONFIGS, VARIANTS, Variant, get_variant, layer_plan

@dataclass
class LoadedModel:
    variant: Variant
    model: VGG
    weights: str  # "imagenet", "random:SEED" or the checkpoint path
    weights_sha256: str
    inferred: str = ""  # what was read off a checkpoint, said to the user
    prefix: str | None = None  # the module prefix given for the checkpoint (None: found from its tensors)

    @property
    def folder_name(self) -> str:
        """Its default artifact folder under engines/: the variant's name for published or bundled
        weights, NAME-randomSEED for random ones, a checkpoint's name otherwise."""
        source = self.source
        if source.kind in ("imagenet", "bundled"):
            return self.variant.name
        if source.kind == "random":
            return f"{self.variant.name}-random{source.seed}"
        return checkpoint_name(Path(self.weights))

    @property
    def source(self) -> WeightsSource:
        return WeightsSource.parse(self.weights)


def load_model(name_or_path: str, weights: str | None = None, seed: int = 0, prefix: str | None = None) -> LoadedModel:
    """Build a VGG from a variant name or a checkpoint and load its weights.

    `name_or_path`: a variant name (`vgg16`, `D`, `vgg-mini`) or a checkpoint file or folder (see
    `checkpoints`), whose architecture is then read off its tensors. `weights`: for a variant,
    "imagenet", "bundled", "random" (with `seed`) or a checkpoint of that variant. `prefix`: the module
    prefix of the VGG inside a checkpoint that holds several. Raises BadInput (unreadable or
    mismatching checkpoints, unknown names) and MissingEnvironment (ImageNet weights not downloadable)."""
    path = Path(name_or_path)
    # a variant's name stays one where a folder of that name exists here (./NAME means the path)
    named = name_or_path in VARIANTS and os.sep not in name_or_path
    if not named and (path.suffix in SUFFIXES or path.exists()):
        if weights not in (None, "imagenet", str(path)):
            raise BadInput("give the checkpoint either as the model or as --weights, not both")
        return _from_checkpoint(path, None, prefix=prefix)
    variant = get_variant(name_or_path)
    weights = weights or ("imagenet" if variant.tv_weights else "bundled" if variant.bundled else None)
    if weights == "bundled":
        if not variant.bundled:
            raise BadInput(f"{variant.name} has no bundled weights", hint="only vgg-mini ships a checkpoint")
        return _from_checkpoint(ASSETS / variant.bundled, variant, label=str(WeightsSource("bundled", variant.bundled)))
    if weights is None:
        raise BadInput(f"{variant.name} has no published weights",
                       hint="pass --weights PATH (a checkpoint) or --weights random --seed N")
    if weights == "random":
        model = random_model(variant, seed)
        return LoadedModel(variant, model, str(WeightsSource("random", str(seed))), tensors_sha256(model.state_dict()))
    if weights == "imagenet":
        return _imagenet(variant)
    return _from_checkpoint(Path(weights), variant, prefix=prefix)


def _imagenet(variant: Variant) -> LoadedModel:
    if not variant.tv_weights:
        raise BadInput(f"{variant.name} has no ImageNet weights", hint="pass --weights PATH or --weights random")
    from torchvision.models import get_weight

    w = get_weight(variant.tv_weights)
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(w.url, str(cache), progress=True)
        except Exception as e:  # urllib raises several types for "no network"
            raise MissingEnvironment(
                f"cannot download {variant.name}'s ImageNet weights ({type(e).__name__}: {e})",
                hint=f"offline? put {cache.name} at {cache}, or pass --weights PATH or --weights random",
            ) from None
    loaded = _from_checkpoint(cache, variant, label="imagenet")
    expected = cache.stem.rsplit("-", 1)[-1]  # torchvision names its files NAME-<sha256 prefix>.pth
    if not loaded.weights_sha256.startswith(expected):
        cache.unlink()
        raise MissingEnvironment(f"{cache.name} is corrupt (sha256 {loaded.weights_sha256[:8]}..., expected {expected}...)",
                                 hint="removed it; run again to download it anew")
    return loaded


def _from_checkpoint(path: Path, variant: Variant | None, label: str | None = None,
                     prefix: str | None = None) -> LoadedModel:
    ckpt = read_checkpoint(path, prefix)
    sd, file = ckpt.state_dict, ckpt.file
    inferred = ckpt.mapping if label is None else ""
    named = variant is not None
    if variant is None:
        variant = infer_variant(sd, checkpoint_name(file))
        inferred += (f"; inferred config {variant.config}{' with BN' if variant.batch_norm else ''}, "
                     f"{variant.num_classes} classes, hidden {variant.hidden}, {variant.in_channels} input channel(s)")
    else:
        variant = _adapt_head(variant, sd)
    if variant.in_channels not in (1, 3):  # preprocessing, photos and parity speak gray or RGB
        raise BadInput(f"{file.name} takes {variant.in_channels} input channels; vggdeploy exports 1 (gray) or 3 (RGB)",
                       hint="reduce the first conv to 1 or 3 channels before exporting")
    model = VGG(variant)
    problems = _shape_mismatches(model.state_dict(), sd)
    if problems:
        raise BadInput(f"{file.name} does not match {variant.name}: {problems}",
                       hint="omit the variant name to infer the architecture from the checkpoint" if named
                       else "the checkpoint is incomplete, or holds layers a VGG does not have")
    model.load_state_dict(sd)
    return LoadedModel(variant, model.eval(), label or str(file), sha256_file(file), inferred, prefix)


def checkpoint_name(file: Path) -> str:
    """A checkpoint's name for its variant and default folder: a hub folder's name, else the file's stem."""
    return file.parent.name if file.name in FOLDER_FILES else file.stem


def _adapt_head(variant: Variant, sd: dict) -> Variant:
    """A fine-tuned checkpoint keeps the backbone but may change the number of classes."""
    last = sd.get("classifier.6.weight")
    return replace(variant, num_classes=last.shape[0]) if last is not None else variant


def _shape_mismatches(expected: dict, got: dict, limit: int = 3) -> str:
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    shapes = [f"{k} is {tuple(got[k].shape)}, expected {tuple(v.shape)}"
              for k, v in expected.items() if k in got and got[k].shape != v.shape]
    parts = shapes[:limit]
    if missing:
        parts.append(f"missing {', '.join(missing[:limit])}{' ...' if len(missing) > limit else ''}")
    if extra:
        parts.append(f"unexpected {', '.join(extra[:limit])}{' ...' if len(extra) > limit else ''}")
    return "; ".join(parts)


def _expected_backbone(config: str, bn: bool, in_channels: int) -> dict[str, tuple]:
    shapes, channels = {}, in_channels
    for s in layer_plan(config, bn, in_channels):
        if s.kind == "conv":
            shapes[f"features.{s.index}.weight"] = (s.out_channels, channels, s.kernel, s.kernel)
            shapes[f"features.{s.index}.bias"] = (s.out_channels,)
            channels = s.out_channels
        elif s.kind == "bn":
            for p in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"features.{s.index}.{p}"] = (s.out_channels,)
            shapes[f"features.{s.index}.num_batches_tracked"] = ()
    return shapes


def infer_variant(sd: dict[str, torch.Tensor], label: str) -> Variant:
    """Match the checkpoint's backbone against every config; the classifier gives the rest."""
    in_ch = sd["features.0.weight"].shape[1]
    got = {k: tuple(t.shape) for k, t in sd.items() if k.startswith("features.")}
    best, best_diff = None, None
    for config in CONFIGS:
        for bn in (False, True):
            want = _expected_backbone(config, bn, in_ch)
            diff = sorted(set(want.items()) ^ set(got.items()))
            if not diff:
                return _variant_for(config, bn, in_ch, sd, label)
            if best_diff is None or len(diff) < len(best_diff):
                best, best_diff = f"{config}{' with BN' if bn else ''}", diff
    shown = "; ".join(f"{k} {s}" for k, s in best_diff[:3])
    raise BadInput(f"{label} matches no VGG configuration; closest is {best}, which differs at: {shown}")


def _variant_for(config: str, bn: bool, in_ch: int, sd: dict, label: str) -> Variant:
    fc1, fc3 = sd["classifier.0.weight"], sd["classifier.6.weight"]
    # the network's last conv, by layer order (a state dict's key order is not: safetensors sorts it)
    last_channels = [t if isinstance(t, int) else t[0] for t in CONFIGS[config] if not isinstance(t, str)][-1]
    pool = math.isqrt(fc1.shape[1] // last_channels)
    if pool * pool * last_channels != fc1.shape[1]:
        raise BadInput(f"{label}: classifier.0.weight {tuple(fc1.shape)} fits no square pool of {last_channels} channels")
    # a named variant of this config lends its preprocessing (mini: MNIST; the rest: ImageNet)
    same = [v for v in VARIANTS.values() if v.config == config]
    template = next((v for v in same if v.batch_norm == bn), same[0] if same else Variant(label, config, bn))
    mean, std = template.mean, template.std
    if len(mean) != in_ch:  # e.g. a 1-channel model of an ImageNet config: the channel-average statistics
        mean, std = (tuple([sum(mean) / len(mean)] * in_ch), tuple([sum(std) / len(std)] * in_ch))
    return replace(template, name=label, batch_norm=bn, num_classes=fc3.shape[0], hidden=fc1.shape[0], pool=pool,
                   in_channels=in_ch, tv_weights=None, bundled=None, aliases=(), mean=mean, std=std)


def random_model(variant: Variant, seed: int) -> VGG:
    """torchvision's init, plus non-zero biases and BN statistics so that every parameter
    takes part in parity checks (an all-zero bias is dropped by the exporter's optimiser)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = VGG(variant)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.bias.normal_(0, 0.01, generator=g)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def tensors_sha256(sd: dict[str, torch.Tensor]) -> str:
    """For weights with no file: sha256 over the tensors' bytes in key order."""
    h = hashlib.sha256()
    for k, t in sd.items():
        h.update(k.encode())
        h.update(t.detach().contiguous().cpu().numpy().data)  # a buffer, not a 400 MB copy
    return h.hexdigest()
