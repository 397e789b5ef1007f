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
from tfcompress._validation import check_int

__all__ = ["BLOCK", "BlockedIdRemap", "blocked_map_bytes", "encode_blocked"]

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
