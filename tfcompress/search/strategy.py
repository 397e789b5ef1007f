"""What `compress` tries, in what order (docs/compress.md, "The search, and why"): every PTQ
mode of a float model (QAT int8 when PTQ int8 loses), bisection on a global shrink ratio and on
the tables' own ratio, then the embedding axis (table storage x rare-id pruning, then
mixed-dimension and QR tables, :mod:`.tables_axis`) of the best kept float model; for the
latency objectives, the fused embedding front end of the exports that kept quality and that
the export's auto rule leaves unfused. :class:`SearchStrategy` adds
these steps to :class:`~.runner.Search`, which builds, judges and caches each candidate.

Example:
    >>> search = SearchStrategy(model, teacher, train, settings, root, x_val, y_val,
    ...     batch_size=256, strategy=None, budget=None, report=print)  # doctest: +SKIP
    >>> search.embedding_axis(search.bisect())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfcompress.embeddings import blocked_map_bytes
from tfcompress.evaluation import sensitivity
from tfcompress.export.fuse import fusable_tables, fuse_embeddings
from tfcompress.export.manifest import MANIFEST_NAME, read_manifest
from tfcompress.pruning import shrink
from tfcompress.quantization.embedding import EXPORT_MIN_ROWS
from tfcompress.search.build import embedding_layers, row_bytes
from tfcompress.search.depth_axis import DepthAxis
from tfcompress.search.result import CandidateResult
from tfcompress.search.runner import Search
from tfcompress.search.space import Candidate
from tfcompress.search.tables_axis import TablesAxis

__all__ = ["FUSE_OBJECTIVES", "INT8_FALLBACK", "PTQ_ORDER", "ROWS_ORDER", "SearchStrategy"]

#: PTQ modes exported for every float model that keeps quality (smallest file first)
PTQ_ORDER = ("int8", "dynamic", "float16")
#: tried when PTQ int8 loses, before QAT, for the size and FLOPs objectives: int8 weights
#: (int8's size), int16 activations (more of the float quality), but LiteRT's int16 kernels are
#: far slower (DCN-v2 teacher, batch 256, 1 thread: 110.6 ms against int8's 1.17 and float's
#: 3.49), so it can never win on latency
INT8_FALLBACK = "int16x8"
_FALLBACK_OBJECTIVES = ("size", "flops")
#: table storage tried on the embedding axis (smallest first); "int4" only where "int4_compact"
#: lost: compact is smaller (9 against 12 bytes a 16-wide row) and was faster (1.51x against
#: 1.75x the int8 tables' batch-256 time, docs/quantization.md), only its rounding is coarser
ROWS_ORDER = ("int4_compact", "int4", "int8_row")
_DOMINATED = {"int4": "int4_compact"}
#: the rare-id ladder: the first threshold, and the factor it grows by while it keeps
_FIRST_MIN_COUNT, _GROWTH = 2, 4
#: graph bytes of one table's dequantize (or remap) ops in a .tflite file (quantization.embedding)
_OP_BYTES = 512
#: objectives for which the fused front end of the exports the auto rule leaves unfused (full
#: int8, dynamic, int8/int4 row tables) is tried: fusing removes per-op cost (the DCN student's
#: 53 -> 36 ops), measured 1.32-1.34x at batch 1 in int8 and 1.64x with int8 rows, but 1.02x at
#: batch 256 in int8 and a few KB at most (docs/export.md), so never for size or FLOPs
FUSE_OBJECTIVES = ("latency", "latency_b1")


class SearchStrategy(DepthAxis, TablesAxis, Search):
    """A :class:`~.runner.Search` with the steps `compress` takes."""

    def quantized(self, base: Candidate) -> None:
        """Export the float model of ``base`` (the original, or a shrunk one) in every PTQ mode
        (and as float when shrunk); when PTQ int8 does not keep quality, int16x8 (no training;
        for the size and FLOPs objectives only, see ``INT8_FALLBACK``) and QAT int8.

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
                if self.settings.objective in _FALLBACK_OBJECTIVES:
                    self.run(dataclasses.replace(base, quantization=INT8_FALLBACK))
                    if self.over_budget():
                        return
                keep = self.keep_float()
                self.run(dataclasses.replace(base, quantization="int8", qat=True, keep_float=keep))
        self.fused(base)

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
        keeps quality, then its PTQ/QAT exports; then the tables' own ratio beyond it; then,
        for the latency and size objectives, whole blocks dropped at that ratio
        (:meth:`depth_axis`).

        Returns:
            The float model the embedding axis starts from: the largest shrink that kept
            (with its tables' ratio and the blocks dropped), or ``Candidate()`` (the original)
            when none did.
        """
        return self.depth_axis(self._bisect_shrink())

    def _bisect_shrink(self) -> Candidate:
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
        lost, ``settings.steps`` thresholds after the first. A storage or a threshold is built
        only when its estimated bytes saved (:func:`row_bytes`) pay for its ops and the id
        remap; a threshold that would not counts as kept (a larger one prunes more). Skipped
        (with the reason in ``self.skipped["embeddings"]`` and a progress line) for a model
        without top-level ``Embedding`` tables; likewise ``"rows"`` and ``"vocabulary"`` for
        the parts that do not apply. Last, the table layouts (mixed-dimension and QR tables,
        fine-tuned: :meth:`~.tables_axis.TablesAxis.tables_axis`) in the storages that kept.
        """
        tables = embedding_layers(self.model)
        if not tables:
            self._skip("embeddings", f"model {self.model.name!r} has no top-level Embedding table")
            return
        base = dataclasses.replace(base, quantization=self._base_mode(base))
        rows = self._rows_axis(base, tables)
        if rows and not self.over_budget():
            self._vocabulary_axis(base, rows)
        if rows and not self.over_budget():
            # mixed-dimension and QR tables last: they fine-tune, and are built only where
            # smaller than the best kept export (pruned ones included)
            self.tables_axis(base, rows)

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
        shapes = self._table_shapes(base)
        kept, tried, mode = [], 0, base.quantization
        for storage in ROWS_ORDER:
            if _DOMINATED.get(storage) in kept:
                continue
            saved = sum(
                rows * (row_bytes(None, mode, dim, rows) - row_bytes(storage, mode, dim, rows))
                for rows, dim in shapes.values()
            )
            quantized = sum(rows >= EXPORT_MIN_ROWS for rows, _ in shapes.values())
            if saved <= _OP_BYTES * quantized:  # e.g. int4 of 8-wide rows, int8 rows in int8
                continue
            if self.over_budget():
                return ()
            tried += 1
            if self.run(dataclasses.replace(base, rows=storage)).accepted:
                kept.append(storage)
        if kept and not self.over_budget():
            self.fused(base)
        if not tried:
            widths = sorted({dim for _, dim in shapes.values()})
            self._skip(
                "rows",
                f"no table storage of {ROWS_ORDER} saves bytes over mode {mode!r}'s own for "
                f"rows of {widths} values (int4 pays from 10 values a row)",
            )
        return tuple(kept) or (None,)  # a storage that loses alone loses pruned too

    def _vocabulary_axis(self, base: Candidate, rows: tuple[str | None, ...]) -> None:
        """Rare-id pruning of ``base`` at a growing, then bisected, ``min_count``, each
        threshold exported with every storage in ``rows``."""
        try:
            counts = self.counts()
        except ValueError as err:  # tables fed by other layers than the model's inputs
            self._skip("vocabulary", f"rare-id pruning not applicable: {err}")
            return
        shapes = self._table_shapes(base)

        def saved(min_count: int, storage: str | None) -> float:
            """Bytes the pruning saves: the rows of the pruned ids, less the ~1-byte-an-id map."""
            total = 0.0
            for name, (rows, dim) in shapes.items():
                pruned = int((counts[name][1:] < min_count).sum()) if name in counts else 0
                if pruned:
                    size = row_bytes(storage, base.quantization, dim, rows)
                    total += (pruned - 1) * size - blocked_map_bytes(rows) - _OP_BYTES
            return total

        def keeps(min_count: int) -> bool:
            accepted = built = False
            for storage in rows:
                if saved(min_count, storage) <= 0 or self.over_budget():
                    continue  # prunes nothing, or too little to pay for the remap
                built = True
                candidate = dataclasses.replace(base, min_count=min_count, rows=storage)
                accepted = self.run(candidate).accepted or accepted
            return accepted or not built  # a larger threshold prunes more

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
        if not any(r.candidate.min_count for r in self.results):
            self._skip(
                "vocabulary",
                f"min_count up to {low} prunes too few ids to pay for the id remap (~1 byte an id)",
            )

    def _table_shapes(self, base: Candidate) -> dict[str, tuple[int, int]]:
        """``{table: (rows, dim)}`` of ``base``'s float model (dims after its tables' ratio)."""
        ratio = base.shrink if base.embeddings is None else base.embeddings
        shapes = {}
        for name in embedding_layers(self.model):
            layer = self.model.get_layer(name)
            dim = max(1, int(round(int(layer.output_dim) * (1 - ratio))))
            shapes[name] = (int(layer.input_dim), dim)
        return shapes

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
            and r.candidate.fuse is None
            and r.candidate.tables is None
            and r.candidate.shrinks == base.shrinks
            and r.candidate.skip == base.skip
        ]
        return min(own, key=lambda r: r.bytes).candidate.quantization if own else None

    # -------------------------------------------------------------------- the fused front end
    def fused(self, base: Candidate) -> None:
        """The fused embedding front end (``Candidate(fuse=True)``) of each export of ``base``'s
        float model that kept quality and that the export's auto rule left unfused (its
        manifest's ``options["fused_embeddings"]`` is None: full int8, dynamic, int8/int4 row
        tables), for the latency objectives in TFLite; no training, each judged like any
        candidate. Only exports that kept are fused: the fused file computes the same function
        (the unfused file's drift plus the fused table's own quantization, docs/export.md), so
        a mode that lost unfused is not tried fused. QAT and rare-id pruned exports are not
        fused (``Candidate`` refuses them). Skipped, with the reason in
        ``self.skipped["fuse"]``, for a model with fewer than two fusable tables of one width
        or without a ``MaskedMean`` pooling among them (fused lookups alone measured slower).
        """
        if self.settings.objective not in FUSE_OBJECTIVES or self.fusion_problem():
            return
        tried = {r.candidate for r in self.results}
        for result in list(self.results):
            c = result.candidate
            if not (result.accepted and result.path and result.stage == "export"):
                continue
            if c.fuse is not None or c.qat or c.min_count or c.tables:
                continue
            if (c.shrinks, c.skip) != (base.shrinks, base.skip) or _auto_fused(result.path):
                continue
            candidate = dataclasses.replace(c, fuse=True)
            if candidate in tried:
                continue
            if self.over_budget():
                return
            tried.add(candidate)
            self.run(candidate)

    def fusion_problem(self) -> str:
        """Why the fused front end is not tried on this search's model ('' when it is), asked
        once (the shrunk models keep the original's tables and inputs); recorded in
        ``self.skipped["fuse"]`` for the latency objectives."""
        if not hasattr(self, "_fusion_problem"):
            problem = self._fusion_check()
            if problem and self.settings.objective in FUSE_OBJECTIVES:
                self._skip("fuse", problem)
            self._fusion_problem = problem
        return self._fusion_problem

    def _fusion_check(self) -> str:
        if self.settings.runtime != "tflite":
            return f"runtime {self.settings.runtime!r}: the fused front end is a TFLite rewrite"
        tables = fusable_tables(self.model)
        if len(tables) < 2:
            why = ""
            try:
                left = fuse_embeddings(self.model)[1].skipped
                why = "; ".join(f"'{d.layer}' ({d.class_name}) {d.reason}" for d in left)
            except (TypeError, ValueError) as err:  # not a functional model
                why = str(err).split(";")[0]
            return (
                f"model {self.model.name!r} has {len(tables)} fusable Embedding tables (fusion "
                "needs >= 2 of one width reading integer model inputs)"
                + (f": {why}" if why else "")
            )
        if not fuse_embeddings(self.model)[1].settings["pooled"]:
            return (
                f"no MaskedMean pooling among the fusable tables {tables}: fused lookups alone "
                "measured slower (0.87x at batch 1, 0.75x at batch 256; docs/export.md)"
            )
        return ""

    def _skip(self, part: str, reason: str) -> None:
        self.skipped[part] = reason
        self.say(f"compress: {part} axis skipped: {reason}")


def _auto_fused(path: str) -> bool:
    """Whether the export at ``path`` has a fused front end (its manifest's record)."""
    manifest = read_manifest(Path(path).parent / MANIFEST_NAME)
    entry = manifest["artifacts"].get(Path(path).name, {})
    return bool(entry.get("options", {}).get("fused_embeddings"))
