"""Which layer is to blame? :func:`sensitivity` quantizes (int8 weights) or prunes ONE layer at a
time, measures the quality on held-out data and ranks the layers by harm.

Example:
    >>> report = sensitivity(model, task.validation, metric="auc")  # doctest: +SKIP
    >>> qat = tfcompress.quantize(model, skip=report.most_sensitive(2))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress._keras import check_model, keras
from tfcompress._layers import LayerFilter, iter_layers, match_layers
from tfcompress._text import markdown_table
from tfcompress.export.metrics import quality
from tfcompress.export.runtime import collect_examples, load_variant, model_input_specs
from tfcompress.quantization.embedding import QuantizedEmbedding, dequantize_rows, quantize_rows

__all__ = ["SensitivityReport", "SensitivityRow", "sensitivity"]

_log = logging.getLogger("tfcompress")

TECHNIQUES = ("quantize", "prune")
#: Named metrics and whether higher is better.
METRICS = {"auc": True, "accuracy": True, "logloss": False}


@dataclasses.dataclass(frozen=True)
class SensitivityRow:
    """One layer's result.

    Attributes:
        layer: the layer's path (``"outer/inner"`` inside nested models).
        class_name: the layer's class.
        weights: names of the perturbed weights.
        baseline: the metric of the unperturbed model.
        value: the metric with only this layer perturbed.
        drop: the harm: ``baseline - value`` for higher-is-better metrics, ``value - baseline``
            for lower-is-better ones (positive = worse).
    """

    layer: str
    class_name: str
    weights: tuple[str, ...]
    baseline: float
    value: float
    drop: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
    """Per-layer sensitivity, most harmful first (see :func:`sensitivity`).

    Attributes:
        technique: ``"quantize"`` or ``"prune"``.
        metric: the metric's name.
        higher_is_better: direction of the metric.
        baseline: the metric of the unperturbed model.
        rows: one :class:`SensitivityRow` per layer, sorted by ``drop``, largest first.
        threshold: the drop above which :meth:`most_sensitive` reports a layer by default.
        settings: the arguments of the run (examples, sparsity...).
    """

    technique: str
    metric: str
    higher_is_better: bool
    baseline: float
    rows: tuple[SensitivityRow, ...]
    threshold: float = 1e-3
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def most_sensitive(self, k: int | None = None, *, min_drop: float | None = None) -> list[str]:
        """Names of the most harmful layers: drop > ``min_drop`` (default: ``threshold``),
        at most ``k`` of them. The list is a valid ``skip=`` for :func:`tfcompress.quantize`.

        Example:
            >>> report.most_sensitive(3)  # doctest: +SKIP
            ['emb_item_id', 'cross_0']
        """
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ValueError(f"`k` must be None or an int >= 0, received {k!r}.")
        floor = self.threshold if min_drop is None else float(min_drop)
        names = [r.layer for r in self.rows if r.drop > floor]
        return names if k is None else names[:k]

    def __getitem__(self, layer: str) -> SensitivityRow:
        for row in self.rows:
            if row.layer == layer:
                return row
        raise KeyError(
            f"No layer {layer!r} in this sensitivity report; layers: "
            f"{', '.join(r.layer for r in self.rows)}."
        )

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "baseline": self.baseline,
            "threshold": self.threshold,
            "settings": dict(self.settings),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_markdown(self) -> str:
        what = (
            "int8 weights"
            if self.technique == "quantize"
            else (f"pruned to sparsity {self.settings.get('sparsity')}")
        )
        lines = [
            f"sensitivity ({what}, one layer at a time): {self.metric} baseline "
            f"{self.baseline:.4f}, {len(self.rows)} layer(s), most harmful first",
            "",
        ]
        rows = [
            [r.layer, r.class_name, f"{r.value:.4f}", f"{r.drop:+.4f}", ", ".join(r.weights)]
            for r in self.rows
        ]
        lines.append(markdown_table(["layer", "class", self.metric, "drop", "weights"], rows))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def _short(variable: Any) -> str:
    return variable.name.split(":")[0]


def _targets(layer: Any, technique: str) -> list[Any]:
    """The float weights of ``layer`` the technique perturbs (empty: no row)."""
    if isinstance(layer, (keras.Model, QuantizedEmbedding)):
        return []
    if technique == "prune" and hasattr(layer, "get_prunable_weights"):
        candidates = list(layer.get_prunable_weights() or [])
    else:
        candidates = list(layer.trainable_weights)
    return [w for w in candidates if w.dtype.is_floating and len(w.shape) >= 2]


def _int8_weight(values: np.ndarray, per_row: bool) -> np.ndarray:
    if per_row:
        return dequantize_rows(*quantize_rows(values, "row")).numpy()
    axes = tuple(range(values.ndim - 1))
    scale = np.abs(values).max(axis=axes, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return (np.clip(np.round(values / scale), -127, 127) * scale).astype(values.dtype)


def _pruned(values: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    magnitudes = np.concatenate([np.abs(v).reshape(-1) for v in values])
    k = int(round(sparsity * magnitudes.size))
    if k == 0:
        return values
    cut = np.partition(magnitudes, k - 1)[k - 1]
    out, budget = [], k
    for v in values:  # zero strictly-below first, then ties at the cut up to k in total
        below = np.abs(v) < cut
        out.append(np.where(below, 0.0, v).astype(v.dtype))
        budget -= int(below.sum())
    for i, v in enumerate(out):
        if budget <= 0:
            break
        ties = np.flatnonzero((np.abs(v) == cut).reshape(-1))[:budget]
        flat = v.reshape(-1).copy()
        flat[ties] = 0.0
        out[i] = flat.reshape(v.shape)
        budget -= len(ties)
    return out


def _metric_fn(metric: Any, higher_is_better: bool | None) -> tuple[str, Callable, bool]:
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(
                f"`metric` must be one of {sorted(METRICS)} or a callable (labels, outputs) -> "
                f"float; received {metric!r}."
            )
        if higher_is_better is not None and higher_is_better != METRICS[metric]:
            raise ValueError(
                f"`higher_is_better={higher_is_better}` contradicts metric {metric!r}; leave it "
                "None for named metrics."
            )
        return metric, lambda y, p: quality(p, y, [metric])[metric], METRICS[metric]
    if callable(metric):
        name = getattr(metric, "__name__", type(metric).__name__)
        return name, metric, True if higher_is_better is None else bool(higher_is_better)
    raise TypeError(
        f"`metric` must be a metric name ({sorted(METRICS)}) or a callable (labels, outputs) -> "
        f"float; received {type(metric).__name__}: {metric!r}."
    )


def _check_options(
    technique: str, sparsity: Any, max_examples: Any, progress: Any, threshold: Any
) -> None:
    """Check :func:`sensitivity`'s numeric and flag arguments."""
    if technique == "prune" and (
        isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1
    ):
        raise ValueError(f"`sparsity` must be a float in (0, 1), received {sparsity!r}.")
    if max_examples is not None and (
        isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1
    ):
        raise ValueError(f"`max_examples` must be None or an int >= 1, received {max_examples!r}.")
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be a bool, received {progress!r}.")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
        raise ValueError(f"`threshold` must be a number >= 0, received {threshold!r}.")


def sensitivity(
    model: keras.Model,
    data: Any,
    *,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "auc",
    technique: str = "quantize",
    layers: LayerFilter = None,
    sparsity: float = 0.8,
    max_examples: int | None = 2048,
    progress: bool = True,
    threshold: float = 1e-3,
    higher_is_better: bool | None = None,
) -> SensitivityReport:
    """Perturb one layer at a time, measure ``metric`` on ``data``, rank layers by harm.

    Args:
        model: a tf_keras model with one output (left unchanged: weights are restored).
        data: labelled data: a ``tf.data.Dataset`` of ``(features, label)`` (batched or not),
            a ``(features, labels)`` tuple, or an iterable of such pairs.
        metric: ``"auc"``, ``"logloss"``, ``"accuracy"`` (computed by
            :func:`tfcompress.export.metrics.quality`) or a callable ``(labels, outputs) -> float``.
        technique: ``"quantize"`` (int8 weights, see the module docstring) or ``"prune"``.
        layers: layer filter restricting the layers analysed (default: every layer with
            2-D+ float weights).
        sparsity: fraction of weights zeroed per layer for ``technique="prune"``.
        max_examples: examples taken from ``data`` (None: all).
        progress: show a Keras progress bar (one step per layer).
        threshold: default drop above which :meth:`SensitivityReport.most_sensitive` lists a
            layer.
        higher_is_better: direction of a callable metric (default True).

    Returns:
        The :class:`SensitivityReport` (rows sorted by drop, largest first).

    Raises:
        TypeError: ``model`` not a tf_keras model (e.g. Keras 3); bad argument types.
        ValueError: unknown metric or technique, bad sparsity/max_examples/threshold, data
            without labels, a multi-output model, a filter naming no layer, no layer to analyse.

    Example:
        >>> r = sensitivity(model, task.validation, technique="prune",
        ...                 sparsity=0.9)  # doctest: +SKIP
        >>> r.rows[0].drop >= r.rows[-1].drop  # doctest: +SKIP
        True
    """
    check_model(model, "model")
    if technique not in TECHNIQUES:
        raise ValueError(f"`technique` must be one of {list(TECHNIQUES)}; received {technique!r}.")
    name, score, higher = _metric_fn(metric, higher_is_better)
    _check_options(technique, sparsity, max_examples, progress, threshold)
    if len(model.outputs or [None]) != 1:
        raise ValueError(
            f"sensitivity: model {model.name!r} has {len(model.outputs)} outputs; it needs one "
            "(build a single-output view: keras.Model(model.inputs, model.outputs[i]))."
        )
    structure, specs = model_input_specs(model)
    features, labels = collect_examples(data, structure, specs, max_examples, "data")
    if labels is None:
        raise ValueError(
            "`data` has no labels; pass (features, label) pairs, e.g. task.validation."
        )
    pairs = [(p, layer) for p, layer in iter_layers(model) if _targets(layer, technique)]
    if layers is not None:
        wanted = match_layers(model, layers, argument="layers")
        pairs = [(p, layer) for p, layer in pairs if p in wanted]
    if not pairs:
        raise ValueError(
            f"sensitivity: model {model.name!r} has no layer with 2-D float weights to "
            f"{technique} (with layers={layers!r})."
        )
    runner = load_variant(model)

    def evaluate() -> float:
        outputs = next(iter(runner.predict(features).values()))
        value = score(labels, outputs)
        if value is None or not np.isfinite(value):
            raise ValueError(
                f"sensitivity: metric {name!r} is undefined on `data` (got {value!r}); e.g. AUC "
                "needs both classes among the examples: pass more examples."
            )
        return float(value)

    baseline = evaluate()
    bar = keras.utils.Progbar(len(pairs), unit_name="layer") if progress else None
    rows = []
    for i, (path, layer) in enumerate(pairs):
        weights = _targets(layer, technique)
        originals = [w.numpy() for w in weights]
        if technique == "quantize":
            per_row = isinstance(layer, keras.layers.Embedding)
            perturbed = [_int8_weight(v, per_row) for v in originals]
        else:
            perturbed = _pruned(originals, float(sparsity))
        try:
            for w, v in zip(weights, perturbed, strict=True):
                w.assign(v)
            value = evaluate()
        finally:
            for w, v in zip(weights, originals, strict=True):
                w.assign(v)
        drop = baseline - value if higher else value - baseline
        rows.append(
            SensitivityRow(
                path,
                type(layer).__name__,
                tuple(_short(w) for w in weights),
                baseline,
                value,
                drop,
            )
        )
        if bar is not None:
            bar.update(i + 1, values=[("drop", drop)])
    rows.sort(key=lambda r: r.drop, reverse=True)
    _log.info(
        "sensitivity %s (%s): baseline %s %.4f; most harmful %s (drop %.4g)",
        model.name,
        technique,
        name,
        baseline,
        rows[0].layer,
        rows[0].drop,
    )
    return SensitivityReport(
        technique,
        name,
        higher,
        baseline,
        tuple(rows),
        float(threshold),
        {
            "examples": int(len(next(iter(features.values())))),
            "sparsity": float(sparsity) if technique == "prune" else None,
            "activations": "float (weights only)",
            "model": model.name,
        },
    )
