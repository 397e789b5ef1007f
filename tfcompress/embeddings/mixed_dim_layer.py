"""The mixed-dimension table layer and its building blocks: :class:`MixedDimEmbedding`,
:func:`frequency_blocks`, :func:`svd_init` (the model rewrite:
:mod:`tfcompress.embeddings.mixed_dim`; choices and measurements: docs/embeddings.md).

Ids are ranked by how often they occur (most frequent first, ties by id) and cut into blocks,
e.g. the popular 1%, the next 9% and the rest. Block ``k`` has its own table of width ``d_k``
(popular ids wide, rare ids narrow) and a projection ``d_k -> d`` to the common width (none for a
full-width block). Inside a block the rows are in id order, so the id -> rank map is one uint8
code an id plus an int32 base per block per chunk of ``256 // blocks`` ids (~1.14 bytes an id
for 3 blocks instead of an int32's 4; :func:`tfcompress.embeddings.remap.encode_block_ranks`);
``id_map="int32"`` keeps the earlier int32 map of any rank order (and old ``.keras`` files load
with it). Each block gathers
its row at the local index clamped onto zero rows padding the block's table (ids outside the
block read a zero row), the narrow blocks' rows are concatenated and projected by one matrix
product, and the full-width rows added. In training the rows are gathered from the unpadded
table and multiplied by an in-block mask instead, so the updates stay sparse rows of the block.

Example:
    >>> positions, sizes = frequency_blocks(np.array([0, 5, 9, 1]), [1, 1, 2])
    >>> positions.tolist(), sizes
    ([3, 1, 0, 2], [1, 1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._layers import IdLookup
from tfcompress._validation import check_float, check_int, must_be
from tfcompress.embeddings.remap import (
    ID_MAPS,
    INT32_MAP_BYTES,
    RankMapMixin,
    block_rank_bytes,
    canonical_block_ranks,
)

__all__ = [
    "DEFAULT_BLOCKS",
    "ID_MAPS",
    "MixedDimEmbedding",
    "RankMapMixin",
    "resolve_block_sizes",
    "check_dims",
    "dims_for_budget",
    "frequency_blocks",
    "layout_bytes",
    "svd_init",
]

#: the default blocks: the most frequent 1% of the ids, the next 9%, the other 90%
DEFAULT_BLOCKS = (0.01, 0.09, 0.90)


# --------------------------------------------------------------------------- blocks and widths


def resolve_block_sizes(blocks: Any, rows: int, where: str) -> list[int]:
    """Rows per block of a ``rows``-id table: ``blocks`` holds fractions or row counts.

    Args:
        blocks: fractions summing to 1 (each block gets at least one row) or row counts
            summing to ``rows``.
        rows: the vocabulary size.
        where: who asks (prefixed to error messages), e.g. ``"MixedDimEmbedding 'emb'"``.

    Returns:
        The rows per block, most frequent block first.

    Raises:
        ValueError: ``blocks`` do not cover the vocabulary, or hold a block of no rows.

    Example:
        >>> resolve_block_sizes((0.01, 0.09, 0.9), 1000, "demo")
        [10, 90, 900]
    """
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or not blocks:
        raise ValueError(
            must_be(
                "blocks",
                "a non-empty list of fractions summing to 1 or of row counts summing to the "
                "vocabulary size",
                blocks,
                "e.g. blocks=(0.01, 0.09, 0.9).",
                where=where,
            )
        )
    ints = all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in blocks)
    if ints:
        sizes = [int(b) for b in blocks]
        if min(sizes) < 1 or sum(sizes) != rows:
            raise ValueError(
                f"{where}: `blocks` row counts {sizes} must be >= 1 each and cover the "
                f"vocabulary: they sum to {sum(sizes)}, the table has {rows} rows; pass counts "
                f"summing to {rows} or fractions summing to 1."
            )
        return sizes
    fracs = [
        check_float(b, f"blocks[{i}]", minimum=0.0, min_open=True) for i, b in enumerate(blocks)
    ]
    if abs(sum(fracs) - 1.0) > 1e-6:
        raise ValueError(
            f"{where}: `blocks` fractions {list(blocks)} must cover the vocabulary (sum to 1), "
            f"they sum to {sum(fracs):.6g}; e.g. blocks=(0.01, 0.09, 0.9)."
        )
    if rows < len(fracs):
        raise ValueError(
            f"{where}: {len(fracs)} blocks need at least {len(fracs)} rows, the table has "
            f"{rows}; pass fewer blocks."
        )
    bounds = np.rint(np.cumsum(fracs) * rows).astype(int)
    bounds[-1] = rows
    for i in range(len(bounds)):  # every block at least one row
        low = (bounds[i - 1] if i else 0) + 1
        bounds[i] = min(max(bounds[i], low), rows - (len(bounds) - 1 - i))
    return np.diff(np.concatenate([[0], bounds])).astype(int).tolist()


def frequency_blocks(counts: Any, blocks: Any = DEFAULT_BLOCKS) -> tuple[np.ndarray, list[int]]:
    """Rank ids by frequency and cut the ranking into blocks.

    Args:
        counts: occurrences per id (as :func:`tfcompress.embeddings.count_ids` returns).
        blocks: fractions of the ids per block (summing to 1, most frequent first) or rows per
            block (summing to ``len(counts)``). Fractions round to at least one row a block.

    Returns:
        ``(positions, sizes)``: ``positions[id]`` the id's rank (0 = most frequent; ties in id
        order), so id ``i`` lies in block ``k`` at row ``positions[i] - sum(sizes[:k])``; and
        the rows per block.

    Raises:
        ValueError: ``counts`` is not 1-D or holds negative values; ``blocks`` do not cover the
            vocabulary.

    Example:
        >>> frequency_blocks(np.array([3, 0, 7, 1]), (0.5, 0.5))[0].tolist()
        [1, 3, 0, 2]
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.number):
        raise ValueError(
            f"frequency_blocks: `counts` must be a non-empty 1-D array of counts per id, "
            f"received shape {counts.shape}; pass count_ids(model, data)[table]."
        )
    if (counts < 0).any():
        raise ValueError("frequency_blocks: `counts` holds negative values; pass id counts.")
    order = np.argsort(-counts.astype(np.float64), kind="stable")
    positions = np.empty(counts.size, np.int32)
    positions[order] = np.arange(counts.size, dtype=np.int32)
    return positions, resolve_block_sizes(blocks, counts.size, "frequency_blocks")


def check_dims(dims: Any, n_blocks: int, width: int, where: str) -> list[int]:
    """Return ``dims`` as ints if they are ``n_blocks`` non-increasing widths in ``[1, width]``.

    Example:
        >>> check_dims((16, 4, 1), 3, 16, "demo")
        [16, 4, 1]
    """
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise ValueError(must_be("dims", "a list of widths, one per block", dims, where=where))
    out = [check_int(d, f"dims[{i}]", minimum=1, where=where) for i, d in enumerate(dims)]
    if len(out) != n_blocks:
        raise ValueError(
            f"{where}: `dims` {out} has {len(out)} widths for {n_blocks} blocks; pass one "
            "width per block."
        )
    if max(out) > width or any(b > a for a, b in pairwise(out)):
        raise ValueError(
            f"{where}: `dims` {out} must be non-increasing (popular blocks widest) and at most "
            f"the table width {width}; e.g. dims=({width}, {max(width // 4, 1)}, "
            f"{max(width // 16, 1)})."
        )
    return out


def layout_bytes(
    sizes: Sequence[int],
    dims: Sequence[int],
    width: int,
    itemsize: int,
    id_map: str = "blocked",
) -> int:
    """Bytes of a mixed layout: block rows, projections of the narrow blocks, the id map.

    Example:
        >>> layout_bytes([10, 90], [8, 2], 8, 4, "int32")  # (80 + 180 + 16) * 4 + 100 * 4
        1504
        >>> layout_bytes([10, 90], [8, 2], 8, 4)  # a uint8 code an id + 2 int32 bases
        1212
    """
    rows = sum(n * d for n, d in zip(sizes, dims, strict=True))
    projections = sum(d * width for d in dims if d < width)
    index = INT32_MAP_BYTES * sum(sizes) if id_map == "int32" else 0  # "none": no map
    if id_map == "blocked":
        index = block_rank_bytes(sum(sizes), len(sizes))
    return (rows + projections) * itemsize + index


def dims_for_budget(
    counts: np.ndarray,
    sizes: list[int],
    width: int,
    budget: float,
    table: str,
) -> list[int]:
    """Widths per block for a byte ``budget`` (a fraction of the float32 table's bytes).

    Ginart's power rule ``d_k = d * (f_k / f_0) ** alpha`` (``f_k`` the mean count of block
    ``k``, widths floored, at least 1), with the smallest ``alpha`` whose layout fits.

    Args:
        counts: occurrences per id.
        sizes: rows per block (most frequent first).
        width: the table width ``d``.
        budget: the fraction of ``rows * d * 4`` bytes to fit, in (0, 1].
        table: the table's name, for messages.

    Returns:
        One width per block, non-increasing, the first ``width``.

    Raises:
        ValueError: no id was counted, or even widths ``(d, 1, ..., 1)`` exceed the budget.

    Example:
        >>> dims_for_budget(np.arange(1000)[::-1], [10, 90, 900], 16, 0.25, "demo")
        [16, 14, 2]
    """
    ranked = np.sort(counts.astype(np.float64))[::-1]
    bounds = np.cumsum([0, *sizes])
    freq = np.array([ranked[a:b].mean() for a, b in pairwise(bounds)])
    if freq[0] <= 0:
        raise ValueError(
            f"mixed_dimension_embeddings: table {table!r} has no counted id (all counts 0): "
            "`budget` sizes blocks by frequency; count ids on data first (count_ids)."
        )
    target = budget * len(counts) * width * 4

    def widths(alpha: float) -> list[int]:
        ratio = np.where(freq > 0, freq / freq[0], 0.0) ** alpha
        return [int(v) for v in np.clip(np.floor(width * ratio), 1, width)]

    narrowest = [width] + [1] * (len(sizes) - 1)
    if layout_bytes(sizes, narrowest, width, 4) > target:
        least = layout_bytes(sizes, narrowest, width, 4) / (len(counts) * width * 4)
        raise ValueError(
            f"mixed_dimension_embeddings: table {table!r} cannot fit `budget`={budget}: with the "
            f"blocks {sizes} the smallest layout (widths {narrowest}) takes {least:.3f} of the "
            "float bytes; raise `budget` or make the first block smaller."
        )
    lo, hi = 0.0, 64.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if layout_bytes(sizes, widths(mid), width, 4) <= target:
            hi = mid
        else:
            lo = mid
    dims = widths(hi)
    return dims if layout_bytes(sizes, dims, width, 4) <= target else narrowest


# --------------------------------------------------------------------------- initialisation


def svd_init(rows: Any, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The rank-``width`` truncated SVD of ``rows``: ``rows ~ table @ projection``.

    Args:
        rows: a ``(n, d)`` float array (a block's trained rows).
        width: the block's width ``d_k`` (1..d).

    Returns:
        ``(table, projection)`` of shapes ``(n, width)`` and ``(width, d)``: ``U_k S_k`` and
        ``V_k^T`` (the best rank-``width`` approximation in the Frobenius norm). Columns beyond
        the rank of ``rows`` are zero.

    Example:
        >>> t, p = svd_init(np.eye(3, dtype="float32"), 2)
        >>> t.shape, p.shape
        ((3, 2), (2, 3))
    """
    rows = np.asarray(rows, np.float64)
    n, d = rows.shape
    u, s, vt = np.linalg.svd(rows, full_matrices=False)
    k = min(width, len(s))
    table = np.zeros((n, width), np.float32)
    projection = np.zeros((width, d), np.float32)
    table[:, :k] = u[:, :k] * s[:k]
    projection[:k] = vt[:k]
    return table, projection


# --------------------------------------------------------------------------- the layer


@keras.saving.register_keras_serializable(package="tfcompress")
class MixedDimEmbedding(RankMapMixin, IdLookup):
    """An ``Embedding`` whose ids are split into frequency blocks of their own widths.

    Weights: the id -> rank map (not trainable; :class:`RankMapMixin`: ``rank_codes`` and
    ``rank_bases``, or ``positions`` with ``id_map="int32"``); ``table_k``
    ``(block_sizes[k], block_dims[k])`` per block; ``projection_k`` ``(block_dims[k],
    output_dim)`` for each block narrower than ``output_dim``. Inference (and TFLite, built-in
    ops only: ``GATHER``, ``SUB``, ``MAXIMUM``, ``MINIMUM``, ``CONCATENATION``,
    ``FULLY_CONNECTED``, ``ADD_N``) gathers the rank, then in each block the row at the local
    index clamped onto the zero rows that pad the block's table (folded to a constant by the
    converter); training gathers from the unpadded table and multiplies by an in-block mask
    (the same values; gradients stay sparse row updates of the block).
    Build one from a trained ``Embedding`` with :meth:`from_embedding`, or for a whole model
    with :func:`mixed_dimension_embeddings`.

    Args:
        input_dim: vocabulary size.
        output_dim: the common width.
        block_sizes: rows per block (most frequent first), summing to ``input_dim``.
        block_dims: width per block, non-increasing, each in ``[1, output_dim]``.
        mask_zero: like ``Embedding(mask_zero=True)``: id 0 is padding and masked.
        id_map: ``"blocked"`` (default: ~1 byte an id, each block's rows in id order),
            ``"int32"`` (4 bytes an id, any order; the layout of files saved before
            ``id_map`` existed, which load with it) or ``"none"`` (the layer takes ranks:
            the map lives beside the model, ``detach_vocabulary``).

    Example:
        >>> layer = MixedDimEmbedding(10, 4, [2, 8], [4, 1])
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
        id_map: str = "blocked",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"MixedDimEmbedding {self.name!r}"
        self.input_dim = check_int(input_dim, "input_dim", minimum=1, where=where)
        self.output_dim = check_int(output_dim, "output_dim", minimum=1, where=where)
        self.block_sizes = resolve_block_sizes(list(block_sizes), self.input_dim, where)
        self.block_dims = check_dims(list(block_dims), len(self.block_sizes), output_dim, where)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self._add_rank_map(id_map, where)
        self.tables: list[tf.Variable] = []
        self.projections: list[tf.Variable | None] = []
        for k, (n, d) in enumerate(zip(self.block_sizes, self.block_dims, strict=True)):
            self.tables.append(
                self.add_weight(name=f"table_{k}", shape=(n, d), initializer="uniform")
            )
            self.projections.append(
                None
                if d == self.output_dim
                else self.add_weight(
                    name=f"projection_{k}", shape=(d, self.output_dim), initializer="glorot_uniform"
                )
            )

    @classmethod
    def from_embedding(
        cls,
        layer: keras.layers.Embedding,
        counts: Any,
        blocks: Any,
        dims: Sequence[int],
        *,
        name: str | None = None,
        id_map: str = "blocked",
    ) -> MixedDimEmbedding:
        """A ``MixedDimEmbedding`` initialised from ``layer``'s trained table.

        Full-width blocks copy their rows; a narrow block's rows and projection are the
        truncated SVD of its trained rows (:func:`svd_init`). Rows inside a block are in id
        order (``id_map="blocked"``) or in frequency order (``"int32"``).

        Args:
            layer: a built ``keras.layers.Embedding``.
            counts: occurrences per id (length ``layer.input_dim``).
            blocks: see :func:`frequency_blocks`.
            dims: width per block.
            name: the new layer's name (default: ``layer.name``).
            id_map: how the id -> rank map is stored (:data:`ID_MAPS`).

        Example:
            >>> emb = keras.layers.Embedding(8, 4)
            >>> emb.build((None, 1))
            >>> list(MixedDimEmbedding.from_embedding(emb, np.arange(8), [2, 6], [4, 1]).block_dims)
            [4, 1]
        """
        counts = np.asarray(counts)
        if counts.shape != (layer.input_dim,):
            raise ValueError(
                f"MixedDimEmbedding.from_embedding: `counts` for Embedding {layer.name!r} must "
                f"have one entry per id, shape ({layer.input_dim},), received {counts.shape}; "
                "pass count_ids(model, data)[table]."
            )
        positions, sizes = frequency_blocks(counts, blocks)
        new = cls(
            layer.input_dim,
            layer.output_dim,
            sizes,
            dims,
            mask_zero=bool(layer.mask_zero),
            id_map=id_map,
            name=name or layer.name,
        )
        if new.id_map == "blocked":  # same blocks, each block's ids in id order
            positions = canonical_block_ranks(
                np.searchsorted(np.cumsum(sizes), positions, side="right"), sizes
            )
        trained = np.asarray(layer.embeddings.numpy(), np.float32)
        ranked = np.empty_like(trained)
        ranked[positions] = trained  # row r: the id of rank r
        new.set_rank_map(positions)
        start = 0
        for k, (n, d) in enumerate(zip(new.block_sizes, new.block_dims, strict=True)):
            rows = ranked[start : start + n]
            start += n
            if new.projections[k] is None:
                new.tables[k].assign(rows)
            else:
                table, projection = svd_init(rows, d)
                new.tables[k].assign(table)
                new.projections[k].assign(projection)
        return new

    def table_bytes(self) -> int:
        """Bytes of the tables, projections and the id -> rank map."""
        itemsize = tf.as_dtype(self.dtype).size
        return layout_bytes(
            self.block_sizes, self.block_dims, self.output_dim, itemsize, self.id_map
        )

    def dense_table(self) -> np.ndarray:
        """The ``(input_dim, output_dim)`` float table this layer represents (numpy)."""
        parts = []
        for table, projection in zip(self.tables, self.projections, strict=True):
            rows = table.numpy()
            parts.append(rows if projection is None else rows @ projection.numpy())
        return np.concatenate(parts)[self.rank_map()]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
        rank = self._ranks(ids)
        last = len(self.block_sizes) - 1
        rows = []
        start = 0
        for k, n in enumerate(self.block_sizes):
            if training or last == 0:
                rows.append(self._masked_rows(k, rank, start, n, last))
            else:
                rows.append(self._padded_rows(k, rank, start, n, last))
            start += n
        wide = [r for r, p in zip(rows, self.projections, strict=True) if p is None]
        narrow = [r for r, p in zip(rows, self.projections, strict=True) if p is not None]
        if narrow:
            matrix = [p for p in self.projections if p is not None]
            stacked = narrow[0] if len(narrow) == 1 else tf.concat(narrow, axis=-1)
            matrix = matrix[0] if len(matrix) == 1 else tf.concat(matrix, axis=0)
            # one FULLY_CONNECTED in TFLite for every narrow block
            wide.append(tf.matmul(stacked, matrix))
        return wide[0] if len(wide) == 1 else tf.add_n(wide)

    def _masked_rows(self, k: int, rank: tf.Tensor, start: int, n: int, last: int) -> tf.Tensor:
        """Training: the row at the clamped index, times 0 outside the block (sparse updates
        of the block's own rows only)."""
        local = rank - start if start else rank
        clamped = tf.maximum(local, 0) if k > 0 else local
        clamped = tf.minimum(clamped, n - 1) if k < last else clamped
        rows = tf.gather(self.tables[k], clamped)
        if last == 0:
            return rows
        inside = tf.cast(tf.equal(local, clamped), rows.dtype)
        return rows * tf.expand_dims(inside, -1)

    def _padded_rows(self, k: int, rank: tf.Tensor, start: int, n: int, last: int) -> tf.Tensor:
        """Inference: the table with zero rows around it (a constant in TFLite), the index
        clamped onto them outside the block: no mask ops."""
        table = self.tables[k]
        zero = tf.zeros((1, self.block_dims[k]), table.dtype)
        if k == 0:  # ranks >= n land on the zero row after the block
            return tf.gather(tf.concat([table, zero], 0), tf.minimum(rank, n))
        local = tf.maximum(rank - (start - 1), 0)  # ranks before the block land on row 0
        if k < last:
            return tf.gather(tf.concat([zero, table, zero], 0), tf.minimum(local, n + 1))
        return tf.gather(tf.concat([zero, table], 0), local)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "block_sizes": list(self.block_sizes),
            "block_dims": list(self.block_dims),
            "mask_zero": self.mask_zero,
            "id_map": self.id_map,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MixedDimEmbedding:
        # files saved before `id_map` existed hold the int32 `positions` weight
        return cls(**{"id_map": "int32", **config})
