"""How the trade-off plot is drawn (for :mod:`.tradeoff`): the two log-scale panels, their
ticks, markers and legend, and the PNG written atomically; ``matplotlib`` without ``pyplot``.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from tfcompress.evaluation.report import BenchmarkRow
from tfcompress.export.manifest import default_file_mode

#: ``(row, cost, quality)`` of each point of one panel.
Points = list[tuple[BenchmarkRow, float, float]]

_FORMAT_MARKERS = {"keras": "o", "saved_model": "s", "tflite": "D"}
_FRONT_COLOR = "tab:orange"
_OTHER_COLOR = "tab:gray"


def _fmt_bytes(value: float, _pos: Any = None) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:g} {unit}"
    return f"{value:g} B"


def _fmt_ms(value: float, _pos: Any = None) -> str:
    return f"{value / 1e3:g} s" if value >= 1e3 else f"{value:g} ms"


# Mantissas of the tick candidates on a log axis, coarsest first.
_TICK_MANTISSAS = (
    (1.0,),
    (1.0, 2.0, 5.0),
    (1.0, 2.0, 3.0, 5.0),
    tuple(float(k) for k in range(1, 10)),
    tuple(k / 2 for k in range(2, 20)),
    tuple(k / 5 for k in range(5, 50)),
    tuple(k / 10 for k in range(10, 100)),
)


def _roundness(mantissa: float) -> tuple[bool, ...]:
    """Sort key: 1 first, then 2 and 5, integers, halves, fifths, the rest."""
    return (
        mantissa != 1.0,
        mantissa not in (2.0, 5.0),
        mantissa != round(mantissa),
        mantissa * 2 != round(mantissa * 2),
        mantissa * 5 != round(mantissa * 5),
    )


def _log_ticks(ax: Any, formatter: Any) -> None:
    """Readable major ticks on a log x axis; no minor labels.

    Takes the coarsest mantissa set of :data:`_TICK_MANTISSAS` that yields >= 3 ticks once
    ticks closer than 15% of the axis' log span are thinned out (roundest values kept first);
    on a very narrow axis, three ticks rounded to the fewest digits that keep them distinct.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = sorted(ax.get_xlim())
    min_gap = 0.15 * (math.log10(hi) - math.log10(lo))
    kept: list[float] = []
    for mantissas in _TICK_MANTISSAS:
        candidates = sorted(
            (
                (m, float(f"{m * 10.0**e:.12g}"))
                for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                for m in mantissas
            ),
            key=lambda mt: _roundness(mt[0]),
        )
        kept = []
        for _, t in candidates:
            if lo <= t <= hi and all(abs(math.log10(t) - math.log10(k)) >= min_gap for k in kept):
                kept.append(t)
        if len(kept) >= 3:
            break
    else:
        spots = [lo * (hi / lo) ** f for f in (0.2, 0.5, 0.8)]
        for digits in range(2, 8):
            kept = [float(f"{t:.{digits}g}") for t in spots]
            if len(set(kept)) == 3:
                break
    ax.xaxis.set_major_locator(FixedLocator(sorted(kept)))
    ax.xaxis.set_major_formatter(FuncFormatter(formatter))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)


def _legend(ax: Any, formats: list[str], has_baseline: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            marker=_FORMAT_MARKERS.get(f, "^"),
            linestyle="none",
            markersize=8,
            markerfacecolor="white",
            markeredgecolor="black",
            label=f,
        )
        for f in formats
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="-",
            color=_FRONT_COLOR,
            markeredgecolor="black",
            label="Pareto front",
        ),
        Line2D([], [], marker="o", linestyle="none", color=_OTHER_COLOR, label="dominated"),
    ]
    if has_baseline:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                markersize=13,
                markerfacecolor="none",
                markeredgecolor="tab:red",
                markeredgewidth=1.8,
                label="baseline",
            )
        )
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.85)


def _draw_panel(
    ax: Any,
    points: list[tuple[BenchmarkRow, float, float]],
    front: list[int],
    *,
    baseline: str,
    higher: bool,
    xlabel: str,
    ylabel: str,
    empty_note: str,
    formatter: Any,
) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if not points:
        ax.text(
            0.5,
            0.5,
            empty_note,
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.4",
            wrap=True,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.25)
    on_front = set(front)
    formats: list[str] = []
    for i, (row, cost, q) in enumerate(points):
        if row.format not in formats:
            formats.append(row.format)
        ax.scatter(
            [cost],
            [q],
            marker=_FORMAT_MARKERS.get(row.format, "^"),
            s=70,
            zorder=3,
            color=_FRONT_COLOR if i in on_front else _OTHER_COLOR,
            edgecolors="black" if i in on_front else "none",
            linewidths=0.8,
        )
        if row.name == baseline:
            ax.scatter(
                [cost],
                [q],
                marker="o",
                s=320,
                facecolors="none",
                edgecolors="tab:red",
                linewidths=1.8,
                zorder=4,
            )
        ax.annotate(
            row.name,
            (cost, q),
            xytext=(10, 7 if i % 2 == 0 else -13),
            textcoords="offset points",
            fontsize=8,
            zorder=5,
        )
    xs = [points[i][1] for i in front]
    ys = [points[i][2] for i in front]
    ax.step(xs, ys, where="post", color=_FRONT_COLOR, linewidth=1.5, zorder=2)
    ax.margins(x=0.15, y=0.12)
    _log_ticks(ax, formatter)
    if not higher:
        ax.invert_yaxis()  # better is always up
    _legend(ax, formats, any(r.name == baseline for r, _, _ in points))


def write_plot(
    out_path: Path,
    *,
    metric: str,
    batch_size: int | None,
    baseline: str,
    higher: bool,
    title: str | None,
    size_pts: Points,
    size_front: list[int],
    lat_pts: Points,
    lat_front: list[int],
) -> None:
    """Draw both panels and write the PNG to ``out_path`` atomically (temp file + rename)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax_size, ax_lat = fig.subplots(1, 2)
    direction = "higher is better" if higher else "lower is better, axis inverted"
    ylabel = f"{metric} ({direction})"
    common = {"baseline": baseline, "higher": higher, "ylabel": ylabel}
    _draw_panel(
        ax_size,
        size_pts,
        size_front,
        xlabel="size on disk (log scale)",
        empty_note="no variant has both a size and a value for this metric",
        formatter=_fmt_bytes,
        **common,
    )
    ax_size.set_title(f"{metric} vs size")
    lat_label = (
        f"median latency per batch of {batch_size} (log scale)"
        if batch_size is not None
        else "latency (not measured)"
    )
    _draw_panel(
        ax_lat,
        lat_pts,
        lat_front,
        xlabel=lat_label,
        empty_note="no variant has a latency at this batch size and a value for this metric",
        formatter=_fmt_ms,
        **common,
    )
    ax_lat.set_title(f"{metric} vs latency" + (f" (batch {batch_size})" if batch_size else ""))
    fig.suptitle(
        title
        if title is not None
        else f"Trade-off: {metric} vs size and latency (baseline: {baseline})"
    )

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.chmod(tmp, default_file_mode())  # mkstemp's 0600 -> the user's umask
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
