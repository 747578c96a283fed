"""Per-layer error of a derived graph (INT8 or FP16) against its FP32 source, on calibration inputs:
which layers lose the accuracy, ranked (Polygraphy's `debug precision` and NNCF's accuracy control
answer the same question by bisection; here every layer is measured in one run of each graph).

Each Conv/Gemm output present in both graphs (the quantizers and the FP16 converter keep node
names) is made a graph output of a temporary copy, both copies run on ONNX Runtime's CPU provider,
and each layer gets the relative L2 error and the cosine of its output against FP32. Errors
accumulate down the network, so layers are ranked by the error each one `added`: its relative L2
minus the largest of the compute layers feeding it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from .limits import give_back_freed_memory

log = logging.getLogger("vggdeploy")
COMPUTE = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerError:
    """One layer's output against FP32: relative L2, cosine, and the relative L2 it added; `index`:
    its place among the graph's compute layers."""

    node: str
    op: str
    index: int
    rel_l2: float
    cosine: float
    added: float

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _with_layer_outputs(graph: onnx.ModelProto, names: list[str], out: Path) -> dict[str, str]:
    """A copy of `graph` (its weights in a side file beside `out`), written to `out`, whose outputs
    include each named compute node's output. Returns {node name: tensor}."""
    model = onnx.ModelProto()
    model.CopyFrom(graph)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    tensors = {n.name: n.output[0] for n in model.graph.node if n.name in names}
    present = {o.name for o in model.graph.output}
    for tensor in tensors.values():
        if tensor not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, types.get(tensor, onnx.TensorProto.FLOAT), None))
    onnx.save(model, str(out))
    return tensors


def _sums(r: np.ndarray, g: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float, float, float]:
    """|g - r|^2, |r|^2, |g|^2 and r.g in float64, a chunk at a time (float64 copies of VGG16's largest
    maps whole: 0.2 GB more at the journey's peak)."""
    out = np.zeros(4)
    for i in range(0, r.size, chunk):
        a, b = r[i:i + chunk].astype(np.float64), g[i:i + chunk].astype(np.float64)
        d = b - a
        out += [d @ d, a @ a, b @ b, a @ b]
    return tuple(float(x) for x in out)


def _predecessors(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Each compute node's nearest compute ancestors (through ReLU, pooling, reshapes, Q/DQ, casts)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE:
            continue
        seen, stack, ancestors = set(), [node.input[0]], []
        while stack:
            tensor = stack.pop()
            src = producer.get(tensor)
            if src is None or src.name in seen:
                continue
            seen.add(src.name)
            if src.op_type in COMPUTE:
                ancestors.append(src.name)
            else:
                stack.extend(i for i in src.input[:1] if i)
        found[node.name] = ancestors
    return found


def layer_errors(reference: Path, derived: Path, batches: list[np.ndarray], graphs: tuple[onnx.ModelProto, onnx.ModelProto],
                 max_inputs: int = 16) -> list[LayerError]:
    """Each compute layer of `derived` against `reference` (its FP32 source) on up to `max_inputs`
    of `batches`, ranked by the error it added (largest first). `graphs`: the two files' graphs as
    already read (without weights). The temporary graphs are written beside each file (its side
    file must resolve), so both should be in a staging folder."""
    import onnxruntime as ort

    ref_model, got_model = graphs
    ops = {n.name: n.op_type for n in ref_model.graph.node if n.op_type in COMPUTE}
    names = [n.name for n in got_model.graph.node if n.name in ops]
    copies = [reference.with_name(f".layers-{reference.name}"), derived.with_name(f".layers-{derived.name}")]
    try:
        ref_tensors = _with_layer_outputs(ref_model, names, copies[0])
        got_tensors = _with_layer_outputs(got_model, names, copies[1])
        opts = ort.SessionOptions()  # low memory (as OrtRunner's low_memory): no re-laid or pre-packed weight copies
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.add_session_config_entry("session.disable_prepacking", "1")
        # every layer's output is a graph output here: an arena sized for them, in two sessions, is held to
        # the end (VGG16's journey peaked at 4.38 GB with it, 3.23 without; benchmarks/journey_bench.py)
        opts.enable_cpu_mem_arena = False
        give_back_freed_memory()  # what the stage freed before this, its peak
        sessions = [ort.InferenceSession(str(c), opts, providers=["CPUExecutionProvider"]) for c in copies]
        input_types = [s.get_inputs()[0].type for s in sessions]
        sums = {n: np.zeros(3) for n in names}  # |d|^2, |ref|^2, and the sum of per-input cosines
        count = 0
        for batch in batches:
            for x in batch[: max(max_inputs - count, 0)]:
                feeds = [{s.get_inputs()[0].name: x[None].astype(np.float16 if "float16" in t else np.float32)}
                         for s, t in zip(sessions, input_types)]
                ref_out = dict(zip([o.name for o in sessions[0].get_outputs()], sessions[0].run(None, feeds[0])))
                got_out = dict(zip([o.name for o in sessions[1].get_outputs()], sessions[1].run(None, feeds[1])))
                for n in names:  # each map freed once measured
                    dd, rr, gg, rg = _sums(ref_out.pop(ref_tensors[n]).ravel(), got_out.pop(got_tensors[n]).ravel())
                    denom = np.sqrt(rr * gg)
                    cos = rg / denom if denom > 0 else float(dd == 0)
                    sums[n] += [dd, rr, cos]
                count += 1
        del sessions
    finally:
        for c in copies:
            c.unlink(missing_ok=True)
    rel = {n: float(np.sqrt(s[0] / s[1])) if s[1] > 0 else float(np.sqrt(s[0])) for n, s in sums.items()}
    preds = _predecessors(got_model)
    rows = [LayerError(n, ops[n], i, rel[n], float(sums[n][2] / max(count, 1)),
                       rel[n] - max((rel[p] for p in preds.get(n, []) if p in rel), default=0.0)) for i, n in enumerate(names)]
    return sorted(rows, key=lambda e: e.added, reverse=True)
