"""Labelled images for evaluation: an ImageFolder tree (a folder per class, classes in sorted order,
as torchvision's ImageFolder) or a folder of images with a labels file (ImageNet validation style:
torchvision's class indices, 0-based)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput

LABELS_FILE = "labels.txt"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_images(folder: Path) -> list[Path]:
    """Every image below folder (recursive), sorted, as absolute paths (workers elsewhere get them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder")
    return sorted(p.resolve() for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_dataset(folder: Path, labels: Path | None = None) -> tuple[list[Sample], list[str] | None]:
    """(samples, class names or None). Labels file lines: `LABEL` (images in sorted name order) or
    `NAME LABEL`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder")
    labels = labels or (folder / LABELS_FILE if (folder / LABELS_FILE).is_file() else None)
    if labels is not None:
        return _with_labels_file(folder, Path(labels)), None
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    samples = [Sample(img, i) for i, c in enumerate(classes) for img in _images(folder / c)]
    if not samples:
        loose = _images(folder)
        raise BadInput(f"{folder} has {'unlabelled images' if loose else 'no images'}",
                       hint="give a folder per class (ImageFolder), or images with a labels.txt / --labels file")
    return samples, classes


def _with_labels_file(folder: Path, labels: Path) -> list[Sample]:
    if not labels.is_file():
        raise BadInput(f"labels file {labels} not found")
    images = _images(folder)
    if not images:
        raise BadInput(f"{folder} has no images")
    try:
        lines = [line.split() for line in labels.read_text().splitlines() if line.strip()]
        if all(len(parts) == 2 for parts in lines):
            by_name = {name: int(label) for name, label in lines}
            missing = [p.name for p in images if p.name not in by_name]
            if missing or len(by_name) != len(images):
                raise BadInput(f"{labels.name} does not match the images in {folder}: "
                               f"{len(by_name)} labels, {len(images)} images"
                               + (f", no label for {missing[0]}" if missing else ""))
            values = [by_name[p.name] for p in images]
        else:
            values = [int(parts[0]) for parts in lines]
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{labels.name}: labels must be whole numbers (torchvision class indices)") from None
    if values and min(values) < 0:
        raise BadInput(f"{labels.name}: label {min(values)} is negative", hint="labels are 0-based class indices")
    if len(values) != len(images):
        raise BadInput(f"{labels.name} has {len(values)} labels for {len(images)} images in {folder}",
                       hint="one label per image, in sorted file-name order (or NAME LABEL lines)")
    return [Sample(p, v) for p, v in zip(images, values)]


def read_image(path: Path) -> np.ndarray:
    """HxWxC uint8 (C: 1 gray, 2 gray+alpha, or 3 RGB): an unreadable file raises ValueError for the
    caller to count (eval, extract) or refuse (calibration)."""
    import skimage.io

    try:
        img = skimage.io.imread(path)
    except Exception as e:  # decoders raise anything on a damaged file (PIL: SyntaxError on a cut JPEG)
        raise ValueError(f"cannot decode {Path(path).name} ({type(e).__name__})") from None
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or not img.size:
        raise ValueError(f"{Path(path).name} is not a single 2-D image (shape {img.shape})")
    if img.dtype != np.uint8:  # 16-bit or float: by the type's full range, not the image's own maximum
        top = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else 1.0
        img = (np.clip(img / top, 0, 1) * 255).round().astype(np.uint8)
    return img[..., :3]
