"""Learned row pruning: :func:`learned_row_pruning` fine-tunes with a group-lasso proximal step
on each table's rows, so the rows the loss does not need reach exactly zero, then gives those
ids shared OOV rows like :func:`~tfcompress.embeddings.prune_vocabulary` (docs/embeddings.md,
"Learned row pruning").

This is the row-structured form of PEP (Liu et al., ICLR 2021, "Learnable Embedding Sizes"):
PEP learns a soft threshold per parameter and needs sparse storage to turn zeros into bytes; a
zero *row* becomes a smaller dense table and a smaller ``.tflite`` file, which is what serving
pays for. After each training step the proximal operator of ``strength * sum_r ||e_r||_2``
shrinks every row towards zero by ``strength`` (``e_r *= max(0, 1 - strength / ||e_r||)``);
a row the data does not pull back ends at exactly 0. The optimizer moves the rows the loss
needs, the shrinkage removes the rest: the criterion is a row's use to the loss, not its id's
frequency.

Example:
    >>> ids = keras.Input((1,), dtype="int32", name="item")
    >>> emb = keras.layers.Embedding(50, 4, name="emb")
    >>> out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(emb(ids)))
    >>> model = keras.Model(ids, out)
    >>> model.compile("adam", "binary_crossentropy")
    >>> x, y = np.arange(1, 11).reshape(-1, 1), np.tile([0.0, 1.0], 5)
    >>> small, report = learned_row_pruning(model, (x, y), strength=0.01, verbose=0)
    >>> report.settings["tables"]["emb"]["rows_before"]
    50
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress._inputs import FINE_TUNE_OPTIMIZERS, fine_tune
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, LayerDecision
from tfcompress._validation import (
    check_choice,
    check_float,
    check_functional,
    check_int,
    must_be,
)
from tfcompress.embeddings._tables import check_counts, chosen_tables, clone_with, select_tables
from tfcompress.embeddings.vocabulary import prune_vocabulary

__all__ = ["RowShrinkage", "learned_row_pruning"]


class RowShrinkage(keras.callbacks.Callback):
    """Group-lasso proximal step on embedding rows after every training batch.

    Each row ``r >= 1`` of each given table becomes ``e_r * max(0, 1 - strength / ||e_r||)``
    (row 0, padding, is left alone). At the end of each epoch ``logs["zero_rows"]`` holds the
    share of rows that are exactly zero, so History, CSVLogger and TensorBoard record it.

    Args:
        tables: the ``Embedding`` layers (or their names in the fitted model) to shrink.
        strength: the shrinkage per step (> 0), in the units of a row's L2 norm.

    Example:
        >>> emb = keras.layers.Embedding(5, 2, name="e")
        >>> model = keras.Sequential([emb])
        >>> model.build((None, 1))
        >>> RowShrinkage(["e"], 0.1).strength
        0.1
    """

    def __init__(self, tables: Sequence[Any], strength: float) -> None:
        super().__init__()
        self.strength = check_float(
            strength, "strength", minimum=0.0, min_open=True, where="RowShrinkage"
        )
        if isinstance(tables, (str, keras.layers.Layer)) or not isinstance(tables, Sequence):
            raise TypeError(must_be("tables", "a list of Embedding layers or names", tables))
        self.tables = list(tables)
        self._variables: list[tf.Variable] = []

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        layers = []
        for table in self.tables:
            layer = model.get_layer(table) if isinstance(table, str) else table
            if not isinstance(layer, keras.layers.Embedding) or not layer.built:
                raise ValueError(
                    f"RowShrinkage: {getattr(layer, 'name', layer)!r} "
                    f"({type(layer).__name__}) is not a built Embedding layer of model "
                    f"{model.name!r}; pass the model's Embedding layers or their names."
                )
            layers.append(layer)
        self._variables = [layer.embeddings for layer in layers]
        self._step = tf.function(self._shrink)

    def _shrink(self) -> None:
        for variable in self._variables:
            norms = tf.norm(variable, axis=1, keepdims=True)
            factor = tf.maximum(0.0, 1.0 - self.strength / tf.maximum(norms, 1e-12))
            factor = tf.concat([tf.ones_like(factor[:1]), factor[1:]], axis=0)
            variable.assign(variable * tf.cast(factor, variable.dtype))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        zero = total = 0
        for variable in self._variables:
            rows = np.asarray(variable)[1:]
            zero += int((~rows.any(axis=1)).sum())
            total += rows.shape[0]
        logs["zero_rows"] = zero / total if total else 0.0


def learned_row_pruning(
    model: keras.Model,
    data: Any,
    *,
    strength: float,
    epochs: int = 1,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    max_ids: int | None = None,
    tables: str | Sequence[str] | None = None,
    counts: Mapping[str, Any] | None = None,
    loss: Any = None,
    batch_size: int = 1024,
    verbose: int | str = "auto",
) -> tuple[keras.Model, CompressionReport]:
    """Fine-tune a copy of ``model`` with :class:`RowShrinkage`, then prune the zero rows.

    The copy trains ``epochs`` epochs on ``data`` with Adam(``learning_rate``) and ``loss``
    (default: the loss ``model`` was compiled with), the proximal step driving the rows the loss
    does not need to exactly zero. Those ids then share an OOV row (an all-zero row: the pruned
    model computes exactly what the fine-tuned copy computes); ``max_ids`` keeps at most that
    many ids per table, the largest rows (an exact row budget, at the cost of that parity).
    Compose with a ``Distiller`` for a further fine-tune, and with
    ``export_tflite(embeddings="int8" | "int4")``.

    Args:
        model: a functional or Sequential tf_keras model.
        data: training data: a ``tf.data.Dataset`` of ``(x, y)`` batches or an ``(x, y)`` tuple.
        strength: shrinkage of a row's L2 norm per step (> 0): larger prunes more rows. A
            row of norm ``n`` that gets no gradient reaches 0 after ``n / strength`` steps.
        epochs: fine-tune epochs (>= 1).
        learning_rate: the optimizer's learning rate for the fine-tune.
        optimizer: ``"adam"`` (default), ``"sgd"`` or ``"adagrad"``. Adam moves a row by
            about ``learning_rate`` per visit whatever its gradient's size, so under a constant
            shrink a row survives by how often it is visited; SGD's step is the gradient's, so
            a row survives by how much the loss pulls on it (docs/embeddings.md).
        max_ids: keep at most this many ids (besides padding) per table, the largest rows.
        tables: a table name or names (default: every ``Embedding``).
        counts: optional ``{table: counts per id}`` (:func:`~tfcompress.embeddings.count_ids`):
            the report then gives the share of lookups that hit a pruned id.
        loss: the fine-tune's loss (default: ``model.loss``; required when ``model`` was not
            compiled).
        batch_size: batch size when ``data`` is arrays.
        verbose: ``model.fit``'s verbosity (its progress bar by default).

    Returns:
        ``(pruned_model, report)``: the report of :func:`prune_vocabulary` (technique
        ``"vocabulary"``) with ``settings["learned"]`` = ``{"strength", "epochs",
        "zero_rows": {table: rows at zero}, "history": {...}}``; each table's
        ``pruned_impression_share`` is None unless ``counts`` is given.

    Raises:
        TypeError: ``model`` is not a tf_keras model; bad ``tables``/``counts`` types.
        ValueError: bad ``strength``/``epochs``/``learning_rate``/``max_ids``, no loss, a
            subclassed model, a ``tables`` name that is no layer.

    Example:
        >>> small, report = learned_row_pruning(model, train, strength=1e-4)  # doctest: +SKIP
        >>> report.settings["tables"]["emb_item_id"]["rows_kept"]  # doctest: +SKIP
    """
    check_model(model, "model")
    check_functional(model, "learned_row_pruning")
    where = "learned_row_pruning"
    strength = check_float(
        strength,
        "strength",
        minimum=0.0,
        min_open=True,
        where=where,
        fix="Try 1e-4: a row's norm shrinks by `strength` each step.",
    )
    check_int(epochs, "epochs", minimum=1, where=where)
    learning_rate = check_float(
        learning_rate, "learning_rate", minimum=0.0, min_open=True, where=where
    )
    if max_ids is not None:
        check_int(max_ids, "max_ids", minimum=1, where=where)
    check_int(batch_size, "batch_size", minimum=1, where=where)
    check_choice(optimizer, "optimizer", tuple(FINE_TUNE_OPTIMIZERS), where=where)
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            f"learned_row_pruning: model {model.name!r} is not compiled and no `loss` was "
            "given; pass loss='binary_crossentropy' (or the model's training loss)."
        )
    layers, selected = select_tables(tables, model)
    decisions: list[LayerDecision] = []
    names = [layer.name for layer in chosen_tables(layers, selected, decisions)]
    real_counts = None
    if counts is not None:
        real_counts = {n: check_counts(counts, n, model.get_layer(n).input_dim) for n in names}
    if not names:
        return model, CompressionReport("vocabulary", tuple(decisions), {"tables": {}})

    tuned = clone_with(model, {})
    history = fine_tune(
        tuned,
        data,
        optimizer=optimizer,
        learning_rate=learning_rate,
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
        callbacks=[RowShrinkage(names, strength)],
    )

    norms = {n: np.linalg.norm(tuned.get_layer(n).get_weights()[0], axis=1) for n in names}
    # a kept row's score is 1 + its norm, so min_count=1 keeps every nonzero row and max_ids
    # the largest; zero rows weigh 0, so their OOV row is their plain mean: exactly zero
    scores = {n: np.where(v > 0.0, 1.0 + v, 0.0) for n, v in norms.items()}
    pruned, report = prune_vocabulary(tuned, scores, min_count=1, max_ids=max_ids, tables=names)
    settings = dict(report.settings)
    for name, stats in settings["tables"].items():
        share = None
        if real_counts is not None:
            values = real_counts[name][1:]
            hit = values[stats["mapping"][1:] > stats["rows_kept"] - 1].sum()
            share = float(hit / values.sum()) if values.sum() else 0.0
        stats["pruned_impression_share"] = share
    settings["learned"] = {
        "strength": strength,
        "optimizer": optimizer,
        "epochs": epochs,
        "zero_rows": {n: int((v[1:] == 0.0).sum()) for n, v in norms.items()},
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
    }
    kept = {d.layer for d in report.decisions}
    extra = tuple(d for d in decisions if d.layer not in kept)
    report = CompressionReport("vocabulary", tuple(report.decisions) + extra, settings)
    if pruned is tuned:
        return tuned, report
    pruned.compression_report = report  # type: ignore[attr-defined]
    return pruned, report
