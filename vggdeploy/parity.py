"""Accuracy parity of an artifact against eager PyTorch, on real photos and seeded noise.

Every mismatch is collected (per input, per output) before one CheckFailed is raised,
as optimum's validate_model_outputs does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .backends.base import Runner, as_input
from .data import photo_batch, random_batch
from .errors import CheckFailed
from .tables import table
from .variants import Variant

log = logging.getLogger("vggdeploy")


@dataclass(frozen=True)
class Thresholds:
    rel_l2: float  # max ||got - ref|| / ||ref|| per input
    cosine: float  # min cosine similarity per input
    top1: float  # min share of inputs whose top-1 class agrees (near-ties excepted)
    top5: float  # min mean overlap of the top-5 sets


SCORE_OUTPUTS = ("logits", "probabilities")  # class scores: also compared by top-1/top-5 agreement
THRESHOLDS = {
    "fp32": Thresholds(rel_l2=1e-4, cosine=0.99999, top1=1.0, top5=0.98),
    "fp16": Thresholds(rel_l2=1e-2, cosine=0.9995, top1=0.9, top5=0.8),
    "int8": Thresholds(rel_l2=0.15, cosine=0.99, top1=0.75, top5=0.6),
}


@dataclass
class Case:
    """One batch at one input size; `names` label each input for the report; `noise`: seeded noise,
    not photos (INT8's checks leave it out)."""

    label: str
    names: list[str]
    batch: np.ndarray
    noise: bool = False


@dataclass(frozen=True)
class Expected:
    """A reference runner's outputs recorded on cases, to compare artifacts with once the reference
    is gone: eager PyTorch runs once per form, not once per artifact, and its weights can be released
    before the FP16/INT8 checks (0.55 GB for VGG16)."""

    reference: str
    cases: tuple[Case, ...]
    outputs: tuple[dict[str, np.ndarray], ...]

    def compact(self) -> "Expected":
        """The same recording in float16 where that keeps each output within 5e-4 relative L2 (20x under
        the FP16/INT8 checks' bound, THRESHOLDS), else float32 (values beyond float16's range, or so small
        they underflow: a random model's logits): up to half the memory (VGG16's forms record 0.6 GB)."""
        def small(x: np.ndarray) -> np.ndarray:
            if x.dtype != np.float32 or not np.isfinite(x).all():
                return x
            with np.errstate(over="ignore"):
                y = x.astype(np.float16)
            norm = float(np.linalg.norm(x))
            close = np.isfinite(y).all() and float(np.linalg.norm(y.astype(np.float32) - x)) <= 5e-4 * norm
            return y if close else x

        return Expected(self.reference, self.cases, tuple({k: small(v) for k, v in o.items()} for o in self.outputs))

    def photos_only(self) -> "Expected":
        """The same recording without its noise cases."""
        kept = [(c, o) for c, o in zip(self.cases, self.outputs) if not c.noise]
        return Expected(self.reference, tuple(c for c, _ in kept), tuple(o for _, o in kept))


@dataclass
class OutputResult:
    case: str
    output: str
    max_abs: float
    rel_l2: float
    cosine: float
    top1: float | None = None
    top5: float | None = None
    failed_inputs: list[str] = field(default_factory=list)


@dataclass
class ParityReport:
    reference: str
    candidate: str
    thresholds: Thresholds
    results: list[OutputResult]

    @property
    def failures(self) -> list[OutputResult]:
        return [r for r in self.results if r.failed_inputs]

    @property
    def passed(self) -> bool:
        return not self.failures

    def raise_on_failure(self) -> None:
        if self.failures:
            where = "; ".join(f"{r.case}/{r.output}: {', '.join(r.failed_inputs)}" for r in self.failures)
            raise CheckFailed(f"parity failed ({self.candidate} vs {self.reference}) for {where}",
                              hint="see the table above; --no-verify skips the check")


def default_cases(v: Variant, form: str, size: tuple[int, int], seed: int = 0, noise: bool = True) -> list[Case]:
    """Photos and seeded noise at sizes that exercise the form's dynamic axes.

    INT8 leaves noise out: its ranges are calibrated on real inputs, and noise saturates them.
    """
    st, m = v.stride, v.min_dense_size
    if form == "classifier":
        sizes, per_size = [size], None
    elif form == "dense":  # square minimum, landscape, portrait, and one not a multiple of the stride
        sizes, per_size = [(m, m), (m + st, m + 4 * st), (m + 3 * st, m + st), (m + st + 7, m + 2 * st + 13)], 3
    else:
        sizes, per_size = [size, (5 * st, 9 * st), (3 * st + 1, 4 * st + 3)], 3
    cases = []
    for i, hw in enumerate(sizes):
        names, batch = photo_batch(v, hw, per_size, offset=i * (per_size or 0))
        cases.append(Case(f"photos@{hw[0]}x{hw[1]}", names, batch))
        if noise:
            cases.append(Case(f"noise@{hw[0]}x{hw[1]}", [f"noise{seed + i}"], random_batch(v, hw, 1, seed + i), noise=True))
    return cases


def compare_output(case: Case, output: str, ref: np.ndarray, got: np.ndarray, th: Thresholds,
                   is_logits: bool) -> OutputResult:
    n = ref.shape[0]
    r, g = ref.reshape(n, -1).astype(np.float64), got.reshape(n, -1).astype(np.float64)
    diff = np.abs(r - g)
    max_abs = diff.max(axis=1)
    rel = np.linalg.norm(r - g, axis=1) / np.maximum(np.linalg.norm(r, axis=1), 1e-12)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    # two all-zero outputs agree (an all-zero model's): their cosine is 1, not 0/0
    cos = np.where((norms == 0) & (diff.max(axis=1) == 0), 1.0, (r * g).sum(1) / np.maximum(norms, 1e-12))
    bad = ~(rel <= th.rel_l2) | ~(cos >= th.cosine)  # NaN/inf (an FP16 overflow) fails too
    result = OutputResult(case.label, output, float(max_abs.max()), float(rel.max()), float(cos.min()))
    if is_logits:
        ref_top, got_top = r.argmax(1), g.argmax(1)
        # a flip between two classes closer than the measured error is a tie, not a disagreement
        tie = r[np.arange(n), got_top] >= r[np.arange(n), ref_top] - max_abs
        agree = (ref_top == got_top) | tie
        k = min(5, r.shape[1])
        top5 = np.array([len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k for a, b in zip(r, g)])
        result.top1, result.top5 = float(agree.mean()), float(top5.mean())
        if result.top1 < th.top1:
            bad |= ~agree
        if result.top5 < th.top5:
            bad |= top5 < 1.0
    result.failed_inputs = [name for name, b in zip(case.names, bad) if b]
    return result


def check_parity(reference: Runner, candidate: Runner, cases: list[Case], th: Thresholds,
                 logits_outputs: tuple[str, ...] = SCORE_OUTPUTS, input_name: str = "input",
                 on_case: Callable[[int], None] | None = None) -> ParityReport:
    """Run every case on both (active) runners and compare each output (`logits_outputs` also by
    top-1/top-5 agreement). Returns the report (its `raise_on_failure` raises CheckFailed); raises
    CheckFailed at once when an output's shape differs. `on_case(1)` is called after each case."""
    expected = Expected(reference.name, tuple(cases), tuple(_one_by_one(reference, input_name, c.batch) for c in cases))
    return compare(expected, candidate, th, logits_outputs, input_name, on_case)


def record_outputs(reference: Runner, cases: list[Case], input_name: str = "input",
                   on_case: Callable[[int], None] | None = None) -> Expected:
    """`reference`'s outputs on every case; the runner is activated here and released on return."""
    outputs = []
    with reference as ref:
        for case in cases:
            outputs.append(_one_by_one(ref, input_name, case.batch))
            if on_case:
                on_case(1)
    return Expected(ref.name, tuple(cases), tuple(outputs))


def compare(expected: Expected, candidate: Runner, th: Thresholds, logits_outputs: tuple[str, ...] = SCORE_OUTPUTS,
            input_name: str = "input", on_case: Callable[[int], None] | None = None) -> ParityReport:
    """`candidate` (active) on the recorded cases, each output compared as check_parity does."""
    results = []
    for case, ref in zip(expected.cases, expected.outputs):
        got = _one_by_one(candidate, input_name, case.batch)
        for name, ref_out in ref.items():
            if got[name].shape != ref_out.shape:
                raise CheckFailed(f"{case.label}/{name}: shape {got[name].shape}, reference {ref_out.shape}")
            results.append(compare_output(case, name, ref_out, got[name], th, name in logits_outputs))
        if on_case:
            on_case(1)
    return ParityReport(expected.reference, candidate.name, th, results)


def _one_by_one(runner: Runner, input_name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The runner's outputs for a batch fed an image at a time: a VGG16's activations for a batch of
    four dense images are 0.5 GB per runtime, and both runtimes hold them at once (the results are the
    same: every layer is per-sample in inference)."""
    outs = [runner.infer({input_name: as_input(runner, batch[i:i + 1])}) for i in range(len(batch))]
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}


def parity_rows(report: ParityReport) -> list[list]:
    return [[r.case, r.output, r.max_abs, r.rel_l2, r.cosine, r.top1, r.top5,
             ", ".join(r.failed_inputs) or "ok"] for r in report.results]


PARITY_HEADERS = ["case", "output", "max abs", "rel L2", "cosine", "top-1", "top-5", "status"]


def log_parity(report: ParityReport) -> None:
    """The report as a table in the log (export, quantize and verify print it)."""
    th = report.thresholds
    log.info("parity %s vs %s (rel L2 <= %g, cosine >= %g, top-1 >= %g, top-5 >= %g):\n%s",
             report.candidate, report.reference, th.rel_l2, th.cosine, th.top1, th.top5,
             table(PARITY_HEADERS, parity_rows(report)))
