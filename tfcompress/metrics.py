"""Quality metrics of model outputs (shared by the export's parity check and the benchmark).

Example:
    >>> auc(np.array([0, 1]), np.array([0.2, 0.7]))
    1.0
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["auc", "default_metrics", "infer_task", "metric_k", "quality"]


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC (Mann-Whitney, ties averaged); None when only one class is present.

    Example:
        >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _probabilities(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.min(initial=0.0) < 0.0 or s.max(initial=0.0) > 1.0:  # logits
        s = 1.0 / (1.0 + np.exp(-s))
    return s


def infer_task(outputs: np.ndarray, labels: np.ndarray) -> str:
    """``"binary"`` (one score), ``"multiclass"`` (<= 100 classes), else ``"retrieval"``."""
    width = outputs.shape[-1] if outputs.ndim > 1 else 1
    if width == 1:
        return "binary"
    return "multiclass" if width <= 100 else "retrieval"


def _class_labels(labels: np.ndarray, width: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == width and width > 1:
        return y.argmax(axis=1)
    return y.reshape(-1).astype(np.int64)


def quality(
    outputs: np.ndarray, labels: np.ndarray, metrics: Iterable[str]
) -> dict[str, float | None]:
    """Compute named metrics: ``auc``, ``logloss``, ``accuracy``, ``topK_accuracy``, ``recall@K``.

    Example:
        >>> quality(np.array([[0.9], [0.2]]), np.array([[1.0], [0.0]]), ["auc", "accuracy"])
        {'auc': 1.0, 'accuracy': 1.0}
    """
    out = np.asarray(outputs)
    width = out.shape[-1] if out.ndim > 1 else 1
    result: dict[str, float | None] = {}
    for m in metrics:
        if width == 1:
            p = _probabilities(out)
            y = np.asarray(labels, dtype=np.float64).reshape(-1)
            if m == "auc":
                result[m] = auc(y, p)
            elif m == "logloss":
                pc = np.clip(p, 1e-7, 1 - 1e-7)
                result[m] = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
            elif m == "accuracy":
                result[m] = float(np.mean((p > 0.5) == (y > 0.5)))
            else:
                raise ValueError(
                    f"metric {m!r} does not apply to a binary (one score) output; use auc, "
                    "logloss or accuracy."
                )
            continue
        y = _class_labels(labels, width)
        k = metric_k(m)
        if m == "accuracy":
            result[m] = float(np.mean(out.argmax(axis=1) == y))
        elif k is not None:
            k = min(k, width)
            top = np.argpartition(-out, k - 1, axis=1)[:, :k]
            result[m] = float(np.mean((top == y[:, None]).any(axis=1)))
        elif m == "logloss":
            z = out - out.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            probs_like = np.allclose(out.sum(axis=1), 1.0, atol=1e-3) and out.min() >= 0
            if probs_like:
                logp = np.log(np.clip(out, 1e-7, 1.0))
            result[m] = float(-np.mean(logp[np.arange(len(y)), y]))
        else:
            raise ValueError(
                f"metric {m!r} is unknown for a multiclass output; use accuracy, logloss, "
                "topK_accuracy (e.g. top5_accuracy) or recall@K (e.g. recall@10)."
            )
    return result


def metric_k(name: str) -> int | None:
    if name.startswith("recall@") and name[7:].isdigit():
        return int(name[7:])
    if name.startswith("top") and name.endswith("_accuracy") and name[3:-9].isdigit():
        return int(name[3:-9])
    return None


def default_metrics(task: str, width: int) -> tuple[str, ...]:
    """Default quality metrics of a task (``binary``/``multiclass``/``retrieval``)."""
    if task == "binary":
        return ("auc", "logloss", "accuracy")
    if task == "multiclass":
        return ("accuracy", "top5_accuracy") if width > 5 else ("accuracy",)
    return tuple(f"recall@{k}" for k in (10, 50) if k < width) or ("accuracy",)
