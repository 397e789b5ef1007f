"""The compact int4 row format: 4-bit codes two a byte plus ONE byte of per-row parameters
(a code into a per-table 256-entry float32 scale codebook), so a 16-wide row takes 9 bytes
(7.1x smaller than float32) instead of 12 (:func:`quantize_rows_int4_compact`,
:func:`dequantize_rows_int4_compact`, :func:`int4_codebook`,
:func:`fake_quantize_rows_int4_compact`; the choices and measurements: docs/quantization.md,
"int4 rows").

Row ``r`` is quantized symmetrically: ``x ~ q * s`` with ``q`` in ``-7..7`` (an all-zero row
dequantizes to exactly 0) and ``s = codebook[c_r]``. The codebook is log-uniform between the
table's smallest nonzero and largest row scale ``max|x| / 7``; each row takes, among the
codebook entry just at or above its own scale and the 16 below it (clipping the row's extreme
for a finer step), the one with the least squared error. The codes are stored signed, two a
byte, split-half: int8 byte ``j`` of a row is ``q[j] + 16 * q[j + ceil(dim / 2)]``, so the
lookup unpacks it with ``high = round(byte / 16)``, ``low = byte - 16 * high`` (no bias to
subtract: why -7..7 and not -8..7, docs/quantization.md); the scale codes are a second uint8
``(rows,)`` array (two gathers measured faster in LiteRT than one fused row and a
``SPLIT``).

Everything is computed with TensorFlow ops, for the export and for the QAT fake quantization
alike, so the two agree bit for bit.

Example:
    >>> table = np.array([[0.0, 0.7, -0.6], [0.0, 0.0, 0.0]], "float32")
    >>> packed, scale_codes, codebook = quantize_rows_int4_compact(table)
    >>> packed.dtype.name, packed.shape, scale_codes.shape, codebook.shape
    ('int8', (2, 2), (2,), (256,))
    >>> restored = dequantize_rows_int4_compact(packed, scale_codes, codebook, 3)
    >>> [[round(float(v), 6) for v in row] for row in restored]
    [[0.0, 0.7, -0.6], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._keras import tf

__all__ = [
    "CODEBOOK_SIZE",
    "dequantize_rows_int4_compact",
    "fake_quantize_rows_int4_compact",
    "int4_codebook",
    "quantize_rows_int4_compact",
]

#: entries of a table's scale codebook (one uint8 code a row; 1 KiB of float32 a table)
CODEBOOK_SIZE = 256
#: codebook entries below a row's own scale it may take (clipping its extreme values)
SEARCH_BELOW = 16
_CHUNK = 65536  # rows quantized at a time (the search holds 17 candidates of each)


def _row_scale(table: tf.Tensor) -> tf.Tensor:
    """The smallest scale that codes row ``r`` in ``-7..7`` without clipping."""
    return tf.reduce_max(tf.abs(table), axis=1) / 7.0


def _check_table(table: Any, where: str) -> tf.Tensor:
    table = tf.convert_to_tensor(table, tf.float32)
    if table.shape.rank != 2:
        raise ValueError(f"{where}: `table` must be 2-D (rows, dim), received shape {table.shape}.")
    return table


def int4_codebook(table: Any) -> np.ndarray:
    """The 256 float32 scales of ``table``'s compact int4 rows, log-uniform between the
    smallest nonzero and the largest row scale ``max|x| / 7`` (all ones for an all-zero table).

    Example:
        >>> book = int4_codebook(np.array([[0.7, -0.1], [0.0, -7.0]], "float32"))
        >>> [round(float(v), 4) for v in (book[0], book[-1])]
        [0.1, 1.0]
    """
    return _codebook(_check_table(table, "int4_codebook")).numpy()


def _codebook(table: tf.Tensor) -> tf.Tensor:
    scale = tf.cast(_row_scale(table), tf.float64)
    positive = scale > 0.0
    lo = tf.math.log(tf.reduce_min(tf.where(positive, scale, np.inf)))
    hi = tf.math.log(tf.reduce_max(scale))
    steps = tf.range(CODEBOOK_SIZE, dtype=tf.float64) / float(CODEBOOK_SIZE - 1)
    book = tf.cast(tf.exp(lo + (hi - lo) * steps), tf.float32)
    # the top entry codes the largest row unclipped despite the float32 rounding of exp
    book = tf.concat([book[:-1], tf.cast(tf.exp(hi), tf.float32)[None]], 0)
    return tf.where(tf.reduce_any(positive), book, tf.ones_like(book))  # all-zero: ones


def _row_codes(rows: tf.Tensor, codebook: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per row: the codebook index of the least-squared-error scale and the codes ``-7..7``."""
    top = tf.searchsorted(codebook, _row_scale(rows), side="left")
    top = tf.minimum(top, CODEBOOK_SIZE - 1)
    candidates = tf.maximum(top[:, None] - tf.range(SEARCH_BELOW, -1, -1), 0)  # ascending
    scales = tf.gather(codebook, candidates)  # (rows, 17)
    q = tf.clip_by_value(tf.round(rows[:, None, :] / scales[..., None]), -7.0, 7.0)
    error = tf.reduce_sum(tf.square(q * scales[..., None] - rows[:, None, :]), axis=2)
    # the last minimum: among equal errors the largest (unclipped) scale
    best = SEARCH_BELOW - tf.argmin(tf.reverse(error, [1]), axis=1, output_type=tf.int32)
    index = tf.gather(candidates, best, batch_dims=1)
    codes = tf.gather(q, best, batch_dims=1)
    return index, codes


def quantize_rows_int4_compact(table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compact int4 quantization of a 2-D table: signed packed codes, a scale code per row and
    the table's scale codebook (see the module docstring).

    Args:
        table: a ``(rows, dim)`` float tensor or array (any ``dim >= 1``; odd widths get a
            zero pad code).

    Returns:
        ``(packed, scale_codes, codebook)``: int8 ``(rows, ceil(dim / 2))``, uint8 ``(rows,)``
        and float32 ``(256,)``.

    Raises:
        ValueError: ``table`` is not 2-D.

    Example:
        >>> packed, scale_codes, codebook = quantize_rows_int4_compact(np.ones((3, 16), "f4"))
        >>> packed.nbytes + scale_codes.nbytes  # 9 bytes a row, and the codebook's 1 KiB
        27
    """
    table = _check_table(table, "quantize_rows_int4_compact")
    codebook = _codebook(table)
    rows, dim = int(table.shape[0]), int(table.shape[1])
    half = (dim + 1) // 2
    packed = np.zeros((rows, half), np.int8)
    scale_codes = np.zeros((rows,), np.uint8)
    for start in range(0, rows, _CHUNK):
        index, codes = _row_codes(table[start : start + _CHUNK], codebook)
        q = codes.numpy().astype(np.int16)
        if dim % 2:
            q = np.pad(q, ((0, 0), (0, 1)))
        packed[start : start + _CHUNK] = q[:, :half] + 16 * q[:, half:]
        scale_codes[start : start + _CHUNK] = index.numpy()
    return packed, scale_codes, codebook.numpy()


def dequantize_rows_int4_compact(
    packed: Any, scale_codes: Any, codebook: Any, dim: int
) -> np.ndarray:
    """The float table ``(rows, dim)`` of compact rows: signed packed codes, their scale codes
    and the codebook (numpy).

    Example:
        >>> dequantize_rows_int4_compact(np.array([[23]], "int8"), [1], [1.0, 0.5], 2).tolist()
        [[3.5, 0.5]]
    """
    packed = np.asarray(packed, np.int8).astype(np.int16)
    codebook = np.asarray(codebook, np.float32)
    scales = codebook[np.asarray(scale_codes, np.uint8).reshape(-1).astype(np.int64)][:, None]
    high = (packed + 8) >> 4  # floor((b + 8) / 16): b = low + 16 * high, low in -7..7
    codes = np.concatenate([packed - 16 * high, high], axis=1)[:, :dim]
    return codes.astype(np.float32) * scales


def fake_quantize_rows_int4_compact(rows: tf.Tensor, codebook: tf.Tensor) -> tf.Tensor:
    """Compact int4 fake quantization of ``rows`` on a table's ``codebook``, with a
    straight-through gradient: the forward value is what the exported table serves for them.

    Example:
        >>> t = tf.constant([[0.0, 0.7, -0.8]])
        >>> book = tf.constant(int4_codebook(t))
        >>> [round(float(v), 3) for v in fake_quantize_rows_int4_compact(t, book).numpy()[0]]
        [0.0, 0.686, -0.8]
    """
    rows = tf.convert_to_tensor(rows, tf.float32)
    codebook = tf.convert_to_tensor(codebook, tf.float32)
    index, codes = _row_codes(tf.stop_gradient(rows), codebook)
    values = codes * tf.gather(codebook, index)[:, None]
    return rows + tf.stop_gradient(values - rows)


def codebook_of(table: tf.Tensor) -> tf.Tensor:
    """:func:`int4_codebook` as a tensor, without a gradient (for the QAT layer)."""
    return tf.stop_gradient(_codebook(tf.convert_to_tensor(table, tf.float32)))
