"""Tests of tfcompress.evaluation.statistics: DeLong's paired AUC test and the paired bootstrap."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from tfcompress._metrics import auc
from tfcompress.evaluation.statistics import (
    PairedDifference,
    delong_auc_difference,
    paired_bootstrap,
    paired_difference,
)
from tfcompress.export.metrics import quality

Z95 = NormalDist().inv_cdf(0.975)


def _pair(n: int, seed: int, noise: float = 0.5, ties: bool = False):
    """Labels, a baseline's scores and a correlated variant's scores (a compressed copy)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = y + rng.normal(size=n)
    var = base + noise * rng.normal(size=n)
    if ties:  # coarse scores: many ties within and across classes
        base, var = np.round(base, 1), np.round(var, 1)
    return y, base, var


def _brute_force_variance(y: np.ndarray, base: np.ndarray, var: np.ndarray) -> float:
    """DeLong's variance of AUC(var) - AUC(base) from O(m*n) structural components."""
    pos, neg = y > 0.5, y <= 0.5

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        return psi.mean(axis=1), psi.mean(axis=0)

    v10_b, v01_b = components(base)
    v10_v, v01_v = components(var)
    m, n = int(pos.sum()), int(neg.sum())
    return (v10_v - v10_b).var(ddof=1) / m + (v01_v - v01_b).var(ddof=1) / n


def test_delong_aucs_equal_the_exact_auc_and_variance_matches_brute_force():
    y, base, var = _pair(200, 1, ties=True)
    assert len(np.unique(base)) < 100  # really tied
    d = delong_auc_difference(y, base, var)
    assert d.baseline == pytest.approx(auc(y, base), abs=1e-12)
    assert d.variant == pytest.approx(auc(y, var), abs=1e-12)
    assert d.delta == pytest.approx(auc(y, var) - auc(y, base), abs=1e-12)
    se = (d.high - d.low) / (2 * Z95)
    assert se**2 == pytest.approx(_brute_force_variance(y, base, var), rel=1e-9)
    assert d.low < d.delta < d.high and d.level == 0.95 and d.method == "delong"
    assert d.n == 200 and d.n_positives == int(y.sum())


def test_delong_se_agrees_with_the_paired_bootstrap():
    y, base, var = _pair(5000, 2)
    d = delong_auc_difference(y, base, var)
    b = paired_bootstrap("auc", y, base, var, n_boot=1000, seed=3)
    assert b.method == "paired bootstrap (B=1000)"
    assert b.delta == pytest.approx(d.delta, abs=1e-12)
    assert (b.high - b.low) / (d.high - d.low) == pytest.approx(1.0, rel=0.15)
    # paired: the difference's CI is narrower than either AUC's own (SE ~0.0066 here)
    assert d.high - d.low < 2 * Z95 * 0.0066 * 0.6


def test_identical_variants_give_zero_delta_and_zero_width():
    y, base, _ = _pair(300, 4)
    for metric in ("auc", "logloss", "accuracy"):
        p = 1 / (1 + np.exp(-base))
        d = paired_difference(metric, y, p, p.copy())
        assert (d.delta, d.low, d.high) == (0.0, 0.0, 0.0), metric
        assert d.keeps_quality(0.0)


def test_ci_covers_a_true_zero_difference_at_about_its_level():
    # two exchangeable models (same noise level, independent noise): true ΔAUC is 0
    hits = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 400)
        common = y + rng.normal(size=400)
        d = delong_auc_difference(y, common + rng.normal(size=400), common + rng.normal(size=400))
        hits += d.low <= 0.0 <= d.high
    assert 88 <= hits <= 99


def test_bootstrap_matches_the_benchmark_metric_and_is_seeded():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 5, 800)
    base = rng.normal(size=(800, 5)) + 2 * np.eye(5)[y]
    var = base + 0.3 * rng.normal(size=(800, 5))
    for metric in ("accuracy", "top2_accuracy", "logloss"):
        d = paired_bootstrap(metric, y, base, var, n_boot=200, seed=1)
        assert d.baseline == quality(base, y, [metric])[metric]
        assert d.variant == quality(var, y, [metric])[metric]
        assert d.low <= d.delta <= d.high and d.n_positives is None
        assert d == paired_bootstrap(metric, y, base, var, n_boot=200, seed=1)
    one = paired_bootstrap("accuracy", y, base, var, n_boot=200, seed=1)
    other = paired_bootstrap("accuracy", y, base, var, n_boot=200, seed=2)
    assert other.delta == one.delta and (other.low, other.high) != (one.low, one.high)
    # binary logloss: lower is better, so a positive delta is a loss
    yb, b, v = _pair(1000, 6)
    worse = paired_difference("logloss", yb, b, b + rng.normal(size=1000))
    assert worse.delta > 0 and worse.loss() == worse.delta and worse.worst_loss() == worse.high


def test_keeps_quality_rules_and_round_trip():
    d = PairedDifference("auc", 0.75, 0.7492, -0.0008, -0.0016, 0.0, 0.95, "delong", 10**5, 20_000)
    assert d.loss() == pytest.approx(0.0008) and d.worst_loss() == pytest.approx(0.0016)
    assert d.keeps_quality(0.001, rule="point") and not d.keeps_quality(0.001)
    assert d.keeps_quality(0.002) and d.keeps_quality(0.002, "point")
    assert str(d) == "-0.0008 ± 0.0008"
    ll = PairedDifference("logloss", 0.45, 0.451, 0.001, 0.0004, 0.0016, 0.95, "b", 100, None)
    assert ll.loss() == pytest.approx(0.001) and ll.worst_loss() == pytest.approx(0.0016)
    assert not ll.keeps_quality(0.0015) and ll.keeps_quality(0.0015, rule="point")
    assert PairedDifference.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    with pytest.raises(ValueError, match="`rule` must be 'ci'"):
        d.keeps_quality(0.001, rule="mean")
    with pytest.raises(ValueError, match="`max_loss` must be a finite number >= 0"):
        d.keeps_quality(-0.001)
    with pytest.raises(TypeError, match="`max_loss`"):
        d.keeps_quality("0.001")
    with pytest.raises(ValueError, match="missing keys \\['n'\\]"):
        PairedDifference.from_dict({k: v for k, v in d.to_dict().items() if k != "n"})


def test_bad_input_errors_name_the_argument_and_the_fix():
    y, base, var = _pair(50, 7)
    with pytest.raises(ValueError, match="single class.*both classes"):
        delong_auc_difference(np.ones(50), base, var)
    with pytest.raises(ValueError, match="`variant_scores` must hold one score per label \\(50\\)"):
        delong_auc_difference(y, base, var[:40])
    with pytest.raises(ValueError, match="`baseline_scores` holds 1 NaN"):
        delong_auc_difference(y, np.where(np.arange(50) == 3, np.nan, base), var)
    with pytest.raises(ValueError, match="`level` must be a number in \\(0, 1\\)"):
        delong_auc_difference(y, base, var, level=95)
    with pytest.raises(ValueError, match="`variant_outputs` holds 40 rows but `labels` has 50"):
        paired_difference("logloss", y, base, var[:40])
    with pytest.raises(ValueError, match="`baseline_outputs` holds NaN"):
        paired_difference("auc", y, np.full(50, np.nan), var)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        paired_difference("f1", y, base, var)
    with pytest.raises(ValueError, match="`n_boot` must be an int >= 100"):
        paired_bootstrap("accuracy", y, base, var, n_boot=10)
    with pytest.raises(ValueError, match="`seed` must be an int >= 0"):
        paired_bootstrap("accuracy", y, base, var, seed=-1)
    with pytest.raises(ValueError, match="compare variants of the same model"):
        paired_difference("accuracy", y, np.zeros((50, 3)), np.zeros((50, 4)))
    with pytest.raises(ValueError, match="'auc' needs one score per example"):
        paired_difference("auc", y, np.zeros((50, 3)), np.zeros((50, 3)))


def test_benchmark_reports_paired_deltas_with_confidence_intervals(tmp_path):
    from tfcompress._keras import keras
    from tfcompress.evaluation import benchmark
    from tfcompress.evaluation.report import BenchmarkReport

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype("float32")
    y = (x[:, :1] + 0.8 * rng.normal(size=(600, 1)) > 0).astype("float32")

    def tiny(seed: int) -> keras.Model:
        keras.utils.set_random_seed(seed)
        inp = keras.Input((4,), name="x")
        model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp), name="m")
        model.compile("adam", "binary_crossentropy")
        model.fit(x, y, epochs=2, batch_size=64, verbose=0)
        return model

    a, b = tiny(1), tiny(2)
    report = benchmark(
        {"a": a, "b": b},
        (x, y),
        batch_sizes=(1,),
        warmup=0,
        repeats=1,
        measure_memory=False,
        progress=False,
    )
    base, var = report.row("a"), report.row("b")
    assert base.deltas == {}
    d = var.deltas["auc"]
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    assert d.baseline == pytest.approx(auc(y, pa), abs=1e-6) == base.quality["auc"]
    assert d.variant == pytest.approx(auc(y, pb), abs=1e-6) == var.quality["auc"]
    assert d.delta == pytest.approx(var.quality["auc"] - base.quality["auc"], abs=1e-12)
    assert d.low < d.delta < d.high and d.method == "delong"
    assert (d.n, d.n_positives) == (600, int(y.sum()))
    for metric in ("logloss", "accuracy"):
        m = var.deltas[metric]
        assert m.method == "paired bootstrap (B=1000)" and m.low <= m.delta <= m.high
        assert m.delta == pytest.approx(var.quality[metric] - base.quality[metric], abs=1e-12)
    md = report.to_markdown()
    assert "Δ auc ± CI" in md and "Δ logloss ± CI" in md and str(d) in md
    assert "95% paired confidence interval on the same 600 examples" in md
    assert "auc by DeLong's test; logloss, accuracy by paired bootstrap (B=1000)" in md
    # JSON round trip keeps the intervals; a report written before them still loads
    saved = json.loads(json.dumps(report.to_dict()))
    assert BenchmarkReport.from_dict(saved).row("b").deltas == var.deltas
    for row in saved["rows"]:
        del row["deltas"]
    old = BenchmarkReport.from_dict(saved)
    assert old.row("b").deltas == {} and "Δ auc" in old.to_markdown()
