"""Hostile values in data files (issue 14): the loaders raise a clear error naming the file,
line, column and value, or take a logged, documented decision; never silently wrong data.

One test per hostile-input class; every file is generated in ``tmp_path``.
"""

from __future__ import annotations

import gzip

import pytest

from tfcompress.data import load_csv, load_libfm, load_movielens


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
