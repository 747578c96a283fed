"""Edits of ONNX graphs that FP16 and INT8 make: Cast round trips dropped, nodes sorted, the nodes
that feed a node, names given by the user (first, last) resolved to compute nodes."""

from __future__ import annotations


import onnx

from .errors import BadInput, CheckFailed
from .qdq import compute_nodes

COMPUTE_OPS = ["Conv", "Gemm", "MatMul"]


def touching_outputs(graph: onnx.ModelProto, op_types: list[str]) -> list[str]:
    """Nodes of these types that read or write a graph output: the features form's outputs stay float."""
    outputs = {o.name for o in graph.graph.output}
    return [n.name for n in graph.graph.node if n.op_type in op_types and outputs & {*n.input, *n.output}]


def input_path(graph: onnx.ModelProto, nodes: list[str]) -> list[str]:
    """The non-compute nodes (pooling, ReLU, reshapes) between each named compute node and the compute
    layer before it: the cpu target quantizes them too, so a layer kept in float needs them in float
    (a quantized max-pool in front of it would still round its input with the outlier's scale)."""
    producer = {o: n for n in graph.graph.node for o in n.output}
    by_name = {n.name: n for n in graph.graph.node}
    path = []
    for name in nodes:
        src = producer.get(by_name[name].input[0]) if name in by_name else None
        while src is not None and src.op_type not in COMPUTE_OPS:
            path.append(src.name)
            src = producer.get(src.input[0]) if src.input else None
    return path


def resolve_keep_fp32(graph: onnx.ModelProto, keep: list[str]) -> list[str]:
    """`first`, `last` or node names -> the compute nodes left unquantized."""
    nodes = compute_nodes(graph)
    by_name = {n.name: n for n in nodes}
    out = []
    for k in keep:
        if k == "first":
            out.append(nodes[0].name)
        elif k == "last":
            out.append(nodes[-1].name)
        elif k in by_name:
            out.append(k)
        else:
            raise BadInput(f"--keep-fp32: no Conv/Gemm/MatMul node {k!r}",
                           hint=f"use first, last, or one of: {', '.join(list(by_name)[:6])} ...")
    return sorted(set(out))


def drop_round_trips(graph: onnx.GraphProto) -> None:
    """Remove FP32 -> FP16 -> FP32 Cast pairs that the converter puts between two FP32 (blocked)
    nodes: the detour through FP16 is what blocking them was meant to avoid."""
    def cast_to(n):
        return next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None

    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    rename = {}
    for n in graph.node:
        src = producer.get(n.input[0]) if n.input else None
        if cast_to(n) == onnx.TensorProto.FLOAT and src is not None and cast_to(src) == onnx.TensorProto.FLOAT16 \
                and n.output[0] not in outputs:
            rename[n.output[0]] = src.input[0]
    kept = [n for n in graph.node if n.output[0] not in rename]
    for n in kept:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    used = {i for n in kept for i in n.input} | outputs
    kept = [n for n in kept if cast_to(n) != onnx.TensorProto.FLOAT16 or n.output[0] in used]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in kept]
    del graph.node[:]
    graph.node.extend(copies)


def topological_sort(graph: onnx.GraphProto) -> None:
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node], []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise CheckFailed("the converted graph has a cycle or a dangling input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
