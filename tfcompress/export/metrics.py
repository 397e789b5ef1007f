"""Quality metrics of model outputs: one definition for the export, the benchmark and the pipeline.

Every quality figure tfcompress reports is computed here, on all the examples given: AUC is the
exact ROC AUC (Mann-Whitney U, ties averaged), not Keras' bucketed approximation
(``keras.metrics.AUC`` with 200 thresholds), logloss and accuracy are plain means.
:func:`evaluate_exact` runs a Keras model over a whole dataset and returns these figures with
the number of examples and positives they rest on.

Example:
    >>> auc(np.array([0, 1]), np.array([0.2, 0.7]))
    1.0
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tfcompress._metrics import auc  # the one exact AUC (below data, which uses it too)
from tfcompress._validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    from tfcompress._keras import keras

_log = logging.getLogger("tfcompress")

__all__ = [
    "FEW_POSITIVES",
    "TASKS",
    "auc",
    "check_metric_names",
    "count_positives",
    "default_metrics",
    "evaluate_exact",
    "few_positives_note",
    "infer_task",
    "metric_k",
    "quality",
]

TASKS = ("binary", "multiclass", "retrieval")

FEW_POSITIVES = 100
"""Below this many positives (or negatives), AUC/logloss differences between models are noise."""


def probabilities(scores: np.ndarray) -> np.ndarray:
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
            p = probabilities(out)
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


def count_positives(labels: np.ndarray, task: str) -> int | None:
    """Positive examples among binary ``labels`` (label > 0.5); None for other tasks.

    Example:
        >>> count_positives(np.array([[1.0], [0.0], [1.0]]), "binary")
        2
    """
    if task != "binary":
        return None
    return int((np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5).sum())


def few_positives_note(n_examples: int, n_positives: int | None) -> str | None:
    """A warning text when either class has fewer than :data:`FEW_POSITIVES` examples, else None.

    Example:
        >>> print(few_positives_note(500, 40))  # doctest: +NORMALIZE_WHITESPACE
        only 40 positives among 500 examples: quality differences are noise (an AUC's standard
        error is ~0.05 here)
    """
    if n_positives is None:
        return None
    fewest = min(n_positives, n_examples - n_positives)
    if fewest >= FEW_POSITIVES:
        return None
    kind = "positives" if n_positives <= n_examples - n_positives else "negatives"
    # an AUC near 0.75 has a standard error of ~sqrt(0.1 / n_minority) (Hanley & McNeil, 1982)
    se = (0.1 / max(fewest, 1)) ** 0.5
    return (
        f"only {fewest} {kind} among {n_examples} examples: quality differences are "
        f"noise (an AUC's standard error is ~{se:.2f} here)"
    )


def _pick_output(outputs: dict[str, np.ndarray], output: str | None, model_name: str) -> np.ndarray:
    if output is not None:
        if output not in outputs:
            raise ValueError(
                f"`output` {output!r} is not an output of {model_name!r}; its outputs are "
                f"{list(outputs)}."
            )
        return outputs[output]
    if len(outputs) > 1:
        raise ValueError(
            f"model {model_name!r} has {len(outputs)} outputs {list(outputs)}; pass "
            "`output=` with the one to evaluate."
        )
    return next(iter(outputs.values()))


def evaluate_exact(
    model: keras.Model,
    data: Any,
    *,
    metrics: Sequence[str] | None = None,
    task: str | None = None,
    output: str | None = None,
    batch_size: int = 1024,
    max_examples: int | None = None,
) -> dict[str, Any]:
    """Exact quality of a Keras model on every example of ``data``, in one pass.

    The figures are the ones :func:`tfcompress.benchmark` reports (one definition everywhere):
    exact AUC, logloss and accuracy for one-score models, accuracy/top-K for multiclass. The
    dataset is read once, so a shuffled dataset still pairs each prediction with its label.
    Sample weights, when ``data`` has them, are ignored (the figures are unweighted).

    Args:
        model: a tf_keras model (any wrapping tfcompress adds: pruned, QAT, shrunk).
        data: what ``model.evaluate`` takes, with labels: a ``tf.data.Dataset`` of ``(x, y)``
            (batched or not), one ``(x, y)`` tuple, or an iterable of ``(x, y)`` batches.
        metrics: metric names (see :func:`quality`); default by task (binary: ``auc``,
            ``logloss``, ``accuracy``).
        task: ``"binary"``, ``"multiclass"`` or ``"retrieval"``; default from the output width.
        output: which output to evaluate, for a multi-output model.
        batch_size: examples per model call when ``data`` yields single examples.
        max_examples: stop after this many examples (None: all; needed for an endless
            ``repeat()`` dataset).

    Returns:
        ``{metric: value, ..., "n_examples": int, "n_positives": int | None}``: values are
        floats (None where undefined, e.g. AUC with one class); ``n_positives`` is None for
        tasks other than binary.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``data`` has no labels or no examples, does not match the model's inputs,
            an unknown metric or task, or a multi-output model without ``output``.

    Example:
        >>> from tfcompress.export.metrics import evaluate_exact
        >>> evaluate_exact(model, task.test)  # doctest: +SKIP
        {'auc': 0.7312, 'logloss': 0.4821, 'accuracy': 0.7764, 'n_examples': 20000,
         'n_positives': 4471}
    """
    from tfcompress._inputs import Batch
    from tfcompress._keras import check_model
    from tfcompress.export.runtime import load_variant

    check_model(model, "model")
    check_int(batch_size, "batch_size", minimum=1)
    if max_examples is not None:
        check_int(max_examples, "max_examples", minimum=1)
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS} or None, received {task!r}.")
    check_metric_names(metrics)
    variant = load_variant(model)
    outputs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    pending: list[Any] = []
    n = 0
    weighted = False

    def run(batches: list[Any]) -> None:
        names = batches[0].features
        features = {k: np.concatenate([b.features[k] for b in batches]) for k in names}
        outputs.append(_pick_output(variant(features), output, model.name))

    for batch in variant.batches(data, "data"):
        if batch.labels is None:
            raise ValueError(
                "`data` has no labels; pass a dataset of (features, label) pairs, as for "
                "model.evaluate."
            )
        weighted = weighted or batch.sample_weight is not None
        if max_examples is not None and n + len(batch) > max_examples:
            keep = max_examples - n
            batch = Batch(
                {k: v[:keep] for k, v in batch.features.items()}, batch.labels[:keep], None
            )
        labels.append(batch.labels)
        pending.append(batch)
        n += len(batch)
        if sum(len(b) for b in pending) >= batch_size:
            run(pending)
            pending = []
        if max_examples is not None and n >= max_examples:
            break
    if pending:
        run(pending)
    if n == 0:
        raise ValueError("`data` holds no examples; pass at least one.")
    if weighted:
        _log.warning("evaluate_exact: `data` has sample weights; the figures are unweighted.")
    out = np.concatenate(outputs, axis=0)
    y = np.concatenate(labels, axis=0)
    width = out.shape[-1] if out.ndim > 1 else 1
    chosen_task = task or infer_task(out, y)
    result: dict[str, Any] = dict(
        quality(out, y, list(metrics) if metrics else default_metrics(chosen_task, width))
    )
    result["n_examples"] = int(len(y))
    result["n_positives"] = count_positives(y, chosen_task)
    return result


def check_metric_names(metrics: Sequence[str] | None) -> None:
    """Raise ``ValueError`` naming the first unknown metric name in ``metrics`` (None: defaults).

    Example:
        >>> check_metric_names(["auc", "recall@10"])
    """
    if metrics is None:
        return
    if isinstance(metrics, str):
        raise ValueError(
            f"`metrics` must be a list of names, received the string {metrics!r}; "
            f"pass [{metrics!r}]."
        )
    for m in metrics:
        if m not in ("auc", "logloss", "accuracy") and metric_k(m) is None:
            raise ValueError(
                f"`metrics`: unknown metric {m!r}; use auc, logloss, accuracy, topK_accuracy "
                "(e.g. top5_accuracy) or recall@K (e.g. recall@10)."
            )
