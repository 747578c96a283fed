"""Calibration data: an image folder, .npy/.npz tensors, or the bundled photos, as batches.

Images are preprocessed as the model's own metadata says. The dense and features forms
calibrate at several input sizes; batches of one size come together so that ORT's histogram
calibrators (which stack a chunk's tensors) never see mixed shapes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import SAMPLE_PHOTOS, photo_batch
from .dataset import IMAGE_SUFFIXES, read_image
from .errors import BadInput, MissingEnvironment
from .preprocessing import Preprocessing
from .variants import Variant

log = logging.getLogger("vggdeploy")

BATCH = 8
BATCH_PIXELS = 1 << 16  # one 224x224 input: ORT's calibration session keeps the arena its largest batch grew


@dataclass
class CalibrationSet:
    source: str
    sizes: list[tuple[int, int]]
    chunks: list[Sequence[np.ndarray]]  # one chunk of batches per input size (a folder's: decoded when read)
    count: int  # inputs per size
    available: int  # inputs the source has
    digest: str = ""  # a folder's: over its files' bytes (hashing decoded batches would decode it all again)

    @property
    def sha256(self) -> str:
        if self.digest:
            return self.digest
        h = hashlib.sha256()
        for chunk in self.chunks:
            for b in chunk:
                h.update(np.ascontiguousarray(b).data)
        return h.hexdigest()

    @property
    def batches(self) -> Sequence[np.ndarray]:
        return _Chain(self.chunks)

    @property
    def stride(self) -> int:
        """Batches per collection step of ORT's calibrators: within one size, at most 64 inputs
        (they keep a step's activations in memory), dividing a size's batches evenly."""
        n, per_batch = len(self.chunks[0]), len(self.chunks[0][0])
        return max(k for k in range(1, n + 1) if n % k == 0 and k * per_batch <= max(64, per_batch))


class _Chain(Sequence):
    """The chunks' batches as one sequence, read on demand."""

    def __init__(self, chunks: list[Sequence[np.ndarray]]):
        self.chunks = chunks

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def __getitem__(self, i: int) -> np.ndarray:
        for chunk in self.chunks:
            if 0 <= i < len(chunk):
                return chunk[i]
            i -= len(chunk)
        raise IndexError(i)


class _FolderBatches(Sequence):
    """One input size's batches of image files, decoded and preprocessed when read: a folder of
    any size is calibrated in the memory of one batch."""

    def __init__(self, files: list[Path], pre: Preprocessing, size: tuple[int, int], batch: int):
        self.files, self.pre, self.size, self.batch = files, pre, size, batch

    def __len__(self) -> int:
        return len(self.files) // self.batch

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return np.stack([self.pre(_read(f), self.size) for f in self.files[i * self.batch:(i + 1) * self.batch]])


def calibration_sizes(v: Variant, form: str, fixed: tuple[int, int] | None, min_size: int) -> list[tuple[int, int]]:
    if form == "classifier":
        return [fixed]
    m = max(min_size, v.min_dense_size if form == "dense" else v.image_size)
    return [(m, m), (m + v.stride, m + 3 * v.stride), (m + 2 * v.stride, m + v.stride)]


def load_calibration(source: str | None, v: Variant, sizes: list[tuple[int, int]], count: int | None,
                     min_size: int, pre: Preprocessing | None = None) -> CalibrationSet:
    """`count` inputs per size (default: all) from `source` (None or 'samples', an image folder, a
    .npy/.npz file), images preprocessed by `pre` (default: the variant's own). BadInput where the
    source is missing, short or unreadable."""
    pre = pre or Preprocessing.of_variant(v)
    if source in (None, "samples"):
        if v.config == "mini" and v.in_channels == 1:  # the model trained on bundled digits calibrates on them
            from .mnist import TRAIN

            _check_count(TRAIN, count, "samples (MNIST training digits)")
            n = count or 256
            chunks = [_batches(_digits(n, hw, v, classifier=len(sizes) == 1), sizes) for hw in sizes]
            return CalibrationSet("samples (MNIST training digits)", sizes, chunks, n, TRAIN)
        log.warning("calibrating on the 8 bundled sample photos: a small sample; pass --calib DIR for real data")
        _check_count(len(SAMPLE_PHOTOS), count, "samples (bundled photos)")
        return _photo_set(v, sizes, count or len(SAMPLE_PHOTOS), pre)
    path = Path(source)
    if path.is_dir():
        return _from_folder(path, v, sizes, count, pre)
    if path.suffix in (".npy", ".npz"):
        return _from_tensors(path, v, count, min_size, fixed=sizes[0] if len(sizes) == 1 else None)
    raise BadInput(f"calibration source {source!r} not found or not supported",
                   hint="give an image folder, a .npy/.npz file of (N, C, H, W) float32, or 'samples'")


def probe_samples(v: Variant, sizes: list[tuple[int, int]]) -> CalibrationSet:
    """Inputs a diagnostic (FP16's per-layer error) is measured on: the default calibration set, or
    the bundled photos where that set's data is not installed (FP16 itself needs no labelled data)."""
    try:
        return load_calibration(None, v, sizes, None, 0)
    except MissingEnvironment:
        return _photo_set(v, sizes, len(SAMPLE_PHOTOS))


def _photo_set(v: Variant, sizes: list[tuple[int, int]], n: int, pre: Preprocessing | None = None) -> CalibrationSet:
    """`n` bundled photos (cycling) at each size."""
    return CalibrationSet("samples", sizes, [_batches(photo_batch(v, hw, n, pre=pre)[1], sizes) for hw in sizes], n,
                          len(SAMPLE_PHOTOS))


def _digits(n: int, size: tuple[int, int], v: Variant, classifier: bool) -> np.ndarray:
    """Training digits as the model sees them: the classifier's centre crop, or whole digits at
    each size for the dense and features forms (the dense protocol's whole image at scale Q)."""
    import torch

    from .mnist import center, split

    x = split()["train_x"][:n]
    if classifier:
        return center(x, v, size)
    if tuple(x.shape[2:]) != tuple(size):
        x = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear").numpy()
    return x


def _batch_size(n: int, sizes: list[tuple[int, int]]) -> int:
    """One batch size for every size (ORT's histogram calibrators stack a step's batches: a short last one
    breaks them), of at most BATCH inputs and BATCH_PIXELS pixels an input plane (VGG16's dense form at
    three sizes: ORT's calibration peaked at 4.0 GB with 8 photos a batch, 2.9 GB with 1, in the same time)."""
    pixels = max(h * w for h, w in sizes)
    return next(b for b in (BATCH, 4, 2, 1) if n % b == 0 and (b == 1 or b * pixels <= BATCH_PIXELS))


def _batches(x: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    size = _batch_size(len(x), sizes)
    return [x[i:i + size] for i in range(0, len(x), size)]


def _read(f: Path) -> np.ndarray:
    """HxWx3 uint8, decoded by the same rule as `eval` and `extract` read their images (dataset.read_image)."""
    try:
        img = read_image(f)
    except ValueError as e:
        raise BadInput(f"cannot read image {f}: {e}") from None
    return np.repeat(img[..., :1], 3, -1) if img.shape[2] < 3 else img


def _from_folder(path: Path, v: Variant, sizes, count: int | None, pre: Preprocessing) -> CalibrationSet:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"no images in {path}", hint=f"looked for {', '.join(sorted(IMAGE_SUFFIXES))}, recursively")
    _check_count(len(files), count, path)
    available, files = len(files), files[: count or len(files)]
    h = hashlib.sha256()
    for f in files:  # every image decoded once now: a bad one is refused before any work, not mid-quantization
        _read(f)
        h.update(f.read_bytes())
    h.update(repr((pre.mean, pre.std, pre.resize, pre.crop, len(pre.mean), sizes, *(("resize-only",) if pre.resize_only else ())))
             .encode())
    batch = _batch_size(len(files), sizes)
    chunks = [_FolderBatches(files, pre, hw, batch) for hw in sizes]
    return CalibrationSet(str(path), sizes, chunks, len(files), available, h.hexdigest())


def _from_tensors(path: Path, v: Variant, count: int | None, min_size: int, fixed) -> CalibrationSet:
    if not path.is_file():
        raise BadInput(f"calibration file {path} not found")
    try:
        loaded = np.load(path)
        named = {k: loaded[k] for k in loaded.files} if isinstance(loaded, np.lib.npyio.NpzFile) else {"array": loaded}
    except Exception as e:
        raise BadInput(f"cannot read {path}: {type(e).__name__}: {e}") from None
    arrays = list(named.values())
    if not arrays:
        raise BadInput(f"{path.name} holds no arrays", hint="save (N, C, H, W) float32 tensors in it")
    for key, a in named.items():
        if a.dtype != np.float32 or a.ndim != 4 or a.shape[1] != v.in_channels:
            raise BadInput(f"{path.name}: tensors must be float32 (N, {v.in_channels}, H, W); got {a.dtype} {a.shape}")
        if not len(a):
            raise BadInput(f"{path.name}: {key} holds no inputs (0 of shape {a.shape[1:]})", hint="calibration needs data")
        if not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a).reshape(len(a), -1).all(axis=1))
            raise BadInput(f"{path.name}: {key} holds NaN or infinite values in {len(bad)} of {len(a)} inputs "
                           f"(first: index {bad[0]})", hint="calibration needs real, finite inputs")
        hw = tuple(a.shape[2:])
        if (fixed and hw != tuple(fixed)) or min(hw) < min_size:
            want = f"{fixed[0]}x{fixed[1]}" if fixed else f"at least {min_size}x{min_size}"
            raise BadInput(f"{path.name}: {hw[0]}x{hw[1]} inputs don't fit this model ({want})")
    available = min(len(a) for a in arrays)
    _check_count(available, count, path)
    n = count or available  # the same count per size: ORT's chunked collection needs equal chunks
    sizes = [tuple(a.shape[2:]) for a in arrays]
    return CalibrationSet(str(path), sizes, [_batches(a[:n], sizes) for a in arrays], n, available)


def _check_count(available: int, asked: int | None, where) -> None:
    if asked and available < asked:
        raise BadInput(f"calibration set {where} has {available} inputs, fewer than the {asked} asked",
                       hint="lower --calib-count or add data")


class Reader:
    """ORT's CalibrationDataReader protocol, with set_range for chunked (per-size) collection."""

    def __init__(self, batches: Sequence[np.ndarray], input_name: str = "input", on_batch=None):
        self.batches, self.input_name, self.on_batch = batches, input_name, on_batch
        self.start, self.end, self.i = 0, len(batches), 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.i = start_index, end_index, start_index

    def get_next(self):
        if self.i >= self.end:
            return None
        self.i += 1
        if self.on_batch:
            self.on_batch(1)
        return {self.input_name: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = self.start
