"""Table layers other than ``Embedding`` in ``export_tflite(embeddings=...)``'s storage: a
registry (layer class -> handler) users can extend (:func:`register_table_storage`) and the
export's swap (:func:`store_tables`).

``export_tflite(model, path, embeddings="int8" | "int8_row" | "int8_tensor" | "int4" |
"int4_compact")`` stores plain ``Embedding`` tables as int8/int4 rows
(:func:`tfcompress.quantization.embedding.prepare_for_export`); the tables of
:mod:`tfcompress.embeddings` (``QREmbedding``, ``HashedEmbedding``, ``MixedDimEmbedding``) are
other layers, so this module swaps each for its stored twin (:mod:`tfcompress.export.table_layers`)
in the same modes and under the same rule: a row table of fewer than
:data:`~tfcompress.quantization.embedding.EXPORT_MIN_ROWS` rows stays float (left to the
converter). A layer that cannot be stored (a subclass nobody registered, a subclassed model,
tables all too small) stays float and its reason is recorded in the export's
``options["embedding_tables_left"]`` (and the manifest); nothing fails.

Example:
    >>> from tfcompress._keras import keras
    >>> from tfcompress.embeddings.compositional import QREmbedding
    >>> ids = keras.Input((1,), dtype="int32", name="ids")
    >>> model = keras.Model(ids, QREmbedding(10_000, 8, 100, name="qr")(ids))
    >>> stored, info = store_tables(model, "int8_row")
    >>> info["embedding_tables"]["qr"].split(";")[0]
    'QREmbedding: quotient 100x8 int8 rows (a float16 scale per row), 1000 bytes'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tfcompress._compat import is_graph_network
from tfcompress._keras import keras
from tfcompress._layers import iter_layers
from tfcompress._validation import check_choice, check_int
from tfcompress.embeddings.compositional import HashedEmbedding, QREmbedding
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.export.table_layers import (
    StoredHashedEmbedding,
    StoredMixedDimEmbedding,
    StoredQREmbedding,
)
from tfcompress.quantization.embedding import EMBEDDING_MODES, EXPORT_MIN_ROWS
from tfcompress.quantization.table_storage import (
    resolve_storage,
    storage_bytes,
    storage_detail,
    stored_table,
)

__all__ = [
    "TableHandler",
    "TableStorage",
    "register_table_storage",
    "registered_tables",
    "store_tables",
    "with_stored_tables",
]

_log = logging.getLogger("tfcompress")


class TableStorage:
    """What a table handler is asked for: the export's ``embeddings`` mode, the row rule, and
    :meth:`table`, which returns a gather layer holding a float table in that storage.

    Attributes:
        mode: ``export_tflite``'s ``embeddings`` mode (not ``"float"``).
        min_rows: row tables with fewer rows stay float.
        integer_unpack: int4 tables unpack in int32 (the full-integer export modes).
        parts: what :meth:`table` stored, one line a table (the export records them).
        bytes_before: the float32 bytes of those tables; bytes_after: their stored bytes.

    Example:
        >>> storage = TableStorage("int4")
        >>> storage.storage_for(1000, 16), storage.storage_for(10, 16)
        ('int4', 'float')
    """

    def __init__(
        self, mode: str, min_rows: int = EXPORT_MIN_ROWS, integer_unpack: bool = False
    ) -> None:
        check_choice(
            mode,
            "mode",
            EMBEDDING_MODES[1:],
            where="TableStorage",
            fix="Pass one of export_tflite's embeddings modes other than 'float'.",
        )
        self.mode = mode
        self.min_rows = check_int(min_rows, "min_rows", minimum=1, where="TableStorage")
        self.integer_unpack = bool(integer_unpack)
        self.parts: list[str] = []
        self.bytes_before = 0  # float32 bytes of the tables in parts
        self.bytes_after = 0  # their stored bytes

    def float_reason(self, rows: int, dim: int) -> str:
        """Why a ``rows x dim`` table stays float (under ``min_rows`` rows, or the mode's
        storage would not be smaller, e.g. int4 rows of 1 value); ``""`` when it is stored."""
        if rows < self.min_rows:
            return f"< {self.min_rows} rows: left to the converter"
        storage = resolve_storage(self.mode, dim)
        if storage_bytes(rows, dim, storage) >= storage_bytes(rows, dim, "float"):
            return f"{storage} would not be smaller: left float"
        return ""

    def storage_for(self, rows: int, dim: int) -> str:
        """The storage of a ``rows x dim`` table: ``"float"`` when :meth:`float_reason` says
        so, else the mode's (``"int8"`` resolved to ``"int8_row"``/``"int8_tensor"`` by
        width)."""
        return "float" if self.float_reason(rows, dim) else resolve_storage(self.mode, dim)

    def table(self, values: Any, name: str) -> keras.layers.Layer:
        """A gather layer (an ``Embedding``, ``QuantizedEmbedding`` or ``QuantizedEmbedding4``)
        holding the ``(rows, dim)`` float table ``values`` in :meth:`storage_for`'s storage;
        recorded in :attr:`parts`."""
        rows, dim = values.shape
        storage = self.storage_for(int(rows), int(dim))
        layer = stored_table(values, storage, name=name, integer_unpack=self.integer_unpack)
        self.note(layer, name, self.float_reason(int(rows), int(dim)))
        return layer

    def note(self, layer: keras.layers.Layer, name: str, why: str = "") -> None:
        """Record a gather layer of :mod:`tfcompress.quantization.table_storage` in
        :attr:`parts` (``why``: why it stayed float)."""
        rows, dim = int(layer.input_dim), int(layer.output_dim)
        self.parts.append(f"{name} {storage_detail(layer)}" + (f" ({why})" if why else ""))
        self.bytes_before += rows * dim * 4
        self.bytes_after += sum(int(w.numpy().nbytes) for w in layer.weights)


#: ``handler(layer, storage)``: the layer to export in ``layer``'s place (its row tables in
#: ``storage``), or a string: the reason ``layer`` stays float
TableHandler = Callable[[keras.layers.Layer, TableStorage], Any]


def _twin(cls: Any, shapes: Callable[[Any], list[tuple[int, int]]]) -> TableHandler:
    """A handler building ``cls.from_layer`` with a storage per row table of ``shapes``."""

    def handler(layer: Any, storage: TableStorage) -> Any:
        sizes = shapes(layer)
        reasons = [storage.float_reason(rows, dim) for rows, dim in sizes]
        if all(reasons):
            listed = ", ".join(
                f"{r}x{d}: {why}" for (r, d), why in zip(sizes, reasons, strict=True)
            )
            return f"every row table stays float ({listed})"
        storages = [storage.storage_for(rows, dim) for rows, dim in sizes]
        new = cls.from_layer(layer, storages, integer_unpack=storage.integer_unpack)
        for table, why in zip(new.tables, reasons, strict=True):
            storage.note(table, table.name, why)
        return new

    return handler


_HANDLERS: dict[type, TableHandler] = {
    QREmbedding: _twin(
        StoredQREmbedding, lambda layer: [tuple(layer.quotient.shape), tuple(layer.remainder.shape)]
    ),
    HashedEmbedding: _twin(StoredHashedEmbedding, lambda layer: [tuple(layer.table.shape)]),
    MixedDimEmbedding: _twin(
        StoredMixedDimEmbedding, lambda layer: [tuple(t.shape) for t in layer.tables]
    ),
}


def register_table_storage(layer_class: type, handler: TableHandler) -> None:
    """Let ``export_tflite(embeddings=...)`` store the row tables of ``layer_class`` layers.

    At export, each layer of exactly ``layer_class`` (not a subclass: its lookup may differ;
    register the subclass too) is replaced by ``handler(layer, storage)``: a layer computing
    the same lookup whose row tables are gather layers from ``storage.table(values, name)``
    (:class:`TableStorage`; float, int8 or int4 rows as the mode asks, float under
    ``storage.min_rows`` rows), or a string saying why ``layer`` stays float (recorded in the
    export's ``options["embedding_tables_left"]``). A second registration of a class replaces
    the first.

    Args:
        layer_class: a ``keras.layers.Layer`` subclass.
        handler: ``handler(layer, storage) -> Layer | str``.

    Raises:
        TypeError: ``layer_class`` is not a Layer subclass; ``handler`` is not callable.

    Example:
        >>> class MyTable(keras.layers.Layer):  # a lookup of one 2-D weight `rows`
        ...     def __init__(self, n=100, d=4, **kw):
        ...         super().__init__(**kw)
        ...         self.rows = self.add_weight(name="rows", shape=(n, d))
        ...     def call(self, ids):
        ...         return keras.backend.gather(self.rows, ids)
        >>> register_table_storage(MyTable, lambda layer, s: s.table(layer.rows.numpy(), "rows"))
    """
    if not isinstance(layer_class, type) or not issubclass(layer_class, keras.layers.Layer):
        raise TypeError(
            f"register_table_storage: `layer_class` must be a keras.layers.Layer subclass (the "
            f"class, not an instance), received {layer_class!r} ({type(layer_class).__name__})."
        )
    if not callable(handler):
        raise TypeError(
            f"register_table_storage: `handler` for {layer_class.__name__} must be callable as "
            f"handler(layer, storage) -> Layer | str, received {handler!r} "
            f"({type(handler).__name__})."
        )
    if layer_class in _HANDLERS:
        _log.info("register_table_storage: replacing the handler of %s", layer_class.__name__)
    _HANDLERS[layer_class] = handler


def registered_tables() -> dict[type, TableHandler]:
    """A copy of the registry: layer class -> handler.

    Example:
        >>> {c.__name__ for c in registered_tables()} >= {"QREmbedding", "HashedEmbedding"}
        True
    """
    return dict(_HANDLERS)


def _known(layer: Any) -> type | None:
    """The registered class ``layer`` is an instance of (exactly or by subclassing)."""
    if type(layer) in _HANDLERS:
        return type(layer)
    return next((c for c in _HANDLERS if isinstance(layer, c)), None)


def store_tables(
    model: keras.Model, mode: str | None, *, integer_unpack: bool = False
) -> tuple[keras.Model, dict[str, Any]]:
    """A copy of ``model`` with its registered table layers stored in ``mode``, and what was
    done.

    Every other layer is shared with ``model`` (as in ``quantize_embeddings``); nested
    functional models are rewritten too.

    Args:
        model: a tf_keras model.
        mode: ``export_tflite``'s resolved ``embeddings`` mode; None or ``"float"`` returns
            ``model`` unchanged.
        integer_unpack: int4 tables unpack in int32 (the ``"int8"``/``"int16x8"`` modes).

    Returns:
        ``(model, info)``: ``info["embedding_tables"]`` ``{layer path: what was stored}``,
        ``info["embedding_tables_left"]`` ``{layer path: why it stayed float}``.

    Example:
        >>> stored, info = store_tables(model, "int4")  # doctest: +SKIP
    """
    info: dict[str, Any] = {"embedding_tables": {}, "embedding_tables_left": {}}
    if mode in (None, "float"):
        return model, info
    tables = [(p, layer) for p, layer in iter_layers(model) if _known(layer) is not None]
    if not tables:
        return model, info
    if not isinstance(model, keras.Sequential) and not is_graph_network(model):
        for path, layer in tables:
            info["embedding_tables_left"][path] = (
                f"{type(layer).__name__}: model {model.name!r} is a subclassed model, its "
                "layers cannot be swapped; build it with the functional API to store them"
            )
        return model, info
    swaps: dict[int, Any] = {}
    for path, layer in tables:
        known = _known(layer)
        cls = type(layer).__name__
        if known is not type(layer):
            info["embedding_tables_left"][path] = (
                f"{cls} is a subclass of {known.__name__} (its lookup may differ): left float; "
                f"register_table_storage({cls}, handler) to store it"
            )
            continue
        storage = TableStorage(mode, integer_unpack=integer_unpack)
        new = _HANDLERS[known](layer, storage)
        if isinstance(new, str):
            info["embedding_tables_left"][path] = f"{cls}: {new}"
        elif not isinstance(new, keras.layers.Layer):
            raise TypeError(
                f"The table handler of {cls} returned {type(new).__name__} for layer "
                f"{layer.name!r}; it must return a keras Layer (the stored twin) or a string "
                "(why the layer stays float)."
            )
        else:
            swaps[id(layer)] = new
            info["embedding_tables"][path] = (
                f"{cls}: {'; '.join(storage.parts)}; {storage.bytes_before:,} -> "
                f"{storage.bytes_after:,} bytes"
            )
    if swaps:
        model = _clone(model, swaps)
    for path, reason in info["embedding_tables_left"].items():
        _log.info("export: table %r stays float: %s", path, reason)
    return model, info


def _clone(model: keras.Model, swaps: dict[int, Any]) -> keras.Model:
    """``model`` with ``swaps[id(layer)]`` in place of those layers (others shared)."""

    def swap(layer: Any) -> Any:
        if id(layer) in swaps:
            return swaps[id(layer)]
        if isinstance(layer, keras.Model) and any(id(x) in swaps for _, x in iter_layers(layer)):
            return _clone(layer, swaps)
        return layer

    return keras.models.clone_model(model, clone_function=swap)


def with_stored_tables(
    model: keras.Model, prepared: dict[str, Any], quantization: str
) -> tuple[keras.Model, dict[str, Any]]:
    """``export_tflite``'s step after ``prepare_for_export``: :func:`store_tables` in the
    ``embeddings`` mode it applied, its records merged into ``prepared`` (``embedding_tables``;
    ``embedding_tables_left`` when a table stayed float).

    Example:
        >>> model, prepared = with_stored_tables(model, prepared, "float32")  # doctest: +SKIP
    """
    model, info = store_tables(
        model, prepared["embeddings"], integer_unpack=quantization in ("int8", "int16x8")
    )
    merged = {**prepared["embedding_tables"], **info["embedding_tables"]}
    prepared = {**prepared, "embedding_tables": merged}
    if info["embedding_tables_left"]:
        prepared["embedding_tables_left"] = info["embedding_tables_left"]
    return model, prepared
