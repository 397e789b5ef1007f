"""`compress`: the smallest / fastest model whose quality loss stays within a tolerance, found
by searching the library's own verbs (structured shrink + distilled fine-tune, PTQ, QAT, the
embedding tables' storage and rare-id pruning).

The strategy and its justification are in docs/compress.md; the steps are
:mod:`tfcompress.search.strategy`'s, the build/judge/cache machinery
:mod:`tfcompress.search.runner`'s.

Example:
    >>> result = tfcompress.compress(model, (x, y), max_loss=0.002)  # doctest: +SKIP
    >>> result.path  # doctest: +SKIP
    'savedmodels/compress/3f2a.../shrink0.50+int8/model.tflite'
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from tfcompress._compat import in_multi_worker_mode
from tfcompress._keras import check_model, keras, tf
from tfcompress.callbacks import log_hparams
from tfcompress.distribute import is_chief
from tfcompress.evaluation import benchmark
from tfcompress.export import load_variant
from tfcompress.export.manifest import atomic_write_text
from tfcompress.search._store import fingerprint, hash_arrays
from tfcompress.search.build import teacher_in_scope
from tfcompress.search.result import CandidateResult, CompressionResult
from tfcompress.search.runner import progress_printer, split_data
from tfcompress.search.space import Candidate, SearchSettings, parse_budget
from tfcompress.search.strategy import SearchStrategy

__all__ = ["compress"]


def compress(
    model: keras.Model,
    data: Any,
    *,
    validation_data: Any = None,
    metric: str = "auc",
    max_loss: float = 0.001,
    rule: str = "ci",
    objective: str = "latency",
    runtime: str = "tflite",
    budget: float | str | None = None,
    teacher: keras.Model | None = None,
    epochs: int = 2,
    learning_rate: float = 1e-3,
    max_shrink: float = 0.875,
    steps: int = 3,
    student_loss_weight: float = 0.5,
    batch_size: int = 256,
    validation_split: float = 0.2,
    strategy: tf.distribute.Strategy | None = None,
    output_dir: str | os.PathLike = "savedmodels/compress",
    log_dir: str | os.PathLike | None = None,
    repeats: int = 20,
    progress: bool = True,
    seed: int = 0,
) -> CompressionResult:
    """Find the smallest / fastest export of ``model`` whose quality loss stays within
    ``max_loss``, judged by a paired confidence interval on held-out examples.

    The search (docs/compress.md says why): (1) the float export of ``model`` is the baseline
    of every Δ; (2) PTQ int8, dynamic-range, float16 and int16x8 exports of ``model`` (a mode
    the model does not convert to is a failed candidate); (3) bisection on a
    global structured shrink ratio (layers whose pruning harms far more than the others' stay
    whole), each ratio fine-tuned for ``epochs`` distilling from ``teacher`` (default:
    ``model`` itself) and judged in float first (early rejection: a ratio whose float model
    already loses is never exported), then exported in every PTQ mode, and QAT int8 (layers
    whose int8 weights alone cost more than ``max_loss`` stay float) when PTQ int8 loses;
    then the tables' dimensions bisected beyond the kept ratio; for the latency and size objectives,
    residual blocks dropped (``drop_blocks``, 1, 2, ... while it keeps, one block always kept)
    at the kept ratio, each fine-tuned the same way; (4) the embedding axis of the
    largest kept shrink (or the original): int4 and int8 row-wise tables, then rare-id pruning
    (``min_count`` 2, growing while it keeps), no training; for the size objective,
    quotient-remainder and mixed-dimension tables, each fine-tuned, where their estimated file
    beats the smallest kept one; (5) for the latency objectives,
    the fused embedding front end (``export_tflite(fuse_embeddings=True)``) of every kept
    export the auto rule left unfused (full int8, dynamic, int8/int4 row tables); (6) one
    benchmark run of the baseline and every export (size, latency at batch 1 and 256,
    quality), and the best on ``objective`` among those that keep quality is chosen.
    Every candidate is cached under ``output_dir`` (keyed by the model, the data, the teacher and
    the settings), so an interrupted or repeated call resumes where it stopped.

    Args:
        model: a built tf_keras model (functional or Sequential for shrinking; any model for
            PTQ), compiled or not (its compiled loss, else the task's, drives the fine-tunes).
        data: fine-tune data: an ``(x, y)`` tuple of arrays or a ``tf.data.Dataset`` of batches.
        validation_data: ``(x, y)`` the candidates are judged on (default: the last
            ``validation_split`` of ``data``). Its size sets the CI's width.
        metric: ``"auc"`` (DeLong), ``"logloss"`` or ``"accuracy"`` (paired bootstrap).
        max_loss: the tolerated loss of ``metric`` (0.001 = 0.1 AUC point).
        rule: ``"ci"``: a candidate keeps quality when the 95% CI's worst end of its Δ is
            within ``max_loss``; ``"point"``: when its point estimate is.
        objective: ``"latency"`` (batch 256), ``"latency_b1"``, ``"size"`` or ``"flops"``.
        runtime: ``"tflite"`` or ``"saved_model"`` (XLA; shrink only, no quantization).
        budget: wall-time limit (seconds, or ``"90s"``, ``"20m"``, ``"1h"``); the search stops
            before a fine-tune that would exceed it and chooses among what it measured.
        teacher: the model every fine-tune distils from (default ``model``).
        epochs, learning_rate, student_loss_weight: each fine-tune's settings.
        max_shrink: the largest shrink ratio tried.
        steps: bisection steps on the shrink ratio (3: a resolution of 1/8).
        batch_size: batch size of array data.
        validation_split: the held-out fraction when ``validation_data`` is None.
        strategy: a ``tf.distribute`` strategy to build and fine-tune candidates in. Under a
            ``MultiWorkerMirroredStrategy`` every worker runs ``compress`` with the same
            arguments and takes the same steps: a cached candidate is read only when every
            worker has it (else all rebuild it), the budget stops every worker when any would
            stop, only the chief writes ``log_dir``, and the other workers cache under
            ``<output_dir>/<key>/workers/<task>/`` (use the chief's result).
        output_dir: where candidates are exported and cached.
        log_dir: when given, every measured candidate is logged to TensorBoard's HParams
            dashboard there.
        repeats: timed runs per batch size in the final benchmark.
        progress: print one line per candidate (also logged at INFO).
        seed: seeds the fine-tunes and the bootstrap.

    Returns:
        A :class:`~tfcompress.search.CompressionResult`.

    Raises:
        TypeError: ``model`` not a tf_keras model; ``data`` of another type.
        ValueError: an unknown ``metric``/``objective``/``runtime``/``rule``, ``max_loss`` out
            of (0, 1], a bad ``budget``, no validation examples.

    Example:
        >>> result = compress(model, (x, y), max_loss=0.002, budget="20m")  # doctest: +SKIP
        >>> result.chosen.name, result.ratios()["size_x"]  # doctest: +SKIP
        ('shrink0.50+int8', 11.2)
    """
    check_model(model, "compress")
    settings = SearchSettings(
        metric=metric,
        max_loss=max_loss,
        rule=rule,
        objective=objective,
        runtime=runtime,
        epochs=epochs,
        learning_rate=learning_rate,
        max_shrink=max_shrink,
        steps=steps,
        student_loss_weight=student_loss_weight,
        seed=seed,
    )
    seconds = parse_budget(budget)
    if teacher is not None:
        check_model(teacher, "compress")
    train, validation = split_data(data, validation_data, validation_split)
    features, labels = load_variant(model).collect(validation, argument="validation_data")
    if labels is None:
        raise ValueError("`validation_data` has no labels; pass (x, y).")
    digest = hashlib.sha256(settings.fingerprint().encode())
    digest.update(fingerprint(model).encode())
    digest.update(fingerprint(teacher or model).encode())
    hash_arrays(digest, (features, labels))
    if isinstance(train, tuple):
        hash_arrays(digest, train)
    # under a multi-worker strategy every worker builds and judges every candidate (each
    # fine-tune is a collective fit). Asked of the strategy only: a TF_CONFIG in the
    # environment does not make a single-process call a worker's
    multi = strategy is not None and in_multi_worker_mode(strategy)
    chief = not multi or is_chief(strategy)
    root = Path(output_dir) / digest.hexdigest()[:16]
    if not chief:
        # each other worker caches in a folder of its own (the chief's stays the result), so
        # it resumes too, and workers sharing a file system never write the same file
        resolver = strategy.cluster_resolver
        root = root / "workers" / f"{resolver.task_type}-{resolver.task_id}"
    search = SearchStrategy(
        model,
        teacher_in_scope(teacher or model, strategy),
        train,
        settings,
        root,
        features,
        labels,
        batch_size=batch_size,
        strategy=strategy,
        budget=seconds,
        report=progress_printer(progress),
    )
    baseline = search.run(Candidate())
    if runtime == "tflite":
        search.quantized(Candidate())
    search.embedding_axis(search.bisect())
    return _finish(search, baseline, log_dir if chief else None, repeats, progress)


def _finish(
    search: SearchStrategy,
    baseline: CandidateResult,
    log_dir: str | os.PathLike | None,
    repeats: int,
    progress: bool,
) -> CompressionResult:
    """One benchmark run of the baseline and every export, then the choice."""
    tried = [r for r in search.results if r is not baseline]
    exported = {baseline.name: baseline.path, **{r.name: r.path for r in tried if r.path}}
    report = benchmark(
        exported,
        (search.features, search.labels),
        baseline=baseline.name,
        metrics=[search.settings.metric],
        repeats=repeats,
        measure_memory=False,
        progress=progress,
    )
    result = CompressionResult(
        chosen=None,
        path=str(baseline.path),
        baseline=baseline,
        candidates=tried,
        report=report,
        settings=search.settings,
        seconds=time.monotonic() - search.start,
        trained=search.trained,
        stopped=search.stopped,
        skipped=dict(search.skipped),
    )
    kept = [r for r in tried if r.accepted and r.path]
    result.chosen = result.select()
    if result.chosen is not None:
        result.path = str(result.chosen.path)
    atomic_write_text(search.root / "result.json", result.to_json())
    atomic_write_text(search.root / "result.md", result.to_markdown() + "\n")
    if log_dir is not None:
        hparams = {
            r.name: {
                "shrink": r.candidate.shrink,
                "embeddings": (
                    r.candidate.shrink if r.candidate.embeddings is None else r.candidate.embeddings
                ),
                "quantization": r.candidate.quantization or "float32",
                "qat": r.candidate.qat,
                "min_count": r.candidate.min_count,
                "rows": r.candidate.rows or "default",
                "fuse": {None: "auto", True: "on", False: "off"}[r.candidate.fuse],
                "tables": r.candidate.tables or "plain",
                "depth": r.candidate.depth,
                "kept": r.accepted,
            }
            for r in [baseline, *kept, *[t for t in tried if t.path and not t.accepted]]
        }
        log_hparams(log_dir, report, hparams)
    search.say(
        "compress: "
        + (
            f"chosen {result.chosen.name} -> {result.path}"
            if result.chosen
            else f"{result.none_reason()}; returning the float baseline"
        )
    )
    return result
