"""Load a CSV (or any delimited) file: :func:`load_csv`, streamed once in chunks.

Example:
    >>> from tfcompress.data import load_csv
    >>> task = load_csv("clicks.csv", label="click", drop=["attributed_time"])  # doctest: +SKIP
    >>> print(task.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress.data import inference
from tfcompress.data._common import (
    SPLIT_MODES,
    build_task,
    check_common,
    check_int,
    check_path,
    check_split_mode,
    split_rows,
)
from tfcompress.data._csv_build import Build, feature_name, gather
from tfcompress.data._csv_scan import Buffer, Column, CsvFile, read_labels
from tfcompress.data.schema import Schema, TaskData

__all__ = ["load_csv"]

_log = logging.getLogger("tfcompress")

#: ``timestamp_features`` values.
TIMESTAMP_FEATURES = ("hour_weekday", "drop")
_USER_NAMES = ("user", "user_id", "userid", "uid", "customer_id", "client_id", "visitor_id")


def _columns_arg(value: Any, arg: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(c, str) for c in value):
        raise TypeError(
            f"{arg} must be a list of column names, received {value!r}; pass e.g. {arg}=['price']."
        )
    return list(value)


def _per_column(value: Any, arg: str, example: str) -> dict[str, int] | int | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): check_int(v, f"{arg}[{k!r}]", 1, example) for k, v in value.items()}
    return check_int(value, arg, 1, example)


def _check_options(
    task: Any,
    delimiter: Any,
    separator: Any,
    header: Any,
    numeric_fill: Any,
    timestamp_features: Any,
    strict: Any,
    hash_threshold: Any,
    sequence_length: Any,
) -> None:
    if task not in ("binary", "multiclass"):
        raise ValueError(f"task must be 'binary' or 'multiclass', received {task!r}.")
    for arg, value in (("delimiter", delimiter), ("sequence_separator", separator)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{arg} must be a non-empty string, received {value!r}.")
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, received {delimiter!r}; e.g. ','.")
    if separator == delimiter:
        raise ValueError(
            f"sequence_separator {separator!r} equals the delimiter; pick another, "
            "e.g. sequence_separator='|'."
        )
    if not isinstance(header, bool) and (
        isinstance(header, str)
        or not isinstance(header, Sequence)
        or not header
        or not all(isinstance(h, str) for h in header)
    ):
        raise TypeError(
            f"header must be True (the first row names the columns), False (no header row: "
            f"columns col_1..col_N) or a list of column names, received {header!r}; pass e.g. "
            "header=['label', 'I1', 'C1']."
        )
    check_int(sequence_length, "sequence_length", 1, "20")
    if hash_threshold is not None:
        check_int(hash_threshold, "hash_threshold", 1, "100_000")
    if (
        numeric_fill is not None
        and numeric_fill != "mean"
        and (
            isinstance(numeric_fill, bool)
            or not isinstance(numeric_fill, (int, float))
            or not math.isfinite(numeric_fill)
        )
    ):
        raise ValueError(
            f"numeric_fill must be None, 'mean' or a finite number, received {numeric_fill!r}; "
            "pass e.g. numeric_fill='mean'."
        )
    if timestamp_features not in TIMESTAMP_FEATURES:
        raise ValueError(
            f"timestamp_features must be one of {list(TIMESTAMP_FEATURES)}, received "
            f"{timestamp_features!r}; pass e.g. timestamp_features='hour_weekday'."
        )
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, received {strict!r}.")


def _decide(col: Column) -> tuple[str, str, float | None]:
    """``(kind, reason, epoch scale)`` of a column from what the pass saw.

    ``kind`` is ``"numeric"``, ``"categorical"``, ``"timestamp"``, ``"sequence"`` or
    ``"undecided"`` (an integer column settled on the train split by
    :func:`inference.looks_unordered`).
    """
    present = col.rows - col.missing
    if col.role in _LISTED:
        return _decide_listed(col, present)
    if not present:
        return "categorical", "every cell is empty", None
    if col.numeric:
        return _decide_numbers(col, present)
    return _decide_text(col)


_LISTED = ("sequence", "numeric", "categorical", "timestamp")


def _decide_listed(col: Column, present: int) -> tuple[str, str, float | None]:
    """A column the caller listed in ``sequence=``, ``numeric=``, ``categorical=``, ..."""
    if col.role == "sequence":
        return "sequence", "listed in sequence=", None
    if col.role == "numeric":
        return "numeric", "listed in numeric=", None
    if col.role == "categorical":
        listed = "hash_buckets" if col.hashed == "hash_buckets" else "categorical"
        return "categorical", f"listed in {listed}=", None
    scale = None
    if col.numeric and present:
        scale = inference.epoch_scale(col.low, col.high)
        if scale is None:
            raise ValueError(
                f"{col.path}: timestamp column {col.name!r} holds numbers "
                f"{col.low:g}..{col.high:g}, neither epoch seconds nor milliseconds; remove it "
                "from timestamps=."
            )
    return "timestamp", "listed in timestamps=", scale


def _decide_numbers(col: Column, present: int) -> tuple[str, str, float | None]:
    """An unlisted column whose every present cell is a number."""
    scale = inference.epoch_scale(col.low, col.high) if col.integer else None
    if scale is not None and inference.is_time_name(col.name):
        return "timestamp", "time-like name, epoch values", scale
    if not col.integer:
        return "numeric", "numbers", None
    if inference.is_id_name(col.name):
        return "categorical", "integer ids (id-like name)", None
    distinct = col.distinct()
    many = col.limit if distinct is None else distinct
    if present >= 50 and many >= 0.5 * present:
        return "categorical", f"integer ids ({many}+ distinct in {present} rows)", None
    return "undecided", "", None


def _decide_text(col: Column) -> tuple[str, str, float | None]:
    """An unlisted column with text cells (or a non-finite number, or ids beyond 2^53)."""
    name = col.name
    if col.nonfinite is not None:
        line, value = col.nonfinite
        raise ValueError(
            f"{col.path} line {line}: value {value!r} in column {name!r} is not a finite number, "
            "but every other value of the column is a number (it would silently become a "
            "categorical column of text); replace it with an empty cell and pass "
            "numeric_fill= (or a finite number), or list the column in categorical= to read "
            "its values as categories."
        )
    if col.big_id is not None:
        line, value = col.big_id
        _log.info(
            "%s line %d: column %r holds integer ids beyond 2^53 (%s) that a float cannot tell "
            "apart; kept as categorical text so they stay distinct (numeric= makes them "
            "rounded numbers).",
            col.path,
            line,
            name,
            value,
        )
        return "categorical", "integer ids beyond 2^53 (kept as text, distinct)", None
    if col.iso:
        return "timestamp", "ISO date-times", None
    return "categorical", "text", None


def load_csv(
    path: str | os.PathLike[str],
    *,
    label: str,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    sequence: Sequence[str] | None = None,
    drop: Sequence[str] | None = None,
    timestamps: Sequence[str] | None = None,
    timestamp_features: str = "hour_weekday",
    hash_buckets: Mapping[str, int] | None = None,
    max_vocab: int | Mapping[str, int] | None = None,
    hash_threshold: int | None = 100_000,
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    split_mode: str = "random",
    time_column: str | None = None,
    user_column: str | None = None,
    seed: int = 0,
    delimiter: str = ",",
    header: bool | Sequence[str] = True,
    sequence_separator: str = "|",
    sequence_length: int = 20,
    task: str = "binary",
    numeric_fill: float | str | None = None,
    strict: bool = False,
) -> TaskData:
    """Load a CSV file (a header row, or ``header=[names]``) into a :class:`TaskData`.

    Every column but the label and ``drop`` becomes features named after the column
    (characters other than letters, digits and ``_`` become ``_``). Its kind is inferred unless
    listed in ``numeric`` / ``categorical`` / ``sequence`` / ``timestamps`` (overrides); the
    reason is in ``info["columns"][column]["reason"]`` and ``task.summary()``:

    * numbers that are not all integers: **numeric**, one ``float32`` standardised with the
      train mean and std (``schema.metadata["numeric_stats"]``). An empty cell raises
      ``ValueError`` unless ``numeric_fill`` is given (``"mean"``: the train mean; a number:
      that raw value).
    * integers are **categorical** ids when the name says id (``*_id``, ``userId``, ``ip``,
      ``app``, ``device``, ``os``, ``channel``, ...), when nearly every value is distinct, or
      when the values act as codes: on the train split, the label rate per value (cross-fitted)
      predicts the label clearly better than the value order (:mod:`.inference`). Other
      integers (counts, amounts) are numeric. Integers written as digits beyond 2**53 (e.g.
      19- or 30-digit ids), which a float cannot tell apart, are **categorical** text, so
      every id stays distinct (logged at INFO; ``numeric=`` makes them rounded numbers).
    * a column of numbers with an ``inf`` / ``nan`` / ``Infinity`` cell raises ``ValueError``
      (file, line, value): empty the cell (``numeric_fill``) or list the column in
      ``categorical=``; a numeric value too large to standardise (e.g. ``1e300``: the train
      std overflows) raises ``ValueError`` naming its line: scale the column (log) first.
    * ISO date-times (``2017-11-07 09:30:38``), or epoch numbers in a column with a time-like
      name, are **timestamps**: ``timestamp_features="hour_weekday"`` makes two categorical
      features ``<col>_hour`` (ids 1..24) and ``<col>_weekday`` (1 = Monday .. 7), UTC, 0 when
      empty; ``"drop"`` keeps none.
    * anything else is **categorical**: ids from a vocabulary of the TRAIN split (id 0 =
      unknown or empty, ids 1.. by descending frequency, ties by value, at most ``max_vocab``
      values; ``info["vocabularies"][feature]``), or ``crc32(value) % n + 1`` for a column in
      ``hash_buckets={"col": n}`` and for any column with more than ``hash_threshold``
      distinct values (then ``n = hash_threshold``, stated in the summary).
    * **sequence** columns hold ``a|b|c`` tokens, oldest first: ids as above, the last
      ``sequence_length`` tokens, front-padded with 0.

    Every load runs a **leak check** (binary labels): a column that alone predicts the label on
    the train split with AUC >= 0.99 (:data:`inference.LEAK_AUC`; whether a cell is empty
    counts, as for a post-click ``attributed_time``) is logged as a WARNING that names it and
    the fix (``drop=[...]``); ``strict=True`` raises ``ValueError`` instead.

    The file is read once, in chunks, into numpy arrays (memory: a few bytes per cell).

    Args:
        path: the file (``.gz`` accepted), UTF-8.
        label: the label column: 0/1 for ``task="binary"``, class ids ``0..K-1`` for
            ``task="multiclass"`` (``num_classes`` = largest label + 1).
        numeric: columns to read as numbers.
        categorical: columns to read as categories (ids).
        sequence: columns holding ``sequence_separator``-separated token lists.
        drop: columns to leave out (e.g. a leak).
        timestamps: columns to read as date-times (ISO strings or epoch numbers).
        timestamp_features: ``"hour_weekday"`` or ``"drop"``.
        hash_buckets: ``{column: n}`` hashes a categorical or sequence column into ids 1..n.
        max_vocab: cap on vocabulary sizes, one int or ``{column: int}``.
        hash_threshold: columns with more distinct values are hashed into this many buckets
            (None: never; memory then grows with the distinct values).
        batch_size: examples per batch.
        split: fractions of rows for train, validation and test.
        split_mode: ``"random"`` (seeded), ``"time"`` (oldest rows train, newest test, by
            ``time_column``) or ``"by_user"`` (each ``user_column`` value in one split).
        time_column: the time of a row for ``split_mode="time"`` (default: the one timestamp
            column without empty cells).
        user_column: the user of a row for ``split_mode="by_user"`` (default: a column named
            ``user``, ``user_id``, ``uid``, ...).
        seed: seeds the split and the training shuffle.
        delimiter: the one-character field delimiter (``"\\t"`` for TSV).
        header: True (first row), False (no header row: columns ``col_1``..) or column names.
        sequence_separator: the token separator inside sequence cells.
        sequence_length: padded length of sequence features.
        task: ``"binary"`` or ``"multiclass"``.
        numeric_fill: what an empty numeric cell becomes: None (error), ``"mean"`` or a number.
        strict: a leak is a ValueError instead of a warning.

    Returns:
        A :class:`TaskData`; ``info`` holds ``source``, ``rows``, ``columns`` (per column:
        ``features``, ``kind``, ``encoding``, ``vocab_size``, ``buckets``, ``missing``,
        ``reason``), ``ignored_columns``, ``vocabularies``, ``hash_buckets``,
        ``numeric_stats``, ``leaks``, ``split_mode``, ``split_rows`` (data-row indices of each
        split, 0 = the first data row) and ``arrays``.

    Raises:
        ValueError: a bad argument, a leak with ``strict=True``, or a bad file (named with the
            line): missing, empty or header only, unknown column, ragged row, bad label, a
            non-numeric value in a numeric column, an empty numeric cell without
            ``numeric_fill``, an ``inf`` / ``nan`` cell in a column of numbers, a value too
            large to standardise, a corrupt ``.gz`` file.
        TypeError: an argument of the wrong type.

    Example:
        >>> task = load_csv("train.tsv", label="label", delimiter="\\t",
        ...                 header=["label", *[f"I{i}" for i in range(1, 14)],
        ...                         *[f"C{i}" for i in range(1, 27)]],
        ...                 numeric_fill="mean")
        >>> task.info["columns"]["C3"]["encoding"]
        'hash'
    """
    path = check_path(path, "CSV")
    fractions = check_common(batch_size, split, seed)
    if not isinstance(label, str) or not label:
        raise TypeError(f"label must be the label column's name, received {label!r}.")
    _check_options(
        task,
        delimiter,
        sequence_separator,
        header,
        numeric_fill,
        timestamp_features,
        strict,
        hash_threshold,
        sequence_length,
    )
    check_split_mode(split_mode, SPLIT_MODES, "a CSV file")
    lists = {
        arg: _columns_arg(value, arg)
        for arg, value in (
            ("numeric", numeric),
            ("categorical", categorical),
            ("sequence", sequence),
            ("drop", drop),
            ("timestamps", timestamps),
        )
    }
    if hash_buckets is not None and not isinstance(hash_buckets, Mapping):
        raise TypeError(f"hash_buckets must be a dict {{column: n}}, received {hash_buckets!r}.")
    buckets: dict[str, int] = _per_column(hash_buckets or {}, "hash_buckets", "1000")  # type: ignore[assignment]
    caps = _per_column(max_vocab, "max_vocab", "10000")
    for arg, value in (("time_column", time_column), ("user_column", user_column)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{arg} must be a column name, received {value!r}.")

    reader = CsvFile(path, delimiter, header)
    names = reader.read_header()
    roles = _roles(names, label, lists, buckets, caps, time_column, user_column, reader)

    # ------------------------------------------------------------------ the pass
    columns = {
        col: Column(
            col,
            role,
            path,
            buckets=buckets.get(col),
            limit=hash_threshold,
            separator=sequence_separator,
        )
        for col, role in roles.items()
    }
    position = {col: i for i, col in enumerate(names)}
    label_buffer = Buffer(np.float64)
    for lines, rows in reader.chunks():
        cells = list(zip(*rows, strict=True))
        del rows
        label_buffer.append(
            read_labels(tuple(map(str.strip, cells[position[label]])), lines, path, task)
        )
        for col, column in columns.items():
            column.update(tuple(map(str.strip, cells[position[col]])), lines)
        del cells
    label_values = label_buffer.view()
    n = len(label_values)
    num_classes = None
    if task == "multiclass":
        num_classes = int(label_values.max()) + 1
        if num_classes < 2:
            raise ValueError(f"{path}: every label is 0; multiclass needs at least 2 classes.")

    decided = {col: _decide(c) for col, c in columns.items()}
    parts, split_column = _split(
        path, split_mode, n, fractions, seed, columns, decided, time_column, user_column
    )
    train_rows = parts["train"]
    is_train = np.zeros(n, bool)
    is_train[train_rows] = True
    sample = inference.sample_rows(train_rows, seed)
    y_sample = label_values[sample]
    binary = task == "binary"

    built = Build(path, n, is_train, sample, y_sample, binary)
    for col, column in columns.items():  # each column's chunks are freed as it is built
        kind, reason, scale = decided[col]
        built.column(
            column,
            kind,
            reason,
            scale,
            numeric_fill=numeric_fill,
            timestamp_features=timestamp_features,
            cap=caps.get(col) if isinstance(caps, dict) else caps,
            sequence_length=sequence_length,
        )
    if not built.features:
        raise ValueError(
            f"{path} line {max(reader.header_line, 1)}: no feature columns besides the label "
            f"{label!r}; header has {names} "
            f"(dropped: {lists['drop']})."
        )
    label_name = feature_name(label)
    feature_names = [f.name for f in built.features]
    clash = sorted(
        {x for x in feature_names if feature_names.count(x) > 1}
        | ({label_name} & set(feature_names))
    )
    if clash:
        raise ValueError(
            f"{path}: columns map to the same feature name ({clash}) after replacing characters "
            "other than letters, digits and '_' (timestamps add _hour and _weekday); rename "
            "them or drop one."
        )
    if binary:
        fix = "drop={columns} (recipe [data]: drop = {columns})"
        inference.report_leaks(built.leaks, source=path, strict=strict, fix=fix)

    labels = (
        label_values.astype(np.float32).reshape(-1, 1) if binary else label_values.astype(np.int32)
    )
    schema = Schema(
        tuple(built.features),
        label=label_name,
        task=task,
        num_classes=num_classes,
        metadata={
            "source": path,
            "format": "csv",
            "numeric_stats": built.stats,
            "hash_buckets": built.hashed,
            "hash": "crc32(utf-8 value) % n + 1",
            "sequence_separator": sequence_separator,
            "timestamps": "hour id = UTC hour + 1, weekday id = ISO weekday (1 = Monday)",
            "columns": {col: c["features"] for col, c in built.info.items()},
            "split": split_mode,
        },
    )
    arrays = gather(built.arrays, labels, parts)
    info: dict[str, Any] = {
        "source": path,
        "format": "csv",
        "label_column": label,
        "columns": built.info,
        "ignored_columns": [c for c in names if c in lists["drop"]] + built.ignored,
        "vocabularies": built.vocabularies,
        "hash_buckets": built.hashed,
        "numeric_stats": built.stats,
        "leaks": {col: auc for col, (auc, _) in built.leaks.items()},
        "split_mode": split_mode,
        "split_rows": parts,
    }
    if split_column is not None:
        info["split_column"] = split_column
    return build_task(
        arrays, schema, batch_size=batch_size, seed=seed, info=info, fractions=fractions
    )


def _roles(
    names: list[str],
    label: str,
    lists: dict[str, list[str]],
    buckets: dict[str, int],
    caps: Any,
    time_column: str | None,
    user_column: str | None,
    reader: CsvFile,
) -> dict[str, str]:
    """``{column: role}`` for every column but the label and the dropped ones."""
    base = os.path.basename(reader.path)

    def in_header(col: str, arg: str) -> None:
        if col not in names:
            raise ValueError(
                f"column {col!r} (given in {arg}=) not in header of {base} ({reader.path} line "
                f"{max(reader.header_line, 1)}); header has {names}. Fix the name or pass the "
                f"right delimiter= (now {reader.delimiter!r}) or header=."
            )

    in_header(label, "label")
    listed: dict[str, str] = {}
    for arg in ("numeric", "categorical", "sequence", "timestamps", "hash_buckets", "drop"):
        cols = list(buckets) if arg == "hash_buckets" else lists[arg]
        for col in cols:
            in_header(col, arg)
            if col == label:
                raise ValueError(f"column {col!r} is the label; remove it from {arg}=.")
            if col in listed and arg != "hash_buckets":
                raise ValueError(
                    f"column {col!r} is listed in both {listed[col]}= and {arg}=; keep one."
                )
            if arg == "hash_buckets" and listed.get(col) in ("numeric", "timestamps", "drop"):
                raise ValueError(
                    f"column {col!r} is in {listed[col]}= and hash_buckets=; only categorical "
                    "or sequence columns can be hashed."
                )
            listed.setdefault(col, arg)
    if isinstance(caps, dict):
        for col in caps:
            in_header(col, "max_vocab")
    for arg, col in (("time_column", time_column), ("user_column", user_column)):
        if col is not None:
            in_header(col, arg)
            if col in lists["drop"] or col == label:
                raise ValueError(
                    f"{arg}={col!r} is {'the label' if col == label else 'dropped'}; pick "
                    "another column."
                )
    role_of = {
        "numeric": "numeric",
        "categorical": "categorical",
        "sequence": "sequence",
        "timestamps": "timestamp",
        "hash_buckets": "categorical",
    }
    return {
        col: role_of.get(listed.get(col, ""), "auto")
        for col in names
        if col != label and col not in lists["drop"]
    }


def _split(
    path: str,
    mode: str,
    n: int,
    fractions: Sequence[float],
    seed: int,
    columns: dict[str, Column],
    decided: dict[str, tuple[str, str, float | None]],
    time_column: str | None,
    user_column: str | None,
) -> tuple[dict[str, np.ndarray], str | None]:
    """The rows of each split, and the column the split followed (None for random)."""
    if mode == "random":
        return split_rows(mode, n, fractions, seed), None
    if mode == "time":
        col = time_column
        if col is None:
            full = [
                c
                for c, (kind, _, _) in decided.items()
                if kind == "timestamp" and not columns[c].missing
            ]
            if len(full) != 1:
                stamps = [c for c, (kind, _, _) in decided.items() if kind == "timestamp"]
                raise ValueError(
                    f"{path}: split_mode='time' needs the time of each row; "
                    f"{'several' if full else 'no'} timestamp columns without empty cells "
                    f"(timestamp columns: {stamps}); pass time_column='<column>' (recipe "
                    '[data]: time_column = "<column>").'
                )
            col = full[0]
        column = columns[col]
        kind, _, scale = decided[col]
        if kind not in ("timestamp", "numeric", "undecided"):
            raise ValueError(
                f"{path}: time_column={col!r} is {kind}, not a timestamp or number; pass a "
                "date-time column as time_column=."
            )
        if column.missing:
            raise ValueError(
                f"{path} line {column.first_missing}: time_column={col!r} has an empty cell; "
                "fill the times or pick another time_column=."
            )
        times = _peek_times(column, kind, scale)
        return split_rows(mode, n, fractions, seed, times=times), col
    col = user_column
    if col is None:
        found = [c for c in columns if c.lower() in _USER_NAMES]
        if len(found) != 1:
            raise ValueError(
                f"{path}: split_mode='by_user' needs the user of each row; no column is named "
                f"like a user ({', '.join(_USER_NAMES)}); pass user_column='<column>' (recipe "
                "[data]: user_column = \"<column>\"), e.g. user_column='ip'."
            )
        col = found[0]
    column = columns[col]
    buffer = next(b for b in (column.ids, column.floats, column.times) if b is not None)
    groups = buffer.view()
    return split_rows(mode, n, fractions, seed, groups=groups), col


def _peek_times(column: Column, kind: str, scale: float | None) -> np.ndarray:
    """The time column's values (seconds, or numbers) without freeing the chunks."""
    buffer = column.times if kind == "timestamp" and scale is None else column.floats
    assert buffer is not None
    return buffer.view()
