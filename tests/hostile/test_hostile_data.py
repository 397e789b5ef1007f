"""Hostile values in data files (issue 14): the loaders raise a clear error naming the file,
line, column and value, or take a logged, documented decision; never silently wrong data.

One test per hostile-input class; every file is generated in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from tfcompress.data import load_csv, load_libfm, load_movielens


def _csv(path: Path, xs: list[str], n: int = 100) -> str:
    """``click,x,y`` rows: ``xs`` in column x (padded with 0.5, 1.5, ...), y a number."""
    xs = xs + [f"{k}.5" for k in range(n - len(xs))]
    rows = [f"{k % 2},{x},{(k * 7) % 11}.25" for k, x in enumerate(xs)]
    path.write_text("click,x,y\n" + "\n".join(rows) + "\n")
    return str(path)


def _all(task, name: str) -> np.ndarray:
    return np.concatenate([task.info["arrays"][s][0][name].ravel() for s in task.info["arrays"]])


def test_huge_numeric_value_raises_naming_file_line_column_value(tmp_path):
    # 1e300 overflowed the standard deviation to inf: the column became all zeros, silently.
    for value in ("1e300", "-3e200", "1.7e308"):
        path = _csv(tmp_path / "big.csv", ["0.5", "2.5", value])
        with pytest.raises(ValueError) as err:
            load_csv(path, label="click", split_mode="random")
        msg = str(err.value)
        assert f"{path} line 4" in msg
        assert "'x'" in msg and value in msg
        assert "log" in msg and "categorical=" in msg  # the fix
    # the same in a libFM value (field 1 of line 3)
    libfm = tmp_path / "big.libfm"
    libfm.write_text("".join(f"{k % 2} 0:1 1:{v}\n" for k, v in enumerate(["0.5", "2", "1e300"])))
    with pytest.raises(ValueError, match=f"{libfm} line 3: value 1e[+]?300 of field 1 is too"):
        load_libfm(str(libfm))
    # large but standardisable values still load, finite and distinct
    task = load_csv(_csv(tmp_path / "ok.csv", ["1e30", "2.5"]), label="click")
    assert task.info["columns"]["x"]["kind"] == "numeric"
    xs = _all(task, "x")
    assert np.isfinite(xs).all() and xs.max() > 8.0  # the outlier: sqrt(79) std


def test_nonfinite_text_in_a_numeric_column_raises_instead_of_going_categorical(
    tmp_path, monkeypatch
):
    # One 'inf' or 'nan' among numbers turned the whole column into a categorical of text.
    for bad in ("inf", "-inf", "nan", "NaN", "Infinity"):
        path = _csv(tmp_path / f"c_{bad}.csv", ["1.5", bad])
        with pytest.raises(ValueError) as err:
            load_csv(path, label="click")
        msg = str(err.value)
        assert f"{path} line 3" in msg and f"{bad!r}" in msg and "'x'" in msg
        assert "numeric_fill" in msg and "categorical=" in msg
    # across chunks: an 'inf' in a later chunk still names its line; text after an 'inf'
    # (a later chunk) makes the column categorical as before
    monkeypatch.setattr("tfcompress.data._csv_scan.CHUNK_ROWS", 4)
    path = _csv(tmp_path / "late.csv", ["1.5"] * 9 + ["inf"])
    with pytest.raises(ValueError, match=f"{path} line 11: value 'inf' in column 'x'"):
        load_csv(path, label="click")
    task = load_csv(
        _csv(tmp_path / "late_text.csv", ["inf"] + ["1.5"] * 10 + ["red"]), label="click"
    )
    assert task.info["columns"]["x"]["kind"] == "categorical"
    monkeypatch.undo()
    # the documented way out: list the column in categorical=
    task = load_csv(_csv(tmp_path / "cat.csv", ["1.5", "inf"]), label="click", categorical=["x"])
    assert task.info["columns"]["x"]["kind"] == "categorical"
    # real text in the column still makes it categorical, whatever came first
    task = load_csv(_csv(tmp_path / "text.csv", ["inf", "red"]), label="click")
    assert task.info["columns"]["x"]["kind"] == "categorical"


def test_integer_ids_beyond_float_precision_stay_distinct(tmp_path, caplog):
    # 10**30 + i (and 19-digit ids) were parsed as floats: all rows one value, numeric.
    for base in (10**30, 2**53 + 10**6, 9 * 10**18):
        ids = [str(base + i) for i in range(100)]
        path = tmp_path / "ids.csv"
        path.write_text("click,x\n" + "\n".join(f"{i % 2},{v}" for i, v in enumerate(ids)) + "\n")
        with caplog.at_level(logging.INFO, logger="tfcompress"):
            task = load_csv(str(path), label="click", split=(1.0, 0.0, 0.0))
        col = task.info["columns"]["x"]
        assert col["kind"] == "categorical", col
        assert "2^53" in col["reason"]
        vocab = task.info["vocabularies"]["x"]
        assert len(vocab) == 100 and set(vocab) == set(ids)
        x = task.info["arrays"]["train"][0]["x"].ravel()
        assert len(np.unique(x)) == 100
        assert f"{path} line 2: column 'x' holds integer ids beyond 2^53" in caplog.text
        caplog.clear()
    # integers written as floats ('1e30') are numbers, not ids
    task = load_csv(_csv(tmp_path / "f.csv", ["1e18", "3e18"]), label="click")
    assert task.info["columns"]["x"]["kind"] == "numeric"


def test_stray_libfm_index_raises_naming_line_before_allocating(tmp_path):
    path = tmp_path / "stray.libfm"
    lines = [f"{k % 2} 0:1 {k + 2}:0.5" for k in range(20)]
    lines.insert(7, "1 0:1 2000000000:1")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as err:
        load_libfm(str(path))
    msg = str(err.value)
    assert f"{path} line 8" in msg and "2000000000" in msg
    assert "n_features=" in msg and "hash" in msg
    # an explicit n_features is the user's decision and is honoured
    task = load_libfm(str(path), n_features=2_000_000_001)
    assert task.info["n_features"] == 2_000_000_001
    # a normal index space is still inferred
    path.write_text("\n".join(lines[:7] + lines[8:]) + "\n")
    assert load_libfm(str(path)).info["n_features"] == 22


def test_movielens_ids_beyond_int64_map_to_1_n(tmp_path):
    path = tmp_path / "u.data"
    users = [10**25 + k % 5 for k in range(40)]
    rows = [f"{u}\t{k % 7 + 1}\t5\t{1000 + k}" for k, u in enumerate(users)]
    rows.append(f"{2**64}\t3\t5\t2000")
    path.write_text("\n".join(rows) + "\n")
    task = load_movielens(str(path), negatives=1)
    vocab = task.info["vocabularies"]["user_id"]
    assert task.info["n_users"] == 6
    expected = sorted({*users, 2**64})
    assert vocab == {str(u): i + 1 for i, u in enumerate(expected)}
    assert vocab[str(2**64)] == 1  # 2**64 < 10**25: numeric order, not text order


def _damaged(body: bytes, kind: str) -> bytes:
    data = gzip.compress(body)
    return {
        "garbage": data[:10] + b"\x00garbage\xff" * 50,
        "truncated": data[: len(data) // 2],
        "not_gzip": body[:200],
        "empty": b"",
    }[kind]


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not_gzip", "empty"])
def test_corrupt_gzip_is_a_valueerror_naming_the_file(tmp_path, kind):
    # garbage after a gzip header raised a raw zlib.error naming no file
    csv = b"click,x\n" + b"".join(f"{k % 2},{k}.5\n".encode() for k in range(5000))
    libfm = b"".join(f"{k % 2} 0:1 {k}:1\n".encode() for k in range(5000))
    ratings = b"".join(f"{k % 9}\t{k % 13}\t5\t{k}\n".encode() for k in range(5000))
    for name, loader, body in (
        ("d.csv.gz", lambda p: load_csv(p, label="click"), csv),
        ("d.libfm.gz", load_libfm, libfm),
        ("u.data.gz", load_movielens, ratings),
    ):
        path = tmp_path / name
        path.write_bytes(_damaged(body, kind))
        with pytest.raises(ValueError) as err:
            loader(str(path))
        msg = str(err.value)
        assert str(path) in msg
        if kind != "empty":  # an empty .gz file reads as an empty file
            assert "gzip" in msg and "compress it again" in msg, msg
