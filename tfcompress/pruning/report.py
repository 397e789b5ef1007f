"""What pruning acts on (:func:`prunable_weights`) and how sparse a model is
(:func:`sparsity_report`).

Example:
    >>> from tfcompress._keras import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="m")
    >>> print(sparsity_report(m).to_markdown().splitlines()[0])
    sparsity of 'm': 0.0000 overall over 8 prunable weights
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from tfcompress._compat import flatten_layers, tfmot_prunable_weights
from tfcompress._keras import check_model, keras, tf
from tfcompress._text import markdown_table
from tfcompress.pruning.schedule import PruneLowMagnitude, PruneRegistry

__all__ = [
    "SparsityReport",
    "WeightSparsity",
    "find_wrappers",
    "is_two_four",
    "sparsity_report",
    "walk_layers",
]

_Registry = PruneRegistry
_KERNEL_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Embedding,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)


def _own_tables(layer: Any) -> list:
    """The rank-2 weights named ``embeddings`` that ``layer`` itself (not a sublayer) holds."""
    inner = {id(w) for sub in flatten_layers(layer, include_self=False) for w in sub.weights}
    return [
        w
        for w in layer.weights
        if id(w) not in inner
        and w.shape.rank == 2
        and w.name.split(":")[0].rsplit("/", 1)[-1] == "embeddings"
    ]


# ---------------------------------------------------------------------- finding wrappers


def walk_layers(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, layer)`` for every layer below ``obj``, through nested functional models
    and through the sub-models a subclassed model holds as attributes (the layers inside a
    non-model layer are not listed). Wrappers are yielded under the wrapped layer's name and
    not entered; input layers are skipped."""
    seen: set[int] = set()

    def visit(node: Any, base: str) -> Iterator[tuple[str, Any]]:
        for child in flatten_layers(node, include_self=False, recursive=False):
            if id(child) in seen or isinstance(child, keras.layers.InputLayer):
                continue
            seen.add(id(child))
            if isinstance(child, PruneLowMagnitude):
                yield f"{base}{child.layer.name}", child
                continue
            yield f"{base}{child.name}", child
            if isinstance(child, keras.Model):
                yield from visit(child, f"{base}{child.name}/")

    yield from visit(obj, prefix)


def find_wrappers(model: Any) -> list[tuple[str, PruneLowMagnitude]]:
    """The pruning wrappers of ``model`` with their paths, searched recursively.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> find_wrappers(m)
        []
    """
    return [(p, layer) for p, layer in walk_layers(model) if isinstance(layer, PruneLowMagnitude)]


# ---------------------------------------------------------------------- prunable weights


@dataclasses.dataclass
class Candidates:
    """The weights of a layer that pruning would act on, and why (not)."""

    weights: list[Any]
    source: str  # "own" | "tfmot" | "sublayers" | "none"
    note: str = ""


def weight_label(layer: Any, variable: Any) -> str:
    name = variable.name.split(":")[0]
    prefix = f"{layer.name}/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def _registry_weights(layer: Any) -> list[Any]:
    return tfmot_prunable_weights(layer)


def _dedupe(weights: list[Any]) -> list[Any]:
    seen, out = set(), []
    for weight in weights:
        if weight is not None and weight.ref() not in seen:
            seen.add(weight.ref())
            out.append(weight)
    return out


def prunable_weights(layer: Any) -> Candidates:
    """What :func:`tfcompress.prune` prunes in ``layer`` (a built, unwrapped layer).

    Example:
        >>> dense = keras.layers.Dense(2)
        >>> dense.build((None, 3))
        >>> [weight_label(dense, w) for w in prunable_weights(dense).weights]
        ['kernel']
    """
    cls = type(layer).__name__
    if not layer.weights:
        return Candidates([], "none", "no weights")
    if hasattr(layer, "get_prunable_weights"):
        weights = _dedupe(list(layer.get_prunable_weights()))
        note = "" if weights else f"nothing to prune: {cls}.get_prunable_weights() returns none"
        return Candidates(weights, "own", note)
    if _Registry.supports(layer):
        weights = _dedupe(_registry_weights(layer))
        note = ""
        if not weights:
            names = ", ".join(weight_label(layer, w) for w in layer.weights)
            note = f"nothing to prune: TFMOT does not prune {cls} weights ({names})"
        return Candidates(weights, "tfmot", note)
    weights = []
    for sub in flatten_layers(layer, include_self=True, recursive=True):
        if sub is not layer and hasattr(sub, "get_prunable_weights"):
            weights += list(sub.get_prunable_weights())
        elif isinstance(sub, _KERNEL_LAYERS):
            attribute = "embeddings" if isinstance(sub, keras.layers.Embedding) else "kernel"
            weights.append(getattr(sub, attribute, None))
        else:  # own lookup/position tables, e.g. Model Garden OnDeviceEmbedding/PositionEmbedding
            weights += _own_tables(sub)
    # QAT wrappers replace a kernel attribute by its fake-quantized tensor: keep variables only.
    weights = [w for w in _dedupe(weights) if getattr(w, "trainable", False)]
    if weights:
        return Candidates(weights, "sublayers")
    if not layer.trainable_weights:
        return Candidates([], "none", f"nothing to prune: {cls} has only non-trainable weights")
    names = ", ".join(weight_label(layer, w) for w in layer.weights)
    return Candidates(
        [],
        "none",
        f"custom layer {cls} has no prunable weights TFMOT can handle ({names}): define "
        f"get_prunable_weights() returning the kernels to prune, or exclude it with skip=",
    )


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    """Measured sparsity of one prunable weight.

    Attributes:
        layer: path of the layer in the model (the wrapped layer's name for wrappers).
        weight: the weight's name within the layer (``"kernel"``, ``"dense/kernel"``).
        shape: the weight's shape.
        zeros: number of zero entries (of ``weight * mask`` for a wrapped layer).
        size: number of entries.
        two_four: for rank-2/4 weights, whether every group of 4 consecutive weights along
            TFMOT's m-by-n axis has at most 2 non-zeros; None otherwise.
        wrapped: whether the layer carries a pruning wrapper.
    """

    layer: str
    weight: str
    shape: tuple[int, ...]
    zeros: int
    size: int
    two_four: bool | None
    wrapped: bool

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-weight measured sparsity of a (pruned or stripped) model.

    Example:
        >>> r = SparsityReport("m", (WeightSparsity("d", "kernel", (2, 2), 3, 4, None, False),))
        >>> r.overall, r["d"]
        (0.75, 0.75)
    """

    model: str
    rows: tuple[WeightSparsity, ...]

    @property
    def overall(self) -> float:
        """Zeros over all prunable weights."""
        size = sum(r.size for r in self.rows)
        return sum(r.zeros for r in self.rows) / size if size else 0.0

    @property
    def layers(self) -> dict[str, float]:
        """``{layer path: sparsity over its prunable weights}``."""
        totals: dict[str, list[int]] = {}
        for row in self.rows:
            entry = totals.setdefault(row.layer, [0, 0])
            entry[0] += row.zeros
            entry[1] += row.size
        return {k: z / s if s else 0.0 for k, (z, s) in totals.items()}

    def __getitem__(self, layer: str) -> float:
        layers = self.layers
        if layer not in layers:
            raise KeyError(
                f"No prunable layer '{layer}' in the sparsity report of model '{self.model}'; "
                f"layers: {', '.join(layers) or '(none)'}."
            )
        return layers[layer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "overall": self.overall,
            "weights": [
                {**dataclasses.asdict(r), "shape": list(r.shape), "sparsity": r.sparsity}
                for r in self.rows
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        lines = [
            f"sparsity of '{self.model}': {self.overall:.4f} overall over "
            f"{sum(r.size for r in self.rows):,} prunable weights",
            "",
        ]
        head = ["layer", "weight", "shape", "zeros", "size", "sparsity", "2:4"]
        rows = [
            [
                r.layer,
                r.weight,
                "x".join(map(str, r.shape)),
                f"{r.zeros:,}",
                f"{r.size:,}",
                f"{r.sparsity:.4f}",
                "-" if r.two_four is None else ("yes" if r.two_four else "no"),
            ]
            for r in self.rows
        ]
        lines.append(markdown_table(head, rows))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def is_two_four(value: np.ndarray) -> bool | None:
    """At most 2 non-zeros in every 4 consecutive weights along TFMOT's m-by-n axis (the input
    axis of a Dense kernel, ``C_IN`` of a conv kernel); None for ranks other than 2 and 4.

    Example:
        >>> kernel = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0]])  # (in=4, out=2)
        >>> is_two_four(kernel), is_two_four(np.ones((4, 2))), is_two_four(np.ones(3))
        (True, False, None)
    """
    value = np.asarray(value)
    if value.ndim == 2:
        rows = value.T
    elif value.ndim == 4:  # (H, W, C_IN, C_OUT) -> (C_OUT * H * W, C_IN), as TFMOT
        rows = np.transpose(value, (3, 0, 1, 2)).reshape(-1, value.shape[2])
    else:
        return None
    pad = (-rows.shape[1]) % 4
    rows = np.pad(rows, ((0, 0), (0, pad)))
    groups = rows.reshape(-1, 4)
    return bool(np.all(np.count_nonzero(groups, axis=1) <= 2))


def _row(path: str, layer: Any, weight: Any, value: np.ndarray, wrapped: bool) -> WeightSparsity:
    return WeightSparsity(
        layer=path,
        weight=weight_label(layer, weight),
        shape=tuple(int(d) for d in value.shape),
        zeros=int(value.size - np.count_nonzero(value)),
        size=int(value.size),
        two_four=is_two_four(value),
        wrapped=wrapped,
    )


def sparsity_report(model: keras.Model) -> SparsityReport:
    """Measure the sparsity of every prunable weight of ``model`` (wrapped or stripped).

    Prunable weights are those :func:`prune` would prune (kernels, embedding tables,
    ``get_prunable_weights()``, kernels inside custom layers); for a wrapped layer the
    measured value is ``weight * mask``. Searches nested models and the sub-models of
    subclassed models.

    Args:
        model: any tf_keras model.

    Returns:
        A :class:`SparsityReport` (``.overall``, ``.layers``, ``report[layer]``,
        ``.to_markdown()``).

    Raises:
        TypeError: ``model`` is not a tf_keras model.

    Example:
        >>> from tfcompress._keras import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
        >>> sparsity_report(m)["d"]
        0.0
    """
    check_model(model, "model")
    rows = []
    for path, layer in walk_layers(model):
        if isinstance(layer, PruneLowMagnitude):
            for weight, mask, _ in layer.pruning_vars:
                value = np.asarray(tf.convert_to_tensor(weight)) * np.asarray(
                    tf.convert_to_tensor(mask)
                )
                rows.append(_row(path, layer.layer, weight, value, True))
        elif not isinstance(layer, keras.Model):
            for weight in prunable_weights(layer).weights:
                value = np.asarray(tf.convert_to_tensor(weight))
                rows.append(_row(path, layer, weight, value, False))
    return SparsityReport(model.name, tuple(rows))
