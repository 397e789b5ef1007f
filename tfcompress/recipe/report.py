"""The report of a recipe run (:class:`RunReport`, :class:`StageResult`): stages, benchmark,
trade-off plot; written as ``report.json`` / ``report.md`` and read back by :func:`load_report`.

Example:
    >>> stage = StageResult("prune", "prune", cached=False, seconds=12.5,
    ...                     quality={"auc": 0.71}, params=1000, sparsity=0.7, path="m.keras",
    ...                     n_examples=6000, n_positives=1200)
    >>> print(RunReport("demo", "savedmodels/demo", (stage,)).to_markdown().splitlines()[4])
    | prune | prune | no | 12.5 | 1,000 | 0.700 | 0.7100 | 6,000 | 1,200 |
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfcompress._text import markdown_table, warn_to_json_path
from tfcompress.evaluation.report import BenchmarkReport
from tfcompress.evaluation.statistics import PairedDifference
from tfcompress.export.manifest import atomic_write_text

__all__ = ["RunReport", "StageResult", "load_report", "render_report"]

REPORT_FILE = "report.json"
MARKDOWN_FILE = "report.md"
PLOT_FILE = "tradeoff.png"


@dataclass(frozen=True)
class StageResult:
    """What one stage of a run produced.

    Attributes:
        name: the stage's name in the recipe (``"teacher"``/``"model"`` for the input model).
        kind: ``"model"``, ``"distill"``, ``"prune"``, ``"shrink"`` or ``"quantize"``.
        cached: True when this run reused the stage's output from an earlier run.
        seconds: how long the stage took when it ran (also when reused: the original time).
        quality: the Keras model's exact test metrics after the stage (``auc``, ``logloss``,
            ``accuracy``: the definitions of :mod:`tfcompress.export.metrics`, on the whole test
            split).
        params: the model's parameter count.
        sparsity: share of exact zeros in its weight matrices and tables.
        path: the stage's saved model (``.keras``), relative to the run directory.
        resumed_from_epoch: the epoch an interrupted fit of this stage resumed at, else None.
        extra: other models the stage saved (e.g. ``{"distill_alone": "01_distill/alone.keras"}``).
        n_examples: test examples ``quality`` was measured on (None: not recorded).
        n_positives: positive examples among them (binary tasks; else None).
    """

    name: str
    kind: str
    cached: bool
    seconds: float
    quality: dict[str, float]
    params: int
    sparsity: float
    path: str
    resumed_from_epoch: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    n_examples: int | None = None
    n_positives: int | None = None
    auto: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageResult:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RunReport:
    """The outcome of :func:`tfcompress.run`.

    Attributes:
        name: the recipe's (run's) name.
        run_dir: where the run's artifacts are.
        stages: one :class:`StageResult` per stage, the input model first.
        benchmark: the side-by-side measurement of the exported variants (None if disabled).
        exports: variant name -> exported file/directory, relative to ``run_dir``.
        plot: the trade-off PNG, relative to ``run_dir`` (None when not drawn).
        logdir: the TensorBoard log directory.
        seconds: wall time of this run.
        recipe: the recipe's configuration.
        parity: variant -> its export's parity figures (``max_abs_diff``, ``metric``,
            ``quality_delta`` against the Keras model, ``examples``, ``drift_flag``: None or why
            the export drifted beyond the tolerance).
        warnings: what the run found suspicious (a leak after the first stage, too few
            positives for the AUC differences to mean anything), also in ``report.md``.
        benchmark_positives: positives among the examples the benchmark measured quality on.
    """

    name: str
    run_dir: str
    stages: tuple[StageResult, ...] = ()
    benchmark: BenchmarkReport | None = None
    exports: dict[str, str] = field(default_factory=dict)
    plot: str | None = None
    logdir: str | None = None
    seconds: float = 0.0
    recipe: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    benchmark_positives: int | None = None

    def stage(self, name: str) -> StageResult:
        """The result of stage ``name``; ValueError listing the stages when absent."""
        for s in self.stages:
            if s.name == name:
                return s
        raise ValueError(
            f"no stage {name!r} in run {self.name!r}; stages: {[s.name for s in self.stages]}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": self.run_dir,
            "stages": [s.to_dict() for s in self.stages],
            "benchmark": None if self.benchmark is None else self.benchmark.to_dict(),
            "exports": dict(self.exports),
            "plot": self.plot,
            "logdir": self.logdir,
            "seconds": self.seconds,
            "recipe": self.recipe,
            "parity": {k: dict(v) for k, v in self.parity.items()},
            "drifted": self.drifted(),
            "warnings": list(self.warnings),
            "benchmark_positives": self.benchmark_positives,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        bench = data.get("benchmark")
        return cls(
            name=data["name"],
            run_dir=data["run_dir"],
            stages=tuple(StageResult.from_dict(s) for s in data.get("stages", [])),
            benchmark=None if bench is None else BenchmarkReport.from_dict(bench),
            exports=dict(data.get("exports", {})),
            plot=data.get("plot"),
            logdir=data.get("logdir"),
            seconds=float(data.get("seconds", 0.0)),
            recipe=dict(data.get("recipe", {})),
            parity={k: dict(v) for k, v in (data.get("parity") or {}).items()},
            warnings=tuple(data.get("warnings") or ()),
            benchmark_positives=data.get("benchmark_positives"),
        )

    def drifted(self) -> dict[str, str]:
        """Variant -> its export's drift flag, for the exports that drifted beyond tolerance.

        Example:
            >>> RunReport("x", ".", parity={"m_int8": {"drift_flag": "ΔAUC -0.16"}}).drifted()
            {'m_int8': 'ΔAUC -0.16'}
        """
        return {n: p["drift_flag"] for n, p in self.parity.items() if p.get("drift_flag")}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as a JSON string (:meth:`to_dict`, indented).

        Args:
            path: deprecated: write the file instead, as :meth:`save_json` does (warns).

        Example:
            >>> json.loads(RunReport("x", ".").to_json())["name"]
            'x'
        """
        if path is not None:
            warn_to_json_path(type(self).__name__)
            return self.save_json(path)
        return json.dumps(self.to_dict(), indent=2)

    def save_json(self, path: str | os.PathLike) -> str:
        """Write :meth:`to_json` to ``path`` (ending in ``.json``) atomically; return the path.

        Example:
            >>> RunReport("x", ".").save_json("savedmodels/x/report.json")  # doctest: +SKIP
            'savedmodels/x/report.json'
        """
        p = Path(path)
        if p.suffix != ".json":
            raise ValueError(f"`path` must end in '.json', received {str(path)!r}.")
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, self.to_json())
        return str(p)

    def to_markdown(self) -> str:
        """The stage table, the exports' parity (drift marked ⚠), the benchmark table and the
        warnings; every quality figure with the examples and positives it rests on."""
        lines = [f"# Run `{self.name}`", ""]
        metrics: list[str] = []
        for s in self.stages:
            metrics += [m for m in s.quality if m not in metrics]
        head = [
            "stage",
            "kind",
            "cached",
            "seconds",
            "params",
            "sparsity",
            *metrics,
            "n examples",
            "n positives",
        ]
        rows = []
        for s in self.stages:
            cached = (
                "yes"
                if s.cached
                else (
                    "no"
                    if s.resumed_from_epoch is None
                    else f"resumed at epoch {s.resumed_from_epoch}"
                )
            )
            cells = [
                s.name,
                s.kind,
                cached,
                f"{s.seconds:.1f}",
                f"{s.params:,}",
                f"{s.sparsity:.3f}",
            ]
            cells += ["—" if s.quality.get(m) is None else f"{s.quality[m]:.4f}" for m in metrics]
            cells += [_count(s.n_examples), _count(s.n_positives)]
            rows.append(cells)
        lines += [markdown_table(head, rows), ""]
        lines.append(
            "Quality of each stage's Keras model on the whole test split, with the exact "
            "metrics the export and benchmark tables use."
        )
        lines += self._parity_markdown()
        if self.benchmark is not None:
            lines += ["", f"## Exported variants (ratios against `{self.benchmark.baseline}`)", ""]
            lines.append(self.benchmark.to_markdown())
            examples = self.benchmark.rows[0].examples
            split = {s.n_examples for s in self.stages} - {None}
            where = (
                "the whole test split"
                if split == {examples}
                else f"the first {examples:,} test examples"
            )
            lines += [
                "",
                f"Quality of the exported variants on {where}"
                + (
                    ""
                    if self.benchmark_positives is None
                    else f" ({examples:,} examples, {self.benchmark_positives:,} positives)"
                )
                + ".",
            ]
            drifted = [n for n in self.benchmark.names if n in self.drifted()]
            if drifted:
                lines.append(f"⚠ drift: {', '.join(drifted)} (see the exports above).")
        if self.plot:
            lines += ["", f"Trade-off plot: `{self.plot}`"]
        if self.warnings:
            lines += ["", "## Warnings", ""] + [f"- {w}" for w in self.warnings]
        for s in self.stages:  # last: an auto stage's search, its chosen export and test Δ
            if s.auto:
                lines += ["", f"## Accuracy-aware compression (`{s.name}`)", "", s.auto["table"]]
                lines += ["", auto_summary(s.name, s.auto)]
        return "\n".join(lines)

    def _parity_markdown(self) -> list[str]:
        if not self.parity:
            return []
        lines = [
            "",
            "## Exports (parity with the Keras model)",
            "",
        ]
        rows = []
        notes: list[str] = []
        for name, p in self.parity.items():
            delta = p.get("quality_delta")
            shown = "—" if delta is None else f"{p.get('metric') or 'quality'} {delta:+.4f}"
            diff = p.get("max_abs_diff")
            note = ""
            if p.get("drift_flag"):
                notes.append(f"[{len(notes) + 1}] `{name}`: {p['drift_flag']}")
                note = f"⚠ drift [{len(notes)}]"
            diff = "—" if diff is None else f"{diff:.2e}"
            rows.append([name, diff, shown, _count(p.get("examples")), note])
        head = ["variant", "parity max abs diff", "Δ quality", "n examples", "note"]
        lines += [
            markdown_table(head, rows),
            "",
            "Δ quality: the export's exact quality minus its Keras model's, on the same "
            "test examples.",
        ]
        if notes:
            lines += [""] + notes
        return lines


def auto_summary(name: str, auto: dict[str, Any]) -> str:
    """One line: an auto stage's chosen export, its ratios and its test Δ ± CI.

    Example:
        >>> auto_summary("auto", {"chosen": None, "metric": "auc", "max_loss": 0.002})
        'auto: no candidate keeps auc within 0.002; the float export is kept'
    """
    metric, chosen = auto["metric"], auto.get("chosen")
    if chosen is None and auto.get("kept"):
        return (
            f"{name}: {auto['kept']} candidate(s) keep {metric} within {auto['max_loss']} but "
            f"none beats the float export on {auto.get('objective', 'the objective')}; the "
            "float export is kept"
        )
    if chosen is None:
        return (
            f"{name}: no candidate keeps {metric} within {auto['max_loss']}; the float export "
            "is kept"
        )
    ratios = auto.get("ratios") or {}
    speed_x = {int(b): v for b, v in (ratios.get("speed_x") or {}).items()}
    speed = ", ".join(f"{v:.2f}x at batch {b}" for b, v in sorted(speed_x.items()) if v)
    test = PairedDifference.from_dict(auto["test"])
    where = f"{test.n:,} test examples" + (
        f", {test.n_positives:,} positives" if test.n_positives is not None else ""
    )
    verdict = "within" if auto.get("keeps_quality_on_test") else "NOT within"
    return (
        f"{name}: {chosen} ({auto['path']}), {ratios.get('size_x') or 0:.2f}x smaller, faster "
        f"{speed or '—'} than its float export; Δ{metric} {test} on {where} ({verdict} the "
        f"tolerance {auto['max_loss']})"
    )


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def load_report(run_dir: str | os.PathLike) -> RunReport:
    """Read the ``report.json`` of a finished run.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``report.json`` (the run did not finish).

    Example:
        >>> report = load_report("savedmodels/demo")  # doctest: +SKIP
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"`run_dir` must be a path, received {type(run_dir).__name__}.")
    path = Path(run_dir) / REPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: {str(run_dir)!r} is not the directory of a finished "
            "run (run the recipe with `tfcompress run RECIPE` first)."
        )
    try:
        return RunReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a tfcompress run report ({e}).") from e


def render_report(
    report: RunReport,
    run_dir: str | os.PathLike | None = None,
    *,
    metric: str | None = None,
    batch_size: int | None = None,
) -> RunReport:
    """Write ``report.md``, ``tradeoff.png`` (when there is a benchmark) and ``report.json``.

    Args:
        report: the run's report.
        run_dir: where to write (default ``report.run_dir``).
        metric: the quality metric of the plot (default: AUC, else accuracy, ...).
        batch_size: the latency panel's batch size (default: the largest measured).

    Returns:
        The report with ``plot`` set.

    Example:
        >>> render_report(load_report("savedmodels/demo"))  # doctest: +SKIP
    """
    if not isinstance(report, RunReport):
        raise TypeError(f"`report` must be a RunReport, received {type(report).__name__}.")
    directory = Path(run_dir if run_dir is not None else report.run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    plot = None
    if report.benchmark is not None:
        from tfcompress.evaluation.tradeoff import plot_tradeoff

        plot_tradeoff(
            report.benchmark,
            directory / PLOT_FILE,
            metric=metric,
            batch_size=batch_size,
            title=f"tfcompress run {report.name!r}",
        )
        plot = PLOT_FILE
    report = dataclasses.replace(report, plot=plot)
    atomic_write_text(directory / MARKDOWN_FILE, report.to_markdown() + "\n")
    report.save_json(directory / REPORT_FILE)
    return report
