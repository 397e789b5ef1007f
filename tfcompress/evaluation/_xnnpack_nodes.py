"""XNNPACK profile rows -> the TFLite nodes they run for (the mapping behind ``group="node"`` /
``"layer"`` of :func:`tfcompress.evaluation.profile.profile_variant`).

What the LiteRT profiler's events hold (measured on ai-edge-litert 2.3.0,
tests/evaluation/test_profile_nodes.py): an interpreter event's ``metadata1`` is the TFLite node
index (the flatbuffer's operator index); an XNNPACK event's ``metadata1`` is the operator's index
inside its delegate partition's XNNPACK runtime (0, 1, ... restarting in every partition: the
delegate calls ``AddEvent(name, DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT, time, operator_index)``
for each operator of ``xnn_get_runtime_profiling_info``), not a node index, and no event marks
the delegate node itself. The node of an XNNPACK operator is therefore reconstructed, and kept
only when the reconstruction checks out against the run (:func:`map_xnnpack_events`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from tfcompress.evaluation._litert_profile import ProfiledEvent

#: TFLite op -> the XNNPACK operator names (before " (") that one such node runs, as observed
#: on LiteRT 2.3.0; a FULLY_CONNECTED may be preceded by its own input reshape.
XNNPACK_OPERATORS: dict[str, tuple[str, ...]] = {
    "FULLY_CONNECTED": ("fully connected",),
    "BATCH_MATMUL": ("batch matrix multiply", "fully connected"),
    "CONV_2D": ("convolution",),
    "DEPTHWISE_CONV_2D": ("convolution",),
    "ADD": ("add",),
    "SUB": ("subtract",),
    "MUL": ("multiply",),
    "DIV": ("divide",),
    "SQUARED_DIFFERENCE": ("squared difference",),
    "MAXIMUM": ("maximum",),
    "MINIMUM": ("minimum",),
    "MEAN": ("mean",),
    "SUM": ("sum",),
    "RSQRT": ("reciprocal square root",),
    "SQRT": ("square root",),
    "SQUARE": ("square",),
    "ABS": ("abs",),
    "NEG": ("negate",),
    "EXP": ("exp",),
    "LOG": ("log",),
    "SOFTMAX": ("softmax",),
    "TANH": ("tanh",),
    "LOGISTIC": ("sigmoid",),
    "GELU": ("gelu", "approxgelu"),
    "RELU": ("clamp",),
    "RELU6": ("clamp",),
    "HARD_SWISH": ("hardswish",),
    "LEAKY_RELU": ("leaky relu",),
    "ELU": ("elu",),
    "TRANSPOSE": ("transpose",),
    "RESHAPE": ("static reshape", "copy"),
    "EXPAND_DIMS": ("static reshape", "copy"),
    "SQUEEZE": ("static reshape", "copy"),
    "CONCATENATION": ("copy", "concatenate"),
    "STRIDED_SLICE": ("slice",),
    "SLICE": ("slice",),
    "PAD": ("constant pad",),
    "QUANTIZE": ("convert",),
    "DEQUANTIZE": ("convert",),
    "AVERAGE_POOL_2D": ("average pooling",),
    "MAX_POOL_2D": ("max pooling",),
}
_PRE_OPERATORS = {"FULLY_CONNECTED": ("static reshape",)}


class GraphNode(NamedTuple):
    """One operator of a ``.tflite`` file's main subgraph: its index, TFLite op name, input
    and output tensor indices, its outputs' tensor names, its constant inputs (indices) and
    their names."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    names: tuple[str, ...]
    const_inputs: tuple[int, ...]
    const_names: tuple[str, ...]


def graph_nodes(path: str | os.PathLike) -> list[GraphNode]:
    """The nodes of the main subgraph of the ``.tflite`` file at ``path``, in file order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.Subgraphs(0)

    def const(t: int) -> bool:
        buf = model.Buffers(sub.Tensors(t).Buffer())
        return buf is not None and buf.DataLength() > 0

    out = []
    for o in range(sub.OperatorsLength()):
        op = sub.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        ins = tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        consts = tuple(t for t in ins if t >= 0 and const(t))
        out.append(
            GraphNode(
                index=o,
                op=names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"),
                inputs=ins,
                outputs=outs,
                names=tuple(sub.Tensors(t).Name().decode(errors="replace") for t in outs),
                const_inputs=consts,
                const_names=tuple(sub.Tensors(t).Name().decode(errors="replace") for t in consts),
            )
        )
    return out


def partition(nodes: list[GraphNode], delegated: set[int]) -> list[tuple[bool, list[int]]]:
    """``(delegated?, node indices)`` subsets in execution order, as TFLite partitions a graph
    for a delegate (``PartitionGraphIntoIndependentNodeSubsets`` of tensorflow/lite/
    graph_info.cc: each subset takes every ready node of its type, sweeping in node order
    until none is left; stateful-op control dependencies are not modelled)."""
    produced = {t for n in nodes for t in n.outputs}
    ready_tensors: set[int] = set()
    done: set[int] = set()
    subsets: list[tuple[bool, list[int]]] = []
    while len(done) < len(nodes):
        kind: bool | None = None
        members: list[int] = []
        progress = True
        while progress:
            progress = False
            for n in nodes:
                if n.index in done or any(
                    t >= 0 and t in produced and t not in ready_tensors for t in n.inputs
                ):
                    continue
                if kind is None:
                    kind = n.index in delegated
                if (n.index in delegated) != kind:
                    continue
                done.add(n.index)
                members.append(n.index)
                ready_tensors.update(n.outputs)
                progress = True
        if not members:  # a cycle or a node whose input is never produced
            break
        subsets.append((bool(kind), members))
    return subsets


def _base(tag: str) -> str:
    return tag.split(" (", 1)[0].strip().lower()


def parse_partition(ops: list[str], nodes: list[GraphNode]) -> list[int] | None:
    """Node (position in ``nodes``) of each XNNPACK operator tag of one partition, when exactly
    one way exists to read ``ops`` as the nodes' operators in order (each node: its optional
    pre-operator, then one operator of :data:`XNNPACK_OPERATORS`; a node whose inputs are all
    constants may run none); else None."""
    m, k = len(nodes), len(ops)
    base = [_base(t) for t in ops]
    # ways[i][j]: parses (capped at 2) of nodes[:i] over ops[:j]; back[i][j]: the start of node i-1
    ways = [[0] * (k + 1) for _ in range(m + 1)]
    back = [[-1] * (k + 1) for _ in range(m + 1)]
    ways[0][0] = 1
    for i, n in enumerate(nodes):
        main = XNNPACK_OPERATORS.get(n.op)
        if main is None:
            return None
        pre = _PRE_OPERATORS.get(n.op, ())
        static = all(t < 0 or t in n.const_inputs for t in n.inputs)
        for j in range(k + 1):
            if not ways[i][j]:
                continue
            spans = []
            if static:
                spans.append(j)
            if j < k and base[j] in main:
                spans.append(j + 1)
            if j + 1 < k and base[j] in pre and base[j + 1] in main:
                spans.append(j + 2)
            for end in spans:
                ways[i + 1][end] = min(2, ways[i + 1][end] + ways[i][j])
                back[i + 1][end] = j
    if ways[m][k] != 1:
        return None
    owner, j = [0] * k, k
    for i in range(m, 0, -1):
        start = back[i][j]
        owner[start:j] = [i - 1] * (j - start)
        j = start
    return owner


def map_xnnpack_events(
    run: list[ProfiledEvent], nodes: list[GraphNode]
) -> tuple[list[int | None], str]:
    """TFLite node index of each op event of one run (``None`` where not established), and a
    note saying why the XNNPACK operators stayed unmapped ("" when they all mapped).

    Interpreter events carry their node index. The XNNPACK operators are mapped by rebuilding
    TFLite's delegate partitions (the nodes with no interpreter event are the delegated ones)
    and checking them against the run: the interpreter nodes must run in the order the rebuilt
    partitions give, the number of XNNPACK partitions must match, and each partition's operator
    names must read in exactly one way as its nodes' operators (:func:`parse_partition`).
    """
    owners: list[int | None] = [e.metadata1 if e.event_type != 8 else None for e in run]
    seen = [e.metadata1 for e in run if e.event_type != 8]
    groups: list[list[int]] = []  # positions of each XNNPACK partition's events
    for pos, e in enumerate(run):
        if e.event_type == 8:
            if e.metadata1 == 0 or not groups or run[pos - 1].event_type != 8:
                groups.append([])
            groups[-1].append(pos)
    if not groups:
        return owners, ""
    if any(i < 0 or i >= len(nodes) for i in seen):
        return owners, "an interpreter event names a node outside the main subgraph"
    delegated = {n.index for n in nodes} - set(seen)
    subsets = partition(nodes, delegated)
    plan = [m for d, members in subsets if not d for m in members]
    if plan != seen:
        return owners, "the interpreter ran its nodes in another order than the rebuilt partitions"
    parts = [members for d, members in subsets if d]
    if len(parts) != len(groups):
        return owners, (
            f"{len(groups)} XNNPACK partitions ran, the rebuilt partitioning has {len(parts)}"
        )
    unmapped = []
    for p, (members, positions) in enumerate(zip(parts, groups, strict=True)):
        part_nodes = [nodes[i] for i in members]
        owner = parse_partition([run[q].tag for q in positions], part_nodes)
        if owner is None:
            unmapped.append(p)
            continue
        for q, o in zip(positions, owner, strict=True):
            owners[q] = part_nodes[o].index
    if unmapped:
        return owners, (
            f"XNNPACK partition(s) {unmapped} did not read as their nodes' operators in one way"
        )
    return owners, ""
