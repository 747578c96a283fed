"""Evaluation and extraction on a Ray cluster, through Ray Data (README: Feature extraction, and clusters).

The driver lists the images and reads the artifact's metadata: no decoding, no model, no torch.
Each actor holds one runner, its threads set to the actor's CPUs (ONNX Runtime and OpenVINO
ignore OMP_NUM_THREADS), and runs the same per-image code as the single-process path
(`evaluate.run_protocol`, `extract.embed_paths`): that is what makes results identical. An image
that can't be read becomes an error row. Ray is imported only here, only when asked for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput, MissingEnvironment

log = logging.getLogger("vggdeploy")
CONNECT_TIMEOUT_S = 20


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide: a Ray address (`auto`, HOST:PORT or ray://HOST:PORT), the number of
    actors and the CPUs each one holds."""

    address: str
    workers: int = 2
    cpus_per_worker: int = 1

    def __post_init__(self):
        if not self.address or not self.address.strip():
            raise BadInput("--cluster needs an address", hint="auto, HOST:PORT or ray://HOST:PORT")
        if self.workers < 1:
            raise BadInput(f"--workers {self.workers}: give at least 1")
        if self.cpus_per_worker < 1:
            raise BadInput(f"--cpus-per-worker {self.cpus_per_worker}: give at least 1")


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingEnvironment("--cluster needs Ray", hint="pip install 'vggdeploy[ray]' (here and on every node)") from None
    return ray


def connect(opts: ClusterOptions):
    """ray.init to an existing cluster (kept if this process already joined one), refused in one
    line (exit 3) when it can't be reached in CONNECT_TIMEOUT_S."""
    ray = require_ray()
    if not ray.is_initialized():
        _probe(opts.address)
        t0 = time.perf_counter()
        try:
            ray.init(address=opts.address, log_to_driver=False, logging_level=logging.ERROR,
                     configure_logging=True, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            raise MissingEnvironment(f"cannot reach a Ray cluster at {opts.address} ({type(e).__name__} after "
                                     f"{time.perf_counter() - t0:.0f} s)",
                                     hint="start it with `ray start --head` (and `ray start --address` on each node)"
                                     ) from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator progress lines
    ray.data.DataContext.get_current().enable_progress_bars = False
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < opts.workers * opts.cpus_per_worker:
        log.warning("the cluster has %g CPU(s); %d worker(s) x %d CPU(s) will queue", cpus, opts.workers,
                    opts.cpus_per_worker)
    return ray


def _probe(address: str) -> None:
    """A TCP connection to HOST:PORT (ray.init retries an unreachable one for minutes): MissingEnvironment
    in CONNECT_TIMEOUT_S at most. `auto` is left to Ray, which fails at once when there is no cluster."""
    import socket

    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--cluster {address!r}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise MissingEnvironment(f"cannot reach a Ray cluster at {address} ({e.strerror or type(e).__name__})",
                                 hint="start it with `ray start --head` (and `ray start --address` on each node)") from None


def _actor_setup():
    import torch

    torch.set_num_threads(1)  # preprocessing; the runner has the actor's CPUs


class EvalActor:
    """One runner per actor; a batch of (path, label) rows in, one posterior (or error) row each out."""

    def __init__(self, artifact: str, backend: str, protocol, pre: dict, threads: int):
        from .backends import make_runner

        _actor_setup()
        self.protocol, self.pre = protocol, pre
        self.runner = make_runner(backend, artifact, threads=threads)
        self.runner.activate()

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        from .dataset import Sample
        from .evaluate import run_protocol

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


class ExtractActor:
    """One runner per actor; a batch of paths in, one embedding (or error) row each out."""

    def __init__(self, plan, backend: str, threads: int):
        from .backends import make_runner

        _actor_setup()
        self.plan = plan
        self.runner = make_runner(backend, plan.opened or plan.artifact, threads=threads)
        self.runner.activate()

    def __call__(self, batch: dict[str, np.ndarray]):
        from .extraction import arrow_table, embed_paths

        return arrow_table(embed_paths(self.runner, [str(p) for p in batch["path"]], self.plan), self.plan)


def _pool(ray, opts: ClusterOptions):
    return ray.data.ActorPoolStrategy(size=opts.workers)


def run_protocol_on_cluster(opts: ClusterOptions, artifact: Path, samples, protocol, pre: dict, backend: str,
                            batch: int):
    """`evaluate.run_protocol` over a cluster: a Run (posteriors by path) and the runtime's name."""
    from .evaluate import Run

    ray = connect(opts)
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"path": str(Path(s.path).resolve()), "label": s.label} for s in samples])
    ds = ds.map_batches(EvalActor, fn_constructor_kwargs={"artifact": str(Path(artifact).resolve()), "backend": backend,
                                                          "protocol": protocol, "pre": pre,
                                                          "threads": opts.cpus_per_worker},
                        compute=_pool(ray, opts), num_cpus=opts.cpus_per_worker, batch_size=batch,
                        batch_format="numpy")
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


def extract_on_cluster(opts: ClusterOptions, plan, paths: list[Path], out_dir: Path, backend: str) -> dict:
    """`extract.extract` over a cluster: Parquet parts written by the cluster into out_dir (which
    every node must see: shared storage), then counted by the driver."""
    from .extraction import read_embeddings

    ray = connect(opts)
    ds = ray.data.from_items([{"path": str(p)} for p in paths])
    ds = ds.map_batches(ExtractActor, fn_constructor_kwargs={"plan": plan, "backend": backend,
                                                             "threads": opts.cpus_per_worker},
                        compute=_pool(ray, opts), num_cpus=opts.cpus_per_worker, batch_size=plan.batch,
                        batch_format="numpy")
    # the actors hold every CPU: writes take none, or they would wait for the actors to finish
    ds.write_parquet(str(out_dir), ray_remote_args={"num_cpus": 0})
    table = read_embeddings(out_dir)
    return {"written": table.num_rows if table is not None else 0,
            "errors": (table.num_rows - table.column("error").null_count) if table is not None else 0,
            "workers": opts.workers}


__all__ = ["ClusterOptions", "connect", "extract_on_cluster", "run_protocol_on_cluster"]
