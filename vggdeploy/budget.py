"""An accuracy budget for INT8: keep the fewest layers in float until top-1 on the user's data is
within `max_drop` points of FP32 (NNCF's quantize_with_accuracy_control, ModelOpt's AutoQuantize
and Polygraphy's `debug precision` do the same search their own ways).

Layers are tried in the order the per-layer error report ranks them (layer_error.py: the error
each one adds), one more each round, re-quantizing with them excluded (for the tensorrt target an
excluded layer has no Q/DQ, so TensorRT runs it in the ONNX's float type). Without labels the
score is top-1 agreement with FP32. At most half the compute layers are kept in float: past that
the artifact would not be an INT8 model, and the budget is reported as unmet (exit 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import BadInput, CheckFailed
from .preprocessing import Preprocessing


@dataclass(frozen=True)
class AccuracyBudget:
    """`max_drop` points of top-1 (0-100) on the image folder `eval_data` (labelled as `eval`
    reads it, or unlabelled: agreement with FP32). Judged on construction."""

    max_drop: float
    eval_data: Path

    def __post_init__(self):
        if not isinstance(self.max_drop, (int, float)) or not math.isfinite(self.max_drop) or not 0 <= self.max_drop <= 100:
            raise BadInput(f"--max-drop {self.max_drop}: give a number of top-1 points from 0 to 100", hint="e.g. --max-drop 0.5")
        if not Path(self.eval_data).is_dir():
            raise BadInput(f"--eval-data {self.eval_data} is not a folder",
                           hint="a labelled image folder, as `vggdeploy eval --data` takes (or unlabelled images)")


@dataclass
class EvalSet:
    """Preprocessed inputs and their labels (None: score agreement with FP32)."""

    x: np.ndarray
    labels: np.ndarray | None
    source: str


def load_eval_set(budget: AccuracyBudget, pre: Preprocessing, num_classes: int | None) -> EvalSet:
    """The budget's images, preprocessed as the artifact declares. BadInput for an empty folder or
    labels outside the model's classes."""
    from .dataset import Sample, list_images, load_dataset

    folder = Path(budget.eval_data)
    try:
        samples, _ = load_dataset(folder)
        labels = np.array([s.label for s in samples])
    except BadInput:
        images = list_images(folder)
        if not images:
            raise BadInput(f"--eval-data {folder} has no images", hint="a labelled image folder, as `eval --data` takes") from None
        samples, labels = [Sample(p, -1) for p in images], None
    if labels is not None and num_classes is not None and labels.max() >= num_classes:
        raise BadInput(f"--eval-data {folder}: label {int(labels.max())} is outside the model's {num_classes} classes",
                       hint="class folders are numbered in sorted order from 0; use as many as the model has classes")
    try:
        x = np.stack([pre(s.path) for s in samples])
    except ValueError as e:
        raise BadInput(f"--eval-data {folder}: {e}") from None
    kind = "top-1" if labels is not None else "top-1 agreement with FP32"
    return EvalSet(x, labels, f"{len(samples)} image(s) from {folder} ({kind})")


def score(logits: np.ndarray, data: EvalSet, fp32_pred: np.ndarray | None) -> float:
    """Top-1 in percent: against the labels, or against FP32's predictions."""
    truth = data.labels if data.labels is not None else fp32_pred
    return 100.0 * float((logits.argmax(1) == truth).mean())


@dataclass
class BudgetResult:
    """What the search found: the layers kept in float, FP32's and INT8's scores, each try."""

    fp32: float
    int8: float
    kept: list[str]
    met: bool
    tries: list[dict] = field(default_factory=list)

    @property
    def drop(self) -> float:
        return self.fp32 - self.int8


def search(ranking: list[str], fp32: float, evaluate: Callable[[list[str]], float], max_drop: float,
           limit: int) -> BudgetResult:
    """Keep layers of `ranking` in float, one more per round, until `evaluate(kept)` is within
    `max_drop` of `fp32` or `limit` layers are kept. The first try keeps none."""
    kept: list[str] = []
    result = BudgetResult(fp32, evaluate(kept), [], False)
    result.tries.append({"kept_fp32": [], "score": round(result.int8, 3)})
    while result.drop > max_drop + 1e-9 and len(kept) < min(limit, len(ranking)):
        kept = kept + [ranking[len(kept)]]
        got = evaluate(kept)
        result.tries.append({"kept_fp32": list(kept), "score": round(got, 3)})
        if got > result.int8:  # the best so far; a try that meets the budget always is
            result.int8, result.kept = got, list(kept)
    result.met = result.drop <= max_drop + 1e-9
    return result


def unmet(budget: AccuracyBudget, result: BudgetResult, limit: int, total: int) -> CheckFailed:
    kept = ", ".join(result.kept) or "none"
    return CheckFailed(f"--max-drop {budget.max_drop:g} can't be met: the best INT8 found drops {result.drop:.2f} points "
                       f"(FP32 {result.fp32:.2f}, INT8 {result.int8:.2f}) with {len(result.kept)} of {total} layers in float "
                       f"({kept}); at most {limit} may be", hint="raise --max-drop, calibrate on data like --eval-data, "
                                                                "or keep layers yourself with --keep-fp32; nothing was written")
