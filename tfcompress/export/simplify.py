"""Exact graph simplifications of a converted TFLite file that LiteRT's kernels run slowly.

Measured on a Model Garden BERT-small (2 layers, 128 wide, sequence 32) at batch 256 on one
thread (``benchmark(..., profile=True)``, docs/export.md, "Where attention models' time goes"):

- ``BROADCAST_TO`` is not delegated to XNNPACK, and LiteRT's built-in kernel copies element by
  element: the position embedding (``tf.broadcast_to(table, tf.shape(x))`` before an ``ADD``)
  took 7.8 ms of the float file's 66 ms and 8.3 ms of the hybrid int8 file's 39 ms, the
  self-attention mask's ``[B, 1, T] -> [B, T, T]`` 2.0 ms. Every consumer here is an
  element-wise op that broadcasts by itself, so :func:`simplify_flatbuffer` removes the
  ``BROADCAST_TO`` (and the ``SHAPE``/``PACK`` ops that computed its shape) and lets the
  element-wise ops broadcast; the values are the same, bit for bit.
- A full-integer ``ADD`` of a constant whose every value is below half an output step (the
  attention *key* bias, which gets no gradient: softmax is invariant to it), with the same
  zero point and (to within half a step over the int8 range) the same scale in and out, is an
  identity up to that rounding, but its constant's scale (~1e-6 against the
  activations' ~0.02) is outside XNNPACK's int8 ``ADD`` range, so LiteRT's built-in kernel ran
  it: 1.75 ms per layer. It is removed (float: only an exactly-zero constant).

The rewrite is applied to every converted file by ``export_tflite`` and recorded in the export's
options (``options["simplified"]``); the export's parity check then runs on the rewritten file.

Example:
    >>> fb, counts = simplify_flatbuffer(open("m.tflite", "rb").read())  # doctest: +SKIP
    >>> counts  # doctest: +SKIP
    {'broadcast_to': 2, 'negligible_add': 2, 'dead_ops': 6}
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from tfcompress._validation import must_be

__all__ = ["simplify_flatbuffer"]

#: Element-wise ops with one tensor input that keep its shape (a broadcast passes through).
_UNARY = frozenset(
    {
        "CAST",
        "QUANTIZE",
        "DEQUANTIZE",
        "NEG",
        "ABS",
        "EXP",
        "LOG",
        "LOGISTIC",
        "TANH",
        "RELU",
        "RELU6",
        "RSQRT",
        "SQRT",
        "SQUARE",
        "LOGICAL_NOT",
    }
)
#: Element-wise binary ops that broadcast their operands (numpy rules).
_BINARY = frozenset(
    {
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "SQUARED_DIFFERENCE",
        "MAXIMUM",
        "MINIMUM",
        "LOGICAL_AND",
        "LOGICAL_OR",
    }
)
#: Ops without side effects that are removed once nothing reads their outputs.
_PURE = frozenset({"SHAPE", "PACK", "STRIDED_SLICE", "CONCATENATION", "CAST", "GATHER", "SLICE"})


class _Graph:
    """A subgraph with its producers and consumers, for the rewrites below."""

    def __init__(self, model: Any, graph: Any) -> None:
        from tensorflow.lite.tools import flatbuffer_utils

        self.model, self.graph = model, graph
        self.names = [
            flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in graph.operators
        ]
        self.outputs = set(int(i) for i in graph.outputs)
        self.removed: set[int] = set()

    def consumers(self, tensor: int) -> list[int]:
        return [
            k
            for k, op in enumerate(self.graph.operators)
            if k not in self.removed and tensor in list(op.inputs)
        ]

    def producer(self, tensor: int) -> int | None:
        for k, op in enumerate(self.graph.operators):
            if k not in self.removed and tensor in list(op.outputs):
                return k
        return None

    def tensor(self, index: int) -> Any:
        return self.graph.tensors[index]

    def constant(self, index: int) -> np.ndarray | None:
        """The constant's raw values (its own dtype), or None for an activation."""
        t = self.graph.tensors[index]
        data = self.model.buffers[t.buffer].data if t.buffer else None
        if data is None or not len(data):
            return None
        dtype = {0: np.float32, 2: np.int32, 9: np.int8, 3: np.uint8, 7: np.int16}.get(t.type)
        if dtype is None:
            return None
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        return np.frombuffer(bytes(data), dtype=dtype).reshape(shape)

    def signature(self, index: int) -> tuple[int, ...]:
        t = self.graph.tensors[index]
        sig = t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature) else None
        if sig is None:
            sig = t.shape if t.shape is not None else []
        return tuple(int(d) for d in sig)

    def rewire(self, old: int, new: int) -> None:
        for k, op in enumerate(self.graph.operators):
            if k not in self.removed:
                op.inputs = [new if i == old else i for i in op.inputs]

    def finish(self) -> None:
        self.graph.operators = [
            op for k, op in enumerate(self.graph.operators) if k not in self.removed
        ]


def _quant(t: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    q = t.quantization
    if q is None or q.scale is None:
        return (), ()
    return tuple(float(s) for s in q.scale), tuple(int(z) for z in q.zeroPoint)


def _fused_activation(op: Any) -> int:
    return int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0)


def _broadcast_path(g: _Graph, k: int) -> tuple[list[tuple[int, list[int]]], list[int]] | None:
    """The tensors downstream of BROADCAST_TO ``k`` that carry its broadcast, or None when a
    consumer needs the broadcast shape.

    Returns ``(path, dims)``: ``path`` is ``[(tensor, broadcast dims counted from the right)]``
    for every tensor whose shape shrinks when the op is removed; ``dims`` are the op's own
    broadcast dimensions (negative indices).
    """
    op = g.graph.operators[k]
    source, target = int(op.inputs[0]), int(op.outputs[0])
    in_sig, out_sig = g.signature(source), g.signature(target)
    if len(in_sig) != len(out_sig) or not out_sig:
        return None
    rank = len(out_sig)
    dims = [d - rank for d in range(rank) if in_sig[d] == 1 and out_sig[d] != 1]
    shape_op = g.producer(int(op.inputs[1]))
    shape_of = (
        int(g.graph.operators[shape_op].inputs[0])
        if shape_op is not None and g.names[shape_op] == "SHAPE"
        else None
    )
    path: list[tuple[int, list[int]]] = []
    todo = [(target, dims)]
    while todo:
        tensor, bdims = todo.pop()
        if tensor in g.outputs:
            return None
        path.append((tensor, bdims))
        for c in g.consumers(tensor):
            cop, name = g.graph.operators[c], g.names[c]
            out = int(cop.outputs[0])
            if name in _UNARY:
                todo.append((out, bdims))
            elif name == "EXPAND_DIMS":
                axis = g.constant(int(cop.inputs[1]))
                if axis is None:
                    return None
                r = len(g.signature(tensor))
                a = int(axis.reshape(-1)[0])
                a = a + r + 1 if a < 0 else a
                todo.append((out, [d if d + r >= a else d - 1 for d in bdims]))
            elif name in _BINARY and _fused_activation(cop) == 0:
                others = [int(i) for i in cop.inputs if int(i) != tensor]
                if not others:
                    return None
                other = others[0]
                value = g.constant(other)
                if value is not None and value.size == 1:
                    todo.append((out, bdims))  # a scalar: the path goes on
                elif other == shape_of and not path[1:]:
                    continue  # x op broadcast_to(y, shape(x)): x has the full shape
                elif g.signature(out) == g.signature(other) and _covers(
                    g.signature(other), g.signature(tensor), bdims
                ):
                    continue  # the other operand has the output's shape: it broadcasts
                else:
                    return None
            else:
                return None
    return path, dims


def _covers(other: tuple[int, ...], path: tuple[int, ...], bdims: list[int]) -> bool:
    """Whether ``other`` has, at each broadcast dim, the size the broadcast gave (known > 1)."""
    if len(other) < len(path):
        return False
    return all(other[d] == path[d] and other[d] > 1 for d in bdims)


def _drop_broadcasts(g: _Graph) -> int:
    done = 0
    for k, name in enumerate(g.names):
        if name != "BROADCAST_TO" or k in g.removed:
            continue
        found = _broadcast_path(g, k)
        if found is None:
            continue
        path, _ = found
        op = g.graph.operators[k]
        source, target = int(op.inputs[0]), int(op.outputs[0])
        for tensor, bdims in path[1:]:
            t = g.tensor(tensor)
            shape = [int(d) for d in t.shape]
            sig = list(g.signature(tensor))
            for d in bdims:
                shape[d], sig[d] = 1, 1
            t.shape = np.asarray(shape, dtype=np.int32)
            t.shapeSignature = np.asarray(sig, dtype=np.int32)
        g.removed.add(k)
        g.rewire(target, source)
        done += 1
    return done


def _drop_negligible_adds(g: _Graph) -> int:
    done = 0
    for k, name in enumerate(g.names):
        if name != "ADD" or k in g.removed:
            continue
        op = g.graph.operators[k]
        if _fused_activation(op) != 0 or len(op.inputs) != 2:
            continue
        out = int(op.outputs[0])
        if out in g.outputs:
            continue
        values = [g.constant(int(i)) for i in op.inputs]
        if (values[0] is None) == (values[1] is None):
            continue  # two activations or two constants
        c = 0 if values[0] is not None else 1
        const, x = int(op.inputs[c]), int(op.inputs[1 - c])
        if g.signature(x) != g.signature(out) or g.tensor(x).type != g.tensor(out).type:
            continue
        value = values[c]
        if g.tensor(out).type == 0:  # float: only an exact zero is an identity
            if value.dtype != np.float32 or np.any(value != 0):
                continue
        else:
            (cs, cz), (xs, xz), (os_, oz) = (_quant(g.tensor(i)) for i in (const, x, out))
            if len(cs) != 1 or len(os_) != 1 or len(xs) != 1 or xz != oz:
                continue
            steps = 65535 if g.tensor(out).type == 7 else 255
            real = np.abs((value.astype(np.float64) - cz[0]) * cs[0])
            # every output step is the input's: the constant and the scale mismatch together
            # move no value by half a step (margin for the kernels' fixed point)
            if steps * abs(xs[0] / os_[0] - 1) + real.max() / os_[0] >= 0.45:
                continue
        g.removed.add(k)
        g.rewire(out, x)
        _follow_scale(g, x)
        done += 1
    return done


#: Ops whose int8 kernels (XNNPACK's) need the output's scale and zero point to be the input's.
_SAME_SCALE = frozenset(
    {"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "GATHER"}
)


def _follow_scale(g: _Graph, tensor: int) -> None:
    """Give the outputs of the same-scale ops reading ``tensor`` its quantization (they had
    the removed ``ADD``'s, a fraction of a step away), and so on down."""
    todo = [tensor]
    while todo:
        t = todo.pop()
        for c in g.consumers(t):
            cop = g.graph.operators[c]
            if g.names[c] in _SAME_SCALE and int(cop.inputs[0]) == t:
                out = int(cop.outputs[0])
                if g.tensor(out).type == g.tensor(t).type and _quant(g.tensor(out))[0]:
                    g.tensor(out).quantization = copy.deepcopy(g.tensor(t).quantization)
                    todo.append(out)


def _drop_dead(g: _Graph) -> int:
    done, changed = 0, True
    while changed:
        changed = False
        for k, name in enumerate(g.names):
            if k in g.removed or name not in _PURE:
                continue
            outs = [int(i) for i in g.graph.operators[k].outputs]
            if any(o in g.outputs or g.consumers(o) for o in outs):
                continue
            g.removed.add(k)
            done += 1
            changed = True
    return done


def simplify_flatbuffer(flatbuffer: bytes) -> tuple[bytes, dict[str, int]]:
    """Remove the ``BROADCAST_TO`` ops whose consumers broadcast by themselves and the
    full-integer ``ADD`` ops of a negligible constant, exactly (see the module).

    Args:
        flatbuffer: a converted ``.tflite`` model's bytes (any quantization mode).

    Returns:
        ``(new flatbuffer, counts)`` with counts ``{"broadcast_to": n, "negligible_add": n,
        "dead_ops": n}`` (the ops removed); the input unchanged when nothing applies.

    Raises:
        TypeError: ``flatbuffer`` is not bytes.

    Example:
        >>> fb, counts = simplify_flatbuffer(flatbuffer)  # doctest: +SKIP
        >>> counts["broadcast_to"]  # doctest: +SKIP
        2
    """
    if not isinstance(flatbuffer, (bytes, bytearray)):
        raise TypeError(must_be("flatbuffer", "the bytes of a .tflite model", flatbuffer))
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    counts = {"broadcast_to": 0, "negligible_add": 0, "dead_ops": 0}
    for graph in model.subgraphs:
        g = _Graph(model, graph)
        counts["broadcast_to"] += _drop_broadcasts(g)
        counts["negligible_add"] += _drop_negligible_adds(g)
        if counts["broadcast_to"] or counts["negligible_add"]:
            counts["dead_ops"] += _drop_dead(g)
        g.finish()
    if not (counts["broadcast_to"] or counts["negligible_add"]):
        return bytes(flatbuffer), counts
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), counts
