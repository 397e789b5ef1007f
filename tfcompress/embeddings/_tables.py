"""What the table rewrites of :mod:`tfcompress.embeddings` share: checking ``counts``, selecting
tables, telling a plain ``Embedding`` from a subclass, and cloning a model with some layers
swapped (every other layer copied with its weights, so the copy can be distilled from the
original).

Example:
    >>> check_counts({"emb": [3, 0, 1]}, "emb", 3).tolist()
    [3.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress._keras import keras
from tfcompress._layers import LayerDecision, iter_layers

__all__ = [
    "check_counts",
    "chosen_tables",
    "clone_with",
    "is_plain_embedding",
    "select_tables",
]


def check_counts(counts: Any, name: str, size: int) -> np.ndarray:
    if not isinstance(counts, Mapping):
        raise TypeError(
            f"`counts` must be a dict {{table name: counts per id}} (what "
            f"tfcompress.embeddings.count_ids returns), received {type(counts).__name__}."
        )
    if name not in counts:
        raise ValueError(
            f"`counts` has no entry for table {name!r} (keys: {sorted(counts)}); count its ids "
            "with count_ids(model, data) or leave it out of `tables`."
        )
    values = np.asarray(counts[name])
    if values.ndim != 1 or values.shape[0] != size:
        raise ValueError(
            f"`counts[{name!r}]` must hold one count per id of the table ({size} ids, its "
            f"input_dim), received shape {values.shape}."
        )
    if not np.issubdtype(values.dtype, np.number) or (values.size and values.min() < 0):
        raise ValueError(f"`counts[{name!r}]` must hold non-negative numbers.")
    return values.astype(np.float64)


def select_tables(
    tables: str | Sequence[str] | None, model: keras.Model
) -> tuple[list[Any], set[str] | None]:
    """Top-level layers of ``model`` and the table names ``tables`` selects (None: all)."""
    layers = [layer for _, layer in iter_layers(model, nested=False)]
    if tables is None:
        return layers, None
    names = [tables] if isinstance(tables, str) else tables
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"`tables` must be None, a layer name or a list of layer names, received {tables!r}."
        )
    known = {layer.name for layer in layers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"`tables` names {unknown}, which are not layers of model {model.name!r}; its "
            f"Embedding layers: {sorted(lyr.name for lyr in layers if is_plain_embedding(lyr))}."
        )
    return layers, set(names)


def is_plain_embedding(layer: Any) -> bool:
    return type(layer) is keras.layers.Embedding or (
        isinstance(layer, keras.layers.Embedding)
        and type(layer).call is keras.layers.Embedding.call
    )


def clone_with(model: keras.Model, swaps: Mapping[int, Any]) -> keras.Model:
    """A copy of ``model`` with ``swaps[id(layer)]`` in place of those layers; every other layer
    is a fresh copy holding the same weights (so the copy can be distilled from ``model``)."""

    def clone(layer: Any) -> Any:
        if id(layer) in swaps:
            return swaps[id(layer)]
        return layer.__class__.from_config(layer.get_config())

    new_model = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if id(layer) not in swaps and not isinstance(layer, keras.layers.InputLayer):
            new_model.get_layer(layer.name).set_weights(layer.get_weights())
    return new_model


def chosen_tables(
    layers: list[Any], selected: set[str] | None, decisions: list[LayerDecision]
) -> Iterator[Any]:
    """The plain ``Embedding`` layers of ``layers`` that ``selected`` names (None: all of them);
    a table not selected, or a selected layer that is not a plain ``Embedding``, gets a
    ``LayerDecision`` saying why it is left alone."""
    for layer in layers:
        cls = type(layer).__name__
        if selected is not None and layer.name not in selected:
            if is_plain_embedding(layer):
                decisions.append(LayerDecision(layer.name, cls, False, reason="not in `tables`"))
            continue
        if not is_plain_embedding(layer):
            if selected is not None:
                decisions.append(
                    LayerDecision(layer.name, cls, False, reason="not a keras.layers.Embedding")
                )
            continue
        yield layer
