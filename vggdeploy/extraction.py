"""Feature extraction: embeddings of every image in a folder, from the features form (each tap) or
the dense form (logits or score map), written as Parquet.

One function turns a batch of image paths into output rows (`embed_paths`); the single-process
path and the Ray actors (cluster.py) both call it, which is what makes their results identical.
Images are prepared as the center protocol does (resize the shorter side to the artifact's
`resize`, center crop `crop`, normalise), so every image gives one fixed-size input.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import Artifact, kind_of
from .cluster import ClusterOptions
from .errors import BadInput, MissingEnvironment, printable, spelled
from .metadata import PREFIX
from .preprocessing import Preprocessing

log = logging.getLogger("vggdeploy")

POOLS = ("gap", "max", "none")
PART = "part-00000.parquet"  # single-process output; a cluster writes several parts
# Parquet readers (pyarrow, pandas, duckdb, Spark, Ray) skip names that begin with "_" or ".": the
# summary and a part still being written stay out of what they read
SUMMARY = "_extract.json"
LEGACY_SUMMARY = "extract.json"  # what earlier releases wrote (readers tripped on it): --force removes it


@dataclass(frozen=True)
class ExtractPlan:
    """What one extraction computes: the artifact, its outputs to keep, how to pool them, the
    preprocessing its metadata declares. Picklable: the driver ships it to the workers."""

    artifact: str
    outputs: tuple[str, ...]
    pool: str
    batch: int
    pre: Preprocessing
    sha256: str
    precision: str
    opened: Artifact | None = None  # the artifact as read when planning: runners take it without reading it again

    def file_metadata(self) -> dict[bytes, bytes]:
        return {f"{PREFIX}{k}".encode(): str(v).encode() for k, v in
                (("artifact", Path(self.artifact).name), ("artifact_sha256", self.sha256),
                 ("precision", self.precision), ("outputs", json.dumps(list(self.outputs))), ("pool", self.pool))}


def require_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingEnvironment("Parquet output needs pyarrow", hint="pip install 'vggdeploy[extract]'") from None
    return pyarrow


def plan_extract(artifact: Path, taps: list[str] | None = None, pool: str = "gap", batch: int = 16) -> ExtractPlan:
    """Check the artifact and options (no model loaded, no torch): BadInput before any work."""
    from .store import artifact_sha256

    if pool not in POOLS:
        raise BadInput(f"unknown --pool {pool!r}", hint=f"choose from: {', '.join(POOLS)}")
    if batch < 1:
        raise BadInput(f"--batch {batch}: give a positive batch size")
    artifact = Path(artifact).resolve()
    if kind_of(artifact) != "onnx":
        raise BadInput(f"{artifact.name}: extract takes an ONNX artifact (the features or dense form)")
    opened = Artifact.open(artifact)
    meta = opened.declared()
    spec = meta.spec
    if spec.form == "classifier":
        raise BadInput(f"{artifact.name} is the classifier form: it gives class scores, not features",
                       hint="vggdeploy export MODEL --form features (or dense for the score map)")
    available = list(spec.taps) if spec.form == "features" else ["logits", "score_map"]
    chosen = taps or (available if spec.form == "features" else ["logits"])
    unknown = [t for t in chosen if t not in available]
    if len(set(chosen)) < len(chosen):
        raise BadInput(f"--taps names {', '.join(sorted({t for t in chosen if chosen.count(t) > 1}))} more than once",
                       hint="name each tap once: one column per tap")
    if unknown:
        raise BadInput(f"{artifact.name} has no output {unknown[0]!r}", hint=f"choose from: {', '.join(available)}")
    return ExtractPlan(str(artifact), tuple(chosen), pool, batch, meta.preprocessing, artifact_sha256(artifact),
                       meta.precision, opened)


def pooled(x: np.ndarray, pool: str) -> np.ndarray:
    """(N, C, H, W) -> (N, C) by global average or max; `none` keeps the map (N, C*H*W)."""
    if x.ndim == 2 or pool == "none":
        return x.reshape(len(x), -1)
    return x.mean(axis=(2, 3)) if pool == "gap" else x.max(axis=(2, 3))


def embed_paths(runner, paths: list[str], plan: ExtractPlan) -> dict[str, list]:
    """Rows for a batch of image paths: {"path", "error", OUTPUT...}. An unreadable image is an
    error row (its outputs None), never a failed batch."""
    from .backends.base import as_input

    rows = {"path": list(paths), "error": [None] * len(paths), **{o: [None] * len(paths) for o in plan.outputs}}
    if plan.pool == "none":
        rows |= {f"{o}_shape": [None] * len(paths) for o in plan.outputs}
    ready, inputs = [], []
    for i, p in enumerate(paths):
        try:
            inputs.append(plan.pre(Path(p)))
            ready.append(i)
        except (OSError, ValueError, RuntimeError) as e:
            rows["error"][i] = f"{type(e).__name__}: {str(e)[:200]}"
    if not ready:
        return rows
    out = runner.infer({"input": as_input(runner, np.stack(inputs))})
    for o in plan.outputs:
        vectors = pooled(out[o].astype(np.float32), plan.pool)
        for j, i in enumerate(ready):
            rows[o][i] = vectors[j]
            if plan.pool == "none":
                rows[f"{o}_shape"][i] = list(out[o].shape[1:])
    return rows


def arrow_table(rows: dict[str, list], plan: ExtractPlan):
    pa = require_pyarrow()
    columns = {"path": pa.array(rows["path"], pa.string()), "error": pa.array(rows["error"], pa.string())}
    for o in plan.outputs:
        columns[o] = pa.array([None if v is None else v.tolist() for v in rows[o]], pa.list_(pa.float32()))
        if plan.pool == "none":
            columns[f"{o}_shape"] = pa.array(rows[f"{o}_shape"], pa.list_(pa.int32()))
    return pa.table(columns).replace_schema_metadata(plan.file_metadata())


def owned_parts(out_dir: Path) -> list[Path]:
    """The Parquet files in out_dir that vggdeploy wrote (their footer names the artifact), whatever
    their names (a cluster's writers choose theirs)."""
    import pyarrow.parquet as pq

    owned = []
    for f in sorted(Path(out_dir).glob("*.parquet")):
        try:
            if f"{PREFIX}artifact_sha256".encode() in (pq.read_schema(f).metadata or {}):
                owned.append(f)
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError: a damaged or foreign file
            continue
    return owned


def prepare_out(out_dir: Path, force: bool) -> None:
    """An output folder (held by `extract`: it exists and can be written) that is empty; with `force`, one whose earlier results
    (only those: files vggdeploy wrote) go. Another tool's Parquet files are never deleted, and a
    folder holding them is refused: a reader of the folder would mix them with ours."""
    out_dir = Path(out_dir)
    if any(out_dir.iterdir()):
        if not force:
            raise BadInput(f"{out_dir} already exists and is not empty",
                           hint=f"pass {spelled('--force', 'force=True')} to replace its results")
        ours = owned_parts(out_dir)
        foreign = sorted(set(out_dir.glob("*.parquet")) - set(ours))
        if foreign:
            raise BadInput(f"{out_dir} holds Parquet files vggdeploy did not write ({printable(foreign[0].name)}"
                           + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "") + ")",
                           hint="choose an empty output folder: readers of the folder would mix their rows with ours")
        for f in ours + [out_dir / SUMMARY, out_dir / LEGACY_SUMMARY, *out_dir.glob(f".{PART}.*")]:
            f.unlink(missing_ok=True)


class ExtractActor:
    """One runner per actor; a batch of paths in, one embedding (or error) row each out."""

    def __init__(self, plan, backend: str, threads: int):
        from .backends import make_runner
        from .cluster import actor_setup

        actor_setup()
        self.plan = plan
        self.runner = make_runner(backend, plan.opened or plan.artifact, threads=threads)
        self.runner.activate()

    def __call__(self, batch: dict[str, np.ndarray]):
        return arrow_table(embed_paths(self.runner, [str(p) for p in batch["path"]], self.plan), self.plan)


def extract_on_cluster(opts: ClusterOptions, plan, paths: list[Path], out_dir: Path, backend: str) -> dict:
    """`extract` over a Ray cluster: Parquet parts written by the cluster into a staging folder inside
    out_dir (which every node must see: shared storage), moved into out_dir when the whole job is done,
    then counted by the driver. A job that fails (a node lost, the head included) leaves no part under
    out_dir: a rerun starts from an empty folder, never adding to a partial one."""
    from .cluster import map_on_cluster, cluster_job
    from .store import staging

    ds = map_on_cluster(opts, [{"path": str(p)} for p in paths], ExtractActor, {"plan": plan, "backend": backend},
                        plan.batch)
    with staging(out_dir) as tmp, cluster_job():
        # the actors hold every CPU: writes take none, or they would wait for the actors to finish
        ds.write_parquet(str(tmp), ray_remote_args={"num_cpus": 0})
        for part in sorted(tmp.glob("*.parquet")):
            os.replace(part, out_dir / part.name)
    table = read_embeddings(out_dir)
    return {"written": table.num_rows if table is not None else 0,
            "errors": (table.num_rows - table.column("error").null_count) if table is not None else 0,
            "workers": opts.workers}


def extract(artifact: Path, data: Path, out_dir: Path, *, taps: list[str] | None = None, pool: str = "gap",
            batch: int = 16, backend: str = "cpu", force: bool = False, cluster=None,
            progress_every: int = 200) -> dict:
    """Embeddings of every image below `data` into Parquet in `out_dir`; returns the summary (also
    written as _extract.json, a name Parquet readers skip). Single-process by default: batches stream into one file (row groups
    of `batch` rows, memory bounded) and Ctrl-C keeps the rows written. `cluster` (a
    cluster.ClusterOptions) runs the same per-image code on a Ray cluster's actors."""
    from .dataset import list_images
    from .store import clean_stale, sole_writer

    data = Path(data)
    plan = plan_extract(artifact, taps, pool, batch)
    require_pyarrow()
    out_dir = Path(out_dir).resolve()  # absolute: workers elsewhere write there (shared storage)
    paths = list_images(data)
    if not paths:
        raise BadInput(f"no images in {data}", hint="looked recursively for .jpg, .png, .bmp, .webp and .tif files")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir} is a file, not a folder", hint="give a folder for the Parquet output")
    with sole_writer(out_dir, "extract"):  # a second extract into the folder meanwhile is refused
        clean_stale(out_dir)  # a killed run's staging: its parts never reached out_dir
        prepare_out(out_dir, force)
        return _write_parts(plan, paths, out_dir, backend, batch, cluster, progress_every)


def _write_parts(plan, paths: list[Path], out_dir: Path, backend: str, batch: int, cluster, progress_every: int) -> dict:
    """extract's work, once its folder is held and prepared: the Parquet part(s) and the summary."""
    import pyarrow.parquet as pq

    from .backends import make_runner

    summary = {"artifact": plan.artifact, "artifact_sha256": plan.sha256, "precision": plan.precision,
               "outputs": list(plan.outputs), "pool": plan.pool, "images": len(paths), "written": 0, "errors": 0,
               "interrupted": False, "workers": 0}
    t0 = time.perf_counter()
    if cluster is not None:
        summary |= extract_on_cluster(cluster, plan, paths, Path(out_dir), backend)
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        write_summary(out_dir, summary)
        return summary
    writer, part, partial = None, Path(out_dir) / PART, Path(out_dir) / f".{PART}.{os.getpid()}"
    try:
        with make_runner(backend, plan.opened or plan.artifact) as runner:
            summary["runtime"] = runner.name
            for start in range(0, len(paths), batch):
                table = arrow_table(embed_paths(runner, [str(p) for p in paths[start:start + batch]], plan), plan)
                writer = writer or pq.ParquetWriter(str(partial), table.schema)
                writer.write_table(table)
                summary["written"] += table.num_rows
                summary["errors"] += table.num_rows - table.column("error").null_count
                if summary["written"] % progress_every < batch:
                    log.info("  %d/%d images, %.1f images/s", summary["written"], len(paths),
                             summary["written"] / (time.perf_counter() - t0))
    except KeyboardInterrupt:
        summary["interrupted"] = True
    except BaseException:  # a failure (full disk, SIGTERM) leaves no part: a footerless file would not read
        if writer:
            writer.close()
            partial.unlink(missing_ok=True)
        raise
    if writer:  # whole (footer written): under its final name
        writer.close()
        os.replace(partial, part)
    if writer and summary["interrupted"]:  # the signal may land between a write and its count: count the file
        kept = pq.read_table(str(part), columns=["error"])
        summary["written"], summary["errors"] = kept.num_rows, kept.num_rows - kept.column("error").null_count
    if summary["interrupted"]:
        log.warning("interrupted: keeping the %d row(s) written", summary["written"])
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_summary(out_dir, summary)
    return summary


def write_summary(out_dir: Path, summary: dict) -> None:
    from .store import atomic_write_text

    atomic_write_text(Path(out_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")


def read_embeddings(out_dir: Path):
    """Every Parquet part in out_dir as one pyarrow Table, ordered by path."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for p in owned_parts(out_dir)]
    return pa.concat_tables(tables).sort_by("path") if tables else None


__all__ = ["ExtractPlan", "POOLS", "embed_paths", "extract", "plan_extract", "read_embeddings"]
