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

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress._compat import inbound_nodes
from tfcompress._inputs import iter_batches, model_input_specs
from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_int
from tfcompress.embeddings._tables import nested_tables

__all__ = ["count_ids", "table_inputs"]

_log = logging.getLogger("tfcompress")

Feed = Callable[[list[Any]], list[np.ndarray]]


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


def _calls(container: keras.Model, child: Any) -> Callable[[list[Any]], list[list[Any]]]:
    """A function of the values of ``container``'s inputs giving the values of ``child``'s
    inputs, once for each call of ``child`` inside ``container``."""
    if isinstance(container, keras.Sequential):
        before = []
        for layer in container.layers:
            if layer is child:
                break
            before.append(layer)

        def run(values: list[Any]) -> list[list[Any]]:
            x = tf.convert_to_tensor(values[0])
            for layer in before:
                x = layer(x, training=False)
            return [[x]]

        return run
    probes = []
    for node in inbound_nodes(child):
        try:  # a node of another graph (a functional sub-model's own) is disconnected here
            probes.append(keras.Model(container.inputs, list(node.keras_inputs)))
        except ValueError:
            continue
    if not probes:
        raise ValueError(f"{child.name!r} is not called in {container.name!r}'s graph")

    def probe(values: list[Any]) -> list[list[Any]]:
        args = values[0] if len(values) == 1 else values
        return [tf.nest.flatten(p(args, training=False)) for p in probes]

    return probe


def _feed(container: keras.Model, chain: tuple[Any, ...], table: Any) -> Feed:
    """The id arrays ``table`` reads, as a function of ``container``'s input values, through
    the sub-models of ``chain`` (outermost first)."""
    calls = _calls(container, chain[0] if chain else table)
    inner = _feed(chain[0], chain[1:], table) if chain else None

    def feed(values: list[Any]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for args in calls(values):
            out.extend(inner(args) if inner else [np.asarray(a) for a in args])
        return out

    return feed


def _nested_feeds(model: keras.Model) -> dict[str, tuple[int, Feed]]:
    """``{path: (input_dim, feed)}`` for the tables of ``model``'s sub-models that can be
    counted; each one that cannot is logged with its reason."""
    feeds = {}
    for table in nested_tables(model):
        reason = table.reason
        if not reason:
            try:
                feeds[table.path] = (
                    int(table.layer.input_dim),
                    _feed(model, table.chain, table.layer),
                )
            except ValueError as err:
                reason = f"its input cannot be traced from the model inputs ({err})"
        if reason:
            _log.warning("count_ids: table %r (Embedding) not counted: %s.", table.path, reason)
    return feeds


def count_ids(
    model: keras.Model, data: Any, *, max_batches: int | None = None
) -> dict[str, np.ndarray]:
    """Count the ids each ``Embedding`` table of ``model`` is asked for in ``data``.

    Tables of sub-models (a TFRS-style tower ``Sequential([IntegerLookup, Embedding])`` or a
    functional tower the model calls) are counted too, under their path (``"tower/emb_item"``):
    the ids they see, after the tower's layers before them (a lookup) ran on ``data``. A nested
    table that cannot be counted (inside a subclassed model, shared by two sub-models) is left
    out with a logged warning saying why.

    Args:
        model: a functional tf_keras model whose top-level tables read model inputs directly.
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
    nested = _nested_feeds(model)
    if not sources and not nested:
        raise ValueError(
            f"`model` {model.name!r} has no Embedding layer that reads a model input directly "
            "(nor a countable table in a sub-model); count_ids needs tables fed by integer "
            "keras.Input ids."
        )
    structure, specs = model_input_specs(model)
    counts = {name: np.zeros(model.get_layer(name).input_dim, np.int64) for name in sources}
    counts.update({path: np.zeros(size, np.int64) for path, (size, _) in nested.items()})
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
        if nested:
            values = [batch.features[name] for name in model.input_names]
            for path, (size, feed) in nested.items():
                for seen in feed(values):
                    ids = seen.astype(np.int64).ravel()
                    if ids.size and (ids.min() < 0 or ids.max() >= size):
                        bad = int(ids.max()) if ids.max() >= size else int(ids.min())
                        raise ValueError(
                            f"Table {path!r} (Embedding in a sub-model) reads id {bad} on "
                            f"`data`, outside its input_dim {size}; the ids it sees (after the "
                            f"layers before it) must lie in [0, {size})."
                        )
                    counts[path] += np.bincount(ids, minlength=size)
    return counts
