"""Real inputs that work offline: photos bundled with scikit-image, preprocessed as a variant declares
(torchvision's recipe for the ImageNet VGGs)."""

from __future__ import annotations

from functools import cache

import numpy as np

from .preprocessing import Preprocessing
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


def photo_batch(v: Variant, size: tuple[int, int], count: int | None = None, offset: int = 0,
                pre: Preprocessing | None = None) -> tuple[list[str], np.ndarray]:
    """`count` bundled photos (cycling) preprocessed to `size` by `pre` (default: the variant's own):
    names and an (N, C, h, w) batch."""
    photos = sample_photos()
    count = count or len(photos)
    picked = [photos[(offset + i) % len(photos)] for i in range(count)]
    pre = pre or Preprocessing.of_variant(v)
    return [n for n, _ in picked], np.stack([pre(img, size) for _, img in picked])


def random_batch(v: Variant, size: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """Seeded standard-normal inputs (the scale of normalised images)."""
    return np.random.default_rng(seed).standard_normal((count, v.in_channels, *size), dtype=np.float32)
