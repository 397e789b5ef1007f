"""Learned dimension pruning of embedding tables: :func:`learned_dim_pruning` fine-tunes with a
group-lasso proximal step on each table's *columns* (:class:`DimShrinkage`), so the dimensions
the loss does not need reach exactly zero, then removes them with :func:`~tfcompress.shrink`
(docs/embeddings.md, "Learned dimension pruning").

This is the column-structured sibling of
:func:`~tfcompress.embeddings.learned.learned_row_pruning`. After each training step the
proximal operator of ``strength * sum_c sqrt(rows) * ||e_c||_2`` shrinks every column ``c``
towards zero (``e_c *= max(0, 1 - strength * sqrt(rows) / ||e_c||)``): the ``sqrt(rows)``
group weight makes ``strength`` the shrink of a column's RMS entry per step, the same for a
table of 10 rows and one of 10 million. A column the data does not pull back ends at exactly
0; a zero column has the smallest L2 norm of its table, so :func:`~tfcompress.shrink`'s
magnitude criterion removes exactly those, with every consumer downstream (``Concatenate``,
the DCN ``Cross``, ``Dense`` kernel rows) sliced to match. A zero input channel contributes
nothing to any of them, so the pruned model computes what the fine-tuned one computes.

It lives in :mod:`tfcompress.pruning` (not ``embeddings``) because it reuses ``shrink``'s
rewrite, and the two packages are independent layers.

Example:
    >>> ids = keras.Input((1,), dtype="int32", name="item")
    >>> emb = keras.layers.Embedding(50, 8, name="emb")
    >>> out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(emb(ids)))
    >>> model = keras.Model(ids, out)
    >>> model.compile("adam", "binary_crossentropy")
    >>> x, y = np.arange(1, 11).reshape(-1, 1), np.tile([0.0, 1.0], 5)
    >>> small, report = learned_dim_pruning(model, (x, y), strength=0.5, verbose=0)
    >>> report.settings["tables"]["emb"]["dims_before"]
    8
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress._inputs import FINE_TUNE_OPTIMIZERS, fine_tune
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, LayerDecision
from tfcompress._validation import check_choice, check_float, check_functional, check_int, must_be
from tfcompress.pruning.shrinking import shrink

__all__ = ["DimShrinkage", "learned_dim_pruning", "remove_zero_dims"]


_EMB = keras.layers.Embedding


def _tables_of(model: keras.Model, tables: Sequence[Any] | None, where: str) -> list[Any]:
    """The ``Embedding`` layers ``tables`` names in ``model`` (default: every top-level one)."""
    if tables is None:
        return [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    names = [layer.name for layer in model.layers]
    known = [n for n, lay in zip(names, model.layers, strict=True) if isinstance(lay, _EMB)]
    layers = []
    for table in tables:
        if isinstance(table, str):
            if table not in names:
                raise ValueError(
                    f"{where}: `tables` entry {table!r} is no layer of model {model.name!r}; "
                    f"pass names of its Embedding layers: "
                    f"{known}."
                )
            layer = model.get_layer(table)
        else:
            layer = table
        if not isinstance(layer, keras.layers.Embedding) or not layer.built:
            raise ValueError(
                f"{where}: `tables` entry {getattr(layer, 'name', layer)!r} "
                f"({type(layer).__name__}) is not a built Embedding layer of model "
                f"{model.name!r}; pass the model's Embedding layers or their names."
            )
        if not any(layer is own for own in model.layers):
            raise ValueError(
                f"{where}: `tables` entry {layer.name!r} (Embedding) is not a layer of model "
                f"{model.name!r} (a layer of another model or clone?); pass its name instead."
            )
        layers.append(layer)
    return layers


def _check_tables_arg(tables: Any, where: str) -> list[Any] | None:
    if tables is None:
        return None
    if isinstance(tables, (str, keras.layers.Layer)):
        return [tables]
    if not isinstance(tables, Sequence):
        raise TypeError(
            must_be("tables", "an Embedding layer or name, a list of them, or None", tables)
        )
    return list(tables)


class DimShrinkage(keras.callbacks.Callback):
    """Group-lasso proximal step on embedding columns (dimensions) after every training batch.

    Each column ``c`` of each table becomes ``e_c * max(0, 1 - strength * sqrt(rows) /
    ||e_c||)``, its padding entry (row 0) included, so a column that reaches zero is zero for
    every id and removing it is exact. The tables are looked up when ``fit`` starts
    (``set_model``), so a name that is no ``Embedding`` of the fitted model fails there. At the
    end of each epoch ``logs["zero_dims"]`` holds the share of the tables' columns that are
    exactly zero, so History, CSVLogger and TensorBoard record it.

    Args:
        strength: the shrink of a column's RMS entry per step (> 0).
        tables: the ``Embedding`` layers (or their names in the fitted model) to shrink;
            None: every top-level ``Embedding`` of the model.

    Example:
        >>> DimShrinkage(0.01, tables=["emb_user_id"]).strength
        0.01
    """

    def __init__(self, strength: float, tables: Sequence[Any] | str | None = None) -> None:
        super().__init__()
        self.strength = check_float(
            strength,
            "strength",
            minimum=0.0,
            min_open=True,
            where="DimShrinkage",
            fix="Try 1e-3: a column's RMS entry shrinks by `strength` each step.",
        )
        self.tables = _check_tables_arg(tables, "DimShrinkage")
        self._variables: list[tf.Variable] = []

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        layers = _tables_of(model, self.tables, "DimShrinkage")
        if not layers:
            raise ValueError(
                f"DimShrinkage: model {model.name!r} has no top-level Embedding layer to "
                "shrink; pass `tables=` or fit a model with Embedding layers."
            )
        self._variables = [layer.embeddings for layer in layers]
        self._step = tf.function(self._shrink)

    def _shrink(self) -> None:
        for variable in self._variables:
            rows = tf.cast(tf.shape(variable)[0], variable.dtype)
            norms = tf.norm(variable, axis=0, keepdims=True)
            cut = self.strength * tf.sqrt(rows)
            factor = tf.maximum(0.0, 1.0 - cut / tf.maximum(norms, 1e-12))
            variable.assign(variable * tf.cast(factor, variable.dtype))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step()

    def zero_dims(self) -> dict[str, int]:
        """``{table name: number of columns that are exactly zero}`` now."""
        return {
            variable.name.split("/")[0]: int((~np.asarray(variable).any(axis=0)).sum())
            for variable in self._variables
        }

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        zero = sum(int((~np.asarray(v).any(axis=0)).sum()) for v in self._variables)
        total = sum(int(v.shape[1]) for v in self._variables)
        logs["zero_dims"] = zero / total if total else 0.0


def learned_dim_pruning(
    model: keras.Model,
    data: Any,
    *,
    strength: float,
    epochs: int = 1,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    tables: str | Sequence[str] | None = None,
    loss: Any = None,
    batch_size: int = 1024,
    verbose: int | str = "auto",
) -> tuple[keras.Model, CompressionReport]:
    """Fine-tune a copy of ``model`` with :class:`DimShrinkage`, then remove the zero columns.

    The copy trains ``epochs`` epochs on ``data`` with the ``optimizer`` at ``learning_rate``
    and ``loss`` (default: the loss ``model`` was compiled with), the proximal step driving the
    embedding dimensions the loss does not need to exactly zero. :func:`~tfcompress.shrink`
    then removes them (each table at ratio ``zero columns / dim``, so its L2 criterion picks
    exactly the zero columns) and slices every consumer: the pruned model's outputs equal the
    fine-tuned copy's. A table whose columns all reached zero keeps one (zero) column. A table
    whose channels ``shrink`` cannot rewire (e.g. reaching a model output) keeps its width,
    its zero columns included; the report says why. The result is uncompiled: compose with
    ``prune``/``quantize``/a ``Distiller`` fine-tune and ``export_tflite``.

    Args:
        model: a functional or Sequential tf_keras model.
        data: training data: a ``tf.data.Dataset`` of ``(x, y)`` batches or an ``(x, y)`` tuple.
        strength: shrink of a column's RMS entry per step (> 0): larger removes more
            dimensions. A column of RMS ``s`` that gets no gradient reaches 0 after
            ``s / strength`` steps.
        epochs: fine-tune epochs (>= 1).
        learning_rate: the optimizer's learning rate for the fine-tune.
        optimizer: ``"adam"`` (default), ``"sgd"`` or ``"adagrad"``.
        tables: a table name or names (default: every top-level ``Embedding``).
        loss: the fine-tune's loss (default: ``model.loss``; required when ``model`` was not
            compiled).
        batch_size: batch size when ``data`` is arrays.
        verbose: ``model.fit``'s verbosity.

    Returns:
        ``(pruned_model, report)``: the report of :func:`remove_zero_dims` (technique
        ``"learned_dims"``, one decision per table, ``"dims 16 -> 9"``; per table
        ``settings["tables"][name]`` = ``{"dims_before", "dims_after", "zero_dims", "kept",
        "bytes_before", "bytes_after"}``) plus ``settings["strength"]``, ``["epochs"]``,
        ``["optimizer"]`` and ``["history"]`` (the fit's History, ``zero_dims`` included).

    Raises:
        TypeError: ``model`` is not a tf_keras model; bad ``tables``/``data`` types.
        ValueError: bad ``strength``/``epochs``/``learning_rate``/``optimizer``/
            ``batch_size``, no loss, a subclassed model, a ``tables`` entry that is no
            ``Embedding`` of ``model``, a model without ``Embedding`` layers.

    Example:
        >>> small, report = learned_dim_pruning(model, train, strength=1e-3)  # doctest: +SKIP
        >>> report.settings["tables"]["emb_user_id"]["dims_after"]  # doctest: +SKIP
    """
    where = "learned_dim_pruning"
    check_model(model, "model")
    check_functional(model, where)
    strength = check_float(
        strength,
        "strength",
        minimum=0.0,
        min_open=True,
        where=where,
        fix="Try 1e-3: a column's RMS entry shrinks by `strength` each step.",
    )
    check_int(epochs, "epochs", minimum=1, where=where)
    learning_rate = check_float(
        learning_rate, "learning_rate", minimum=0.0, min_open=True, where=where
    )
    check_int(batch_size, "batch_size", minimum=1, where=where)
    check_choice(optimizer, "optimizer", tuple(FINE_TUNE_OPTIMIZERS), where=where)
    wanted = _check_tables_arg(tables, where)
    if wanted is not None and not all(isinstance(t, str) for t in wanted):
        raise TypeError(must_be("tables", "a table name or a list of names", tables))
    names = [layer.name for layer in _tables_of(model, wanted, where)]
    if not names:
        raise ValueError(
            f"{where}: model {model.name!r} has no top-level Embedding layer; nothing to prune."
        )
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            f"{where}: model {model.name!r} is not compiled and no `loss` was given; pass "
            "loss='binary_crossentropy' (or the model's training loss)."
        )

    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    history = fine_tune(
        tuned,
        data,
        optimizer=optimizer,
        learning_rate=learning_rate,
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
        callbacks=[DimShrinkage(strength, tables=names)],
    )

    pruned, report = remove_zero_dims(tuned, tables=names)
    settings = {
        **report.settings,
        "strength": strength,
        "epochs": epochs,
        "optimizer": optimizer,
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
    }
    report = CompressionReport("learned_dims", report.decisions, settings)
    pruned.compression_report = report  # type: ignore[attr-defined]
    return pruned, report


def remove_zero_dims(
    model: keras.Model, tables: str | Sequence[str] | None = None
) -> tuple[keras.Model, CompressionReport]:
    """Remove the all-zero columns of ``model``'s embedding tables (exactly; no training).

    Each table with ``z`` zero columns of ``d`` goes through :func:`~tfcompress.shrink` at
    ratio ``z / d`` (at most ``(d - 1) / d``: a table keeps one column), whose L2 criterion
    then removes exactly the zero columns and slices every consumer; zero channels contribute
    nothing downstream, so the outputs are unchanged. Use it after a fit with
    :class:`DimShrinkage` (what :func:`learned_dim_pruning` does).

    Args:
        model: a functional or Sequential tf_keras model.
        tables: a table name or names (default: every top-level ``Embedding``).

    Returns:
        ``(model, report)``: the smaller uncompiled model (``model`` itself when no column is
        zero) and a report (technique ``"learned_dims"``) with one decision per table and
        ``settings["tables"][name]`` = ``{"dims_before", "dims_after", "zero_dims", "kept"
        (kept column indices), "bytes_before", "bytes_after"}``, ``settings["shrink"]``
        (``shrink``'s report as a dict, or None).

    Raises:
        TypeError: ``model`` is not a tf_keras model; bad ``tables`` type.
        ValueError: a ``tables`` entry that is no ``Embedding`` of ``model``; a subclassed
            model.

    Example:
        >>> ids = keras.Input((1,), dtype="int32")
        >>> emb = keras.layers.Embedding(5, 3, name="emb")
        >>> m = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(emb(ids))))
        >>> emb.set_weights([np.eye(5, 3) * [1.0, 0.0, 1.0]])
        >>> small, report = remove_zero_dims(m)
        >>> small.get_layer("emb").output_dim
        2
    """
    where = "remove_zero_dims"
    check_model(model, "model")
    check_functional(model, where)
    wanted = _check_tables_arg(tables, where)
    names = [layer.name for layer in _tables_of(model, wanted, where)]
    before = {n: model.get_layer(n).get_weights()[0] for n in names}
    zero = {n: int((~t.any(axis=0)).sum()) for n, t in before.items()}
    ratios = {}
    for name, table in before.items():
        drop = min(zero[name], table.shape[1] - 1)
        if drop > 0:
            ratios[name] = drop / table.shape[1]
    pruned, shrink_report = model, None
    if ratios:
        pruned = shrink(model, ratio=ratios, layers=list(ratios), embeddings=True)
        shrink_report = pruned.compression_report
    reasons = {}
    if shrink_report is not None:
        reasons = {
            d.layer: d.reason
            for d in shrink_report.decisions
            if not d.applied and d.layer in ratios
        }
    decisions = []
    stats: dict[str, dict[str, Any]] = {}
    for name, table in before.items():
        after = pruned.get_layer(name).get_weights()[0]
        width, new = int(table.shape[1]), int(after.shape[1])
        kept = np.flatnonzero(table.any(axis=0))
        if new == width:
            kept = np.arange(width)
        elif kept.size == 0:
            kept = np.arange(new)  # every column was zero: shrink kept the first
        stats[name] = {
            "dims_before": width,
            "dims_after": new,
            "zero_dims": zero[name],
            "kept": kept.tolist(),
            "bytes_before": int(table.nbytes),
            "bytes_after": int(after.nbytes),
        }
        if new < width:
            decisions.append(LayerDecision(name, "Embedding", True, f"dims {width} -> {new}"))
        else:
            why = reasons.get(name) or (
                "no column is zero" if zero[name] == 0 else "every column is zero; one is kept"
            )
            decisions.append(LayerDecision(name, "Embedding", False, reason=why))
    settings = {
        "tables": stats,
        "shrink": None if shrink_report is None else shrink_report.to_dict(),
    }
    report = CompressionReport("learned_dims", tuple(decisions), settings)
    if pruned is not model:
        pruned.compression_report = report  # type: ignore[attr-defined]
    return pruned, report
