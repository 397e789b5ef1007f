"""Embedding tables as int4 rows, two codes a byte, with a per-row scale and offset:
:class:`QuantizedEmbedding4`, :func:`quantize_rows_int4`, :func:`dequantize_rows_int4`,
:func:`fake_quantize_rows_int4` (the choices and measurements: docs/quantization.md).

Row ``r`` is quantized asymmetrically on its own ``[min, max]``: ``offset = min``, ``scale =
(max - min) / 15`` (both rounded to the stored float type), ``code = clip(round((x - offset) /
scale), 0, 15)``, and ``x ~ code * scale + offset``. Codes are packed "split-half": byte ``j``
of a row holds code ``j`` in its low nibble and code ``j + ceil(dim / 2)`` in its high nibble,
so the lookup unpacks with one ``CONCATENATION`` instead of an interleave (``PACK`` +
``RESHAPE``). Odd widths get a zero pad code, sliced off after the lookup.

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
from tfcompress._validation import check_choice

__all__ = [
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

#: how the per-row scale and offset are stored: float16 (4 bytes a row) or float32 (8 bytes)
SCALE_DTYPES = ("float16", "float32")
_LEVELS = 15.0
# the stored scale/offset are bit patterns in an integer tensor (the converter quantizes float
# constants it can, see docs/quantization.md), turned back with BITCAST
_BITS = {"float16": (np.int16, tf.int16, tf.float16), "float32": (np.int32, tf.int32, tf.float32)}


def _check_scale_dtype(scale_dtype: object, where: str) -> str:
    return str(
        check_choice(
            scale_dtype,
            "scale_dtype",
            SCALE_DTYPES,
            where=where,
            fix="float16 keeps parity at 4 bytes a row (docs/quantization.md).",
        )
    )


def int4_row_bytes(dim: int, scale_dtype: str = "float16") -> int:
    """Bytes one row of an int4 table takes: packed codes plus its scale and offset.

    Example:
        >>> int4_row_bytes(16), int4_row_bytes(16, "float32")
        (12, 16)
    """
    return (int(dim) + 1) // 2 + 2 * np.dtype(_check_scale_dtype(scale_dtype, "")).itemsize


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
            rounded to (and stored in).

    Returns:
        ``(packed, params)``: uint8 ``(rows, ceil(dim / 2))`` codes (split-half layout, see the
        module docstring) and float32 ``(rows, 2)`` ``[scale, offset]`` per row.

    Raises:
        ValueError: ``table`` is not 2-D; a bad ``scale_dtype``.

    Example:
        >>> packed, params = quantize_rows_int4(np.ones((3, 8), "float32"))
        >>> packed.dtype.name, packed.shape
        ('uint8', (3, 4))
    """
    _check_scale_dtype(scale_dtype, "quantize_rows_int4")
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
    """The float table ``(rows, dim)`` of packed int4 codes and ``[scale, offset]`` rows (numpy).

    Example:
        >>> dequantize_rows_int4(np.array([[0x21]], "uint8"), np.array([[0.5, -1.0]]), 2).tolist()
        [[-0.5, 0.0]]
    """
    packed = np.asarray(packed, np.uint8)
    params = np.asarray(params, np.float32)
    codes = np.concatenate([packed & 0x0F, packed >> 4], axis=1)[:, :dim].astype(np.float32)
    return codes * params[:, :1] + params[:, 1:2]


def fake_quantize_rows_int4(table: tf.Tensor, scale_dtype: str = "float16") -> tf.Tensor:
    """Per-row asymmetric int4 fake quantization with a straight-through gradient (for QAT).

    The forward value is exactly what :class:`QuantizedEmbedding4` serves for ``table``; the
    gradient is the identity (straight-through estimator).

    Example:
        >>> t = tf.constant([[0.0, 0.1, 1.0]])
        >>> [round(float(v), 3) for v in fake_quantize_rows_int4(t).numpy()[0]]
        [0.0, 0.133, 1.0]
    """
    _check_scale_dtype(scale_dtype, "fake_quantize_rows_int4")
    table = tf.convert_to_tensor(table)
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
class QuantizedEmbedding4(keras.layers.Layer):
    """An ``Embedding`` whose table is int4, two codes a byte, with a scale and offset per row.

    The lookup gathers packed rows and their ``[scale, offset]``, then unpacks and dequantizes
    with TFLite builtin ops only (``GATHER``, ``CAST``, ``MUL``, ``FLOOR``, ``MUL``, ``SUB``,
    ``CONCATENATION``; ``GATHER``, ``BITCAST``, ``CAST``, ``SPLIT`` for the scale and offset;
    ``MUL``, ``ADD``; a ``STRIDED_SLICE`` for odd widths). Weights (not trainable): ``table``
    uint8 ``(input_dim, ceil(output_dim / 2))`` and ``params`` ``(input_dim, 2)`` holding the
    float16 (int16) or float32 (int32) bit patterns of ``[scale, offset]``. Build one from a
    trained ``Embedding`` with :meth:`from_embedding`, or for a whole model with
    ``tfcompress.quantization.quantize_embeddings(model, bits=4)``.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding width.
        scale_dtype: ``"float16"`` (default, 4 bytes a row) or ``"float32"`` (8 bytes a row).
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
        self.scale_dtype = _check_scale_dtype(scale_dtype, "QuantizedEmbedding4")
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
        self.table = self.add_weight(
            name="table",
            shape=(self.input_dim, (self.output_dim + 1) // 2),
            dtype="uint8",
            initializer="zeros",
            trainable=False,
        )
        self.params = self.add_weight(
            name="params",
            shape=(self.input_dim, 2),
            dtype=_BITS[self.scale_dtype][1].name,
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
            scale_dtype: ``"float16"`` or ``"float32"``.
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
        """Assign packed codes and ``[scale, offset]`` rows (as :func:`quantize_rows_int4`)."""
        packed = np.asarray(packed)
        params = np.asarray(params, dtype=np.float32)
        if packed.shape != tuple(self.table.shape) or params.shape != tuple(self.params.shape):
            raise ValueError(
                f"QuantizedEmbedding4 {self.name!r}: expected packed codes of shape "
                f"{tuple(self.table.shape)} and params of shape {tuple(self.params.shape)} "
                f"(input_dim, ceil(output_dim / 2)) and (input_dim, 2), received {packed.shape} "
                f"and {params.shape}; pass what quantize_rows_int4(table) returns."
            )
        int_type = _BITS[self.scale_dtype][0]
        self.table.assign(packed.astype(np.uint8))
        self.params.assign(params.astype(self.scale_dtype).view(int_type))

    def float_params(self) -> np.ndarray:
        """``[scale, offset]`` per row as float32 numpy values, ``(input_dim, 2)``."""
        return self.params.numpy().view(self.scale_dtype).astype(np.float32)

    def dequantized(self) -> np.ndarray:
        """The float table this layer represents, ``(input_dim, output_dim)``."""
        return dequantize_rows_int4(self.table.numpy(), self.float_params(), self.output_dim)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
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
        out = codes * scale + offset
        if self.output_range is not None:
            out = tf.quantization.fake_quant_with_min_max_args(
                out, min=self.output_range[0], max=self.output_range[1], num_bits=8
            )
        return out

    def compute_mask(self, inputs: tf.Tensor, mask: Any = None) -> tf.Tensor | None:
        if not self.mask_zero:
            return None
        return tf.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

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
    quantized (the cost does not grow with the vocabulary). It is an ``Embedding`` (masking,
    pruning and ``quantize_embeddings(bits=4)`` see it as one), so after fine-tuning
    ``quantize_embeddings(model, bits=4)`` serves exactly the values it trained with.

    Args:
        scale_dtype: ``"float16"`` (default) or ``"float32"``, as in :class:`QuantizedEmbedding4`.
        **kwargs: ``keras.layers.Embedding`` arguments.

    Example:
        >>> layer = Int4AwareEmbedding(10, 4)
        >>> layer(tf.constant([[1, 2]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(self, *args: Any, scale_dtype: str = "float16", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale_dtype = _check_scale_dtype(scale_dtype, "Int4AwareEmbedding")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
        rows = tf.gather(self.embeddings, ids)
        flat = tf.reshape(rows, (-1, self.output_dim))
        return tf.reshape(fake_quantize_rows_int4(flat, self.scale_dtype), tf.shape(rows))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale_dtype": self.scale_dtype}


def int4_aware_embeddings(model: keras.Model, *, scale_dtype: str = "float16") -> keras.Model:
    """A copy of ``model`` whose ``Embedding`` layers are :class:`Int4AwareEmbedding` (QAT).

    Fine-tune the copy (it trains its tables with int4 fake quantization and a straight-through
    gradient), then serve it with ``quantize_embeddings(model, bits=4)`` or
    ``export_tflite(..., embeddings="int4")``. Other layers are shared with ``model``; the new
    tables start from a copy of the old ones. Nested functional models are rewritten too.

    Args:
        model: a functional or Sequential tf_keras model.
        scale_dtype: ``"float16"`` or ``"float32"``.

    Returns:
        The new model.

    Raises:
        ValueError: a subclassed model (its layers cannot be swapped); a bad ``scale_dtype``.

    Example:
        >>> aware = int4_aware_embeddings(model)  # doctest: +SKIP
        >>> aware.fit(task.train, epochs=1)  # doctest: +SKIP
    """
    _check_scale_dtype(scale_dtype, "int4_aware_embeddings")

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
