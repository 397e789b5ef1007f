"""Mixed-dimension embedding tables by id frequency (Ginart et al., arXiv 1909.11810):
:func:`mixed_dimension_embeddings` swaps a model's ``Embedding`` tables for
:class:`~tfcompress.embeddings.mixed_dim_layer.MixedDimEmbedding` layers (popular ids wide, rare
ids narrow and projected to the common width), initialised from the trained tables (choices and
measurements: docs/embeddings.md, "Mixed-dimension tables").

Example:
    >>> ids = keras.Input((1,), dtype="int32", name="ids")
    >>> model = keras.Model(ids, keras.layers.Embedding(100, 8, name="emb")(ids))
    >>> small, report = mixed_dimension_embeddings(model, {"emb": np.arange(100)}, dims=(8, 2, 1))
    >>> report.settings["tables"]["emb"]["blocks"]
    [[1, 8], [9, 2], [90, 1]]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, LayerDecision, iter_layers
from tfcompress._validation import check_float, check_int, must_be
from tfcompress.embeddings.mixed_dim_layer import (
    DEFAULT_BLOCKS,
    MixedDimEmbedding,
    check_dims,
    dims_for_budget,
    frequency_blocks,
    resolve_block_sizes,
    svd_init,
)

__all__ = [
    "DEFAULT_BLOCKS",
    "MIN_ROWS",
    "MixedDimEmbedding",
    "frequency_blocks",
    "mixed_dimension_embeddings",
    "svd_init",
]

_log = logging.getLogger("tfcompress")

#: tables with fewer rows are left alone (their bytes do not matter)
MIN_ROWS = 64


# --------------------------------------------------------------------------- model rewrite


def mixed_dimension_embeddings(
    model: keras.Model,
    counts: Mapping[str, Any],
    *,
    tables: Sequence[str] | str | None = None,
    blocks: Any = DEFAULT_BLOCKS,
    dims: Sequence[int] | None = None,
    budget: float | None = None,
    min_rows: int = MIN_ROWS,
) -> tuple[keras.Model, CompressionReport]:
    """A copy of ``model`` whose embedding tables have frequency-dependent widths.

    Each selected ``Embedding`` becomes a :class:`MixedDimEmbedding`: its ids ranked by
    ``counts`` and cut into ``blocks``; full-width blocks copy the trained rows, narrower ones
    start from the truncated SVD of theirs, so the copy starts close to ``model``. Fine-tune it
    (best distilled from ``model``: ``tfcompress.distillation.Distiller(copy, model)``). Every
    other layer is copied with its weights (the copy shares nothing with ``model``). A table
    read by several inputs stays one table. The report is also attached as
    ``new_model.compression_report`` (technique ``"mixed_dimension"``).

    Args:
        model: a functional or Sequential tf_keras model.
        counts: ``{table name: counts per id}``, e.g. ``count_ids(model, train_data)``.
        tables: the table names to convert (default: every ``Embedding`` with counts and at
            least ``min_rows`` rows).
        blocks: fractions of the ids per block, most frequent first, summing to 1 (default
            1% / 9% / 90%), or rows per block summing to the vocabulary size.
        dims: width per block, non-increasing, at most the table width. Default (without
            ``budget``): ``d // 4**k`` (at least 1).
        budget: instead of ``dims``: the fraction of the float table's bytes to fit (tables,
            projections and the id map, ~1.14 bytes an id); widths follow Ginart's rule
            ``d_k = d * (f_k / f_0) ** alpha`` (``f_k`` a block's mean count), ``alpha`` the
            smallest that fits.
        min_rows: tables with fewer rows are left alone.

    Returns:
        ``(new_model, report)``; ``report.settings["tables"][name]`` holds ``bytes_before``,
        ``bytes_after``, ``blocks`` (``[rows, width]`` per block) and ``init_error`` (the
        relative Frobenius error of the initial table).

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``dims`` and ``budget`` both given; ``dims`` not non-increasing or wider
            than a table; ``blocks`` not covering a vocabulary; an unknown table in ``tables``
            or a selected table without counts; counts of the wrong length; a subclassed model.

    Example:
        >>> counts = count_ids(model, task.train)  # doctest: +SKIP
        >>> small, report = mixed_dimension_embeddings(  # doctest: +SKIP
        ...     model, counts, dims=(16, 4, 1))
        >>> report["emb_item_id"].detail  # doctest: +SKIP
    """
    check_model(model, "model")
    where = "mixed_dimension_embeddings"
    if isinstance(tables, str):
        tables = [tables]
    min_rows = check_int(min_rows, "min_rows", minimum=1, where=where)
    if dims is not None and budget is not None:
        raise ValueError(
            f"{where}: pass `dims` (widths per block) or `budget` (a fraction of the float "
            f"bytes), not both; received dims={dims!r} and budget={budget!r}."
        )
    if budget is not None:
        budget = check_float(budget, "budget", minimum=0.0, maximum=1.0, min_open=True, where=where)
    if not isinstance(counts, Mapping):
        raise TypeError(
            must_be(
                "counts",
                "a dict {table name: counts per id}",
                counts,
                "pass count_ids(model, data).",
                where=where,
            )  # fmt: skip
        )
    found = _selected_tables(model, counts, tables)
    decisions: dict[str, LayerDecision] = {}
    chosen: dict[str, MixedDimEmbedding] = {}
    details: dict[str, dict[str, Any]] = {}
    for name, layer in found.items():
        reason = _skip_reason(layer, counts, tables, min_rows)
        if reason:
            decisions[name] = LayerDecision(name, type(layer).__name__, False, reason=reason)
            continue
        chosen[name], details[name], decisions[name] = _convert(
            layer, counts[name], blocks, dims, budget
        )
    settings = {"blocks": blocks, "dims": dims, "budget": budget, "min_rows": min_rows,
                "tables": details}  # fmt: skip
    report = CompressionReport("mixed_dimension", tuple(decisions.values()), settings)
    if not chosen:
        _log.info("mixed_dimension_embeddings: no table selected in %r", model.name)
    new_model = _clone(model, chosen)
    new_model.compression_report = report  # type: ignore[attr-defined]
    return new_model, report


def _selected_tables(
    model: keras.Model, counts: Mapping[str, Any], tables: Sequence[str] | None
) -> dict[str, keras.layers.Embedding]:
    """The model's tables by name, after checking that ``tables`` name tables with counts."""
    where = "mixed_dimension_embeddings"
    found = {
        layer.name: layer
        for _, layer in iter_layers(model)
        if isinstance(layer, keras.layers.Embedding)
    }
    if tables is None:
        return found
    unknown = [t for t in tables if t not in found]
    if unknown:
        raise ValueError(
            f"{where}: `tables` names {unknown}, which are not Embedding layers of model "
            f"{model.name!r}; its tables: {sorted(found)}."
        )
    missing = [t for t in tables if t not in counts]
    if missing:
        raise ValueError(
            f"{where}: no `counts` for table(s) {missing}; pass count_ids(model, data), which "
            f"counts {sorted(counts)}."
        )
    return found


def _skip_reason(
    layer: keras.layers.Embedding,
    counts: Mapping[str, Any],
    tables: Sequence[str] | None,
    min_rows: int,
) -> str:
    """Why ``layer`` is left alone ("" when it is converted)."""
    if tables is not None and layer.name not in tables:
        return "not in `tables`"
    if layer.name not in counts:
        return "no counts (it reads no model input, or count_ids did not see it)"
    if tables is None and layer.input_dim < min_rows:
        return f"{layer.input_dim} rows < min_rows={min_rows}: its bytes do not matter"
    if not tf.as_dtype(layer.dtype).is_floating:
        return f"dtype {layer.dtype} is not float"
    if layer.output_dim < 2:
        return "width 1: no narrower width exists"
    return ""


def _convert(
    layer: keras.layers.Embedding,
    counts: Any,
    blocks: Any,
    dims: Sequence[int] | None,
    budget: float | None,
) -> tuple[MixedDimEmbedding, dict[str, Any], LayerDecision]:
    """The mixed layer for ``layer``, its report entry and its decision."""
    name = layer.name
    counts = np.asarray(counts)
    if counts.shape != (layer.input_dim,):
        raise ValueError(
            f"mixed_dimension_embeddings: `counts[{name!r}]` has shape {counts.shape}, "
            f"Embedding {name!r} has {layer.input_dim} rows; pass counts of shape "
            f"({layer.input_dim},) (count_ids(model, data) for this model)."
        )
    where = f"mixed_dimension_embeddings (table {name!r})"
    sizes = resolve_block_sizes(blocks, layer.input_dim, where)
    width = layer.output_dim
    if budget is not None:
        widths = dims_for_budget(counts, sizes, width, budget, name)
    elif dims is None:
        widths = [max(width // 4**k, 1) for k in range(len(sizes))]
    else:
        widths = check_dims(dims, len(sizes), width, where)
    new = MixedDimEmbedding.from_embedding(layer, counts, sizes, widths, name=name)
    original = layer.embeddings.numpy()
    error = float(
        np.linalg.norm(new.dense_table() - original) / max(np.linalg.norm(original), 1e-12)
    )
    before = layer.input_dim * width * tf.as_dtype(layer.dtype).size
    after = new.table_bytes()
    pairs = [[int(n), int(d)] for n, d in zip(sizes, widths, strict=True)]
    layout = ", ".join(f"{n}x{d}" for n, d in pairs)
    decision = LayerDecision(
        name,
        type(layer).__name__,
        True,
        f"blocks (rows x width) {layout}; {before} -> {after} bytes ({before / after:.1f}x); "
        f"initial relative error {error:.3f}",
    )
    detail = {"bytes_before": int(before), "bytes_after": int(after), "blocks": pairs,
              "init_error": error}  # fmt: skip
    return new, detail, decision


def _clone(model: keras.Model, chosen: dict[str, MixedDimEmbedding]) -> keras.Model:
    """Clone ``model`` swapping the ``chosen`` tables in and copying every other weight."""
    if not isinstance(model, keras.Sequential) and not is_graph_network(model):
        raise ValueError(
            f"mixed_dimension_embeddings: model {model.name!r} is a subclassed model; its "
            "Embedding layers cannot be swapped. Build it with the functional API or "
            "keras.Sequential."
        )
    copies: list[tuple[Any, Any]] = []

    def swap(layer: Any) -> Any:
        if isinstance(layer, keras.layers.Embedding) and layer.name in chosen:
            return chosen[layer.name]
        if isinstance(layer, keras.Model):
            return _clone(layer, chosen)
        new = layer.__class__.from_config(layer.get_config())
        copies.append((new, layer))
        return new

    new_model = keras.models.clone_model(model, clone_function=swap)
    for new, old in copies:
        new.set_weights(old.get_weights())
    return new_model
