"""Tests of tfcompress.data._common, the helpers the simulated tasks and the loaders share."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tfcompress.data import Feature, Schema
from tfcompress.data._common import (
    build_task,
    check_int,
    check_split,
    gather_splits,
    group_split,
    pad_trailing,
)


def _naive_pad(runs: list[list[int]], length: int, reserve: list[int]) -> np.ndarray:
    out = np.zeros((len(runs), length), np.int64)
    for r, (run, k) in enumerate(zip(runs, reserve, strict=True)):
        keep = run[-(length - k) :] if length > k else []
        if keep:
            out[r, length - k - len(keep) : length - k] = keep
    return out


def test_pad_trailing_matches_a_naive_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 40)
    values = rng.integers(1, 100, int(lengths.sum()))
    ends = np.cumsum(lengths)
    runs = [values[e - n : e].tolist() for e, n in zip(ends, lengths, strict=True)]
    for length in (1, 4, 12):
        for reserve in (np.zeros(40, int), rng.integers(0, 3, 40)):
            got = pad_trailing(values, ends, lengths, length, reserve)
            np.testing.assert_array_equal(got, _naive_pad(runs, length, reserve.tolist()))
            assert got.dtype == values.dtype and got.shape == (40, length)


def test_pad_trailing_docstring_case_and_empty_input():
    got = pad_trailing(np.array([5, 6, 7, 8]), np.array([3, 4]), np.array([3, 1]), 4)
    np.testing.assert_array_equal(got, [[0, 5, 6, 7], [0, 0, 0, 8]])
    empty = pad_trailing(np.zeros(0, np.int32), np.zeros(3, int), np.zeros(3, int), 5)
    assert empty.shape == (3, 5) and empty.dtype == np.int32 and not empty.any()


def test_group_split_keeps_groups_whole_and_sizes_close():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 500, 5_000)
    parts = group_split(groups, (4_000, 500, 500), np.random.default_rng(7))
    rows = np.concatenate(list(parts.values()))
    np.testing.assert_array_equal(np.sort(rows), np.arange(5_000))  # every row exactly once
    sets = [set(groups[p].tolist()) for p in parts.values()]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    assert all(np.all(np.diff(p) > 0) for p in parts.values())  # row order
    assert abs(len(parts["test"]) - 500) < 60 and abs(len(parts["train"]) - 4_000) < 60
    again = group_split(groups, (4_000, 500, 500), np.random.default_rng(7))
    np.testing.assert_array_equal(again["test"], parts["test"])
    # One group per row: exact sizes.
    exact = group_split(np.arange(10), (6, 2, 2), np.random.default_rng(0))
    assert [len(p) for p in exact.values()] == [6, 2, 2]


@pytest.mark.parametrize(
    ("split", "error", "fragment"),
    [
        ("0.8,0.1,0.1", TypeError, "three numbers"),
        ((0.8, None, 0.2), TypeError, "three numbers"),
        ((True, False, False), TypeError, "three numbers"),
        ((0.8, 0.2), ValueError, "3 fractions"),
        ((0.8, 0.3, 0.1), ValueError, "summing to 1"),
        ((0.0, 0.5, 0.5), ValueError, "train > 0"),
        ((1.2, -0.1, -0.1), ValueError, ">= 0"),
    ],
)
def test_check_split_bad_input(split, error, fragment):
    with pytest.raises(error, match=fragment):
        check_split(split)


def test_check_split_and_check_int_good_input():
    assert check_split([0.5, 0.25, 0.25]) == (0.5, 0.25, 0.25)
    assert check_split(np.array([1.0, 0.0, 0.0])) == (1.0, 0.0, 0.0)
    assert check_int(np.int64(3), "n", 1, "5") == 3
    with pytest.raises(TypeError, match=r"`n` must be an int >= 1, received 2.0 \(float\)"):
        check_int(2.0, "n", 1, "5")
    with pytest.raises(
        ValueError, match=r"`n` must be an int >= 1, received 0 \(int\)\. Pass e\.g\. n=5\."
    ):
        check_int(0, "n", 1, "5")


def test_build_task_batches_shuffles_and_counts_rows(caplog):
    schema = Schema((Feature("x", "numeric"), Feature("c", "categorical", vocab_size=9)), "y")
    columns = {"c": np.arange(10, dtype=np.int32)[:, None] % 9, "x": np.arange(10.0)[:, None]}
    labels = (np.arange(10) % 2).astype(np.float32)[:, None]
    parts = {"train": slice(0, 8), "validation": slice(8, 10), "test": slice(10, 10)}
    arrays = gather_splits(columns, labels, parts)
    info, fractions = {"source": "mem.csv"}, (0.8, 0.1, 0.1)
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        task = build_task(arrays, schema, batch_size=3, seed=0, info=info, fractions=fractions)
    assert "mem.csv: the test split is empty" in caplog.text
    assert info["rows"] == {"train": 8, "validation": 2, "test": 0, "total": 10}
    assert task.info["arrays"] is arrays
    assert [len(y) for _, y in task.train] == [3, 3, 2]
    epoch = np.concatenate([x["x"].numpy()[:, 0] for x, _ in task.train])
    assert sorted(epoch) == list(range(8)) and not np.array_equal(epoch, np.arange(8.0))
    x, y = next(iter(task.validation))
    np.testing.assert_array_equal(x["x"].numpy()[:, 0], [8.0, 9.0])  # fixed order
    assert set(task.train.element_spec[0]) == {"c", "x"}
