"""Quality of :func:`tfcompress.run`'s stage models: one exact definition, honest about noise.

Every quality figure of a run (the stage table, the export parity, the benchmark) uses the
exact metrics of :mod:`tfcompress.metrics` (Mann-Whitney AUC, mean logloss, accuracy) on
predictions of the whole split, never Keras' bucketed streaming AUC: on a small split the two
differ by 0.3 (0.50 against 0.83 for one model). Beside each figure go the number of examples
and of positives it rests on; with fewer than :data:`MIN_POSITIVES` positives differences
between models are noise.

After the first stage that trains, :func:`fit_check` compares the train and validation AUC: a
model that fits the training rows perfectly (AUC >= 0.99) and the validation rows not at all
(<= 0.55) memorised something that does not exist at serving time, almost always a leaky or
id-like column.

Example:
    >>> fit_check("teacher", {"train_auc": 1.0, "val_auc": 0.5}).split(":")[0]
    '[teacher] train AUC 1.000 but validation AUC 0.500'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress import metrics

_log = logging.getLogger("tfcompress")

#: below this many positive examples, AUC differences between models are noise
MIN_POSITIVES = getattr(metrics, "FEW_POSITIVES", 100)
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


def predictions(model: Any, data: Any, max_examples: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(outputs, labels)`` of ``model`` over a batched ``(features, label)`` dataset.

    The examples are collected first (a shuffled split pairs each output with its own label)
    and predicted in one ``model.predict`` call (one traced function, no retracing per batch).

    Example:
        >>> out, y = predictions(model, task.test)  # doctest: +SKIP
    """
    columns: dict[str, list[np.ndarray]] | list[list[np.ndarray]] | None = None
    labels: list[np.ndarray] = []
    batch, seen = 0, 0
    for element in data:
        features, label = _split(element)
        if isinstance(features, dict):
            columns = columns or {k: [] for k in features}
            for k, v in features.items():
                columns[k].append(np.asarray(v))
        else:
            columns = columns or [[]]
            columns[0].append(np.asarray(features))
        labels.append(np.asarray(label))
        batch = max(batch, len(labels[-1]))
        seen += len(labels[-1])
        if max_examples is not None and seen >= max_examples:
            break
    if not labels:
        raise ValueError("run: the data split is empty; quality cannot be measured.")
    stop = seen if max_examples is None else min(seen, max_examples)
    if isinstance(columns, dict):
        inputs: Any = {k: np.concatenate(v)[:stop] for k, v in columns.items()}
    else:
        inputs = np.concatenate(columns[0])[:stop]
    out = model.predict(inputs, batch_size=batch, verbose=0)
    if isinstance(out, dict):
        out = out[sorted(out)[0]]
    elif isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out), np.concatenate(labels)[:stop]


def count_examples(data: Any) -> int:
    """Examples in a batched ``(features, label)`` dataset."""
    return sum(int(np.shape(_split(element)[1])[0]) for element in data)


def positives(labels: np.ndarray) -> int | None:
    """Positive examples of binary labels (None for multiclass/retrieval labels)."""
    y = np.asarray(labels)
    if y.ndim > 1 and y.shape[-1] > 1:
        return None
    y = y.reshape(-1)
    if y.size and np.all((y == 0) | (y == 1)):
        return int((y > 0.5).sum())
    return None


def exact_quality(model: Any, data: Any, max_examples: int | None = None) -> dict[str, Any]:
    """The exact quality of ``model`` on ``data``: the benchmark's metrics for the task (binary:
    ``auc``, ``logloss``, ``accuracy``) plus ``n_examples`` and ``n_positives``.

    Uses :func:`tfcompress.metrics.evaluate_exact` where the installed tfcompress has it (the
    one implementation the benchmark and export share), else the same metrics of
    :func:`tfcompress.metrics.quality` on :func:`predictions`.

    Example:
        >>> exact_quality(model, task.test)  # doctest: +SKIP
        {'auc': 0.7312, 'logloss': 0.4471, 'accuracy': 0.8093, 'n_examples': 6000, ...}
    """
    evaluate = getattr(metrics, "evaluate_exact", None)
    if evaluate is not None:
        values = dict(evaluate(model, data, max_examples=max_examples))
        n, pos = values.pop("n_examples"), values.pop("n_positives")
    else:
        out, y = predictions(model, data, max_examples)
        width = out.shape[-1] if out.ndim > 1 else 1
        values = metrics.quality(out, y, metrics.default_metrics(metrics.infer_task(out, y),
                                                                 width))
        n, pos = int(len(y)), positives(y)
    result: dict[str, Any] = {k: None if v is None else round(float(v), 6)
                              for k, v in values.items()}
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
        if feature.kind == "categorical" and feature.vocab_size and train_rows and (
            feature.vocab_size - 1 >= 0.5 * train_rows
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
    suspects = (f"; id-like columns (about one value per training row): {list(id_like)}"
                if id_like else "")
    drop = f'[data] drop = {list(id_like)!r}' if id_like else '[data] drop = ["<column>"]'
    return (
        f"[{stage}] train AUC {train:.3f} but validation AUC {val:.3f}: the model memorised the "
        "training rows and learned nothing that holds on new rows. The likely cause is a leaky "
        "or id-like column (a row, session or request id, a timestamp, a value written after "
        f"the click){suspects}. Remove it from the data with {drop.replace(chr(39), chr(34))} "
        "in the recipe; [data] strict = true makes this an error."
    )


def noise_note(n_positives: int | None, what: str) -> str | None:
    """A warning when ``n_positives`` is too small for AUC differences to mean anything."""
    if n_positives is None or n_positives >= MIN_POSITIVES:
        return None
    # the standard error of an AUC near 0.7 is about sqrt(0.7 * 0.3 / positives)
    se = math.sqrt(0.21 / max(n_positives, 1))
    return (f"⚠ {what} has only {n_positives} positive example(s) (< {MIN_POSITIVES}): AUC "
            f"differences below about {2 * se:.2f} between these models are noise. Use more "
            "data (e.g. [data] samples) before comparing them.")


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
    return positives(labels_of(test, bench.rows[0].examples))


def split_quality(measured: dict[str, Any]) -> dict[str, Any]:
    """``{"quality": metrics, "n_examples": ..., "n_positives": ...}`` of :func:`exact_quality`."""
    counts = ("n_examples", "n_positives")
    return {"quality": {k: v for k, v in measured.items() if k not in counts},
            **{k: measured.get(k) for k in counts}}


def quality_text(record: dict[str, Any]) -> str:
    """``auc 0.7312, logloss 0.4471 (6,000 examples, 1,212 positives)`` of a stage record."""
    values = ", ".join("{} {}".format(k, "—" if v is None else f"{v:.4f}")
                       for k, v in record["quality"].items())
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
