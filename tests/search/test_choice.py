"""compress's choice among measured candidates (no training: rows built by hand)."""

from __future__ import annotations

import pytest

from tfcompress.evaluation import BenchmarkReport, BenchmarkRow
from tfcompress.evaluation.statistics import PairedDifference
from tfcompress.search import Candidate, CandidateResult, CompressionResult, SearchSettings


def _candidate(shrink: float, mode: str | None, low: float, size: int) -> CandidateResult:
    diff = PairedDifference("auc", 0.75, 0.75 + low / 2, low / 2, low, 0.0, 0.95, "delong", 1000)
    return CandidateResult(
        Candidate(shrink=shrink, quantization=mode),
        f"/m{shrink}{mode}",
        diff,
        accepted=low >= -0.002,
        bytes=size,
    )


def _row(name: str, median: float, p90: float, size: int) -> BenchmarkRow:
    return BenchmarkRow(
        name,
        "tflite",
        None,
        "binary",
        {"auc": 0.75},
        size,
        size,
        10,
        {1: {"median": median / 4, "p90": p90 / 4}, 256: {"median": median, "p90": p90}},
        {},
        None,
        1000,
    )


def _result(objective: str, rows: list[tuple[CandidateResult, float, float]]) -> CompressionResult:
    base = _candidate(0.0, None, 0.0, 10_000)
    report = BenchmarkReport(
        (_row(base.name, 10.0, 10.2, 10_000), *(_row(c.name, m, p, c.bytes) for c, m, p in rows)),
        baseline=base.name,
    )
    return CompressionResult(
        None,
        base.path,
        base,
        [c for c, _, _ in rows],
        report,
        SearchSettings(max_loss=0.002, objective=objective),
        1.0,
        0,
    )


def test_latencies_within_the_timing_noise_tie_and_the_smaller_loss_wins():
    fast = _candidate(0.5, "int8", -0.0019, 900)  # 2.00 ms: fastest, loses most
    close = _candidate(0.25, "int8", -0.0004, 1500)  # 2.04 ms: within 3% of 2.00 -> tie
    far = _candidate(0.0, "int8", 0.0, 2600)  # 2.50 ms: slower than the noise
    result = _result("latency", [(fast, 2.0, 2.02), (close, 2.04, 2.05), (far, 2.5, 2.6)])
    assert result.objective_margin(fast) == pytest.approx(0.06)  # 3% of 2.00 > p90 - median
    assert result.select() is close
    # a noisy fastest timing widens the band: p90 - median = 0.6 ms reaches 2.5 ms
    noisy = _result("latency", [(fast, 2.0, 2.6), (close, 2.04, 2.05), (far, 2.5, 2.6)])
    assert noisy.objective_margin(fast) == pytest.approx(0.6)
    assert noisy.select() is far


def test_sizes_within_one_percent_tie_and_a_candidate_must_beat_the_float_model():
    small = _candidate(0.5, "int8", -0.0019, 900)
    larger = _candidate(0.25, "int8", -0.0001, 909)  # 1% larger: a tie, won on quality
    result = _result("size", [(small, 2.0, 2.0), (larger, 2.0, 2.0)])
    assert result.objective_margin(small) == pytest.approx(9.0) and result.select() is larger
    beyond = _candidate(0.25, "int8", -0.0001, 910)  # more than 1% larger: the smaller wins
    assert _result("size", [(small, 2.0, 2.0), (beyond, 2.0, 2.0)]).select() is small
    grown = _candidate(0.0, "int8", 0.0, 12_000)  # larger than the float file
    assert _result("size", [(grown, 1.0, 1.0)]).select() is None
    lost = _candidate(0.75, "int8", -0.01, 500)  # rejected: not accepted
    assert _result("size", [(lost, 1.0, 1.0)]).select() is None


def test_quality_within_a_twentieth_of_max_loss_ties_and_the_smaller_file_wins():
    # MovieLens: shrink0.88 float and its fused dynamic file ran alike at batch 1 and differed
    # by ~1e-5 AUC at the CI's worst end; the 2.75x smaller file should win
    large = _candidate(0.875, None, -0.00040, 3000)
    small = _candidate(0.875, "dynamic", -0.00049, 1100)  # 0.00009 worse < 0.05 * 0.002
    worse = _candidate(0.875, "int8", -0.00051, 900)  # 0.00011 worse: beyond the quality tie
    result = _result("latency", [(large, 2.0, 2.02), (small, 2.01, 2.02), (worse, 2.0, 2.01)])
    assert result.select() is small


def test_latency_ties_whose_worst_ends_gain_go_to_the_smaller_file():
    # the BST with a block dropped: float16 and dynamic files 0.01 ms apart, both gaining at
    # their CI's worst end (+0.0038 and +0.0036 AUC); neither loses, so the smaller file wins
    def gaining(mode: str, low: float, size: int) -> CandidateResult:
        delta = low + 0.0016
        diff = PairedDifference(
            "auc", 0.73, 0.73 + delta, delta, low, low + 0.0032, 0.95, "delong", 1000
        )
        candidate = Candidate(shrink=0.875, quantization=mode)
        return CandidateResult(candidate, f"/{mode}", diff, accepted=True, bytes=size)

    large = gaining("float16", 0.0038, 1986)
    small = gaining("dynamic", 0.0036, 1326)
    result = _result("latency", [(large, 2.177, 2.19), (small, 2.167, 2.19)])
    assert result.select() is small
    # one that loses at its worst end still ties only within QUALITY_TIE of the best (0)
    losing = _candidate(0.875, "int8", -0.0002, 900)
    again = _result("latency", [(large, 2.177, 2.19), (losing, 2.167, 2.19)])
    assert again.select() is large
