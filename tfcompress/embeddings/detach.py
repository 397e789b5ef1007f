"""Moving the id maps of a model's tables out of it: :func:`detach_vocabulary` (the maps of
``prune_vocabulary``'s remapped tables and of ``MixedDimEmbedding``'s id -> rank, top-level or
in functional / Sequential towers), for serving stacks that map raw keys to ids themselves
(docs/embeddings.md, "Rare-id pruning" and "Mixed-dimension tables").

Example:
    >>> detached, maps = detach_vocabulary(small)  # doctest: +SKIP
    >>> rows = {k: maps[k][v] if k in maps else v for k, v in x.items()}  # doctest: +SKIP
    >>> detached.predict(rows)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tfcompress._compat import inbound_nodes, is_graph_network
from tfcompress._keras import check_model, keras
from tfcompress._layers import iter_layers
from tfcompress._validation import check_functional
from tfcompress.embeddings._tables import (
    clone_with,
    flat_inputs,
    input_readers,
    is_remapped_table,
    traced_inputs,
)
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.embeddings.remap import BlockedIdRemap

__all__ = ["MASK_READERS", "detach_vocabulary"]

logger = logging.getLogger("tfcompress")

#: layers that read ids only as a padding mask (``id > 0``), with the input index they read
#: them at: a map that keeps 0 at 0 and every other id above 0 leaves them unchanged
MASK_READERS = {
    ("tfcompress.models.layers", "MaskedMean"): 1,
    ("tfcompress.models.layers", "PaddingMask"): 0,
}


def _reads_mask_only(layer: Any, index: int) -> bool:
    return MASK_READERS.get((type(layer).__module__, type(layer).__name__)) == index


def _keeps_padding(mapping: np.ndarray) -> bool:
    return mapping.size > 0 and mapping[0] == 0 and bool((mapping[1:] > 0).all())


def _chain(model: keras.Model, path: str) -> tuple[Any, ...]:
    """The sub-models holding the layer at ``path``, outermost first."""
    chain, container = [], model
    for name in path.split("/")[:-1]:
        container = container.get_layer(name)
        chain.append(container)
    return tuple(chain)


def _detachable(model: keras.Model) -> list[tuple[str, Any, tuple[Any, ...]]]:
    """``(path, layer, chain)`` of each table whose id map could move out: a remapped table
    (``prune_vocabulary``) or a ``MixedDimEmbedding`` holding its map."""
    out = []
    for path, layer in iter_layers(model):
        mixed = type(layer) is MixedDimEmbedding and layer.id_map != "none"
        if mixed or is_remapped_table(layer):
            out.append((path, layer, _chain(model, path)))
    return out


def _id_map(layer: Any) -> np.ndarray:
    if isinstance(layer, MixedDimEmbedding):
        return layer.rank_map().astype(np.int32)
    remap = layer.layers[0]
    values = remap.mapping() if isinstance(remap, BlockedIdRemap) else remap.mapping
    return np.asarray(values).astype(np.int32)


def _why_not(layer: Any, chain: tuple[Any, ...]) -> str:
    """Why ``layer``'s map cannot move out whatever reads it (empty when it can)."""
    subclassed = [c for c in chain if not (isinstance(c, keras.Sequential) or is_graph_network(c))]
    if subclassed:
        return f"inside subclassed model {subclassed[0].name!r}: its call cannot be rebuilt"
    ranks = {flat_inputs(node)[0].shape.rank for node in inbound_nodes(layer)}
    if len(ranks) != 1 or None in ranks:
        return f"it reads inputs of ranks {sorted(map(str, ranks))} (one known rank is needed)"
    if isinstance(layer, MixedDimEmbedding) and layer.mask_zero and layer.rank_map()[0] != 0:
        return (
            f"mask_zero and id 0 has rank {int(layer.rank_map()[0])}: the mask would read "
            "ranks; keep the map in the model"
        )
    return ""


def _twin(layer: Any) -> Any:
    """``layer`` reading rows (a remapped table) or ranks (a mixed table) instead of ids."""
    if isinstance(layer, MixedDimEmbedding):
        new = MixedDimEmbedding.from_config({**layer.get_config(), "id_map": "none"})
        for mine, theirs in zip(new.tables, layer.tables, strict=True):
            mine.assign(theirs)
        for mine, theirs in zip(new.projections, layer.projections, strict=True):
            if mine is not None:
                mine.assign(theirs)
        return new
    table = layer.layers[1]
    copy = keras.layers.Embedding.from_config(table.get_config())
    copy.build((None,))
    copy.set_weights(table.get_weights())
    rank = flat_inputs(inbound_nodes(layer)[0])[0].shape.rank
    # a Sequential in place of a Sequential: clone_model numbers its calls like the one it
    # replaces (a plain Embedding in its place never finishes the graph rebuild); the
    # converter inlines it, so the file holds only the table
    # int32 rows in: without it the Sequential's input is float32 (two CASTs a lookup,
    # and ids past 2**24 would round)
    ids = keras.layers.InputLayer(input_shape=(None,) * (rank - 1), dtype="int32")
    return keras.Sequential([ids, copy], name=layer.name)


def detach_vocabulary(model: keras.Model) -> tuple[keras.Model, dict[str, np.ndarray]]:
    """The model without its tables' id maps, and the maps its inputs now need.

    :func:`prune_vocabulary` keeps each table's id -> row map inside the model (one or a few
    ops a lookup, 4 or ~1 bytes an id), and a ``MixedDimEmbedding`` its id -> rank map (~1 or
    4 bytes an id). A serving stack that already maps raw keys to ids (a vocabulary file, a
    ``StringLookup``) can fold the map into its own and send rows (ranks): the model then
    reads its tables directly, with no map in the file and no extra op. Tables inside
    functional or Sequential sub-models (towers) are detached too, when the tower's input is
    a model input.

    Args:
        model: a functional model holding remapped tables (:func:`prune_vocabulary`) or
            mixed-dimension tables (``mixed_dimension_embeddings``), top-level or in
            sub-models.

    Returns:
        ``(detached, mappings)``: ``detached`` takes rows (ranks) where ``model`` took ids
        (other layers are copies with the same weights; a mixed table becomes a
        ``MixedDimEmbedding(id_map="none")``); ``mappings[input name]`` is the int32 array
        with ``detached(mappings[name][ids]) == model(ids)``. A table whose ids do not come
        unchanged from model inputs read by nothing else (a computed tensor, an input also
        read by another layer or by a table with another map) keeps its map, with a logged
        warning that says why. A padding-mask reader (``MaskedMean``'s mask, ``PaddingMask``,
        :data:`MASK_READERS`) does not count when every map keeps id 0 at 0 and the other
        ids above 0.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``model`` is not functional, or has no table whose map can move out
            (the message names each table and why).

    Example:
        >>> small, _ = prune_vocabulary(model, counts, min_count=2)  # doctest: +SKIP
        >>> detached, maps = detach_vocabulary(small)  # doctest: +SKIP
        >>> rows = {k: maps[k][v] if k in maps else v for k, v in x.items()}  # doctest: +SKIP
        >>> detached.predict(rows)  # doctest: +SKIP
    """
    check_model(model, "model")
    check_functional(model, "detach_vocabulary")
    kept: dict[str, str] = {}
    alive: dict[int, tuple[str, Any, list[str]]] = {}
    for path, layer, chain in _detachable(model):
        why = _why_not(layer, chain)
        read = why or traced_inputs(model, layer, chain)
        if isinstance(read, str):
            kept[path] = read
        else:
            alive[id(layer)] = (path, layer, read)
    mappings: dict[str, np.ndarray] = {}
    changed = True
    while changed:  # an input is mapped only if every reader is a table of one map
        changed, mappings, bad = False, {}, {}
        for name in dict.fromkeys(n for _, _, names in alive.values() for n in names):
            readers = input_readers(model, name)
            maps = [_id_map(r) for r, _ in readers if id(r) in alive]
            masks_ok = all(_keeps_padding(m) for m in maps)
            other = [
                r
                for r, j in readers
                if id(r) not in alive and not (masks_ok and _reads_mask_only(r, j))
            ]
            if other:
                bad[name] = (
                    f"input '{name}' is also read by '{other[0].name}' "
                    f"({type(other[0]).__name__}), which its map would change"
                )
            elif any(not np.array_equal(m, maps[0]) for m in maps[1:]):
                tables = sorted(alive[id(r)][0] for r, _ in readers if id(r) in alive)
                bad[name] = f"input '{name}' feeds tables {tables} with different id maps"
            else:
                mappings[name] = maps[0]
        for key, (path, _, names) in list(alive.items()):
            reasons = [bad[n] for n in names if n in bad]
            if reasons:
                kept[path] = reasons[0]
                del alive[key]
                changed = True
    if not alive:
        why = "; ".join(f"'{k}': {v}" for k, v in kept.items())
        raise ValueError(
            f"detach_vocabulary: model {model.name!r} has no table whose id map can move out "
            f"({why or 'no IdRemap nor MixedDimEmbedding: pass what prune_vocabulary or '}"
            f"{'' if why else 'mixed_dimension_embeddings returned'})."
        )
    for path, why in kept.items():
        logger.warning("detach_vocabulary: table %r keeps its id map: %s", path, why)
    swaps = {key: _twin(layer) for key, (_, layer, _) in alive.items()}
    return clone_with(model, swaps), mappings
