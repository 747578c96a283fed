"""A benchmark run: artifacts x runtimes x sizes x batches, eager PyTorch from the same weights as
the baseline, the compute floor measured in the same run, results as versioned JSON.

Each runtime is timed in a process of its own (DESIGN.md fact 16: torch's OpenMP threads slow the
next runtime in the same process), which also gives each runtime's own peak RSS.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path

from .store import command_line, entries, side_files
from .errors import BadInput, MissingEnvironment, first_line
from .signals import Terminated
from .progress import step
from .runs import SCHEMA

log = logging.getLogger("vggdeploy")
PEER_PRECISION = {"torch-compile": "fp32", "pt2e": "int8", "torch-compile-cuda": "fp16"}
ENGINES_ONLY = "tensorrt times .plan engines: `vggdeploy build` makes one"
NO_METADATA = ("it has no vggdeploy metadata: no PyTorch weights to time, and no compute floor; "
               "`vggdeploy adopt` records what it is")


def expand(paths: list[Path], engines: Path = Path("engines")) -> list[Path]:
    """Artifact files; a folder stands for every ONNX and engine its manifest lists; a variant name
    for its default folder (engines/NAME, where `vggdeploy export NAME` writes)."""
    from .variants import VARIANTS

    out = []
    for p in map(Path, paths):
        if not p.exists() and str(p).lower() in VARIANTS:
            if not (engines / p.name).is_dir():
                raise BadInput(f"no artifacts for {p} in {engines / p.name}", hint=f"vggdeploy export {p} --form all first")
            p = engines / p.name
        if p.is_dir():
            listed = [p / n for n, e in entries(p).items() if e.kind in ("onnx", "tensorrt-engine") and (p / n).exists()]
            if not listed:
                raise BadInput(f"{p} lists no ONNX artifact or engine in its manifest.json")
            out += listed
        elif p.is_file():
            out.append(p)
        else:
            raise BadInput(f"{p} not found")
    return out


def _block(artifact, backend: str, batches: list[int], size, runs: int, duration, hint: str, concurrency, foreign=None,
           profile_layers: bool = False):
    """One runtime's timing, run in a fresh child process (which receives the Artifact as the parent
    read it): (rows, peak RSS of that process in MB)."""
    from .bench import bench_artifact

    rows = bench_artifact(artifact, backend, batches, size, runs, hint, duration, concurrency, foreign, profile_layers)
    # VmHWM, not ru_maxrss: getrusage's peak survives execve, so a spawned child would report its parent's
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    return rows, round(peak_kb / 1024, 1)


def _in_child(*args):
    """_block(*args) in a fresh interpreter that imports nothing but what the block needs.

    Not multiprocessing: its spawned children re-import the caller's __main__, and a script that
    imports torch there made OpenVINO's batch-1 latency 2.2x slower in the child (88 vs 41 ms,
    VGG16 INT8) than in a clean process."""
    import pickle
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.pickle"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                          os.environ.get("PYTHONPATH")]))}
        code = "import sys; from vggdeploy.benchrun import _child_main; _child_main(sys.argv[1])"
        Path(tmp, "args.pickle").write_bytes(pickle.dumps(args))
        proc = subprocess.run([sys.executable, "-c", code, tmp], env=env)
        if not result.exists():
            raise RuntimeError(f"the benchmark process for {args[0]} on {args[1]} died (exit {proc.returncode})")
        status, value = pickle.loads(result.read_bytes())
    if status == "error":
        raise value
    return value


def _child_main(tmp: str) -> None:
    import pickle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends this process
    _die_with_parent()

    args = pickle.loads(Path(tmp, "args.pickle").read_bytes())
    try:
        out = ("ok", _block(*args))
    except Exception as e:  # handed to the parent, which raises it there
        out = ("error", e)
    Path(tmp, "result.pickle").write_bytes(pickle.dumps(out))


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies, however it dies (SIGKILL, out of memory)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's cleanup still ends it on SIGINT and SIGTERM
        pass


def check_timing(batches: list[int], runs: int, duration: float | None = None) -> None:
    if not batches or min(batches) < 1:
        raise BadInput("--batch needs positive batch sizes")
    if runs < 1:
        raise BadInput(f"--runs {runs}: give at least 1 timed run")
    if duration is not None and not 0 < duration <= 3600:
        raise BadInput(f"--duration {duration}: give a positive duration, at most 3600 s")


def run_bench(paths: list[Path], backends: list[str], batches: list[int], sizes: list[tuple[int, int]] | None = None,
              runs: int = 10, duration: float | None = None, eager: bool = True, strict: bool = False,
              hint: str = "auto", concurrency: list[int] | None = None, peers: list[str] | None = None,
              shape: tuple[int, ...] | None = None, profile_layers: bool = False) -> dict:
    """Time every artifact on every backend that applies to it, plus eager PyTorch once per form and
    weights, and the `peers` a PyTorch user would pick instead (backends/peers.py) the same way;
    Ctrl-C keeps what was measured (`interrupted`). An ONNX without vggdeploy metadata is timed as
    trtexec would (its input from the graph, or `shape` after the batch), with no eager row.
    `profile_layers`: each runtime row also gets ms per layer type (OpenVINO's performance counters,
    ONNX Runtime's profiler, TensorRT's IProfiler)."""
    from .metadata import ADOPTED_NO_EAGER
    from .backends import BACKENDS, GPU_BACKENDS
    from .bench import ForeignInput, gemm_rates
    from .artifact import Artifact, described
    from .forms import check_memory
    from .variants import macs_at

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise BadInput(f"unknown backend {(unknown or [''])[0]!r}", hint=f"choose from: {', '.join(BACKENDS)}")
    check_timing(batches, runs, duration)
    if peers:
        from .backends.peers import check_peers

        check_peers(peers)
    gpu = bool(set(backends) & set(GPU_BACKENDS))
    if gpu and peers and "torch-compile" in peers and "torch-compile-cuda" not in peers:
        peers = [*peers, "torch-compile-cuda"]  # a GPU run's peer: torch.compile on CUDA (FP16 autocast)
    eager_backends = (["torch", "torch-cuda"] if gpu else ["torch"]) if eager else []
    blocks, eager_keys, skipped, said, foreign = [], {}, [], set(), {}
    artifacts = list(map(Artifact.open, expand(paths)))  # read once: the benchmark children receive it
    if shape is not None and all(a.kind != "onnx" or a.meta for a in artifacts):
        raise BadInput("--shape applies to an ONNX without vggdeploy metadata", hint="use --size for a vggdeploy artifact")
    for path in artifacts:
        if path.kind == "onnx" and path.meta is None:
            foreign[path] = ForeignInput.of(path, shape, batches)
            blocks += [(path, backend, None, None, None, None) for backend in backends if backend != "tensorrt"]
            skipped += [{"artifact": path.name, "backend": "tensorrt", "reason": ENGINES_ONLY}] if "tensorrt" in backends else []
            skipped += [{"artifact": path.name, "backend": b, "reason": NO_METADATA} for b in eager_backends + list(peers or [])]
            continue
        meta = described(path).declared()
        v, spec = meta.to_variant(), meta.spec
        # a dynamic form at the variant's own input size unless asked (its minimum is 16x16 for the features form)
        default = (max(v.image_size, spec.min_size),) * 2 if spec.dynamic_hw else tuple(spec.size)
        for size in (sizes if sizes and spec.dynamic_hw else [default]):
            spec.check_size(*size)  # every size and batch checked before anything runs
            check_memory(v, size, max(batches))
            for backend in backends:
                if path.kind == "openvino-ir" and backend not in ("cpu", "openvino"):
                    skipped.append({"artifact": path.name, "backend": backend, "reason": "an OpenVINO IR runs on openvino"})
                elif (backend == "tensorrt") == (path.kind == "tensorrt-engine"):
                    blocks.append((path, backend, size, meta, v, spec))
                elif backend == "tensorrt":
                    skipped.append({"artifact": path.name, "backend": backend, "reason": ENGINES_ONLY})
            if meta.is_adopted and peers and path not in said:  # asked for by name: said once, not only listed
                said.add(path)
                log.warning("no peers for %s: %s", path.name, ADOPTED_NO_EAGER)
            for eager_backend in eager_backends + list(peers or []):
                if meta.is_adopted:
                    skipped.append({"artifact": path.name, "backend": eager_backend, "reason": ADOPTED_NO_EAGER})
                    continue
                key = (meta.weights_sha256, spec.form, size, eager_backend)
                if key not in eager_keys and path.kind == "onnx":
                    eager_keys[key] = (path, eager_backend, size, meta, v, spec)
    if sizes and not any(spec and spec.dynamic_hw for *_, spec in blocks):
        fixed = blocks[0][5].size if blocks else None
        raise BadInput(f"--size applies to the dense and features forms; {blocks[0][0].name if blocks else 'this artifact'} "
                       f"takes a fixed {fixed[0]}x{fixed[1]}" if fixed else "--size applies to the dense and features forms",
                       hint="drop --size, or bench the dense form (vggdeploy export MODEL --form dense)")
    for path in {b[0] for b in blocks if sizes and b[5] and not b[5].dynamic_hw}:
        log.warning("%s takes a fixed input size: timed at it, not at --size", path.name)
    for path in foreign:
        log.warning("%s: no eager row (%s)", path.name, NO_METADATA)
    blocks += list(eager_keys.values())
    rates = {}
    if any(b[3] for b in blocks):  # an ONNX without vggdeploy metadata has no MACs to set a floor with
        with step("measuring the compute floor (GEMM rates)"):
            rates = gemm_rates()
    system = system_info()  # its INT8 ISA per row too: merged runs may come from different CPUs
    results, interrupted_by = [], None
    try:
        for i, (path, backend, size, meta, v, spec) in enumerate(blocks, 1):
            at = foreign[path].size if path in foreign else f"{size[0]}x{size[1]}"
            label = f"[{i}/{len(blocks)}] {path.name} on {backend} at {at}, batch {batches}"
            try:
                with step(label):
                    rows, rss = _in_child(path, backend, batches, size, runs, duration, hint, concurrency, foreign.get(path),
                                          profile_layers)
            except MissingEnvironment as e:
                if strict:
                    raise
                skipped.append({"artifact": path.name, "backend": backend, "reason": str(e)})
                log.warning("skipped %s on %s: %s", path.name, backend, e)
                continue
            except Exception as e:  # a peer that fails to compile: said, and the run goes on
                if backend not in (peers or []):
                    raise
                reason = f"failed: {type(e).__name__}: {first_line(e)[:300]}"
                skipped.append({"artifact": path.name, "backend": backend, "reason": reason})
                log.warning("peer %s on %s %s", backend, path.name, reason)
                continue
            precision = PEER_PRECISION.get(backend) or ("fp32" if backend.startswith("torch") or not meta else meta.precision)
            rate = rates.get("int8" if precision.startswith("int8") else "fp32")
            for r in rows:
                floor = macs_at(v, spec.form, *size) * r["batch"] / (rate * 1e9) * 1e3 if meta else None
                peer = backend in (peers or [])
                eager = backend.startswith("torch") or peer  # eager and peer rows: the weights behind the artifact, not its file
                results.append({"artifact": f"{'peer' if peer else 'eager'}:{meta.weights}" if eager else str(path),
                                "model": v.name if meta else path.stem,
                                # the folder names the model; a foreign ONNX is named by its file too
                                "folder": Path(path).resolve().parent.name + ("" if meta else f"/{path.name}"),
                                "form": spec.form if meta else "onnx", "precision": precision,
                                "backend": {"torch": "eager", "torch-cuda": "eager-cuda"}.get(backend, backend),
                                "peer": peer, **({"compile_s": round(r["first_ms"] / 1e3, 1)} if peer and "first_ms" in r else {}),
                                "cpu_isa": system["int8_isa"], **r,
                                "peak_rss_mb": rss,
                                "artifact_mb": None if eager else round(sum(f.stat().st_size for f in side_files(path)) / 2**20, 1),
                                "floor_ms": floor and round(floor, 3), "vs_floor": floor and round(r["median_ms"] / floor, 2)})
    except (KeyboardInterrupt, Terminated) as e:  # the child was killed by subprocess.run on the way out
        interrupted_by = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
        log.warning("interrupted: keeping the %d result(s) measured so far", len(results))
    if not results and skipped and not interrupted_by:
        raise MissingEnvironment(f"nothing could be measured here: {skipped[0]['reason']}")
    add_speedups(results)
    return {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command_line(),
            "system": system, "gemm_gmacs": rates, "results": results, "skipped": skipped,
            "interrupted": bool(interrupted_by), **({"interrupted_by": interrupted_by} if interrupted_by else {})}


def add_speedups(results: list[dict]) -> None:
    """speedup_vs_eager: this row's images/s over eager PyTorch's, for the same model, form, size,
    batch and kind of timing (the latency ratio when one request is in flight); speedup_vs_best_peer:
    over the fastest peer's (torch.compile, PT2E) for the same."""
    def key(r):  # timing: wall-clock, serving with N in flight, or CUDA events (eager on CUDA is its baseline)
        return r["model"], r["form"], r["size"], r["batch"], r["timing"]

    eager = {key(r): r["images_per_s"] for r in results if r["backend"].startswith("eager")}
    fastest_peer: dict[tuple, float] = {}
    for r in results:
        if r.get("peer"):
            fastest_peer[key(r)] = max(fastest_peer.get(key(r), 0.0), r["images_per_s"])
    for r in results:
        base, peer = eager.get(key(r)), fastest_peer.get(key(r))
        r["speedup_vs_eager"] = round(r["images_per_s"] / base, 2) if base else None
        r["speedup_vs_best_peer"] = round(r["images_per_s"] / peer, 2) if peer else None


def system_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from .gpu import cuda_info
    from .isa import cpu_isa

    isa = cpu_isa()
    versions = {}
    for dist in ("vggdeploy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "polygraphy"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    info = cuda_info()
    return {"cpu": isa.model, "cores": os.cpu_count(), "isa": list(isa.features), "int8_isa": isa.int8_class,
            "platform": platform.platform(),
            "python": platform.python_version(), "gpus": [g.__dict__ for g in info.gpus], "cuda_driver": info.driver,
            "versions": versions}


__all__ = ["expand", "run_bench", "system_info"]
