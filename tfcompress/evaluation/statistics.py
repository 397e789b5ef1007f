"""Paired confidence intervals for quality differences between two models on the same examples.

A compressed variant and its baseline are scored on the *same* test examples, so their errors are
strongly correlated; a paired test uses that and resolves differences far smaller than the two
separate confidence intervals would. :func:`paired_difference` picks the method by metric:

- ``"auc"``: DeLong's test (DeLong, DeLong & Clarke-Pearson 1988) with the fast midrank
  algorithm of Sun & Xu (2014): O(n log n), exact with ties; a normal interval on the difference
  of the two AUCs from the paired covariance of their structural components.
- every other metric (``logloss``, ``accuracy``, ``topK_accuracy``, ``recall@K``): a paired
  bootstrap (the same resampled example indices for both models), percentile interval, seeded.
  The metric is :func:`tfcompress.export.metrics.quality`, the benchmark's own definition.

The result is a :class:`PairedDifference`; a variant *keeps quality* within ``max_loss`` when the
interval's worst end loses no more than ``max_loss`` (:meth:`PairedDifference.keeps_quality`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000)
    >>> base = y + rng.normal(size=2000)
    >>> d = delong_auc_difference(y, base, base + 0.1 * rng.normal(size=2000))
    >>> d.low <= d.delta <= d.high
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from tfcompress.export.metrics import check_metric_names, metric_k, probabilities, quality

__all__ = [
    "PairedDifference",
    "delong_auc_difference",
    "higher_is_better",
    "paired_bootstrap",
    "paired_difference",
]

_RULES = ("ci", "point")
_CHUNK = 64  # bootstrap replicates drawn per batch (fixed: the draws depend on it)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (every metric but ``logloss``).

    Example:
        >>> higher_is_better("auc"), higher_is_better("logloss")
        (True, False)
    """
    return metric != "logloss"


@dataclass(frozen=True)
class PairedDifference:
    """The difference ``variant - baseline`` of one metric on the same examples, with its CI.

    Attributes:
        metric: ``"auc"``, ``"logloss"``, ``"accuracy"``, ``"top5_accuracy"``, ``"recall@10"``...
        baseline: the baseline's metric on these examples.
        variant: the variant's metric on the same examples.
        delta: ``variant - baseline`` (raw; for logloss lower is better, so a positive delta
            is a loss).
        low: lower end of the confidence interval of ``delta``.
        high: upper end of the confidence interval of ``delta``.
        level: confidence level, e.g. 0.95.
        method: ``"delong"`` or ``"paired bootstrap (B=1000)"``.
        n: examples both models were scored on.
        n_positives: positive examples among them (binary labels), None otherwise.

    Example:
        >>> d = PairedDifference("auc", 0.75, 0.749, -0.001, -0.0015, -0.0005, 0.95, "delong",
        ...                      100_000, 20_000)
        >>> str(d), d.keeps_quality(0.002), d.keeps_quality(0.001)
        ('-0.0010 ± 0.0005', True, False)
    """

    metric: str
    baseline: float
    variant: float
    delta: float
    low: float
    high: float
    level: float
    method: str
    n: int
    n_positives: int | None = None

    def loss(self) -> float:
        """Quality lost by the variant (point estimate): > 0 is worse, < 0 is better."""
        return -self.delta if higher_is_better(self.metric) else self.delta

    def worst_loss(self) -> float:
        """The loss at the CI's worst end (the lower end of delta for higher-is-better metrics)."""
        return -self.low if higher_is_better(self.metric) else self.high

    def keeps_quality(self, max_loss: float, rule: str = "ci") -> bool:
        """Whether the variant loses at most ``max_loss`` of the metric.

        Args:
            max_loss: the tolerated loss, >= 0, in the metric's units (e.g. 0.001 AUC).
            rule: ``"ci"`` (default): the CI's worst end loses at most ``max_loss`` (for AUC:
                ``low >= -max_loss``), i.e. the data rule out a larger loss at the CI's level;
                ``"point"``: the point estimate loses at most ``max_loss`` (ignores noise).

        Returns:
            True when the variant keeps quality under the rule.

        Raises:
            ValueError: ``max_loss`` negative or not finite, or an unknown ``rule``.
        """
        if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float)):
            raise TypeError(f"`max_loss` must be a number >= 0, received {max_loss!r}.")
        if not math.isfinite(max_loss) or max_loss < 0:
            raise ValueError(
                f"`max_loss` must be a finite number >= 0 (e.g. 0.001), received {max_loss!r}."
            )
        if rule not in _RULES:
            raise ValueError(
                f"`rule` must be 'ci' (the CI's worst end) or 'point' (the estimate), "
                f"received {rule!r}."
            )
        loss = self.worst_loss() if rule == "ci" else self.loss()
        return bool(loss <= max_loss)

    @property
    def half_width(self) -> float:
        """Half the CI's width."""
        return (self.high - self.low) / 2.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedDifference:
        """Rebuild from :meth:`to_dict` output; ValueError naming missing or unknown keys."""
        if not isinstance(d, dict):
            raise TypeError(f"`d` must be a dict from PairedDifference.to_dict(), received {d!r}.")
        names = {f.name for f in dataclasses.fields(cls)}
        required = names - {"n_positives"}
        missing, unknown = sorted(required - set(d)), sorted(set(d) - names)
        if missing or unknown:
            raise ValueError(
                f"not a PairedDifference dict: missing keys {missing}, unknown keys {unknown}; "
                "pass the output of PairedDifference.to_dict()."
            )
        return cls(**d)

    def __str__(self) -> str:
        return f"{self.delta:+.4f} ± {self.half_width:.4f}"


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"`level` must be a number in (0, 1), e.g. 0.95, received {level!r}.")
    return float(level)


def _scores(scores: Any, name: str, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim > 1 and s.shape[-1] != 1 or s.size != n:
        raise ValueError(
            f"`{name}` must hold one score per label ({n}), received shape {s.shape}; pass the "
            "model's single output for the same examples, in the same order."
        )
    s = s.reshape(-1)
    if not np.isfinite(s).all():
        bad = int((~np.isfinite(s)).sum())
        raise ValueError(
            f"`{name}` holds {bad} NaN or infinite score(s); fix the model's outputs (or drop "
            "those examples from both models) before comparing."
        )
    return s


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties averaged (Sun & Xu's midranks), O(n log n)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]


def _delong_components(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and its structural components V10 (one per positive), V01 (one per negative)."""
    pos, neg = s[y], s[~y]
    m, n = len(pos), len(neg)
    tz = _midranks(np.concatenate([pos, neg]))
    tx, ty = _midranks(pos), _midranks(neg)
    v10 = (tz[:m] - tx) / n  # share of negatives each positive beats (ties count 1/2)
    v01 = 1.0 - (tz[m:] - ty) / m  # share of positives that beat each negative
    return float(v10.mean()), v10, v01


def delong_auc_difference(
    labels: Any, baseline_scores: Any, variant_scores: Any, *, level: float = 0.95
) -> PairedDifference:
    """DeLong's paired test for the difference of two AUCs on the same examples.

    Fast midrank algorithm (Sun & Xu 2014, O(n log n)), ties averaged, as
    :func:`tfcompress._metrics.auc`. The variance of ``AUC_variant - AUC_baseline`` is
    ``var10/m + var01/n`` of the per-positive and per-negative differences of the two models'
    structural components (``m`` positives, ``n`` negatives); the CI is normal. Identical scores
    give a zero-width interval.

    Args:
        labels: 0/1 labels, one per example (values > 0.5 count as positive).
        baseline_scores: the baseline's scores (probabilities or logits), one per example.
        variant_scores: the variant's scores for the same examples, in the same order.
        level: confidence level of the interval.

    Returns:
        A :class:`PairedDifference` with ``method="delong"``.

    Raises:
        ValueError: lengths differ, a score is NaN/infinite, the labels hold one class only, or
            ``level`` is not in (0, 1).

    Example:
        >>> y = np.array([0, 0, 1, 1, 0, 1])
        >>> d = delong_auc_difference(y, [0.1, 0.4, 0.35, 0.8, 0.2, 0.7],
        ...                           [0.1, 0.3, 0.35, 0.8, 0.2, 0.7])
        >>> round(d.baseline, 4), round(d.variant, 4)
        (0.8889, 1.0)
    """
    level = _check_level(level)
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        raise ValueError("`labels` is empty; pass one 0/1 label per example.")
    if not np.isfinite(y).all():
        raise ValueError("`labels` holds NaN or infinite values; pass 0/1 labels.")
    y = y.reshape(-1) > 0.5
    base = _scores(baseline_scores, "baseline_scores", len(y))
    var = _scores(variant_scores, "variant_scores", len(y))
    m = int(y.sum())
    n = len(y) - m
    if m == 0 or n == 0:
        raise ValueError(
            f"`labels` hold a single class ({'all positive' if n == 0 else 'all negative'}, "
            f"{len(y)} examples): AUC is undefined; pass examples of both classes."
        )
    auc_b, v10_b, v01_b = _delong_components(y, base)
    auc_v, v10_v, v01_v = _delong_components(y, var)
    d10, d01 = v10_v - v10_b, v01_v - v01_b
    variance = (d10.var(ddof=1) if m > 1 else 0.0) / m + (d01.var(ddof=1) if n > 1 else 0.0) / n
    se = math.sqrt(max(float(variance), 0.0))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    delta = auc_v - auc_b
    return PairedDifference(
        "auc", auc_b, auc_v, delta, delta - z * se, delta + z * se, level, "delong", len(y), m
    )


def _per_example(metric: str, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Per-example values whose mean is ``quality(outputs, labels, [metric])``; None for AUC."""
    out = np.asarray(outputs)
    width = out.shape[-1] if out.ndim > 1 else 1
    if metric == "auc":
        return None
    if width == 1:
        p = probabilities(out)
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        if metric == "logloss":
            pc = np.clip(p, 1e-7, 1 - 1e-7)
            return -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
        if metric == "accuracy":
            return ((p > 0.5) == (y > 0.5)).astype(np.float64)
        return None
    y = np.asarray(labels)
    y = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] == width else y.reshape(-1).astype(np.int64)
    k = metric_k(metric)
    if metric == "accuracy":
        return (out.argmax(axis=1) == y).astype(np.float64)
    if k is not None:
        k = min(k, width)
        top = np.argpartition(-out, k - 1, axis=1)[:, :k]
        return (top == y[:, None]).any(axis=1).astype(np.float64)
    if metric == "logloss":
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        if np.allclose(out.sum(axis=1), 1.0, atol=1e-3) and out.min() >= 0:
            logp = np.log(np.clip(out, 1e-7, 1.0))
        return -logp[np.arange(len(y)), y]
    return None


def _replicates(
    stat: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int, seed: int
) -> np.ndarray:
    """``stat(indices)`` over ``n_boot`` resamples (rows of indices), drawn in fixed chunks."""
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_boot, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, n_boot - start), n))
        parts.append(stat(idx))
    return np.concatenate(parts)


def _check_pair(
    metric: str, labels: Any, baseline_outputs: Any, variant_outputs: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a metric name such as 'auc', received {metric!r}.")
    check_metric_names([metric])
    y = np.asarray(labels)
    base = np.asarray(baseline_outputs)
    var = np.asarray(variant_outputs)
    if len(y) == 0:
        raise ValueError("`labels` is empty; pass one label per example.")
    for name, arr in (("baseline_outputs", base), ("variant_outputs", var)):
        if arr.ndim == 0 or len(arr) != len(y):
            raise ValueError(
                f"`{name}` holds {0 if arr.ndim == 0 else len(arr)} rows but `labels` has "
                f"{len(y)}; pass both models' outputs for the same examples, in the same order."
            )
        if np.issubdtype(arr.dtype, np.number) and not np.isfinite(arr).all():
            raise ValueError(
                f"`{name}` holds NaN or infinite values; fix the model's outputs before comparing."
            )
    if base.shape != var.shape:
        raise ValueError(
            f"`baseline_outputs` has shape {base.shape} but `variant_outputs` {var.shape}; "
            "compare variants of the same model (same output width)."
        )
    return y, base, var


def _n_positives(labels: np.ndarray, outputs: np.ndarray) -> int | None:
    width = outputs.shape[-1] if outputs.ndim > 1 else 1
    if width != 1:
        return None
    return int((np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5).sum())


def paired_bootstrap(
    metric: str,
    labels: Any,
    baseline_outputs: Any,
    variant_outputs: Any,
    *,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap CI of ``metric(variant) - metric(baseline)`` on the same examples.

    Each replicate resamples the example indices with replacement and scores *both* models on
    that same resample; the interval is the percentile interval of the replicates' differences.
    The metric is :func:`tfcompress.export.metrics.quality` (mean metrics are resampled through
    their per-example values, which is the same figure, vectorised).

    Args:
        metric: ``auc``, ``logloss``, ``accuracy``, ``topK_accuracy`` or ``recall@K``.
        labels: labels as :func:`~tfcompress.export.metrics.quality` takes them.
        baseline_outputs: the baseline's outputs (one score, or one row of class scores, per
            example).
        variant_outputs: the variant's outputs for the same examples, in the same order.
        level: confidence level of the interval.
        n_boot: bootstrap replicates (>= 100).
        seed: seed of the resampling (same seed, same interval).

    Returns:
        A :class:`PairedDifference` with ``method="paired bootstrap (B=n_boot)"``.

    Raises:
        ValueError: an unknown metric, lengths or shapes differ, NaN outputs, bad ``level``,
            ``n_boot`` or ``seed``.

    Example:
        >>> y = np.array([0, 1, 1, 0, 1])
        >>> d = paired_bootstrap("accuracy", y, [0.2, 0.8, 0.4, 0.3, 0.9],
        ...                      [0.2, 0.8, 0.6, 0.3, 0.9], n_boot=200)
        >>> d.delta
        0.2
    """
    level = _check_level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"`n_boot` must be an int >= 100 (e.g. 1000), received {n_boot!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, received {seed!r}.")
    y, base, var = _check_pair(metric, labels, baseline_outputs, variant_outputs)
    q_base = quality(base, y, [metric])[metric]
    q_var = quality(var, y, [metric])[metric]
    if q_base is None or q_var is None:
        raise ValueError(
            f"{metric} is undefined on these labels (a single class); pass examples of both "
            "classes."
        )
    n = len(y)
    e_base, e_var = _per_example(metric, base, y), _per_example(metric, var, y)
    vectorised = (
        e_base is not None
        and e_var is not None
        and np.isclose(e_base.mean(), q_base, rtol=1e-9, atol=1e-12)
        and np.isclose(e_var.mean(), q_var, rtol=1e-9, atol=1e-12)
    )
    if vectorised:
        diff = e_var - e_base
        reps = _replicates(lambda idx: diff[idx].mean(axis=1), n, n_boot, seed)
    else:  # AUC (or any figure that is not a mean): the metric itself on each resample

        def stat(idx: np.ndarray) -> np.ndarray:
            out = []
            for row in idx:
                a = quality(base[row], y[row], [metric])[metric]
                b = quality(var[row], y[row], [metric])[metric]
                out.append(np.nan if a is None or b is None else b - a)
            return np.asarray(out)

        reps = _replicates(stat, n, n_boot, seed)
        reps = reps[np.isfinite(reps)]
    alpha = (1.0 - level) / 2.0
    delta = float(q_var - q_base)
    if np.all(reps == reps[0]):  # e.g. identical models: no spread (avoid rounding noise)
        low = high = float(reps[0])
    else:
        low, high = (float(v) for v in np.quantile(reps, [alpha, 1.0 - alpha]))
    return PairedDifference(
        metric,
        float(q_base),
        float(q_var),
        delta,
        low,
        high,
        level,
        f"paired bootstrap (B={n_boot})",
        n,
        _n_positives(y, base),
    )


def paired_difference(
    metric: str,
    labels: Any,
    baseline_outputs: Any,
    variant_outputs: Any,
    *,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> PairedDifference:
    """The paired CI of a metric's difference: DeLong for ``"auc"``, else a paired bootstrap.

    For ``"auc"`` the outputs are turned into probabilities exactly as
    :func:`~tfcompress.export.metrics.quality` does, so ``baseline``/``variant`` equal the
    benchmark's AUCs. Arguments as :func:`paired_bootstrap`.

    Example:
        >>> y = np.array([0, 0, 1, 1])
        >>> paired_difference("auc", y, [0.1, 0.4, 0.35, 0.8], [0.1, 0.4, 0.35, 0.8]).delta
        0.0
    """
    if metric == "auc":
        y, base, var = _check_pair(metric, labels, baseline_outputs, variant_outputs)
        if base.ndim > 1 and base.shape[-1] != 1:
            raise ValueError(
                f"metric 'auc' needs one score per example; the outputs have {base.shape[-1]} "
                "columns (use accuracy, topK_accuracy or recall@K for class scores)."
            )
        _check_level(level)
        return delong_auc_difference(y, probabilities(base), probabilities(var), level=level)
    return paired_bootstrap(
        metric,
        labels,
        baseline_outputs,
        variant_outputs,
        level=level,
        n_boot=n_boot,
        seed=seed,
    )
