"""The machinery of one `compress` search: the train/validation split, and :class:`Search`,
which builds, exports, judges (paired CI against the float baseline) and caches one candidate
at a time. What to try, in what order, is :mod:`tfcompress.search.strategy`'s.

Example:
    >>> train, validation = split_data((x, y), None, 0.2)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._compat import in_multi_worker_mode
from tfcompress._keras import keras, tf
from tfcompress.evaluation import count_flops
from tfcompress.evaluation.statistics import paired_difference
from tfcompress.export import load_variant
from tfcompress.export.converter import ConversionError
from tfcompress.export.manifest import atomic_write_text
from tfcompress.search._store import save_array, save_model
from tfcompress.search.build import (
    build_model,
    export_candidate,
    id_counts,
    representative_features,
)
from tfcompress.search.result import CandidateResult, first_output
from tfcompress.search.space import Candidate, SearchSettings

_log = logging.getLogger("tfcompress")

__all__ = ["Search", "progress_printer", "split_data"]


def split_data(data: Any, validation_data: Any, validation_split: float) -> tuple[Any, Any]:
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


class Search:
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
        # every worker of a multi-worker strategy must take the same steps (each fine-tune is a
        # collective fit): a cached candidate is read only where every worker has it, and the
        # budget is one decision for all
        self.multi_worker = strategy is not None and in_multi_worker_mode(strategy)
        self.start = time.monotonic()
        self.results: list[CandidateResult] = []
        self.shrunk: dict[tuple[float, float | None], keras.Model | Path] = {}
        self.trained = 0
        self.stopped = ""
        self.warned = False
        self.base_outputs: np.ndarray | None = None
        self.representative = representative_features(model, train)
        self._counts: dict[str, np.ndarray] | None = None
        #: why a part of the search was not tried (e.g. ``{"embeddings": "no tables"}``)
        self.skipped: dict[str, str] = {}

    def counts(self) -> dict[str, np.ndarray]:
        """The ids' counts per table on the training data, counted once per search."""
        if self._counts is None:
            self._counts = id_counts(self.model, self.train)
        return self._counts

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
        if self.stopped or (self.budget is None and not self.multi_worker):
            return bool(self.stopped)
        spent = time.monotonic() - self.start
        trained = [r.seconds for r in self.results if r.candidate.trains and not r.cached]
        expect = max(trained) if trained else 0.0
        mine = self.budget is not None and spent + expect > self.budget
        # wall clocks differ between workers: stop everywhere when any worker would
        over = any_worker(self.strategy, mine) if self.multi_worker else mine
        if over:
            self.stopped = (
                f"budget {self.budget:.0f} s: {spent:.0f} s spent, the next fine-tune takes "
                f"~{expect:.0f} s"
                if mine
                else "another worker's budget ran out (every worker stops at the same step)"
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
        cached = self._cached(folder)
        if self.multi_worker and not every_worker(self.strategy, cached is not None):
            # a worker without it rebuilds it, so every worker does: a fine-tune only some
            # workers ran would leave them in a collective alone
            cached = None
        if cached is not None:
            return self._resume(*cached, folder)
        started = time.monotonic()
        self.say(f"compress: candidate {len(self.results) + 1}: {candidate.name} ...")
        model = self._build(candidate)
        path = None
        size = None
        if export:
            target = folder / (
                "model" if self.settings.runtime == "saved_model" else "model.tflite"
            )
            try:
                exported = export_candidate(
                    model,
                    candidate,
                    target,
                    runtime=self.settings.runtime,
                    representative=self.representative,
                )
                path, size = str(exported.path), exported.bytes
                outputs = self.outputs(path)
            except (ConversionError, RuntimeError) as err:
                # a mode this model does not convert to (or LiteRT cannot run), e.g. int16x8
                # of an op without an int16 kernel: a failed candidate, not a failed search
                return self._failed(candidate, folder, err, started)
        else:
            outputs = self.outputs(model)
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
            flops=flops(model),
            seconds=time.monotonic() - started,
            stage="export" if export else "keras",
        )
        atomic_write_text(folder / "result.json", json.dumps(result.to_dict(), indent=2))
        self._done(result)
        return result

    def _failed(
        self, candidate: Candidate, folder: Path, err: Exception, started: float
    ) -> CandidateResult:
        """Record a candidate whose export failed (cached: the converter is deterministic)."""
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result = CandidateResult(
            candidate,
            None,
            None,
            False,
            seconds=time.monotonic() - started,
            note=f"export failed: {type(err).__name__}: {first[:200]}",
            stage="failed",
        )
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "result.json", json.dumps(result.to_dict(), indent=2))
        self._done(result)
        return result

    def _cached(self, folder: Path) -> tuple[CandidateResult, np.ndarray | None] | None:
        """The result stored in ``folder`` and its validation outputs (None: failed), or None if
        absent or incomplete (a call interrupted while building it). Reads only: what the
        search takes from it is :meth:`_resume`'s, once every worker has it."""
        stored, outputs = folder / "result.json", folder / "outputs.npy"
        if not stored.exists():
            return None
        result = CandidateResult.from_dict(json.loads(stored.read_text()), cached=True)
        if result.stage == "failed":
            return result, None
        if not outputs.exists():
            return None
        if result.path is not None and not Path(result.path).exists():
            return None
        return result, np.load(outputs)

    def _resume(
        self, result: CandidateResult, values: np.ndarray | None, folder: Path
    ) -> CandidateResult:
        """Take a cached result: re-judge its outputs under this search's rule (a search
        with another ``max_loss``/``rule``/``metric`` reuses the cache), and let the later
        exports of its shrink ratio load its Keras model instead of fine-tuning again."""
        if values is not None:
            if result.candidate == Candidate() and self.base_outputs is None:
                self.base_outputs = values
            result.difference = self.judge(values)
            result.accepted = result.difference.keeps_quality(
                self.settings.max_loss, self.settings.rule
            )
        if result.stage == "keras" and result.candidate.shrinks not in self.shrunk:
            self.shrunk[result.candidate.shrinks] = folder / "model.keras"
        self._done(result)
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
            counts=self.counts() if candidate.min_count else None,
        )
        if candidate.shrinks is not None:
            self.shrunk[candidate.shrinks] = float_model
        if candidate.trains and (shrunk is None or candidate.qat):
            self.trained += 1
        return model

    def _done(self, result: CandidateResult) -> None:
        self.results.append(result)
        if result.difference is not None:
            self._check_resolution(result.difference)
        best = self.best()
        verdict = (
            f"Δ{self.settings.metric} {result.difference} -> "
            f"{'keeps' if result.accepted else 'loses'}"
            if result.difference is not None
            else result.note
        )
        self.say(
            f"compress: {result.name}: {verdict}"
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


def flops(model: keras.Model) -> int | None:
    try:
        return int(count_flops(model, batch_size=1))
    except Exception:  # noqa: BLE001 - FLOPs are informative; a model the profiler rejects
        return None


def progress_printer(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        _log.info("%s", message)
        if enabled:
            from tqdm.auto import tqdm  # only imported when shown (notebooks warn otherwise)

            tqdm.write(message)

    return say


def every_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether ``flag`` is True on every worker of ``strategy`` (see :func:`any_worker`)."""
    return not any_worker(strategy, not flag)


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether ``flag`` is True on any worker of ``strategy``: a SUM all-reduce, so every
    worker must call it at the same step of the search (they do: they take the same steps)."""
    value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) > 0.0
