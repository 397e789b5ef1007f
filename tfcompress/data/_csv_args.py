"""The arguments of :func:`~tfcompress.data.csv_loader.load_csv` checked, and each column's
role (listed in ``numeric=``, ``categorical=``, ..., or inferred) read against the header.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tfcompress.data._common import check_int
from tfcompress.data._csv_scan import CsvFile

#: ``timestamp_features`` values.
TIMESTAMP_FEATURES = ("hour_weekday", "drop")


def columns_arg(value: Any, arg: str) -> list[str]:
    """The column names given in ``arg`` (None, one name or a list) as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(c, str) for c in value):
        raise TypeError(
            f"{arg} must be a list of column names, received {value!r}; pass e.g. {arg}=['price']."
        )
    return list(value)


def per_column(value: Any, arg: str, example: str) -> dict[str, int] | int | None:
    """``arg`` checked as one int >= 1 or a ``{column: int}`` dict (None stays None)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): check_int(v, f"{arg}[{k!r}]", 1, example) for k, v in value.items()}
    return check_int(value, arg, 1, example)


def check_options(
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
    """Check the options of :func:`load_csv` that need no file; raise naming the fix."""
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


def column_roles(
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
