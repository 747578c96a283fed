"""Evaluation and extraction on a Ray cluster, through Ray Data (README: Feature extraction, and clusters).

A generic executor that knows no stage: the stages (evaluate, extraction) bring their actor class
and rows. The driver lists the images and reads the artifact's metadata: no decoding, no model, no
torch. Each actor holds one runner, its threads set to the actor's CPUs (ONNX Runtime and OpenVINO
ignore OMP_NUM_THREADS), and runs the same per-image code as the single-process path: that is what
makes results identical. An image that can't be read becomes an error row. Ray is imported only
here and in the actors, only when asked for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass


from .errors import BadInput, MissingEnvironment

log = logging.getLogger("vggdeploy")
CONNECT_TIMEOUT_S = 20
START_HINT = "start it with `ray start --head` (and `ray start --address` on each node)"


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

    @classmethod
    def from_flags(cls, cluster: str | None, workers: int | None, cpus_per_worker: int | None) -> "ClusterOptions | None":
        """The options from --cluster, --workers and --cpus-per-worker, or None without --cluster (a size
        given without it is BadInput); Ray importable and the cluster reachable, before any work."""
        if cluster is None:
            given = "--workers" if workers is not None else "--cpus-per-worker" if cpus_per_worker is not None else None
            if given:
                raise BadInput(f"{given} applies to --cluster", hint="add --cluster ADDRESS, or drop it")
            return None
        opts = cls(cluster, 2 if workers is None else workers, 1 if cpus_per_worker is None else cpus_per_worker)
        connect(opts)
        return opts


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
                                     hint=START_HINT) from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator progress lines
    ray.data.DataContext.get_current().enable_progress_bars = False
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < opts.workers * opts.cpus_per_worker:
        log.warning("the cluster has %g CPU(s); %d worker(s) x %d CPU(s) will queue", cpus, opts.workers,
                    opts.cpus_per_worker)
    return ray


# HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS and its client
# server are) answers with a SETTINGS frame of its own (RFC 9113, 3.4)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
PROBE_ANSWER_S = 5


def _probe(address: str) -> None:
    """HOST:PORT reached over TCP and answering as a gRPC server does, in CONNECT_TIMEOUT_S at most
    (ray.init retries an unreachable address for minutes, and waits on a port that is open but is
    not Ray's for longer): MissingEnvironment otherwise. `auto` is left to Ray, which fails at once
    when there is no cluster."""
    import socket

    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--cluster {address!r}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S) as conn:
            conn.settimeout(PROBE_ANSWER_S)
            conn.sendall(HTTP2_PREFACE)
            answer = conn.recv(9)
    except UnicodeError:  # the IDNA codec: a label over 63 characters, an empty label
        raise BadInput(f"--cluster {address!r}: {host!r} is not a valid host name",
                       hint="each dot-separated part is 1 to 63 characters") from None
    except TimeoutError:
        answer = b""
    except OSError as e:
        raise MissingEnvironment(f"cannot reach a Ray cluster at {address} ({e.strerror or type(e).__name__})",
                                 hint=START_HINT) from None
    if len(answer) < 4 or answer[3] != 4:
        raise MissingEnvironment(f"{address} answers, but not as a Ray cluster (no gRPC/HTTP/2 reply)",
                                 hint=f"check the port: a head's GCS is 6379 by default, its client server 10001; {START_HINT}")


def actor_setup():
    """What every actor does first: torch's own threads to 1 (preprocessing); the runner has the actor's CPUs."""
    import torch

    torch.set_num_threads(1)


def map_on_cluster(opts: ClusterOptions, rows: list[dict], actor: type, actor_kwargs: dict, batch: int):
    """A Ray Dataset: `rows` mapped, `batch` rows at a time, by a pool of `opts.workers` instances of
    `actor` (built with `actor_kwargs` and `threads`, each holding `opts.cpus_per_worker` CPUs).
    Lazy: the caller takes or writes it."""
    ray = connect(opts)
    return ray.data.from_items(rows).map_batches(
        actor, fn_constructor_kwargs={**actor_kwargs, "threads": opts.cpus_per_worker},
        compute=ray.data.ActorPoolStrategy(size=opts.workers), num_cpus=opts.cpus_per_worker,
        batch_size=batch, batch_format="numpy")


__all__ = ["ClusterOptions", "actor_setup", "connect", "map_on_cluster"]
