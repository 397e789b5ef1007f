"""What `compress` returns: every candidate tried with its measurements
(:class:`CandidateResult`), the chosen one, the Pareto front, and the report
(:class:`CompressionResult`).

Example:
    >>> result = tfcompress.compress(model, (x, y), max_loss=0.002)  # doctest: +SKIP
    >>> print(result.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._text import markdown_table
from tfcompress.evaluation import BenchmarkReport, pareto_front
from tfcompress.evaluation.statistics import PairedDifference, paired_difference
from tfcompress.export import load_variant
from tfcompress.export.manifest import atomic_write_text
from tfcompress.search.space import Candidate, SearchSettings

__all__ = [
    "EXACT_TIE",
    "LATENCY_TIE",
    "QUALITY_TIE",
    "CandidateResult",
    "CompressionResult",
    "first_output",
]

# latencies within this fraction of the fastest candidate's (or within its own timing noise,
# whichever is larger) count as a tie, decided by quality, then size: a smaller difference does
# not say which file is faster
LATENCY_TIE = 0.03
# sizes and FLOPs are exact, but a file 0.4% smaller (the demo's int4 rows of 8-wide tables:
# 248 bytes of 70,560) that runs 1.8x slower is not what a user asking for "size" wants:
# within this fraction of the smallest, the tie goes to quality, then the smaller file
EXACT_TIE = 0.01
# among candidates tied on latency, quality losses (at the CI's worst end) within this
# fraction of max_loss tie too, and the smaller file wins: on MovieLens `shrink0.88` float and
# `shrink0.88+dynamic+fused` took 1.781 and 1.777 µs at batch 1 and their worst ends differed
# by ~1e-5 AUC, yet the 2.75x larger file was chosen on that difference
QUALITY_TIE = 0.05


def _no_gain(result: CandidateResult) -> float:
    """A candidate's loss at the CI's worst end, 0 when even that end gains: among latency ties,
    two candidates the data show to lose nothing are as good as each other, so the smaller file
    wins (the BST with a block dropped: float16 and dynamic files 0.01 ms apart, both +0.004 AUC
    at their worst ends and 0.0002 apart, and the 1.5x larger float16 file was chosen)."""
    return max(result.difference.worst_loss(), 0.0)


def first_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The output a search judges: the only one, or the first by name of several."""
    return outputs[sorted(outputs)[0]]


@dataclasses.dataclass
class CandidateResult:
    """One candidate and what it measured.

    Attributes:
        candidate: what was built.
        path: its exported file (None when it was rejected before export).
        difference: its quality against the original on the validation data (paired, with CI);
            None when its export failed (``stage="failed"``, the reason in ``note``).
        accepted: whether it keeps quality under the search's rule.
        bytes: size of the exported artifact.
        flops: FLOPs of one example through its Keras model (None if not counted).
        seconds: wall time spent building and measuring it (0 when it came from the cache).
        cached: whether it came from the cache of an earlier call.
        note: why it was rejected early, or what else happened.
        stage: ``"export"`` (the exported file was judged), ``"keras"`` (the float Keras
            model of a shrink ratio, judged before any export: the bisection's early rejection)
            or ``"failed"`` (the export failed, e.g. a mode the model does not convert to).
    """

    candidate: Candidate
    path: str | None
    difference: PairedDifference | None
    accepted: bool
    bytes: int | None = None
    flops: int | None = None
    seconds: float = 0.0
    cached: bool = False
    note: str = ""
    stage: str = "export"

    @property
    def name(self) -> str:
        """The candidate's name; ``"<name> (keras)"`` for a float model judged before export."""
        return self.candidate.name + (" (keras)" if self.stage == "keras" else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.get_config(),
            "name": self.name,
            "path": self.path,
            "difference": None if self.difference is None else self.difference.to_dict(),
            "accepted": self.accepted,
            "bytes": self.bytes,
            "flops": self.flops,
            "seconds": round(self.seconds, 3),
            "note": self.note,
            "stage": self.stage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, cached: bool = False) -> CandidateResult:
        return cls(
            candidate=Candidate.from_config(data["candidate"]),
            path=data.get("path"),
            difference=(
                None
                if data.get("difference") is None
                else PairedDifference.from_dict(data["difference"])
            ),
            accepted=bool(data["accepted"]),
            bytes=data.get("bytes"),
            flops=data.get("flops"),
            seconds=0.0 if cached else float(data.get("seconds", 0.0)),
            cached=cached,
            note=data.get("note", ""),
            stage=data.get("stage", "export"),
        )


@dataclasses.dataclass
class CompressionResult:
    """The outcome of :func:`tfcompress.compress`.

    Attributes:
        chosen: the candidate that keeps quality and is best on the objective, better than the
            float model itself (None when none is; then :attr:`path` is the float baseline's
            export).
        path: the chosen model's exported file.
        baseline: the float export of the original model (the reference of every Δ).
        candidates: every candidate tried, in the order tried.
        report: the side-by-side benchmark of the baseline and every exported candidate, from
            one run (size, latency, quality).
        settings: the search's settings.
        seconds: the search's wall time.
        trained: how many candidates were fine-tuned (not from the cache).
        stopped: why the search stopped early (budget), or ``""``.
        skipped: the parts of the search not tried and why, e.g. ``{"embeddings": "model 'm'
            has no top-level Embedding table"}``.
    """

    chosen: CandidateResult | None
    path: str
    baseline: CandidateResult
    candidates: list[CandidateResult]
    report: BenchmarkReport
    settings: SearchSettings
    seconds: float
    trained: int
    stopped: str = ""
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def objective_value(self, result: CandidateResult) -> float | None:
        """The objective of ``result`` as measured (bytes, ms, or FLOPs; lower is better)."""
        objective = self.settings.objective
        if objective == "size":
            return None if result.bytes is None else float(result.bytes)
        if objective == "flops":
            return None if result.flops is None else float(result.flops)
        if result.name not in self.report.names:
            return None
        latency = self.report.row(result.name).latency_ms
        batches = sorted(latency)
        batch = batches[0] if objective == "latency_b1" else batches[-1]
        value = latency.get(batch, {}).get("median")
        return None if value is None else float(value)

    def objective_margin(self, result: CandidateResult) -> float:
        """How much more than ``result`` another candidate may measure on the objective and
        still tie with it: for latency the noise of ``result``'s own timing (its p90 minus its
        median) or ``LATENCY_TIE`` of its median, whichever is larger; ``EXACT_TIE`` of its
        value for size and FLOPs."""
        value = self.objective_value(result)
        if value is None:
            return 0.0
        if self.settings.objective in ("size", "flops"):
            return EXACT_TIE * value
        latency = self.report.row(result.name).latency_ms
        batches = sorted(latency)
        timing = latency[batches[0] if self.settings.objective == "latency_b1" else batches[-1]]
        spread = float(timing.get("p90", value)) - value
        return max(spread, LATENCY_TIE * value)

    def select(self) -> CandidateResult | None:
        """The candidate to choose: among those that keep quality and beat the float model
        itself on the objective, the best on the objective; candidates that tie with it within
        its :meth:`objective_margin` go to the smallest quality loss at the CI's worst end,
        then the smallest file; for the latency objectives losses within ``QUALITY_TIE *
        max_loss`` of the smallest tie too (a worst end that gains counts as no loss), and among
        those the smallest file wins. None when no candidate qualifies."""
        # a candidate must beat the float model itself on the objective (tiny models can grow
        # when quantized: the quantization parameters outweigh the weights they save)
        reference = self.objective_value(self.baseline)
        scored = []
        for r in self.candidates:
            value = self.objective_value(r) if r.accepted and r.path else None
            if value is not None and (reference is None or value < reference):
                scored.append((value, r))
        if not scored:
            return None
        best_value, best = min(scored, key=lambda vr: (vr[0], vr[1].difference.worst_loss()))
        band = best_value + self.objective_margin(best)
        tied = [r for value, r in scored if value <= band]
        if self.settings.objective in ("size", "flops"):
            # the 1% band is there so quality decides (a smaller file that loses more is not
            # worth 1%): quality first, then size
            return min(
                tied,
                key=lambda r: (
                    r.difference.worst_loss(),
                    float("inf") if r.bytes is None else r.bytes,
                    self.objective_value(r),
                ),
            )
        least = min(_no_gain(r) for r in tied)
        as_good = [r for r in tied if _no_gain(r) <= least + QUALITY_TIE * self.settings.max_loss]
        return min(
            as_good,
            key=lambda r: (
                float("inf") if r.bytes is None else r.bytes,
                r.difference.worst_loss(),
                self.objective_value(r),
            ),
        )

    @property
    def front(self) -> list[CandidateResult]:
        """The Pareto front of (objective, quality loss at the CI's worst end), best first."""
        measured = [r for r in [self.baseline, *self.candidates] if r.path is not None]
        points = [(self.objective_value(r), r.difference.worst_loss()) for r in measured]
        keep = [i for i, (cost, _) in enumerate(points) if cost is not None]
        front = pareto_front(
            [(points[i][0], points[i][1]) for i in keep], higher_quality_is_better=False
        )
        return [measured[keep[i]] for i in front]

    def ratios(self) -> dict[str, Any]:
        """The chosen model against the float baseline: ``size_x``, ``speed_x`` per batch."""
        if self.chosen is None:
            return {}
        return self.report.ratios(self.baseline.name)[self.chosen.name]

    def none_reason(self) -> str:
        """Why nothing was chosen: no candidate keeps quality, or none that does beats the float
        model on the objective ("" when a candidate was chosen)."""
        if self.chosen is not None:
            return ""
        if any(r.accepted and r.path for r in self.candidates):
            return (
                "no candidate that keeps quality is better than the float model on "
                f"{self.settings.objective}"
            )
        return (
            f"no candidate keeps {self.settings.metric} within {self.settings.max_loss} "
            f"(rule {self.settings.rule})"
        )

    def evaluate(self, data: Any, *, seed: int = 0) -> PairedDifference:
        """The chosen export (the baseline when none was chosen) against the float baseline on
        other labelled ``data``, paired: the search chose on its validation data, so confirm on
        a test split.

        Example:
            >>> result.evaluate((x_test, y_test))  # doctest: +SKIP
            PairedDifference(metric='auc', ..., delta=-0.0004, ...)
        """
        features, labels = load_variant(self.baseline.path).collect(data)
        if labels is None:
            raise ValueError("`data` has no labels; pass (x, y) or a dataset of (x, y).")
        outputs = [
            first_output(load_variant(path).predict(features, batch_size=1024))
            for path in (self.baseline.path, self.path)
        ]
        return paired_difference(self.settings.metric, labels, *outputs, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": None if self.chosen is None else self.chosen.name,
            "path": self.path,
            "settings": dataclasses.asdict(self.settings),
            "seconds": round(self.seconds, 1),
            "trained": self.trained,
            "stopped": self.stopped,
            "skipped": dict(self.skipped),
            "baseline": self.baseline.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "front": [c.name for c in self.front],
            "ratios": self.ratios(),
            "report": self.report.to_dict(),
        }

    def to_json(self) -> str:
        """The result as a JSON string."""
        return json.dumps(self.to_dict(), indent=2, default=str)

    def save_json(self, path: str | os.PathLike) -> str:
        """Write :meth:`to_json` to ``path`` atomically; returns the path."""
        atomic_write_text(Path(path), self.to_json())
        return str(path)

    def _rows(self) -> list[list[str]]:
        rows = []
        for r in [self.baseline, *self.candidates]:
            value = self.objective_value(r)
            verdict = "baseline" if r is self.baseline else ("keeps" if r.accepted else "loses")
            if r.stage == "failed":
                verdict = "failed"
            if self.chosen is not None and r is self.chosen:
                verdict = "**chosen**"
            rows.append(
                [
                    r.name,
                    "" if r.difference is None else f"{r.difference.variant:.4f}",
                    "" if r is self.baseline or r.difference is None else str(r.difference),
                    "" if r.bytes is None else f"{r.bytes:,}",
                    _objective_cell(self.settings.objective, value),
                    verdict + (" (cached)" if r.cached else ""),
                    r.note,
                ]
            )
        return rows

    def to_markdown(self) -> str:
        """The candidates as a Markdown table, with the rule and the chosen model's ratios."""
        s = self.settings
        metric = s.metric
        head = ["candidate", metric, f"Δ{metric} ± CI", "bytes", s.objective, "verdict", "note"]
        lines = [
            f"compress: max loss {s.max_loss} {metric} (rule {s.rule!r}: "
            + (
                "the 95% CI's worst end of Δ within the tolerance"
                if s.rule == "ci"
                else "the point estimate of Δ within the tolerance"
            )
            + f"), objective {s.objective}, runtime {s.runtime}",
            "",
            markdown_table(head, self._rows()),
        ]
        d = self.baseline.difference
        lines += [
            "",
            f"{d.n} validation examples"
            + ("" if d.n_positives is None else f", {d.n_positives} positives")
            + f"; Δ by {d.method}; {len(self.candidates)} candidates, {self.trained} fine-tuned, "
            f"{self.seconds:.0f} s" + (f"; stopped: {self.stopped}" if self.stopped else ""),
        ]
        lines += [f"not tried: {part}: {why}" for part, why in self.skipped.items()]
        if self.chosen is not None:
            rat = self.ratios()
            speed = ", ".join(
                f"{v:.2f}x at batch {b}" for b, v in sorted(rat.get("speed_x", {}).items()) if v
            )
            lines.append(
                f"chosen: {self.chosen.name}, {rat.get('size_x', 0):.2f}x smaller, faster {speed};"
                f" Δ{metric} {self.chosen.difference}"
            )
        else:
            lines.append(f"chosen: none; {self.none_reason()}: the float baseline is returned")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def _objective_cell(objective: str, value: float | None) -> str:
    """The objective column: bytes and FLOPs as integers, latency in ms."""
    if value is None:
        return ""
    if objective in ("size", "flops"):
        return f"{int(value):,}"
    return f"{value:.4g} ms"
