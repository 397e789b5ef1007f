"""The stored twins of the tables of :mod:`tfcompress.embeddings`: the same lookup as
``QREmbedding``, ``HashedEmbedding`` and ``MixedDimEmbedding``, each row table held by a gather
layer of :mod:`tfcompress.quantization.table_storage` (float, int8 or int4 rows dequantized
after the gather, built-in TFLite ops). ``export_tflite(embeddings=...)`` swaps them in
(:mod:`tfcompress.export.tables`); each is registered for ``.keras`` files.

Example:
    >>> from tfcompress.embeddings.compositional import QREmbedding
    >>> twin = StoredQREmbedding.from_layer(QREmbedding(1000, 8, 100), ["float", "int8_row"])
    >>> twin.tables[1].table.dtype.name
    'int8'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._layers import IdLookup
from tfcompress._validation import check_choice, check_int, must_be
from tfcompress.embeddings.compositional import (
    COMBINES,
    HashedEmbedding,
    QREmbedding,
    hash_ids,
)
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding, RankMapMixin, check_dims
from tfcompress.quantization.table_storage import empty_table, fill_table, table_values

__all__ = [
    "HASH_PRIME",
    "StoredHashedEmbedding",
    "StoredMixedDimEmbedding",
    "StoredQREmbedding",
]

#: the prime of HashedEmbedding's hash ``((a * id + b) mod P) mod buckets`` (its docstring)
HASH_PRIME = 2**31 - 1


def _hash_constants(seed: int) -> tuple[int, int]:
    """``a``, ``b`` of HashedEmbedding's hash, read through its public ``hash_ids``."""
    b = int(hash_ids([0], HASH_PRIME, seed)[0])
    a = (int(hash_ids([1], HASH_PRIME, seed)[0]) - b) % HASH_PRIME
    return a, b


def _nonzero(ids: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    return tf.expand_dims(tf.cast(tf.not_equal(ids, 0), dtype), -1)


class _Stored(IdLookup):
    """Shared arguments, masking and config of the stored twins: ``storages`` (one per row
    table, in :attr:`tables` order) and ``integer_unpack``; the tables are not trainable."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        mask_zero: bool,
        storages: Sequence[str],
        integer_unpack: bool,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.where = f"{type(self).__name__} {self.name!r}"
        self.input_dim = check_int(input_dim, "input_dim", minimum=1, where=self.where)
        self.output_dim = check_int(output_dim, "output_dim", minimum=1, where=self.where)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.integer_unpack = bool(integer_unpack)
        self.storages = [str(s) for s in storages] if not isinstance(storages, str) else storages

    def _make_tables(self, shapes: list[tuple[int, int]], names: list[str]) -> None:
        if isinstance(self.storages, str) or len(self.storages) != len(shapes):
            raise ValueError(
                must_be(
                    "storages",
                    f"a list of {len(shapes)} storages, one per row table {names}",
                    self.storages,
                    f"e.g. {['int8_row'] * len(shapes)}.",
                    where=self.where,
                )
            )
        self.tables = [
            empty_table(rows, dim, s, name=n, integer_unpack=self.integer_unpack)
            for (rows, dim), s, n in zip(shapes, self.storages, names, strict=True)
        ]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "mask_zero": self.mask_zero,
            "storages": list(self.storages),
            "integer_unpack": self.integer_unpack,
        }


@keras.saving.register_keras_serializable(package="tfcompress")
class StoredQREmbedding(_Stored):
    """``QREmbedding`` whose quotient and remainder tables (``tables[0]``, ``tables[1]``) are
    gather layers in ``storages``: ``combine(Q[id // buckets], R[id % buckets])``, id 0 zeros.

    Args:
        input_dim, output_dim, buckets, combine, mask_zero: as ``QREmbedding``.
        storages: the storage of the quotient and of the remainder table
            (:data:`~tfcompress.quantization.table_storage.TABLE_STORAGES`).
        integer_unpack: int4 storages: unpack in int32 (the full-integer export modes).

    Example:
        >>> StoredQREmbedding(100, 4, 10, storages=["int4", "int4"])(tf.constant([[3]])).shape
        TensorShape([1, 1, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        buckets: int,
        combine: str = "mul",
        mask_zero: bool = False,
        storages: Sequence[str] = ("float", "float"),
        integer_unpack: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dim, output_dim, mask_zero, storages, integer_unpack, **kwargs)
        self.buckets = check_int(buckets, "buckets", minimum=1, where=self.where)
        self.combine = check_choice(combine, "combine", COMBINES, where=self.where)
        d = self.output_dim
        q_dim, r_dim = (d - d // 2, d // 2) if self.combine == "concat" else (d, d)
        quotient_rows = -(-self.input_dim // self.buckets)
        self._make_tables(
            [(quotient_rows, q_dim), (self.buckets, r_dim)], ["quotient", "remainder"]
        )

    @classmethod
    def from_layer(
        cls, layer: QREmbedding, storages: Sequence[str], *, integer_unpack: bool = False
    ) -> StoredQREmbedding:
        """The twin of ``layer`` holding its quotient and remainder tables in ``storages``."""
        new = cls(
            layer.input_dim,
            layer.output_dim,
            layer.buckets,
            layer.combine,
            layer.mask_zero,
            storages=storages,
            integer_unpack=integer_unpack,
            name=layer.name,
        )
        for table, values in zip(new.tables, (layer.quotient, layer.remainder), strict=True):
            fill_table(table, values.numpy())
        return new

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = inputs if inputs.dtype == tf.int32 else tf.cast(inputs, tf.int32)
        q = self.tables[0](tf.math.floordiv(ids, self.buckets))
        r = self.tables[1](tf.math.floormod(ids, self.buckets))
        if self.combine == "mul":
            out = q * r
        elif self.combine == "add":
            out = q + r
        else:
            out = tf.concat([q, r], axis=-1)
        return out * _nonzero(ids, out.dtype)

    def lookup(self, ids: Any) -> np.ndarray:
        """What the layer serves for ``ids``, computed in numpy from the stored tables."""
        ids = np.asarray(ids, np.int64)
        q = table_values(self.tables[0])[ids // self.buckets]
        r = table_values(self.tables[1])[ids % self.buckets]
        if self.combine == "concat":
            out = np.concatenate([q, r], axis=-1)
        else:
            out = q * r if self.combine == "mul" else q + r
        return out * (ids != 0)[..., None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "buckets": self.buckets, "combine": self.combine}


@keras.saving.register_keras_serializable(package="tfcompress")
class StoredHashedEmbedding(_Stored):
    """``HashedEmbedding`` whose table (``tables[0]``) is a gather layer in ``storages[0]``:
    ``T[((a * id + b) mod (2**31 - 1)) mod buckets]``, id 0 zeros.

    Args:
        input_dim, output_dim, buckets, seed, mask_zero: as ``HashedEmbedding``.
        storages: ``[storage]`` of the one table.
        integer_unpack: int4 storages: unpack in int32 (the full-integer export modes).

    Example:
        >>> StoredHashedEmbedding(10**6, 4, 100, storages=["int8_row"])(tf.constant([7])).shape
        TensorShape([1, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        buckets: int,
        seed: int = 0,
        mask_zero: bool = False,
        storages: Sequence[str] = ("float",),
        integer_unpack: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dim, output_dim, mask_zero, storages, integer_unpack, **kwargs)
        self.buckets = check_int(buckets, "buckets", minimum=1, where=self.where)
        self.seed = check_int(seed, "seed", minimum=0, where=self.where)
        self._make_tables([(self.buckets, self.output_dim)], ["table"])

    @classmethod
    def from_layer(
        cls, layer: HashedEmbedding, storages: Sequence[str], *, integer_unpack: bool = False
    ) -> StoredHashedEmbedding:
        """The twin of ``layer`` holding its table in ``storages[0]``."""
        new = cls(
            layer.input_dim,
            layer.output_dim,
            layer.buckets,
            layer.seed,
            layer.mask_zero,
            storages=storages,
            integer_unpack=integer_unpack,
            name=layer.name,
        )
        fill_table(new.tables[0], layer.table.numpy())
        return new

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        a, b = _hash_constants(self.seed)
        ids = tf.cast(inputs, tf.int64)  # a * id < 2**62: no overflow
        rows = tf.math.floormod(tf.math.floormod(ids * a + b, HASH_PRIME), self.buckets)
        out = self.tables[0](tf.cast(rows, tf.int32))
        return out * _nonzero(ids, out.dtype)

    def lookup(self, ids: Any) -> np.ndarray:
        """What the layer serves for ``ids``, computed in numpy from the stored table."""
        ids = np.asarray(ids, np.int64)
        out = table_values(self.tables[0])[hash_ids(ids, self.buckets, self.seed)]
        return out * (ids != 0)[..., None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "buckets": self.buckets, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfcompress")
class StoredMixedDimEmbedding(RankMapMixin, _Stored):
    """``MixedDimEmbedding`` whose block tables (``tables[k]``) are gather layers in
    ``storages``; the id -> rank map (stored as the float layer's, ``id_map``) and the
    projections stay weights of this layer.

    Block ``k``'s stored table holds its rows between zero rows (one before unless it is the
    first block, one after unless it is the last), as the inference path of
    ``MixedDimEmbedding`` pads them: an id outside the block reads a zero row (stored exactly
    zero in every storage), so the lookup is the same ``GATHER``s, one ``FULLY_CONNECTED``
    for the narrow blocks and an ``ADD_N``.

    Args:
        input_dim, output_dim, block_sizes, block_dims, mask_zero, id_map: as
            ``MixedDimEmbedding``.
        storages: one storage per block.
        integer_unpack: int4 storages: unpack in int32 (the full-integer export modes).

    Example:
        >>> layer = StoredMixedDimEmbedding(10, 4, [2, 8], [4, 1], storages=["float", "int4"])
        >>> layer(tf.constant([[1, 2]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        block_sizes: Sequence[int],
        block_dims: Sequence[int],
        mask_zero: bool = False,
        storages: Sequence[str] | None = None,
        integer_unpack: bool = False,
        id_map: str = "blocked",
        **kwargs: Any,
    ) -> None:
        storages = ["float"] * len(block_sizes) if storages is None else storages
        super().__init__(input_dim, output_dim, mask_zero, storages, integer_unpack, **kwargs)
        self.block_sizes = [
            check_int(n, f"block_sizes[{k}]", minimum=1, where=self.where)
            for k, n in enumerate(block_sizes)
        ]
        if sum(self.block_sizes) != self.input_dim:
            raise ValueError(
                f"{self.where}: `block_sizes` {self.block_sizes} must sum to input_dim="
                f"{self.input_dim}; pass MixedDimEmbedding's block_sizes."
            )
        self.block_dims = check_dims(
            list(block_dims), len(self.block_sizes), self.output_dim, self.where
        )
        self._add_rank_map(id_map, self.where)
        self.projections = [
            None
            if d == self.output_dim
            else self.add_weight(
                name=f"projection_{k}", shape=(d, self.output_dim), trainable=False
            )
            for k, d in enumerate(self.block_dims)
        ]
        last = len(self.block_sizes) - 1
        self._pads = [(int(k > 0), int(k < last)) for k in range(last + 1)]
        self._make_tables(
            [
                (n + before + after, d)
                for n, d, (before, after) in zip(
                    self.block_sizes, self.block_dims, self._pads, strict=True
                )
            ],
            [f"table_{k}" for k in range(last + 1)],
        )

    @classmethod
    def from_layer(
        cls, layer: MixedDimEmbedding, storages: Sequence[str], *, integer_unpack: bool = False
    ) -> StoredMixedDimEmbedding:
        """The twin of ``layer`` holding its block tables in ``storages`` (one per block)."""
        new = cls(
            layer.input_dim,
            layer.output_dim,
            layer.block_sizes,
            layer.block_dims,
            layer.mask_zero,
            storages=storages,
            integer_unpack=integer_unpack,
            id_map=layer.id_map,
            name=layer.name,
        )
        new.set_rank_map(layer.rank_map())
        for k, (table, (before, after)) in enumerate(zip(layer.tables, new._pads, strict=True)):
            rows = table.numpy()
            zero = np.zeros((1, rows.shape[1]), rows.dtype)
            fill_table(new.tables[k], np.concatenate([zero] * before + [rows] + [zero] * after))
            if new.projections[k] is not None:
                new.projections[k].assign(layer.projections[k].numpy())
        return new

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
        rank = self._ranks(ids)
        wide, narrow, matrix = [], [], []
        start = 0
        for k, n in enumerate(self.block_sizes):
            before, after = self._pads[k]
            local = rank - (start - before) if start - before else rank
            if before:  # ranks before the block land on the zero row before it
                local = tf.maximum(local, 0)
            if after:  # ranks after it on the zero row after it
                local = tf.minimum(local, n + before)
            rows = self.tables[k](local)
            start += n
            if self.projections[k] is None:
                wide.append(rows)
            else:
                narrow.append(rows)
                matrix.append(self.projections[k])
        if narrow:
            stacked = narrow[0] if len(narrow) == 1 else tf.concat(narrow, axis=-1)
            weights = matrix[0] if len(matrix) == 1 else tf.concat(matrix, axis=0)
            wide.append(tf.matmul(stacked, weights))  # one FULLY_CONNECTED in TFLite
        return wide[0] if len(wide) == 1 else tf.add_n(wide)

    def lookup(self, ids: Any) -> np.ndarray:
        """What the layer serves for ``ids``, computed in numpy from the stored tables."""
        parts = []
        for k, (before, after) in enumerate(self._pads):
            rows = table_values(self.tables[k])
            rows = rows[before : rows.shape[0] - after]
            projection = self.projections[k]
            parts.append(rows if projection is None else rows @ projection.numpy())
        dense = np.concatenate(parts)[self.rank_map()]
        return dense[np.asarray(ids, np.int64)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "block_sizes": list(self.block_sizes),
            "block_dims": list(self.block_dims),
            "id_map": self.id_map,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> StoredMixedDimEmbedding:
        # files saved before `id_map` existed hold the int32 `positions` weight
        return cls(**{"id_map": "int32", **config})
