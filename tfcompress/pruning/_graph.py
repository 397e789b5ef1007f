"""Channel bookkeeping of :func:`tfcompress.shrink` on a tf_keras functional graph: which units
and embedding dimensions are tied together, and which are blocked and why (docs/pruning.md).

Example:
    >>> from tfcompress._keras import keras
    >>> x = keras.Input((3,))
    >>> h = keras.layers.Dense(4, name="h")(x)
    >>> plan = analyse(keras.Model(x, keras.layers.Dense(1, name="out")(h)), lambda n: True)
    >>> plan.blocked("h"), plan.blocked("out")[0][0]
    ([], 'output')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress._compat import nodes_by_depth
from tfcompress._keras import keras
from tfcompress.models.layers import Cross, MaskedMean, PositionEmbedding, TokenAt
from tfcompress.pruning._thirdparty import thirdparty_kind

__all__ = ["Plan", "analyse", "layout_indices", "register_shrink_handler", "shrink_rewrite"]

#: Layers that apply the same function to every channel independently (no weights).
_ELEMENTWISE = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.ThresholdedReLU,
    TokenAt,
)
#: Layers that combine inputs of the same shape channel by channel.
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
#: Activations that mix channels (not channel-wise).
_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


@dataclasses.dataclass
class Plan:
    """Result of :func:`analyse`: channel groups, who is tied to whom, and what is blocked.

    Attributes:
        widths: width of every group key (source layer name or ``fixed:...`` key).
        sources: source layer name -> layer (``Dense`` and ``Embedding`` of the top level).
        in_layouts: layer name -> the layout of the input whose channels its weights index
            (``Dense`` kernel rows, ``Cross``, normalisation and position parameters).
        out_layouts: layer name -> the layout of its output (channel-preserving layers whose
            config holds the width, e.g. ``Reshape``).
        source_outputs: source layer name -> its output tensors in this model (one per call).
    """

    widths: dict[str, int] = dataclasses.field(default_factory=dict)
    sources: dict[str, Any] = dataclasses.field(default_factory=dict)
    in_layouts: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    out_layouts: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    source_outputs: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    _parent: dict[str, str] = dataclasses.field(default_factory=dict)
    _reasons: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ union-find
    def add(self, key: str, width: int) -> None:
        if key not in self._parent:
            self._parent[key] = key
            self.widths[key] = int(width)

    def add_fixed(self, key: str, width: int, what: str) -> None:
        self.add(key, width)
        self.block(key, "fixed", f"{what}, whose width is fixed")

    def find(self, key: str) -> str:
        root = key
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[key] != root:  # path compression
            self._parent[key], key = root, self._parent[key]
        return root

    def union(self, a: str, b: str, via: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        reasons_a = self._reasons.pop(ra, [])
        reasons_b = self._reasons.pop(rb, [])
        self._parent[rb] = ra
        merged = []
        for kind, reason in [*reasons_a, *reasons_b]:
            if kind == "fixed":  # a source tied to a fixed tensor cannot change either
                kind, reason = "shape", f"{via} ties its channels to {reason}"
            merged.append((kind, reason))
        if merged:
            self._reasons[ra] = _unique(merged)

    def block(self, key: str, kind: str, reason: str) -> None:
        root = self.find(key)
        self._reasons[root] = _unique([*self._reasons.get(root, []), (kind, reason)])

    def blocked(self, key: str) -> list[tuple[str, str]]:
        """``[(kind, reason), ...]`` why the group of ``key`` is kept whole ([] if free).

        Kinds: ``"output"`` (reaches a model output), ``"filter"`` (tied to a layer excluded by
        ``layers``/``skip``/``embeddings``), ``"shape"`` (reaches a layer that cannot be
        rewired), ``"fixed"`` (a model input or unshrinkable tensor itself).
        """
        return list(self._reasons.get(self.find(key), []))

    def members(self, key: str) -> list[str]:
        """The source layer names in the group of ``key``."""
        root = self.find(key)
        return [name for name in self.sources if self.find(name) == root]

    def roots(self) -> list[str]:
        """The group roots that contain at least one source, in source order."""
        seen: list[str] = []
        for name in self.sources:
            root = self.find(name)
            if root not in seen:
                seen.append(root)
        return seen


def _unique(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def layout_indices(layout: list[str], plan: Plan, keep: dict[str, np.ndarray]) -> np.ndarray:
    """Kept channel indices of a tensor with ``layout``; ``keep`` maps group roots to indices.

    Example:
        >>> p = Plan(); p.add("a", 3); p.add("b", 2)
        >>> layout_indices(["a", "b"], p, {"a": np.array([0, 2])}).tolist()
        [0, 2, 3, 4]
    """
    out, offset = [], 0
    for key in layout:
        width = plan.widths[key]
        kept = keep.get(plan.find(key))
        out.append(offset + (np.arange(width) if kept is None else np.asarray(kept)))
        offset += width
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0,), np.int64)


def _describe(layer: Any) -> str:
    return f"{type(layer).__name__} '{layer.name}'"


def _last_dim(tensor: Any) -> int | None:
    shape = tensor.shape
    if shape.rank is None or shape.rank == 0 or shape[-1] is None:
        return None
    return int(shape[-1])


def _is_flat_reshape(layer: Any, in_shape: Any, out_shape: Any) -> bool:
    """A Reshape/Flatten that keeps the last axis and only adds or drops unit axes."""
    if in_shape.rank is None or out_shape.rank is None:
        return False
    ins, outs = list(in_shape)[1:], list(out_shape)[1:]
    if not ins or not outs or None in ins or None in outs or ins[-1] != outs[-1]:
        return False
    if isinstance(layer, keras.layers.Reshape) and -1 in tuple(layer.target_shape):
        return False
    return int(np.prod(ins[:-1] or [1])) == int(np.prod(outs[:-1] or [1]))


class _Walker:
    """One pass over the model's nodes, filling a :class:`Plan`."""

    def __init__(self, model: Any, selected: Callable[[str], bool], embeddings: bool) -> None:
        self.model = model
        self.selected = selected
        self.embeddings = embeddings
        self.plan = Plan()
        self.layouts: dict[int, list[str] | None] = {}
        self.all_in_layouts: dict[str, list[list[str]]] = {}

    # ------------------------------------------------------------------ helpers
    def layout(self, tensor: Any) -> list[str] | None:
        return self.layouts.get(id(tensor))

    def set_fixed(self, tensor: Any, key: str, what: str) -> None:
        width = _last_dim(tensor)
        if width is None:
            self.layouts[id(tensor)] = None
            return
        self.plan.add_fixed(key, width, what)
        self.layouts[id(tensor)] = [key]

    def block_tensor(self, tensor: Any, kind: str, reason: str) -> None:
        for key in self.layout(tensor) or []:
            self.plan.block(key, kind, reason)

    def block_inputs(self, node: Any, kind: str, reason: str) -> None:
        for tensor in node.keras_inputs:
            self.block_tensor(tensor, kind, reason)

    def fixed_outputs(self, node: Any, what: str) -> None:
        for i, tensor in enumerate(_flat(node.outputs)):
            self.set_fixed(tensor, f"fixed:{node.layer.name}:{id(node)}:{i}", what)

    def record_in_layout(self, layer: Any, layout: list[str]) -> None:
        self.all_in_layouts.setdefault(layer.name, []).append(list(layout))
        self.plan.in_layouts.setdefault(layer.name, list(layout))

    def tie(self, layouts: list[list[str] | None], layer: Any) -> list[str] | None:
        """Tie the channels of same-shaped inputs; return the common layout (None: blocked)."""
        via = _describe(layer)
        known = [lay for lay in layouts if lay is not None]
        widths = [[self.plan.widths[k] for k in lay] for lay in known]
        if len(known) != len(layouts) or any(w != widths[0] for w in widths):
            reason = f"{via} combines inputs whose channel blocks do not line up"
            for lay in known:
                for key in lay:
                    self.plan.block(key, "shape", reason)
            return None
        for lay in known[1:]:
            for a, b in zip(known[0], lay, strict=True):
                self.plan.union(a, b, via)
        return list(known[0])

    # ------------------------------------------------------------------ the walk
    def run(self) -> Plan:
        model = self.model
        by_depth = nodes_by_depth(model)
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                self.visit(node)
        for tensor, name in zip(_flat(model.outputs), model.output_names, strict=False):
            self.block_tensor(tensor, "output", f"reaches the model output '{name}'")
        for name, layouts in self.all_in_layouts.items():
            roots = [[self.plan.find(k) for k in lay] for lay in layouts]
            if any(r != roots[0] for r in roots):
                reason = f"shared layer '{name}' is called on inputs with different channels"
                for lay in layouts:
                    for key in lay:
                        self.plan.block(key, "shape", reason)
        return self.plan

    def visit(self, node: Any) -> None:
        layer = node.layer
        outputs = _flat(node.outputs)
        if isinstance(layer, keras.layers.InputLayer) or node.is_input:
            for tensor in outputs:
                self.set_fixed(tensor, f"input:{layer.name}", f"the model input '{layer.name}'")
            return
        inputs = list(node.keras_inputs)
        first = self.layout(inputs[0]) if inputs else None
        visitor = _visitor_for(layer)
        if visitor is None:
            self.opaque(node, f"feeds {_describe(layer)}, which shrink cannot rewire")
        else:
            visitor(self, node, inputs, outputs, first)

    def opaque(self, node: Any, reason: str) -> None:
        self.block_inputs(node, "shape", reason)
        self.fixed_outputs(node, f"the output of {_describe(node.layer)}")

    def source(self, layer: Any, width: int, outputs: list[Any]) -> None:
        name = layer.name
        if name not in self.plan.sources:
            self.plan.sources[name] = layer
            self.plan.add(name, width)
            if isinstance(layer, keras.layers.Embedding) and not self.embeddings:
                self.plan.block(name, "filter", f"embedding '{name}' kept (embeddings=False)")
            elif not self.selected(name):
                self.plan.block(name, "filter", f"'{name}' is not selected by `layers`/`skip`")
        for tensor in outputs:
            self.layouts[id(tensor)] = [name]
            self.plan.source_outputs.setdefault(name, []).append(tensor)


# --------------------------------------------------------------------------- layer handlers
# Each visitor: (walker, node, input tensors, output tensors, layout of the first input).


def _visit_nested_model(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    w.block_inputs(node, "shape", f"feeds the nested model '{node.layer.name}'")
    w.fixed_outputs(node, f"the output of {_describe(node.layer)}")


def _visit_dense(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    if first is not None:
        w.record_in_layout(node.layer, first)
    w.source(node.layer, int(node.layer.units), outputs)


def _visit_embedding(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    w.block_inputs(node, "shape", f"is used as ids by {_describe(node.layer)}")
    w.source(node.layer, int(node.layer.output_dim), outputs)


def _visit_activation(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    if getattr(node.layer.activation, "__name__", "") in _MIXING_ACTIVATIONS:
        w.opaque(node, f"feeds {_describe(node.layer)}, which mixes channels")
    else:
        w.layouts[id(outputs[0])] = first


def _visit_mixing(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    w.opaque(node, f"feeds {_describe(node.layer)}, which mixes channels")


def _visit_elementwise(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    w.layouts[id(outputs[0])] = first


def _visit_reshape(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    layer = node.layer
    if first is not None and _is_flat_reshape(layer, inputs[0].shape, outputs[0].shape):
        w.layouts[id(outputs[0])] = first
        w.plan.out_layouts.setdefault(layer.name, list(first))
        w.record_in_layout(layer, first)
    else:
        w.opaque(node, f"feeds {_describe(layer)} to another shape")


def _visit_batch_norm(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    layer = node.layer
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = inputs[0].shape.rank
    if first is not None and rank is not None and [a % rank for a in axes] == [rank - 1]:
        w.record_in_layout(layer, first)
        w.layouts[id(outputs[0])] = first
    else:
        w.opaque(node, f"feeds {_describe(layer)} not normalising the last axis")


def _visit_layer_norm(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    layer = node.layer
    rank = inputs[0].shape.rank
    axes = [a % rank for a in layer.axis] if rank is not None else []
    if first is not None and axes == [rank - 1]:
        w.record_in_layout(layer, first)
        w.layouts[id(outputs[0])] = first
    else:
        w.opaque(node, f"feeds {_describe(layer)} over several axes")


def _visit_channelwise(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    """Weights indexed by the last input axis, output channels = input channels."""
    if first is not None:
        w.record_in_layout(node.layer, first)
    w.layouts[id(outputs[0])] = first


def _visit_masked_mean(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    args = node.call_args[0] if node.call_args else []
    values, mask = (list(args) + [None, None])[:2]
    if mask is not None:
        w.block_tensor(mask, "shape", f"is the mask of {_describe(node.layer)}")
    w.layouts[id(outputs[0])] = w.layout(values) if values is not None else None


def _visit_concatenate(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    layer = node.layer
    rank = outputs[0].shape.rank
    layouts = [w.layout(t) for t in inputs]
    if rank is not None and layer.axis % rank == rank - 1:
        if any(lay is None for lay in layouts):
            w.opaque(node, f"feeds {_describe(layer)} with an input of unknown width")
        else:
            w.layouts[id(outputs[0])] = [k for lay in layouts for k in lay]
    else:
        w.layouts[id(outputs[0])] = w.tie(layouts, layer)
        if w.layout(outputs[0]) is None:
            w.fixed_outputs(node, f"the output of {_describe(layer)}")


def _visit_merge(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    layer = node.layer
    tied = w.tie([w.layout(t) for t in inputs], layer)
    if (isinstance(layer, Cross) or thirdparty_kind(layer) == "tfrs_cross") and tied is not None:
        w.record_in_layout(layer, tied)
    w.layouts[id(outputs[0])] = tied
    if tied is None:
        w.fixed_outputs(node, f"the output of {_describe(layer)}")


def _visit_attention(w: _Walker, node: Any, inputs: list, outputs: list, first: Any) -> None:
    w.opaque(
        node, f"feeds {_describe(node.layer)} (its query/key/value projections are not rewired)"
    )


_Visitor = Callable[[_Walker, Any, list, list, Any], None]

#: Layer class -> how the walk treats it; a layer takes the first class of its MRO found here.
_VISITORS: dict[type, _Visitor] = {
    keras.Model: _visit_nested_model,
    keras.layers.Dense: _visit_dense,
    keras.layers.Embedding: _visit_embedding,
    keras.layers.Activation: _visit_activation,
    keras.layers.Softmax: _visit_mixing,
    **dict.fromkeys(_ELEMENTWISE, _visit_elementwise),
    keras.layers.Reshape: _visit_reshape,
    keras.layers.Flatten: _visit_reshape,
    keras.layers.BatchNormalization: _visit_batch_norm,
    keras.layers.LayerNormalization: _visit_layer_norm,
    PositionEmbedding: _visit_channelwise,
    MaskedMean: _visit_masked_mean,
    keras.layers.Concatenate: _visit_concatenate,
    **dict.fromkeys((*_MERGES, Cross), _visit_merge),
    keras.layers.MultiHeadAttention: _visit_attention,
}
#: User-registered class -> ``handler(layer, kept) -> weights`` (see register_shrink_handler).
_REWRITES: dict[type, Callable[[Any, np.ndarray], list]] = {}


def _registered_class(layer: Any) -> type | None:
    for cls in type(layer).__mro__:
        if cls in _VISITORS:
            return cls
    return None


def _visitor_for(layer: Any) -> _Visitor | None:
    if thirdparty_kind(layer) == "tfrs_cross":  # x0 * (W x + b) + x: ties x0 and x
        return _visit_merge
    cls = _registered_class(layer)
    return None if cls is None else _VISITORS[cls]


def shrink_rewrite(layer: Any) -> Callable[[Any, np.ndarray], list] | None:
    """The user handler that slices ``layer``'s weights (None: tfcompress slices them)."""
    cls = _registered_class(layer)
    return None if cls is None else _REWRITES.get(cls)


def register_shrink_handler(layer_class: type, handler: Callable[[Any, np.ndarray], list]) -> None:
    """Let :func:`~tfcompress.pruning.shrink` shrink through a channel-wise layer of your own.

    Without a handler, a layer class shrink does not know blocks its input channels (the
    report says ``"feeds <Class> '<name>', which shrink cannot rewire"``), so the ``Dense``
    or ``Embedding`` feeding it keeps its full width. Registering ``layer_class`` declares it
    channel-wise: its output's last axis is its input's last axis, channel by channel, and
    its weights (if any) are indexed by that axis. When shrink removes channels of its input,
    ``handler(layer, kept)`` is called with the layer and the sorted indices of the kept
    input channels, and returns the layer's weights (in ``layer.get_weights()`` order) with
    only those channels; the rebuilt layer must create its weights from its input's width in
    ``build`` (its config holds no width). Subclasses take their base's handler unless they
    have one of their own; registering a built-in class replaces tfcompress's own handling.

    Args:
        layer_class: a tf_keras ``Layer`` subclass (the class, not an instance).
        handler: ``handler(layer, kept: np.ndarray) -> list[np.ndarray]``.

    Raises:
        TypeError: ``layer_class`` is not a Layer subclass, or ``handler`` is not callable.

    Example:
        >>> import numpy as np
        >>> from tfcompress._keras import keras
        >>> from tfcompress.pruning import register_shrink_handler, shrink
        >>> class Scale(keras.layers.Layer):
        ...     def build(self, shape):
        ...         self.kernel = self.add_weight("kernel", shape=(shape[-1],))
        ...     def call(self, x):
        ...         return x * self.kernel
        >>> register_shrink_handler(Scale, lambda layer, kept: [layer.kernel.numpy()[kept]])
        >>> x = keras.Input((3,))
        >>> h = Scale(name="scale")(keras.layers.Dense(8, name="h")(x))
        >>> small = shrink(keras.Model(x, keras.layers.Dense(1)(h)), ratio=0.5)
        >>> small.get_layer("h").units, small.get_layer("scale").kernel.shape[0]
        (4, 4)
    """
    if not isinstance(layer_class, type) or not issubclass(layer_class, keras.layers.Layer):
        raise TypeError(
            "register_shrink_handler: `layer_class` must be a tf_keras Layer subclass (the "
            f"class itself, not an instance), got {layer_class!r} of type "
            f"{type(layer_class).__name__}."
        )
    if not callable(handler):
        raise TypeError(
            "register_shrink_handler: `handler` must be callable as handler(layer, kept) -> "
            f"weights, got {handler!r} of type {type(handler).__name__}."
        )
    _VISITORS[layer_class] = _visit_channelwise
    _REWRITES[layer_class] = handler


def _flat(structure: Any) -> list[Any]:
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in _flat(item)]
    if isinstance(structure, dict):
        return [t for item in structure.values() for t in _flat(item)]
    return [structure]


def analyse(model: Any, selected: Callable[[str], bool], embeddings: bool = True) -> Plan:
    """Propagate channel layouts through ``model`` and return the :class:`Plan`.

    Args:
        model: a functional or built Sequential tf_keras model.
        selected: ``layer name -> bool``, whether a source layer may be shrunk.
        embeddings: whether ``Embedding`` layers may be shrunk.

    Example:
        >>> x = keras.Input((3,))
        >>> m = keras.Model(x, keras.layers.Dense(1)(keras.layers.Dense(4, name="h")(x)))
        >>> analyse(m, lambda name: True).in_layouts["dense"]
        ['h']
    """
    return _Walker(model, selected, embeddings).run()
