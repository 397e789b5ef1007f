"""Layer filters (the ``layers=`` / ``skip=`` of prune, quantize and sensitivity) and the
per-layer :class:`CompressionReport`. What a filter may be: docs/pruning.md.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tfcompress._keras import keras, tf
from tfcompress._text import markdown_table

__all__ = [
    "CompressionReport",
    "IdLookup",
    "LayerDecision",
    "LayerFilter",
    "iter_layers",
    "match_layers",
]

LayerFilter = Any  # None | str | type | Callable[[layer], bool] | Sequence of those


def iter_layers(model: keras.Model, *, nested: bool = True) -> Iterator[tuple[str, Any]]:
    """Yield ``(path, layer)`` for every layer, depth-first, skipping input layers.

    Nested functional/sequential models are yielded themselves and then, when ``nested`` is
    true, their own layers with ``"outer/inner"`` paths.

    Example:
        >>> from tfcompress._keras import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
        >>> [p for p, _ in iter_layers(m)]
        ['d']
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        yield layer.name, layer
        if nested and isinstance(layer, keras.Model):
            for path, inner in iter_layers(layer, nested=True):
                yield f"{layer.name}/{path}", inner


def _entries(spec: LayerFilter) -> list[Any]:
    if spec is None:
        return []
    if isinstance(spec, (list, tuple, set, frozenset)):
        return list(spec)
    return [spec]


def _entry_matcher(entry: Any, argument: str) -> Callable[[str, Any], bool]:
    if isinstance(entry, str):
        if not entry:
            raise ValueError(f"`{argument}` contains an empty string; give a layer name or regex.")
        try:
            pattern = re.compile(entry)
        except re.error as err:
            pattern = None
            regex_error = err
        else:
            regex_error = None

        def by_name(path: str, layer: Any) -> bool:
            if entry in (path, layer.name):
                return True
            if pattern is None:
                return False
            return bool(pattern.fullmatch(path) or pattern.fullmatch(layer.name))

        by_name.regex_error = regex_error  # type: ignore[attr-defined]
        return by_name
    if isinstance(entry, type):
        if not issubclass(entry, keras.layers.Layer):
            raise TypeError(
                f"`{argument}` contains the class {entry.__name__}, which is not a tf_keras "
                "layer class; give a layer class such as keras.layers.Dense, a name, a regex "
                "or a callable."
            )
        return lambda path, layer: isinstance(layer, entry)
    if callable(entry):
        return lambda path, layer: bool(entry(layer))
    raise TypeError(
        f"`{argument}` must be None, a layer name or regex (str), a layer class, a callable "
        f"layer -> bool, or a list of those; received {entry!r} of type {type(entry).__name__}."
    )


def match_layers(
    model: keras.Model,
    spec: LayerFilter,
    *,
    argument: str = "layers",
    candidates: Sequence[tuple[str, Any]] | None = None,
) -> set[str]:
    """Return the paths of the layers matched by ``spec``.

    Args:
        model: The model whose layers are searched.
        spec: A layer filter (see the module docstring).
        argument: The argument name used in error messages.
        candidates: ``(path, layer)`` pairs to search; defaults to :func:`iter_layers`.

    Raises:
        TypeError: If ``spec`` has an entry of an unsupported type.
        ValueError: If a name, regex or class entry matches no layer.

    Example:
        >>> from tfcompress._keras import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d1"),
        ...                       keras.layers.Dense(1, name="d2")])
        >>> sorted(match_layers(m, "d[0-9]"))
        ['d1', 'd2']
    """
    pairs = list(iter_layers(model)) if candidates is None else list(candidates)
    matched: set[str] = set()
    for entry in _entries(spec):
        matcher = _entry_matcher(entry, argument)
        hits = {path for path, layer in pairs if matcher(path, layer)}
        if not hits and not (callable(entry) and not isinstance(entry, (str, type))):
            available = ", ".join(path for path, _ in pairs) or "(none)"
            what = entry.__name__ if isinstance(entry, type) else repr(entry)
            extra = ""
            regex_error = getattr(matcher, "regex_error", None)
            if regex_error is not None:
                extra = f" (it is not a valid regex either: {regex_error})"
            raise ValueError(
                f"`{argument}` entry {what} matches no layer of model '{model.name}'{extra}. "
                f"Available layers: {available}."
            )
        matched |= hits
    return matched


@dataclasses.dataclass(frozen=True)
class LayerDecision:
    """What a technique did to one layer.

    Attributes:
        layer: The layer's path in the model (``"outer/inner"`` for nested models).
        class_name: The layer's class name.
        applied: Whether the technique was applied to (some weights of) the layer.
        detail: What was applied, e.g. ``"sparsity 0.80 on kernel"``; empty if skipped.
        reason: Why the layer was skipped (or partially handled); empty if fully applied.
    """

    layer: str
    class_name: str
    applied: bool
    detail: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """The per-layer outcome of a compression call (``prune``, ``quantize``, ...).

    Example:
        >>> r = CompressionReport("prune", (LayerDecision("d", "Dense", True, "sparsity 0.5"),
        ...                                 LayerDecision("c", "Cross", False, reason="custom")))
        >>> [d.layer for d in r.applied], [d.layer for d in r.skipped]
        (['d'], ['c'])
    """

    technique: str
    decisions: tuple[LayerDecision, ...]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def applied(self) -> list[LayerDecision]:
        return [d for d in self.decisions if d.applied]

    @property
    def skipped(self) -> list[LayerDecision]:
        return [d for d in self.decisions if not d.applied]

    def __getitem__(self, layer: str) -> LayerDecision:
        for decision in self.decisions:
            if decision.layer == layer:
                return decision
        raise KeyError(
            f"No layer '{layer}' in this {self.technique} report; layers: "
            f"{', '.join(d.layer for d in self.decisions)}."
        )

    def __contains__(self, layer: object) -> bool:
        return any(d.layer == layer for d in self.decisions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "settings": dict(self.settings),
            "decisions": [d.to_dict() for d in self.decisions],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_markdown(self) -> str:
        lines = [
            f"{self.technique}: {len(self.applied)} layer(s) applied, {len(self.skipped)} skipped",
            "",
        ]
        rows = [
            [d.layer, d.class_name, "yes" if d.applied else "no", d.detail, d.reason]
            for d in self.decisions
        ]
        lines.append(markdown_table(["layer", "class", "applied", "detail", "reason"], rows))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


class IdLookup(keras.layers.Layer):
    """Base of the layers that look ``output_dim``-wide rows up by id, like ``Embedding`` (the
    quantized, compositional, mixed-dimension and stored tables): id 0 is padding, masked when
    ``mask_zero``, and the output adds an ``output_dim`` axis. Subclasses set ``output_dim``
    and ``mask_zero`` in ``__init__``.

    Example:
        >>> class Zeros(IdLookup):
        ...     def __init__(self, **kw):
        ...         super().__init__(**kw)
        ...         self.output_dim, self.mask_zero = 3, True
        ...     def call(self, ids):
        ...         return tf.zeros(tf.concat([tf.shape(ids), [3]], 0))
        >>> Zeros().compute_output_shape((2, 5))
        TensorShape([2, 5, 3])
    """

    output_dim: int
    mask_zero: bool

    def compute_mask(self, inputs: tf.Tensor, mask: Any = None) -> tf.Tensor | None:
        return tf.not_equal(inputs, 0) if self.mask_zero else None

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape).concatenate([self.output_dim])
