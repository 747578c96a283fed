"""Per-image predictions: top-k classes with names and scores for each image, from a classifier or
dense artifact, preprocessed as the artifact declares (preprocessing.py). `eval --per-image` writes the
same rows from its own posteriors."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from .artifact import Artifact, described
from .errors import BadInput, printable

log = logging.getLogger("vggdeploy")
ROW_FORMATS = (".json", ".csv", ".parquet")


def shown_path(path) -> str:
    """A path as text every writer takes (JSON, CSV, Parquet): bytes that are not UTF-8 as \\xNN."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def class_posteriors(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """(N, classes) probabilities from a classifier's or dense form's outputs: softmax of `logits`,
    or `probabilities` as they are (a model adopted with output="probabilities" ends in softmax)."""
    if "probabilities" in outputs:
        return outputs["probabilities"].reshape(len(outputs["probabilities"]), -1).astype(np.float64)
    logits = outputs["logits"]
    return softmax(logits.reshape(len(logits), -1).astype(np.float64))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def prediction_rows(paths: list[str], posteriors: list[np.ndarray], top: int, names: tuple[str, ...] | None,
                    failed: dict[str, str] | None = None, labels: list[int] | None = None) -> list[dict]:
    """One row per image: path, error (None), top-k [{class, name, score}]; and label and correct
    when labels are given. An unreadable image (in `failed`) is a row with its error and no classes."""
    rows = []
    for i, (path, post) in enumerate(zip(paths, posteriors)):
        order = np.argsort(-post)[:top]
        row = {"path": shown_path(path), "error": None,
               "top": [{"class": int(c), "name": names[c] if names and c < len(names) else str(int(c)),
                        "score": round(float(post[c]), 6)} for c in order]}
        if labels is not None:
            row |= {"label": int(labels[i]), "correct": bool(order[0] == labels[i])}
        rows.append(row)
    rows += [{"path": shown_path(p), "error": why, "top": []} for p, why in (failed or {}).items()]
    return sorted(rows, key=lambda r: r["path"])


def preprocess(image, artifact) -> np.ndarray:
    """One image (a path or an HxWxC array) as `artifact` (a path or an Artifact) takes it:
    (C, H, W) float32, ready to stack into a batch for its runner."""
    return described(Artifact.of(artifact)).declared().preprocessing(image)


def check_predictable(artifact: Artifact) -> Artifact:
    """The artifact's describing ONNX artifact, refused (BadInput) unless it gives class scores."""
    meta = described(artifact).declared()
    if meta.form == "features":
        raise BadInput(f"{artifact.path.name} is the features form: it gives embeddings, not classes",
                       hint="use `vggdeploy extract` for embeddings, or predict with the classifier or dense form")
    return described(artifact)


def predict(artifact, images: list[Path], *, top: int = 5, backend: str = "cpu", batch: int = 16) -> list[dict]:
    """Top-`top` classes of every image (files, or folders searched recursively): a row per image
    (prediction_rows). An unreadable image is an error row, never a failed run."""
    from .backends import make_runner
    from .backends.base import as_input
    from .dataset import list_images

    artifact = Artifact.of(artifact)
    source = check_predictable(artifact)
    meta = source.meta
    if top < 1:
        raise BadInput(f"--top {top}: give a positive number of classes")
    if batch < 1:
        raise BadInput(f"--batch {batch}: give a positive batch size")
    files = []
    for p in map(Path, images):
        if p.is_dir():
            files += list_images(p)
        elif p.is_file():
            files.append(p.resolve())
        else:
            raise BadInput(f"{printable(str(p))} not found")
    if not files:
        raise BadInput("no images to predict", hint="give image files or folders holding .jpg, .png, .bmp, .webp or .tif files")
    pre = meta.preprocessing
    paths, posts, failed = [], [], {}
    with make_runner(backend, artifact) as runner:
        for start in range(0, len(files), batch):
            ready, inputs = [], []
            for f in files[start:start + batch]:
                try:
                    inputs.append(pre(f))
                    ready.append(str(f))
                except (OSError, ValueError, RuntimeError) as e:
                    failed[str(f)] = f"{type(e).__name__}: {str(e)[:200]}"
            if inputs:
                out = runner.infer({"input": as_input(runner, np.stack(inputs))})
                paths += ready
                posts += list(class_posteriors(out))
    return prediction_rows(paths, posts, min(top, meta.num_classes), meta.class_names, failed)


def flat(row: dict, top: int) -> dict:
    """A row with its top-k as columns (top1_class, top1_name, top1_score, ...): for CSV and Parquet."""
    out = {k: v for k, v in row.items() if k != "top"}
    for i in range(top):
        hit = row["top"][i] if i < len(row["top"]) else {"class": None, "name": None, "score": None}
        out |= {f"top{i + 1}_class": hit["class"], f"top{i + 1}_name": hit["name"], f"top{i + 1}_score": hit["score"]}
    return out


def check_rows_path(out: Path) -> Path:
    """A rows file's path, judged before any work: a known format whose folder can be written."""
    out = Path(out)
    if out.suffix.lower() not in ROW_FORMATS:
        raise BadInput(f"{printable(str(out))}: write rows as {', '.join(ROW_FORMATS)}")
    if out.is_dir():
        raise BadInput(f"{printable(str(out))} is a folder", hint="give a file name ending in .json, .csv or .parquet")
    if out.suffix.lower() == ".parquet":
        from .extraction import require_pyarrow

        require_pyarrow()
    from .store import require_writable

    require_writable(out.parent if str(out.parent) else Path("."), hint="choose a folder you can write to")
    return out


def write_rows(rows: list[dict], out: Path) -> Path:
    """Rows as JSON ({"rows": [...]}), CSV or Parquet (top-k as columns), written atomically."""
    from .store import atomic_write_text

    out = Path(out)
    kind = out.suffix.lower()
    if kind == ".json":
        atomic_write_text(out, json.dumps({"rows": rows}, indent=2) + "\n")
        return out
    top = max((len(r["top"]) for r in rows), default=0)
    flat_rows = [flat(r, top) for r in rows]
    tmp = out.with_name(f".{out.name}.partial")
    try:
        if kind == ".csv":
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(flat_rows[0]) if flat_rows else ["path", "error"])
                writer.writeheader()
                writer.writerows(flat_rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(flat_rows), tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


__all__ = ["check_rows_path", "class_posteriors", "predict", "prediction_rows", "preprocess", "write_rows"]
