"""compress's table-layout axis: mixed-dimension and quotient-remainder tables
(``Candidate(tables="mixed" | "qr")``) of the best kept float model, in the table storages the
rows axis found keeps quality, each fine-tuned distilling from the teacher; built only where
the estimated file is smaller than the smallest kept export so far (docs/compress.md, "The
embedding axis"). :class:`TablesAxis` is a mixin of
:class:`~tfcompress.search.strategy.SearchStrategy`.

Example:
    >>> from tfcompress.search.tables_axis import LAYOUTS
    >>> LAYOUTS
    ('qr', 'mixed')
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfcompress._keras import keras
from tfcompress.embeddings.compositional import QREmbedding
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.search.build import (
    build_model,
    layout_tables,
    row_bytes,
    table_layout,
)
from tfcompress.search.result import CandidateResult
from tfcompress.search.space import Candidate

__all__ = ["LAYOUTS", "TABLES_OBJECTIVES", "TablesAxis", "layout_bytes"]

#: the layouts tried, cheapest to build first (QR's fit is a few means; mixed runs an SVD per
#: block)
LAYOUTS = ("qr", "mixed")
#: objectives the axis runs for: a layout only makes the file smaller; it adds lookups (QR: two
#: gathers and a product a table; mixed: a gather a block and a projection), so it is never
#: faster nor fewer FLOPs than the plain table it replaces
TABLES_OBJECTIVES = ("size",)
#: graph bytes of one QR table's ops (a .tflite file; measured: the QR file of a 1000 x 32
#: table had the plain file's graph bytes, within 20)
_OP_BYTES = 512
#: graph bytes of one block of a mixed table (its gather, clamps, unpack, its share of the
#: projection and sum; measured: the 3-block layout of a 1000 x 32 table in int4_compact rows
#: added 6.65 KB of graph to the plain table's file)
_BLOCK_OP_BYTES = 2200


def layout_bytes(
    model: keras.Model, names: list[str], storage: str | None, mode: str | None
) -> float:
    """Estimated .tflite bytes of the tables ``names`` of ``model`` (a :func:`table_layout`
    copy) stored as ``storage`` in ``mode`` (:func:`~tfcompress.search.build.row_bytes` per
    row table; blocks of a mixed table hold a zero row before and after; projections float32;
    the mixed id map as its layout stores it: ``MixedDimEmbedding.map_bytes()``), with their
    ops.

    Example:
        >>> layout_bytes(layout, ["emb"], "int4_compact", "int8")  # doctest: +SKIP
        2304.0
    """
    total = 0.0
    for name in names:
        layer = model.get_layer(name)
        if isinstance(layer, QREmbedding):
            for table in (layer.quotient, layer.remainder):
                rows, dim = (int(v) for v in table.shape)
                total += rows * row_bytes(storage, mode, dim, rows) + _OP_BYTES
        elif isinstance(layer, MixedDimEmbedding):
            width, last = int(layer.output_dim), len(layer.block_sizes) - 1
            total += layer.map_bytes()  # the id -> rank map in its layout (~1.14 B an id)
            for k, (n, dim) in enumerate(zip(layer.block_sizes, layer.block_dims, strict=True)):
                rows = int(n) + int(k > 0) + int(k < last)
                total += rows * row_bytes(storage, mode, int(dim), rows) + _BLOCK_OP_BYTES
                total += 0 if dim == width else 4 * int(dim) * width
    return total


class TablesAxis:
    """The table-layout steps of a :class:`~tfcompress.search.strategy.SearchStrategy` (it
    provides ``run``, ``results``, ``best``, ``over_budget``, ``counts``, ``shrunk``...)."""

    def tables_axis(self: Any, base: Candidate, rows: tuple[str | None, ...]) -> None:
        """Mixed-dimension and QR tables (``LAYOUTS``) of ``base``'s float model, for the size
        objective: each layout with the storages of ``rows`` (those the rows axis kept,
        smallest first) until one keeps quality. A candidate is built (a fine-tune) only when
        its estimated file (:meth:`estimate`) is smaller than the smallest kept export so far;
        otherwise the reason is recorded in ``self.skipped[layout]``. Skipped as a whole
        (``self.skipped["tables"]``) for other objectives, other runtimes, and models without
        a table of >= 64 rows read from a model input.
        """
        if self.settings.objective not in TABLES_OBJECTIVES:
            self._skip(
                "tables",
                f"objective {self.settings.objective!r}: mixed-dimension and QR tables only "
                "make the file smaller (they add lookups); tried for objective 'size'",
            )
            return
        if self.settings.runtime != "tflite":
            self._skip("tables", f"runtime {self.settings.runtime!r}: sizes are TFLite files'")
            return
        try:
            counts = self.counts()
        except ValueError as err:  # tables fed by other layers than the model's inputs
            self._skip("tables", f"table layouts not applicable: {err}")
            return
        names = layout_tables(self.model, counts)
        if not names:
            self._skip(
                "tables", "no Embedding table of >= 64 rows read from a model input to lay out"
            )
            return
        for layout in LAYOUTS:
            problems = []
            for storage in rows:
                if self.over_budget():
                    return
                candidate = dataclasses.replace(base, tables=layout, rows=storage)
                problem = self.layout_problem(candidate, names)
                if problem:
                    problems.append(problem)
                    continue
                if self.run(candidate).accepted:
                    break  # a larger storage of the same layout is larger
            if len(problems) == len(rows):
                self._skip(layout, "; ".join(problems))

    def layout_problem(self: Any, candidate: Candidate, names: list[str]) -> str:
        """Why ``candidate`` is not built ('' when it is): its estimated file bytes
        (:meth:`estimate`) are not below the smallest kept export's, or no layout fits."""
        best: CandidateResult | None = self.best()
        if best is None:
            return f"{candidate.name}: no kept export to be smaller than"
        try:
            estimate = self.estimate(candidate, names)
        except ValueError as err:  # e.g. a mixed budget no layout fits
            first = str(err).split(";")[0]
            return f"{candidate.name}: {first}"
        if estimate is None:
            return f"{candidate.name}: no export of its base in storage {candidate.rows!r}"
        if estimate >= best.bytes:
            return (
                f"{candidate.name}: estimated {estimate:,.0f} bytes, not smaller than the best "
                f"kept {best.name} ({best.bytes:,} bytes)"
            )
        return ""

    def estimate(self: Any, candidate: Candidate, names: list[str]) -> float | None:
        """Estimated file bytes of ``candidate``: the export of its base in its storage, less
        its plain tables' bytes, plus the layout's (:func:`layout_bytes` of the layout built,
        untrained, from the base float model). None when that export was not made."""
        plain = dataclasses.replace(candidate, tables=None)
        reference = next(
            (r for r in self.results if r.candidate == plain and r.path and r.bytes), None
        )
        if reference is None:
            return None
        float_model = self.float_base(candidate)
        layout = table_layout(float_model, candidate, self.counts())
        mode = candidate.quantization
        before = 0.0
        for name in names:
            layer = float_model.get_layer(name)
            rows, dim = int(layer.input_dim), int(layer.output_dim)
            before += rows * row_bytes(candidate.rows, mode, dim, rows)
        return reference.bytes - before + layout_bytes(layout, names, candidate.rows, mode)

    def float_base(self: Any, candidate: Candidate) -> keras.Model:
        """The float model ``candidate``'s layout starts from: its shrunk model (built or
        cached by the bisection), or the original."""
        if candidate.shrinks is None:
            return self.model
        shrunk = self.shrunk.get(candidate.shrinks)
        if shrunk is None:
            raise ValueError(
                f"candidate {candidate.name}: its shrunk float model was not built; run the "
                "bisection first."
            )
        if not isinstance(shrunk, keras.Model):
            shrunk = keras.models.load_model(shrunk, compile=False)
            self.shrunk[candidate.shrinks] = shrunk
        return shrunk

    def _build(self: Any, candidate: Candidate) -> keras.Model:
        """A layout candidate's model: the layout of its float base, fine-tuned once per
        (base, layout, budget) and reused across storages (a QR layout does not depend on the
        storage; a mixed one's budget does); other candidates as ``Search._build``."""
        if candidate.tables is None:
            return super()._build(candidate)  # type: ignore[misc]
        if not hasattr(self, "_layouts"):
            self._layouts = {}
        key = (candidate.shrinks, candidate.skip, candidate.tables)
        if candidate.tables == "mixed":
            key += (candidate.rows, candidate.quantization)
        if key not in self._layouts:
            model, _ = build_model(
                self.model,
                self.teacher,
                candidate,
                self.train,
                self.settings,
                shrunk=self.float_base(candidate) if candidate.shrinks is not None else None,
                batch_size=self.batch_size,
                strategy=self.strategy,
                counts=self.counts(),
            )
            self.trained += 1
            self._layouts[key] = model
        return self._layouts[key]
