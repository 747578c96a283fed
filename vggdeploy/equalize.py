"""Cross-layer equalization (Nagel et al., ICCV 2019, "Data-Free Quantization through Weight
Equalization and Bias Correction") of an FP32 graph, before INT8 calibration.

VGG is chains of conv -> ReLU -> (max-pool) -> conv, and FC -> ReLU -> FC in the classifier (convs
in the dense form). For such a pair, scaling output channel c of the first layer by 1/s_c and the
second layer's matching input channel by s_c leaves the function unchanged, since ReLU and max-pool
commute with a positive per-channel scale. Choosing s_c = sqrt(r1_c / r2_c), where r1_c and r2_c
are channel c's weight ranges in the two layers, makes both ranges sqrt(r1_c * r2_c): a channel
whose activations are 1000x the others' (fine-tuning without weight decay, folded BatchNorm) is
brought back to its neighbours' range, so per-tensor activation scales stop rounding the other
channels to zero (DESIGN.md fact 23). Pairs are equalized in turn until the scales settle.

A middle tensor that is a graph output (the features form's taps) or feeds anything else is left
alone: its values must not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

COMPUTE = ("Conv", "Gemm")


@dataclass(frozen=True)
class Pair:
    """Two layers whose shared channels can be rescaled: `first` -> ReLU -> (MaxPool) -> `second`."""

    first: str
    second: str


@dataclass(frozen=True)
class Equalization:
    """What equalization did: the pairs, the passes until the scales settled, the largest scale
    applied to any channel overall (1.0: the graph was already equalized)."""

    pairs: tuple[Pair, ...]
    passes: int
    max_scale: float
    folded_batchnorms: int

    def to_json(self) -> dict:
        return {"pairs": [[p.first, p.second] for p in self.pairs], "passes": self.passes,
                "max_scale": round(self.max_scale, 3), "folded_batchnorms": self.folded_batchnorms}


class _Weights:
    """The graph's initializers as numpy arrays, written back on `store`."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray | None:
        if name not in self.arrays:
            if name not in self.inits or self.inits[name].data_type != onnx.TensorProto.FLOAT:
                return None
            self.arrays[name] = numpy_helper.to_array(self.inits[name]).astype(np.float64)
        return self.arrays[name]

    def store(self) -> None:
        for name, array in self.arrays.items():
            self.inits[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _out_axis(node: onnx.NodeProto) -> int:
    """The weight axis of the layer's output channels."""
    return 1 if node.op_type == "Gemm" and not _attr(node, "transB", 0) else 0


def _in_axis(node: onnx.NodeProto) -> int:
    """The weight axis of the layer's input channels."""
    return 0 if node.op_type == "Gemm" and not _attr(node, "transB", 0) else 1


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def fold_batchnorms(model: onnx.ModelProto, weights: _Weights) -> int:
    """Conv -> BatchNormalization (inference) becomes one Conv, where the Conv's output feeds only it."""
    consumers, outputs = _consumers(model), {o.name for o in model.graph.output}
    folded = []
    for conv in [n for n in model.graph.node if n.op_type == "Conv"]:
        nexts = consumers.get(conv.output[0], [])
        if len(nexts) != 1 or nexts[0].op_type != "BatchNormalization" or conv.output[0] in outputs:
            continue
        bn = nexts[0]
        w = weights.get(conv.input[1])
        gamma, beta, mean, var = (weights.get(bn.input[i]) for i in range(1, 5))
        if w is None or any(a is None for a in (gamma, beta, mean, var)):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        bias = weights.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(len(scale))
        if bias is None:
            continue
        weights.arrays[conv.input[1]] = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
        bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else f"{conv.name}_folded_bias"
        if bias_name not in weights.inits:
            model.graph.initializer.append(numpy_helper.from_array(np.zeros(len(scale), np.float32), bias_name))
            weights.inits[bias_name] = model.graph.initializer[-1]
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input[2] = bias_name
        weights.arrays[bias_name] = (bias - mean) * scale + beta
        conv.output[0] = bn.output[0]
        folded.append(bn)
    for bn in folded:
        model.graph.node.remove(bn)
    return len(folded)


def find_pairs(model: onnx.ModelProto, weights: _Weights) -> list[Pair]:
    """Every first -> Relu -> [MaxPool] -> second chain whose middle tensors feed only the chain
    and are not graph outputs, with float weights and one group."""
    consumers, outputs = _consumers(model), {o.name for o in model.graph.output}

    def only(tensor: str) -> onnx.NodeProto | None:
        nexts = consumers.get(tensor, [])
        return nexts[0] if len(nexts) == 1 and tensor not in outputs else None

    def plain(node: onnx.NodeProto) -> bool:
        return (node.op_type in COMPUTE and weights.get(node.input[1]) is not None and _attr(node, "group", 1) == 1
                and (len(node.input) < 3 or not node.input[2] or weights.get(node.input[2]) is not None))

    pairs = []
    for first in model.graph.node:
        if not plain(first):
            continue
        relu = only(first.output[0])
        if relu is None or relu.op_type != "Relu":
            continue
        middle = relu.output[0]
        nxt = only(middle)
        if nxt is not None and nxt.op_type == "MaxPool" and len(nxt.output) == 1:
            middle = nxt.output[0]
            nxt = only(middle)
        if nxt is None or not plain(nxt) or nxt.input[0] != middle:
            continue
        w1, w2 = weights.get(first.input[1]), weights.get(nxt.input[1])
        if w1.shape[_out_axis(first)] == w2.shape[_in_axis(nxt)]:
            pairs.append(Pair(first.name, nxt.name))
    return pairs


def _channel_range(w: np.ndarray, axis: int) -> np.ndarray:
    return np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)


def _scale_channels(w: np.ndarray, axis: int, s: np.ndarray) -> np.ndarray:
    shape = [1] * w.ndim
    shape[axis] = -1
    return w * s.reshape(shape)


def equalize(model: onnx.ModelProto, max_passes: int = 50, tolerance: float = 1e-3) -> Equalization:
    """Equalize `model` in place (weights loaded: `onnx.load` with external data). Returns what was done."""
    weights = _Weights(model)
    folded = fold_batchnorms(model, weights)
    nodes = {n.name: n for n in model.graph.node}
    pairs = find_pairs(model, weights)
    total = {p: np.ones(weights.get(nodes[p.first].input[1]).shape[_out_axis(nodes[p.first])]) for p in pairs}
    passes = 0
    for passes in range(1, max_passes + 1):
        largest = 0.0
        for p in pairs:
            a, b = nodes[p.first], nodes[p.second]
            w1, w2 = weights.get(a.input[1]), weights.get(b.input[1])
            r1, r2 = _channel_range(w1, _out_axis(a)), _channel_range(w2, _in_axis(b))
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1)), 1.0)
            weights.arrays[a.input[1]] = _scale_channels(w1, _out_axis(a), 1 / s)
            if len(a.input) > 2 and a.input[2]:
                weights.arrays[a.input[2]] = weights.get(a.input[2]) / s
            weights.arrays[b.input[1]] = _scale_channels(w2, _in_axis(b), s)
            total[p] = total[p] * s
            largest = max(largest, float(np.abs(np.log(s)).max(initial=0.0)))
        if largest < tolerance:
            break
    weights.store()
    max_scale = max((float(np.exp(np.abs(np.log(t)).max())) for t in total.values()), default=1.0)
    return Equalization(tuple(pairs), passes, max_scale, folded)
