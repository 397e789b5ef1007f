"""How often each id of each embedding table occurs in data: :func:`count_ids`, the input of
frequency-driven table compression (rare-id pruning, mixed dimensions).

Example:
    >>> ids = keras.Input((1,), dtype="int32", name="item")
    >>> out = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Embedding(5, 2)(ids)))
    >>> model = keras.Model(ids, out)
    >>> counts = count_ids(model, [np.array([[1], [1], [3]])])
    >>> counts[model.layers[1].name].tolist()
    [0, 2, 0, 1, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._compat import inbound_nodes
from tfcompress._inputs import iter_batches, model_input_specs
from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_int

__all__ = ["count_ids", "table_inputs"]


def table_inputs(model: keras.Model) -> dict[str, list[str]]:
    """Map each ``Embedding`` layer of ``model`` to the names of the model inputs it looks up.

    A table shared by several inputs (an item table read by the item id and the click history)
    lists them all. Tables fed by another layer rather than a model input map to ``[]``.

    Example:
        >>> ids = keras.Input((1,), dtype="int32", name="item")
        >>> table_inputs(keras.Model(ids, keras.layers.Embedding(5, 2, name="emb")(ids)))
        {'emb': ['item']}
    """
    check_model(model, "model")
    out: dict[str, list[str]] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Embedding):
            continue
        names: list[str] = []
        for node in inbound_nodes(layer):
            for src in tf.nest.flatten(node.inbound_layers):
                if isinstance(src, keras.layers.InputLayer) and src.name not in names:
                    names.append(src.name)
        out[layer.name] = names
    return out


def count_ids(
    model: keras.Model, data: Any, *, max_batches: int | None = None
) -> dict[str, np.ndarray]:
    """Count the ids each ``Embedding`` table of ``model`` is asked for in ``data``.

    Args:
        model: a functional tf_keras model whose tables read model inputs directly.
        data: what ``model.fit`` takes: a ``tf.data.Dataset`` or an iterable of batches of
            ``(features, labels)`` or features alone.
        max_batches: stop after this many batches (``None``: all of ``data``).

    Returns:
        ``{table name: counts}``, ``counts[i]`` the occurrences of id ``i`` (length
        ``input_dim``). Padding ids (0) are counted like any other id; ids outside the table
        are an error.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``model`` has no table that reads a model input, or ``data`` holds an id
            outside its table.
    """
    check_model(model, "model")
    if max_batches is not None:
        check_int(max_batches, "max_batches", minimum=1)
    sources = {name: feeds for name, feeds in table_inputs(model).items() if feeds}
    if not sources:
        raise ValueError(
            f"`model` {model.name!r} has no Embedding layer that reads a model input directly; "
            "count_ids needs tables fed by integer keras.Input ids."
        )
    structure, specs = model_input_specs(model)
    counts = {name: np.zeros(model.get_layer(name).input_dim, np.int64) for name in sources}
    for i, batch in enumerate(iter_batches(data, structure, specs)):
        if max_batches is not None and i >= max_batches:
            break
        for name, feeds in sources.items():
            size = counts[name].shape[0]
            for feed in feeds:
                if feed not in batch.features:
                    raise ValueError(
                        f"Table {name!r} reads input layer {feed!r}, which `data` does not key "
                        f"(keys: {sorted(batch.features)}); key the features by input name."
                    )
                ids = np.asarray(batch.features[feed]).astype(np.int64).ravel()
                if ids.size and (ids.min() < 0 or ids.max() >= size):
                    bad = int(ids.max()) if ids.max() >= size else int(ids.min())
                    raise ValueError(
                        f"`data` input {feed!r} holds id {bad}, outside table {name!r} "
                        f"(input_dim {size}); the ids must lie in [0, {size})."
                    )
                counts[name] += np.bincount(ids, minlength=size)
    return counts
