"""What `compress` tries, in what order (docs/compress.md, "The search, and why"): every PTQ
mode of a float model (QAT int8 when PTQ int8 loses), bisection on a global shrink ratio and on
the tables' own ratio, then the embedding axis (table storage x rare-id pruning) of the best
kept float model. :class:`SearchStrategy` adds these steps to :class:`~.runner.Search`, which
builds, judges and caches each candidate.

Example:
    >>> search = SearchStrategy(model, teacher, train, settings, root, x_val, y_val,
    ...     batch_size=256, strategy=None, budget=None, report=print)  # doctest: +SKIP
    >>> search.embedding_axis(search.bisect())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from tfcompress.evaluation import sensitivity
from tfcompress.pruning import shrink
from tfcompress.quantization.embedding import EXPORT_MIN_ROWS
from tfcompress.search.build import embedding_layers
from tfcompress.search.result import CandidateResult
from tfcompress.search.runner import Search
from tfcompress.search.space import Candidate

__all__ = ["PTQ_ORDER", "ROWS_ORDER", "SearchStrategy"]

#: PTQ modes exported for every float model that keeps quality (smallest file first; int16x8's
#: int8 weights make it int8's size, its int16 activations keep more of the float quality)
PTQ_ORDER = ("int8", "dynamic", "float16", "int16x8")
#: table storage tried on the embedding axis (smallest first)
ROWS_ORDER = ("int4", "int8_row")
#: the rare-id ladder: the first threshold, and the factor it grows by while it keeps
_FIRST_MIN_COUNT, _GROWTH = 2, 4


class SearchStrategy(Search):
    """A :class:`~.runner.Search` with the steps `compress` takes."""

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
        modes = (None, *PTQ_ORDER) if base.shrinks is not None else PTQ_ORDER
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

    def bisect(self) -> Candidate:
        """Bisection on the global shrink ratio: the largest ratio whose fine-tuned float model
        keeps quality, then its PTQ/QAT exports; then the tables' own ratio beyond it.

        Returns:
            The float model the embedding axis starts from: the largest shrink that kept
            (with its tables' ratio), or ``Candidate()`` (the original) when none did.
        """
        try:
            skip = self.shrink_skip()
        except (TypeError, ValueError) as err:  # a model sensitivity cannot perturb
            self.say(f"compress: no shrink sensitivity ({err}); shrinking every layer")
            skip = ()
        try:  # can this model be shrunk at all? (no training: a quick rebuild)
            shrink(self.model, 0.5, skip=list(skip) or None)
        except (TypeError, ValueError) as err:  # e.g. a subclassed model, nothing to shrink
            self.say(f"compress: shrink not applicable: {err}")
            return Candidate()
        low = self._bisect(lambda r: Candidate(shrink=r, skip=skip), 0.0, self.settings.steps)
        if not low:
            return Candidate()
        if not embedding_layers(self.model):
            return Candidate(shrink=low, skip=skip)
        # the second axis: the embedding tables' dimensions beyond the global ratio (tables
        # are most of a recommender's bytes, and often tolerate more than the MLP)
        tables = self._bisect(
            lambda r: Candidate(shrink=low, skip=skip, embeddings=r),
            low,
            max(1, self.settings.steps - 1),
        )
        return Candidate(shrink=low, skip=skip, embeddings=tables)

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

    # -------------------------------------------------------------------- the embedding axis
    def embedding_axis(self, base: Candidate) -> None:
        """The tables of ``base``'s float model: their storage (``ROWS_ORDER``, no training),
        then rare-id pruning at a growing ``min_count`` with each storage that kept (no
        training either: see docs/compress.md for the measurement), all exported in the mode
        of ``base``'s smallest kept export.

        ``min_count`` starts at 2 (ids seen once share an OOV row) and grows 4x while a
        candidate keeps quality, then bisects between the last that kept and the first that
        lost, ``settings.steps`` thresholds after the first; a threshold that prunes no id
        counts as kept without a candidate. Skipped (with the reason in
        ``self.skipped["embeddings"]`` and a progress line) for a model without top-level
        ``Embedding`` tables; the storage alone for tables below ``EXPORT_MIN_ROWS`` rows
        (the export leaves them to the converter: the candidate would be ``base`` again).
        """
        tables = embedding_layers(self.model)
        if not tables:
            self._skip("embeddings", f"model {self.model.name!r} has no top-level Embedding table")
            return
        base = dataclasses.replace(base, quantization=self._base_mode(base))
        rows = self._rows_axis(base, tables)
        if rows and not self.over_budget():
            self._vocabulary_axis(base, rows)

    def _rows_axis(self, base: Candidate, tables: list[str]) -> tuple[str | None, ...]:
        """Export ``base`` with each table storage of ``ROWS_ORDER``; the storages that kept
        (``(None,)``, the mode's default, when none did or none applies)."""
        if self.settings.runtime != "tflite":
            return (None,)
        largest = max(int(self.model.get_layer(name).input_dim) for name in tables)
        if largest < EXPORT_MIN_ROWS:
            self._skip(
                "rows",
                f"every table has fewer than {EXPORT_MIN_ROWS} rows (largest {largest}); the "
                "export leaves such tables to the converter",
            )
            return (None,)
        kept = []
        for storage in ROWS_ORDER:
            if self.over_budget():
                return ()
            if self.run(dataclasses.replace(base, rows=storage)).accepted:
                kept.append(storage)
        return tuple(kept) or (None,)  # a storage that loses alone loses pruned too

    def _vocabulary_axis(self, base: Candidate, rows: tuple[str | None, ...]) -> None:
        """Rare-id pruning of ``base`` at a growing, then bisected, ``min_count``, each
        threshold exported with every storage in ``rows``."""
        try:
            counts = self.counts()
        except ValueError as err:  # tables fed by other layers than the model's inputs
            self._skip("vocabulary", f"rare-id pruning not applicable: {err}")
            return
        # ids (padding 0 aside) below this count exist: a smaller threshold prunes nothing
        rarest = min((int(c[1:].min()) for c in counts.values() if c.size > 1), default=0)

        def keeps(min_count: int) -> bool:
            if min_count <= rarest:
                return True  # every id is seen >= min_count times: the candidate is `base`
            accepted = False
            for storage in rows:
                if self.over_budget():
                    break
                candidate = dataclasses.replace(base, min_count=min_count, rows=storage)
                accepted = self.run(candidate).accepted or accepted
            return accepted

        low, high, count = 0, None, _FIRST_MIN_COUNT
        for _ in range(self.settings.steps + 1):
            if self.over_budget() or (high is not None and high - low <= 1):
                break
            if keeps(count):
                low = count
            else:
                high = count
            count = low * _GROWTH if high is None else int(round(np.sqrt(max(low, 1) * high)))
            count = min(max(count, low + 1), high - 1) if high is not None else count
        if low and low <= rarest:
            self._skip(
                "vocabulary",
                f"every id is seen at least {rarest} times in the training data; min_count up to "
                f"{low} prunes nothing",
            )

    def _base_mode(self, base: Candidate) -> str | None:
        """The quantization of ``base``'s smallest kept PTQ export (None: float)."""
        own: list[CandidateResult] = [
            r
            for r in self.results
            if r.accepted
            and r.path
            and r.bytes
            and not r.candidate.qat
            and not r.candidate.min_count
            and r.candidate.rows is None
            and r.candidate.shrinks == base.shrinks
            and r.candidate.skip == base.skip
        ]
        return min(own, key=lambda r: r.bytes).candidate.quantization if own else None

    def _skip(self, part: str, reason: str) -> None:
        self.skipped[part] = reason
        self.say(f"compress: {part} axis skipped: {reason}")
