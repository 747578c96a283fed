"""Real inputs that work offline: photos bundled with scikit-image, preprocessed as torchvision does."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from .variants import Variant

# photos that ship inside the scikit-image wheel (no download): sizes 300x451 up to 1411x1411
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "retina", "stereo_motorcycle")


@cache
def sample_photos() -> tuple[tuple[str, np.ndarray], ...]:
    import skimage.data

    photos = []
    for name in SAMPLE_PHOTOS:
        img = getattr(skimage.data, name)()
        photos.append((name, img[0] if isinstance(img, tuple) else img))
    return tuple(photos)


def preprocess(img: np.ndarray, v: Variant, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> (C, h, w) float32: resize the shorter side, centre crop, normalise.

    At the variant's own size this is torchvision's recipe (resize 256, crop 224); other
    sizes scale the resize by the same ratio.
    """
    t = F.to_image(img[..., :3])
    if v.in_channels == 1:
        t = F.rgb_to_grayscale(t)
    t = resize_crop(t, v, size)
    t = F.normalize(F.to_dtype(t, torch.float32, scale=True), list(v.mean), list(v.std))
    return t.numpy()


def resize_crop(t: torch.Tensor, v: Variant, size: tuple[int, int]) -> torch.Tensor:
    """Resize the shorter side to `v.resize / v.image_size` of the crop's longer side, centre-crop to `size`."""
    h, w = size
    return F.center_crop(F.resize(t, round(max(h, w) * v.resize / v.image_size), antialias=True), [h, w])


def photo_batch(v: Variant, size: tuple[int, int], count: int | None = None, offset: int = 0) -> tuple[list[str], np.ndarray]:
    """`count` bundled photos (cycling) preprocessed to `size`: names and an (N, C, h, w) batch."""
    photos = sample_photos()
    count = count or len(photos)
    picked = [photos[(offset + i) % len(photos)] for i in range(count)]
    return [n for n, _ in picked], np.stack([preprocess(img, v, size) for _, img in picked])


def random_batch(v: Variant, size: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """Seeded standard-normal inputs (the scale of normalised images)."""
    return np.random.default_rng(seed).standard_normal((count, v.in_channels, *size), dtype=np.float32)
