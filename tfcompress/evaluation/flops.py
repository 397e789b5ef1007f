"""Count the floating-point operations of a model's inference pass, per example: :func:`count_flops`
(a multiply-add is 2 FLOPs; gathers count 0).

Example:
    >>> from tfcompress._keras import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    >>> count_flops(m)  # 4 x 3 multiply-adds
    24
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tfcompress._compat import frozen_graph, node_flops
from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_bool

__all__ = ["count_flops"]

_log = logging.getLogger("tfcompress")

# Ops whose statistics TensorFlow registers but which do no arithmetic worth counting.
_FREE = {"Const", "Placeholder", "Identity", "NoOp", "Reshape", "GatherV2", "ResourceGather"}


def einsum_flops(op: Any) -> int:
    """Multiply-adds x 2 of an ``Einsum`` op with fully known shapes (shared with graph_flops)."""
    equation = op.get_attr("equation").decode()
    lhs = equation.split("->")[0].replace(" ", "")
    if "..." in lhs:
        raise ValueError(f"Einsum with ellipsis not supported: {equation}")
    sizes: dict[str, int] = {}
    for term, tensor in zip(lhs.split(","), op.inputs, strict=True):
        shape = tensor.shape.as_list()
        for letter, dim in zip(term, shape, strict=True):
            if dim is None:
                raise ValueError(f"Einsum {op.name} has an unknown dimension: {shape}")
            sizes[letter] = dim
    total = int(np.prod(list(sizes.values()), dtype=np.int64)) if sizes else 0
    return 2 * total if len(op.inputs) > 1 else total


def _op_flops(graph: Any, op: Any) -> int:
    if op.type in _FREE:
        return 0
    if op.type == "Einsum":
        return einsum_flops(op)
    # Ops without registered statistics (casts, lookups, data movement) count 0.
    return node_flops(graph, op.node_def)


def _input_signature(model: keras.Model, batch_size: int) -> Any:
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"count_flops: model '{model.name}' has no known inputs (a subclassed model that was "
            "never called); pass `input_signature=` (tf.TensorSpec(s) without the batch axis "
            "being required) or build the model on an Input first."
        )
    specs = [tf.TensorSpec([batch_size, *t.shape[1:]], t.dtype) for t in inputs]
    if len(specs) == 1:
        return specs[0]
    return dict(zip(model.input_names, specs, strict=True))


def _with_batch(spec: Any, batch_size: int) -> Any:
    def fix(s: Any) -> Any:
        if not isinstance(s, tf.TensorSpec):
            raise TypeError(
                f"count_flops: `input_signature` must hold tf.TensorSpec objects, received "
                f"{type(s).__name__}: {s!r:.80}."
            )
        shape = s.shape.as_list()
        if shape and shape[0] is None:
            shape[0] = batch_size
        if any(d is None for d in shape):
            raise ValueError(
                f"count_flops: every non-batch dimension of `input_signature` must be known, "
                f"received {s}."
            )
        return tf.TensorSpec(shape, s.dtype, name=s.name)

    return tf.nest.map_structure(fix, spec)


def count_flops(
    model: keras.Model,
    *,
    batch_size: int = 8,
    input_signature: Any = None,
    by_op: bool = False,
) -> int | tuple[int, dict[str, int]]:
    """Floating-point operations per example of ``model(x, training=False)``.

    Args:
        model: a tf_keras model with known inputs (functional or sequential), or any model with
            ``input_signature`` given.
        batch_size: the batch size the graph is traced at; the total is divided by it, so
            per-batch work (e.g. the candidate tower of a two-tower model over the catalogue)
            is amortised over the batch.
        input_signature: the input ``tf.TensorSpec`` structure (batch axis None or any size);
            default from ``model.inputs``.
        by_op: also return ``{op type: FLOPs per example}``.

    Returns:
        FLOPs per example (an int), or ``(flops, by_op_type)`` when ``by_op`` is True.

    Raises:
        TypeError: ``model`` is not a tf_keras model (Keras 3 included), bad ``input_signature``.
        ValueError: ``batch_size`` < 1, unknown input shapes.

    Example:
        >>> from tfcompress._keras import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> count_flops(m, by_op=True)[1]  # 24 for MatMul, 3 for the bias
        {'BiasAdd': 3, 'MatMul': 24}
    """
    check_model(model, "model")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"count_flops: `batch_size` must be an int >= 1, received {batch_size!r}.")
    check_bool(by_op, "by_op", where="count_flops")
    if input_signature is None:
        signature = _input_signature(model, batch_size)
    else:
        signature = _with_batch(input_signature, batch_size)

    @tf.function(autograph=False)
    def forward(x: Any) -> Any:
        return model(x, training=False)

    concrete = forward.get_concrete_function(signature)
    graph = frozen_graph(concrete)
    per_type: dict[str, int] = {}
    for op in graph.get_operations():
        flops = _op_flops(graph, op)
        if flops:
            per_type[op.type] = per_type.get(op.type, 0) + flops
    per_example = {k: int(round(v / batch_size)) for k, v in sorted(per_type.items())}
    total = int(round(sum(per_type.values()) / batch_size))
    _log.debug("count_flops(%s): %d FLOPs/example %s", model.name, total, per_example)
    if by_op:
        return total, per_example
    return total
