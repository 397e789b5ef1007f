"""Each CSV column's kind (numeric, categorical, timestamp, sequence) decided from what the
one pass saw, and the rows of each split (random, by time or by user) for
:func:`~tfcompress.data.csv_loader.load_csv`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from tfcompress.data import inference
from tfcompress.data._common import split_rows
from tfcompress.data._csv_scan import Column

_log = logging.getLogger("tfcompress")

_USER_NAMES = ("user", "user_id", "userid", "uid", "customer_id", "client_id", "visitor_id")


def decide(col: Column) -> tuple[str, str, float | None]:
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


def split_parts(
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
    if buffer is None:  # internal invariant: a time column of these kinds keeps its values
        raise RuntimeError(f"CSV loader: time column {column.name!r} kept no values to split by")
    return buffer.view()
