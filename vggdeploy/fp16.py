"""FP16 artifacts from an FP32 ONNX (DESIGN.md fact 1): TensorRT 11 builds only strongly typed
networks, so FP16 lives in the graph. Nodes whose activations come near FP16's range stay in FP32."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import onnx

from .store import copy_into, prepare_out_dir, save_onnx, staging
from .backends.base import Runner
from .calibration import calibration_sizes, probe_samples
from .forms import FormSpec
from .layouts import Fp16Options
from .artifact import Artifact
from .naming import derived_name
from .parity import Expected
from .progress import step
from .variants import Variant
from .derived import finish, measure_layers, set_meta, source_model
from .graph_edits import drop_round_trips, topological_sort

log = logging.getLogger("vggdeploy")


FP16_SAFE = 65504 / 4  # keep a node in FP32 when its activations come within 4x of FP16's max


NO_LARGER_OUTPUT = {"Relu", "MaxPool", "Dropout", "Flatten", "Reshape", "Identity"}


def to_fp16(artifact: Path | Artifact, out_dir: Path | None = None, *, io: str = "fp32", reference: Runner | Expected | None = None,
            verify: bool = True, force: bool = False, backend: str = "cpu", options: Fp16Options | None = None) -> Artifact:
    """FORM.fp16.onnx beside the FP32 `artifact` (a path or an Artifact; or in `out_dir`): the FP32 artifact in FP16, nodes whose
    activations come near FP16's range kept in FP32, I/O in FP32 unless io="fp16"; checked against
    `reference` (default: the FP32 ONNX) on `backend`, then published and recorded in the manifest.
    Returns it (an Artifact). Raises BadInput (not an FP32 vggdeploy artifact, output exists without
    `force`), CheckFailed (onnx.checker or parity failed; nothing is written). `options`: an Fp16Options
    already judged (a PrecisionPlan's), in place of io."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    io = (options or Fp16Options(io)).io
    src = Path(artifact)
    graph, opened = source_model(artifact)
    meta, v, spec = opened.meta, opened.variant, opened.spec
    out_dir = Path(out_dir or src.parent)
    name = derived_name(src, "fp16")
    prepare_out_dir(out_dir, [name], force)
    with staging(out_dir) as tmp, step(f"converting {src.name} to FP16"):
        private = copy_into(src, tmp / "source")
        keep = sorted(_overflowing_nodes(private, graph, v, spec))
        if keep:
            log.info("keeping %d node(s) in FP32 (activations near FP16's range): %s", len(keep), ", ".join(keep))
        # the converter sees the graph without its weights (their types change, their bytes do not);
        # the weights follow one tensor at a time (a whole VGG16 in memory twice peaked at 4 GB RSS)
        with _shapes_from_dims():
            model = convert_float_to_float16(onnx.ModelProto.FromString(graph.SerializeToString()),
                                             keep_io_types=io == "fp32", node_block_list=keep or None,
                                             disable_shape_infer=True)
        drop_round_trips(model.graph)
        topological_sort(model.graph)  # the converter appends its I/O Casts at the end
        del model.graph.value_info[:]  # and leaves stale FP16 types on blocked nodes' outputs
        set_meta(model, meta.replace(precision="fp16", io=io, fp32_nodes=tuple(keep)).to_props())
        staged = tmp / name
        _stream_weights(model, graph, private, staged)
        save_onnx(model, staged)
        samples = probe_samples(v, calibration_sizes(v, spec.form, spec.size, spec.min_size))
        errors = measure_layers(private, staged, samples.batches, (graph, model))  # the graphs as written, not read again
        del model
        return finish(staged, out_dir, opened, "fp16", v, spec, reference, verify, backend,
                       {"io": io, "fp32_nodes": keep, "layer_errors": errors}, force)


@contextlib.contextmanager
def _shapes_from_dims():
    """The converter reads each initializer it converts whole (from disk, for external data) only to
    learn its shape; the dims say it, and the weights are not in memory here."""
    import onnxruntime.transformers.float16 as converter

    original = converter.make_value_info_from_tensor
    converter.make_value_info_from_tensor = lambda t: onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims)
    try:
        yield
    finally:
        converter.make_value_info_from_tensor = original


def _stream_weights(model: onnx.ModelProto, fp32: onnx.ModelProto, src: Path, staged: Path,
                   chunk: int = 1 << 22) -> None:
    """Write the external weights of the converted `model` to `staged`'s side file, read from the
    FP32 artifact `src` memory-mapped, a chunk at a time: tensors the converter made FLOAT16 are
    converted with its own rounding and clamping (convert_np_to_float16), the others copied."""
    from onnxruntime.transformers.float16 import convert_np_to_float16

    was_float = {t.name for t in fp32.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    data = staged.with_name(staged.name + ".data")
    with open(data, "xb") as out:
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in t.external_data}
            values = np.memmap(src.parent / info["location"], dtype=np.uint8, mode="r",
                               offset=int(info.get("offset", 0)), shape=(int(info["length"]),))
            if t.name in was_float and t.data_type == onnx.TensorProto.FLOAT16:
                values = values.view(np.float32)
                convert = lambda a: convert_np_to_float16(np.asarray(a)).tobytes()  # noqa: E731
            else:
                convert = lambda a: np.asarray(a).tobytes()  # noqa: E731
            offset = out.tell()
            for start in range(0, values.size, chunk):
                out.write(convert(values[start:start + chunk]))
            del values
            del t.external_data[:]
            for key, value in (("location", data.name), ("offset", offset), ("length", out.tell() - offset)):
                t.external_data.add(key=key, value=str(value))


def _overflowing_nodes(src: Path, graph: onnx.ModelProto, v: Variant, spec: FormSpec) -> set[str]:
    """Nodes that read or write tensors reaching FP16_SAFE on the bundled photos or the parity
    check's noise (run once in FP32 on ORT)."""
    import onnxruntime as ort

    from .data import photo_batch, random_batch

    probe = onnx.shape_inference.infer_shapes(graph)
    known = {o.name for o in probe.graph.output} | {t.name for t in graph.graph.initializer}  # (weights: 0.5 GB)
    # a pass-through op's output never exceeds its input's magnitude: measure its input only (half the
    # activations of a VGG are ReLU and pool outputs; every measured one is held at once)
    derived = {n.output[0]: n.input[0] for n in graph.graph.node if n.op_type in NO_LARGER_OUTPUT}
    float_values = [vi for vi in probe.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
                    and vi.name not in known and vi.name not in derived]
    probe.graph.output.extend(float_values)
    probe_path = src.with_name(f"probe-{src.name}")  # src is a private copy: its .data side file resolves
    onnx.save(probe, str(probe_path))
    # ranges of the graph as written: no fusion, no pre-packed weight copies, no arena (-1 GB on VGG16)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.disable_prepacking", "1")
    sess = ort.InferenceSession(str(probe_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    peaks: dict[str, float] = {}
    for hw in calibration_sizes(v, spec.form, spec.size, spec.min_size)[:2]:
        batch = np.concatenate([photo_batch(v, hw, 4)[1], random_batch(v, hw, 2, seed=0)])
        for image in batch:  # one at a time: the activations are outputs here (1.4 GB for six on VGG16)
            outs = sess.run(None, {"input": image[None]})
            for k, a in zip(names, outs):
                if a.dtype.kind == "f" and a.size:
                    peaks[k] = max(peaks.get(k, 0.0), float(np.abs(a).max()))
            del outs
    for out, inp in derived.items():  # graph.node is in topological order
        peaks.setdefault(out, peaks.get(inp, 0.0))
    # a node reading a large tensor must stay FP32 too: casting its input to FP16 would overflow
    return {n.name for n in graph.graph.node
            if max((peaks.get(t, 0.0) for t in [*n.input, *n.output]), default=0.0) >= FP16_SAFE}
