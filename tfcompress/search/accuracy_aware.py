"""`compress`: the smallest / fastest model whose quality loss stays within a tolerance, found
by searching the library's own verbs (structured shrink + distilled fine-tune, PTQ, QAT).

The strategy and its justification are in docs/compress.md.

Example:
    >>> result = tfcompress.compress(model, (x, y), max_loss=0.002)  # doctest: +SKIP
    >>> result.path  # doctest: +SKIP
    'savedmodels/compress/3f2a.../shrink0.50+int8/model.tflite'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._keras import check_model, keras, tf
from tfcompress.callbacks import log_hparams
from tfcompress.evaluation import benchmark, count_flops, sensitivity
from tfcompress.evaluation.statistics import paired_difference
from tfcompress.export import load_variant
from tfcompress.export.manifest import atomic_write_text
from tfcompress.pruning import shrink
from tfcompress.search._store import fingerprint, hash_arrays, save_array, save_model
from tfcompress.search.build import (
    build_model,
    embedding_layers,
    export_candidate,
    representative_features,
    teacher_in_scope,
)
from tfcompress.search.result import CandidateResult, CompressionResult, first_output
from tfcompress.search.space import Candidate, SearchSettings, parse_budget

_log = logging.getLogger("tfcompress")

__all__ = ["compress"]

#: PTQ modes exported for every float model that keeps quality (smallest file first).
_PTQ_ORDER = ("int8", "dynamic", "float16")


def _split(data: Any, validation_data: Any, validation_split: float) -> tuple[Any, Any]:
    """(train, validation): ``validation_data`` when given; else the last
    ``validation_split`` of an ``(x, y)`` tuple of arrays."""
    if not (isinstance(data, tuple) and len(data) == 2) and not isinstance(data, tf.data.Dataset):
        raise TypeError(
            f"`data` must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) batches, "
            f"received {type(data).__name__}."
        )
    if validation_data is not None:
        return data, validation_data
    if not isinstance(data, tuple):
        raise ValueError(
            "`validation_data` is required when `data` is a tf.data.Dataset (compress judges "
            "every candidate on held-out examples); pass validation_data=(x_val, y_val)."
        )
    x, y = data
    n = len(y)
    cut = n - int(round(n * validation_split))
    if cut < 1 or cut >= n:
        raise ValueError(
            f"`validation_split` {validation_split!r} leaves no training or no validation "
            f"examples out of {n}; pass validation_data or a split in (0, 1)."
        )

    def part(v: Any, s: slice) -> Any:
        if isinstance(v, dict):
            return {k: np.asarray(a)[s] for k, a in v.items()}
        if isinstance(v, (list, tuple)):
            return [np.asarray(a)[s] for a in v]
        return np.asarray(v)[s]

    return (part(x, slice(0, cut)), part(y, slice(0, cut))), (
        part(x, slice(cut, n)),
        part(y, slice(cut, n)),
    )


class _Search:
    """The state of one search: where it caches, the validation examples, what was tried."""

    def __init__(
        self,
        model: keras.Model,
        teacher: keras.Model,
        train: Any,
        settings: SearchSettings,
        root: Path,
        features: dict[str, np.ndarray],
        labels: np.ndarray,
        *,
        batch_size: int,
        strategy: Any,
        budget: float | None,
        report: Callable[[str], None],
    ) -> None:
        self.model, self.teacher, self.train, self.settings = model, teacher, train, settings
        self.root, self.features, self.labels = root, features, labels
        self.batch_size, self.strategy, self.budget, self.say = batch_size, strategy, budget, report
        self.start = time.monotonic()
        self.results: list[CandidateResult] = []
        self.shrunk: dict[tuple[float, float | None], keras.Model | Path] = {}
        self.trained = 0
        self.stopped = ""
        self.warned = False
        self.base_outputs: np.ndarray | None = None
        self.representative = representative_features(model, train)

    # -------------------------------------------------------------------- measuring
    def outputs(self, model_or_path: Any) -> np.ndarray:
        variant = load_variant(model_or_path)
        return first_output(variant.predict(self.features, batch_size=1024))

    def judge(self, outputs: np.ndarray) -> Any:
        reference = self.base_outputs if self.base_outputs is not None else outputs
        return paired_difference(
            self.settings.metric, self.labels, reference, outputs, seed=self.settings.seed
        )

    def over_budget(self) -> bool:
        if self.budget is None or self.stopped:
            return bool(self.stopped)
        spent = time.monotonic() - self.start
        trained = [r.seconds for r in self.results if r.candidate.trains and not r.cached]
        expect = max(trained) if trained else 0.0
        if spent + expect > self.budget:
            self.stopped = (
                f"budget {self.budget:.0f} s: {spent:.0f} s spent, the next fine-tune takes "
                f"~{expect:.0f} s"
            )
            self.say(f"compress: stopping, {self.stopped}")
        return bool(self.stopped)

    def best(self) -> CandidateResult | None:
        kept = [r for r in self.results if r.accepted and r.path and r.bytes]
        return min(kept, key=lambda r: r.bytes) if kept else None

    # -------------------------------------------------------------------- one candidate
    def run(self, candidate: Candidate, *, export: bool = True) -> CandidateResult:
        """Build, export and judge ``candidate``, or load it from the cache.

        The cache keeps the candidate's outputs on the validation examples, so a later call
        with another ``max_loss``, ``rule`` or ``metric`` re-judges it without rebuilding.
        ``export=False`` judges the float Keras model only (a shrink ratio's early rejection).
        """
        folder = self.root / (candidate.name + ("" if export else "@keras"))
        result = self._cached(folder)
        if result is not None:
            self._done(result)
            return result
        started = time.monotonic()
        self.say(f"compress: candidate {len(self.results) + 1}: {candidate.name} ...")
        model = self._build(candidate)
        path = None
        size = None
        if export:
            target = folder / (
                "model" if self.settings.runtime == "saved_model" else "model.tflite"
            )
            exported = export_candidate(
                model,
                candidate,
                target,
                runtime=self.settings.runtime,
                representative=self.representative,
            )
            path, size = str(exported.path), exported.bytes
        outputs = self.outputs(path or model)
        if self.base_outputs is None:
            self.base_outputs = outputs
        folder.mkdir(parents=True, exist_ok=True)
        save_array(folder / "outputs.npy", outputs)
        if candidate.shrinks is not None and not export and not candidate.qat:
            save_model(model, folder / "model.keras")  # the later exports of this ratio
        difference = self.judge(outputs)
        result = CandidateResult(
            candidate,
            path,
            difference,
            difference.keeps_quality(self.settings.max_loss, self.settings.rule),
            bytes=size,
            flops=_flops(model),
            seconds=time.monotonic() - started,
            stage="export" if export else "keras",
        )
        atomic_write_text(folder / "result.json", json.dumps(result.to_dict(), indent=2))
        self._done(result)
        return result

    def _cached(self, folder: Path) -> CandidateResult | None:
        """The result stored in ``folder``, re-judged under this search's rule; None if absent
        or incomplete (a call interrupted while building it)."""
        stored, outputs = folder / "result.json", folder / "outputs.npy"
        if not stored.exists() or not outputs.exists():
            return None
        result = CandidateResult.from_dict(json.loads(stored.read_text()), cached=True)
        if result.path is not None and not Path(result.path).exists():
            return None
        values = np.load(outputs)
        if result.candidate == Candidate() and self.base_outputs is None:
            self.base_outputs = values
        result.difference = self.judge(values)
        result.accepted = result.difference.keeps_quality(
            self.settings.max_loss, self.settings.rule
        )
        if result.stage == "keras" and result.candidate.shrinks not in self.shrunk:
            self.shrunk[result.candidate.shrinks] = folder / "model.keras"
        return result

    def _build(self, candidate: Candidate) -> keras.Model:
        shrunk = self.shrunk.get(candidate.shrinks)
        if isinstance(shrunk, Path):
            shrunk = keras.models.load_model(shrunk, compile=False)
        model, float_model = build_model(
            self.model,
            self.teacher,
            candidate,
            self.train,
            self.settings,
            shrunk=shrunk,
            batch_size=self.batch_size,
            strategy=self.strategy,
        )
        if candidate.shrinks is not None:
            self.shrunk[candidate.shrinks] = float_model
        if candidate.trains and (shrunk is None or candidate.qat):
            self.trained += 1
        return model

    def _done(self, result: CandidateResult) -> None:
        self.results.append(result)
        self._check_resolution(result.difference)
        best = self.best()
        self.say(
            f"compress: {result.name}: Δ{self.settings.metric} {result.difference} -> "
            f"{'keeps' if result.accepted else 'loses'}"
            + (" (cached)" if result.cached else "")
            + (f"; best so far {best.name} ({best.bytes:,} bytes)" if best else "")
        )

    def _check_resolution(self, difference: Any) -> None:
        """Warn once when the validation set is too small to resolve ``max_loss``: a CI wider
        than the tolerance rejects candidates for uncertainty, not for a measured loss."""
        half = (difference.high - difference.low) / 2
        if self.settings.rule != "ci" or half <= self.settings.max_loss or self.warned:
            return
        self.warned = True
        needed = int(difference.n * (half / self.settings.max_loss) ** 2)
        _log.warning(
            "compress: the 95%% CI of Δ%s is ±%.4f on %d validation examples, wider than "
            "max_loss %g: candidates will be rejected for uncertainty. A paired CI narrows as "
            "1/sqrt(n): about %d validation examples would resolve it (or use rule='point').",
            self.settings.metric,
            half,
            difference.n,
            self.settings.max_loss,
            needed,
        )

    # -------------------------------------------------------------------- the strategy
    def quantized(self, base: Candidate) -> None:
        """Export the float model of ``base`` (the original, or a shrunk one) in every PTQ mode
        (and as float when shrunk), and QAT int8 when PTQ int8 does not keep quality.

        Every mode is exported and judged (seconds each, no training) rather than stopping at
        the first that keeps: which file is fastest is measured, not assumed. The int8 kernels
        of attention (batch matmul, softmax) are slower than float ones on CPU: the BST's
        int8 file took 62 ms at batch 256 against its float file's 23 ms.
        """
        if self.settings.runtime == "saved_model":
            self.run(base)
            return
        modes = (None, *_PTQ_ORDER) if base.shrinks is not None else _PTQ_ORDER
        for mode in modes:
            if self.over_budget():
                return
            result = self.run(dataclasses.replace(base, quantization=mode))
            if mode == "int8" and not result.accepted and not self.over_budget():
                keep = self.keep_float()
                self.run(dataclasses.replace(base, quantization="int8", qat=True, keep_float=keep))

    def keep_float(self) -> tuple[str, ...]:
        """Layers whose int8 weights alone cost more than the tolerance: they stay float in QAT."""
        if not hasattr(self, "_keep_float"):
            report = sensitivity(
                self.model,
                (self.features, self.labels),
                metric=self.settings.metric,
                technique="quantize",
                progress=False,
                threshold=self.settings.max_loss,
            )
            self._keep_float = tuple(report.most_sensitive())
        return self._keep_float

    def shrink_skip(self) -> tuple[str, ...]:
        """Layers to leave unshrunk: those whose 50% magnitude pruning (no fine-tune) harms the
        metric far more than the typical layer's (> 5x the median harm, and > max_loss)."""
        report = sensitivity(
            self.model,
            (self.features, self.labels),
            metric=self.settings.metric,
            technique="prune",
            sparsity=0.5,
            progress=False,
        )
        drops = [r.drop for r in report.rows]
        if not drops:
            return ()
        floor = max(5.0 * float(np.median(drops)), self.settings.max_loss)
        return tuple(report.most_sensitive(min_drop=floor))

    def bisect(self) -> None:
        """Bisection on the global shrink ratio: the largest ratio whose fine-tuned float model
        keeps quality, then its PTQ/QAT exports."""
        try:
            skip = self.shrink_skip()
        except (TypeError, ValueError) as err:  # a model sensitivity cannot perturb
            self.say(f"compress: no shrink sensitivity ({err}); shrinking every layer")
            skip = ()
        try:  # can this model be shrunk at all? (no training: a quick rebuild)
            shrink(self.model, 0.5, skip=list(skip) or None)
        except (TypeError, ValueError) as err:  # e.g. a subclassed model, nothing to shrink
            self.say(f"compress: shrink not applicable: {err}")
            return
        low = self._bisect(lambda r: Candidate(shrink=r, skip=skip), 0.0, self.settings.steps)
        if low and embedding_layers(self.model):
            # the second axis: the embedding tables' dimensions beyond the global ratio (tables
            # are most of a recommender's bytes, and often tolerate more than the MLP)
            self._bisect(
                lambda r: Candidate(shrink=low, skip=skip, embeddings=r),
                low,
                max(1, self.settings.steps - 1),
            )

    def _bisect(self, make: Callable[[float], Candidate], low: float, steps: int) -> float:
        """Bisect a ratio in (``low``, ``max_shrink``]: ``steps`` fine-tunes, each judged as a
        float Keras model first (early rejection); a ratio that keeps is exported in every
        mode. Returns the largest ratio that kept (``low`` when none did)."""
        high = 1.0
        for _ in range(steps):
            ratio = round((low + high) / 2, 4)
            if ratio > self.settings.max_shrink or self.over_budget():
                break
            candidate = make(ratio)
            if self.run(candidate, export=False).accepted:
                self.quantized(candidate)
                low = ratio
            else:
                high = ratio
        return low


def _flops(model: keras.Model) -> int | None:
    try:
        return int(count_flops(model, batch_size=1))
    except Exception:  # noqa: BLE001 - FLOPs are informative; a model the profiler rejects
        return None


def _progress(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        _log.info("%s", message)
        if enabled:
            from tqdm.auto import tqdm  # only imported when shown (notebooks warn otherwise)

            tqdm.write(message)

    return say


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
    of every Δ; (2) PTQ int8, dynamic-range and float16 exports of ``model``; (3) bisection on a
    global structured shrink ratio (layers whose pruning harms far more than the others' stay
    whole), each ratio fine-tuned for ``epochs`` distilling from ``teacher`` (default:
    ``model`` itself) and judged in float first (early rejection: a ratio whose float model
    already loses is never exported), then exported PTQ int8 / QAT int8 (layers whose int8
    weights alone cost more than ``max_loss`` stay float) / dynamic / float16 until one keeps
    quality; (4) one benchmark run of the baseline and every export (size, latency at batch 1
    and 256, quality), and the best on ``objective`` among those that keep quality is chosen.
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
        strategy: a ``tf.distribute`` strategy to build and fine-tune candidates in.
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
    train, validation = _split(data, validation_data, validation_split)
    features, labels = load_variant(model).collect(validation, argument="validation_data")
    if labels is None:
        raise ValueError("`validation_data` has no labels; pass (x, y).")
    digest = hashlib.sha256(settings.fingerprint().encode())
    digest.update(fingerprint(model).encode())
    digest.update(fingerprint(teacher or model).encode())
    hash_arrays(digest, (features, labels))
    if isinstance(train, tuple):
        hash_arrays(digest, train)
    root = Path(output_dir) / digest.hexdigest()[:16]
    search = _Search(
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
        report=_progress(progress),
    )
    baseline = search.run(Candidate())
    if runtime == "tflite":
        search.quantized(Candidate())
    search.bisect()
    return _finish(search, baseline, log_dir, repeats, progress)


def _finish(
    search: _Search,
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
