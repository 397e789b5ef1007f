"""Hashed and quotient-remainder tables for vocabularies too large to store:
:func:`compositional_embeddings` and :func:`collision_report` (docs/embeddings.md, "Hashed and
quotient-remainder tables"; Shi et al., arXiv 1909.02107).

- ``mode="qr"``: id ``x`` reads row ``x // m`` of a quotient table (``ceil(V / m)`` rows) and
  row ``x % m`` of a remainder table (``m`` rows), combined element-wise (``"mul"``, ``"add"``)
  or side by side (``"concat"``). Every id gets its own pair: no collisions.
- ``mode="hash"``: id ``x`` reads row ``((a * x + b) mod (2**31 - 1)) mod buckets`` of one
  table (``a``, ``b`` drawn from ``seed``), computed in int64 TFLite built-in ops.

Padding id 0 always reads a zero vector (and keeps ``mask_zero``), so masked pooling still works.
The new tables start from the trained one and are meant to be fine-tuned with
:class:`tfcompress.distillation.Distiller`.

Example:
    >>> ids = keras.Input((1,), dtype="int32", name="item")
    >>> model = keras.Model(ids, keras.layers.Embedding(1000, 8, name="emb")(ids))
    >>> small, report = compositional_embeddings(model, mode="qr")
    >>> report.settings["tables"]["emb"]["rows_after"]
    64
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, IdLookup, LayerDecision
from tfcompress._validation import check_choice, check_functional, check_int
from tfcompress.embeddings._tables import (
    check_counts,
    chosen_tables,
    clone_with,
    select_tables,
)

__all__ = [
    "COMBINES",
    "MODES",
    "HashedEmbedding",
    "QREmbedding",
    "collision_report",
    "compositional_embeddings",
    "hash_ids",
]

MODES = ("qr", "hash")
COMBINES = ("mul", "add", "concat")
_PRIME = 2**31 - 1


def _hash_constants(seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    return int(rng.integers(1, _PRIME)), int(rng.integers(0, _PRIME))


def hash_ids(ids: Any, buckets: int, seed: int = 0) -> np.ndarray:
    """The bucket of each id: ``((a * id + b) mod (2**31 - 1)) mod buckets`` (numpy).

    Example:
        >>> hash_ids(np.arange(4), 3).shape
        (4,)
    """
    a, b = _hash_constants(seed)
    ids = np.asarray(ids, np.int64)
    return ((ids * a + b) % _PRIME) % buckets


def _nonzero(ids: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    return tf.expand_dims(tf.cast(tf.not_equal(ids, 0), dtype), -1)


class _Table(IdLookup):
    """Shared argument checks, masking and config of the two table layers."""

    def __init__(
        self, input_dim: int, output_dim: int, buckets: int, mask_zero: bool, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__} {self.name!r}"
        self.input_dim = check_int(input_dim, "input_dim", minimum=1, where=where)
        self.output_dim = check_int(output_dim, "output_dim", minimum=1, where=where)
        self.buckets = check_int(buckets, "buckets", minimum=1, where=where)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "buckets": self.buckets,
            "mask_zero": self.mask_zero,
        }


@keras.saving.register_keras_serializable(package="tfcompress")
class QREmbedding(_Table):
    """Quotient-remainder embedding: ``combine(Q[id // buckets], R[id % buckets])``.

    Args:
        input_dim: vocabulary size ``V``.
        output_dim: embedding width ``d``.
        buckets: the remainder table's rows ``m`` (the quotient table has ``ceil(V / m)``).
        combine: ``"mul"``, ``"add"`` (both tables ``d`` wide) or ``"concat"`` (``d - d // 2``
            and ``d // 2`` wide).
        mask_zero: id 0 is padding and masked. Id 0 always reads zeros.

    Example:
        >>> QREmbedding(100, 4, 10)(tf.constant([[0, 57]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        buckets: int,
        combine: str = "mul",
        mask_zero: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dim, output_dim, buckets, mask_zero, **kwargs)
        self.combine = check_choice(combine, "combine", COMBINES, where="QREmbedding")
        q_dim, r_dim = _widths(self.output_dim, self.combine)
        self.quotient = self.add_weight(
            name="quotient",
            shape=(math.ceil(self.input_dim / self.buckets), q_dim),
            initializer="ones" if self.combine == "mul" else "random_normal",
        )
        self.remainder = self.add_weight(
            name="remainder", shape=(self.buckets, r_dim), initializer="random_normal"
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = inputs if inputs.dtype == tf.int32 else tf.cast(inputs, tf.int32)
        q = tf.gather(self.quotient, tf.math.floordiv(ids, self.buckets))
        r = tf.gather(self.remainder, tf.math.floormod(ids, self.buckets))
        if self.combine == "mul":
            out = q * r
        elif self.combine == "add":
            out = q + r
        else:
            out = tf.concat([q, r], axis=-1)
        return out * _nonzero(ids, out.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "combine": self.combine}


@keras.saving.register_keras_serializable(package="tfcompress")
class HashedEmbedding(_Table):
    """Hashed embedding: ``table[hash(id) % buckets]`` with the hash of :func:`hash_ids`.

    Args:
        input_dim: vocabulary size (ids are checked against nothing: any id hashes).
        output_dim: embedding width.
        buckets: rows of the table.
        seed: picks the hash constants.
        mask_zero: id 0 is padding and masked. Id 0 always reads zeros.

    Example:
        >>> HashedEmbedding(10**6, 4, 1000)(tf.constant([[0, 999_999]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        buckets: int,
        seed: int = 0,
        mask_zero: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dim, output_dim, buckets, mask_zero, **kwargs)
        self.seed = check_int(seed, "seed", minimum=0, where="HashedEmbedding")
        self.table = self.add_weight(
            name="table", shape=(self.buckets, self.output_dim), initializer="random_normal"
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        a, b = _hash_constants(self.seed)
        ids = tf.cast(inputs, tf.int64)  # a * id < 2**62: no overflow
        rows = tf.math.floormod(tf.math.floormod(ids * a + b, _PRIME), self.buckets)
        out = tf.gather(self.table, rows)
        return out * _nonzero(ids, out.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def _widths(dim: int, combine: str) -> tuple[int, int]:
    return (dim - dim // 2, dim // 2) if combine == "concat" else (dim, dim)


def _group_mean(values: np.ndarray, groups: np.ndarray, n: int, weights: np.ndarray) -> np.ndarray:
    """Per-group weighted mean of ``values`` rows (plain mean where no weight; the overall
    mean for empty groups)."""
    out = np.zeros((n, values.shape[1]), np.float64)
    for w in (np.ones_like(weights), weights):  # second pass overwrites where weighted
        sums = np.zeros((n, values.shape[1]), np.float64)
        total = np.zeros(n, np.float64)
        np.add.at(sums, groups, values * w[:, None])
        np.add.at(total, groups, w)
        seen = total > 0
        out[seen] = sums[seen] / total[seen, None]
        if w is not weights:
            out[~seen] = values.mean(axis=0) if values.size else 0.0
    return out


def _initial_qr(table: np.ndarray, w: np.ndarray, m: int, combine: str) -> list[np.ndarray]:
    ids = np.arange(1, table.shape[0])  # padding 0 reads zeros: not fitted
    rows, w = table[1:].astype(np.float64), w[1:]
    q, r = ids // m, ids % m
    n_q = math.ceil(table.shape[0] / m)
    if combine == "concat":
        q_dim = table.shape[1] - table.shape[1] // 2
        return [_group_mean(rows[:, :q_dim], q, n_q, w), _group_mean(rows[:, q_dim:], r, m, w)]
    rem = _group_mean(rows, r, m, w)
    if combine == "add":
        return [_group_mean(rows - rem[r], q, n_q, w), rem]
    # mul: alternating least squares per entry (a few rounds from the remainder means)
    quo = np.ones((n_q, table.shape[1]))
    for _ in range(3):
        quo = _least_squares(rows, w, q, n_q, rem[r], fallback=1.0)
        rem = _least_squares(rows, w, r, m, quo[q], fallback=0.0)
    return [quo, rem]


def _least_squares(
    rows: np.ndarray, w: np.ndarray, groups: np.ndarray, n: int, other: np.ndarray, fallback: float
) -> np.ndarray:
    """Per group and column, the ``x`` minimising ``sum w (rows - x * other)^2``."""
    num = np.zeros((n, rows.shape[1]))
    den = np.zeros((n, rows.shape[1]))
    np.add.at(num, groups, w[:, None] * rows * other)
    np.add.at(den, groups, w[:, None] * other**2)
    return np.where(den > 1e-12, num / np.maximum(den, 1e-12), fallback)


def compositional_embeddings(
    model: keras.Model,
    *,
    tables: str | Sequence[str] | None = None,
    mode: str = "qr",
    buckets: int | None = None,
    combine: str = "mul",
    counts: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[keras.Model, CompressionReport]:
    """Replace ``Embedding(V, d)`` tables by quotient-remainder or hashed tables.

    The new tables start from the trained ones: for ``"hash"`` each row is the
    frequency-weighted mean (``counts`` given; else the plain mean) of the trained rows that
    land in it; for ``"qr"`` the remainder rows are such means over ``id % m`` and the quotient
    rows fit the rest (least squares per entry for ``"mul"``, the mean residual for ``"add"``,
    the other half of the columns for ``"concat"``). Fine-tune with distillation from the
    original model to recover quality (every other layer is a copy with the same weights).

    Args:
        model: a functional or Sequential tf_keras model.
        tables: a table name or names (default: every ``Embedding``).
        mode: ``"qr"`` or ``"hash"``.
        buckets: ``"qr"``: the remainder table's rows ``m`` (default ``ceil(sqrt(V))``);
            ``"hash"``: the table's rows (required).
        combine: ``"qr"`` only: ``"mul"``, ``"add"`` or ``"concat"``.
        counts: optional ``{table name: counts per id}`` (``count_ids``) to weight the means.
        seed: picks the hash constants.

    Returns:
        ``(new_model, report)``; ``report.settings["tables"][name]`` holds ``bytes_before``,
        ``bytes_after``, ``rows_before`` and ``rows_after``.

    Raises:
        TypeError: ``model`` is not a tf_keras model; bad ``tables``/``counts`` types.
        ValueError: bad ``mode``/``combine``/``buckets``/``seed``, a ``tables`` name that is no
            layer, ``counts`` of the wrong length, a subclassed model.

    Example:
        >>> small, report = compositional_embeddings(  # doctest: +SKIP
        ...     model, mode="hash", buckets=1000, counts=count_ids(model, train_data)
        ... )
    """
    check_model(model, "model")
    check_choice(mode, "mode", MODES, where="compositional_embeddings")
    check_choice(combine, "combine", COMBINES, where="compositional_embeddings")
    check_int(seed, "seed", minimum=0, where="compositional_embeddings")
    if buckets is not None:
        check_int(buckets, "buckets", minimum=1, where="compositional_embeddings")
    elif mode == "hash":
        raise ValueError(
            "compositional_embeddings: mode='hash' needs `buckets` (the hashed table's rows), "
            "e.g. buckets=input_dim // 8."
        )
    check_functional(model, "compositional_embeddings")
    layers, selected = select_tables(tables, model)
    decisions: list[LayerDecision] = []
    settings: dict[str, Any] = {"mode": mode, "combine": combine, "seed": seed, "tables": {}}
    new: dict[int, keras.layers.Layer] = {}
    for layer in chosen_tables(layers, selected, decisions):
        cls = type(layer).__name__
        size, dim = int(layer.input_dim), int(layer.output_dim)
        table = np.asarray(layer.get_weights()[0])
        w = np.ones(size) if counts is None else check_counts(counts, layer.name, size)
        m = buckets or math.ceil(math.sqrt(size))
        if mode == "qr":
            swap = QREmbedding(size, dim, m, combine, layer.mask_zero, name=layer.name)
            swap.set_weights([v.astype(table.dtype) for v in _initial_qr(table, w, m, combine)])
            rows = math.ceil(size / m) + m
            values = sum(int(np.prod(v.shape)) for v in swap.weights)
            detail = f"{size} rows -> {math.ceil(size / m)} quotient + {m} remainder ({combine})"
        else:
            swap = HashedEmbedding(size, dim, m, seed, layer.mask_zero, name=layer.name)
            where = hash_ids(np.arange(1, size), m, seed)
            swap.set_weights([_group_mean(table[1:], where, m, w[1:]).astype(table.dtype)])
            rows, values = m, m * dim
            detail = f"{size} rows -> {m} hashed rows"
        stats = {
            "bytes_before": int(table.nbytes),
            "bytes_after": int(values * table.dtype.itemsize),
            "rows_before": size,
            "rows_after": rows,
        }
        if stats["bytes_after"] >= stats["bytes_before"]:
            decisions.append(
                LayerDecision(
                    layer.name, cls, False, reason=f"{detail} would not be smaller; left alone"
                )
            )
            continue
        settings["tables"][layer.name] = stats
        new[id(layer)] = swap
        decisions.append(
            LayerDecision(
                layer.name,
                cls,
                True,
                f"{detail}, {stats['bytes_before']} -> {stats['bytes_after']} bytes",
            )
        )
    report = CompressionReport("compositional", tuple(decisions), settings)
    if not new:
        return model, report
    new_model = clone_with(model, new)
    new_model.compression_report = report  # type: ignore[attr-defined]
    return new_model, report


def collision_report(counts: Any, mode: str, buckets: int, *, seed: int = 0) -> dict[str, Any]:
    """How much a hashed table's ids collide, for one table's ``counts`` (padding 0 excluded).

    An id collides when it shares its bucket with a more frequent id (ties: the lower id is
    the more frequent), so the ids that do not collide are one per non-empty bucket.
    ``mode="qr"`` gives every id its own (quotient, remainder) pair: zero by construction.

    Args:
        counts: counts per id of one table (``count_ids(...)[name]``).
        mode: ``"qr"`` or ``"hash"``.
        buckets: the hashed table's rows (``"hash"``) or the remainder rows (``"qr"``).
        seed: the hash seed :func:`compositional_embeddings` used.

    Returns:
        ``{"mode", "buckets", "ids", "ids_colliding_share", "impressions_colliding_share",
        "note"}``.

    Example:
        >>> collision_report(np.array([0, 5, 3, 1]), "hash", 1)["ids_colliding_share"]
        0.6666666666666666
    """
    check_choice(mode, "mode", MODES, where="collision_report")
    check_int(buckets, "buckets", minimum=1, where="collision_report")
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.shape[0] < 2 or (counts.min() < 0):
        raise ValueError(
            f"collision_report: `counts` must be one table's non-negative counts per id (1-D, "
            f">= 2 ids), received shape {counts.shape}."
        )
    ids = np.arange(1, counts.shape[0])
    values = counts[1:].astype(np.float64)
    total = values.sum()
    if mode == "qr":
        return {
            "mode": mode,
            "buckets": buckets,
            "ids": int(ids.size),
            "ids_colliding_share": 0.0,
            "impressions_colliding_share": 0.0,
            "note": "quotient-remainder: every id has its own (id // m, id % m) pair",
        }
    where = hash_ids(ids, buckets, seed)
    order = np.lexsort((ids, -values))  # most frequent first, ties to the lower id
    first = np.zeros(ids.size, bool)
    _, leaders = np.unique(where[order], return_index=True)
    first[order[leaders]] = True
    colliding = ~first
    return {
        "mode": mode,
        "buckets": buckets,
        "ids": int(ids.size),
        "ids_colliding_share": float(colliding.mean()),
        "impressions_colliding_share": float(values[colliding].sum() / total) if total else 0.0,
        "note": "an id collides when a more frequent id shares its bucket",
    }
