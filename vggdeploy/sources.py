"""Where a model's weights came from, as an artifact records it (`vggdeploy.weights`, the manifest's
`weights`): one parser for the string every artifact carries."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("imagenet", "bundled", "random", "checkpoint", "adopted")


@dataclass(frozen=True)
class WeightsSource:
    """ImageNet's published weights (`imagenet`), a checkpoint bundled with vggdeploy (`bundled:FILE`),
    seeded random weights (`random:SEED`), a checkpoint file (its path), or a foreign ONNX adopted as
    it was (`adopted:FILE`). `str()` gives the recorded string back."""

    kind: str
    value: str | None = None  # the bundled file, the seed, the checkpoint's path, the adopted file

    @classmethod
    def parse(cls, text: str) -> "WeightsSource":
        if text == "imagenet":
            return cls("imagenet")
        for kind in ("random", "bundled", "adopted"):
            if text.startswith(kind + ":"):
                return cls(kind, text[len(kind) + 1:])
        return cls("checkpoint", text)

    def __str__(self) -> str:
        if self.value is None or self.kind == "checkpoint":
            return self.value or self.kind
        return f"{self.kind}:{self.value}"

    @property
    def seed(self) -> int:
        """Random weights' seed (0 for the other kinds)."""
        return int(self.value) if self.kind == "random" and self.value else 0

    @property
    def rebuildable(self) -> bool:
        """Whether eager PyTorch can be built from it again (an adopted ONNX has no model behind it)."""
        return self.kind != "adopted"


__all__ = ["KINDS", "WeightsSource"]
