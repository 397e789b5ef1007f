"""What the table rewrites of :mod:`tfcompress.embeddings` share: checking ``counts``, selecting
tables, telling a plain ``Embedding`` from a subclass, and cloning a model with some layers
swapped (every other layer copied with its weights, so the copy can be distilled from the
original).

Example:
    >>> check_counts({"emb": [3, 0, 1]}, "emb", 3).tolist()
    [3.0, 0.0, 1.0]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress._compat import inbound_nodes, is_graph_network, keras_history
from tfcompress._keras import keras
from tfcompress._layers import LayerDecision, iter_layers

__all__ = [
    "check_counts",
    "chosen_tables",
    "clone_with",
    "flat_inputs",
    "is_plain_embedding",
    "is_remapped_table",
    "nested_tables",
    "NestedTable",
    "input_readers",
    "select_tables",
    "traced_inputs",
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
    tables: str | Sequence[str] | None, model: keras.Model, *, nested: bool = False
) -> tuple[list[Any], set[str] | None]:
    """Top-level layers of ``model`` and the table names ``tables`` selects (None: all).

    With ``nested``, ``tables`` may also name the tables of sub-models by path
    (``"tower/emb_item"``, :func:`nested_tables`)."""
    layers = [layer for _, layer in iter_layers(model, nested=False)]
    if tables is None:
        return layers, None
    names = [tables] if isinstance(tables, str) else tables
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"`tables` must be None, a layer name or a list of layer names, received {tables!r}."
        )
    known = {layer.name for layer in layers}
    inner = [t.path for t in nested_tables(model)] if nested else []
    unknown = [n for n in names if n not in known and n not in inner]
    if unknown:
        tables_here = sorted(lyr.name for lyr in layers if is_plain_embedding(lyr)) + inner
        raise ValueError(
            f"`tables` names {unknown}, which are not layers of model {model.name!r}; its "
            f"Embedding layers: {tables_here}."
        )
    return layers, set(names)


def is_plain_embedding(layer: Any) -> bool:
    return type(layer) is keras.layers.Embedding or (
        isinstance(layer, keras.layers.Embedding)
        and type(layer).call is keras.layers.Embedding.call
    )


def clone_with(model: keras.Model, swaps: Mapping[int, Any]) -> keras.Model:
    """A copy of ``model`` with ``swaps[id(layer)]`` in place of those layers; every other layer
    is a fresh copy holding the same weights (so the copy can be distilled from ``model``).
    ``swaps`` may hold layers of sub-models (:func:`nested_tables`): a sub-model holding one is
    rebuilt the same way, recursively (the walk ``quantize_embeddings`` uses)."""

    def holds_swap(layer: Any) -> bool:
        return isinstance(layer, keras.Model) and any(
            id(inner) in swaps for _, inner in iter_layers(layer)
        )

    def clone(layer: Any) -> Any:
        if id(layer) in swaps:
            return swaps[id(layer)]
        if holds_swap(layer):
            return clone_with(layer, swaps)
        return layer.__class__.from_config(layer.get_config())

    new_model = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if (
            id(layer) not in swaps
            and not holds_swap(layer)
            and not isinstance(layer, keras.layers.InputLayer)
        ):
            new_model.get_layer(layer.name).set_weights(layer.get_weights())
    return new_model


@dataclasses.dataclass(frozen=True)
class NestedTable:
    """A plain ``Embedding`` inside a sub-model (a TFRS-style tower).

    Attributes:
        path: ``"tower/emb_item"`` (:func:`~tfcompress._layers.iter_layers`' path), its name in
            ``count_ids``' counts, reports and vocabulary files.
        layer: the table.
        chain: the sub-models that hold it, outermost first (``chain[-1].layers`` holds it).
        reason: why it cannot be counted or rewritten (empty when it can).
    """

    path: str
    layer: Any
    chain: tuple[Any, ...]
    reason: str = ""


def is_remapped_table(layer: Any) -> bool:
    """Whether ``layer`` is a table ``prune_vocabulary`` made: ``Sequential([remap, Embedding])``
    (checked by class name: the remap layers live in modules that import this one)."""
    parts = layer.layers if isinstance(layer, keras.Sequential) else []
    return (
        len(parts) == 2
        and type(parts[0]).__name__ in ("IdRemap", "BlockedIdRemap")
        and isinstance(parts[1], keras.layers.Embedding)
    )


def nested_tables(model: keras.Model) -> list[NestedTable]:
    """The plain ``Embedding`` tables of ``model``'s sub-models (not its top-level layers, not
    the tables of ``prune_vocabulary``'s remapped tables), each with why it cannot be counted
    or rewritten, if it cannot: a table inside a subclassed sub-model, or one layer reached by
    several paths (shared by two sub-models)."""
    found: list[tuple[str, Any, tuple[Any, ...]]] = []
    for path, layer in iter_layers(model):
        if "/" not in path or not is_plain_embedding(layer):
            continue
        chain: list[Any] = []
        container = model
        for name in path.split("/")[:-1]:
            container = container.get_layer(name)
            chain.append(container)
        if not any(is_remapped_table(c) for c in chain):
            found.append((path, layer, tuple(chain)))
    paths: dict[int, list[str]] = {}
    for path, layer, _ in found:
        paths.setdefault(id(layer), []).append(path)
    out = []
    for path, layer, chain in found:
        reason = ""
        subclassed = [
            c for c in chain if not isinstance(c, keras.Sequential) and not is_graph_network(c)
        ]
        if subclassed:
            c = subclassed[0]
            reason = (
                f"inside subclassed model {c.name!r} ({type(c).__name__}): its layers cannot "
                "be swapped nor its call traced; build it with the functional API or "
                "keras.Sequential"
            )
        elif len(paths[id(layer)]) > 1:
            reason = (
                f"one layer shared by several sub-models ({', '.join(paths[id(layer)])}); "
                "give each its own table or prune the top-level model's tables"
            )
        out.append(NestedTable(path, layer, chain, reason))
    return out


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


# --------------------------------------------------------------------------- where ids come from


class _UntraceableError(Exception):
    """Why a table's ids cannot be followed to model inputs (the message)."""


def _input_index(container: Any, source: Any) -> int | None:
    """Which input of ``container`` the layer ``source`` (an ``InputLayer``) feeds, if any."""
    for j, tensor in enumerate(getattr(container, "inputs", None) or []):
        if keras_history(tensor)[0] is source:
            return j
    return None


def flat_inputs(node: Any) -> list[Any]:
    """The Keras tensors a node's call received, as a list."""
    ins = node.keras_inputs
    return list(ins) if isinstance(ins, (list, tuple)) else [ins]


def _is_graph(layer: Any) -> bool:
    return isinstance(layer, keras.Model) and (
        isinstance(layer, keras.Sequential) or is_graph_network(layer)
    )


def traced_inputs(model: keras.Model, layer: Any, chain: Sequence[Any] = ()) -> list[str] | str:
    """The names of the model inputs whose ids reach ``layer`` unchanged, one per read (a
    tower called twice gives two), or why some read comes from elsewhere.

    Args:
        model: the functional model.
        layer: a table of ``model`` (top-level) or of the sub-models ``chain`` (outermost first,
            ``chain[-1]`` holds it: :class:`NestedTable`'s ``chain``).
    """
    containers = [model, *chain]
    names: list[str] = []

    def belongs(container: Any, source: Any) -> bool:
        return any(lyr is source for lyr in container.layers) or (
            _input_index(container, source) is not None
        )

    def up(level: int, j: int) -> None:
        if level == 0:
            names.append(keras_history(model.inputs[j])[0].name)
            return
        container, parent = containers[level], containers[level - 1]
        found = False
        for node in inbound_nodes(container):
            ins = flat_inputs(node)
            source = keras_history(ins[j])[0] if j < len(ins) else None
            if source is None or not belongs(parent, source):
                continue  # a call in another model's graph
            found = True
            k = _input_index(parent, source)
            if k is None:
                raise _UntraceableError(
                    f"'{container.name}' reads '{source.name}' ({type(source).__name__}), not "
                    "an input: its ids cannot be mapped before the model"
                )
            up(level - 1, k)
        if not found:
            raise _UntraceableError(f"'{container.name}' is not called in '{parent.name}'")

    try:
        for node in inbound_nodes(layer):
            ins = flat_inputs(node)
            source = keras_history(ins[0])[0] if len(ins) == 1 else None
            if source is None:
                raise _UntraceableError("it reads several tensors")
            if not belongs(containers[-1], source):
                continue
            j = _input_index(containers[-1], source)
            if j is None:
                raise _UntraceableError(
                    f"it reads '{source.name}' ({type(source).__name__}), not a model input: "
                    "its ids cannot be mapped before the model"
                )
            up(len(containers) - 1, j)
    except _UntraceableError as why:
        return str(why)
    return names or "it is not called on a model input"


def input_readers(model: keras.Model, name: str) -> list[tuple[Any, int]]:
    """The layers that read model input ``name`` unchanged, with the index of that input among
    their call's inputs: followed into the functional and Sequential sub-models it feeds (a
    remapped table counts as one reader), one entry a read."""
    found: list[tuple[Any, int]] = []

    def walk(container: Any, source: Any) -> None:
        for lyr in container.layers:
            if isinstance(lyr, keras.layers.InputLayer):
                continue
            for node in inbound_nodes(lyr):
                for j, tensor in enumerate(flat_inputs(node)):
                    if keras_history(tensor)[0] is not source:
                        continue
                    if _is_graph(lyr) and not is_remapped_table(lyr) and lyr.inputs:
                        walk(lyr, keras_history(lyr.inputs[j])[0])
                    else:
                        found.append((lyr, j))

    walk(model, next(keras_history(t)[0] for t in model.inputs if keras_history(t)[0].name == name))
    return found
