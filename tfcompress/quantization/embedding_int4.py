"""Embedding tables as int4 rows, two codes a byte, with a per-row scale and offset:
:class:`QuantizedEmbedding4`, :func:`quantize_rows_int4`, :func:`dequantize_rows_int4`,
:func:`fake_quantize_rows_int4` (the choices and measurements: docs/quantization.md).

Row ``r`` is quantized asymmetrically on its own ``[min, max]``: ``offset = min``, ``scale =
(max - min) / 15`` (both rounded to the stored float type), ``code = clip(round((x - offset) /
scale), 0, 15)``, and ``x ~ code * scale + offset``. Codes are packed "split-half": byte ``j``
of a row holds code ``j`` in its low nibble and code ``j + ceil(dim / 2)`` in its high nibble,
so the lookup unpacks with one ``CONCATENATION`` instead of an interleave (``PACK`` +
``RESHAPE``). Odd widths get a zero pad code, sliced off after the lookup.

``scale_dtype="codebook"`` is the compact format (one byte of per-row parameters: 9 bytes a
16-wide row, 7.1x smaller than float32): symmetric codes and a per-row uint8 code into a
per-table 256-entry scale codebook; the codes are signed ``-7..7``, stored split-half as int8
``low + 16 * high`` (:mod:`tfcompress.quantization.embedding_int4_compact`).

Example:
    >>> q, params = quantize_rows_int4(np.array([[0.0, 6.0, 15.0]], "float32"))
    >>> q.shape, params.shape
    ((1, 2), (1, 2))
    >>> dequantize_rows_int4(q, params, 3).tolist()
    [[0.0, 6.0, 15.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network
from tfcompress._keras import keras, tf
from tfcompress._layers import IdLookup
from tfcompress._validation import check_choice
from tfcompress.quantization.embedding_int4_compact import (
    CODEBOOK_SIZE,
    codebook_of,
    dequantize_rows_int4_compact,
    fake_quantize_rows_int4_compact,
    quantize_rows_int4_compact,
)

__all__ = [
    "INT4_MODES",
    "SCALE_DTYPES",
    "check_built_embedding",
    "Int4AwareEmbedding",
    "QuantizedEmbedding4",
    "dequantize_rows_int4",
    "fake_quantize_rows_int4",
    "int4_aware_embeddings",
    "int4_row_bytes",
    "quantize_rows_int4",
]

#: how the per-row parameters are stored: a float16 (4 bytes a row) or float32 (8 bytes) scale
#: and offset, or "codebook" (the compact format: one byte a row, a code into a per-table
#: 256-entry float32 scale codebook, symmetric codes)
SCALE_DTYPES = ("float16", "float32", "codebook")
CODEBOOK = "codebook"
#: ``export_tflite(embeddings=...)``'s int4 modes and the ``scale_dtype`` each stores:
#: "int4_compact" is one byte of parameters a row (9 bytes a 16-wide row)
INT4_MODES = {"int4": "float16", "int4_compact": CODEBOOK}
_LEVELS = 15.0
# the stored scale/offset are bit patterns in an integer tensor (the converter quantizes float
# constants it can, see docs/quantization.md), turned back with BITCAST
_BITS = {"float16": (np.int16, tf.int16, tf.float16), "float32": (np.int32, tf.int32, tf.float32)}


def check_scale_dtype(scale_dtype: object, where: str) -> str:
    """Return ``scale_dtype`` if it is one of :data:`SCALE_DTYPES`, else a ValueError naming
    ``where`` and the fix."""
    return str(
        check_choice(
            scale_dtype,
            "scale_dtype",
            SCALE_DTYPES,
            where=where,
            fix="float16 keeps parity at 4 bytes a row; 'codebook' takes 1 byte a row "
            "(7.1x smaller than float32 at width 16, docs/quantization.md).",
        )
    )


def check_int4_scale_dtype(scale_dtype: object, bits: object) -> None:
    """``quantize_embeddings``'s ``scale_dtype``: None, or one of :data:`SCALE_DTYPES` with
    ``bits=4``."""
    if scale_dtype is None:
        return
    check_scale_dtype(scale_dtype, "quantize_embeddings")
    if bits != 4:
        raise ValueError(
            f"quantize_embeddings: `scale_dtype` applies to int4 rows only, received "
            f"scale_dtype={scale_dtype!r} with bits={bits!r}; pass bits=4 or scale_dtype=None."
        )


def int4_row_bytes(dim: int, scale_dtype: str = "float16") -> int:
    """Bytes one row of an int4 table takes: packed codes plus its per-row parameters (a scale
    and an offset, or one codebook byte for ``"codebook"``, whose table also holds its 1 KiB
    codebook).

    Example:
        >>> int4_row_bytes(16), int4_row_bytes(16, "float32"), int4_row_bytes(16, "codebook")
        (12, 16, 9)
    """
    scale_dtype = check_scale_dtype(scale_dtype, "int4_row_bytes")
    if scale_dtype == CODEBOOK:
        return (int(dim) + 1) // 2 + 1
    return (int(dim) + 1) // 2 + 2 * np.dtype(scale_dtype).itemsize


def _scale_offset(table: tf.Tensor, scale_dtype: str) -> tuple[tf.Tensor, tf.Tensor]:
    float_type = _BITS[scale_dtype][2]
    lo = tf.reduce_min(table, axis=1)
    hi = tf.reduce_max(table, axis=1)
    offset = tf.cast(tf.cast(lo, float_type), tf.float32)
    scale = tf.cast(tf.cast((hi - lo) / _LEVELS, float_type), tf.float32)
    scale = tf.where(scale > 0.0, scale, tf.ones_like(scale))
    return scale, offset


def _codes(table: tf.Tensor, scale: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(tf.round((table - offset[:, None]) / scale[:, None]), 0.0, _LEVELS)


def quantize_rows_int4(table: Any, scale_dtype: str = "float16") -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric 4-bit quantization of a 2-D table, a scale and an offset per row.

    Args:
        table: a ``(rows, dim)`` float tensor or array (any ``dim >= 1``; odd widths get a
            zero pad code).
        scale_dtype: ``"float16"`` or ``"float32"``: the precision the scale and offset are
            rounded to (and stored in); ``"codebook"``: the compact format
            (:func:`~tfcompress.quantization.embedding_int4_compact.quantize_rows_int4_compact`).

    Returns:
        ``(packed, params)``: uint8 ``(rows, ceil(dim / 2))`` codes (split-half layout, see the
        module docstring) and float32 ``(rows, 2)`` ``[scale, offset]`` per row; for
        ``"codebook"`` int8 ``(rows, ceil(dim / 2))`` signed codes and ``params = (scale_codes,
        codebook)``: uint8 ``(rows,)`` and float32 ``(256,)``.

    Raises:
        ValueError: ``table`` is not 2-D; a bad ``scale_dtype``.

    Example:
        >>> packed, params = quantize_rows_int4(np.ones((3, 8), "float32"))
        >>> packed.dtype.name, packed.shape
        ('uint8', (3, 4))
    """
    if check_scale_dtype(scale_dtype, "quantize_rows_int4") == CODEBOOK:
        packed, scale_codes, codebook = quantize_rows_int4_compact(table)
        return packed, (scale_codes, codebook)  # type: ignore[return-value]
    table = tf.convert_to_tensor(table, tf.float32)
    if table.shape.rank != 2:
        raise ValueError(
            f"quantize_rows_int4: `table` must be 2-D (rows, dim), received shape {table.shape}."
        )
    scale, offset = _scale_offset(table, scale_dtype)
    codes = _codes(table, scale, offset).numpy().astype(np.uint8)
    dim = codes.shape[1]
    half = (dim + 1) // 2
    if dim % 2:
        codes = np.pad(codes, ((0, 0), (0, 1)))
    packed = codes[:, :half] | (codes[:, half:] << 4)
    params = np.stack([scale.numpy(), offset.numpy()], axis=1).astype(np.float32)
    return packed.astype(np.uint8), params


def dequantize_rows_int4(packed: Any, params: Any, dim: int) -> np.ndarray:
    """The float table ``(rows, dim)`` of packed int4 codes and ``[scale, offset]`` rows (numpy);
    ``params = (scale_codes, codebook)``: compact rows (``scale_dtype="codebook"``).

    Example:
        >>> dequantize_rows_int4(np.array([[0x21]], "uint8"), np.array([[0.5, -1.0]]), 2).tolist()
        [[-0.5, 0.0]]
    """
    if isinstance(params, tuple):
        return dequantize_rows_int4_compact(packed, *params, dim)
    packed = np.asarray(packed, np.uint8)
    params = np.asarray(params, np.float32)
    codes = np.concatenate([packed & 0x0F, packed >> 4], axis=1)[:, :dim].astype(np.float32)
    return codes * params[:, :1] + params[:, 1:2]


def fake_quantize_rows_int4(table: tf.Tensor, scale_dtype: str = "float16") -> tf.Tensor:
    """Per-row asymmetric int4 fake quantization with a straight-through gradient (for QAT).

    The forward value is exactly what :class:`QuantizedEmbedding4` serves for ``table``; the
    gradient is the identity (straight-through estimator). ``"codebook"`` quantizes ``table``
    on its own codebook (the compact format).

    Example:
        >>> t = tf.constant([[0.0, 0.1, 1.0]])
        >>> [round(float(v), 3) for v in fake_quantize_rows_int4(t).numpy()[0]]
        [0.0, 0.133, 1.0]
    """
    table = tf.convert_to_tensor(table)
    if check_scale_dtype(scale_dtype, "fake_quantize_rows_int4") == CODEBOOK:
        return fake_quantize_rows_int4_compact(table, codebook_of(table))
    scale, offset = _scale_offset(tf.stop_gradient(table), scale_dtype)
    values = _codes(table, scale, offset) * scale[:, None] + offset[:, None]
    return table + tf.stop_gradient(values - table)


def check_built_embedding(layer: Any, owner: str) -> None:
    """Raise unless ``layer`` is a built ``keras.layers.Embedding`` (the source of a quantized
    table); the message names ``owner`` and the fix.

    Example:
        >>> check_built_embedding(keras.layers.Dense(2), "demo")
        Traceback (most recent call last):
        TypeError: demo: `layer` must be a keras.layers.Embedding, received Dense.
    """
    if not isinstance(layer, keras.layers.Embedding):
        raise TypeError(
            f"{owner}: `layer` must be a keras.layers.Embedding, received {type(layer).__name__}."
        )
    if not layer.built:
        raise ValueError(
            f"{owner}: Embedding {layer.name!r} is not built; call it on data (or build the "
            "model) first."
        )


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizedEmbedding4(IdLookup):
    """An ``Embedding`` whose table is int4, two codes a byte, with a scale and offset per row.

    The lookup gathers packed rows and their ``[scale, offset]``, then unpacks and dequantizes
    with TFLite builtin ops only (``GATHER``, ``CAST``, ``MUL``, ``FLOOR``, ``MUL``, ``SUB``,
    ``CONCATENATION``; ``GATHER``, ``BITCAST``, ``CAST``, ``SPLIT`` for the scale and offset;
    ``MUL``, ``ADD``; a ``STRIDED_SLICE`` for odd widths). Weights (not trainable): ``table``
    uint8 ``(input_dim, ceil(output_dim / 2))`` and ``params`` ``(input_dim, 2)`` holding the
    float16 (int16) or float32 (int32) bit patterns of ``[scale, offset]``. Build one from a
    trained ``Embedding`` with :meth:`from_embedding`, or for a whole model with
    ``tfcompress.quantization.quantize_embeddings(model, bits=4)``.

    With ``scale_dtype="codebook"`` (the compact format) ``table`` is int8 ``(input_dim,
    ceil(output_dim / 2))`` signed codes ``low + 16 * high``, ``params`` uint8 ``(input_dim, 1)``
    scale codes and ``codebook`` the int32 ``(256,)`` bit patterns of the float32 scale codebook;
    the lookup is ``GATHER``, ``CAST``, ``MUL``, ``ROUND``, ``MUL``, ``SUB``, ``CONCATENATION``
    (the codes) and ``GATHER``, ``CAST``, ``GATHER``, ``BITCAST`` (the row's scale), ``MUL``.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding width.
        scale_dtype: ``"float16"`` (default, 4 bytes a row), ``"float32"`` (8 bytes a row) or
            ``"codebook"`` (1 byte a row plus a 1 KiB codebook a table).
        mask_zero: like ``Embedding(mask_zero=True)``: id 0 is padding and masked.
        output_range: optional ``(min, max)``: fake-quantize the output to int8 in this range
            (the range a QAT model learned for the lookup).
        integer_unpack: unpack the nibbles in int32 (``FLOOR_DIV``/``FLOOR_MOD``) instead of
            float32: slower in LiteRT, but the full-integer converters keep it exact (they
            would requantize the float unpack to int8); ``export_tflite`` sets it in the
            ``"int8"`` and ``"int16x8"`` modes.

    Example:
        >>> layer = QuantizedEmbedding4(10, 4)
        >>> layer(tf.constant([[1, 2]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        scale_dtype: str = "float16",
        mask_zero: bool = False,
        output_range: tuple[float, float] | list[float] | None = None,
        integer_unpack: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.integer_unpack = bool(integer_unpack)
        for value, name in ((input_dim, "input_dim"), (output_dim, "output_dim")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"QuantizedEmbedding4 `{name}` must be an int >= 1, received {value!r}."
                )
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.scale_dtype = check_scale_dtype(scale_dtype, "QuantizedEmbedding4")
        self.mask_zero = bool(mask_zero)
        if output_range is not None:
            lo, hi = (float(v) for v in output_range)
            if not lo <= 0.0 <= hi or lo == hi:
                raise ValueError(
                    f"QuantizedEmbedding4 `output_range` must be (min, max) with min <= 0 <= "
                    f"max and min < max, received {output_range!r}."
                )
            output_range = (lo, hi)
        self.output_range = output_range
        self.supports_masking = self.mask_zero
        compact = self.scale_dtype == CODEBOOK
        self.table = self.add_weight(
            name="table",
            shape=(self.input_dim, (self.output_dim + 1) // 2),
            dtype="int8" if compact else "uint8",
            initializer="zeros",
            trainable=False,
        )
        self.params = self.add_weight(
            name="scale_codes" if compact else "params",
            shape=(self.input_dim, 1 if compact else 2),
            dtype="uint8" if compact else _BITS[self.scale_dtype][1].name,
            initializer="zeros",
            trainable=False,
        )
        self.codebook = None
        if compact:
            self.codebook = self.add_weight(
                name="codebook",
                shape=(CODEBOOK_SIZE,),
                dtype="int32",
                initializer="zeros",
                trainable=False,
            )

    @classmethod
    def from_embedding(
        cls,
        layer: keras.layers.Embedding,
        scale_dtype: str = "float16",
        *,
        table: Any = None,
        output_range: tuple[float, float] | None = None,
        name: str | None = None,
    ) -> QuantizedEmbedding4:
        """A ``QuantizedEmbedding4`` holding the int4 quantization of ``layer``'s table.

        Args:
            layer: a built ``keras.layers.Embedding``.
            scale_dtype: ``"float16"``, ``"float32"`` or ``"codebook"``.
            table: the float table to quantize instead of ``layer.embeddings``.
            output_range: see the class arguments.
            name: the new layer's name (default: ``layer.name``).

        Example:
            >>> emb = keras.layers.Embedding(5, 3)
            >>> emb.build((None, 1))
            >>> QuantizedEmbedding4.from_embedding(emb).table.shape
            TensorShape([5, 2])
        """
        check_built_embedding(layer, "QuantizedEmbedding4.from_embedding")
        values = layer.embeddings if table is None else table
        new = cls(
            layer.input_dim,
            layer.output_dim,
            scale_dtype=scale_dtype,
            mask_zero=bool(layer.mask_zero),
            output_range=output_range,
            name=name or layer.name,
        )
        new.set_quantized(*quantize_rows_int4(values, new.scale_dtype))
        return new

    def set_quantized(self, packed: Any, params: Any) -> None:
        """Assign packed codes and ``[scale, offset]`` rows, or for ``"codebook"`` signed codes
        and ``(scale_codes, codebook)`` (as :func:`quantize_rows_int4` returns them)."""
        packed = np.asarray(packed)
        if self.scale_dtype == CODEBOOK:
            codes, book = (np.asarray(p) for p in params)
            shapes = [packed.shape, codes.reshape(-1).shape, book.shape]
            expected = [tuple(self.table.shape), (self.input_dim,), (CODEBOOK_SIZE,)]
            layout = "(input_dim, ceil(output_dim / 2)), (input_dim,) and (256,)"
        else:
            params = np.asarray(params, dtype=np.float32)
            shapes = [packed.shape, params.shape]
            expected = [tuple(self.table.shape), tuple(self.params.shape)]
            layout = "(input_dim, ceil(output_dim / 2)) and (input_dim, 2)"
        if shapes != expected:
            raise ValueError(
                f"QuantizedEmbedding4 {self.name!r} (scale_dtype={self.scale_dtype!r}): "
                f"expected arrays of shapes {expected} {layout}, received {shapes}; pass what "
                f"quantize_rows_int4(table, {self.scale_dtype!r}) returns."
            )
        if self.scale_dtype == CODEBOOK:
            self.table.assign(packed.astype(np.int8))
            self.params.assign(codes.reshape(-1, 1).astype(np.uint8))
            self.codebook.assign(book.astype(np.float32).view(np.int32))  # type: ignore[union-attr]
            return
        self.table.assign(packed.astype(np.uint8))
        self.params.assign(params.astype(self.scale_dtype).view(_BITS[self.scale_dtype][0]))

    def float_params(self) -> np.ndarray:
        """``[scale, offset]`` per row as float32 numpy values, ``(input_dim, 2)`` (for
        ``"codebook"``: the scale, ``(input_dim, 1)``)."""
        if self.scale_dtype == CODEBOOK:
            return self._codebook()[self.params.numpy().astype(np.int64)]
        return self.params.numpy().view(self.scale_dtype).astype(np.float32)

    def _codebook(self) -> np.ndarray:
        return self.codebook.numpy().view(np.float32)  # type: ignore[union-attr]

    def dequantized(self) -> np.ndarray:
        """The float table this layer represents, ``(input_dim, output_dim)``."""
        if self.scale_dtype == CODEBOOK:
            params = (self.params.numpy().reshape(-1), self._codebook())
            return dequantize_rows_int4(self.table.numpy(), params, self.output_dim)
        return dequantize_rows_int4(self.table.numpy(), self.float_params(), self.output_dim)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
        if self.scale_dtype == CODEBOOK:
            return self._output(self._call_compact(ids))
        # unpacked in float32 (exact for 0..255): CAST, MUL, FLOOR, MUL, SUB run ~4x faster in
        # LiteRT than the int32 FLOOR_DIV / FLOOR_MOD (measured, docs/quantization.md)
        if self.integer_unpack:
            packed = tf.cast(tf.gather(self.table, ids), tf.int32)
            codes = tf.concat([tf.math.floormod(packed, 16), tf.math.floordiv(packed, 16)], -1)
            codes = tf.cast(codes, tf.float32)
        else:
            packed = tf.cast(tf.gather(self.table, ids), tf.float32)
            high = tf.floor(packed * (1.0 / 16.0))
            codes = tf.concat([packed - high * 16.0, high], axis=-1)
        if self.output_dim % 2:
            codes = codes[..., : self.output_dim]
        _, _, float_type = _BITS[self.scale_dtype]
        params = tf.bitcast(tf.gather(self.params, ids), float_type)
        if float_type != tf.float32:
            params = tf.cast(params, tf.float32)
        scale, offset = tf.split(params, 2, axis=-1)
        return self._output(codes * scale + offset)

    def _call_compact(self, ids: tf.Tensor) -> tf.Tensor:
        # signed codes: high = round(b / 16) (|low| <= 7 < 8), no bias to subtract; the scale
        # code is a second GATHER: both measured faster in LiteRT than a fused row and a SPLIT,
        # a -8..7 bias SUB or a byte -> codes lookup table (docs/quantization.md)
        if self.integer_unpack:  # exact under the full-integer converters
            packed = tf.cast(tf.gather(self.table, ids), tf.int32)
            high = tf.math.floordiv(packed + 8, 16)
            codes = tf.cast(tf.concat([packed - high * 16, high], axis=-1), tf.float32)
        else:
            packed = tf.cast(tf.gather(self.table, ids), tf.float32)
            high = tf.round(packed * (1.0 / 16.0))
            codes = tf.concat([packed - high * 16.0, high], axis=-1)
        if self.output_dim % 2:
            codes = codes[..., : self.output_dim]
        index = tf.cast(tf.gather(self.params, ids), tf.int32)  # (..., 1)
        return codes * tf.bitcast(tf.gather(self.codebook, index), tf.float32)

    def _output(self, out: tf.Tensor) -> tf.Tensor:
        if self.output_range is not None:
            out = tf.quantization.fake_quant_with_min_max_args(
                out, min=self.output_range[0], max=self.output_range[1], num_bits=8
            )
        return out

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "scale_dtype": self.scale_dtype,
            "mask_zero": self.mask_zero,
            "output_range": None if self.output_range is None else list(self.output_range),
            "integer_unpack": self.integer_unpack,
        }


# --------------------------------------------------------------------------- QAT (fine-tune)


@keras.saving.register_keras_serializable(package="tfcompress")
class Int4AwareEmbedding(keras.layers.Embedding):
    """A trainable ``Embedding`` whose lookups are int4 fake-quantized (for fine-tuning).

    Each looked-up row is quantized on its own ``[min, max]`` exactly as
    :class:`QuantizedEmbedding4` stores it (:func:`fake_quantize_rows_int4`), with a
    straight-through gradient. Row-wise quantization is row-local, so only the gathered rows are
    quantized (``"codebook"``: on the scale codebook of the whole current table, as the export
    computes it, one pass over the table a step). It is an ``Embedding`` (masking,
    pruning and ``quantize_embeddings(bits=4)`` see it as one), so after fine-tuning
    ``quantize_embeddings(model, bits=4)`` serves exactly the values it trained with.

    Args:
        scale_dtype: ``"float16"`` (default), ``"float32"`` or ``"codebook"``, as in
            :class:`QuantizedEmbedding4`.
        **kwargs: ``keras.layers.Embedding`` arguments.

    Example:
        >>> layer = Int4AwareEmbedding(10, 4)
        >>> layer(tf.constant([[1, 2]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(self, *args: Any, scale_dtype: str = "float16", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale_dtype = check_scale_dtype(scale_dtype, "Int4AwareEmbedding")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
        rows = tf.gather(self.embeddings, ids)
        flat = tf.reshape(rows, (-1, self.output_dim))
        if self.scale_dtype == CODEBOOK:
            # the codebook spans the whole table (one pass over it a step), the rows are local
            fake = fake_quantize_rows_int4_compact(flat, codebook_of(self.embeddings))
        else:
            fake = fake_quantize_rows_int4(flat, self.scale_dtype)
        return tf.reshape(fake, tf.shape(rows))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale_dtype": self.scale_dtype}


def int4_swap(
    emb: Any,
    scale_dtype: str | None,
    table: Any,
    output_range: tuple[float, float] | None,
    name: str,
) -> tuple[QuantizedEmbedding4, str]:
    """``quantize_embeddings(bits=4)``'s swap of ``emb``: the int4 layer and its report detail.

    ``scale_dtype`` None takes an :class:`Int4AwareEmbedding`'s own (what it fine-tuned with),
    else ``"float16"``.
    """
    own = emb.scale_dtype if isinstance(emb, Int4AwareEmbedding) else "float16"
    dtype = scale_dtype or own
    new = QuantizedEmbedding4.from_embedding(
        emb, dtype, table=table, output_range=output_range, name=name
    )
    params = (
        "a one-byte scale code per row (256-entry codebook)"
        if dtype == CODEBOOK
        else f"a {dtype} scale and offset per row"
    )
    return new, f"int4 table (two codes a byte), {params}"


def int4_aware_embeddings(model: keras.Model, *, scale_dtype: str = "float16") -> keras.Model:
    """A copy of ``model`` whose ``Embedding`` layers are :class:`Int4AwareEmbedding` (QAT).

    Fine-tune the copy (it trains its tables with int4 fake quantization and a straight-through
    gradient), then serve it with ``quantize_embeddings(model, bits=4)`` or
    ``export_tflite(..., embeddings="int4")``. Other layers are shared with ``model``; the new
    tables start from a copy of the old ones. Nested functional models are rewritten too.

    Args:
        model: a functional or Sequential tf_keras model.
        scale_dtype: ``"float16"``, ``"float32"`` or ``"codebook"`` (serve it with
            ``embeddings="int4_compact"``).

    Returns:
        The new model.

    Raises:
        ValueError: a subclassed model (its layers cannot be swapped); a bad ``scale_dtype``.

    Example:
        >>> aware = int4_aware_embeddings(model)  # doctest: +SKIP
        >>> aware.fit(task.train, epochs=1)  # doctest: +SKIP
    """
    check_scale_dtype(scale_dtype, "int4_aware_embeddings")

    def swap(layer: Any) -> Any:
        if type(layer) is keras.layers.Embedding:
            new = Int4AwareEmbedding(**layer.get_config(), scale_dtype=scale_dtype)
            new.build((None,))
            new.set_weights(layer.get_weights())
            return new
        if isinstance(layer, keras.Model):
            return clone(layer)
        return layer

    def clone(inner: keras.Model) -> keras.Model:
        if not isinstance(inner, keras.Sequential) and not is_graph_network(inner):
            raise ValueError(
                f"int4_aware_embeddings: model {inner.name!r} is a subclassed model; its "
                "Embedding layers cannot be swapped. Build it with the functional API or "
                "keras.Sequential."
            )
        return keras.models.clone_model(inner, clone_function=swap)

    return clone(model)
