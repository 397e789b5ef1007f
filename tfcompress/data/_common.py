"""Helpers shared by the simulated tasks and the file loaders: argument and memory checks, file
reading, splits, padding, standardisation, and :func:`build_task`. Not public API.
"""

from __future__ import annotations

import gzip
import logging
import math
import numbers
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np

from tfcompress._keras import tf
from tfcompress._validation import check_int as _check_int
from tfcompress.data.schema import Schema, TaskData

_log = logging.getLogger("tfcompress")

SPLITS = ("train", "validation", "test")
Arrays = tuple[dict[str, np.ndarray], np.ndarray]  # (features by name, labels) of one split
MAX_ID = 2**31 - 1  # the largest int32 id
#: ``split_mode`` values of the CSV loader (MovieLens adds ``"leave_last_out"``).
SPLIT_MODES = ("random", "time", "by_user")
#: A split whose arrays hold more bytes than this is gathered from numpy batch by batch.
INDEXED_BYTES = 256 * 2**20


# --------------------------------------------------------------------------- argument checks


def check_int(value: Any, name: str, minimum: int, example: str) -> int:
    """``value`` as an int ``>= minimum`` (:func:`tfcompress._validation.check_int`, with a fix
    that shows ``name=example``)."""
    return _check_int(value, name, minimum=minimum, fix=f"Pass e.g. {name}={example}.")


def check_split(split: Any) -> tuple[float, float, float]:
    """Train / validation / test fractions: three finite numbers >= 0, train > 0, sum 1."""
    fix = "pass three fractions (train, validation, test) that sum to 1, e.g. split=(0.8, 0.1, 0.1)"
    if isinstance(split, (str, bytes)) or not isinstance(split, (Sequence, np.ndarray)):
        raise TypeError(f"split must be three numbers, received {split!r}; {fix}.")
    if not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in split):
        raise TypeError(f"split must be three numbers, received {split!r}; {fix}.")
    parts = tuple(float(s) for s in split)
    if (
        len(parts) != 3
        or not all(math.isfinite(s) and s >= 0 for s in parts)
        or abs(sum(parts) - 1.0) > 1e-6
        or parts[0] <= 0
    ):
        raise ValueError(
            f"split must be 3 fractions >= 0 summing to 1 with train > 0, received {split!r}; "
            f"{fix}."
        )
    return parts  # type: ignore[return-value]


def check_common(batch_size: Any, split: Any, seed: Any) -> tuple[float, float, float]:
    """Check the arguments every loader takes; return the split fractions."""
    check_int(batch_size, "batch_size", 1, "256")
    check_int(seed, "seed", 0, "0")
    return check_split(split)


def check_path(path: Any, what: str) -> str:
    """``path`` as a str naming an existing regular file (``what`` names the format)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be a str or os.PathLike naming a {what} file, received {path!r} "
            f"({type(path).__name__})."
        )
    p = os.fsdecode(os.fspath(path))
    if not os.path.exists(p):
        raise ValueError(f"{p}: file not found; pass the path of an existing {what} file.")
    if not os.path.isfile(p):
        raise ValueError(f"{p}: not a regular file (a directory?); pass the path of a {what} file.")
    return p


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None where the system does not tell.

    Read from ``os.sysconf`` (``SC_PAGE_SIZE * SC_PHYS_PAGES``; Linux, macOS, BSD).

    Example:
        >>> physical_memory() is None or physical_memory() > 0
        True
    """
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError, TypeError):  # no sysconf, or no such name
        return None
    return total if total > 0 else None


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with one decimal: ``"1.0 GiB"``, ``"7.3 TiB"``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(n), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} bytes" if unit == 0 else f"{value:,.1f} {units[unit]}"


#: the memory assumed where the system does not tell its own
UNKNOWN_MEMORY = 2**40


def check_memory(
    argument: str,
    count: int,
    per_item: int,
    fixed: int,
    what: str,
    unit: str,
    own_file: str = "tfcompress.data.load_file reads it from disk",
) -> None:
    """Refuse ``count`` items of ``per_item`` bytes (+ ``fixed``) that exceed physical memory.

    Args:
        argument: the size as the caller wrote it (``"n_samples=10"``, ``"samples = 10"``).
        count, per_item, fixed: the estimate is ``fixed + count * per_item`` bytes.
        what: what is sized (``"the simulated ctr task"``).
        unit: what ``count`` counts, as the fix words it (``"samples"``).
        own_file: how to load one's own file instead (in parentheses after the fix).

    Raises:
        ValueError: naming the size, the estimate, the machine's memory (1 TiB assumed where
            the system does not tell) and the largest count that fits.
    """
    need, total = fixed + count * per_item, physical_memory()
    have = (
        f"this machine's {format_bytes(total)}"
        if total
        else f"{format_bytes(UNKNOWN_MEMORY)} (this machine's memory is unknown)"
    )
    total = total or UNKNOWN_MEMORY
    if need > total:
        most = max(0, (total - fixed) // max(per_item, 1))
        raise ValueError(
            f"{argument} needs about {format_bytes(need)} of memory for {what} (about "
            f"{per_item:,} bytes each), more than {have}; use at most {most:,} {unit} or load "
            f"your own file ({own_file})."
        )


# --------------------------------------------------------------------------- text files


def open_text(path: str) -> IO[str]:
    """Open a UTF-8 text file (BOM accepted), through gzip when it ends in ``.gz``."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - returned to a with


#: What reading a text file can raise: decoding, I/O, and a damaged ``.gz`` file (``zlib.error``
#: for corrupt compressed data, ``EOFError`` for a truncated one, ``gzip.BadGzipFile``, an
#: ``OSError``, for a file that is not gzip at all).
READ_ERRORS = (UnicodeDecodeError, OSError, EOFError, zlib.error)


def read_error(path: str, line: int, exc: Exception) -> ValueError:
    """The ValueError for a file that cannot be read or decoded at ``line``."""
    if isinstance(exc, UnicodeDecodeError):
        return ValueError(
            f"{path} line {line}: not UTF-8 text ({exc.reason}); re-save the file as UTF-8."
        )
    if path.endswith(".gz") and isinstance(exc, (zlib.error, EOFError, gzip.BadGzipFile)):
        what = (
            "is not a gzip file"
            if isinstance(exc, gzip.BadGzipFile)
            else "is truncated gzip data (the file was cut short)"
            if isinstance(exc, EOFError)
            else "holds corrupt gzip data"
        )
        return ValueError(
            f"{path} line {line}: the file {what} ({exc}); download or compress it again "
            "(gzip -t checks a file), or drop the .gz suffix of an uncompressed file."
        )
    return ValueError(f"{path} line {line}: cannot read the file ({exc}).")


def iter_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` for each line of a text file, blank lines skipped."""
    number = 0
    try:
        with open_text(path) as fh:
            for number, line in enumerate(fh, start=1):  # noqa: B007 - used in the except
                text = line.strip()
                if text:
                    yield number, text
    except READ_ERRORS as exc:
        raise read_error(path, number + 1, exc) from exc


def parse_float(text: str) -> float | None:
    """The finite float in ``text``, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- splits


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Rows per split: largest remainder, and one row for every non-empty part when possible."""
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(3), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: max(0, n - sum(counts))]:
        counts[i] += 1
    for i in (1, 2):
        if fractions[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i] += 1
            counts[0] -= 1
    return counts


def random_split(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Seeded split of ``range(n)``: train in shuffled order, validation and test in row order."""
    n_train, n_val, _ = split_counts(n, fractions)
    perm = np.random.default_rng(seed).permutation(n)
    return {
        "train": perm[:n_train],
        "validation": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def group_split(
    groups: np.ndarray, sizes: Sequence[int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Split rows so that all rows of a group (e.g. a user) land in ONE split.

    Groups are taken in a random order (from ``rng``) and each goes to the split in which the
    middle of its rows falls, so the splits hold about ``sizes`` rows each (exactly only when
    every group has one row).

    Args:
        groups: the group of each row, shape (n,).
        sizes: target rows of train, validation and test, summing to n.
        rng: the generator that orders the groups.

    Returns:
        ``{split: row indices}``, each in ascending row order; a split may be empty when there
        are fewer groups than non-empty splits or a group holds more rows than a split.
    """
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(uniq))
    middle = np.cumsum(counts[order]) - counts[order] / 2.0
    part_of = np.empty(len(uniq), np.int64)
    part_of[order] = np.searchsorted(np.cumsum(sizes)[:2], middle, side="right")
    row_part = part_of[inverse.reshape(-1)]
    return {name: np.flatnonzero(row_part == i) for i, name in enumerate(SPLITS)}


def check_split_mode(mode: Any, allowed: Sequence[str], what: str) -> str:
    """``mode`` if it is one of ``allowed`` (the split modes of the loader ``what``)."""
    if not isinstance(mode, str) or mode not in allowed:
        raise ValueError(
            f"split_mode must be one of {list(allowed)} for {what}, received {mode!r}; pass "
            f"e.g. split_mode={allowed[0]!r}."
        )
    return mode


def split_rows(
    mode: str,
    n: int,
    fractions: Sequence[float],
    seed: int,
    *,
    times: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Row indices of train / validation / test; train in a seeded random order.

    * ``"random"``: a seeded random split (:func:`random_split`).
    * ``"time"``: the oldest rows (by ``times``, ties in row order) train, the next ones
      validation, the newest test, so every test time is >= every train time; validation and
      test in time order.
    * ``"by_user"``: every group (``groups``, e.g. the user column) in exactly one split
      (:func:`group_split`); validation and test in row order.

    Example:
        >>> parts = split_rows("time", 4, (0.5, 0.0, 0.5), 0, times=np.array([4, 3, 2, 1]))
        >>> sorted(parts["train"].tolist()), parts["test"].tolist()
        ([2, 3], [1, 0])
    """
    if mode == "random":
        return random_split(n, fractions, seed)
    rng = np.random.default_rng(seed)
    counts = split_counts(n, fractions)
    if mode == "time":
        if times is None:
            raise ValueError("split_mode='time' needs the times of the rows.")
        order = np.argsort(times, kind="stable")
        parts = {
            "train": order[: counts[0]],
            "validation": order[counts[0] : counts[0] + counts[1]],
            "test": order[counts[0] + counts[1] :],
        }
    elif mode == "by_user":
        if groups is None:
            raise ValueError("split_mode='by_user' needs the user of each row.")
        parts = group_split(groups, counts, rng)
    else:
        raise ValueError(f"split_mode must be one of {SPLIT_MODES}, received {mode!r}.")
    parts["train"] = rng.permutation(parts["train"])
    return parts


def gather_splits(
    columns: Mapping[str, np.ndarray],
    labels: np.ndarray,
    parts: Mapping[str, np.ndarray | slice],
) -> dict[str, Arrays]:
    """``{split: (features, labels)}``: the rows ``parts[split]`` (indices or a slice)."""
    return {
        name: ({k: v[rows] for k, v in columns.items()}, labels[rows])
        for name, rows in parts.items()
    }


def standardise(values: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(values - mean) / std`` (float32) with the mean and std of the train rows."""
    train = values[train_rows]
    mean = float(train.mean()) if train.size else 0.0
    std = float(train.std()) if train.size else 1.0
    if not std > 1e-12:
        std = 1.0
    return ((values - mean) / std).astype(np.float32), mean, std


# --------------------------------------------------------------------------- sequences


def pad_trailing(
    values: np.ndarray,
    end: np.ndarray,
    count: np.ndarray,
    length: int,
    reserve: int | np.ndarray = 0,
) -> np.ndarray:
    """Fixed-length, front-padded sequences (most recent last) cut from one flat array.

    This is the padding rule of every sequence feature in tfcompress: row ``r`` holds the last
    values of the run ``values[end[r] - count[r] : end[r]]``, right-aligned so that it ends
    ``reserve`` columns before the right edge (those columns are left for the caller, e.g. the
    clicks of the current session), truncated to what fits; every other column is 0 (padding).

    Args:
        values: the flat array the runs are cut from (e.g. all tokens of a column, or the
            concatenated histories of all users).
        end: (n,) index one past the last (most recent) value of each row's run.
        count: (n,) the run lengths; a row's run must not reach before its own data.
        length: the padded length.
        reserve: columns (an int, or one per row) kept free at the right edge.

    Returns:
        (n, length) array of ``values.dtype``.

    Example:
        >>> pad_trailing(np.array([5, 6, 7, 8]), np.array([3, 4]), np.array([3, 1]), 4)
        array([[0, 5, 6, 7],
               [0, 0, 0, 8]])
    """
    values = np.asarray(values).reshape(-1)
    end = np.asarray(end, np.int64).reshape(-1, 1)
    count = np.asarray(count, np.int64).reshape(-1, 1)
    reserve = np.asarray(reserve, np.int64).reshape(-1, 1)
    back = np.arange(length - 1, -1, -1, dtype=np.int64)[None, :] - reserve  # 0 = most recent
    keep = (back >= 0) & (back < count)
    if not values.size:
        return np.zeros((len(end), length), values.dtype)
    return np.where(keep, values[np.clip(end - 1 - back, 0, values.size - 1)], 0).astype(
        values.dtype
    )


# --------------------------------------------------------------------------- datasets


def build_task(
    arrays: dict[str, Arrays],
    schema: Schema,
    *,
    batch_size: int,
    seed: int,
    info: dict[str, Any],
    fractions: Sequence[float] | None = None,
    shuffle_buffer: int = 100_000,
) -> TaskData:
    """Wrap per-split numpy arrays into batched ``tf.data`` datasets and a :class:`TaskData`.

    The training dataset is shuffled with ``seed`` (buffer ``min(rows, shuffle_buffer)``,
    reshuffled each epoch); validation and test keep their row order. Features are fed in schema
    order. ``info`` gains ``arrays`` and ``rows`` (per split and ``total``); when ``fractions``
    is given, an empty split whose fraction is > 0 is logged as a warning.
    """
    datasets = {}
    for name in SPLITS:
        features, labels = arrays[name]
        ordered = {f.name: features[f.name] for f in schema}
        buffer = max(1, min(len(labels), shuffle_buffer)) if name == "train" else None
        datasets[name] = _dataset(ordered, labels, batch_size, seed, buffer)
    info["rows"] = {name: int(len(arrays[name][1])) for name in SPLITS}
    info["rows"]["total"] = sum(info["rows"].values())
    info["arrays"] = arrays
    for name, fraction in zip(SPLITS[1:], (fractions or (0.0, 0.0, 0.0))[1:], strict=True):
        if fraction > 0 and info["rows"][name] == 0:
            _log.warning(
                "%s: the %s split is empty (%d rows in all).",
                info.get("source", schema.metadata.get("source", "data")),
                name,
                info["rows"]["total"],
            )
    return TaskData(datasets["train"], datasets["validation"], datasets["test"], schema, info)


def _dataset(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    buffer: int | None,
) -> tf.data.Dataset:
    """Batched (and, with a ``buffer``, shuffled) ``(features, labels)`` of one split.

    Up to :data:`INDEXED_BYTES` the arrays become dataset constants. Larger splits are read
    from the numpy arrays batch by batch (a dataset of row indices and a gather), because
    ``from_tensor_slices`` copies the data into the graph twice. Both give the same batches:
    the shuffle only depends on the seed, the buffer and the number of rows.
    """
    nbytes = sum(v.nbytes for v in features.values()) + labels.nbytes
    if nbytes <= INDEXED_BYTES:
        ds = tf.data.Dataset.from_tensor_slices((features, labels))
        if buffer is not None:
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
    names = list(features)
    columns = [features[k] for k in names] + [labels]
    ds = tf.data.Dataset.range(len(labels))
    if buffer is not None:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    def gather(rows: np.ndarray) -> list[np.ndarray]:
        return [c[rows] for c in columns]

    def fetch(rows: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        out = tf.numpy_function(gather, [rows], [tf.as_dtype(c.dtype) for c in columns])
        for tensor, column in zip(out, columns, strict=True):
            tensor.set_shape((None, *column.shape[1:]))
        return {k: out[i] for i, k in enumerate(names)}, out[-1]

    ds = ds.batch(batch_size, drop_remainder=False)
    return ds.map(fetch).prefetch(tf.data.AUTOTUNE)
