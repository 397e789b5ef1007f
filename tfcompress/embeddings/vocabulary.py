"""Rare-id (vocabulary) pruning: :func:`prune_vocabulary` gives the ids seen fewer than
``min_count`` times shared OOV rows, so a table keeps only the rows its data asks for
(docs/embeddings.md, "Rare-id pruning").

The pruned model still takes the original ids: each pruned table becomes a small nested
``Sequential([IdRemap, Embedding(kept rows)])``. ``IdRemap`` holds the int32 mapping (one TFLite
GATHER); the smaller table is a plain ``keras.layers.Embedding``, so ``quantize_embeddings`` and
``export_tflite(embeddings="int8" | "int4")`` still find and quantize it.
:func:`save_vocabulary` writes the mappings for a serving stack that remaps ids itself, and
:func:`detach_vocabulary` gives the model without them (it takes rows, not ids).

Example:
    >>> ids = keras.Input((1,), dtype="int32", name="item")
    >>> emb = keras.layers.Embedding(6, 2, name="emb")
    >>> model = keras.Model(ids, emb(ids))
    >>> small, report = prune_vocabulary(model, {"emb": np.array([9, 5, 0, 3, 0, 1])}, min_count=2)
    >>> report.settings["tables"]["emb"]["mapping"].tolist()
    [0, 1, 3, 2, 3, 3]
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, LayerDecision, iter_layers
from tfcompress._validation import check_bool, check_functional, check_int
from tfcompress.embeddings._tables import (
    check_counts,
    chosen_tables,
    clone_with,
    nested_tables,
    select_tables,
)
from tfcompress.embeddings.detach import detach_vocabulary
from tfcompress.embeddings.remap import BlockedIdRemap, blocked_map_bytes

__all__ = [
    "IdRemap",
    "detach_vocabulary",
    "load_vocabulary",
    "prune_vocabulary",
    "save_vocabulary",
    "vocabulary_mapping",
]

_META_KEY = "__tfcompress_vocabulary__"


@keras.saving.register_keras_serializable(package="tfcompress")
class IdRemap(keras.layers.Layer):
    """Map ids through a constant int32 table: ``mapping[ids]`` (one TFLite GATHER).

    Args:
        size: number of ids the mapping covers (the original vocabulary size).

    Example:
        >>> remap = IdRemap(4)
        >>> remap.set_mapping(np.array([0, 2, 1, 1]))
        >>> remap(tf.constant([[3, 1]])).numpy().tolist()
        [[1, 2]]
    """

    def __init__(self, size: int, **kwargs: Any) -> None:
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.size = check_int(size, "size", minimum=1, where=f"IdRemap {self.name!r}")
        self.mapping = self.add_weight(
            name="mapping", shape=(self.size,), dtype="int32", initializer="zeros", trainable=False
        )

    def set_mapping(self, mapping: Any) -> None:
        """Assign the mapping (``size`` non-negative ints)."""
        mapping = np.asarray(mapping)
        if mapping.shape != (self.size,) or (mapping.size and mapping.min() < 0):
            raise ValueError(
                f"IdRemap {self.name!r}: `mapping` must hold {self.size} non-negative ids, "
                f"received shape {mapping.shape}."
            )
        self.mapping.assign(mapping.astype(np.int32))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        ids = inputs if inputs.dtype == tf.int32 else tf.cast(inputs, tf.int32)
        return tf.gather(self.mapping, ids)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


def vocabulary_mapping(
    counts: Any, *, min_count: int = 1, max_ids: int | None = None, oov_buckets: int = 1
) -> tuple[np.ndarray, int]:
    """The id -> row mapping of :func:`prune_vocabulary` for one table's ``counts``.

    Row 0 is id 0 (padding); rows ``1..k`` the kept ids in id order (``count >= min_count``,
    at most the ``max_ids`` most frequent, ties to the lower id); rows ``k+1..k+oov_buckets``
    the OOV rows, a pruned id going to ``k + 1 + id % oov_buckets``.

    Returns:
        ``(mapping, kept)``: int32 ``mapping`` (one row per id) and ``kept`` (``k``).

    Example:
        >>> vocabulary_mapping(np.array([0, 4, 1, 7]), min_count=2)[0].tolist()
        [0, 1, 3, 2]
    """
    counts = np.asarray(counts, dtype=np.float64)
    keep = counts >= min_count
    keep[0] = False
    if max_ids is not None and keep.sum() > max_ids:
        candidates = np.flatnonzero(keep)
        order = np.lexsort((candidates, -counts[candidates]))  # count desc, then id asc
        keep[:] = False
        keep[candidates[order[:max_ids]]] = True
    kept_ids = np.flatnonzero(keep)
    mapping = np.empty(counts.shape[0], np.int64)
    mapping[0] = 0
    mapping[kept_ids] = np.arange(1, kept_ids.size + 1)
    pruned = np.flatnonzero(~keep)
    pruned = pruned[pruned != 0]
    mapping[pruned] = kept_ids.size + 1 + pruned % oov_buckets
    return mapping.astype(np.int32), int(kept_ids.size)


def _shrunk_table(
    table: np.ndarray, counts: np.ndarray, mapping: np.ndarray, rows: int
) -> np.ndarray:
    """Rows of the small table: copies of the kept rows; OOV rows the frequency-weighted mean
    of the rows they replace (their plain mean if none of them was seen)."""
    out = np.zeros((rows, table.shape[1]), table.dtype)
    sums = np.zeros((rows, table.shape[1]), np.float64)
    weights = np.zeros(rows, np.float64)
    members = np.zeros(rows, np.int64)
    np.add.at(sums, mapping, table * counts[:, None])
    np.add.at(weights, mapping, counts)
    np.add.at(members, mapping, 1)
    plain = np.zeros((rows, table.shape[1]), np.float64)
    np.add.at(plain, mapping, table)
    seen = weights > 0
    out[seen] = sums[seen] / weights[seen, None]
    unseen = ~seen & (members > 0)
    out[unseen] = plain[unseen] / members[unseen, None]
    return out


def prune_vocabulary(
    model: keras.Model,
    counts: Mapping[str, Any],
    *,
    min_count: int = 1,
    max_ids: int | None = None,
    tables: str | Sequence[str] | None = None,
    oov_buckets: int = 1,
    compact_map: bool = False,
) -> tuple[keras.Model, CompressionReport]:
    """Give each chosen table's rare ids shared OOV rows; return the smaller model.

    For each ``Embedding`` table (top-level layers of a functional model, and the tables of
    its functional or Sequential sub-models, named by path: ``"tower/emb_item"``, as
    :func:`~tfcompress.embeddings.count_ids` names them), ids seen fewer than
    ``min_count`` times in ``counts`` (or beyond the ``max_ids`` most frequent) share
    ``oov_buckets`` rows (``id % oov_buckets`` picks one). Kept rows are copied from the
    trained table; an OOV row starts at the frequency-weighted mean of the rows it replaces.
    Id 0 (padding) always keeps its own row 0, so ``mask_zero`` and masked pooling still work.
    The new model takes the original ids (see the module docstring); tables read by several
    inputs stay shared. Every other layer is a copy with the same weights, so the new model
    can be fine-tuned with a ``Distiller`` from ``model``. The mapping layout is
    :func:`vocabulary_mapping`'s. A sub-model holding a pruned table is rebuilt around its
    remapped twin (its other layers copies with the same weights); a nested table that cannot
    be pruned (inside a subclassed model, shared by two sub-models, or, unless named in
    ``tables``, absent from ``counts``) is left alone with the reason in the report.

    Args:
        model: a functional or Sequential tf_keras model.
        counts: ``{table name: counts per id}``, as :func:`~tfcompress.embeddings.count_ids`
            returns.
        min_count: ids seen fewer times are pruned (>= 1; 1 prunes the ids never seen).
        max_ids: keep at most this many ids (besides padding) per table, the most frequent.
        tables: a table name or path (``"tower/emb_item"``), or a list of them (default:
            every ``Embedding``).
        oov_buckets: OOV rows per table (>= 1).
        compact_map: store each table's id map as a
            :class:`~tfcompress.embeddings.remap.BlockedIdRemap` (a uint8 offset an id and an
            int32 base row per 255 ids: ~1 byte an id) instead of an :class:`IdRemap` (an
            int32 an id); a few more ops a lookup. (With fewer pruned ids than
            ``oov_buckets`` the map stays an ``IdRemap``.)

    Returns:
        ``(new_model, report)``. ``report.settings["tables"][name]`` holds ``bytes_before``,
        ``bytes_after`` (the smaller table plus the mapping: 4 bytes an id, ~1 with
        ``compact_map``), ``rows_before``,
        ``rows_kept`` (kept ids plus padding), ``oov_rows``, ``pruned_ids``,
        ``pruned_impression_share`` (share of the counted lookups that hit a pruned id) and
        ``mapping``. ``new_model`` is ``model`` itself when nothing was pruned.

    Raises:
        TypeError: ``model`` is not a tf_keras model, or bad ``counts``/``tables`` types.
        ValueError: bad ``min_count``/``max_ids``/``oov_buckets``, a ``tables`` name that is no
            layer, ``counts`` missing a chosen table or of the wrong length, a subclassed model.

    Example:
        >>> counts = count_ids(model, train_data)  # doctest: +SKIP
        >>> small, report = prune_vocabulary(model, counts, min_count=5)  # doctest: +SKIP
        >>> report.settings["tables"]["emb_item_id"]["bytes_after"]  # doctest: +SKIP
    """
    check_model(model, "model")
    check_int(min_count, "min_count", minimum=1, where="prune_vocabulary")
    if max_ids is not None:
        check_int(max_ids, "max_ids", minimum=1, where="prune_vocabulary")
    check_int(oov_buckets, "oov_buckets", minimum=1, where="prune_vocabulary")
    check_bool(compact_map, "compact_map", where="prune_vocabulary")
    check_functional(model, "prune_vocabulary")
    layers, selected = select_tables(tables, model, nested=True)
    settings: dict[str, Any] = {
        "min_count": min_count,
        "max_ids": max_ids,
        "oov_buckets": oov_buckets,
        "compact_map": compact_map,
        "tables": {},
    }
    decisions: list[LayerDecision] = []
    swaps: dict[int, keras.Sequential] = {}
    options = (min_count, max_ids, oov_buckets, compact_map)
    for layer in chosen_tables(layers, selected, decisions):
        _plan(
            layer,
            layer.name,
            check_counts(counts, layer.name, int(layer.input_dim)),
            options,
            settings,
            decisions,
            swaps,
        )
    for table in nested_tables(model):
        cls = type(table.layer).__name__
        reason = table.reason
        if selected is not None and table.path not in selected:
            reason = "not in `tables`"
        elif (
            not reason
            and selected is None
            and isinstance(counts, Mapping)
            and table.path not in counts
        ):
            reason = (
                "no `counts` entry: count its ids with count_ids(model, data), which logs "
                "why a nested table cannot be counted"
            )
        if reason:
            decisions.append(LayerDecision(table.path, cls, False, reason=reason))
            continue
        size = int(table.layer.input_dim)
        _plan(
            table.layer,
            table.path,
            check_counts(counts, table.path, size),
            options,
            settings,
            decisions,
            swaps,
        )
    report = CompressionReport("vocabulary", tuple(decisions), settings)
    if not swaps:
        return model, report

    new_model = clone_with(model, swaps)
    new_model.compression_report = report  # type: ignore[attr-defined]
    return new_model, report


def _plan(
    layer: keras.layers.Embedding,
    name: str,
    values: np.ndarray,
    options: tuple[int, int | None, int, bool],
    settings: dict[str, Any],
    decisions: list[LayerDecision],
    swaps: dict[int, keras.Sequential],
) -> None:
    """Plan one table named ``name`` (its path): its stats in ``settings["tables"]``, its
    decision, and its remapped twin in ``swaps`` (nothing when every id is kept)."""
    min_count, max_ids, oov_buckets, compact_map = options
    cls = type(layer).__name__
    size = int(layer.input_dim)
    mapping, kept = vocabulary_mapping(
        values, min_count=min_count, max_ids=max_ids, oov_buckets=oov_buckets
    )
    pruned = size - 1 - kept
    if pruned == 0:
        decisions.append(
            LayerDecision(name, cls, False, reason="nothing to prune: every id is kept")
        )
        return
    oov = min(oov_buckets, pruned)
    blocked = compact_map
    if oov < oov_buckets:  # fewer pruned ids than buckets: no empty OOV rows
        mapping = _compact(mapping, kept)
        blocked = False  # its OOV rows no longer follow id % oov_buckets
    rows = kept + 1 + oov
    table = np.asarray(layer.get_weights()[0])
    itemsize = table.dtype.itemsize
    total = values[1:].sum()
    hit = values[1:][mapping[1:] > kept].sum()
    stats = {
        "bytes_before": int(size * layer.output_dim * itemsize),
        "bytes_after": int(
            rows * layer.output_dim * itemsize + (blocked_map_bytes(size) if blocked else 4 * size)
        ),
        "rows_before": size,
        "rows_kept": kept + 1,
        "oov_rows": oov,
        "pruned_ids": pruned,
        "pruned_impression_share": float(hit / total) if total else 0.0,
        "mapping": mapping,
    }
    settings["tables"][name] = stats
    remap: IdRemap | BlockedIdRemap = (
        BlockedIdRemap(size, kept + 1, oov_buckets, name=f"{layer.name}_remap")
        if blocked
        else IdRemap(size, name=f"{layer.name}_remap")
    )
    remap.set_mapping(mapping)
    swaps[id(layer)] = _remapped_table(
        layer, layer.name, remap, rows, _shrunk_table(table, values, mapping, rows)
    )
    decisions.append(
        LayerDecision(
            name,
            cls,
            True,
            f"{size} -> {rows} rows ({kept} kept ids + padding + {oov} OOV), "
            f"{stats['bytes_before']} -> {stats['bytes_after']} bytes (mapping included), "
            f"{stats['pruned_impression_share']:.2%} of lookups pruned",
        )
    )


def _compact(mapping: np.ndarray, kept: int) -> np.ndarray:
    """Renumber the OOV rows actually used to ``kept+1, kept+2, ...``."""
    oov = mapping > kept
    _, inverse = np.unique(mapping[oov], return_inverse=True)
    out = mapping.copy()
    out[oov] = kept + 1 + inverse.reshape(-1)
    return out.astype(np.int32)


def _remapped_table(
    layer: keras.layers.Embedding,
    name: str,
    remap: IdRemap | BlockedIdRemap,
    rows: int,
    small: np.ndarray,
) -> keras.Sequential:
    """``remap -> Embedding(rows)`` as a nested model named like ``layer``.

    A Sequential left unbuilt (no Input): ``clone_model`` then numbers its calls like the
    Embedding's (a functional sub-model's own first node would shift them, and tf_keras'
    graph rebuild never finishes).
    """
    config = layer.get_config()
    config.update(name=f"{name}_kept", input_dim=rows, input_length=None)
    table = keras.layers.Embedding.from_config(config)
    table.build((None,))
    table.set_weights([small.astype(np.asarray(layer.get_weights()[0]).dtype)])
    return keras.Sequential([remap, table], name=name)


def _mappings(model_or_report: Any) -> dict[str, np.ndarray]:
    if isinstance(model_or_report, CompressionReport):
        tables = model_or_report.settings.get("tables")
        if model_or_report.technique != "vocabulary" or not isinstance(tables, dict):
            raise ValueError(
                f"save_vocabulary: the report is a {model_or_report.technique!r} report; pass "
                "the report or the model prune_vocabulary returned."
            )
        return {name: np.asarray(t["mapping"], np.int32) for name, t in tables.items()}
    check_model(model_or_report, "model_or_report")
    out: dict[str, np.ndarray] = {}
    for path, layer in iter_layers(model_or_report):
        if isinstance(layer, (IdRemap, BlockedIdRemap)):
            table = path.rsplit("/", 1)[0] if "/" in path else path
            values = layer.mapping() if isinstance(layer, BlockedIdRemap) else layer.mapping
            out[table] = np.asarray(values).astype(np.int32)
    return out


def save_vocabulary(model_or_report: Any, path: str | os.PathLike) -> Path:
    """Write the id -> row mappings of a pruned model (or its report) to an ``.npz`` file.

    One int32 array per table (``mapping[id]`` = row of the pruned table), written atomically
    (a temporary file, then a rename). Read it back with :func:`load_vocabulary`.

    Args:
        model_or_report: the model or the report :func:`prune_vocabulary` returned.
        path: the target file; must end in ``.npz``. Its directory is created.

    Returns:
        The written path.

    Raises:
        ValueError: ``path`` does not end in ``.npz``, or the model holds no remapped table.

    Example:
        >>> small, report = prune_vocabulary(model, counts)  # doctest: +SKIP
        >>> save_vocabulary(report, "vocab.npz")  # doctest: +SKIP
    """
    target = Path(path)
    if target.suffix != ".npz":
        raise ValueError(f"save_vocabulary: `path` must end in '.npz', received {str(path)!r}.")
    mappings = _mappings(model_or_report)
    if not mappings:
        raise ValueError(
            "save_vocabulary: `model_or_report` holds no pruned table (no IdRemap layer); pass "
            "what prune_vocabulary returned."
        )
    meta = {
        name: {"ids": int(m.shape[0]), "rows": int(m.max()) + 1} for name, m in mappings.items()
    }
    arrays = {name: m for name, m in mappings.items()}
    arrays[_META_KEY] = np.array(json.dumps({"version": 1, "tables": meta}))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_vocabulary(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the mappings :func:`save_vocabulary` wrote: ``{table name: int32 mapping}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a tfcompress vocabulary file.

    Example:
        >>> load_vocabulary("vocab.npz")["emb_item_id"][:3]  # doctest: +SKIP
        array([0, 1, 1], dtype=int32)
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"load_vocabulary: no file at {str(path)!r}.")
    try:
        with np.load(source, allow_pickle=False) as data:
            if _META_KEY not in data.files:
                raise ValueError("missing metadata")
            meta = json.loads(str(data[_META_KEY]))
            out = {name: data[name].astype(np.int32) for name in meta["tables"]}
    except (ValueError, OSError, KeyError) as err:
        raise ValueError(
            f"load_vocabulary: {str(path)!r} is not a vocabulary file written by "
            f"save_vocabulary ({err})."
        ) from err
    return out
