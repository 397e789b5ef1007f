"""Quality of :func:`tfcompress.run`'s stage models with the exact metrics and the counts they rest
on, and the fit check that flags a model that memorised a leaky column (docs/recipes.md).

Example:
    >>> fit_check("teacher", {"train_auc": 1.0, "val_auc": 0.5}).split(":")[0]
    '[teacher] train AUC 1.000 but validation AUC 0.500'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress.export import metrics

_log = logging.getLogger("tfcompress")

#: train AUC at or above this ...
OVERFIT_TRAIN_AUC = 0.99
#: ... with validation AUC at or below this: a leak (or id-like column) is the likely cause
OVERFIT_VAL_AUC = 0.55
#: train examples the fit check predicts on (AUC 1.0 on memorised rows shows on any sample)
TRAIN_CHECK_EXAMPLES = 16_384


def _split(element: Any) -> tuple[Any, Any]:
    if isinstance(element, (tuple, list)) and len(element) in (2, 3):
        return element[0], element[1]
    raise ValueError(
        "run: the data must yield (features, label) pairs to measure quality, received an "
        f"element of type {type(element).__name__}."
    )


def count_examples(data: Any) -> int:
    """Examples in a batched ``(features, label)`` dataset."""
    return sum(int(np.shape(_split(element)[1])[0]) for element in data)


def exact_quality(model: Any, data: Any, max_examples: int | None = None) -> dict[str, Any]:
    """The exact quality of ``model`` on ``data`` (:func:`tfcompress.export.metrics.evaluate_exact`,
    the implementation the benchmark and the export share), rounded to 6 digits, with
    ``n_examples`` and ``n_positives``.

    Example:
        >>> exact_quality(model, task.test)  # doctest: +SKIP
        {'auc': 0.7312, 'logloss': 0.4471, 'accuracy': 0.8093, 'n_examples': 6000, ...}
    """
    values = dict(metrics.evaluate_exact(model, data, max_examples=max_examples))
    n, pos = values.pop("n_examples"), values.pop("n_positives")
    result: dict[str, Any] = {
        k: None if v is None else round(float(v), 6) for k, v in values.items()
    }
    result["n_examples"] = int(n)
    result["n_positives"] = None if pos is None else int(pos)
    return result


def auc_of(model: Any, data: Any, max_examples: int | None = None) -> tuple[float | None, int]:
    """Exact AUC of a one-score ``model`` on ``data`` (None for other tasks) and the examples
    it used."""
    measured = exact_quality(model, data, max_examples)
    return measured.get("auc"), measured["n_examples"]


def id_like_columns(schema: Any, info: dict[str, Any], train_rows: int) -> list[str]:
    """Categorical inputs with about one value per training row: the usual memorised ids."""
    by_feature = {}  # feature -> column: {column: feature} or {column: {"feature": ...}}
    for column, entry in (info.get("columns") or {}).items():
        feature = entry.get("feature") if isinstance(entry, dict) else entry
        if isinstance(feature, str):
            by_feature[feature] = column
    found = []
    for feature in getattr(schema, "features", ()):
        if (
            feature.kind == "categorical"
            and feature.vocab_size
            and train_rows
            and (feature.vocab_size - 1 >= 0.5 * train_rows)
        ):
            found.append(by_feature.get(feature.name, feature.name))
    return found


def fit_check(stage: str, check: dict[str, Any], id_like: Sequence[str] = ()) -> str | None:
    """The overfitting/leak message for a stage's ``{"train_auc", "val_auc"}``, else None.

    Example:
        >>> fit_check("teacher", {"train_auc": 0.81, "val_auc": 0.74}) is None
        True
    """
    train, val = check.get("train_auc"), check.get("val_auc")
    if train is None or val is None or train < OVERFIT_TRAIN_AUC or val > OVERFIT_VAL_AUC:
        return None
    suspects = (
        f"; id-like columns (about one value per training row): {list(id_like)}" if id_like else ""
    )
    drop = f"[data] drop = {list(id_like)!r}" if id_like else '[data] drop = ["<column>"]'
    return (
        f"[{stage}] train AUC {train:.3f} but validation AUC {val:.3f}: the model memorised the "
        "training rows and learned nothing that holds on new rows. The likely cause is a leaky "
        "or id-like column (a row, session or request id, a timestamp, a value written after "
        f"the click){suspects}. Remove it from the data with {drop.replace(chr(39), chr(34))} "
        "in the recipe; [data] strict = true makes this an error."
    )


def noise_note(n_examples: int | None, n_positives: int | None, what: str) -> str | None:
    """A warning when either class of ``what`` is too small for quality differences to mean
    anything (:func:`tfcompress.export.metrics.few_positives_note`), else None."""
    if n_examples is None:
        return None
    note = metrics.few_positives_note(n_examples, n_positives)
    return (
        None
        if note is None
        else (
            f"⚠ {what}: {note}. Use more data (e.g. [data] samples) before comparing these models."
        )
    )


def labels_of(data: Any, max_examples: int | None = None) -> np.ndarray:
    """The labels of the first ``max_examples`` examples of a ``(features, label)`` dataset."""
    labels: list[np.ndarray] = []
    seen = 0
    for element in data:
        labels.append(np.asarray(_split(element)[1]))
        seen += len(labels[-1])
        if max_examples is not None and seen >= max_examples:
            break
    y = np.concatenate(labels) if labels else np.zeros((0,))
    return y if max_examples is None else y[:max_examples]


def benchmark_positives(test: Any, bench: Any) -> int | None:
    """Positives among the test examples a benchmark measured quality on (its first rows)."""
    if bench is None or not bench.rows:
        return None
    return metrics.count_positives(labels_of(test, bench.rows[0].examples), bench.rows[0].task)


def split_quality(measured: dict[str, Any]) -> dict[str, Any]:
    """``{"quality": metrics, "n_examples": ..., "n_positives": ...}`` of :func:`exact_quality`."""
    counts = ("n_examples", "n_positives")
    return {
        "quality": {k: v for k, v in measured.items() if k not in counts},
        **{k: measured.get(k) for k in counts},
    }


def quality_text(record: dict[str, Any]) -> str:
    """``auc 0.7312, logloss 0.4471 (6,000 examples, 1,212 positives)`` of a stage record."""
    values = ", ".join(
        "{} {}".format(k, "—" if v is None else f"{v:.4f}") for k, v in record["quality"].items()
    )
    counts = f"{record['n_examples']:,} examples"
    if record.get("n_positives") is not None:
        counts += f", {record['n_positives']:,} positives"
    return f"{values} ({counts})"


def fit_warning(r: Any, name: str, record: dict[str, Any]) -> str | None:
    """The overfitting/leak warning of the first trained stage of run ``r`` (a ValueError with
    ``[data] strict = true``); None when the stage generalises."""
    check = record.get("fit_check") or {}
    if fit_check(name, check) is None:
        return None
    train_rows = count_examples(r.task.train)
    message = fit_check(name, check, id_like_columns(r.task.schema, r.task.info, train_rows))
    if getattr(r.recipe.data, "strict", False):
        raise ValueError(f"{message} (stopped: the recipe sets [data] strict = true)")
    _log.warning("%s", message)
    return message
