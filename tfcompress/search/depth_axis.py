"""compress's depth axis: drop whole residual blocks (``Candidate(depth=n)``, ``drop_blocks``)
of the model at the best kept shrink ratio, for the latency and size objectives.
:class:`DepthAxis` is a mixin of :class:`~tfcompress.search.strategy.SearchStrategy`.

Why: a transformer block's time at small widths is per-row overhead (the BST's
shrink0.88+vocab128+dynamic file spent 0.53 ms in 2 softmaxes and 0.76 ms in ~27 elementwise
adds of 4-value rows of its 3.08 ms at batch 256), which no width shrink removes and dropping a
block halves. For size it is the base the table layouts start from: the BST's size search
reached 10.76x only as `drop1+shrink0.88+qr+dynamic` (the same without the dropped block:
8.30x at best). Not for FLOPs: no measurement asked for it yet.

Example:
    >>> from tfcompress.search.depth_axis import DEPTH_OBJECTIVES
    >>> DEPTH_OBJECTIVES
    ('latency', 'latency_b1', 'size')
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfcompress.pruning.depth import find_blocks
from tfcompress.search.space import Candidate

__all__ = ["DEPTH_OBJECTIVES", "DepthAxis"]

#: objectives the axis runs for (see the module docstring)
DEPTH_OBJECTIVES = ("latency", "latency_b1", "size")


class DepthAxis:
    """The depth steps of a :class:`~tfcompress.search.strategy.SearchStrategy` (it provides
    ``run``, ``quantized``, ``over_budget``, ``settings``, ``model``, ``_skip``...)."""

    def depth_axis(self: Any, base: Candidate) -> Candidate:
        """Drop 1, then 2, ... of the model's blocks (the last ones, ``drop_blocks``) at
        ``base``'s shrink ratios, each fine-tuned distilling from the teacher and judged as a
        float Keras model first (early rejection), while it keeps quality; each one that keeps
        is exported in every PTQ mode (:meth:`quantized`). At least one block is kept.

        Args:
            base: the bisection's result (the largest kept shrink, or ``Candidate()``).

        Returns:
            The deepest-dropped candidate that kept quality (the embedding axis starts from
            it), else ``base``. Not tried (``base`` returned, the reason in
            ``self.skipped["depth"]``) for models with fewer than two droppable blocks (silently
            for the size objective); silently not tried for the FLOPs objective.
        """
        if self.settings.objective not in DEPTH_OBJECTIVES:
            return base
        try:
            blocks = find_blocks(self.model)
        except TypeError as err:  # a subclassed model: no graph to cut
            self._skip("depth", str(err))
            return base
        if len(blocks) < 2:
            if self.settings.objective == "size":  # the tables decide a recommender's bytes
                return base
            found = ", ".join(b.layers[0] + "..." for b in blocks) or "none"
            self._skip(
                "depth",
                f"model {self.model.name!r} has {len(blocks)} droppable residual block(s) "
                f"({found}); the depth axis drops blocks only while one is left",
            )
            return base
        best = base
        for depth in range(1, len(blocks)):
            if self.over_budget():
                break
            candidate = dataclasses.replace(base, depth=depth)
            if not self.run(candidate, export=False).accepted:
                break
            self.quantized(candidate)
            best = candidate
        return best
