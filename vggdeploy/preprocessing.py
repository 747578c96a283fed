"""An image as an artifact takes it: decoded, in the artifact's colour, resized, centre-cropped (or
resized to the input size for a model adopted with `--resize-only`) and normalised, as its metadata
declares. `Preprocessing` is the one implementation behind predict, eval, extract, calibration,
parity photos and the accuracy budget."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Preprocessing:
    """What an artifact's `vggdeploy.preprocessing` table declares: colour, the shorter side's resize,
    the centre crop, mean and std (of 0-1 pixels), and `resize_only` (the whole image squeezed to the
    input size: adopted models whose own recipe has no crop). `to_table`/`from_table` are the
    metadata's JSON form (the C++ example and Triton's model.py read the same keys)."""

    color: str
    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_only: bool = False

    @classmethod
    def of_variant(cls, v) -> "Preprocessing":
        """A Variant's own: torchvision's recipe for the ImageNet VGGs (resize 256, crop 224)."""
        return cls("RGB" if v.in_channels == 3 else "gray", v.resize, v.image_size, tuple(v.mean), tuple(v.std))

    @classmethod
    def from_table(cls, table: dict) -> "Preprocessing":
        """From the metadata's table (already checked against metadata.SCHEMA)."""
        color = table.get("color") or ("gray" if len(table["mean"]) == 1 else "RGB")
        return cls(color, table["resize"], table["crop"], tuple(table["mean"]), tuple(table["std"]),
                   bool(table.get("resize_only")))

    def to_table(self) -> dict:
        return {"layout": "NCHW", "color": self.color, "scale": 1 / 255, "resize": self.resize, "crop": self.crop,
                "interpolation": "bilinear", "mean": list(self.mean), "std": list(self.std),
                **({"resize_only": True} if self.resize_only else {})}

    def __getitem__(self, key: str):
        """A key of the metadata's table (`pre["mean"]`), as code written before this type reads it."""
        return self.to_table()[key]

    def tensor(self, image):
        """CxHxW uint8 tensor of an image (a path, an array, see image_array) in the artifact's colour."""
        import torch
        from torchvision.transforms.v2 import functional as F

        t = torch.from_numpy(np.require(image_array(image), requirements=["C", "W"])).permute(2, 0, 1)
        if self.color == "gray" and t.shape[0] == 3:
            t = F.rgb_to_grayscale(t)
        elif self.color == "RGB" and t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        return t

    def normalise(self, t) -> np.ndarray:
        """uint8 CxHxW (or NxCxHxW) tensor -> float32 array, scaled to 0-1 and normalised."""
        import torch
        from torchvision.transforms.v2 import functional as F

        return F.normalize(F.to_dtype(t, torch.float32, scale=True), list(self.mean), list(self.std)).numpy()

    def resize_crop(self, t, size: tuple[int, int] | None = None):
        """The geometry alone, of a (N)CHW tensor of any dtype: resize the shorter side, centre-crop to
        (crop, crop). At another `size` (h, w), the resize scales by the same ratio and the crop is h x w
        (calibration and parity photos at the dense form's sizes)."""
        from torchvision.transforms.v2 import functional as F

        h, w = size or (self.crop, self.crop)
        if self.resize_only:  # the model's own recipe: the whole image squeezed to the input size
            return F.resize(t, [h, w], antialias=True)
        return F.center_crop(F.resize(t, round(max(h, w) * self.resize / self.crop), antialias=True), [h, w])

    def center_view(self, t, size: tuple[int, int] | None = None) -> np.ndarray:
        """The single view a classifier takes of a uint8 tensor: (C, crop, crop) float32 (see resize_crop)."""
        return self.normalise(self.resize_crop(t, size))

    def __call__(self, image, size: tuple[int, int] | None = None) -> np.ndarray:
        """One image (a path or an array): (C, H, W) float32, as `center_view`."""
        return self.center_view(self.tensor(image), size)


__all__ = ["Preprocessing", "image_array"]
