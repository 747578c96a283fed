"""Does a Q/DQ ONNX have the layout TensorRT wants (DESIGN.md fact 2)? Names every violation.

Rules: symmetric signed INT8 (int8 zero points, all 0); per-tensor activation scales;
per-channel weight scales on the output-channel axis (0 for Conv and Gemm with transB=1; the last
axis for MatMul's (K, N) weights and Gemm with transB=0); Q/DQ on the data and weight inputs of Conv/Gemm/MatMul,
never straight on their outputs; bias left in float.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

COMPUTE = ("Conv", "Gemm", "MatMul")


def qdq_violations(model: onnx.ModelProto, allow_float: set[str] = frozenset()) -> list[str]:
    """Violations, one line each; empty when the graph follows the rules.

    `allow_float`: compute nodes deliberately kept in float (--keep-fp32).
    """
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    problems = []
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        return ["no QuantizeLinear/DequantizeLinear nodes: not an explicitly quantized model"]

    weight_dq: dict[str, int] = {}  # weight DequantizeLinear -> the axis of its consumer's output channels
    for n in g.node:
        if n.op_type not in COMPUTE:
            continue
        if n.name in allow_float:
            continue
        for idx, role in ((0, "data"), (1, "weight")):
            src = producer.get(n.input[idx])
            if src is None or src.op_type != "DequantizeLinear":
                problems.append(f"{n.op_type} {n.name}: {role} input {n.input[idx]} is not quantized")
            elif role == "weight":
                weight_dq[src.name] = output_channel_axis(n, src, inits, producer)
        if len(n.input) > 2 and n.input[2]:
            src = producer.get(n.input[2])
            if src is not None and src.op_type == "DequantizeLinear":
                problems.append(f"{n.op_type} {n.name}: bias {n.input[2]} is quantized (TensorRT wants it in float)")
        for c in consumers.get(n.output[0], []):
            if c.op_type == "QuantizeLinear":
                problems.append(f"{n.op_type} {n.name}: output quantized by {c.name} (Q/DQ belongs on inputs only)")

    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = _const(n.input[1], inits, producer)
        zp = _const(n.input[2], inits, producer) if len(n.input) > 2 and n.input[2] else None
        if zp is None or zp.dtype.name != "int8":
            problems.append(f"{n.op_type} {n.name}: zero point is {zp.dtype.name if zp is not None else 'absent (uint8)'}, "
                            "TensorRT wants int8")
        elif zp.any():
            problems.append(f"{n.op_type} {n.name}: non-zero zero point (asymmetric); TensorRT wants symmetric")
        if scale is None:
            problems.append(f"{n.op_type} {n.name}: scale is not a constant")
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        is_weight = n.name in weight_dq or (n.op_type == "QuantizeLinear" and n.input[0] in inits)
        if n.op_type == "DequantizeLinear" and n.name in weight_dq:
            if scale.size <= 1:
                problems.append(f"DequantizeLinear {n.name}: weight scale is per-tensor, TensorRT wants per-channel")
            elif axis % max(_rank(n, inits, producer), 1) != weight_dq[n.name]:
                problems.append(f"DequantizeLinear {n.name}: weight scales on axis {axis}, "
                                f"TensorRT wants the output channels' axis {weight_dq[n.name]}")
        elif not is_weight and scale.size != 1:
            problems.append(f"{n.op_type} {n.name}: activation scale has {scale.size} values, TensorRT wants one")
    return problems


def artifact_qdq_violations(path: Path) -> tuple[list[str], set[str]]:
    """TensorRT's Q/DQ rules checked on the ONNX at `path`, the nodes it declares kept in float
    allowed: (violations, those nodes)."""
    from .artifact import Artifact
    from .artifact import load_graph

    graph = load_graph(path)
    meta = Artifact.from_graph(path, graph).meta
    kept = set(meta.fp32_nodes or ()) if meta else set()
    return qdq_violations(graph, allow_float=kept), kept


def output_channel_axis(node: onnx.NodeProto, weight_dq: onnx.NodeProto, inits: dict, producer: dict) -> int:
    """The axis of a compute node's weight that indexes its output channels."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if next((a.i for a in node.attribute if a.name == "transB"), 0) else 1
    return max(_rank(weight_dq, inits, producer) - 1, 0)  # MatMul: (..., K, N)


def _rank(dq: onnx.NodeProto, inits: dict, producer: dict) -> int:
    """The rank of a DequantizeLinear's input, from its dims (the weights may be in a side file)."""
    name = dq.input[0]
    if name in inits:
        return len(inits[name].dims)
    node = producer.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
        return len(node.attribute[0].t.dims)
    return 2


def _const(name: str, inits: dict, producer: dict):
    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producer.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def compute_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in COMPUTE]
