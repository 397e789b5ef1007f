"""Embedding tables as int8 rows with per-row scales, for serving: :class:`QuantizedEmbedding`,
:func:`quantize_embeddings`, :func:`quantize_rows` (the choices and measurements:
docs/quantization.md).

Example:
    >>> from tfcompress._keras import keras
    >>> ids = keras.Input((1,), dtype="int32", name="ids")
    >>> model = keras.Model(ids, keras.layers.Embedding(100, 8, name="emb")(ids))
    >>> small = quantize_embeddings(model)
    >>> small.get_layer("emb").table.dtype.name
    'int8'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress._compat import (
    flatten_layers,
    inbound_nodes,
    is_graph_network,
    output_quantizer_vars,
    quantized_weights,
)
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import (
    CompressionReport,
    IdLookup,
    LayerDecision,
    LayerFilter,
    iter_layers,
    match_layers,
)
from tfcompress._validation import check_choice
from tfcompress.quantization.embedding_int4 import (
    INT4_MODES,
    QuantizedEmbedding4,
    check_built_embedding,
    check_int4_scale_dtype,
    int4_swap,
)

__all__ = [
    "EMBEDDING_GRANULARITIES",
    "EMBEDDING_MODES",
    "EMBEDDING_BITS",
    "EXPORT_MIN_ROWS",
    "QuantizedEmbedding",
    "QuantizedEmbedding4",
    "dequantize_rows",
    "is_qat_model",
    "prepare_for_export",
    "quantize_embeddings",
    "quantize_rows",
]

_log = logging.getLogger("tfcompress")

EMBEDDING_GRANULARITIES = ("row", "tensor", "auto")
#: ``export_tflite(embeddings=...)`` values; None picks per quantization mode.
EMBEDDING_MODES = ("float", "int8", "int8_row", "int8_tensor", "int4", "int4_compact")
#: ``quantize_embeddings(bits=...)`` values: int8 rows or int4 rows (QuantizedEmbedding4)
EMBEDDING_BITS = (8, 4)
#: Tables with fewer rows are left to the converter at export: their bytes are below the graph
#: cost of the dequantize ops (about 6 ops, ~0.5 KB, per lookup).
EXPORT_MIN_ROWS = 64
#: ``granularity="auto"`` gives rows of at least this many values their own scale (the 2-byte
#: scale is then <= 1/16 of the int8 row); narrower tables get one scale.
AUTO_ROW_MIN_DIM = 32
_QMAX = 127.0
_QUANTIZED_MODES = ("dynamic", "int8", "int16x8")


def check_granularity(
    granularity: object, argument: str = "granularity", *, allow_auto: bool = False
) -> str:
    """Return ``granularity`` if valid (``"row"``, ``"tensor"``, and ``"auto"`` if allowed)."""
    valid = EMBEDDING_GRANULARITIES if allow_auto else EMBEDDING_GRANULARITIES[:2]
    if granularity not in valid:
        raise ValueError(
            f"`{argument}` must be one of {list(valid)} (one int8 scale per table row, one for "
            f"the whole table{', or per row for rows of >= 32 values' if allow_auto else ''}); "
            f"received {granularity!r}."
        )
    return str(granularity)


def resolve_granularity(granularity: str, output_dim: int) -> str:
    """``"auto"`` -> ``"row"`` when ``output_dim >= AUTO_ROW_MIN_DIM`` else ``"tensor"``."""
    if granularity == "auto":
        return "row" if output_dim >= AUTO_ROW_MIN_DIM else "tensor"
    return check_granularity(granularity)


def quantize_rows(table: Any, granularity: str = "row") -> tuple[tf.Tensor, tf.Tensor]:
    """Symmetric int8 quantization of a 2-D table, one scale per row (or per table).

    ``scale = max|row| / 127`` rounded to float16 (how :class:`QuantizedEmbedding` stores it;
    an all-zero row gets scale 1), ``q = clip(round(table / scale), -127, 127)``.

    Args:
        table: a ``(rows, dim)`` float tensor or array.
        granularity: ``"row"`` or ``"tensor"``.

    Returns:
        ``(q, scales)``: int8 ``(rows, dim)`` and float32 scales, ``(rows,)`` or ``(1,)``.

    Example:
        >>> q, s = quantize_rows(np.array([[0.5, -1.0], [0.0, 0.02]], "float32"))
        >>> q.numpy().tolist()
        [[64, -127], [0, 127]]
    """
    check_granularity(granularity)
    table = tf.convert_to_tensor(table, tf.float32)
    if table.shape.rank != 2:
        raise ValueError(
            f"quantize_rows: `table` must be 2-D (rows, dim), received shape {table.shape}."
        )
    if granularity == "row":
        peak = tf.reduce_max(tf.abs(table), axis=1)
    else:
        peak = tf.reshape(tf.reduce_max(tf.abs(table)), [1])
    scales = tf.cast(tf.cast(peak / _QMAX, tf.float16), tf.float32)
    scales = tf.where(scales > 0.0, scales, tf.ones_like(scales))
    column = scales[:, None] if granularity == "row" else scales[0]
    q = tf.clip_by_value(tf.round(table / column), -_QMAX, _QMAX)
    return tf.cast(q, tf.int8), scales


def dequantize_rows(q: Any, scales: Any) -> tf.Tensor:
    """``q * scale`` per row (``scales`` of shape ``(rows,)``) or per table (shape ``(1,)``).

    Example:
        >>> dequantize_rows(np.array([[2, -1]], "int8"), np.array([0.5], "float32")).numpy()
        array([[ 1. , -0.5]], dtype=float32)
    """
    q = tf.cast(tf.convert_to_tensor(q), tf.float32)
    scales = tf.convert_to_tensor(scales, tf.float32)
    if scales.shape[0] == 1 and q.shape[0] != 1:
        return q * scales[0]
    return q * scales[:, None]


def fake_quantize_rows(table: tf.Tensor, granularity: str = "row") -> tf.Tensor:
    """``dequantize_rows(*quantize_rows(table))`` with a straight-through gradient (for QAT)."""
    q, scales = quantize_rows(table, granularity)
    return table + tf.stop_gradient(dequantize_rows(q, scales) - table)


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizedEmbedding(IdLookup):
    """An ``Embedding`` whose table is int8 with per-row (or per-table) scales.

    The lookup gathers int8 rows and their scales, then dequantizes: ``cast(q[ids]) *
    scale[ids]``. Weights (not trainable): ``table`` int8 ``(input_dim, output_dim)`` and
    ``scales`` int16 ``(input_dim,)`` (``(1,)`` for ``granularity="tensor"``) holding float16
    bit patterns (see the module docstring for why). Build one from a trained ``Embedding`` with
    :meth:`from_embedding` or for a whole model with :func:`quantize_embeddings`.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding width.
        granularity: ``"row"`` (one scale per row) or ``"tensor"``.
        mask_zero: like ``Embedding(mask_zero=True)``: id 0 is padding and masked.
        output_range: optional ``(min, max)``: fake-quantize the output to int8 in this range
            (the range a QAT model learned for the lookup; used when exporting QAT models).

    Example:
        >>> layer = QuantizedEmbedding(10, 4)
        >>> layer(tf.constant([[1, 2]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        granularity: str = "row",
        mask_zero: bool = False,
        output_range: tuple[float, float] | list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        for value, name in ((input_dim, "input_dim"), (output_dim, "output_dim")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"QuantizedEmbedding `{name}` must be an int >= 1, received {value!r}."
                )
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.granularity = check_granularity(granularity)
        self.mask_zero = bool(mask_zero)
        if output_range is not None:
            lo, hi = (float(v) for v in output_range)
            if not lo <= 0.0 <= hi or lo == hi:
                raise ValueError(
                    f"QuantizedEmbedding `output_range` must be (min, max) with min <= 0 <= max "
                    f"and min < max, received {output_range!r}."
                )
            output_range = (lo, hi)
        self.output_range = output_range
        self.supports_masking = self.mask_zero
        rows = self.input_dim if self.granularity == "row" else 1
        self.table = self.add_weight(
            name="table",
            shape=(self.input_dim, self.output_dim),
            dtype="int8",
            initializer="zeros",
            trainable=False,
        )
        self.scales = self.add_weight(
            name="scales",
            shape=(rows,),
            dtype="int16",
            initializer="zeros",
            trainable=False,
        )

    @classmethod
    def from_embedding(
        cls,
        layer: keras.layers.Embedding,
        granularity: str = "row",
        *,
        table: Any = None,
        output_range: tuple[float, float] | None = None,
        name: str | None = None,
    ) -> QuantizedEmbedding:
        """A ``QuantizedEmbedding`` holding the int8 quantization of ``layer``'s table.

        Args:
            layer: a built ``keras.layers.Embedding``.
            granularity: ``"row"`` or ``"tensor"``.
            table: the float table to quantize instead of ``layer.embeddings``.
            output_range: see the class arguments.
            name: the new layer's name (default: ``layer.name``).

        Example:
            >>> emb = keras.layers.Embedding(5, 2)
            >>> emb.build((None, 1))
            >>> QuantizedEmbedding.from_embedding(emb).table.shape
            TensorShape([5, 2])
        """
        check_built_embedding(layer, "QuantizedEmbedding.from_embedding")
        values = layer.embeddings if table is None else table
        new = cls(
            layer.input_dim,
            layer.output_dim,
            granularity=granularity,
            mask_zero=bool(layer.mask_zero),
            output_range=output_range,
            name=name or layer.name,
        )
        new.set_quantized(*quantize_rows(values, granularity))
        return new

    def set_quantized(self, q: Any, scales: Any) -> None:
        """Assign an int8 table and its float scales (as returned by :func:`quantize_rows`)."""
        q = np.asarray(q)
        scales = np.asarray(scales, dtype=np.float32).reshape(-1)
        if q.shape != tuple(self.table.shape) or scales.shape != tuple(self.scales.shape):
            raise ValueError(
                f"QuantizedEmbedding {self.name!r}: expected a table of shape "
                f"{tuple(self.table.shape)} and scales of shape {tuple(self.scales.shape)}, "
                f"received {q.shape} and {scales.shape}."
            )
        self.table.assign(q.astype(np.int8))
        self.scales.assign(scales.astype(np.float16).view(np.int16))

    def float_scales(self) -> np.ndarray:
        """The scales as float32 numpy values."""
        return self.scales.numpy().view(np.float16).astype(np.float32)

    def dequantized(self) -> np.ndarray:
        """The float table this layer represents, ``(input_dim, output_dim)``."""
        return dequantize_rows(self.table, self.float_scales()).numpy()

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype != tf.int32 else inputs
        rows = tf.cast(tf.gather(self.table, ids), tf.float32)
        if self.granularity == "row":
            # scales are stored (rows, 1): the gather yields (..., 1), no EXPAND_DIMS needed
            bits = tf.gather(tf.reshape(self.scales, (-1, 1)), ids)
            scale = tf.cast(tf.bitcast(bits, tf.float16), tf.float32)
        else:
            scale = tf.cast(tf.bitcast(self.scales, tf.float16), tf.float32)[0]
        out = rows * scale
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
            "granularity": self.granularity,
            "mask_zero": self.mask_zero,
            "output_range": None if self.output_range is None else list(self.output_range),
        }


# --------------------------------------------------------------------------- model rewrite


def _is_quantize_wrapper(layer: Any) -> bool:
    """A TFMOT ``QuantizeWrapper`` (checked by module, so TFMOT need not be imported)."""
    return any(
        c.__name__.startswith("QuantizeWrapper")
        and c.__module__.startswith("tensorflow_model_optimization")
        for c in type(layer).__mro__
    )


def embedding_of(layer: Any) -> keras.layers.Embedding | None:
    """The ``Embedding`` of ``layer``: itself, or the one a TFMOT wrapper wraps; else None."""
    if isinstance(layer, keras.layers.Embedding):
        return layer
    inner = getattr(layer, "layer", None)
    if _is_quantize_wrapper(layer) and isinstance(inner, keras.layers.Embedding):
        return inner
    return None


def _qat_granularity(layer: Any) -> str | None:
    return getattr(getattr(layer, "quantize_config", None), "granularity", None)


def _qat_table_and_range(
    layer: Any, embedding: keras.layers.Embedding
) -> tuple[Any, tuple[float, float] | None, str | None]:
    """For a TFMOT-wrapped Embedding: its output range and the granularity its QAT used."""
    if layer is embedding:
        return embedding.embeddings, None, None
    granularity = getattr(getattr(layer, "quantize_config", None), "granularity", None)
    # TFMOT replaced `embedding.embeddings` by the fake-quant tensor of its last call; the
    # variable itself is in the wrapper's (weight, quantizer, variables) triples.
    table = next(
        (w for w, q, _ in quantized_weights(layer) if hasattr(q, "granularity")),
        None,
    )
    if table is None:
        table = next((w for w in embedding.weights if "embeddings" in w.name), None)
    output_range = None
    variables = output_quantizer_vars(layer)
    if variables:
        lo = float(np.asarray(variables["min_var"].numpy()).reshape(-1)[0])
        hi = float(np.asarray(variables["max_var"].numpy()).reshape(-1)[0])
        output_range = (min(lo, 0.0), max(hi, 0.0))
    return table, output_range, granularity


def quantize_embeddings(
    model: keras.Model,
    *,
    granularity: str = "auto",
    layers: LayerFilter = None,
    skip: LayerFilter = None,
    min_rows: int = 1,
    bits: int = 8,
    scale_dtype: str | None = None,
) -> keras.Model:
    """Return a copy of ``model`` whose ``Embedding`` layers are :class:`QuantizedEmbedding`.

    With ``bits=4`` they are :class:`~tfcompress.quantization.embedding_int4.QuantizedEmbedding4`
    instead (int4 codes two a byte, a float16 scale and offset per row, or with
    ``scale_dtype="codebook"`` one byte a row; ``granularity`` is then ignored: int4 is always
    per row).

    Every other layer is shared with ``model`` (not copied), so the new model computes the same
    function up to the int8 rounding of the tables; it is meant for export and evaluation (the
    tables are not trainable). Embeddings of a QAT model (:func:`tfcompress.quantize`) keep the
    granularity and output range they trained with (tables quantized per row ignore
    ``min_rows``: the converter cannot store them), so the copy reproduces the QAT model.
    Nested functional models are rewritten too. A per-layer report is attached as
    ``new_model.compression_report`` (technique ``"embeddings"``).

    Args:
        model: a functional or Sequential tf_keras model.
        granularity: ``"row"`` (a float16 scale per row, 2 bytes), ``"tensor"`` (one scale) or
            ``"auto"`` (per row for rows of >= 32 values, else one scale).
        layers: layer filter of the embeddings to quantize (default: all).
        skip: layer filter of embeddings to keep in float.
        min_rows: tables with fewer rows stay float (their bytes do not matter).
        bits: 8 (int8 rows, default) or 4 (int4 rows).
        scale_dtype: with ``bits=4``: ``"float16"``, ``"float32"`` or ``"codebook"`` (the
            compact rows, 9 bytes at width 16); None: an ``Int4AwareEmbedding``'s own (what it
            fine-tuned with), else ``"float16"``.

    Returns:
        The new model (or ``model`` itself when no embedding was selected).

    Raises:
        TypeError: ``model`` is not a tf_keras model; bad filter types.
        ValueError: bad ``granularity``/``min_rows``, a filter naming no layer, or a
            subclassed model (its layers cannot be swapped).

    Example:
        >>> small = quantize_embeddings(model, skip="emb_hour")  # doctest: +SKIP
        >>> small.compression_report["emb_user_id"].applied  # doctest: +SKIP
        True
    """
    check_model(model, "model")
    check_granularity(granularity, allow_auto=True)
    if isinstance(min_rows, bool) or not isinstance(min_rows, (int, np.integer)) or min_rows < 1:
        raise ValueError(f"`min_rows` must be an int >= 1, received {min_rows!r}.")
    check_choice(
        bits,
        "bits",
        EMBEDDING_BITS,
        where="quantize_embeddings",
        fix="Pass bits=8 (int8 rows) or bits=4 (int4 rows, two codes a byte).",
    )
    check_int4_scale_dtype(scale_dtype, bits)
    pairs = [(p, lyr) for p, lyr in iter_layers(model) if embedding_of(lyr) is not None]
    selected = {p for p, _ in pairs} if layers is None else match_layers(model, layers)
    skipped = match_layers(model, skip, argument="skip") if skip is not None else set()
    decisions: dict[str, LayerDecision] = {}
    chosen: dict[int, str] = {}
    for path, layer in pairs:
        emb = embedding_of(layer)
        qat = layer is not emb
        reason = ""
        if path not in selected:
            reason = "not in `layers`"
        elif path in skipped:
            reason = "in `skip`"
        elif emb.input_dim < min_rows and not (qat and _qat_granularity(layer) == "row"):
            reason = f"{emb.input_dim} rows < min_rows={min_rows}: left to the converter"
        elif not tf.as_dtype(emb.dtype).is_floating:
            reason = f"dtype {emb.dtype} is not float"
        if reason:
            decisions[path] = LayerDecision(path, "Embedding", False, reason=reason)
        else:
            chosen[id(layer)] = path
    if not chosen:
        _log.info("quantize_embeddings: no embedding selected in %r", model.name)
        model.compression_report = CompressionReport(  # type: ignore[attr-defined]
            "embeddings", tuple(decisions.values()), {"granularity": granularity, "bits": bits}
        )
        return model

    def swap(layer: Any) -> Any:
        if id(layer) in chosen:
            emb = embedding_of(layer)
            table, output_range, qat_granularity = _qat_table_and_range(layer, emb)
            if bits == 4:
                new, detail = int4_swap(emb, scale_dtype, table, output_range, layer.name)
                decisions[chosen[id(layer)]] = LayerDecision(
                    chosen[id(layer)], "Embedding", True, detail
                )
                return new
            g = qat_granularity or resolve_granularity(granularity, emb.output_dim)
            new = QuantizedEmbedding.from_embedding(
                emb, g, table=table, output_range=output_range, name=layer.name
            )
            detail = "int8 table, " + ("a float16 scale per row" if g == "row" else "one scale")
            if output_range is not None:
                detail += f", output int8 in [{output_range[0]:.3g}, {output_range[1]:.3g}]"
            decisions[chosen[id(layer)]] = LayerDecision(
                chosen[id(layer)], "Embedding", True, detail
            )
            return new
        if isinstance(layer, keras.Model) and any(
            id(inner) in chosen for _, inner in iter_layers(layer)
        ):
            return _clone(layer, swap)
        return layer

    new_model = _clone(model, swap)
    new_model.compression_report = CompressionReport(  # type: ignore[attr-defined]
        "embeddings",
        tuple(decisions[p] for p, _ in pairs if p in decisions),
        {"granularity": granularity, "min_rows": min_rows, "bits": bits}
        | ({"scale_dtype": scale_dtype} if scale_dtype is not None else {}),
    )
    return new_model


def is_qat_model(model: keras.Model) -> bool:
    """True when ``model`` holds TFMOT quantization layers (checked without importing TFMOT)."""
    for layer in flatten_layers(model, include_self=False, recursive=True):
        if _is_quantize_wrapper(layer) or any(
            c.__name__ == "QuantizeLayer"
            for c in type(layer).__mro__  # TFMOT's or a subclass
        ):
            return True
    return False


def check_embeddings_mode(embeddings: object) -> str | None:
    """Validate ``export_tflite(embeddings=...)``: None or one of :data:`EMBEDDING_MODES`."""
    if embeddings is not None and embeddings not in EMBEDDING_MODES:
        raise ValueError(
            f"`embeddings` must be None (int8 tables in the 'dynamic', 'int8' and 'int16x8' "
            f"modes, float otherwise) or one of {list(EMBEDDING_MODES)} ('int4': 4-bit rows, "
            f"two codes a byte; 'int4_compact': the same with 1 byte of parameters a row, 7.1x "
            f"smaller than float at width 16); received {embeddings!r}."
        )
    return embeddings  # type: ignore[return-value]


def prepare_for_export(
    model: keras.Model, mode: str, embeddings: str | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """The model ``export_tflite`` converts for quantization ``mode``, and what was done.

    - A QAT model exported in ``"int8"`` keeps its fake-quant ops (the converter takes the
      trained ranges); in any other mode it is stripped to a float model holding its int8-grid
      weights (:func:`tfcompress.quantization.strip_quantization`).
    - ``embeddings`` None means ``"int8"`` in the ``"dynamic"``, ``"int8"`` and ``"int16x8"``
      modes and ``"float"`` otherwise. ``"int8"`` swaps the tables of at least
      :data:`EXPORT_MIN_ROWS` rows (and every QAT table) for :class:`QuantizedEmbedding`
      (granularity ``"auto"``); ``"int8_row"``/``"int8_tensor"`` force the granularity;
      ``"int4"`` swaps them for int4 tables (``quantize_embeddings(bits=4)``), ``"int4_compact"``
      for compact int4 tables (``quantize_embeddings(bits=4, scale_dtype="codebook")``).

    Returns:
        ``(model_to_convert, info)`` with ``info`` keys ``qat`` (bool), ``embeddings`` (the
        mode applied) and ``embedding_tables`` (``{layer: detail}`` of the swapped tables).
    """
    embeddings = check_embeddings_mode(embeddings)
    choice = embeddings or ("int8" if mode in _QUANTIZED_MODES else "float")
    qat = is_qat_model(model)
    convert = model
    if qat and mode != "int8":
        from tfcompress.quantization.qat import strip_quantization  # TFMOT only when needed

        convert = strip_quantization(model)
    info: dict[str, Any] = {"qat": qat, "embeddings": choice, "embedding_tables": {}}
    if choice == "float":
        return convert, info
    granularity = {"int8": "auto", "int8_row": "row", "int8_tensor": "tensor"}.get(choice, "row")
    # Full int8 stores a one-scale table exactly as QuantizedEmbedding would (symmetric int8, one
    # scale), with one GATHER instead of GATHER + CAST + QUANTIZE + MUL: 10% faster at batch 256
    # on the DCN student, same outputs. Per-row, shared (the converter would store a table read
    # twice twice) and QAT tables still need the swap.
    left = []
    if mode == "int8" and not qat and choice == "int8":
        left = [
            p
            for p, lyr in iter_layers(convert)
            if isinstance(lyr, keras.layers.Embedding)
            and lyr.input_dim >= EXPORT_MIN_ROWS
            and len(inbound_nodes(lyr)) == 1
            and resolve_granularity("auto", int(lyr.output_dim)) == "tensor"
        ]
    swapped = quantize_embeddings(
        convert,
        granularity=granularity,
        min_rows=EXPORT_MIN_ROWS,
        bits=4 if choice in INT4_MODES else 8,
        scale_dtype=INT4_MODES.get(choice),
        skip=left or None,
    )
    own = {id(layer) for _, layer in iter_layers(convert)}
    for _, layer in iter_layers(swapped):
        if isinstance(layer, QuantizedEmbedding4) and id(layer) not in own:
            # full-integer converters requantize the float nibble unpack to int8: unpack in int32
            layer.integer_unpack = mode in ("int8", "int16x8")
    info["embedding_tables"] = {
        d.layer: d.detail
        for d in swapped.compression_report.applied  # type: ignore[attr-defined]
    }
    info["embedding_tables"].update(
        {p: "int8 table, one scale (by the converter: one GATHER)" for p in left}
    )
    return swapped, info


def _clone(model: keras.Model, clone_function: Callable[[Any], Any]) -> keras.Model:
    """``clone_model`` that reuses the layers ``clone_function`` returns unchanged."""
    if not isinstance(model, keras.Sequential) and not is_graph_network(model):
        raise ValueError(
            f"Model {model.name!r} is a subclassed model; its Embedding layers cannot be swapped. "
            "Build it with the functional API or keras.Sequential."
        )
    return keras.models.clone_model(model, clone_function=clone_function)
