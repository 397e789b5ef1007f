"""The layers of the fused embedding front end (:mod:`tfcompress.export.fuse`), registered
(package ``"tfcompress"``) so a fused model saves and loads like the reference models.

Example:
    >>> from tfcompress._keras import tf
    >>> ids = FusedGatherIds([0, 5])([tf.constant([[3]]), tf.constant([[0]])])
    >>> [t.numpy().tolist() for t in ids]
    [[[1.0, 0.0]], [[3, 5]]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._keras import keras, tf

__all__ = [
    "FLAT",
    "MAX_FLOAT_ROWS",
    "MEAN",
    "FusedGatherIds",
    "FusedPooling",
    "FusedSlice",
    "item_runs",
]

_register = keras.saving.register_keras_serializable(package="tfcompress")
#: the kinds of a pooled item: a lookup flattened (as ``Flatten``) or mean-pooled (``MaskedMean``)
FLAT, MEAN = "flat", "mean"


#: the fused table's rows are computed in float32 when some positions are pooled: exact below
MAX_FLOAT_ROWS = 2**24


@_register
class FusedGatherIds(keras.layers.Layer):
    """Concatenated id inputs ``(batch, T)``: ``[present, rows]``.

    ``present`` is float32 1.0 where the id is > 0 (0 is padding), else 0.0; ``rows`` is the
    row of each id in the fused table: the id plus its table's offset, except that a padding
    id (<= 0) at a pooled position reads ``zero_row``, an all-zero row, so the pooling is a
    plain sum. Both are computed in float (exact below :data:`MAX_FLOAT_ROWS` rows; LiteRT runs
    float elementwise ops in XNNPACK, int32 ones with a broadcast on slow reference kernels),
    then cast. With ``limits``, each id is first clipped to ``[0, limit]`` of its table (one
    ``MAXIMUM`` with 0, shared with ``present``, and one ``MINIMUM`` with the per-position
    limits), so an id past its table's rows reads its table's last row, never the next table's
    (``Embedding`` raises on such ids and the unfused ``.tflite``'s ``GATHER`` fails: "gather
    index out of bounds"); a negative id reads row 0 (pooled: it is padding, the zero row).

    Args:
        offsets: per position, the row offset of its table in the fused table.
        pooled: per position, 1 if a masked mean pools it, else 0.
        zero_row: the all-zero row (unused when nothing is pooled).
        limits: per position, the last row of its table (``input_dim - 1``); None: ids are not
            clipped (fused models saved before the clipping load this way).
    """

    def __init__(
        self,
        offsets: list[int],
        pooled: list[int] | None = None,
        zero_row: int = 0,
        limits: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.offsets = [int(o) for o in offsets]
        self.pooled = [int(p) for p in (pooled or [0] * len(self.offsets))]
        self.zero_row = int(zero_row)
        self.limits = None if limits is None else [int(v) for v in limits]
        if self.limits is not None and len(self.limits) != len(self.offsets):
            raise ValueError(
                f"FusedGatherIds {self.name!r}: `limits` has {len(self.limits)} values for "
                f"{len(self.offsets)} positions; pass one last row per position (as `offsets`)."
            )
        #: compute the rows in int32 (set for full-integer exports, whose converter would
        #: quantize the float row arithmetic to int8); not saved: an export-time switch
        self.integer_rows = False

    def call(self, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
        ids = [tf.cast(x, tf.int32) if x.dtype != tf.int32 else x for x in inputs]
        raw = tf.concat(ids, axis=1) if len(ids) > 1 else ids[0]
        if self.integer_rows:
            above = tf.maximum(raw, 0)
            valid = tf.minimum(above, 1)
            if self.limits is not None:
                raw = tf.minimum(above, tf.constant(np.array(self.limits, np.int32)))
            pooled_i = np.array(self.pooled, np.int32)
            gate = tf.maximum(valid, tf.constant(1 - pooled_i))
            zero_i = pooled_i * self.zero_row
            rows = gate * (raw + tf.constant(np.array(self.offsets, np.int32) - zero_i))
            return [tf.cast(valid, tf.float32), rows + tf.constant(zero_i)]
        raw_f = tf.cast(raw, tf.float32)
        above_f = tf.maximum(raw_f, 0.0)
        present = tf.minimum(above_f, 1.0)
        if self.limits is not None:  # one MINIMUM over every position (XNNPACK, float)
            raw_f = tf.minimum(above_f, tf.constant(np.array(self.limits, np.float32)))
        if not any(self.pooled):
            if self.limits is None:
                return [present, raw + tf.constant(self.offsets, tf.int32)]
            offsets_f = tf.constant(np.array(self.offsets, np.float32))
            return [present, tf.cast(raw_f + offsets_f, tf.int32)]
        pooled = np.array(self.pooled, np.float32)
        zero = pooled * self.zero_row
        # pooled positions: zero_row + present * (id + offset - zero_row); the others: id + offset
        gate = present * tf.constant(pooled) + tf.constant(1.0 - pooled)
        shifted = raw_f + tf.constant(np.array(self.offsets, np.float32) - zero)
        rows = tf.cast(gate * shifted + tf.constant(zero), tf.int32)
        return [present, rows]

    def compute_output_shape(self, input_shape: Any) -> list[tf.TensorShape]:
        shape = tf.TensorShape([tf.TensorShape(input_shape[0])[0], len(self.offsets)])
        return [shape, shape]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "offsets": self.offsets,
            "pooled": self.pooled,
            "zero_row": self.zero_row,
            "limits": self.limits,
        }


def item_runs(items: list) -> list[tuple[int, int]]:
    """``(first, stop)`` item ranges computed together: consecutive items of one kind on
    consecutive positions (and, for pooled items, of one length).

    Example:
        >>> item_runs([["flat", 0, 1], ["flat", 1, 1], ["mean", 2, 5], ["mean", 7, 5]])
        [(0, 2), (2, 4)]
    """
    runs: list[list[int]] = []
    end = None
    for k, (kind, start, length) in enumerate(items):
        if runs and start == end:
            first = items[runs[-1][0]]
            if kind == first[0] and (kind == FLAT or length == first[2]):
                runs[-1][1] = k + 1
                end = start + length
                continue
        runs.append([k, k + 1])
        end = start + length
    return [(a, b) for a, b in runs]


@_register
class FusedPooling(keras.layers.Layer):
    """Every flattened or masked-mean-pooled feature of one gather, as ``(batch, width)`` pieces.

    Called on ``[gathered, present]`` (``(batch, T, dim)``, and ``(batch, T)``: 1.0 where the id
    is > 0, as :class:`FusedGatherIds` gives it). Consecutive
    items of one kind on consecutive positions are computed together: a run of flattened
    lookups is one reshape of its slice; a run of pooled lookups of one length is one
    multiply by the weights ``valid / max(count, 1)`` and one ``SUM`` (``method="sum"``) or
    one ``BATCH_MATMUL`` (``method="matmul"``).

    Args:
        items: ``[kind, start, length]`` per feature, in output order: ``"flat"`` (the
            ``length`` positions flattened, as ``Flatten`` did) or ``"mean"`` (their mean over
            the ids > 0, a zero vector when none, as ``MaskedMean`` did).
        pieces: ``[first_item, stop_item]`` ranges partitioning ``items``, each inside one run
            (:func:`item_runs`): one output tensor each (the items' vectors side by side).
        method: ``"sum"`` or ``"matmul"``.
    """

    def __init__(self, items: list, pieces: list, method: str = "sum", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items = [[str(k), int(s), int(n)] for k, s, n in items]
        self.pieces = [[int(a), int(b)] for a, b in pieces]
        self.method = method

    def runs(self) -> list[tuple[int, int]]:
        """``(first_item, stop_item)`` of each run of items computed together."""
        return item_runs(self.items)

    def call(self, inputs: list[tf.Tensor]) -> list[tf.Tensor] | tf.Tensor:
        values, present = inputs
        values = tf.cast(values, tf.float32)
        dim = int(values.shape[2])
        outputs = []
        for a, b in self.runs():
            kind, start, length = self.items[a]
            count = b - a
            if kind == FLAT:
                span = values[:, start : self.items[b - 1][1] + self.items[b - 1][2], :]
                part = tf.reshape(span, [-1, int(span.shape[1]) * dim])
            else:
                span = values[:, start : start + count * length, :]
                valid = tf.reshape(present[:, start : start + count * length], [-1, count, length])
                counts = tf.reduce_sum(valid, axis=2, keepdims=True)
                if self.method == "matmul":
                    weights = valid / tf.maximum(counts, 1.0)
                    pooled = tf.matmul(
                        tf.reshape(weights, [-1, 1, length]), tf.reshape(span, [-1, length, dim])
                    )
                else:  # padding positions read the zero row: a plain sum, scaled by 1 / count
                    total = tf.reduce_sum(tf.reshape(span, [-1, count, length, dim]), axis=2)
                    pooled = total * (1.0 / tf.maximum(counts, 1.0))
                part = tf.reshape(pooled, [-1, count * dim])
            inside = [k for k, (p, q) in enumerate(self.pieces) if a <= p and q <= b]
            widths = [self._widths(dim)[k] for k in inside]
            outputs += [part] if len(widths) == 1 else tf.split(part, widths, axis=1)
        return outputs[0] if len(outputs) == 1 else outputs

    def _widths(self, dim: int) -> list[int]:
        return [
            sum(n * dim if k == FLAT else dim for k, _, n in self.items[a:b])
            for a, b in self.pieces
        ]

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = tf.TensorShape(input_shape[0])
        shapes = [tf.TensorShape([shape[0], w]) for w in self._widths(int(shape[-1]))]
        return shapes[0] if len(shapes) == 1 else shapes

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "items": self.items,
            "pieces": self.pieces,
            "method": self.method,
        }


@_register
class FusedSlice(keras.layers.Layer):
    """Positions ``[start, start + length)`` of a ``(batch, T, dim)`` gather (one lookup's output).

    Args:
        start: first position.
        length: number of positions.
    """

    def __init__(self, start: int, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.length = int(start), int(length)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs[:, self.start : self.start + self.length, :]

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        return tf.TensorShape([shape[0], self.length, shape[2]])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "start": self.start, "length": self.length}
