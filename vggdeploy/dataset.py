"""Labelled images for evaluation: an ImageFolder tree (a folder per class, classes in sorted order,
as torchvision's ImageFolder) or a folder of images with a labels file (ImageNet validation style:
torchvision's class indices, 0-based)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput, printable

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
    """Samples of every image below folder (recursively, as `extract` finds them, sorted by their
    path inside it), labelled by `labels`: `LABEL` lines in that order, or `NAME LABEL` lines where
    NAME is the path inside folder or, where it is unique, the file name."""
    where = printable(str(labels))
    if not labels.is_file():
        raise BadInput(f"labels file {where} not found")
    images = list_images(folder)
    if not images:
        raise BadInput(f"{folder} has no images")
    root = Path(folder).resolve()
    inside = [p.relative_to(root).as_posix() for p in images]
    try:
        lines = [line.split() for line in labels.read_text().splitlines() if line.strip()]
        if lines and all(len(parts) == 2 for parts in lines):
            by_name = {name: int(label) for name, label in lines}
            names = [p.name for p in images]
            keys = [rel if rel in by_name or names.count(p.name) > 1 else p.name for rel, p in zip(inside, images)]
            missing = [k for k in keys if k not in by_name]
            if missing or len(by_name) != len(images):
                raise BadInput(f"{where} does not match the images below {folder}: "
                               f"{len(by_name)} labels, {len(images)} images"
                               + (f", no label for {printable(missing[0])}" if missing else ""),
                               hint="one NAME LABEL line per image; NAME: its path inside the folder (or its file name)")
            values = [by_name[k] for k in keys]
        else:
            values = [int(parts[0]) for parts in lines]
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{where}: labels must be whole numbers (torchvision class indices)") from None
    if values and min(values) < 0:
        raise BadInput(f"{where}: label {min(values)} is negative", hint="labels are 0-based class indices")
    if len(values) != len(images):
        raise BadInput(f"{where} has {len(values)} labels for {len(images)} images below {folder}",
                       hint="one label per image, in the sorted order of their paths (or NAME LABEL lines)")
    return [Sample(p, v) for p, v in zip(images, values)]


# Decoded-size bounds, judged from the header before any pixel is decoded: a 140-byte PNG can
# declare 20000x1 and a 1.6 MB TIFF 40960x40960 (README, Images)
MAX_PIXELS = 50_000_000
MAX_ASPECT = 50


def read_image(path: Path) -> np.ndarray:
    """HxWxC uint8 (C: 1 gray or 3 RGB) from any mode Pillow opens: palette (transparency dropped),
    gray+alpha, CMYK (Pillow's conversion), 16-bit (by the type's full range), 1-bit. An unreadable
    file, or one whose header declares more than MAX_PIXELS pixels or an aspect ratio beyond
    MAX_ASPECT, raises ValueError for the caller to count (eval, extract) or refuse (calibration)."""
    from PIL import Image

    name = printable(Path(path).name)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS or max(w, h) > MAX_ASPECT * max(1, min(w, h)) or not w * h:
                raise ValueError(f"{name} is {w}x{h}: beyond {MAX_PIXELS:,} pixels or a {MAX_ASPECT}:1 aspect ratio")
            if getattr(im, "n_frames", 1) > 1:
                raise ValueError(f"{name} is not a single 2-D image ({im.n_frames} pages or frames)")
            if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit gray: scaled by the type, not the image
                x = np.asarray(im, dtype=np.float64)
                x = x if im.mode == "F" else x / 65535.0
                return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)[..., None]
            gray = im.mode in ("1", "L", "LA", "La", "P") and _palette_is_gray(im)
            return np.array(im.convert("L"))[..., None] if gray else np.array(im.convert("RGB"))
    except ValueError as e:
        if str(e).startswith(name):
            raise
        raise ValueError(f"cannot decode {name} (ValueError)") from None
    except Exception as e:  # decoders raise anything on a damaged file (PIL: SyntaxError on a cut JPEG)
        raise ValueError(f"cannot decode {name} ({type(e).__name__})") from None


def _palette_is_gray(im) -> bool:
    if im.mode != "P":
        return True
    rgb = np.asarray(im.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())
