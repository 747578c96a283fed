"""Triton Inference Server model repositories from vggdeploy artifacts.

The config is Triton's own `ModelConfig` protobuf message (from tritonclient), written with
protobuf's text format, and linted for what Triton would reject or silently ignore. Platforms:
`onnxruntime_onnx` and `openvino` (the ONNX files), `tensorrt_plan` (an engine), and `python`
(a `model.py` that runs the artifact with vggdeploy's fastest CPU runner: the one served here,
DESIGN.md fact 9).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .artifact import Artifact, described, kind_of
from .store import check_name, require_writable, side_files, staging_prefix
from .errors import BadInput, MissingEnvironment, spelled
from .metadata import ArtifactMeta

PLATFORMS = ("onnxruntime_onnx", "tensorrt_plan", "openvino", "python")
KINDS = ("cpu", "gpu")
ACCELERATORS = {"tensorrt": "gpu", "openvino": "cpu"}  # ONNX Runtime's execution accelerators in Triton


def _pb():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise MissingEnvironment("Triton's config schema needs tritonclient",
                                 hint="pip install 'tritonclient[grpc]'") from None
    return model_config_pb2


@dataclass(frozen=True)
class TritonOptions:
    name: str
    platform: str = "onnxruntime_onnx"
    max_batch: int = 8
    dynamic_batching: bool = False
    max_queue_delay_us: int = 0
    instances: int = 1
    kind: str = "cpu"
    accelerator: str | None = None


def default_name(artifact: Path) -> str:
    """FOLDER-FORM-PRECISION, e.g. vgg16-dense-fp16 for engines/vgg16/dense.fp16.onnx."""
    parts = Path(artifact).name.split(".")
    name = f"{Path(artifact).resolve().parent.name}-{parts[0]}-{parts[1] if len(parts) > 2 else 'fp32'}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip("._-")[:128]  # a plain name whatever the folder's


def build_config(artifact: Path | Artifact, opts: TritonOptions):
    """Triton's ModelConfig for an artifact (a ModelConfig protobuf message)."""
    pb = _pb()
    opened = Artifact.of(artifact)
    source = described(opened)
    (ins, outs), meta = source.io, source.meta
    dtype = {1: pb.TYPE_FP32, 10: pb.TYPE_FP16}
    cfg = pb.ModelConfig(name=opts.name, max_batch_size=opts.max_batch)
    if opts.platform in ("python", "openvino"):
        cfg.backend = opts.platform
    else:
        cfg.platform = opts.platform
    cfg.default_model_filename = "model.plan" if opts.platform == "tensorrt_plan" else "model.onnx"
    if opts.platform == "python":
        cfg.default_model_filename = "model.py"
        cfg.parameters["artifact"].string_value = "model.onnx"
    batched = opts.max_batch > 0
    for name, elem, shape in ins:
        cfg.input.add(name=name, data_type=dtype.get(elem, pb.TYPE_FP32), dims=shape[1:] if batched else shape)
    names = meta.class_names if meta else None
    for name, elem, shape in outs:
        out = cfg.output.add(name=name, data_type=dtype.get(elem, pb.TYPE_FP32), dims=shape[1:] if batched else shape)
        if name in ("logits", "probabilities") and names:
            out.label_filename = "labels.txt"
    group = cfg.instance_group.add(count=opts.instances, kind=pb.ModelInstanceGroup.KIND_GPU if opts.kind == "gpu"
                                   else pb.ModelInstanceGroup.KIND_CPU)
    if opts.platform == "tensorrt_plan":
        profiles = (opened.entry or {}).get("profiles", [])
        group.profile.extend(str(i) for i in range(len(profiles)))
    if opts.dynamic_batching:
        cfg.dynamic_batching.max_queue_delay_microseconds = opts.max_queue_delay_us
    if opts.accelerator:
        accel = cfg.optimization.execution_accelerators
        lane = accel.gpu_execution_accelerator if ACCELERATORS[opts.accelerator] == "gpu" else accel.cpu_execution_accelerator
        lane.add(name=opts.accelerator)
    return cfg


def lint(cfg, artifact: Path | Artifact) -> list[str]:
    """What Triton would reject or silently ignore, and what contradicts the artifact."""
    pb = _pb()
    opened = Artifact.of(artifact)
    artifact, (ins, outs) = opened.path, described(opened).io
    problems = []
    is_plan = opened.kind == "tensorrt-engine"
    platform = cfg.platform or cfg.backend
    if (platform == "tensorrt_plan") != is_plan:
        problems.append(f"platform {platform} does not take a {artifact.suffix} file"
                        + (" (build an engine with `vggdeploy build`)" if platform == "tensorrt_plan" else ""))
    for g in cfg.instance_group:
        if g.profile and platform != "tensorrt_plan":
            problems.append(f"instance group {g.name or 0}: `profile` applies to tensorrt_plan only (Triton ignores it)")
        if g.kind == pb.ModelInstanceGroup.KIND_CPU and cfg.optimization.execution_accelerators.gpu_execution_accelerator:
            problems.append("a GPU execution accelerator on a CPU instance group")
        if g.kind == pb.ModelInstanceGroup.KIND_GPU and platform in ("openvino", "python"):
            problems.append(f"{platform} runs on CPU instance groups here; use --kind cpu")
        if g.kind == pb.ModelInstanceGroup.KIND_CPU and platform == "tensorrt_plan":
            problems.append("a TensorRT engine needs a GPU instance group (--kind gpu)")
    accel = cfg.optimization.execution_accelerators
    if (accel.gpu_execution_accelerator or accel.cpu_execution_accelerator) and platform != "onnxruntime_onnx":
        problems.append("execution accelerators apply to the onnxruntime_onnx platform only")
    batched = cfg.max_batch_size > 0
    for declared, actual in ((cfg.input, ins), (cfg.output, outs)):
        for d, (name, _, shape) in zip(declared, actual):
            want = list(shape[1:] if batched else shape)
            if d.name != name or list(d.dims) != want:
                problems.append(f"{d.name}: dims {list(d.dims)} contradict the artifact's {name} {want}")
    if batched and ins and ins[0][2][0] != -1:
        problems.append(f"max_batch_size {cfg.max_batch_size} but the artifact's batch is fixed at {ins[0][2][0]}")
    if is_plan:
        top = max((p["max"][0] for p in (opened.entry or {}).get("profiles", [])), default=None)
        if top is not None and cfg.max_batch_size > top:
            problems.append(f"max_batch_size {cfg.max_batch_size} exceeds the engine's largest profile batch {top}")
    return problems


def write_repository(artifact: Path | Artifact, repo: Path, opts: TritonOptions, force: bool = False) -> Path:
    """repo/NAME/{config.pbtxt, labels.txt, README.md, 1/model.*}; checked, staged, then moved in."""
    from google.protobuf import text_format

    opened, artifact = artifact if isinstance(artifact, Artifact) else None, Path(artifact)
    check_name(opts.name, "--name")
    if opts.platform not in PLATFORMS:
        raise BadInput(f"unknown platform {opts.platform!r}", hint=f"choose from: {', '.join(PLATFORMS)}")
    if opts.kind not in KINDS:
        raise BadInput(f"unknown --kind {opts.kind!r}", hint="cpu or gpu")
    if opts.accelerator and opts.accelerator not in ACCELERATORS:
        raise BadInput(f"unknown accelerator {opts.accelerator!r}", hint=f"choose from: {', '.join(ACCELERATORS)}")
    if opts.max_batch < 0 or opts.instances < 1 or opts.max_queue_delay_us < 0:
        raise BadInput("--max-batch >= 0, --instances >= 1 and --max-queue-delay-us >= 0, please")
    if not artifact.is_file():
        raise BadInput(f"{artifact} not found")
    files = side_files(artifact) if kind_of(artifact) == "onnx" else [artifact]
    opened = opened or Artifact.open(artifact)  # an ONNX's side files checked; an engine's entry and source read
    meta = described(opened).declared()  # an artifact without vggdeploy metadata is refused before the repository is made
    cfg = build_config(opened, opts)
    problems = lint(cfg, opened)
    if problems:
        raise BadInput(f"Triton would reject this configuration: {problems[0]}"
                       + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    target = repo / opts.name
    if target.is_symlink() or target.exists() and not target.is_dir():
        raise BadInput(f"{target} is not a model folder (a {'symlink' if target.is_symlink() else 'file'}): "
                       "vggdeploy replaces only model folders", hint=f"remove it yourself, or choose another {spelled('--name', 'name')}")
    if target.exists() and not force:
        raise BadInput(f"{target} already exists", hint=f"pass {spelled('--force', 'force=True')} to replace it")
    require_writable(repo, hint=f"choose another {spelled('--repo', 'repo')}")
    tmp = Path(tempfile.mkdtemp(dir=repo, prefix=staging_prefix()))  # fresh: never an existing name
    try:
        (tmp / "1").mkdir()
        main = "model.plan" if opts.platform == "tensorrt_plan" else "model.onnx"
        shutil.copyfile(files[0], tmp / "1" / main)
        for extra in files[1:]:  # the external data keeps its name: the graph refers to it by name
            shutil.copyfile(extra, tmp / "1" / extra.name)
        if opts.platform == "python":
            (tmp / "1" / "model.py").write_text(MODEL_PY)
        if meta.class_names:
            (tmp / "labels.txt").write_text("\n".join(meta.class_names) + "\n")
        (tmp / "config.pbtxt").write_text(text_format.MessageToString(cfg))
        (tmp / "README.md").write_text(repo_readme(opts, artifact, meta))
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` at `target`; an old folder there is moved aside first (a rename, so a
    reader sees the old model or the new one), then deleted."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=staging_prefix())) / "old"
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old.parent)


def read_config(path: Path):
    """Parse a config.pbtxt back with Triton's schema (what tritonserver does on load)."""
    from google.protobuf import text_format

    return text_format.Parse(Path(path).read_text(), _pb().ModelConfig())


def repo_readme(opts: TritonOptions, artifact: Path, meta: ArtifactMeta) -> str:
    """The README of a model folder: what it serves and how to call it."""
    backend = {"python": "Triton's Python backend running vggdeploy's CPU runner (`model.py`)",
               "onnxruntime_onnx": "Triton's ONNX Runtime backend",
               "openvino": "Triton's OpenVINO backend",
               "tensorrt_plan": "Triton's TensorRT backend, on a GPU like the one the engine was built on"}[opts.platform]
    v, spec = meta.to_variant(), meta.spec
    shape = f" --shape input:{v.in_channels},{spec.size[0]},{spec.size[1]}" if spec.dynamic_hw else ""
    serve = PYTHON_SERVE if opts.platform == "python" else (
        "# in NVIDIA's Triton container (nvcr.io/nvidia/tritonserver), from this folder\n"
        "tritonserver --model-repository=\"$(pwd)/..\" --http-address=127.0.0.1 --grpc-address=127.0.0.1\n")
    return f"""# {opts.name}: Triton model repository entry made by vggdeploy

From `{artifact.name}` ({v.name}, {spec.form} form), platform `{opts.platform}`: served by {backend}.
`config.pbtxt` was checked against Triton's own schema when this folder was written.

Serve it (run from this folder; the block is tested as printed):

```bash
{serve}```

Load it (perf_analyzer comes with Triton's SDK container or `pip install tritonclient[all]`'s perf tools):

```bash
perf_analyzer -m {opts.name} -u 127.0.0.1:8001 -i grpc --concurrency-range 1:16:3{shape}
```
"""


# The python platform on the tritonserver in nvidia-pytriton's wheel (DESIGN.md fact 9): its backends
# sit beside the binary, not in /opt/tritonserver, and the backend's stub embeds an interpreter that
# ignores PYTHONPATH and needs its libpython: model.py adds VGGDEPLOY_PYTHONPATH as a site folder
# (so an editable install's .pth works too)
PYTHON_SERVE = """# ENV: a Python environment with nvidia-pytriton, 'numpy<2' and vggdeploy[cpu]
# (vggdeploy's scripts/triton_env.sh makes one); set ENV=/path/to/it, then run the rest as printed
TRITON=$("${ENV:?set ENV to the serving environment}/bin/python" -c 'import os, pytriton; print(os.path.dirname(pytriton.__file__) + "/tritonserver")')
export VGGDEPLOY_PYTHONPATH=$("$ENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$TRITON/bin/tritonserver" --model-repository="$(pwd)/.." --backend-directory="$TRITON/backends" \\
  --http-address=127.0.0.1 --grpc-address=127.0.0.1
"""


MODEL_PY = '''"""Triton python-backend model: runs a vggdeploy artifact with its fastest CPU runner."""

import json
import os
import site
import sys
from pathlib import Path

# Triton's python-backend stub embeds an interpreter that ignores PYTHONPATH: the serving
# environment's packages (and vggdeploy) come from VGGDEPLOY_PYTHONPATH, or PYTHONPATH, here, as
# site folders: their .pth files (an editable install's among them) count
for entry in reversed((os.environ.get("VGGDEPLOY_PYTHONPATH") or os.environ.get("PYTHONPATH", "")).split(os.pathsep)):
    if entry and entry not in sys.path:
        site.addsitedir(entry)
        sys.path.remove(entry)
        sys.path.insert(0, entry)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from vggdeploy.backends import make_runner  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        self.runner = make_runner("cpu", folder / config["parameters"]["artifact"]["string_value"])
        self.runner.activate()
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        # the dynamic batcher hands over several requests: run those of one shape as one batch
        inputs = [pb_utils.get_input_tensor_by_name(r, "input").as_numpy() for r in requests]
        results = [None] * len(requests)
        by_shape = {}
        for i, x in enumerate(inputs):
            by_shape.setdefault(x.shape[1:], []).append(i)
        for indices in by_shape.values():
            out = self.runner.infer({"input": np.concatenate([inputs[i] for i in indices])})
            start = 0
            for i in indices:
                n = len(inputs[i])
                results[i] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(out[name][start:start + n]))
                                    for name in self.outputs])
                start += n
        return results

    def finalize(self):
        self.runner.deactivate()
'''

