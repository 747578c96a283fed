"""ONNX Runtime as a runner (CPU, CUDA or TensorRT execution provider)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..store import cache_root
from ..errors import MissingEnvironment
from .base import ArtifactRunner

TRT_CACHE = cache_root() / "ort-tensorrt"
log = logging.getLogger("vggdeploy")
_warned: set[str] = set()


def warn_if_saturating(path: Path, layout: str | None) -> None:
    """Once per artifact and process: a layout whose U8S8 sums saturate on this CPU (isa.py)."""
    from ..isa import cpu_isa
    from ..layouts import CPU_DEFAULT, LAYOUTS

    isa = cpu_isa()
    if layout is None or LAYOUTS[layout].exact_here(isa, "onnxruntime") or str(path) in _warned:
        return
    _warned.add(str(path))
    log.warning("%s (INT8 %s) loses accuracy on ONNX Runtime on this CPU (%s, no VNNI): its 16-bit sums "
                "saturate. Re-quantize with the portable layout (`vggdeploy quantize FP32.onnx --int8 --target cpu "
                "--cpu-layout %s`) or run it on OpenVINO (--backend openvino, or cpu)",
                path.name, layout, isa.int8_class.upper(), CPU_DEFAULT)


class OrtRunner(ArtifactRunner):
    name = "onnxruntime"

    def __init__(self, path: str | Path, provider: str = "CPUExecutionProvider", threads: int | None = None,
                 trt_cache: str | Path = TRT_CACHE, low_memory: bool = False, profile: bool = False):
        """trt_cache: where the TensorRT provider keeps the engines and timing cache it builds, so a
        second session starts in seconds, not minutes. low_memory: no re-laid-out or pre-packed copies of
        the weights (VGG16's dense form: 0.7 instead of 1.8 GB, about 20% slower; for checks, never
        for timing)."""
        super().__init__(path)
        self.provider, self.threads, self.trt_cache = provider, threads, Path(trt_cache)
        self.low_memory = low_memory
        self.profile = profile  # ONNX Runtime's profiler on (layer_times); its JSON goes to a temporary folder
        self.session = None

    def _activate(self) -> None:
        import onnxruntime as ort

        self.load_spec()
        if self.provider not in ort.get_available_providers():
            raise MissingEnvironment(
                f"ONNX Runtime here has no {self.provider} (has: {', '.join(ort.get_available_providers())})",
                hint="install onnxruntime-gpu (not beside onnxruntime) on a machine with CUDA 13 and cuDNN 9",
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        if self.profile:
            import tempfile

            self._profile_dir = tempfile.TemporaryDirectory(prefix="vggdeploy-ort-profile-")
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(self._profile_dir.name) / "ort")
        if self.low_memory:  # no NCHWc copies of the weights (layout optimizations), no pre-packed ones
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.add_session_config_entry("session.disable_prepacking", "1")
        providers: list = [self.provider]
        if self.provider == "TensorrtExecutionProvider":
            self.trt_cache.mkdir(parents=True, exist_ok=True)
            providers = [(self.provider, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(self.trt_cache),
                                          "trt_timing_cache_enable": True, "trt_timing_cache_path": str(self.trt_cache)}),
                         "CUDAExecutionProvider"]
        if self.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
            if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from pip's nvidia wheels, not torch's side effect
                ort.preload_dlls()
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/RuntimeException types
            raise self.load_error("ONNX Runtime", e) from None
        # ORT falls back to CPU silently when CUDA libraries are missing (DESIGN.md fact 15)
        got = self.session.get_providers()[0]
        if got != self.provider:
            from ..gpu import tensorrt_mismatch

            self.session = None
            mismatch = tensorrt_mismatch() if self.provider == "TensorrtExecutionProvider" else None
            raise MissingEnvironment(f"ONNX Runtime could not start {self.provider} (fell back to {got})",
                                     hint=mismatch or "check the CUDA 13 and cuDNN 9 libraries (`vggdeploy doctor`)")
        self.name = f"onnxruntime[{self.provider.removesuffix('ExecutionProvider')}]"
        if self.provider == "CPUExecutionProvider":
            warn_if_saturating(self.path, self.int8_layout)

    @property
    def config(self) -> dict:
        options = self.session.get_session_options()
        return {"provider": self.provider.removesuffix("ExecutionProvider"),
                "threads": options.intra_op_num_threads or "auto",  # ORT's default: one per physical core
                "optimization": str(options.graph_optimization_level).rsplit("_", 1)[-1].lower()}

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.session.run(None, feed)
        return dict(zip(self.output_names, out))

    def layer_times(self, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
        """From ONNX Runtime's profiler: each node's kernel time, assigned to the run it fell in,
        summed by op type (the ops as ORT ran them: fused ones under their fused name)."""
        import json

        from .base import median_by_type

        self.require_profiler()
        for _ in range(runs + 1):
            self.infer(feed)
        events = json.loads(Path(self.session.end_profiling()).read_text())
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
        per_run = [{} for _ in spans]
        for e in events:
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                i = next((k for k, (a, b) in enumerate(spans) if a <= e["ts"] <= b), None)
                if i is not None:
                    op = e.get("args", {}).get("op_name", "?")
                    per_run[i][op] = per_run[i].get(op, 0.0) + e["dur"] / 1e3
        return median_by_type(per_run[1:])  # the first run: the warm-up

    def _deactivate(self) -> None:
        self.session = None  # first: a profiling session writes its file as it goes
        if getattr(self, "_profile_dir", None):
            self._profile_dir.cleanup()
