"""Cross-layer equalization (Nagel et al., ICCV 2019, "Data-Free Quantization through Weight
Equalization and Bias Correction") of an FP32 graph, before INT8 calibration.

VGG is chains of conv -> ReLU -> (max-pool) -> conv, and FC -> ReLU -> FC in the classifier (convs
in the dense form). For such a pair, dividing output channel c of the first layer by s_c and
multiplying the second layer's matching input channel by s_c leaves the function unchanged, since
ReLU and max-pool commute with a positive per-channel scale. Choosing s_c = sqrt(r1_c / r2_c), where
r1_c and r2_c are channel c's weight ranges in the two layers, makes both sqrt(r1_c * r2_c): a
channel whose activations are 1000x the others' (fine-tuning without weight decay, folded BatchNorm)
is brought back to its neighbours' range, so per-tensor activation scales stop rounding the other
channels to zero (DESIGN.md fact 23). Pairs are equalized in turn until the scales settle.

The search runs on each layer's |W| maxima per (output, input) channel, so the weights are read
once and rescaled once; weights in a side file are rescaled in place through a memory map (VGG16's
528 MB are never held twice). A middle tensor that is a graph output (the features form's taps) or
feeds anything else is left alone: its values must not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    applied to any channel (1.0: the graph was already equalized), BatchNorms folded first."""

    pairs: tuple[Pair, ...]
    passes: int
    max_scale: float
    folded_batchnorms: int

    def to_json(self) -> dict:
        return {"pairs": [[p.first, p.second] for p in self.pairs], "passes": self.passes,
                "max_scale": round(self.max_scale, 3), "folded_batchnorms": self.folded_batchnorms}


class _Weights:
    """A graph's float initializers as numpy arrays: inline ones copied (and written back on
    `store`), ones in a side file under `base_dir` memory-mapped for writing in place."""

    def __init__(self, model: onnx.ModelProto, base_dir: Path | None):
        self.model, self.base_dir = model, base_dir
        self.inits = {t.name: t for t in model.graph.initializer}
        self.inline: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        if t is None or t.data_type != onnx.TensorProto.FLOAT:
            return None
        if t.data_location == onnx.TensorProto.EXTERNAL:
            if self.base_dir is None:
                return None
            info = {e.key: e.value for e in t.external_data}
            return np.memmap(self.base_dir / info["location"], np.float32, "r+", int(info.get("offset", 0)), tuple(t.dims))
        if name not in self.inline:
            self.inline[name] = numpy_helper.to_array(t).copy()
        return self.inline[name]

    def add(self, name: str, array: np.ndarray) -> None:
        self.model.graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), name))
        self.inits[name] = self.model.graph.initializer[-1]
        self.inline[name] = numpy_helper.to_array(self.inits[name]).copy()

    def store(self) -> None:
        for name, array in self.inline.items():
            self.inits[name].CopyFrom(numpy_helper.from_array(np.asarray(array, np.float32), name))


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _axes(node: onnx.NodeProto) -> tuple[int, int]:
    """The weight axes of the layer's output and input channels."""
    return (1, 0) if node.op_type == "Gemm" and not _attr(node, "transB", 0) else (0, 1)


def _bias(node: onnx.NodeProto) -> str | None:
    return node.input[2] if len(node.input) > 2 and node.input[2] else None


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
        w, stats = weights.get(conv.input[1]), [weights.get(bn.input[i]) for i in range(1, 5)]
        bias = weights.get(_bias(conv)) if _bias(conv) else np.zeros(w.shape[0] if w is not None else 0, np.float32)
        if w is None or bias is None or any(a is None for a in stats):
            continue
        gamma, beta, mean, var = stats
        scale = gamma / np.sqrt(var + next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5))
        w *= scale.reshape(-1, *([1] * (w.ndim - 1))).astype(np.float32)
        if not _bias(conv):
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input[2] = f"{conv.name}_folded_bias"
            weights.add(conv.input[2], bias)
        weights.get(conv.input[2])[:] = (bias - mean) * scale + beta
        conv.output[0] = bn.output[0]
        folded.append(bn)
    for bn in folded:
        model.graph.node.remove(bn)
    return len(folded)


def find_pairs(model: onnx.ModelProto, weights: _Weights) -> list[Pair]:
    """Every first -> Relu -> [MaxPool] -> second chain whose middle tensors feed only the chain
    and are not graph outputs, with float weights, one group and matching channel counts."""
    consumers, outputs = _consumers(model), {o.name for o in model.graph.output}

    def only(tensor: str) -> onnx.NodeProto | None:
        nexts = consumers.get(tensor, [])
        return nexts[0] if len(nexts) == 1 and tensor not in outputs else None

    def plain(node: onnx.NodeProto) -> bool:
        return (node.op_type in COMPUTE and weights.get(node.input[1]) is not None and _attr(node, "group", 1) == 1
                and (_bias(node) is None or weights.get(_bias(node)) is not None))

    pairs = []
    for first in model.graph.node:
        if not plain(first):
            continue
        relu = only(first.output[0])
        if relu is None or relu.op_type != "Relu":
            continue
        middle = relu.output[0]
        second = only(middle)
        if second is not None and second.op_type == "MaxPool" and len(second.output) == 1:
            middle = second.output[0]
            second = only(middle)
        if second is None or not plain(second) or second.input[0] != middle:
            continue
        w1, w2 = weights.get(first.input[1]), weights.get(second.input[1])
        if w1.shape[_axes(first)[0]] == w2.shape[_axes(second)[1]]:
            pairs.append(Pair(first.name, second.name))
    return pairs


class _Layer:
    """One layer's channel maxima of |W| and the scales found so far: outputs divided by `out_s`,
    inputs multiplied by `in_s`. A layer rescaled on both sides keeps the (out, in) matrix of maxima;
    one rescaled on one side keeps only the maxima that side needs."""

    def __init__(self, w: np.ndarray, axes: tuple[int, int], both: bool, block: int = 64):
        view = np.moveaxis(w, axes, (0, 1))  # a view: a memory-mapped weight is read block by block
        outs, ins = view.shape[:2]
        self.matrix = np.empty((outs, ins)) if both else None
        self.row, self.col = np.empty(outs), np.zeros(ins)
        for r in range(0, outs, block):  # VGG16's FC1 is 4096 x 25088: never one |W| copy of it
            part = np.abs(np.asarray(view[r:r + block])).reshape(min(block, outs - r), ins, -1).max(axis=2)
            self.row[r:r + len(part)] = part.max(axis=1)
            self.col = np.maximum(self.col, part.max(axis=0))
            if both:
                self.matrix[r:r + len(part)] = part
        self.out_s, self.in_s = np.ones(outs), np.ones(ins)

    def out_range(self) -> np.ndarray:
        return (self.matrix * self.in_s).max(axis=1) / self.out_s if self.matrix is not None else self.row / self.out_s

    def in_range(self) -> np.ndarray:
        if self.matrix is not None:
            return (self.matrix / self.out_s[:, None]).max(axis=0) * self.in_s
        return self.col * self.in_s


def equalize(model: onnx.ModelProto, base_dir: Path | None = None, max_passes: int = 100,
             tolerance: float = 1e-3) -> Equalization:
    """Equalize `model` in place: inline weights in the graph, side-file weights (under `base_dir`,
    the graph's folder; None: the model holds them all) in their file. Returns what was done."""
    weights = _Weights(model, base_dir)
    folded = fold_batchnorms(model, weights)
    nodes = {n.name: n for n in model.graph.node}
    pairs = find_pairs(model, weights)
    firsts, seconds = {p.first for p in pairs}, {p.second for p in pairs}
    layers = {name: _Layer(weights.get(nodes[name].input[1]), _axes(nodes[name]), name in firsts and name in seconds)
              for name in firsts | seconds}
    passes = 0
    for passes in range(1, max_passes + 1):
        largest = 0.0
        for p in pairs:
            a, b = layers[p.first], layers[p.second]
            r1, r2 = a.out_range(), b.in_range()
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
            a.out_s, b.in_s = a.out_s * s, b.in_s * s
            largest = max(largest, float(np.abs(np.log(s)).max(initial=0.0)))
        if largest < tolerance:
            break
    max_scale = 1.0
    for name, layer in layers.items():  # each weight rescaled once
        node = nodes[name]
        out_axis, in_axis = _axes(node)
        w, bias = weights.get(node.input[1]), weights.get(_bias(node)) if _bias(node) else None
        divide = (1 / layer.out_s).astype(np.float32)
        w *= divide.reshape([-1 if a == out_axis else 1 for a in range(w.ndim)])
        w *= layer.in_s.astype(np.float32).reshape([-1 if a == in_axis else 1 for a in range(w.ndim)])
        if bias is not None:
            bias *= divide
        for array in (w, bias):
            if isinstance(array, np.memmap):
                array.flush()
        max_scale = max(max_scale, float(np.exp(np.abs(np.log(np.concatenate([layer.out_s, layer.in_s]))).max())))
    weights.store()
    return Equalization(tuple(pairs), passes, max_scale, folded)
