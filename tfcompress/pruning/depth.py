"""Depth pruning: :func:`drop_blocks` removes whole residual blocks of a functional model.

A *block* is a residual segment of the layer graph between two tensors of one shape: every path
from the segment's input tensor to the model's outputs passes through its output tensor, no
tensor made inside it leaves it except that output, only side inputs of another shape (attention
masks, other features) enter it, and at least one of its layers has weights. Dropping a block
replaces its output tensor by its input tensor (the identity), the structured depth reduction
of DistilBERT-style students (docs/pruning.md, "Dropping blocks").

How the graph is cut into blocks (:func:`find_blocks`): along each chain of such cuts, the
smallest segments are *units*; a unit is residual when one of its layers merges two tensors
derived from its input (``Add(x, f(x))``), or when it is one layer of a known block class
(Model Garden ``TransformerEncoderBlock``). A non-residual unit whose weights are all 1-D (a
post-LN ``LayerNormalization``, a ``Dropout``) joins the residual unit before it; any other
non-residual unit (a stem layer such as a position embedding, a same-width ``Dense``) is not
droppable and ends a run. In each run the smallest period of the units' layer classes groups
units into blocks, so the attention and feed-forward halves of a transformer block form one
block, while identical residual units (a ResNet-style MLP) are one block each.

Example:
    >>> from tfcompress._keras import keras
    >>> x = keras.Input((8,))
    >>> h = x
    >>> for i in range(3):
    ...     h = keras.layers.Add(name=f"r{i}_add")([h, keras.layers.Dense(8, name=f"r{i}_d")(h)])
    >>> model = keras.Model(x, keras.layers.Dense(1, name="out")(h))
    >>> [b.layers for b in find_blocks(model)]
    [('r0_d', 'r0_add'), ('r1_d', 'r1_add'), ('r2_d', 'r2_add')]
    >>> small, report = drop_blocks(model, 1)
    >>> len(small.layers), report.settings["params_removed"]
    (6, 72)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfcompress._compat import is_graph_network, nodes_by_depth
from tfcompress._keras import check_model, keras
from tfcompress._layers import CompressionReport, LayerDecision
from tfcompress._validation import must_be

__all__ = ["Block", "drop_blocks", "find_blocks"]

#: One-layer residual blocks recognised by class name (third-party classes are never imported).
_BLOCK_CLASSES = ("TransformerEncoderBlock", "ReZeroTransformer", "TransformerScaffold")


@dataclasses.dataclass(frozen=True)
class Block:
    """A droppable residual block of a functional model.

    Attributes:
        index: its position among the model's blocks (graph order).
        layers: names of its layers, in graph order.
        params: the weights it holds (count of scalars).
        input_name: the layer whose output enters the block.
        output_name: the layer whose output leaves it.
    """

    index: int
    layers: tuple[str, ...]
    params: int
    input_name: str
    output_name: str


@dataclasses.dataclass
class _Unit:
    start: int  # tensor id
    end: int
    nodes: list[Any]
    residual: bool


class _Graph:
    """The top-level graph: tensors by id, their producing node and their consumers."""

    def __init__(self, model: keras.Model) -> None:
        depths = nodes_by_depth(model)
        self.order = [n for d in sorted(depths, reverse=True) for n in depths[d]]
        self.nodes = [n for n in self.order if not n.is_input]
        self.tensors: dict[int, Any] = {}
        self.producer: dict[int, Any] = {}
        self.consumers: dict[int, list[Any]] = {}
        self.inputs: dict[int, list[int]] = {}
        self.outputs: dict[int, list[int]] = {}
        for node in self.order:
            outs = tf.nest.flatten(node.outputs)
            self.outputs[id(node)] = [id(t) for t in outs]
            for t in outs:
                self.tensors[id(t)] = t
                self.producer[id(t)] = node
        for node in self.nodes:
            ins = list(node.keras_inputs)
            self.inputs[id(node)] = [id(t) for t in ins]
            for t in ins:
                self.tensors.setdefault(id(t), t)
                users = self.consumers.setdefault(id(t), [])
                if node not in users:
                    users.append(node)
        self.model_outputs = {id(t) for t in tf.nest.flatten(model.outputs)}
        self.rank = {id(n): i for i, n in enumerate(self.order)}

    def shape(self, tensor_id: int) -> tuple:
        return tuple(self.tensors[tensor_id].shape.as_list())

    def floating(self, tensor_id: int) -> bool:
        return bool(tf.as_dtype(self.tensors[tensor_id].dtype).is_floating)

    def descendants(self, tensor_id: int) -> set[int]:
        """Ids of the nodes reachable from a tensor."""
        seen: set[int] = set()
        stack = list(self.consumers.get(tensor_id, []))
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            for out in self.outputs[id(node)]:
                stack.extend(self.consumers.get(out, []))
        return seen

    def segment(self, start: int, end: int, below: set[int]) -> list[Any] | None:
        """The nodes of the segment ``start -> end`` if it is one (see the module docstring)."""
        if end == start or self.shape(end) != self.shape(start) or not self.floating(start):
            return None
        inside: set[int] = set()
        stack = [self.producer[end]]
        while stack:
            node = stack.pop()
            if id(node) in inside or id(node) not in below:
                continue
            inside.add(id(node))
            stack.extend(self.producer[t] for t in self.inputs[id(node)] if t != start)
        if id(self.producer[end]) not in inside:
            return None
        if any(id(user) not in inside for user in self.consumers.get(start, [])):
            return None
        made = {t for n in inside for t in self.outputs[n]}
        shape = self.shape(start)
        for node in self.nodes:
            if id(node) not in inside:
                continue
            for t in self.outputs[id(node)]:
                if t == end:
                    continue
                if t in self.model_outputs:
                    return None
                if any(id(u) not in inside for u in self.consumers.get(t, [])):
                    return None
            for t in self.inputs[id(node)]:
                if t != start and t not in made and self.shape(t) == shape and self.floating(t):
                    return None  # a second stream enters: not a block of this stream
        return sorted((n for n in self.nodes if id(n) in inside), key=lambda n: self.rank[id(n)])

    def is_residual(self, start: int, nodes: list[Any]) -> bool:
        if len(nodes) == 1 and type(nodes[0].layer).__name__ in _BLOCK_CLASSES:
            return True
        derived = {start} | {t for n in nodes for t in self.outputs[id(n)]}
        return any(len({t for t in self.inputs[id(n)] if t in derived}) >= 2 for n in nodes)


def _norm_like(nodes: list[Any]) -> bool:
    """Whether every weight of these layers is 1-D (normalisation scales) or there is none."""
    return all(len(w.shape) <= 1 for n in nodes for w in n.layer.weights)


def _period(signatures: list[tuple]) -> int:
    count = len(signatures)
    for p in range(1, count + 1):
        if count % p == 0 and all(signatures[i] == signatures[i % p] for i in range(count)):
            return p
    return count


def _units(graph: _Graph) -> list[list[_Unit]]:
    """Chains of the smallest segments, each chain in graph order."""
    nxt: dict[int, _Unit] = {}
    for tensor_id in sorted(graph.tensors, key=lambda t: graph.rank[id(graph.producer[t])]):
        below = graph.descendants(tensor_id)
        best = None
        for node in graph.nodes:
            if id(node) not in below:
                continue
            for end in graph.outputs[id(node)]:
                nodes = graph.segment(tensor_id, end, below)
                if nodes is not None and (best is None or len(nodes) < len(best.nodes)):
                    best = _Unit(tensor_id, end, nodes, graph.is_residual(tensor_id, nodes))
        if best is not None:
            nxt[tensor_id] = best
    ends = {u.end for u in nxt.values()}
    chains = []
    for start in nxt:
        if start in ends:
            continue
        chain, seen = [], set()
        while start in nxt and start not in seen:
            seen.add(start)
            chain.append(nxt[start])
            start = nxt[start].end
        chains.append(chain)
    return chains


def _segments(model: keras.Model) -> list[tuple[int, int, list[Any]]]:
    """``(start tensor, end tensor, nodes)`` of every block, in graph order."""
    graph = _Graph(model)
    found = []
    for chain in _units(graph):
        runs: list[list[tuple[_Unit, list[Any]]]] = [[]]
        for unit in chain:
            if unit.residual:
                runs[-1].append((unit, list(unit.nodes)))
            elif runs[-1] and _norm_like(unit.nodes):
                head, nodes = runs[-1][-1]
                runs[-1][-1] = (_Unit(head.start, unit.end, head.nodes, True), nodes + unit.nodes)
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if not run:
                continue
            signatures = [tuple(type(n.layer).__name__ for n in u.nodes) for u, _ in run]
            p = _period(signatures)
            for i in range(0, len(run), p):
                group = run[i : i + p]
                nodes = [n for _, ns in group for n in ns]
                if any(n.layer.weights for n in nodes):
                    found.append((group[0][0].start, group[-1][0].end, nodes))
    return found


def _describe(model: keras.Model, segments: list) -> list[Block]:
    blocks = []
    for i, (start, end, nodes) in enumerate(segments):
        layers = list(dict.fromkeys(n.layer for n in nodes))
        names = tuple(layer.name for layer in layers)
        start_layer = _producer_name(model, start)
        end_layer = _producer_name(model, end)
        params = sum(int(layer.count_params()) for layer in layers)
        blocks.append(Block(i, names, params, start_layer, end_layer))
    return blocks


def _producer_name(model: keras.Model, tensor_id: int) -> str:
    for node in [n for ns in nodes_by_depth(model).values() for n in ns]:
        if any(id(t) == tensor_id for t in tf.nest.flatten(node.outputs)):
            return node.layer.name
    return "?"


def _check(model: Any, where: str) -> keras.Model:
    check_model(model, "model")
    if not is_graph_network(model):
        raise TypeError(
            f"{where}: `model` {model.name!r} ({type(model).__name__}) is a subclassed model, so "
            "its layer graph cannot be cut into blocks. Build it with the functional API "
            "(keras.Input ... keras.Model(inputs, outputs)) or a Sequential with an input shape."
        )
    return model


def find_blocks(model: keras.Model) -> list[Block]:
    """The residual blocks of a functional tf_keras model that :func:`drop_blocks` can drop.

    Args:
        model: a functional (or built Sequential) tf_keras model.

    Returns:
        The blocks in graph order (empty when the model has none, e.g. a plain ``Dense`` MLP).

    Raises:
        TypeError: ``model`` is not a tf_keras model or is subclassed.

    Example:
        >>> from tfcompress._keras import keras
        >>> x = keras.Input((4,))
        >>> y = keras.layers.Add(name="add")([x, keras.layers.Dense(4, name="d")(x)])
        >>> [b.layers for b in find_blocks(keras.Model(x, y))]
        [('d', 'add')]
    """
    model = _check(model, "find_blocks")
    return _describe(model, _segments(model))


def _chosen(model: keras.Model, blocks: Any, found: list[Block]) -> list[int]:
    what = (
        "; ".join(f"block {b.index}: {', '.join(b.layers)}" for b in found)
        if found
        else "no residual block (a block is a segment x -> ... -> Add(x, f(x)) of one shape)"
    )
    if isinstance(blocks, (int, np.integer)) and not isinstance(blocks, bool):
        count = int(blocks)
        if count < 0:
            raise ValueError(must_be("blocks", "an int >= 0", blocks, where="drop_blocks"))
        if count > len(found):
            raise ValueError(
                f"drop_blocks: `blocks`={count} asks for more blocks than model {model.name!r} "
                f"has ({len(found)}); found {what}. Pass blocks <= {len(found)}."
            )
        return [b.index for b in found[len(found) - count :]]
    if isinstance(blocks, str):
        blocks = [blocks]
    if isinstance(blocks, Sequence) and blocks and all(isinstance(b, str) for b in blocks):
        chosen = []
        for name in blocks:
            hits = [b.index for b in found if name in b.layers]
            if not hits:
                raise ValueError(
                    f"drop_blocks: layer {name!r} of `blocks` is in no droppable block of model "
                    f"{model.name!r}; found {what}. Name a layer of one of these blocks."
                )
            chosen.extend(h for h in hits if h not in chosen)
        return sorted(chosen)
    raise TypeError(
        must_be(
            "blocks",
            "an int (how many blocks to drop, the last ones) or a list of layer names",
            blocks,
            "Pass e.g. blocks=1 or blocks=['block_1_mha'].",
            where="drop_blocks",
        )
    )


def _copy(layer: Any) -> Any:
    if isinstance(layer, keras.Model) and is_graph_network(layer):
        return keras.models.clone_model(layer)
    return layer.__class__.from_config(layer.get_config())


def _rebuild(model: keras.Model, dropped: list[tuple[int, int, list[Any]]]) -> keras.Model:
    skip = {id(n) for _, _, nodes in dropped for n in nodes}
    alias = {end: start for start, end, _ in dropped}
    graph = _Graph(model)
    new: dict[int, Any] = {}
    copies: dict[int, Any] = {}

    def look(tensor: Any) -> Any:
        key = id(tensor)
        while key in alias:
            key = alias[key]
        return new[key]

    def swap(value: Any) -> Any:
        return look(value) if id(value) in graph.tensors else value

    for node in graph.order:
        if node.is_input:
            cfg = node.layer.get_config()
            tensor = keras.Input(
                batch_shape=cfg["batch_input_shape"],
                dtype=cfg.get("dtype"),
                sparse=cfg.get("sparse", False),
                ragged=cfg.get("ragged", False),
                name=node.layer.name,
            )
            new[id(tf.nest.flatten(node.outputs)[0])] = tensor
            continue
        if id(node) in skip:
            continue
        layer = node.layer
        if id(layer) not in copies:
            copies[id(layer)] = (layer, _copy(layer))
        args, kwargs = tf.nest.map_structure(swap, (node.call_args, node.call_kwargs))
        outs = copies[id(layer)][1](*args, **kwargs)
        for old, made in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outs), strict=True):
            new[id(old)] = made
    inputs = tf.nest.map_structure(look, model.input)
    outputs = tf.nest.map_structure(look, model.output)
    rebuilt = keras.Model(inputs, outputs, name=model.name)
    for old, copy in copies.values():
        copy.set_weights(old.get_weights())
    return rebuilt


def drop_blocks(
    model: keras.Model, blocks: int | str | Sequence[str] = 1
) -> tuple[keras.Model, CompressionReport]:
    """Drop whole residual blocks of a functional model (each replaced by the identity).

    The new model is the old graph with each dropped block's output tensor replaced by its input
    tensor; every kept layer is a fresh copy holding the same weights (so the result can be
    distilled from ``model``). Fine-tune it afterwards: dropping a block changes the function.

    Args:
        model: a functional (or built Sequential) tf_keras model.
        blocks: how many blocks to drop (an int: the LAST ones, as dropping the top layers of a
            pre-trained transformer costs least (Sajjad et al. 2023), and it keeps the early
            feature extraction), or layer names (each drops the block that holds it).

    Returns:
        ``(new_model, report)``: the report's decisions list every layer of every candidate
        block (applied: dropped), its settings ``blocks`` (every candidate, as dicts),
        ``dropped`` (their indices) and ``params_removed``.

    Raises:
        TypeError: ``model`` is not a tf_keras functional model; ``blocks`` of a wrong type.
        ValueError: ``blocks`` asks for more blocks than exist, or names a layer in no block.

    Example:
        >>> from tfcompress._keras import keras
        >>> x = keras.Input((4,))
        >>> h = keras.layers.Add(name="add")([x, keras.layers.Dense(4, name="d")(x)])
        >>> m = keras.Model(x, keras.layers.Dense(1, name="out")(h))
        >>> small, report = drop_blocks(m, ["d"])
        >>> [layer.name for layer in small.layers[1:]], report.settings["params_removed"]
        (['out'], 20)
    """
    model = _check(model, "drop_blocks")
    segments = _segments(model)
    found = _describe(model, segments)
    chosen = _chosen(model, blocks, found)
    new_model = _rebuild(model, [segments[i] for i in chosen])
    decisions = []
    for block in found:
        drop = block.index in chosen
        for name in block.layers:
            decisions.append(
                LayerDecision(
                    name,
                    type(model.get_layer(name)).__name__,
                    drop,
                    detail=f"dropped with block {block.index}" if drop else "",
                    reason="" if drop else f"in block {block.index}, kept",
                )
            )
    settings = {
        "blocks": [dataclasses.asdict(b) for b in found],
        "dropped": chosen,
        "params_removed": sum(found[i].params for i in chosen),
    }
    if not found:
        settings["reason"] = (
            f"model {model.name!r} has no residual block (a segment x -> ... -> Add(x, f(x)) "
            "between two tensors of one shape)"
        )
    return new_model, CompressionReport("drop_blocks", tuple(decisions), settings)
