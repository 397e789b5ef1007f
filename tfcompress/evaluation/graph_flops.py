"""GEMM operations of a SavedModel's serving function (:func:`saved_model_flops`) or of any
concrete function (:func:`function_gemm_flops`) at a given batch size, counted on its graph.

How: the function's graph is re-imported with the inputs' batch axis set to ``batch_size``
and each variable fed as a handle of its shape (TensorFlow's shape inference then gives every
``MatMul`` its full shape; no weight is read or copied), and each ``MatMul`` /
``BatchMatMul`` / ``Einsum`` / ``Conv`` is counted with the statistics TensorFlow registers for
it (``2·m·k·n`` for a product: the registry ``tf.compat.v1.profiler``'s ``float_operation``
reads). Function calls (a SavedModel signature's ``StatefulPartitionedCall``, an XLA-compiled
serving function) are followed into their body with their arguments' shapes. Freezing the
variables into constants instead (``convert_variables_to_constants_v2``) fails on an
XLA-compiled function holding an ``Embedding`` (its ``ResourceGather`` inside a function is
left unconverted). Control-flow bodies (``While``/``If``) are not entered: their GEMMs count 0.
Why not the profiler itself: it counts every op with registered statistics (bias adds,
activations, the int ops of a lookup), needs a TF1 graph with fully known shapes, and does not
enter called functions; the share of the GEMM peak wants the GEMMs alone, as
:func:`tfcompress.evaluation.peak.tflite_flops` counts them.

Example:
    >>> from tfcompress._keras import keras
    >>> from tfcompress.export import export_saved_model
    >>> x = keras.Input((4,), name="x")
    >>> model = keras.Model(x, keras.layers.Dense(3)(x))
    >>> _ = export_saved_model(model, "/tmp/sm")  # doctest: +SKIP
    >>> saved_model_flops("/tmp/sm", 8)  # 2 * 8 * 4 * 3  # doctest: +SKIP
    192
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tfcompress._compat import function_def_to_graph_def, node_flops
from tfcompress._keras import tf
from tfcompress._validation import check_bool, check_int, must_be
from tfcompress.evaluation.flops import einsum_flops

__all__ = ["GEMM_OPS", "function_gemm_flops", "saved_model_flops"]

_log = logging.getLogger("tfcompress")

#: the TensorFlow ops counted as GEMMs (everything else counts 0, as in ``tflite_flops``)
GEMM_OPS = frozenset(
    {
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "Einsum",
        "Conv2D",
        "Conv3D",
        "DepthwiseConv2dNative",
    }
)
_CALLS = ("StatefulPartitionedCall", "PartitionedCall")
_MAX_DEPTH = 16


class _UnknownShapeError(Exception):
    """A GEMM whose shape is not fully known at the batch size (e.g. a variable length)."""


def _gemm_op_flops(graph: Any, op: Any) -> int:
    if not all(t.shape.is_fully_defined() for t in op.inputs):
        shapes = [tuple(t.shape) for t in op.inputs]
        raise _UnknownShapeError(f"{op.type} '{op.name}' of shapes {shapes}")
    if op.type == "Einsum":
        return einsum_flops(op)
    return node_flops(graph, op.node_def)


def _resource_source(tensor: Any) -> tuple[Any, Any] | None:
    """``(dtype, shape)`` of the variable a resource tensor reads (through ``Identity``s)."""
    op = tensor.op
    while op.type == "Identity" and op.inputs:
        op = op.inputs[0].op
    if op.type == "VarHandleOp":
        return op.get_attr("dtype"), op.get_attr("shape")
    return None


def _feed(spec: tuple[Any, Any, bool]) -> Any:
    """A tensor of ``spec`` = (dtype, shape, is a variable) to feed an argument."""
    dtype, shape, variable = spec
    if variable:  # a handle whose shape inference gives ReadVariableOp / ResourceGather shapes
        return tf.raw_ops.VarHandleOp(dtype=dtype, shape=shape, shared_name="")
    return tf.raw_ops.Placeholder(dtype=dtype, shape=shape)


def _import(graph_def: Any, arguments: dict[str, tuple[Any, Any, bool]]) -> Any:
    """``graph_def`` imported into a new graph, ``arguments`` (name:0 -> spec) fed."""
    for node in graph_def.node:  # colocation with argument nodes the import renames
        if "_class" in node.attr:
            del node.attr["_class"]
    graph = tf.Graph()
    with graph.as_default():
        feeds = {name: _feed(spec) for name, spec in arguments.items()}
        tf.graph_util.import_graph_def(graph_def, input_map=feeds, name="")
    return graph


def _count(graph: Any, library: dict[str, Any], totals: dict[str, int], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _UnknownShapeError(f"function calls nested deeper than {_MAX_DEPTH}")
    for op in graph.get_operations():
        if op.type in GEMM_OPS:
            totals[op.type] = totals.get(op.type, 0) + _gemm_op_flops(graph, op)
        elif op.type in _CALLS:
            fdef = library.get(op.get_attr("f").name)
            if fdef is None:
                continue
            body = function_def_to_graph_def(fdef)
            body.library.function.extend(library.values())
            args = {}
            for a, t in zip(fdef.signature.input_arg, op.inputs, strict=True):
                source = _resource_source(t) if t.dtype == tf.resource else None
                if source is not None:
                    args[f"{a.name}:0"] = (source[0], source[1], True)
                elif t.dtype != tf.resource:
                    args[f"{a.name}:0"] = (t.dtype, t.shape, False)
            _count(_import(body, args), library, totals, depth + 1)


def _arguments(fn: Any, batch_size: int) -> dict[str, tuple[Any, Any, bool]]:
    """The feeds of ``fn``'s placeholders: inputs at ``batch_size``, variables as handles."""
    variables = {id(v.handle): v for v in fn.graph.variables}
    captured = {}
    for external, internal in fn.graph.captures:
        captured[internal.name] = variables.get(id(external))
    arguments = {}
    for t in fn.inputs:
        if t.name in captured:
            v = captured[t.name]
            if v is not None:
                arguments[t.name] = (v.dtype.base_dtype, v.shape, True)
            elif t.dtype != tf.resource:
                arguments[t.name] = (t.dtype, t.shape, False)
            continue
        shape = t.shape.as_list() if t.shape.rank is not None else None
        if shape and shape[0] is None:
            shape[0] = batch_size
        arguments[t.name] = (t.dtype, shape, False)
    return arguments


def function_gemm_flops(
    fn: Any, batch_size: int, *, by_op: bool = False
) -> int | None | tuple[int | None, dict[str, int]]:
    """GEMM operations of one call of the concrete function ``fn`` at ``batch_size``.

    Args:
        fn: a ``tf.types.experimental.ConcreteFunction`` (e.g. a loaded SavedModel's
            ``signatures["serving_default"]``; keep the loaded object alive while counting).
        batch_size: the batch the inputs' first axis is set to (where it is unknown).
        by_op: also return ``{op type: operations}``.

    Returns:
        The operations of one call (an int), or None when a GEMM's shape stays unknown at that
        batch size (e.g. a sequence axis of unknown length); with ``by_op``, ``(total, by_op)``.

    Raises:
        TypeError: ``fn`` is not a concrete function.
        ValueError: ``batch_size`` < 1.

    Example:
        >>> f = tf.function(lambda x: tf.matmul(x, tf.ones((4, 3))))
        >>> function_gemm_flops(f.get_concrete_function(tf.TensorSpec([None, 4])), 8)
        192
    """
    if not hasattr(fn, "graph") or not hasattr(fn, "structured_input_signature"):
        raise TypeError(
            must_be(
                "fn",
                "a concrete function (tf.function(...).get_concrete_function(spec), or a "
                "loaded SavedModel's signatures['serving_default'])",
                fn,
                where="function_gemm_flops",
            )
        )
    check_int(batch_size, "batch_size", minimum=1)
    check_bool(by_op, "by_op", where="function_gemm_flops")
    graph_def = fn.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    arguments = _arguments(fn, batch_size)
    totals: dict[str, int] = {}
    try:
        _count(_import(graph_def, arguments), library, totals, 0)
    except _UnknownShapeError as e:
        _log.warning("GEMM operations not countable at batch %d: %s", batch_size, e)
        return (None, {}) if by_op else None
    total = int(sum(totals.values()))
    return (total, dict(sorted(totals.items()))) if by_op else total


def saved_model_flops(
    path: str | Path, batch_size: int, *, signature: str = "serving_default", by_op: bool = False
) -> int | None | tuple[int | None, dict[str, int]]:
    """GEMM operations of one call of a SavedModel's ``signature`` at ``batch_size``.

    See :func:`function_gemm_flops` (XLA-compiled serving functions included).

    Args:
        path: the SavedModel directory.
        batch_size: the batch size.
        signature: the serving signature.
        by_op: also return ``{op type: operations}``.

    Raises:
        ValueError: ``path`` is not a SavedModel directory, no such ``signature``,
            ``batch_size`` < 1.

    Example:
        >>> saved_model_flops("savedmodels/ctr_xla", 256)  # doctest: +SKIP
        12518400
    """
    check_int(batch_size, "batch_size", minimum=1)
    folder = Path(path)
    if not (folder / "saved_model.pb").is_file():
        raise ValueError(
            must_be(
                "path",
                "a SavedModel directory (holding saved_model.pb)",
                str(path),
                "Export one with tfcompress.export.export_saved_model.",
                where="saved_model_flops",
            )
        )
    loaded = tf.saved_model.load(str(folder))
    if signature not in loaded.signatures:
        raise ValueError(
            f"saved_model_flops: SavedModel {str(path)!r} has no signature {signature!r}; it "
            f"has {sorted(loaded.signatures)}. Pass one of them as `signature`."
        )
    return function_gemm_flops(loaded.signatures[signature], batch_size, by_op=by_op)
