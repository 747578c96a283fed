"""An image as an artifact takes it: decoded, in the artifact's colour, resized, centre-cropped (or
resized to the input size for a model adopted with `--resize-only`) and normalised, as its metadata
declares. The one implementation behind predict, eval, extract and the accuracy budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import read_image
from .errors import BadInput


def image_array(image) -> np.ndarray:
    """HxWxC uint8 from a path or an array (HxW, HxWx1, HxWx3 or HxWx4, uint8 or float in 0-1)."""
    if isinstance(image, (str, Path)):
        return read_image(Path(image))
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4) or not x.size:
        raise BadInput(f"an image array must be HxW or HxWxC with 1, 3 or 4 channels, not shape {x.shape}")
    if x.dtype != np.uint8:
        if x.dtype.kind != "f":
            raise BadInput(f"an image array must be uint8 or float (0-1), not {x.dtype}")
        x = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    return x[..., :3]


def to_tensor(img: np.ndarray, pre: dict):
    """CxHxW uint8 tensor in the artifact's colour (gray or RGB)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    t = torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(2, 0, 1)
    if pre["color"] == "gray" and t.shape[0] == 3:
        t = F.rgb_to_grayscale(t)
    elif pre["color"] == "RGB" and t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t


def normalise(t, pre: dict) -> np.ndarray:
    import torch
    from torchvision.transforms.v2 import functional as F

    return F.normalize(F.to_dtype(t, torch.float32, scale=True), list(pre["mean"]), list(pre["std"])).numpy()


def center_view(t, pre: dict) -> np.ndarray:
    """The single view a classifier takes: (C, crop, crop) float32."""
    from torchvision.transforms.v2 import functional as F

    crop = pre["crop"]
    if pre.get("resize_only"):  # the model's own recipe: the whole image squeezed to the input size
        return normalise(F.resize(t, [crop, crop], antialias=True), pre)
    return normalise(F.center_crop(F.resize(t, pre["resize"], antialias=True), [crop, crop]), pre)


def center_input(image, pre: dict) -> np.ndarray:
    """One image (a path or an array) under preprocessing `pre` (an artifact's metadata): (C, H, W)."""
    return center_view(to_tensor(image_array(image), pre), pre)


__all__ = ["center_input", "center_view", "image_array", "normalise", "to_tensor"]
