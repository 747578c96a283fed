"""TensorRT engines as a runner, through Polygraphy's TrtRunner (device buffers, one CUDA stream,
torch tensors in and out when asked), with the profile chosen from each input's shape.

Before deserializing, the engine is checked against its manifest entry (TensorRT version, GPU
architecture, size): TensorRT itself answers a foreign plan with a log line and a None. The
optimization profiles (`Profile`) an engine is built with and chosen by live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..manifest import ManifestEntry
from ..store import entry_of
from ..errors import BadInput
from .base import Runner


Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """min/opt/max shapes of the (single) input for one optimization profile."""

    input: str
    min: Shape
    opt: Shape
    max: Shape

    def covers(self, shape: Shape) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def to_json(self) -> dict:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, d: dict) -> "Profile":
        return cls(d["input"], tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))

    def __str__(self) -> str:
        return f"{self.input}:{dims(self.min)}:{dims(self.opt)}:{dims(self.max)}"


def dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def engine_problems(entry: ManifestEntry | None, trt_version: str, gpu, plan_path: Path) -> list[str]:
    """Why an engine can't run here, judged from its manifest entry before deserializing: another
    TensorRT version, another GPU architecture (unless built Ampere+ compatible), a changed file."""
    if entry is None:
        return []
    problems = []
    if entry.get("tensorrt") != trt_version:
        problems.append(f"built with TensorRT {entry.get('tensorrt')}, this is {trt_version}")
    built_cc = entry.get("gpu", {}).get("compute_capability")
    if entry.get("hardware_compat") == "ampere+":
        if float(gpu.compute_capability) < 8.0:
            problems.append(f"built for Ampere and newer, this GPU is compute capability {gpu.compute_capability}")
    elif built_cc != gpu.compute_capability:
        problems.append(f"built for compute capability {built_cc} ({entry['gpu'].get('name')}), "
                        f"this GPU ({gpu.name}) is {gpu.compute_capability}")
    size = plan_path.stat().st_size
    if size != entry.get("bytes"):
        problems.append(f"{plan_path.name} is {size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced)")
    return problems


def manifest_entry(path: Path) -> ManifestEntry | None:
    return entry_of(path)


def choose_profile(profiles: list[Profile], shape: tuple[int, ...]) -> int:
    """The first profile whose range holds the shape; BadInput naming all of them otherwise."""
    for i, p in enumerate(profiles):
        if p.covers(tuple(shape)):
            return i
    listed = "; ".join(f"{i}: {p.min}..{p.max}" for i, p in enumerate(profiles))
    raise BadInput(f"input shape {tuple(shape)} is outside every optimization profile of the engine ({listed})",
                   hint="rebuild with a --profile that covers it")


def _layer_types(trt, engine) -> dict[str, str]:
    """{layer name: LayerType} from the engine inspector (empty for an engine built with layer names only)."""
    import json

    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON) or "{}")
    return {layer["Name"]: layer.get("LayerType", layer["Name"]) for layer in info.get("Layers", []) if isinstance(layer, dict)}


def _LayerTimes(trt):
    """A trt.IProfiler that keeps (layer name, ms) as TensorRT reports each layer of a run."""
    class LayerTimes(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)
            self.times: list[tuple[str, float]] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times.append((layer_name, ms))

    return LayerTimes()


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, path: str | Path, device_io: bool = False, profile: bool = False):
        """device_io: take and return torch CUDA tensors (no host copies) instead of numpy arrays.
        profile: TensorRT's IProfiler on the execution context (layer_times)."""
        self.path, self.device_io, self.profile = Path(path), device_io, profile
        self.inner = self.profiles = self.input_name = self.layer_types = None
        self.profile_index = -1  # the optimization profile in use (not `active`: Runner's own flag)

    def _activate(self) -> None:
        from ..gpu import require_tensorrt

        trt, gpu = require_tensorrt(hint="TensorRT engines run on the GPU host that built them")
        if not self.path.is_file():
            raise BadInput(f"{self.path} not found")
        problems = engine_problems(manifest_entry(self.path), trt.__version__, gpu, self.path)
        if problems:
            raise BadInput(f"{self.path.name} can't run here: {'; '.join(problems)}",
                           hint="rebuild it on this machine with `vggdeploy build`")
        from polygraphy.backend.trt import TrtRunner

        from ..trt_calls import polygraphy_calls

        engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BadInput(f"{self.path.name} is not a TensorRT engine this TensorRT ({trt.__version__}) can load",
                           hint="rebuild it with `vggdeploy build`")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in inputs]
        self.profiles = [Profile(inputs[0], *(tuple(s) for s in engine.get_tensor_profile_shape(inputs[0], i)))
                         for i in range(engine.num_optimization_profiles)]
        self.input_name = inputs[0]
        self.inner = TrtRunner(engine)
        with polygraphy_calls(f"starting {self.path.name} on TensorRT"):  # loads libcudart: the pip one too
            self.inner.activate()
        self.profile_index = 0
        self.name = f"tensorrt[{gpu.name}]"
        if self.profile:
            self.layer_types = _layer_types(trt, engine)
            self.inner.context.profiler = _LayerTimes(trt)

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    @property
    def stream_handle(self) -> int:
        """The raw CUDA stream the engine runs on (for CUDA-event timing)."""
        return self.inner.stream.ptr

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = next(iter(feed.values()))
        index = choose_profile(self.profiles, tuple(x.shape))
        if index != self.profile_index:
            self.inner.set_profile(index)
            self.profile_index = index
        from ..trt_calls import polygraphy_calls

        with polygraphy_calls(f"TensorRT's run of {self.path.name}"):
            out = self.inner.infer({self.profiles[0].input: x}, copy_outputs_to_host=not self.device_io)
        # the outputs are views into Polygraphy's buffers (host, or its output allocator's on the
        # device), which the next call overwrites: hand out copies
        return {n: out[n].clone() if self.device_io else np.array(out[n]) for n in self._outputs}

    def layer_times(self, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
        """From TensorRT's IProfiler (called per layer as each run completes), summed by layer type:
        the engine inspector's LayerType where the engine was built with detailed profiling verbosity
        (`vggdeploy build` does), else each layer under its own name."""
        from .base import median_by_type

        self.require_profiler()
        self.infer(feed)
        per_run = []
        for _ in range(runs):
            self.inner.context.profiler.times.clear()
            self.infer(feed)
            times: dict[str, float] = {}
            for layer, ms in self.inner.context.profiler.times:
                kind = self.layer_types.get(layer, layer)
                times[kind] = times.get(kind, 0.0) + ms
            per_run.append(times)
        return median_by_type(per_run)

    def _deactivate(self) -> None:
        if self.inner is not None:
            from ..trt_calls import polygraphy_calls

            with polygraphy_calls(f"closing {self.path.name}"):
                self.inner.deactivate()
        self.inner = None
