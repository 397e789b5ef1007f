"""Tests of tfcompress.evaluation.tradeoff: Pareto front, default metric, the trade-off PNG."""

from __future__ import annotations

import math
import os
import struct
import sys

import pytest

from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow
from tfcompress.evaluation.tradeoff import (
    metric_higher_is_better,
    pareto_front,
    plot_tradeoff,
    primary_metric,
)


def _row(name, fmt="keras", *, quality=None, size=1000, latency=None):
    latency = {1: 1.0, 256: 10.0} if latency is None else latency
    return BenchmarkRow(
        name=name,
        format=fmt,
        path=None,
        task="binary",
        quality={"auc": 0.7, "logloss": 0.5} if quality is None else quality,
        bytes=size,
        gzip_bytes=None if size is None else size // 2,
        params=None,
        latency_ms={b: {"median": m, "p90": m * 1.2} for b, m in latency.items()},
        throughput={b: b / (m / 1e3) if m > 0 else math.inf for b, m in latency.items()},
        peak_memory_mb=None,
        examples=500,
    )


def _five_variants() -> BenchmarkReport:
    """teacher (big, best), student, int8 (small, fast), pruned (dominated), xla (no b256)."""
    rows = (
        _row(
            "teacher",
            size=4_000_000,
            latency={1: 2.0, 256: 40.0},
            quality={"auc": 0.80, "logloss": 0.40},
        ),
        _row(
            "student",
            size=800_000,
            latency={1: 1.0, 256: 12.0},
            quality={"auc": 0.78, "logloss": 0.42},
        ),
        _row(
            "int8",
            "tflite",
            size=200_000,
            latency={1: 0.5, 256: 6.0},
            quality={"auc": 0.76, "logloss": 0.45},
        ),
        # worse than student in bytes AND latency AND quality: dominated in both panels
        _row(
            "pruned",
            size=900_000,
            latency={1: 1.5, 256: 15.0},
            quality={"auc": 0.75, "logloss": 0.47},
        ),
        # fastest at batch 256 would not matter: it has no batch-256 latency at all
        _row(
            "xla",
            "saved_model",
            size=3_000_000,
            latency={1: 0.8},
            quality={"auc": 0.79, "logloss": 0.41},
        ),
    )
    return BenchmarkReport(rows, baseline="teacher", settings={"batch_sizes": [1, 256]})


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------- pareto_front


def test_pareto_front_excludes_dominated_and_sorts_by_cost():
    points = [(300, 0.80), (100, 0.70), (200, 0.69), (150, 0.75), (400, 0.79)]
    # (200, 0.69) is beaten by (100, 0.70); (400, 0.79) by (300, 0.80)
    assert pareto_front(points) == [1, 3, 0]


def test_pareto_front_ties_identical_points_both_kept():
    points = [(10, 0.5), (10, 0.5), (20, 0.6)]
    assert pareto_front(points) == [0, 1, 2]
    # same cost, worse quality -> dominated; same quality, more cost -> dominated
    assert pareto_front([(10, 0.5), (10, 0.4), (12, 0.5)]) == [0]


def test_pareto_front_single_and_empty():
    assert pareto_front([(5.0, 0.1)]) == [0]
    assert pareto_front([]) == []


def test_pareto_front_lower_is_better_flips_direction():
    points = [(1, 0.30), (2, 0.25), (3, 0.28), (4, 0.20)]
    assert pareto_front(points, higher_quality_is_better=False) == [0, 1, 3]
    # higher-is-better on the same points: 0.30 at cost 1 dominates everything else
    assert pareto_front(points) == [0]


def test_pareto_front_accepts_numpy_and_infinite_cost():
    np = pytest.importorskip("numpy")
    pts = [(np.float32(2.0), np.float64(0.9)), (np.int64(1), 0.8), (math.inf, 0.95)]
    assert pareto_front(pts) == [1, 0, 2]


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([(1, 0.5), (2, float("nan"))], r"points\[1\] quality is NaN"),
        ([(float("nan"), 0.5)], r"points\[0\] cost is NaN"),
        ([(1, 0.5), (None, 0.6)], r"points\[1\] cost must be a real number, received None"),
        ([(1, 0.5), (2, "high")], r"points\[1\] quality must be a real number"),
        ([(1, 0.5), (1, 2, 3)], r"points\[1\] must be a \(cost, quality\) pair"),
        ([(1, 0.5), 7], r"points\[1\] must be a \(cost, quality\) pair, received 7"),
        ([(1,)], r"points\[0\] must be a \(cost, quality\) pair"),
    ],
)
def test_pareto_front_bad_points_name_the_index(points, match):
    with pytest.raises(ValueError, match=match):
        pareto_front(points)


def test_pareto_front_bad_container_and_flag():
    with pytest.raises(TypeError, match="`points` must be a sequence"):
        pareto_front({(1, 2)})
    with pytest.raises(TypeError, match="`higher_quality_is_better` must be a bool"):
        pareto_front([(1, 2)], higher_quality_is_better="yes")


def test_metric_direction():
    assert [
        metric_higher_is_better(m) for m in ("auc", "accuracy", "recall@10", "top5_accuracy")
    ] == [True] * 4
    assert [
        metric_higher_is_better(m)
        for m in ("logloss", "loss", "mse", "val_loss", "binary_crossentropy")
    ] == [False] * 5
    with pytest.raises(TypeError, match="`metric` must be a non-empty metric name"):
        metric_higher_is_better("")


# ---------------------------------------------------------------- primary_metric


def test_primary_metric_prefers_auc_then_accuracy_then_complete_metric():
    assert primary_metric(_five_variants()) == "auc"
    acc = BenchmarkReport(
        (
            _row("a", quality={"top5_accuracy": 0.9, "accuracy": 0.6}),
            _row("b", quality={"top5_accuracy": 0.8, "accuracy": 0.5}),
        )
    )
    assert primary_metric(acc) == "accuracy"
    # no auc/accuracy: the first metric with a value in EVERY row (recall@10 is missing in b)
    rec = BenchmarkReport(
        (
            _row("a", quality={"recall@10": 0.3, "recall@50": 0.6}),
            _row("b", quality={"recall@10": None, "recall@50": 0.5}),
        )
    )
    assert primary_metric(rec) == "recall@50"


def test_primary_metric_none_raises():
    rep = BenchmarkReport((_row("a", quality={"auc": None}), _row("b", quality={})))
    with pytest.raises(ValueError, match=r"no metric to plot.*metrics: \['auc'\]"):
        primary_metric(rep)
    with pytest.raises(TypeError, match="`report` must be a tfcompress BenchmarkReport"):
        primary_metric({"rows": []})


# ---------------------------------------------------------------- plot_tradeoff


def test_plot_tradeoff_writes_png_and_reports_fronts(tmp_path):
    import matplotlib

    backend_before = matplotlib.get_backend()
    pyplot_before = "matplotlib.pyplot" in sys.modules
    out = tmp_path / "sub" / "tradeoff.png"
    info = plot_tradeoff(_five_variants(), out)

    data = out.read_bytes()
    width, height = _png_size(data)
    assert 800 <= width <= 3000 and 300 <= height <= 2000, (width, height)
    assert width > height
    assert len(data) > 10_000
    assert info["path"] == str(out)
    assert info["metric"] == "auc"
    assert info["batch_size"] == 256  # the largest measured
    assert info["higher_is_better"] is True
    assert info["pareto_bytes"] == ["int8", "student", "xla", "teacher"]
    assert info["pareto_latency"] == ["int8", "student", "teacher"]
    assert set(info["omitted"]) == {"xla"}
    assert "latency at batch size 256" in info["omitted"]["xla"]
    assert [p.name for p in out.parent.iterdir()] == ["tradeoff.png"]  # no temp file left
    # pyplot was not touched and the global backend is unchanged
    assert matplotlib.get_backend() == backend_before
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_before


def test_plot_tradeoff_batch_size_metric_and_lower_is_better(tmp_path):
    info = plot_tradeoff(
        _five_variants(), tmp_path / "b1.png", batch_size=1, metric="logloss", title="custom"
    )
    assert info["batch_size"] == 1 and info["metric"] == "logloss"
    assert info["higher_is_better"] is False
    # logloss ranks like auc here: the same fronts; at batch 1 xla (0.8 ms, 0.41) joins
    assert info["pareto_bytes"] == ["int8", "student", "xla", "teacher"]
    assert info["pareto_latency"] == ["int8", "xla", "teacher"]
    assert info["omitted"] == {}
    # a direction override flips the front: with "higher logloss is better" int8 (200 kB,
    # 0.45) and pruned (900 kB, 0.47) are the front
    flipped = plot_tradeoff(
        _five_variants(), tmp_path / "f.png", metric="logloss", higher_is_better=True
    )
    assert flipped["pareto_bytes"] == ["int8", "pruned"]


def test_plot_tradeoff_omits_rows_without_metric_or_bytes(tmp_path):
    rows = _five_variants().rows + (
        _row("nobytes", size=None, quality={"auc": 0.9}),
        _row("nometric", quality={"auc": None}),
        _row("zero", size=0, latency={256: 0.0}, quality={"auc": 0.5}),
    )
    info = plot_tradeoff(BenchmarkReport(rows, baseline="teacher"), tmp_path / "o.png")
    assert "no bytes" in info["omitted"]["nobytes"]
    assert "'auc'" in info["omitted"]["nometric"] and "both panels" in info["omitted"]["nometric"]
    assert "log axis" in info["omitted"]["zero"]
    # nobytes (auc 0.9, 10 ms at b256) is the best and as fast as student: it tops the
    # latency front and removes student (12 ms, 0.78) and teacher (40 ms, 0.80)
    assert info["pareto_latency"] == ["int8", "nobytes"]
    assert info["pareto_bytes"] == ["int8", "student", "xla", "teacher"]


def test_plot_tradeoff_report_without_latency(tmp_path):
    rep = BenchmarkReport(
        (
            _row("a", size=100, latency={}, quality={"auc": 0.6}),
            _row("b", size=50, latency={}, quality={"auc": 0.7}),
        )
    )
    info = plot_tradeoff(rep, tmp_path / "n.png")
    assert info["batch_size"] is None
    assert info["pareto_bytes"] == ["b"]
    assert info["pareto_latency"] == []
    assert set(info["omitted"]) == {"a", "b"}
    assert _png_size((tmp_path / "n.png").read_bytes())[0] > 800


def test_plot_tradeoff_bad_arguments(tmp_path):
    rep = _five_variants()
    with pytest.raises(ValueError, match=r"'ndcg' is not in the report.*\['auc', 'logloss'\]"):
        plot_tradeoff(rep, tmp_path / "x.png", metric="ndcg")
    with pytest.raises(ValueError, match=r"`path` must end in '.png'.*x\.jpg"):
        plot_tradeoff(rep, tmp_path / "x.jpg")
    with pytest.raises(ValueError, match=r"batch size.*\[1, 256\]"):
        plot_tradeoff(rep, tmp_path / "x.png", batch_size=32)
    with pytest.raises(TypeError, match="`batch_size` must be an int"):
        plot_tradeoff(rep, tmp_path / "x.png", batch_size="256")
    with pytest.raises(TypeError, match="`report` must be a tfcompress BenchmarkReport"):
        plot_tradeoff(rep.to_dict(), tmp_path / "x.png")
    with pytest.raises(TypeError, match="`path` must be a str or os.PathLike"):
        plot_tradeoff(rep, 42)
    none_auc = BenchmarkReport((_row("a", quality={"auc": None, "logloss": 0.3}),))
    with pytest.raises(ValueError, match="'auc' has no value in any row"):
        plot_tradeoff(none_auc, tmp_path / "x.png", metric="auc")
    assert list(tmp_path.iterdir()) == []


def test_plot_tradeoff_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "t.png"
    out.write_bytes(b"old plot")

    def broken_savefig(self, fname, **kwargs):
        fname.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_tradeoff(_five_variants(), out)
    assert out.read_bytes() == b"old plot"  # the previous file is untouched
    assert sorted(os.listdir(tmp_path)) == ["t.png"]  # and no temp file is left behind


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (1.5e5, 6e6, [2e5, 5e5, 1e6, 2e6, 5e6]),  # 1-2-5 over 1.6 decades
        (0.002, 3000.0, [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]),  # 6 decades: powers of ten
        (960.0, 1340.0, [1000.0, 1100.0, 1200.0, 1300.0]),  # narrow: 960 B next to 1 kB dropped
        # ~3%: no round set gives 3 ticks; 3 spread ticks rounded to distinct 3-digit values
        (0.99e6, 1.02e6, [0.996e6, 1.0e6, 1.01e6]),
    ],
)
def test_log_ticks_are_readable(lo, hi, expected):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tfcompress.evaluation._tradeoff_draw import _fmt_bytes, _fmt_ms, _log_ticks

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    _log_ticks(ax, _fmt_bytes)
    assert list(ax.get_xticks()) == pytest.approx(expected)
    assert ax.get_xlim() == pytest.approx((lo, hi))
    assert [_fmt_bytes(v) for v in (512, 2e5, 1.2e6, 3e9)] == ["512 B", "200 kB", "1.2 MB", "3 GB"]
    assert [_fmt_ms(v) for v in (0.05, 6, 2500)] == ["0.05 ms", "6 ms", "2.5 s"]
