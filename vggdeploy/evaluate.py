"""The paper's evaluation protocols (Simonyan & Zisserman, sec. 3.2 and 4), run on deployed artifacts.

- center: shorter side to the weights' resize, centre crop (torchvision's recipe).
- dense: shorter side to each scale Q, the whole image through the dense form (FC layers as
  convolutions), class scores averaged over the score map (the dense form's `logits`), softmax,
  then averaged over flips and scales.
- multicrop: at each scale, an n x n grid of crops at the crop size, and their flips, batched.
- dense+multicrop: the average of the two posteriors. Several artifacts: their average (fusion).

Preprocessing comes from each artifact's metadata. Images are decoded and resized in worker
threads while the runtime works on the previous ones.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifact import Artifact, described, kind_of
from .cluster import ClusterOptions
from .backends.base import as_input
from .dataset import Sample
from .errors import BadInput
from .forms import FormSpec, check_memory
from .prediction import class_posteriors, prediction_rows
from .preprocessing import Preprocessing

log = logging.getLogger("vggdeploy")
PROTOCOLS = ("center", "dense", "multicrop", "dense+multicrop")


@dataclass(frozen=True)
class Protocol:
    name: str
    scales: tuple[int, ...] = ()
    flip: bool = False
    crops: int = 5

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.name.split("+"))


@dataclass
class Prepared:
    """One image's network inputs for every part of the protocol."""

    label: int
    path: str = ""
    center: np.ndarray | None = None  # (C, crop, crop)
    dense: list[np.ndarray] = field(default_factory=list)  # per scale: (1 or 2, C, H, W)
    multicrop: list[np.ndarray] = field(default_factory=list)  # per scale: (n*n*(1|2), C, crop, crop)


MAX_CROPS, MAX_SCALE = 10, 4096


def check_protocol(p: Protocol, spec: FormSpec, pre: Preprocessing, name: str) -> None:
    if p.name not in PROTOCOLS:
        raise BadInput(f"unknown protocol {p.name!r}", hint=f"choose from: {', '.join(PROTOCOLS)}")
    if spec is None or spec.form == "features":
        raise BadInput(f"{name} is not a classifier or dense artifact", hint="evaluate the classifier or dense form")
    if "dense" in p.parts:
        if spec.form != "dense":
            raise BadInput(f"the dense protocol needs the dense form; {name} is the {spec.form} form",
                           hint="vggdeploy export MODEL --form dense (it also runs center and multicrop)")
        low = [q for q in p.scales if q < spec.min_size]
        if low:
            raise BadInput(f"scale {low[0]} is below the dense form's minimum {spec.min_size}")
    if "multicrop" in p.parts:
        low = [q for q in p.scales if q < pre.crop]
        if low:
            raise BadInput(f"scale {low[0]} is below the crop size {pre.crop} (multicrop takes crops of it)")
        if not 1 <= p.crops <= MAX_CROPS:
            raise BadInput(f"--crops {p.crops}: give 1 to {MAX_CROPS} (an n x n grid per scale; the paper's is 5)")
    big = [q for q in p.scales if q > MAX_SCALE]
    if big:
        raise BadInput(f"scale {big[0]} is above {MAX_SCALE}", hint="memory grows with the square of the scale")
    if not p.scales and p.name != "center":
        raise BadInput(f"the {p.name} protocol needs --scales")


def prepare(sample: Sample, p: Protocol, pre: Preprocessing) -> Prepared:
    """Decode and build every input the protocol needs (runs in a worker thread)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    t = pre.tensor(sample.path)
    out, crop = Prepared(sample.label, str(sample.path)), pre.crop
    if "center" in p.parts:
        out.center = pre.center_view(t)
    for q in p.scales if ("dense" in p.parts or "multicrop" in p.parts) else ():
        x = F.resize(t, q, antialias=True)
        if "dense" in p.parts:
            views = [x, F.horizontal_flip(x)] if p.flip else [x]
            out.dense.append(np.stack([pre.normalise(v) for v in views]))
        if "multicrop" in p.parts:
            h, w = x.shape[1:]
            tops = np.linspace(0, h - crop, p.crops).round().astype(int)
            lefts = np.linspace(0, w - crop, p.crops).round().astype(int)
            crops = torch.stack([x[:, i:i + crop, j:j + crop] for i in tops for j in lefts])
            if p.flip:
                crops = torch.cat([crops, F.horizontal_flip(crops)])
            out.multicrop.append(pre.normalise(crops))
    return out


@dataclass
class Run:
    """Posteriors of one artifact under one protocol, image by image."""

    posteriors: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read
    runtime_s: float = 0.0
    wall_s: float = 0.0
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False


def run_protocol(runner, samples: list[Sample], p: Protocol, pre: Preprocessing, batch: int = 16, workers: int = 2,
                 progress_every: int = 200) -> Run:
    """Every sample through `runner` under protocol `p`; decoding overlaps inference. An unreadable
    image is skipped and counted; Ctrl-C keeps what was done."""
    run, pending, ahead = Run(), [], max(4 * workers, batch * 2)
    t_start = time.perf_counter()

    def infer(x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = runner.infer({"input": as_input(runner, np.ascontiguousarray(x))})
        run.runtime_s += time.perf_counter() - t0
        return class_posteriors(out)

    def flush_center():
        if pending:
            post = infer(np.stack([q.center for q in pending]))
            for q, post_q in zip(pending, post):
                _finish(q, [post_q])
            pending.clear()

    def _finish(q: Prepared, parts: list[np.ndarray]):
        run.posteriors.append(np.mean(parts, axis=0))
        run.labels.append(q.label)
        run.paths.append(q.path)
        if len(run.labels) % progress_every == 0:
            log.info("  %d/%d images, %.1f images/s", len(run.labels), len(samples),
                     len(run.labels) / (time.perf_counter() - t_start))

    try:
        with ThreadPoolExecutor(workers) as pool:
            futures: deque = deque()
            it = iter(samples)
            for s in it:
                futures.append((s, pool.submit(prepare, s, p, pre)))
                if len(futures) >= ahead:
                    break
            while futures:
                s, fut = futures.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    futures.append((nxt, pool.submit(prepare, nxt, p, pre)))
                try:
                    q = fut.result()
                except (OSError, ValueError, RuntimeError) as e:  # an unreadable image: counted, not fatal
                    run.skipped.append(f"{s.path.name}: {type(e).__name__}")
                    run.failed[str(s.path)] = f"{type(e).__name__}: {str(e)[:200]}"
                    continue
                if p.parts == ("center",):
                    pending.append(q)
                    if len(pending) >= batch:
                        flush_center()
                    continue
                parts = []
                if "dense" in p.parts:
                    parts.append(np.mean([infer(x).mean(axis=0) for x in q.dense], axis=0))
                if "multicrop" in p.parts:
                    parts.append(np.mean([infer(x).mean(axis=0) for x in q.multicrop], axis=0))
                _finish(q, parts)
            flush_center()
    except KeyboardInterrupt:
        run.interrupted = True
        log.warning("interrupted: keeping the %d image(s) evaluated so far", len(run.labels))
    run.wall_s = time.perf_counter() - t_start
    return run


def errors(posteriors: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 and top-5 error (%)."""
    order = np.argsort(-posteriors, axis=1)
    top1 = float((order[:, 0] != labels).mean() * 100)
    # with 5 classes or fewer the true class is always among the top 5: no top-5 error to show
    top5 = float((~(order[:, :5] == labels[:, None]).any(axis=1)).mean() * 100) if posteriors.shape[1] > 5 else None
    return {"top1_err": round(top1, 2), "top5_err": None if top5 is None else round(top5, 2)}


def default_scales(pre: Preprocessing) -> tuple[int, ...]:
    """The paper's test scales relative to the training resize: 256, 384, 512 for ImageNet VGGs."""
    r = pre.resize
    return r, round(1.5 * r), 2 * r


def protocol_for(artifacts: list[Artifact], name: str, scales: tuple[int, ...] | None = None, flip: bool = False,
                 crops: int = 5) -> Protocol:
    """The protocol `name` (center takes no scales); dense and multicrop at `scales` or the paper's
    defaults for the first artifact's training resize (default_scales)."""
    if name == "center":
        scales = ()
    elif not scales:
        scales = default_scales(described(artifacts[0]).declared().preprocessing)
    return Protocol(name, tuple(scales), flip, crops)


def select_artifacts(paths: list[Path], protocol: str) -> list[Artifact]:
    """Files as given; from a folder (or a variant name: its engines/NAME), the artifacts whose form
    runs the protocol: dense ones for dense, classifier or dense ones otherwise. Each opened once."""
    from .store import read_manifest
    from .benchrun import expand

    manifests: dict[Path, dict] = {}  # each folder's read once

    def opened(path: Path) -> Artifact:
        if kind_of(path) != "onnx":
            return Artifact.open(path)
        folder = path.parent.resolve()
        if folder not in manifests:
            manifests[folder] = read_manifest(folder)
        return Artifact.open(path, manifests[folder])

    chosen = []
    for p in map(Path, paths):
        if p.is_file():
            chosen.append(opened(p))
            continue
        forms = ("dense",) if "dense" in protocol else ("classifier", "dense")
        found = [a for a in map(opened, expand([p])) if a.kind == "onnx" and a.form in forms]
        if not found:
            raise BadInput(f"{p} holds no {' or '.join(forms)} artifact for the {protocol} protocol",
                           hint=f"vggdeploy export MODEL --form {forms[0]}")
        chosen += found
    return chosen


class EvalActor:
    """One runner per actor; a batch of (path, label) rows in, one posterior (or error) row each out."""

    def __init__(self, artifact: str, backend: str, protocol, pre: Preprocessing, threads: int):
        from .backends import make_runner
        from .cluster import actor_setup

        actor_setup()
        self.protocol, self.pre = protocol, pre
        self.runner = make_runner(backend, artifact, threads=threads)
        self.runner.activate()

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa


        samples = [Sample(Path(p), int(label)) for p, label in zip(batch["path"], batch["label"])]
        run = run_protocol(self.runner, samples, self.protocol, self.pre, batch=len(samples), workers=1)
        done = {p: (post, label) for p, post, label in zip(run.paths, run.posteriors, run.labels)}
        rows = {"path": [], "label": [], "error": [], "posterior": [], "runtime": []}
        for s in samples:
            post = done.get(str(s.path))
            rows["path"].append(str(s.path))
            rows["label"].append(s.label)
            rows["error"].append(None if post is not None else run.failed.get(str(s.path), "not evaluated"))
            rows["posterior"].append(None if post is None else post[0].tolist())
            rows["runtime"].append(self.runner.name)
        return pa.table({"path": pa.array(rows["path"], pa.string()), "label": pa.array(rows["label"], pa.int64()),
                         "error": pa.array(rows["error"], pa.string()),
                         "posterior": pa.array(rows["posterior"], pa.list_(pa.float64())),
                         "runtime": pa.array(rows["runtime"], pa.string())})


def run_protocol_on_cluster(opts: ClusterOptions, artifact: Path, samples, protocol, pre: Preprocessing, backend: str,
                            batch: int):
    """`run_protocol` over a Ray cluster: a Run (posteriors by path) and the runtime's name."""
    from .cluster import map_on_cluster, cluster_job

    t0 = time.perf_counter()
    ds = map_on_cluster(opts, [{"path": str(Path(s.path).resolve()), "label": s.label} for s in samples], EvalActor,
                        {"artifact": str(Path(artifact).resolve()), "backend": backend, "protocol": protocol, "pre": pre},
                        batch)
    with cluster_job():
        rows = sorted(ds.take_all(), key=lambda r: r["path"])
    run, runtime = Run(), None
    for r in rows:
        runtime = runtime or r["runtime"]
        if r["error"] is not None:
            run.failed[r["path"]] = r["error"]
            run.skipped.append(f"{Path(r['path']).name}: {r['error'].split(':')[0]}")
            continue
        run.paths.append(r["path"])
        run.labels.append(int(r["label"]))
        run.posteriors.append(np.asarray(r["posterior"], dtype=np.float64))
    run.wall_s = time.perf_counter() - t0
    return run, f"{runtime or backend} x{opts.workers} (ray)"


def evaluate(artifacts: list[Path | Artifact], samples: list[Sample], p: Protocol, backend: str = "cpu", fuse: bool = False,
             batch: int = 16, workers: int = 2, cluster=None, per_image: list | None = None, top: int = 5) -> list[dict]:
    """One row per artifact (and one for their fusion with `fuse`, image by image): top-1/top-5
    error, images/s. `cluster` (a cluster.ClusterOptions) runs each artifact on a Ray cluster.
    `per_image`, a list, receives each image's row as `predict` writes it (top-`top` classes,
    label, correct) with the artifact's path."""
    from .backends import make_runner

    if batch < 1:
        raise BadInput(f"--batch {batch}: give a positive batch size")
    infos = []
    for artifact in map(Artifact.of, artifacts):
        source = described(artifact)
        meta = source.declared()
        v = meta.to_variant()
        check_protocol(p, meta.spec, meta.preprocessing, artifact.path.name)
        for q in p.scales if "dense" in p.parts else ():  # the shorter side is q: a square image at least
            check_memory(v, (q, q), 2 if p.flip else 1)
        infos.append((artifact, meta, v))
    classes = {v.num_classes for _, _, v in infos}
    if len(classes) > 1:
        raise BadInput(f"the artifacts have different class counts ({sorted(classes)}): they can't be fused or compared")
    top_label = max(s.label for s in samples)
    if top_label >= classes.pop():
        raise BadInput(f"label {top_label} is outside the model's {infos[0][2].num_classes} classes",
                       hint="labels are 0-based torchvision class indices")
    rows, kept = [], []
    for artifact, meta, v in infos:
        path = artifact.path
        log.info("evaluating %s (%s) with the %s protocol on %d images ...", path.name,
                 meta.precision, p.name, len(samples))
        if cluster is not None:
            run, runtime = run_protocol_on_cluster(cluster, path, samples, p, meta.preprocessing,
                                                   backend, batch)
        else:
            with make_runner(backend, artifact) as runner:
                run = run_protocol(runner, samples, p, meta.preprocessing, batch, workers)
            runtime = runner.name
        if not run.posteriors and not run.interrupted:
            raise BadInput(f"none of the {len(samples)} images could be read"
                           + (f" (first: {run.skipped[0]})" if run.skipped else ""), hint="check the --data folder")
        post, labels = np.array(run.posteriors), np.array(run.labels)
        kept.append(run)
        if per_image is not None:
            per_image += [{"artifact": str(path), **r} for r in prediction_rows(
                run.paths, run.posteriors, min(top, v.num_classes), meta.class_names, run.failed, run.labels)]
        rows.append({"artifact": str(path), "model": v.name, "precision": meta.precision,
                     "runtime": runtime, "protocol": p.name, "scales": list(p.scales), "flip": p.flip,
                     "crops": p.crops if "multicrop" in p.parts else None, "images": len(labels),
                     **errors(post, labels), "images_per_s": round(len(labels) / run.wall_s, 2) if run.wall_s else None,
                     "runtime_images_per_s": round(len(labels) / run.runtime_s, 2) if run.runtime_s else None,
                     "skipped": run.skipped, "interrupted": run.interrupted})
        if run.interrupted:
            break
    if fuse and len(kept) > 1:
        by_path = [dict(zip(r.paths, zip(r.posteriors, r.labels))) for r in kept]
        common = sorted(set.intersection(*(set(b) for b in by_path)))  # images every artifact read
        fused = np.array([np.mean([b[k][0] for b in by_path], axis=0) for k in common])
        n = len(common)
        rows.append({"artifact": " + ".join(Path(r["artifact"]).name for r in rows), "model": "fusion",
                     "precision": "+".join(r["precision"] for r in rows), "runtime": rows[0]["runtime"],
                     "protocol": p.name, "scales": list(p.scales), "flip": p.flip, "images": n,
                     **errors(fused, np.array([by_path[0][k][1] for k in common])), "images_per_s": None,
                     "runtime_images_per_s": None,
                     "skipped": [], "interrupted": any(r["interrupted"] for r in rows)})
    return rows
