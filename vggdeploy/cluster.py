"""Evaluation and extraction on a Ray cluster, through Ray Data (README: Feature extraction, and clusters).

A generic executor that knows no stage: the stages (evaluate, extraction) bring their actor class
and rows. The driver lists the images and reads the artifact's metadata: no decoding, no model, no
torch. Each actor holds one runner, its threads set to the actor's CPUs (ONNX Runtime and OpenVINO
ignore OMP_NUM_THREADS), and runs the same per-image code as the single-process path: that is what
makes results identical. An image that can't be read becomes an error row. Ray is imported only
here and in the actors, only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
    logging.getLogger("ray.data.exceptions").setLevel(logging.CRITICAL)  # a stack trace for HeadLost: ours says it
    ray.data.DataContext.get_current().enable_progress_bars = False
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < opts.workers * opts.cpus_per_worker:
        log.warning("the cluster has %g CPU(s); %d worker(s) x %d CPU(s) will queue", cpus, opts.workers,
                    opts.cpus_per_worker)
    return ray


class HeadLost(MissingEnvironment):
    """The cluster's head (its GCS) stopped answering mid-job (exit 3). The process must end at once:
    Ray's own shutdown would wait 60 s for the lost GCS, then exit 1."""

    exit_now = True


@contextlib.contextmanager
def cluster_job():
    """Around a job's execution on the cluster (the lazy Dataset taken or written):

    - Ray's C++ core writes to the process's stderr, e.g. a line for every Ray Data actor pool
      ("constructor arguments in the object store and max_restarts > 0", ray#53727) that is not the
      user's to act on; it also goes to the session's python-core-driver log, so stderr (fd 2) points
      to /dev/null meanwhile, and our own lines come after.
    - Ray's driver waits 60 s for a lost head (its GCS), then ends the process from C++ with exit 1 and
      no word of ours. A thread probes the GCS; once it has refused for LOST_AFTER_S, HeadLost is raised
      in the main thread (the stage's staging is cleaned as for any error); if the main thread is stuck
      in Ray, the thread says so itself and exits 3 (a staging left behind goes with the next run)."""
    import signal
    import sys
    import threading

    import ray

    gcs = ray.get_runtime_context().gcs_address
    message = f"lost the Ray cluster's head mid-job (its GCS at {gcs} stopped answering)"

    def lost(*_):
        raise HeadLost(message, hint="nothing of this run was kept; restart the head (and the nodes), then run it again")

    main = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    sys.stderr.flush()
    stderr, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    done = threading.Event()
    previous = signal.signal(signal.SIGUSR2, lost) if main else None
    if main:
        threading.Thread(target=_watch, args=(gcs, message, done, stderr), daemon=True, name="vggdeploy-head-watch").start()
    head_lost = False
    try:
        yield
    except HeadLost:
        head_lost = True
        raise
    finally:
        done.set()
        if main:
            signal.signal(signal.SIGUSR2, previous)
        if head_lost:  # the process ends next (HeadLost.exit_now), while Ray's C++ threads still write to
            sys.stderr = os.fdopen(stderr, "w", buffering=1)  # fd 2: it stays /dev/null, our line goes here
        else:
            os.dup2(stderr, 2)
            os.close(stderr)
        os.close(null)


PROBE_EVERY_S, LOST_AFTER_S, GRACE_S = 1.0, 8.0, 20.0


def _watch(gcs: str, message: str, done, stderr: int) -> None:
    import _thread
    import signal
    import socket

    host, _, port = gcs.rpartition(":")
    down_since = None
    while not done.wait(PROBE_EVERY_S):
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            down_since = None
        except OSError:
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since >= LOST_AFTER_S:
                break
    if done.is_set():
        return
    _thread.interrupt_main(signal.SIGUSR2)
    if not done.wait(GRACE_S):  # the main thread never got back from Ray
        os.write(stderr, f"error: {message}\n".encode())
        os._exit(HeadLost.exit_code)


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


__all__ = ["ClusterOptions", "HeadLost", "actor_setup", "cluster_job", "connect", "map_on_cluster"]
