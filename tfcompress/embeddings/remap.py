"""A one-byte-an-id remap of pruned vocabularies: :class:`BlockedIdRemap` (docs/embeddings.md,
"Rare-id pruning").

:func:`~tfcompress.embeddings.prune_vocabulary`'s mapping sends the kept ids, in id order, to
rows ``1..k`` (id 0 to row 0) and a pruned id to ``k + 1 + id % oov_buckets``. Inside a block
of 255 consecutive ids the kept ones therefore get consecutive rows, so the mapping is one
int32 base row per block plus, per id, its uint8 offset from that base (255 marks a pruned
id): ``1 + 4 / 255`` bytes an id instead of 4. A 2M-id table's map shrinks from 8.4 MB to 2.1 MB
and a pruned model's tables are no longer capped at ``64 / 4 = 16x`` of a 16-wide float table by
its own map. The lookup is TFLite builtins only: ``GATHER`` (offset), ``CAST``, ``FLOOR_DIV``,
``GATHER`` (base), ``ADD``, ``EQUAL``, ``SELECT_V2`` (and ``FLOOR_MOD`` with several OOV rows).

Example:
    >>> remap = BlockedIdRemap(6, oov_row=4)
    >>> remap.set_mapping(np.array([0, 1, 4, 2, 4, 3]))
    >>> remap(tf.constant([[5, 2, 3]])).numpy().tolist()
    [[3, 4, 2]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._validation import check_choice, check_int

__all__ = [
    "BLOCK",
    "ID_MAPS",
    "INT32_MAP_BYTES",
    "BlockedIdRemap",
    "RankMapMixin",
    "block_rank_bytes",
    "block_rank_chunk",
    "block_rank_lookup",
    "blocked_map_bytes",
    "canonical_block_ranks",
    "decode_block_ranks",
    "encode_block_ranks",
    "encode_blocked",
]

#: how a mixed-dimension table's id -> rank map is stored (:class:`RankMapMixin`): uint8 codes
#: + int32 bases (rows in id order inside each block), one int32 an id (any rank order; the
#: layout before the compact map), or not at all (``"none"``: the layer reads ranks, the map
#: lives beside the model, ``detach_vocabulary``)
ID_MAPS = ("blocked", "int32", "none")
INT32_MAP_BYTES = 4  # an int32 id map, per id
#: ids per block: offsets 0..254 and 255 for "pruned" fit a uint8
BLOCK = 255
_PRUNED = 255


def blocked_map_bytes(size: int) -> int:
    """Bytes of a :class:`BlockedIdRemap` of ``size`` ids: one a id plus 4 per block.

    Example:
        >>> blocked_map_bytes(1000)
        1016
    """
    return int(size) + 4 * (-(-int(size) // BLOCK))


def encode_blocked(
    mapping: Any, oov_row: int, oov_buckets: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, bases)`` of ``mapping`` (uint8 per id, int32 per block of :data:`BLOCK`).

    Raises:
        ValueError: ``mapping`` is not in ``prune_vocabulary``'s layout for ``oov_row`` and
            ``oov_buckets`` (a kept id's row off its block's run, a pruned id off its OOV row).

    Example:
        >>> offsets, bases = encode_blocked(np.array([0, 1, 3, 2]), oov_row=3)
        >>> offsets.tolist(), bases.tolist()
        ([0, 1, 255, 2], [0])
    """
    mapping = np.asarray(mapping, np.int64)
    ids = np.arange(mapping.shape[0])
    blocks = ids // BLOCK
    pruned = mapping >= oov_row
    bases = np.zeros(-(-ids.size // BLOCK), np.int64)
    kept_ids = ids[~pruned]  # increasing: the first of each block is its lowest
    if kept_ids.size:
        kept_blocks = blocks[kept_ids]
        firsts = np.r_[True, kept_blocks[1:] != kept_blocks[:-1]]
        bases[kept_blocks[firsts]] = mapping[kept_ids[firsts]]
    offsets = np.where(pruned, _PRUNED, mapping - bases[blocks])
    expected_oov = oov_row + ids % oov_buckets
    if (
        (offsets[~pruned] < 0).any()
        or (offsets[~pruned] >= _PRUNED).any()
        or (mapping[pruned] != expected_oov[pruned]).any()
    ):
        raise ValueError(
            "BlockedIdRemap: the mapping is not in prune_vocabulary's layout (kept ids on "
            f"consecutive rows in id order below row {oov_row}, pruned ids on row {oov_row} + "
            f"id % {oov_buckets}); use IdRemap for an arbitrary mapping."
        )
    return offsets.astype(np.uint8), bases.astype(np.int32)


@keras.saving.register_keras_serializable(package="tfcompress")
class BlockedIdRemap(keras.layers.Layer):
    """Map ids through ``prune_vocabulary``'s mapping stored as uint8 offsets and block bases.

    Args:
        size: number of ids the mapping covers (the original vocabulary size).
        oov_row: the first OOV row (``k + 1`` for ``k`` kept ids).
        oov_buckets: OOV rows (a pruned id goes to ``oov_row + id % oov_buckets``).

    Example:
        >>> BlockedIdRemap(1000, oov_row=10).offsets.shape
        TensorShape([1000])
    """

    def __init__(self, size: int, oov_row: int, oov_buckets: int = 1, **kwargs: Any) -> None:
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        where = f"BlockedIdRemap {self.name!r}"
        self.size = check_int(size, "size", minimum=1, where=where)
        self.oov_row = check_int(oov_row, "oov_row", minimum=1, where=where)
        self.oov_buckets = check_int(oov_buckets, "oov_buckets", minimum=1, where=where)
        self.offsets = self.add_weight(
            name="offsets", shape=(self.size,), dtype="uint8", initializer="zeros", trainable=False
        )
        self.bases = self.add_weight(
            name="bases",
            shape=(-(-self.size // BLOCK),),
            dtype="int32",
            initializer="zeros",
            trainable=False,
        )

    def set_mapping(self, mapping: Any) -> None:
        """Encode and assign ``mapping`` (``size`` rows, ``prune_vocabulary``'s layout)."""
        mapping = np.asarray(mapping)
        if mapping.shape != (self.size,) or (mapping.size and mapping.min() < 0):
            raise ValueError(
                f"BlockedIdRemap {self.name!r}: `mapping` must hold {self.size} non-negative "
                f"rows, received shape {mapping.shape}."
            )
        offsets, bases = encode_blocked(mapping, self.oov_row, self.oov_buckets)
        self.offsets.assign(offsets)
        self.bases.assign(bases)

    def mapping(self) -> np.ndarray:
        """The int32 mapping this layer computes (``mapping[id]`` = row)."""
        ids = np.arange(self.size)
        offsets = self.offsets.numpy().astype(np.int64)
        kept = self.bases.numpy()[ids // BLOCK] + offsets
        oov = self.oov_row + ids % self.oov_buckets
        return np.where(offsets == _PRUNED, oov, kept).astype(np.int32)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = inputs if inputs.dtype == tf.int32 else tf.cast(inputs, tf.int32)
        offsets = tf.cast(tf.gather(self.offsets, ids), tf.int32)
        kept = tf.gather(self.bases, tf.math.floordiv(ids, BLOCK)) + offsets
        oov = tf.constant(self.oov_row, tf.int32)
        if self.oov_buckets > 1:
            oov = oov + tf.math.floormod(ids, self.oov_buckets)
        return tf.where(tf.equal(offsets, _PRUNED), oov, kept)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "size": self.size,
            "oov_row": self.oov_row,
            "oov_buckets": self.oov_buckets,
        }


# --------------------------------------------------------------------------- block ranks


def block_rank_chunk(n_blocks: int) -> int:
    """Ids per chunk of a block-rank map of ``n_blocks`` blocks: ``256 // n_blocks``, so one
    uint8 code holds the block and the id's offset inside its block's run in the chunk.

    Example:
        >>> block_rank_chunk(3)
        85
    """
    return 256 // int(n_blocks)


def block_rank_bytes(size: int, n_blocks: int) -> int:
    """Bytes of a block-rank map (:func:`encode_block_ranks`) of ``size`` ids.

    One uint8 code an id plus one int32 base per block per chunk of ``256 // n_blocks`` ids.

    Example:
        >>> block_rank_bytes(100_000, 3)  # against 400,000 for an int32 map
        114124
    """
    chunks = -(-int(size) // block_rank_chunk(n_blocks))
    return int(size) + 4 * int(n_blocks) * chunks


def canonical_block_ranks(block_of: Any, sizes: Any) -> np.ndarray:
    """Ranks of a frequency-block layout whose rows inside each block are in id order.

    Args:
        block_of: the block of each id (``0..len(sizes) - 1``).
        sizes: ids per block.

    Returns:
        int32 ``ranks[id]``: ``sum(sizes[:k])`` plus the number of lower ids in the id's block
        ``k``: the only rank order a block-rank map (:func:`encode_block_ranks`) stores.

    Example:
        >>> canonical_block_ranks(np.array([1, 0, 1, 0]), [2, 2]).tolist()
        [2, 0, 3, 1]
    """
    block_of = np.asarray(block_of, np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    ranks = np.empty(block_of.size, np.int64)
    for k, start in enumerate(starts):
        members = np.flatnonzero(block_of == k)  # increasing ids
        ranks[members] = start + np.arange(members.size)
    return ranks.astype(np.int32)


def encode_block_ranks(positions: Any, sizes: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, bases)`` of an id -> rank map whose blocks hold their ids in id order.

    The ids are cut into chunks of ``C = 256 // len(sizes)``. Inside a chunk the ids of block
    ``k`` sit on consecutive ranks (a run), so an id's rank is its run's first rank (a base,
    int32 per chunk and block) plus its offset in the run (< C). The uint8 code of an id is
    ``k * C + offset``; ``bases[chunk * K + k]`` holds the run's first rank minus ``k * C``, so
    ``rank = bases[(id // C) * K + code // C] + code`` (:func:`block_rank_lookup`).

    Args:
        positions: ``positions[id]`` the id's rank, a permutation in the layout
            :func:`canonical_block_ranks` gives.
        sizes: ids per block (most frequent first).

    Returns:
        uint8 codes (one an id) and int32 bases (``len(sizes)`` per chunk).

    Raises:
        ValueError: ``positions`` is not the canonical layout of ``sizes``.

    Example:
        >>> codes, bases = encode_block_ranks(np.array([2, 0, 3, 1]), [2, 2])
        >>> codes.tolist(), bases.tolist()
        ([128, 0, 129, 1], [0, -126])
    """
    positions = np.asarray(positions, np.int64)
    sizes = [int(n) for n in sizes]
    n_blocks = len(sizes)
    chunk = block_rank_chunk(n_blocks)
    ends = np.cumsum(sizes)
    block_of = np.searchsorted(ends, positions, side="right")
    if (
        positions.ndim != 1
        or positions.size != int(ends[-1])
        or (positions < 0).any()
        or (positions >= ends[-1]).any()
        or not np.array_equal(positions, canonical_block_ranks(block_of, sizes))
    ):
        raise ValueError(
            f"encode_block_ranks: the id -> rank map (shape {positions.shape}) is not a "
            f"permutation of {int(ends[-1])} ranks holding each block's ids in id order; "
            "reorder it with canonical_block_ranks (and the block rows with it), or keep an "
            "int32 map (MixedDimEmbedding(..., id_map='int32'))."
        )
    ids = np.arange(positions.size)
    n_chunks = -(-positions.size // chunk)
    first_ids = np.minimum(np.arange(n_chunks) * chunk, positions.size - 1)
    bases = np.empty((n_chunks, n_blocks), np.int64)
    starts = ends - np.asarray(sizes)
    for k in range(n_blocks):
        before = np.cumsum(block_of == k) - (block_of == k)  # block-k ids below each id
        bases[:, k] = starts[k] + before[first_ids] - k * chunk
    offsets = positions - (bases[ids // chunk, block_of] + block_of * chunk)
    codes = block_of * chunk + offsets
    return codes.astype(np.uint8), bases.reshape(-1).astype(np.int32)


def decode_block_ranks(codes: Any, bases: Any, n_blocks: int) -> np.ndarray:
    """The int32 id -> rank map stored as :func:`encode_block_ranks`' ``(codes, bases)``.

    Example:
        >>> decode_block_ranks(np.array([128, 0, 129, 1]), np.array([0, -126]), 2).tolist()
        [2, 0, 3, 1]
    """
    codes = np.asarray(codes, np.int64)
    chunk = block_rank_chunk(n_blocks)
    slots = np.arange(codes.size) // chunk * n_blocks + codes // chunk
    return (np.asarray(bases, np.int64)[slots] + codes).astype(np.int32)


def block_rank_lookup(ids: tf.Tensor, codes: Any, bases: Any, n_blocks: int) -> tf.Tensor:
    """The ranks of int32 ``ids`` in a block-rank map: TFLite ``GATHER`` (code), ``CAST``,
    two ``FLOOR_DIV``, ``MUL``, ``ADD``, ``GATHER`` (base), ``ADD``; built-ins only.

    Example:
        >>> block_rank_lookup(tf.constant([0, 2]), tf.constant([128, 0, 129, 1], tf.uint8),
        ...                   tf.constant([0, -126]), 2).numpy().tolist()
        [2, 3]
    """
    chunk = block_rank_chunk(n_blocks)
    code = tf.cast(tf.gather(codes, ids), tf.int32)
    slot = tf.math.floordiv(ids, chunk) * n_blocks + tf.math.floordiv(code, chunk)
    return tf.gather(bases, slot) + code


class RankMapMixin:
    """The id -> rank map of the mixed-dimension layers (``MixedDimEmbedding`` and its stored
    twin): ``id_map="blocked"`` holds ``rank_codes`` (uint8, one an id) and ``rank_bases``
    (int32) and requires each block's ids on consecutive ranks in id order;
    ``id_map="int32"`` holds ``positions`` (int32, one an id, any permutation);
    ``id_map="none"`` holds nothing: the layer takes ranks (the identity map).

    Example:
        >>> from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
        >>> MixedDimEmbedding(10, 4, [2, 8], [4, 1]).rank_map().tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    input_dim: int
    block_sizes: list[int]
    id_map: str
    name: str

    def _add_rank_map(self, id_map: str, where: str) -> None:
        self.id_map = check_choice(id_map, "id_map", ID_MAPS, where=where)
        identity = np.arange(self.input_dim)
        if self.id_map == "none":
            return
        if self.id_map == "int32":
            self.positions = self.add_weight(  # type: ignore[attr-defined]
                name="positions",
                shape=(self.input_dim,),
                dtype="int32",
                initializer=keras.initializers.Constant(identity),
                trainable=False,
            )
            return
        codes, bases = encode_block_ranks(identity, self.block_sizes)
        self.rank_codes = self.add_weight(  # type: ignore[attr-defined]
            name="rank_codes",
            shape=codes.shape,
            dtype="uint8",
            initializer=keras.initializers.Constant(codes),
            trainable=False,
        )
        self.rank_bases = self.add_weight(  # type: ignore[attr-defined]
            name="rank_bases",
            shape=bases.shape,
            dtype="int32",
            initializer=keras.initializers.Constant(bases),
            trainable=False,
        )

    def rank_map(self) -> np.ndarray:
        """The int32 id -> rank map (``rank_map()[id]``: the id's row in the concatenated
        blocks)."""
        if self.id_map == "none":
            return np.arange(self.input_dim, dtype=np.int32)
        if self.id_map == "int32":
            return self.positions.numpy()
        return decode_block_ranks(
            self.rank_codes.numpy(), self.rank_bases.numpy(), len(self.block_sizes)
        )

    def set_rank_map(self, positions: Any) -> None:
        """Assign the id -> rank map (a permutation of ``input_dim`` ranks).

        Raises:
            ValueError: ``positions`` has the wrong shape, or (``id_map="blocked"``) does not
                hold each block's ids in id order (:func:`canonical_block_ranks`).
        """
        positions = np.asarray(positions)
        if positions.shape != (self.input_dim,):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: the id -> rank map must have shape "
                f"({self.input_dim},), received {positions.shape}."
            )
        if self.id_map == "none":
            if not np.array_equal(positions, np.arange(self.input_dim)):
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: with id_map='none' the layer reads "
                    "ranks (the identity map); map the ids beside the model, or pass "
                    "id_map='blocked'."
                )
            return
        if self.id_map == "int32":
            self.positions.assign(positions.astype(np.int32))
            return
        try:
            codes, bases = encode_block_ranks(positions, self.block_sizes)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__} {self.name!r}: {err}") from None
        self.rank_codes.assign(codes)
        self.rank_bases.assign(bases)

    def map_bytes(self) -> int:
        """Bytes of the stored id -> rank map."""
        if self.id_map == "none":
            return 0
        if self.id_map == "int32":
            return INT32_MAP_BYTES * self.input_dim
        return block_rank_bytes(self.input_dim, len(self.block_sizes))

    def _ranks(self, ids: tf.Tensor) -> tf.Tensor:
        if self.id_map == "none":
            return ids
        if self.id_map == "int32":
            return tf.gather(self.positions, ids)
        return block_rank_lookup(ids, self.rank_codes, self.rank_bases, len(self.block_sizes))
