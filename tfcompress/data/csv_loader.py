"""Load a CSV file with a header row: :func:`load_csv`.

The conventions shared by all loaders (int32 ids with 0 = padding / unknown, numeric values
standardised with train statistics, a seeded split, errors naming the file and line) are listed
in :mod:`tfcompress.data`.

Example:
    >>> from tfcompress.data import load_csv
    >>> task = load_csv("clicks.csv", label="click", hash_buckets={"user": 10_000})
    >>> features, label = next(iter(task.train))
"""

from __future__ import annotations

import collections
import csv
import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress.data._common import (
    MAX_ID,
    build_task,
    check_common,
    check_int,
    check_path,
    gather_splits,
    open_text,
    pad_trailing,
    parse_float,
    random_split,
    read_error,
    standardise,
)
from tfcompress.data.schema import Feature, Schema, TaskData

__all__ = ["load_csv"]

_log = logging.getLogger("tfcompress")


def _feature_name(column: str) -> str:
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in column.strip())
    if not name or not name.isidentifier():
        name = f"f_{name}"
    return name


def _read_csv(path: str, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    last = 0
    try:
        with open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            for fields in reader:
                start, last = last + 1, reader.line_num
                if len(fields) <= 1 and not "".join(fields).strip():
                    continue  # a blank line
                if header is None:
                    header = [f.strip() for f in fields]
                    for i, name in enumerate(header):
                        if not name:
                            raise ValueError(
                                f"{path} line {start}: header column {i + 1} has an empty name; "
                                f"name every column (header: {header})."
                            )
                    dupes = sorted({h for h in header if header.count(h) > 1})
                    if dupes:
                        raise ValueError(
                            f"{path} line {start}: header repeats column(s) {dupes}; "
                            "give every column a distinct name."
                        )
                    continue
                if len(fields) != len(header):
                    raise ValueError(
                        f"{path} line {start}: row has {len(fields)} fields but the header has "
                        f"{len(header)} (delimiter {delimiter!r}); fix the row (quote values "
                        "that contain the delimiter) or pass the right delimiter=."
                    )
                rows.append((start, [f.strip() for f in fields]))
    except csv.Error as exc:
        raise ValueError(f"{path} line {last + 1}: malformed CSV ({exc}).") from exc
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise read_error(path, last + 1, exc) from exc
    if header is None:
        raise ValueError(
            f"{path} line 1: file is empty; a CSV file needs a header row and data rows."
        )
    if not rows:
        raise ValueError(
            f"{path} line {last + 1}: no data rows after the header (header only); "
            "add at least one data row."
        )
    return header, rows


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


def _vocabulary(token_lists: list[list[str]], cap: int | None) -> tuple[dict[str, int], int]:
    """``token -> id`` by descending train frequency (ties by token), ids from 1; dropped count."""
    counts = collections.Counter(t for tokens in token_lists for t in tokens)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    dropped = 0
    if cap is not None and len(ranked) > cap:
        dropped = len(ranked) - cap
        ranked = ranked[:cap]
    return {token: i + 1 for i, (token, _) in enumerate(ranked)}, dropped


def _stable_hash(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % buckets + 1


def load_csv(
    path: str | os.PathLike[str],
    *,
    label: str,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    sequence: Sequence[str] | None = None,
    hash_buckets: Mapping[str, int] | None = None,
    max_vocab: int | Mapping[str, int] | None = None,
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    delimiter: str = ",",
    sequence_separator: str = "|",
    sequence_length: int = 20,
    task: str = "binary",
    numeric_fill: float | str | None = None,
) -> TaskData:
    """Load a CSV file with a header row into a :class:`TaskData`.

    Columns become features named after the column (characters other than letters, digits and
    ``_`` become ``_``; ``info["columns"]`` maps each column to its feature):

    * numeric columns: one ``float32`` feature of length 1 each, standardised with the mean and
      std of the train split (``schema.metadata["numeric_stats"]``). An empty numeric cell raises
      ``ValueError`` unless ``numeric_fill`` is given: ``"mean"`` fills the train mean (0 after
      standardisation), a number fills that raw value.
    * categorical columns: ids from a vocabulary of the TRAIN split (id 0 = unknown or empty,
      ids 1.. by descending frequency, ties by value, at most ``max_vocab`` values) stored in
      ``info["vocabularies"][feature]`` as ``{value: id}``; or, for columns in
      ``hash_buckets={"col": n}``, ``crc32(value) % n + 1`` (stable across runs and machines).
    * sequence columns hold ``a|b|c`` tokens, oldest first: ids as for categorical columns,
      truncated to the last ``sequence_length`` tokens and front-padded with 0 (most recent
      last). Unknown tokens become 0 as well.
    * if ``numeric`` and ``categorical`` are both None, every other column is inferred: numeric
      when each non-empty value parses as a finite float, else categorical. When either is
      given, unlisted columns are ignored (``info["ignored_columns"]``); a column listed only in
      ``hash_buckets`` is categorical.

    Blank lines are skipped. The split is a seeded random split of the rows.

    Args:
        path: the CSV file (``.gz`` accepted), UTF-8, with a header row.
        label: the label column: 0/1 for ``task="binary"``, integer classes ``0..K-1`` for
            ``task="multiclass"`` (``num_classes`` = largest label + 1).
        numeric: numeric columns.
        categorical: categorical columns.
        sequence: columns holding ``sequence_separator``-separated token lists.
        hash_buckets: ``{column: n}`` hashes a categorical or sequence column into ids ``1..n``.
        max_vocab: cap on the vocabulary size (without id 0), one int for every column or
            ``{column: int}``.
        batch_size: examples per batch.
        split: fractions of rows for train, validation and test.
        seed: seeds the split and the training shuffle.
        delimiter: the field delimiter.
        sequence_separator: the token separator inside sequence cells.
        sequence_length: padded length of sequence features.
        task: ``"binary"`` or ``"multiclass"``.
        numeric_fill: what an empty numeric cell becomes: None (error), ``"mean"`` or a number.

    Returns:
        A :class:`TaskData`; ``info`` holds ``source``, ``rows``, ``columns``,
        ``ignored_columns``, ``vocabularies``, ``hash_buckets``, ``numeric_stats`` and
        ``arrays``.

    Raises:
        ValueError: a bad argument, or a bad file (named with the line): missing, empty or header
            only, unknown column, ragged row, bad label, non-numeric value in a numeric column.
        TypeError: an argument of the wrong type.

    Example:
        >>> task = load_csv("clicks.csv", label="click", numeric=["price"],
        ...                 categorical=["brand"], hash_buckets={"user": 100_000},
        ...                 sequence=["viewed"], sequence_length=10)
        >>> task.schema["viewed"].shape
        (10,)
    """
    path = check_path(path, "CSV")
    fractions = check_common(batch_size, split, seed)
    if not isinstance(label, str) or not label:
        raise TypeError(f"label must be the label column's name, received {label!r}.")
    if task not in ("binary", "multiclass"):
        raise ValueError(f"task must be 'binary' or 'multiclass', received {task!r}.")
    for arg, value in (("delimiter", delimiter), ("sequence_separator", sequence_separator)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{arg} must be a non-empty string, received {value!r}.")
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, received {delimiter!r}; e.g. ','.")
    if sequence_separator == delimiter:
        raise ValueError(
            f"sequence_separator {sequence_separator!r} equals the delimiter; pick another, "
            "e.g. sequence_separator='|'."
        )
    check_int(sequence_length, "sequence_length", 1, "20")
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
            f"numeric_fill must be None, 'mean' or a finite number, received {numeric_fill!r}."
        )
    num_cols = _columns_arg(numeric, "numeric")
    cat_cols = _columns_arg(categorical, "categorical")
    seq_cols = _columns_arg(sequence, "sequence")
    if hash_buckets is not None and not isinstance(hash_buckets, Mapping):
        raise TypeError(f"hash_buckets must be a dict {{column: n}}, received {hash_buckets!r}.")
    buckets = _per_column(hash_buckets or {}, "hash_buckets", "1000")
    caps = _per_column(max_vocab, "max_vocab", "10000")

    header, rows = _read_csv(path, delimiter)
    base = os.path.basename(path)

    def in_header(col: str, arg: str) -> None:
        if col not in header:
            raise ValueError(
                f"column {col!r} (given in {arg}=) not in header of {base} ({path} line 1); "
                f"header has {header}. Fix the name or pass the right delimiter= "
                f"(now {delimiter!r})."
            )

    in_header(label, "label")
    listed: dict[str, str] = {}
    for arg, cols in (
        ("numeric", num_cols),
        ("categorical", cat_cols),
        ("sequence", seq_cols),
        ("hash_buckets", list(buckets)),
    ):
        for col in cols:
            in_header(col, arg)
            if col == label:
                raise ValueError(f"column {col!r} is the label; remove it from {arg}=.")
            if col in listed and arg != "hash_buckets":
                raise ValueError(
                    f"column {col!r} is listed in both {listed[col]}= and {arg}=; keep one."
                )
            listed.setdefault(col, arg)
    for col in buckets:
        if col in num_cols:
            raise ValueError(
                f"column {col!r} is numeric and in hash_buckets=; only categorical or sequence "
                "columns can be hashed."
            )
    if caps is not None and isinstance(caps, dict):
        for col in caps:
            in_header(col, "max_vocab")

    kinds: dict[str, str] = {}
    position = {col: i for i, col in enumerate(header)}
    for col in header:
        if col == label:
            continue
        if col in seq_cols:
            kinds[col] = "sequence"
        elif col in num_cols:
            kinds[col] = "numeric"
        elif col in cat_cols or col in buckets:
            kinds[col] = "categorical"
        elif numeric is None and categorical is None:
            values = [r[position[col]] for _, r in rows if r[position[col]]]
            numeric_like = bool(values) and all(parse_float(v) is not None for v in values)
            kinds[col] = "numeric" if numeric_like else "categorical"
    ignored = [c for c in header if c != label and c not in kinds]
    if not kinds:
        raise ValueError(
            f"{path} line 1: no feature columns besides the label {label!r}; header has {header}."
        )
    names = {col: _feature_name(col) for col in kinds}
    label_name = _feature_name(label)
    clash = sorted(n for n in set(names.values()) if list(names.values()).count(n) > 1)
    if clash or label_name in names.values():
        raise ValueError(
            f"{path} line 1: columns map to the same feature name ({clash or [label_name]}) "
            "after replacing characters other than letters, digits and '_'; rename them."
        )

    # labels
    label_values = np.zeros(len(rows), dtype=np.int64)
    li = position[label]
    for k, (line, r) in enumerate(rows):
        value = parse_float(r[li])
        if task == "binary":
            if value not in (0.0, 1.0):
                raise ValueError(
                    f"{path} line {line}: label {r[li]!r} is not 0 or 1; binary labels must be "
                    "0 or 1 (or pass task='multiclass' for class ids)."
                )
        elif value is None or value < 0 or not float(value).is_integer() or value > MAX_ID:
            raise ValueError(
                f"{path} line {line}: label {r[li]!r} is not a class id (an integer >= 0)."
            )
        label_values[k] = int(value)
    num_classes = None
    if task == "multiclass":
        num_classes = int(label_values.max()) + 1
        if num_classes < 2:
            raise ValueError(f"{path}: every label is 0; multiclass needs at least 2 classes.")

    parts = random_split(len(rows), fractions, seed)
    train_rows = parts["train"]
    columns: dict[str, np.ndarray] = {}
    features: list[Feature] = []
    vocabularies: dict[str, dict[str, int]] = {}
    hashed: dict[str, int] = {}
    stats: dict[str, dict[str, float]] = {}
    for col, kind in kinds.items():
        name, ci = names[col], position[col]
        if kind == "numeric":
            values = np.empty(len(rows), dtype=np.float64)
            for k, (line, r) in enumerate(rows):
                cell = r[ci]
                if not cell:
                    if numeric_fill is None:
                        raise ValueError(
                            f"{path} line {line}: empty value in numeric column {col!r}; fill "
                            "it, pass numeric_fill='mean' (or a number), or make the column "
                            "categorical."
                        )
                    values[k] = np.nan
                    continue
                value = parse_float(cell)
                if value is None:
                    raise ValueError(
                        f"{path} line {line}: value {cell!r} in numeric column {col!r} is not a "
                        "finite number; fix it or list the column in categorical=."
                    )
                values[k] = value
            missing = np.isnan(values)
            if missing.any():
                if numeric_fill == "mean":
                    known = values[train_rows][~missing[train_rows]]
                    fill = float(known.mean()) if known.size else 0.0
                else:
                    fill = float(numeric_fill)  # type: ignore[arg-type]
                values[missing] = fill
            standard, mean, std = standardise(values, train_rows)
            columns[name] = standard.reshape(-1, 1)
            stats[name] = {"mean": mean, "std": std}
            features.append(Feature(name, "numeric"))
            continue
        if kind == "sequence":
            tokens = [
                [t.strip() for t in r[ci].split(sequence_separator) if t.strip()] for _, r in rows
            ]
        else:
            tokens = [[r[ci]] if r[ci] else [] for _, r in rows]
        if col in buckets:
            n = buckets[col]  # type: ignore[index]
            hashed[name] = n
            size = n + 1
            lookup = None
        else:
            cap = caps.get(col) if isinstance(caps, dict) else caps
            lookup, dropped = _vocabulary([tokens[i] for i in train_rows], cap)
            if dropped:
                _log.info(
                    "%s: column %r keeps %d of %d values (max_vocab).",
                    path,
                    col,
                    len(lookup),
                    len(lookup) + dropped,
                )
            vocabularies[name] = lookup
            size = max(2, len(lookup) + 1)

        def encode(token: str, lookup: dict[str, int] | None = lookup, col: str = col) -> int:
            return lookup.get(token, 0) if lookup is not None else _stable_hash(token, buckets[col])

        if kind == "categorical":
            ids = np.array([encode(t[0]) if t else 0 for t in tokens], dtype=np.int32)
            columns[name] = ids.reshape(-1, 1)
            features.append(Feature(name, "categorical", vocab_size=size))
        else:
            lengths = np.array([len(seq) for seq in tokens], dtype=np.int64)
            flat = np.array([encode(t) for seq in tokens for t in seq], dtype=np.int32)
            columns[name] = pad_trailing(flat, np.cumsum(lengths), lengths, sequence_length)
            features.append(Feature(name, "sequence", vocab_size=size, length=sequence_length))

    if task == "binary":
        labels = label_values.astype(np.float32).reshape(-1, 1)
    else:
        labels = label_values.astype(np.int32)
    schema = Schema(
        tuple(features),
        label=label_name,
        task=task,
        num_classes=num_classes,
        metadata={
            "source": path,
            "format": "csv",
            "numeric_stats": stats,
            "hash_buckets": hashed,
            "hash": "crc32(utf-8 value) % n + 1",
            "sequence_separator": sequence_separator,
            "columns": {col: names[col] for col in kinds},
        },
    )
    arrays = gather_splits(columns, labels, parts)
    info: dict[str, Any] = {
        "source": path,
        "format": "csv",
        "label_column": label,
        "columns": {
            col: {
                "feature": names[col],
                "kind": kind,
                "encoding": "standardised"
                if kind == "numeric"
                else ("hash" if col in buckets else "vocabulary"),
            }
            for col, kind in kinds.items()
        },
        "ignored_columns": ignored,
        "vocabularies": vocabularies,
        "hash_buckets": hashed,
        "numeric_stats": stats,
    }
    return build_task(
        arrays, schema, batch_size=batch_size, seed=seed, info=info, fractions=fractions
    )
