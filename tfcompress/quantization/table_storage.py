"""One gathered table in a given storage, as a layer: the primitive that table layers made of
several row tables (quotient-remainder, hashed, mixed-dimension) store their tables with at
export (:func:`stored_table`, :func:`empty_table`, :func:`table_values`).

A storage is one of :data:`TABLE_STORAGES`: ``"float"`` (a plain ``Embedding``),
``"int8_row"``/``"int8_tensor"`` (:class:`~tfcompress.quantization.embedding.QuantizedEmbedding`
with a float16 scale per row or one per table) or ``"int4"``/``"int4_compact"``
(:class:`~tfcompress.quantization.embedding_int4.QuantizedEmbedding4` with a float16 scale and
offset per row, or a one-byte scale code per row). The layers are the ones ``export_tflite``
swaps plain ``Embedding`` tables for: same bytes, same dequantize-after-gather ops.

Example:
    >>> table = np.arange(12, dtype="float32").reshape(6, 2)
    >>> layer = stored_table(table, "int8_row", name="rows")
    >>> layer.table.dtype.name, table_values(layer).shape
    ('int8', (6, 2))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._validation import check_choice
from tfcompress.quantization.embedding import (
    EMBEDDING_MODES,
    QuantizedEmbedding,
    quantize_rows,
    resolve_granularity,
)
from tfcompress.quantization.embedding_int4 import (
    INT4_MODES,
    QuantizedEmbedding4,
    int4_row_bytes,
    quantize_rows_int4,
)
from tfcompress.quantization.embedding_int4_compact import CODEBOOK_SIZE

__all__ = [
    "TABLE_STORAGES",
    "empty_table",
    "fill_table",
    "resolve_storage",
    "storage_bytes",
    "storage_detail",
    "stored_table",
    "table_values",
]

#: what one stored row table can be (``export_tflite``'s ``embeddings`` modes with the int8
#: granularity resolved: ``"int8"`` is ``"int8_row"`` for rows of >= 32 values, else
#: ``"int8_tensor"``)
TABLE_STORAGES = ("float", "int8_row", "int8_tensor", "int4", "int4_compact")


def resolve_storage(mode: str, dim: int) -> str:
    """The storage of a ``dim``-wide table under ``export_tflite(embeddings=mode)``.

    Example:
        >>> resolve_storage("int8", 16), resolve_storage("int8", 64), resolve_storage("int4", 8)
        ('int8_tensor', 'int8_row', 'int4')
    """
    check_choice(
        mode,
        "embeddings",
        EMBEDDING_MODES,
        where="resolve_storage",
        fix=f"Pass one of export_tflite's embeddings modes {list(EMBEDDING_MODES)}.",
    )
    if mode == "int8":
        return "int8_" + resolve_granularity("auto", int(dim))
    return mode


def storage_bytes(rows: int, dim: int, storage: str) -> int:
    """Bytes a ``rows x dim`` table takes in ``storage``: codes and per-row parameters (and an
    int4_compact table's scale codebook).

    Example:
        >>> storage_bytes(1000, 1, "float"), storage_bytes(1000, 1, "int4")  # int4: larger
        (4000, 5000)
    """
    storage = _check_storage(storage, "storage_bytes")
    rows, dim = int(rows), int(dim)
    if storage == "float":
        return 4 * rows * dim
    if storage in INT4_MODES:
        scale_dtype = INT4_MODES[storage]
        book = 4 * CODEBOOK_SIZE if scale_dtype == "codebook" else 0
        return rows * int4_row_bytes(dim, scale_dtype) + book
    return rows * dim + 2 * (rows if storage == "int8_row" else 1)


def _check_storage(storage: object, where: str) -> str:
    return str(
        check_choice(
            storage,
            "storage",
            TABLE_STORAGES,
            where=where,
            fix="Resolve export_tflite's embeddings mode with resolve_storage(mode, dim).",
        )
    )


def empty_table(
    rows: int, dim: int, storage: str, *, name: str, integer_unpack: bool = False
) -> keras.layers.Layer:
    """A built gather layer of ``rows x dim`` in ``storage``, its weights still zero (a layer
    rebuilt from its config, before its weights load).

    Args:
        rows: the table's rows.
        dim: its width.
        storage: one of :data:`TABLE_STORAGES`.
        name: the layer's name.
        integer_unpack: int4 storages: unpack the nibbles in int32 (what the full-integer
            converters keep exact; see ``QuantizedEmbedding4``).

    Returns:
        An ``Embedding``, ``QuantizedEmbedding`` or ``QuantizedEmbedding4``; called on int ids
        it returns their float rows.

    Example:
        >>> empty_table(10, 4, "int4", name="t").table.shape
        TensorShape([10, 2])
    """
    storage = _check_storage(storage, "empty_table")
    if storage == "float":
        layer = keras.layers.Embedding(int(rows), int(dim), name=name)
        layer.build((None,))
        return layer
    if storage in INT4_MODES:
        return QuantizedEmbedding4(
            rows, dim, scale_dtype=INT4_MODES[storage], integer_unpack=integer_unpack, name=name
        )
    return QuantizedEmbedding(rows, dim, granularity=storage.removeprefix("int8_"), name=name)


def stored_table(
    values: Any, storage: str, *, name: str, integer_unpack: bool = False
) -> keras.layers.Layer:
    """A gather layer holding ``values`` (a ``(rows, dim)`` float table) in ``storage``,
    quantized with the row math of the ``Embedding`` swap (:func:`quantize_rows`,
    :func:`quantize_rows_int4`).

    Args:
        values: the float table.
        storage: one of :data:`TABLE_STORAGES`.
        name: the layer's name.
        integer_unpack: see :func:`empty_table`.

    Returns:
        The layer (see :func:`empty_table`).

    Raises:
        ValueError: ``values`` is not 2-D; a bad ``storage``.

    Example:
        >>> stored_table(np.ones((8, 3), "float32"), "int4_compact", name="t").table.dtype.name
        'int8'
    """
    storage = _check_storage(storage, "stored_table")
    values = np.asarray(values, np.float32)
    if values.ndim != 2:
        raise ValueError(
            f"stored_table {name!r}: `values` must be a 2-D (rows, dim) table, received shape "
            f"{values.shape}."
        )
    layer = empty_table(*values.shape, storage, name=name, integer_unpack=integer_unpack)
    fill_table(layer, values)
    return layer


def fill_table(layer: keras.layers.Layer, values: Any) -> None:
    """Store the float ``(rows, dim)`` table ``values`` in a layer of :func:`empty_table`
    (quantized in the layer's own storage).

    Raises:
        ValueError: ``values`` does not have the layer's shape.

    Example:
        >>> layer = empty_table(3, 2, "int8_tensor", name="t")
        >>> fill_table(layer, np.full((3, 2), -1.0, "float32"))
        >>> [round(float(v), 3) for v in table_values(layer)[0]]  # float16 scale 1/127
        [-1.0, -1.0]
    """
    values = np.asarray(values, np.float32)
    shape = (int(layer.input_dim), int(layer.output_dim))
    if values.shape != shape:
        raise ValueError(
            f"fill_table: {type(layer).__name__} {layer.name!r} holds a {shape} table, "
            f"`values` has shape {values.shape}; pass the table it was built for."
        )
    if isinstance(layer, QuantizedEmbedding4):
        layer.set_quantized(*quantize_rows_int4(values, layer.scale_dtype))
    elif isinstance(layer, QuantizedEmbedding):
        layer.set_quantized(*quantize_rows(values, layer.granularity))
    else:
        layer.set_weights([values])


def table_values(layer: keras.layers.Layer) -> np.ndarray:
    """The float ``(rows, dim)`` table a layer of :func:`stored_table` serves (numpy).

    Example:
        >>> table_values(stored_table(np.eye(2, dtype="float32"), "float", name="t")).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    if isinstance(layer, (QuantizedEmbedding, QuantizedEmbedding4)):
        return layer.dequantized()
    return np.asarray(layer.get_weights()[0], np.float32)


def storage_detail(layer: keras.layers.Layer) -> str:
    """``"rows x dim <storage>, <bytes> bytes"`` of a layer of :func:`stored_table`.

    Example:
        >>> storage_detail(stored_table(np.ones((4, 2), "float32"), "int8_row", name="t"))
        '4x2 int8 rows (a float16 scale per row), 16 bytes'
    """
    rows, dim = int(layer.input_dim), int(layer.output_dim)
    if isinstance(layer, QuantizedEmbedding4):
        kind = "int4 rows (" + (
            "a one-byte scale code per row)"
            if layer.scale_dtype == "codebook"
            else f"a {layer.scale_dtype} scale and offset per row)"
        )
    elif isinstance(layer, QuantizedEmbedding):
        kind = "int8 rows (" + (
            "a float16 scale per row)" if layer.granularity == "row" else "one scale)"
        )
    else:
        kind = "float32 rows"
    nbytes = sum(int(np.prod(w.shape)) * tf.as_dtype(w.dtype).size for w in layer.weights)
    return f"{rows}x{dim} {kind}, {nbytes} bytes"
