"""TensorRT engines from the ONNX artifacts: profiles, the build, and the engine's manifest entry.

Everything up to the TensorRT call is decided here without TensorRT: optimization profiles from
the artifact's form and sizes (or the user's `--profile`), the option checks, the equivalent
`trtexec` line, and whether a built engine fits the GPU and TensorRT it is about to run on.
The build itself uses Polygraphy's loaders (strongly typed network from the ONNX path, so the
`.onnx.data` side file resolves; profiles, workspace, optimisation level, hardware compatibility
and timing cache through `CreateConfig`). Precision comes from the ONNX (DESIGN.md fact 1).
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .store import artifact_sha256, file_entry, prepare_out_dir, record, staging_prefix, write_error
from .errors import BadInput
from .artifact import Artifact
from .backends.tensorrt import Profile, dims
from .forms import FormSpec
from .manifest import ManifestEntry
from .metadata import ArtifactMeta
from .naming import engine_name
from .progress import step

log = logging.getLogger("vggdeploy")

HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS"}  # trt.HardwareCompatibilityLevel members
OPT_LEVELS = range(0, 6)
def parse_profile(text: str) -> Profile:
    """NAME:MIN:OPT:MAX with shapes as NxCxHxW, e.g. input:1x3x224x224:8x3x384x384:16x3x512x512."""
    parts = text.split(":")
    usage = "give NAME:MIN:OPT:MAX, e.g. input:1x3x224x224:8x3x384x384:16x3x512x512"
    if len(parts) != 4 or not parts[0]:
        raise BadInput(f"bad --profile {text!r}", hint=usage)
    try:
        shapes = [tuple(int(d) for d in p.lower().split("x")) for p in parts[1:]]
    except ValueError:
        raise BadInput(f"bad --profile {text!r}: shapes are numbers joined by x", hint=usage) from None
    return Profile(parts[0], *shapes)


def default_profiles(spec: FormSpec, channels: int, input_name: str = "input") -> list[Profile]:
    """Profiles from what the form allows: batches 1-32 for the classifier's fixed size; for the
    dense and features forms two H×W ranges (minimum to 512 and 512 to 1024, or scaled to the
    form's stride for small models), so each range gets kernels tuned for its middle."""
    c = channels
    if not spec.dynamic_hw:
        h, w = spec.size
        return [Profile(input_name, (1, c, h, w), (8, c, h, w), (32, c, h, w))]
    lo = spec.min_size
    mid, top = max(lo, 16 * spec.stride), max(lo, 32 * spec.stride)  # 512 and 1024 for stride 32
    small_opt = (lo + mid) // 2 // spec.stride * spec.stride or lo
    big_opt = (mid + top) // 2 // spec.stride * spec.stride
    return [Profile(input_name, (1, c, lo, lo), (4, c, small_opt, small_opt), (16, c, mid, mid)),
            Profile(input_name, (1, c, mid, mid), (1, c, big_opt, big_opt), (4, c, top, top))]


@dataclass(frozen=True)
class OnnxInput:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic dims


def onnx_inputs(artifact: Artifact) -> list[OnnxInput]:
    return [OnnxInput(name, tuple(shape)) for name, _, shape in artifact.io[0]]


def check_profiles(profiles: list[Profile], inp: OnnxInput, spec: FormSpec | None) -> None:
    """Refuse, before any build, a profile TensorRT or the form would reject."""
    for p in profiles:
        if p.input != inp.name:
            raise BadInput(f"--profile names input {p.input!r}; the model's input is {inp.name!r}")
        for label, shape in (("min", p.min), ("opt", p.opt), ("max", p.max)):
            if len(shape) != len(inp.shape):
                raise BadInput(f"profile {p}: {label} shape has {len(shape)} dims, the input has {len(inp.shape)}")
            if min(shape) < 1:
                raise BadInput(f"profile {p}: {label} shape has a dim below 1")
        if not all(a <= b <= c for a, b, c in zip(p.min, p.opt, p.max)):
            raise BadInput(f"profile {p} is out of order", hint="each dim needs min <= opt <= max")
        if spec is not None:  # the form's own rule first: its message says which form to use
            for shape in (p.min, p.max):
                spec.check_size(*shape[2:])
        for axis, d in enumerate(inp.shape):
            if isinstance(d, int) and d > 0 and not p.min[axis] == p.opt[axis] == p.max[axis] == d:
                raise BadInput(f"profile {p}: axis {axis} of {inp.name!r} is fixed at {d} in the ONNX",
                               hint="a dynamic profile needs an ONNX exported with that axis dynamic")


def parse_workspace(text: str | None) -> int | None:
    """4G, 512M, 1024K or bytes -> bytes."""
    if not text:
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b") or "x"
    try:
        value = float(t[:-1]) * units[t[-1]] if t[-1] in units else float(t)
    except ValueError:
        value = -1
    if value < 1 << 20:
        raise BadInput(f"bad --workspace {text!r}", hint="give a size of at least 1M, e.g. 4G or 512M")
    return int(value)


@dataclass
class BuildPlan:
    """Everything a build needs, checked; nothing here imports TensorRT."""

    onnx: Path
    out: Path
    profiles: list[Profile]
    precision: str
    form: str | None
    timing_cache: Path | None = None
    workspace: int | None = None
    opt_level: int | None = None
    hardware_compat: str = "none"
    meta: ArtifactMeta | None = None  # what the ONNX declares: the engine's entry carries what C++ needs

    def trtexec_command(self) -> str:
        """The trtexec line that builds the same engine. --stronglyTyped: required on 10.x, a no-op on
        11.x; --noTF32: trtexec turns TF32 on by default, Polygraphy's CreateConfig (our build) off.
        trtexec takes a second min/opt/max triple only behind `--profile=i`, each triple right after
        its index (samples/common/sampleOptions.cpp, getOptimizationProfiles)."""
        args = ["trtexec", f"--onnx={self.onnx}", f"--saveEngine={self.out}", "--stronglyTyped", "--noTF32",
                "--profilingVerbosity=detailed"]
        for i, p in enumerate(self.profiles):
            args += [f"--profile={i}"] if len(self.profiles) > 1 else []
            args += [f"--minShapes={p.input}:{dims(p.min)}", f"--optShapes={p.input}:{dims(p.opt)}",
                     f"--maxShapes={p.input}:{dims(p.max)}"]
        if self.workspace:
            args.append(f"--memPoolSize=workspace:{self.workspace >> 20}M")
        if self.opt_level is not None:
            args.append(f"--builderOptimizationLevel={self.opt_level}")
        if self.hardware_compat != "none":
            args.append(f"--hardwareCompatibilityLevel={self.hardware_compat}")
        if self.timing_cache:
            args.append(f"--timingCacheFile={self.timing_cache}")
        return shlex.join(args)

    def vggdeploy_command(self) -> str:
        args = ["vggdeploy", "build", str(self.onnx), "--out", str(self.out)]
        for p in self.profiles:
            args += ["--profile", str(p)]
        if self.timing_cache:
            args += ["--timing-cache", str(self.timing_cache)]
        if self.workspace:
            args += ["--workspace", f"{self.workspace >> 20}M"]
        if self.opt_level is not None:
            args += ["--opt-level", str(self.opt_level)]
        if self.hardware_compat != "none":
            args += ["--hardware-compat", self.hardware_compat]
        return shlex.join(args)


def plan_build(artifact: Path | Artifact, profiles: list[str] | list[Profile] | None = None, *, timing_cache: Path | None = None,
               workspace: str | int | None = None, opt_level: int | None = None, hardware_compat: str = "none",
               out: Path | None = None, force: bool = False) -> BuildPlan:
    """Check every input of a build and derive what is not given. Raises BadInput (exit 2)."""
    source = Artifact.of(artifact)  # side files and metadata checked
    onnx_path, meta = source.path, source.meta
    inputs = onnx_inputs(source)
    if len(inputs) != 1:
        raise BadInput(f"{onnx_path} has {len(inputs)} inputs; vggdeploy builds single-input models",
                       hint="use trtexec with one --minShapes/--optShapes/--maxShapes per input")
    inp = inputs[0]
    precision = source.precision
    if precision == "int8-cpu":
        raise BadInput(f"{onnx_path.name} is an INT8 graph for CPU runtimes; TensorRT's parser rejects its layout",
                       hint="vggdeploy quantize FP32.onnx --int8 --target tensorrt")
    spec = source.spec
    parsed = [p if isinstance(p, Profile) else parse_profile(p) for p in profiles or []]
    if not parsed:
        if spec is not None:
            parsed = default_profiles(spec, inp.shape[1], inp.name)
        elif all(isinstance(d, int) and d > 0 for d in inp.shape):
            parsed = [Profile(inp.name, inp.shape, inp.shape, inp.shape)]
        elif inp.shape[0] == -1 and all(d > 0 for d in inp.shape[1:]):  # only the batch is free: trtexec's way
            rest = tuple(inp.shape[1:])
            parsed = [Profile(inp.name, (1, *rest), (8, *rest), (32, *rest))]
            log.info("%s: only its batch axis is dynamic: profile batch 1/8/32 at %s (give --profile to change it)",
                     onnx_path.name, "x".join(map(str, rest)))
        else:
            raise BadInput(f"{onnx_path.name} has dynamic axes {list(inp.shape)} and no vggdeploy metadata",
                           hint=f"give --profile {inp.name}:MIN:OPT:MAX (NxCxHxW shapes)")
    check_profiles(parsed, inp, spec)
    if hardware_compat not in HARDWARE_COMPAT:
        raise BadInput(f"unknown --hardware-compat {hardware_compat!r}", hint=f"choose from: {', '.join(HARDWARE_COMPAT)}")
    if opt_level is not None and opt_level not in OPT_LEVELS:
        raise BadInput(f"--opt-level {opt_level} is out of range", hint="TensorRT's builder levels are 0..5 (default 3)")
    ws = workspace if isinstance(workspace, int) or workspace is None else parse_workspace(workspace)
    out = Path(out) if out else onnx_path.with_name(engine_name(onnx_path, meta))
    prepare_out_dir(out.parent, [out.name], force)
    if timing_cache:
        check_timing_cache(Path(timing_cache))
    return BuildPlan(Path(onnx_path), out, parsed, precision, source.form,
                     Path(timing_cache) if timing_cache else None, ws, opt_level, hardware_compat, meta)


def check_timing_cache(path: Path) -> None:
    """An existing cache must be a readable, non-empty file; its folder must take the updated one."""
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK):
            raise BadInput(f"timing cache {path} is not a readable file")
        if path.stat().st_size == 0:
            raise BadInput(f"timing cache {path} is empty (corrupt)", hint="delete it; the build writes a new one")
    error = write_error(path.parent)
    if error:
        raise BadInput(f"timing cache folder {path.parent} can't be written: {error.strerror or error}")


def engine_sources(paths: list[Artifact]) -> list[Artifact]:
    """Which of an export's ONNX files get engines: the FP16/INT8-tensorrt ones made, else FP32."""
    opened = [Artifact.of(p) for p in paths]  # what each declares, not what its name says
    typed = [a for a in opened if a.precision in ("fp16", "int8-tensorrt")]
    return typed or [a for a in opened if a.precision == "fp32"]


def build_engines(sources: list[Path | Artifact], force: bool = False, **options) -> list[Artifact]:
    """Plan every build (all checks first), then build each. Without a GPU host: one
    MissingEnvironment (exit 3) whose hint has the commands that build the same engines on one."""
    from .errors import MissingEnvironment
    from .gpu import missing_for_tensorrt

    plans = [plan_build(p, force=force, **options) for p in sources]
    for plan in plans:
        for i, p in enumerate(plan.profiles):
            log.info("%s profile %d: %s min %s opt %s max %s", plan.out.name, i, p.input, p.min, p.opt, p.max)
    missing = missing_for_tensorrt()
    if missing:
        commands = "\n".join(f"  {p.trtexec_command()}\n  {p.vggdeploy_command()}" for p in plans)
        raise MissingEnvironment(f"can't build a TensorRT engine here: {'; '.join(missing)}",
                                 hint=f"on a GPU host run (trtexec or vggdeploy):\n{commands}")
    return [Artifact.open(build_engine(plan)) for plan in plans]


def build_engine(plan: BuildPlan) -> Path:
    """Build, save atomically beside the ONNX, record in the manifest. Needs a GPU and TensorRT."""
    from .gpu import require_tensorrt

    trt, gpu = require_tensorrt(hint=f"on a GPU host run:\n  {plan.trtexec_command()}\nor:\n  {plan.vggdeploy_command()}")
    from .trt_calls import check_timing_cache_loads, polygraphy_calls
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.backend.trt import Profile as PolyProfile

    config_args = {"profiles": [PolyProfile().add(p.input, p.min, p.opt, p.max) for p in plan.profiles],
                   # layer types and parameters in the engine: `bench --profile-layers` sums its IProfiler's times by them
                   "profiling_verbosity": trt.ProfilingVerbosity.DETAILED}
    if plan.workspace:
        config_args["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: plan.workspace}
    if plan.opt_level is not None:
        config_args["builder_optimization_level"] = plan.opt_level
    if plan.hardware_compat != "none":
        config_args["hardware_compatibility_level"] = getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPAT[plan.hardware_compat])
    new_cache = None
    hint = f"run with --debug for TensorRT's log; the same build with trtexec:\n  {plan.trtexec_command()}"
    if plan.timing_cache:
        with polygraphy_calls(f"loading the timing cache {plan.timing_cache}", hint):
            check_timing_cache_loads(trt, plan.timing_cache)
        config_args["load_timing_cache"] = str(plan.timing_cache) if plan.timing_cache.exists() else None
        new_cache = plan.timing_cache.with_name(f"{staging_prefix()}{plan.timing_cache.name}")
    t0 = time.perf_counter()
    staged = plan.out.with_name(f"{staging_prefix()}{plan.out.name}")
    try:
        with step(f"building a TensorRT {trt.__version__} engine of {plan.onnx.name} on {gpu.name} "
                  f"({len(plan.profiles)} profile(s))"), polygraphy_calls(f"TensorRT's build of {plan.onnx.name}", hint):
            # a failed parse or build raises PolygraphyException (G_LOGGER.critical), never returns None
            network = NetworkFromOnnxPath(str(plan.onnx), strongly_typed=True)
            engine = EngineBytesFromNetwork(network, CreateConfig(**config_args),
                                            save_timing_cache=str(new_cache) if new_cache else None)()
        staged.write_bytes(bytes(engine))
        if new_cache and new_cache.exists():
            os.replace(new_cache, plan.timing_cache)
        os.chmod(staged, 0o644)
        os.replace(staged, plan.out)
    finally:
        staged.unlink(missing_ok=True)
        if new_cache:
            new_cache.unlink(missing_ok=True)
    build_s = time.perf_counter() - t0
    log.info("built %s in %.1f s", plan.out.name, build_s)
    record(plan.out.parent, plan.out.name, engine_entry(plan, trt.__version__, gpu, build_s))
    return plan.out


def engine_entry(plan: BuildPlan, trt_version: str, gpu, build_s: float) -> ManifestEntry:
    """The manifest entry of a built engine (what the runner checks before deserializing)."""
    return ManifestEntry("tensorrt-engine", plan.form, plan.precision, source=plan.onnx.name, **file_entry([plan.out]), details={
        "source_sha256": artifact_sha256(plan.onnx), "profiles": [p.to_json() for p in plan.profiles],
        "tensorrt": trt_version, "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "hardware_compat": plan.hardware_compat, "workspace": plan.workspace, "opt_level": plan.opt_level,
        "timing_cache": str(plan.timing_cache) if plan.timing_cache else None, "build_s": round(build_s, 1),
        "trtexec": plan.trtexec_command(),
        # a plan has no metadata: programs that run it (examples/cpp) read these from the manifest
        "preprocessing": plan.meta.preprocessing.to_table() if plan.meta else None,
        "class_names": list(plan.meta.class_names or []) or None if plan.meta else None})
