"""The benchmark report: one row per variant, ratios against a baseline, Markdown and JSON.

Example:
    >>> row = BenchmarkRow("m", "keras", None, "binary", {"auc": 0.7}, 100, 50, 10,
    ...                    {1: {"median": 1.0, "p90": 1.2}}, {1: 1000.0}, 3.0, 64)
    >>> report = BenchmarkReport((row,), baseline="m")
    >>> report.ratios()["m"]["size_x"]
    1.0
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfcompress._text import markdown_table, warn_to_json_path
from tfcompress.evaluation.statistics import PairedDifference
from tfcompress.export.manifest import atomic_write_text
from tfcompress.export.metrics import few_positives_note

__all__ = ["BenchmarkReport", "BenchmarkRow"]


@dataclass(frozen=True)
class BenchmarkRow:
    """The measurements of one variant.

    Attributes:
        name: the variant's name.
        format: ``"keras"``, ``"saved_model"`` or ``"tflite"``.
        path: file or directory, None for an in-memory Keras model.
        task: ``"binary"``, ``"multiclass"`` or ``"retrieval"``.
        quality: metric name -> value (None when undefined, e.g. AUC with one class).
        bytes: size on disk (a Keras model: its ``.keras`` file; a SavedModel: sum of files).
        gzip_bytes: gzip-compressed size.
        params: parameter count (Keras: ``count_params``; TFLite: elements of constant
            tensors; SavedModel: elements of saved variables); None when unknown.
        latency_ms: batch size -> ``{"median", "p90"}`` milliseconds per batch.
        throughput: batch size -> examples per second at the median latency.
        peak_memory_mb: peak RSS increase of a fresh process loading and running the variant
            (MiB; :mod:`tfcompress.evaluation.memory_probe`), None if not measured.
        examples: examples the quality was measured on.
        positives: positive examples among them (binary tasks), None for other tasks.
        deltas: metric -> :class:`~tfcompress.evaluation.statistics.PairedDifference` against
            the baseline on the same examples (DeLong for AUC, paired bootstrap otherwise);
            empty for the baseline itself and for reports written before it existed.
        profiles: batch size -> :meth:`~tfcompress.evaluation.profile.OpProfile.to_dict` of
            its per-op profile (``benchmark(..., profile=True)``), else empty.
        achieved: batch size -> ``{"flops", "dtype", "gflops", "share"}``: GEMM operations per
            batch, achieved G(FL)OP/s at the median latency and its share of the machine's peak
            for that dtype (``benchmark(..., peak=True)``), else empty.
    """

    name: str
    format: str
    path: str | None
    task: str
    quality: dict[str, float | None]
    bytes: int | None
    gzip_bytes: int | None
    params: int | None
    latency_ms: dict[int, dict[str, float]]
    throughput: dict[int, float]
    peak_memory_mb: float | None
    examples: int
    positives: int | None = None
    deltas: dict[str, PairedDifference] = field(default_factory=dict)
    profiles: dict[int, dict[str, Any]] = field(default_factory=dict)
    achieved: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("latency_ms", "throughput", "profiles", "achieved"):
            d[key] = {str(k): v for k, v in getattr(self, key).items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchmarkRow:
        d = dict(d)
        d["latency_ms"] = {int(k): dict(v) for k, v in d["latency_ms"].items()}
        d["throughput"] = {int(k): float(v) for k, v in d["throughput"].items()}
        d["deltas"] = {m: PairedDifference.from_dict(v) for m, v in d.get("deltas", {}).items()}
        d["profiles"] = {int(k): dict(v) for k, v in d.get("profiles", {}).items()}
        d["achieved"] = {int(k): dict(v) for k, v in d.get("achieved", {}).items()}
        return cls(**d)


@dataclass(frozen=True)
class BenchmarkReport:
    """Rows of one benchmark run, measured side by side in one process.

    Attributes:
        rows: one :class:`BenchmarkRow` per variant, in the order given.
        baseline: name of the row ratios are computed against (default: the first).
        settings: how it was measured (batch sizes, repeats, warm-up, threads, versions, ...).
    """

    rows: tuple[BenchmarkRow, ...]
    baseline: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("BenchmarkReport needs at least one row, received none.")
        object.__setattr__(self, "rows", tuple(self.rows))
        if self.baseline is None:
            object.__setattr__(self, "baseline", self.rows[0].name)
        self.row(self.baseline)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def row(self, name: str) -> BenchmarkRow:
        """The row of variant ``name``; ValueError listing the names when absent."""
        for r in self.rows:
            if r.name == name:
                return r
        raise ValueError(f"no variant {name!r} in the report; variants are {self.names}.")

    def ratios(self, baseline: str | None = None) -> dict[str, dict[str, Any]]:
        """Size, speed and quality of each variant relative to ``baseline``.

        Returns:
            ``name -> {"size_x": baseline bytes / bytes, "gzip_size_x": ...,
            "speed_x": {batch: baseline median latency / median latency},
            "quality_delta": {metric: variant - baseline}}``; None where a figure is missing.

        Example:
            >>> report.ratios("keras")["int8"]["size_x"]  # doctest: +SKIP
            3.9
        """
        base = self.row(baseline or self.baseline)
        out: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            speed = {}
            for b, lat in r.latency_ms.items():
                ref = base.latency_ms.get(b)
                speed[b] = ref["median"] / lat["median"] if ref and lat["median"] > 0 else None
            delta = {}
            for m, v in r.quality.items():
                ref = base.quality.get(m)
                delta[m] = None if v is None or ref is None else v - ref
            out[r.name] = {
                "size_x": _ratio(base.bytes, r.bytes),
                "gzip_size_x": _ratio(base.gzip_bytes, r.gzip_bytes),
                "speed_x": speed,
                "quality_delta": delta,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (rows, baseline, settings and ratios)."""
        return {
            "baseline": self.baseline,
            "settings": self.settings,
            "rows": [r.to_dict() for r in self.rows],
            "ratios": {
                k: {**v, "speed_x": {str(b): s for b, s in v["speed_x"].items()}}
                for k, v in self.ratios().items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkReport:
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(
            tuple(BenchmarkRow.from_dict(r) for r in data["rows"]),
            data.get("baseline"),
            dict(data.get("settings", {})),
        )

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as a JSON string (:meth:`to_dict`, indented).

        Args:
            path: deprecated: write the file instead, as :meth:`save_json` does (warns).

        Example:
            >>> json.loads(report.to_json())["baseline"]  # doctest: +SKIP
            'm'
        """
        if path is not None:
            warn_to_json_path(type(self).__name__)
            return self.save_json(path)
        return json.dumps(self.to_dict(), indent=2)

    def save_json(self, path: str | os.PathLike) -> str:
        """Write :meth:`to_json` to ``path`` (ending in ``.json``) atomically; return the path.

        Example:
            >>> report.save_json("savedmodels/bench.json")  # doctest: +SKIP
            'savedmodels/bench.json'
        """
        p = Path(path)
        if p.suffix != ".json":
            raise ValueError(f"`path` must end in '.json', received {str(path)!r}.")
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, self.to_json())
        return str(p)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BenchmarkReport:
        """Read a report written by :meth:`save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def notes(self) -> list[str]:
        """Warnings that belong under the tables: too few positives (or negatives) to compare.

        Example:
            >>> report.notes()  # doctest: +SKIP
            ["only 37 positives among 200 examples: quality differences are noise (...)"]
        """
        notes = []
        for r in self.rows:
            note = few_positives_note(r.examples, r.positives)
            if note and note not in notes:
                notes.append(note)
        return notes

    def _table(self) -> tuple[list[str], list[list[str]]]:
        """Header and cells, shared by the Markdown and the text table."""
        metrics: list[str] = []
        for r in self.rows:
            metrics += [m for m in r.quality if m not in metrics]
        batches = sorted({b for r in self.rows for b in r.latency_ms})
        ratios = self.ratios()
        primary = metrics[0] if metrics else None
        memory = any(r.peak_memory_mb is not None for r in self.rows)
        head = ["variant", "format", *metrics, "n", "positives", "bytes", "gzip bytes", "params"]
        for b in batches:
            head += [f"b{b} median ms", f"b{b} p90 ms"]
        head += (["peak MB"] if memory else []) + ["size x"] + [f"speed x b{b}" for b in batches]
        peak = any(r.achieved for r in self.rows)
        if peak:
            head += [h for b in batches for h in (f"b{b} GFLOP/s", f"b{b} % peak")]
        paired = [m for m in metrics if any(m in r.deltas for r in self.rows)]
        if paired:  # Δ ± CI of every metric with a paired interval
            head += [f"Δ {m} ± CI" for m in paired]
        elif primary:
            head.append(f"Δ {primary}")
        body = []
        for r in self.rows:
            rat = ratios[r.name]
            cells = [r.name + (" (baseline)" if r.name == self.baseline else ""), r.format]
            cells += [_fmt(r.quality.get(m), 4) for m in metrics]
            cells += [_fmt(r.examples), _fmt(r.positives)]
            cells += [_fmt(r.bytes), _fmt(r.gzip_bytes), _fmt(r.params)]
            for b in batches:
                lat = r.latency_ms.get(b, {})
                cells += [_fmt(lat.get("median"), 3), _fmt(lat.get("p90"), 3)]
            cells += ([_fmt(r.peak_memory_mb, 1)] if memory else []) + [_fmt(rat["size_x"], 2)]
            cells += [_fmt(rat["speed_x"].get(b), 2) for b in batches]
            if peak:
                for b in batches:
                    a = r.achieved.get(b, {})
                    share = a.get("share")
                    cells += [
                        _fmt(a.get("gflops"), 2),
                        _fmt(None if share is None else 100 * share, 1),
                    ]
            if paired:
                cells += [str(r.deltas[m]) if m in r.deltas else "—" for m in paired]
            elif primary:
                d = rat["quality_delta"].get(primary)
                cells.append("—" if d is None else f"{d:+.4f}")
            body.append(cells)
        return head, body

    def _footer(self) -> list[str]:
        lines = []
        threads = self.settings.get("num_threads")
        if threads is not None:
            timing = self.settings.get("timing", "call")
            what = (
                ".tflite: invoke() with the inputs set, as a native server runs it"
                if timing == "invoke"
                else "the Python call, inputs and outputs copied"
            )
            lines.append(f"threads: {threads}; latency per batch in ms (median / p90); {what}.")
            pool = (self.settings.get("tf_threads") or {}).get("intra_op")
            in_tf = any(r.format != "tflite" for r in self.rows)
            if pool is not None and pool != threads and in_tf:
                lines.append(
                    f"Keras/SavedModel variants ran on TensorFlow's pool of "
                    f"{pool or 'all'} intra-op thread(s): it was fixed before the "
                    "benchmark (set tf.config.threading before TensorFlow runs for "
                    "equal threads)."
                )
        lines.append("quality: exact AUC/logloss/accuracy on the n examples (positives: label 1).")
        lines += _paired_footer([d for r in self.rows for d in r.deltas.values()], self.baseline)
        if any(r.peak_memory_mb is not None for r in self.rows):
            lines.append(
                "peak MB: peak RSS increase of a fresh process loading and running the variant."
            )
        peak = self.settings.get("peak")
        if peak and any(r.achieved for r in self.rows):
            lines.append(
                "GFLOP/s: GEMM operations (FULLY_CONNECTED/BATCH_MATMUL, Keras MatMul/Einsum/Conv, "
                "the SavedModel serving graph's MatMul/Einsum/Conv) per batch over the median "
                "latency; % peak: of this machine's GEMM peak for the variant's dtype, "
                + ", ".join(f"{d} {v['gflops']:.1f} G(FL)OP/s" for d, v in peak.items())
                + f" (one-op {'x'.join(map(str, next(iter(peak.values()))['shape']))} "
                "FULLY_CONNECTED on LiteRT/XNNPACK, same threads)."
            )
        cpu = self.settings.get("cpu")
        if cpu:  # int8 speed-ups depend on the CPU's int8 instructions more than on anything
            isa = cpu.get("int8_isa")
            lines.append(
                f"CPU: {cpu.get('model')} ({cpu.get('arch')}, {cpu.get('cores')} cores); int8 "
                "features: " + ("unknown" if isa is None else ", ".join(isa) or "none") + "."
            )
        lines += [f"warning: {note}." for note in self.notes()]
        return lines

    def profile_markdown(self) -> str:
        """The per-op tables of ``benchmark(..., profile=True)`` (empty string without them).

        Example:
            >>> print(report.profile_markdown())  # doctest: +SKIP
        """
        from tfcompress.evaluation.profile import OpProfile

        parts = []
        for r in self.rows:
            for b in sorted(r.profiles):
                parts += [OpProfile.from_dict(r.profiles[b]).to_markdown(), ""]
        return "\n".join(["## Per-op profiles", "", *parts]).rstrip() if parts else ""

    def to_markdown(self) -> str:
        """A Markdown table: one row per variant, with ratios against the baseline, and notes.

        Example:
            >>> print(report.to_markdown())  # doctest: +SKIP
        """
        text = "\n".join([markdown_table(*self._table()), "", *self._footer()])
        profiles = self.profile_markdown()
        return f"{text}\n\n{profiles}" if profiles else text

    def to_text(self) -> str:
        """The same table as :meth:`to_markdown`, as aligned plain text (for a terminal or log).

        Example:
            >>> print(report.to_text())  # doctest: +SKIP
        """
        head, body = self._table()
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        for cells in body:
            lines.append(
                "  ".join(
                    c.ljust(w) if i < 2 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                ).rstrip()
            )
        return "\n".join([*lines, "", *self._footer()])

    def __str__(self) -> str:
        return self.to_text()


def _paired_footer(deltas: list[PairedDifference], baseline: str | None) -> list[str]:
    """One line: what the Δ ± CI columns are (level, examples, positives, method per metric)."""
    if not deltas:
        return []
    methods: dict[str, list[str]] = {}
    for d in deltas:
        label = "DeLong's test" if d.method == "delong" else d.method
        if d.metric not in methods.setdefault(label, []):
            methods[label].append(d.metric)
    first = deltas[0]
    pos = f", {first.n_positives:,} positives" if first.n_positives is not None else ""
    how = "; ".join(f"{', '.join(ms)} by {label}" for label, ms in methods.items())
    return [
        f"Δ ± CI: variant − {baseline} with the half-width of its {first.level:.0%} paired "
        f"confidence interval on the same {first.n:,} examples{pos}: {how}."
    ]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}"
