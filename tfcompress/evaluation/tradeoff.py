"""The trade-off plot: quality against bytes and against latency, the Pareto front marked
(:func:`plot_tradeoff`, :func:`pareto_front`); drawn without ``pyplot``.

Example:
    >>> pareto_front([(1.0, 0.70), (2.0, 0.75), (3.0, 0.72)])
    [0, 1]
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfcompress.evaluation._tradeoff_draw import write_plot
from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow

__all__ = ["metric_higher_is_better", "pareto_front", "plot_tradeoff", "primary_metric"]

logger = logging.getLogger("tfcompress")

# Metrics where a smaller value is better (the rest, e.g. auc/accuracy/recall@k, higher-is-better).
_LOWER_IS_BETTER = frozenset(
    {
        "logloss",
        "loss",
        "mse",
        "mae",
        "rmse",
        "mape",
        "msle",
        "perplexity",
        "error",
        "error_rate",
        "brier",
        "brier_score",
        "ece",
        "calibration_error",
    }
)
_LOWER_IS_BETTER_SUFFIXES = ("loss", "crossentropy", "_error", "_squared_error")


def metric_higher_is_better(metric: str) -> bool:
    """Whether a larger value of quality metric ``metric`` is better.

    ``logloss``, ``loss``, ``mse``, ``mae``, ``rmse`` and names ending in ``loss``,
    ``crossentropy`` or ``_error`` are lower-is-better; everything else (``auc``, ``accuracy``,
    ``top5_accuracy``, ``recall@10``, ...) is higher-is-better.

    Args:
        metric: the metric's name, as a key of ``BenchmarkRow.quality``.

    Returns:
        True for higher-is-better metrics, False for lower-is-better ones.

    Example:
        >>> metric_higher_is_better("auc"), metric_higher_is_better("logloss")
        (True, False)
    """
    if not isinstance(metric, str) or not metric:
        raise TypeError(
            f"`metric` must be a non-empty metric name (str) such as 'auc' or 'logloss', "
            f"received {metric!r}."
        )
    key = metric.lower()
    return not (key in _LOWER_IS_BETTER or key.endswith(_LOWER_IS_BETTER_SUFFIXES))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{where} must be a real number, received {value!r}; drop the point or give it a "
            "measured value."
        )
    v = float(value)
    if math.isnan(v):
        raise ValueError(
            f"{where} is NaN; drop the point or give it a measured value (NaN cannot be ranked)."
        )
    return v


def pareto_front(
    points: Sequence[tuple[float, float]], *, higher_quality_is_better: bool = True
) -> list[int]:
    """Indices of the Pareto-optimal ``(cost, quality)`` points, sorted by cost.

    A point is on the front when no other point is at least as good in both (cost ``<=`` and
    quality ``>=``, or ``<=`` for lower-is-better quality) and strictly better in one. Identical
    points do not dominate each other, so both stay on the front. Among equal costs the order
    puts the better quality first, then the original index.

    Args:
        points: ``(cost, quality)`` pairs, e.g. ``(bytes, auc)``; finite or infinite reals.
        higher_quality_is_better: False for lower-is-better metrics (logloss, mse, ...).

    Returns:
        The indices into ``points`` of the front, cheapest first; ``[]`` for no points.

    Raises:
        TypeError: ``points`` is not a sequence, or the flag is not a bool.
        ValueError: a point is not a pair, or holds None / NaN / a non-number (the message
            names its index).

    Example:
        >>> pareto_front([(100, 0.70), (50, 0.74), (200, 0.74), (50, 0.74)])
        [1, 3]
        >>> pareto_front([(1, 0.30), (2, 0.25)], higher_quality_is_better=False)
        [0, 1]
    """
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
        raise TypeError(
            f"`points` must be a sequence of (cost, quality) pairs, received "
            f"{type(points).__name__}; pass e.g. [(bytes, auc), ...]."
        )
    if not isinstance(higher_quality_is_better, bool):
        raise TypeError(
            f"`higher_quality_is_better` must be a bool, received {higher_quality_is_better!r}."
        )
    sign = 1.0 if higher_quality_is_better else -1.0
    pts: list[tuple[float, float]] = []
    for i, p in enumerate(points):
        if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 2:
            raise ValueError(
                f"points[{i}] must be a (cost, quality) pair, received {p!r}; pass two numbers "
                "per point."
            )
        cost = _number(p[0], f"points[{i}] cost")
        qual = _number(p[1], f"points[{i}] quality")
        pts.append((cost, sign * qual))  # after the sign flip, larger is always better

    front = []
    for i, (ci, qi) in enumerate(pts):
        dominated = any(
            cj <= ci and qj >= qi and (cj < ci or qj > qi)
            for j, (cj, qj) in enumerate(pts)
            if j != i
        )
        if not dominated:
            front.append(i)
    front.sort(key=lambda i: (pts[i][0], -pts[i][1], i))
    return front


def _metrics_of(report: BenchmarkReport) -> list[str]:
    names: list[str] = []
    for r in report.rows:
        names += [m for m in r.quality if m not in names]
    return names


def _value(row: BenchmarkRow, metric: str) -> float | None:
    v = row.quality.get(metric)
    if v is None or isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _check_report(report: Any) -> None:
    if not isinstance(report, BenchmarkReport):
        raise TypeError(
            f"`report` must be a tfcompress BenchmarkReport (from tfcompress.benchmark or "
            f"BenchmarkReport.from_json), received {type(report).__name__}."
        )


def primary_metric(report: BenchmarkReport) -> str:
    """The metric to plot by default.

    ``"auc"`` when some row has an AUC value, else ``"accuracy"`` likewise, else the first metric
    (in report order) that has a value in every row.

    Args:
        report: a :class:`~tfcompress.evaluation.report.BenchmarkReport`.

    Returns:
        The metric's name.

    Raises:
        TypeError: ``report`` is not a BenchmarkReport.
        ValueError: no metric qualifies (the message lists the report's metrics).

    Example:
        >>> primary_metric(report)  # doctest: +SKIP
        'auc'
    """
    _check_report(report)
    for preferred in ("auc", "accuracy"):
        if any(_value(r, preferred) is not None for r in report.rows):
            return preferred
    metrics = _metrics_of(report)
    for m in metrics:
        if all(_value(r, m) is not None for r in report.rows):
            return m
    raise ValueError(
        f"the report has no metric to plot: no 'auc' or 'accuracy' value and no metric with a "
        f"value in every row (metrics: {metrics}); benchmark with quality metrics or pass "
        "`metric=` naming one."
    )


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`path` must be a str or os.PathLike ending in '.png', received {type(path).__name__}."
        )
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ValueError(
            f"`path` must end in '.png' (the plot is written as PNG), received {str(path)!r}; "
            "rename it, e.g. 'tradeoff.png'."
        )
    return p


def _panel_points(
    report: BenchmarkReport, metric: str, cost_of: Any, what: str, omitted: dict[str, list[str]]
) -> list[tuple[BenchmarkRow, float, float]]:
    """(row, cost, quality) of the rows usable in one panel; records why others are left out."""
    out = []
    for r in report.rows:
        q = _value(r, metric)
        if q is None:
            continue  # recorded once for both panels by the caller
        cost = cost_of(r)
        if (
            cost is None
            or isinstance(cost, bool)
            or not isinstance(cost, numbers.Real)
            or math.isnan(float(cost))
        ):
            omitted.setdefault(r.name, []).append(f"no {what}")
        elif not math.isfinite(float(cost)) or float(cost) <= 0:
            omitted.setdefault(r.name, []).append(
                f"{what} {cost!r} cannot go on a log axis (needs a finite value > 0)"
            )
        else:
            out.append((r, float(cost), q))
    return out


def _latency(row: BenchmarkRow, batch_size: int | None) -> Any:
    if batch_size is None:
        return None
    lat = row.latency_ms.get(batch_size)
    return None if not lat else lat.get("median")


def plot_tradeoff(
    report: BenchmarkReport,
    path: str | os.PathLike,
    *,
    metric: str | None = None,
    batch_size: int | None = None,
    title: str | None = None,
    higher_is_better: bool | None = None,
) -> dict[str, Any]:
    """Plot quality vs bytes and quality vs median latency, Pareto fronts marked; save as PNG.

    Left panel: quality against size on disk; right panel: quality against the median latency
    per batch at ``batch_size``; both x axes logarithmic. Each panel marks its own Pareto front
    (orange, joined by a step line), rings the baseline in red, and labels every point with its
    variant name (marker shape = format). For a lower-is-better metric (logloss, ...) the y axis
    is inverted so better is always up, and the front is computed in that direction. Rows with
    no value for ``metric`` are left out of both panels; rows without bytes / latency at that
    batch size (or with values a log axis cannot show) are left out of that panel; all of them
    are listed in ``"omitted"``. The PNG is written atomically (temp file + ``os.replace``).

    Args:
        report: a :class:`~tfcompress.evaluation.report.BenchmarkReport`.
        path: where to write the PNG; must end in ``.png``. Parent directories are created.
        metric: the quality metric (a key of the rows' ``quality``); default
            :func:`primary_metric`.
        batch_size: the latency batch size for the right panel; default the largest batch size
            measured in the report.
        title: the figure's title; default names the metric, batch size and baseline.
        higher_is_better: direction of ``metric``; default :func:`metric_higher_is_better`.

    Returns:
        ``{"path": str, "metric": str, "batch_size": int | None (None only when the report has
        no latency at all), "higher_is_better": bool, "pareto_bytes": [names, cheapest first],
        "pareto_latency": [names, fastest first], "omitted": {name: reason}}``.

    Raises:
        TypeError: wrong argument types.
        ValueError: ``path`` not ending in ``.png``, ``metric`` not in the report or without
            any value, ``batch_size`` not measured in the report.

    Example:
        >>> info = plot_tradeoff(report, "savedmodels/run/tradeoff.png")  # doctest: +SKIP
        >>> info["pareto_latency"]  # doctest: +SKIP
        ['int8', 'student']
    """
    _check_report(report)
    out_path = _check_path(path)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"`title` must be a str or None, received {type(title).__name__}.")
    if higher_is_better is not None and not isinstance(higher_is_better, bool):
        raise TypeError(
            f"`higher_is_better` must be a bool or None, received {higher_is_better!r}."
        )
    metrics = _metrics_of(report)
    if metric is None:
        metric = primary_metric(report)
    elif not isinstance(metric, str):
        raise TypeError(
            f"`metric` must be a metric name (str) or None, received {type(metric).__name__}; "
            f"the report's metrics are {metrics}."
        )
    elif metric not in metrics:
        raise ValueError(
            f"`metric` {metric!r} is not in the report; its metrics are {metrics}. Pass one of "
            "them or None for the default."
        )
    elif all(_value(r, metric) is None for r in report.rows):
        raise ValueError(
            f"`metric` {metric!r} has no value in any row of the report (all None/NaN); pass "
            f"another of {metrics}."
        )
    batches = sorted({b for r in report.rows for b in r.latency_ms})
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(
                f"`batch_size` must be an int or None, received {batch_size!r}; the report "
                f"measured batch sizes {batches}."
            )
        batch_size = int(batch_size)
        if batch_size not in batches:
            raise ValueError(
                f"`batch_size` {batch_size} was not measured in the report; measured batch "
                f"sizes are {batches}. Pass one of them or None for the largest."
            )
    elif batches:
        batch_size = batches[-1]
    higher = metric_higher_is_better(metric) if higher_is_better is None else higher_is_better

    omitted_lists: dict[str, list[str]] = {}
    for r in report.rows:
        if _value(r, metric) is None:
            omitted_lists.setdefault(r.name, []).append(f"no {metric!r} value (both panels)")
    size_pts = _panel_points(report, metric, lambda r: r.bytes, "bytes", omitted_lists)
    lat_what = (
        f"latency at batch size {batch_size}"
        if batch_size is not None
        else "latency (none measured)"
    )
    lat_pts = _panel_points(
        report, metric, lambda r: _latency(r, batch_size), lat_what, omitted_lists
    )
    size_front = pareto_front([(c, q) for _, c, q in size_pts], higher_quality_is_better=higher)
    lat_front = pareto_front([(c, q) for _, c, q in lat_pts], higher_quality_is_better=higher)

    write_plot(
        out_path,
        metric=metric,
        batch_size=batch_size,
        baseline=report.baseline,
        higher=higher,
        title=title,
        size_pts=size_pts,
        size_front=size_front,
        lat_pts=lat_pts,
        lat_front=lat_front,
    )
    result = {
        "path": str(out_path),
        "metric": metric,
        "batch_size": batch_size,
        "higher_is_better": higher,
        "pareto_bytes": [size_pts[i][0].name for i in size_front],
        "pareto_latency": [lat_pts[i][0].name for i in lat_front],
        "omitted": {name: "; ".join(reasons) for name, reasons in omitted_lists.items()},
    }
    logger.info(
        "trade-off plot written to %s (metric %s, Pareto by bytes %s, by latency %s)",
        out_path,
        metric,
        result["pareto_bytes"],
        result["pareto_latency"],
    )
    return result
