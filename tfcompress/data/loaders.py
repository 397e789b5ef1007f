"""Loaders for the user's own files: CSV, libFM / libFFM (libSVM) and MovieLens ratings.

Every loader returns the same :class:`~tfcompress.data.schema.TaskData` as the simulated tasks:
batched ``tf.data`` datasets of ``(features dict, label)`` for train / validation / test, the
:class:`~tfcompress.data.schema.Schema` the reference models are built from, and ``info`` with
the source path, the row counts, the vocabularies and the numpy arrays behind each split
(``info["arrays"]["train"] == (features, labels)``).

Conventions shared by all loaders:

* ids are ``int32``; id 0 is padding / out-of-vocabulary / missing; numeric values are
  ``float32``, standardised with the mean and std of the TRAIN split (recorded in
  ``schema.metadata["numeric_stats"]`` so that serving code can reuse them).
* the split is deterministic for a ``seed``; the training dataset is shuffled with that seed;
  validation and test keep file order (MovieLens: user, then time order).
* bad files raise ``ValueError`` naming the file, the line and the problem.

Files ending in ``.gz`` are read through gzip. Text must be UTF-8 (a BOM is accepted).

Example:
    >>> from tfcompress.data import load_csv
    >>> task = load_csv("clicks.csv", label="click", hash_buckets={"user": 10_000})
    >>> features, label = next(iter(task.train))
"""

from __future__ import annotations

import collections
import csv
import gzip
import logging
import math
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np

from tfcompress.data.schema import Feature, Schema, TaskData
from tfcompress.keras_compat import tf

__all__ = ["load_csv", "load_libfm", "load_movielens"]

_log = logging.getLogger("tfcompress")

_SPLITS = ("train", "validation", "test")
_Arrays = tuple[dict[str, np.ndarray], np.ndarray]
_MAX_ID = 2**31 - 1


# --------------------------------------------------------------------------- shared helpers


def _check_int(value: Any, name: str, minimum: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an int, received {value!r} ({type(value).__name__}); "
            f"pass e.g. {name}={example}."
        )
    if value < minimum:
        raise ValueError(
            f"{name} must be >= {minimum}, received {value!r}; pass e.g. {name}={example}."
        )
    return int(value)


def _check_path(path: Any, what: str) -> str:
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


def _check_common(batch_size: Any, split: Any, seed: Any) -> tuple[float, float, float]:
    _check_int(batch_size, "batch_size", 1, "256")
    _check_int(seed, "seed", 0, "0")
    fix = "pass three fractions (train, validation, test) that sum to 1, e.g. split=(0.8, 0.1, 0.1)"
    try:
        parts = tuple(float(s) for s in split)
    except (TypeError, ValueError):
        raise TypeError(f"split must be three numbers, received {split!r}; {fix}.") from None
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


def _open_text(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - returned to a with


def _read_error(path: str, line: int, exc: Exception) -> ValueError:
    if isinstance(exc, UnicodeDecodeError):
        return ValueError(
            f"{path} line {line}: not UTF-8 text ({exc.reason}); re-save the file as UTF-8."
        )
    return ValueError(f"{path} line {line}: cannot read the file ({exc}).")


def _iter_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` for each line of a text file, blank lines skipped."""
    number = 0
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, start=1):  # noqa: B007 - used in the except
                text = line.strip()
                if text:
                    yield number, text
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise _read_error(path, number + 1, exc) from exc


def _parse_float(text: str) -> float | None:
    """The finite float in ``text``, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
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


def _random_split(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Seeded split of ``range(n)``: train in shuffled order, validation and test in file order."""
    n_train, n_val, _ = _split_counts(n, fractions)
    perm = np.random.default_rng(seed).permutation(n)
    return {
        "train": perm[:n_train],
        "validation": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def _standardise(values: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, float, float]:
    train = values[train_rows]
    mean = float(train.mean()) if train.size else 0.0
    std = float(train.std()) if train.size else 1.0
    if not std > 1e-12:
        std = 1.0
    return ((values - mean) / std).astype(np.float32), mean, std


def _finish(
    arrays: dict[str, _Arrays],
    schema: Schema,
    batch_size: int,
    seed: int,
    info: dict[str, Any],
    fractions: Sequence[float],
) -> TaskData:
    """Wrap per-split numpy arrays into batched datasets and a TaskData."""
    datasets = {}
    for name in _SPLITS:
        features, labels = arrays[name]
        ordered = {f.name: features[f.name] for f in schema}
        ds = tf.data.Dataset.from_tensor_slices((ordered, labels))
        if name == "train":
            buffer = max(1, min(len(labels), 100_000))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        datasets[name] = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    info["rows"] = {name: int(len(arrays[name][1])) for name in _SPLITS}
    info["rows"]["total"] = sum(info["rows"].values())
    info["arrays"] = arrays
    for name, fraction in zip(("validation", "test"), fractions[1:], strict=True):
        if fraction > 0 and info["rows"][name] == 0:
            _log.warning(
                "%s: the %s split is empty (%d rows in all).",
                info["source"],
                name,
                info["rows"]["total"],
            )
    return TaskData(datasets["train"], datasets["validation"], datasets["test"], schema, info)


# --------------------------------------------------------------------------- CSV


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
        with _open_text(path) as fh:
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
        raise _read_error(path, last + 1, exc) from exc
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
        return {str(k): _check_int(v, f"{arg}[{k!r}]", 1, example) for k, v in value.items()}
    return _check_int(value, arg, 1, example)


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
    path = _check_path(path, "CSV")
    fractions = _check_common(batch_size, split, seed)
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
    _check_int(sequence_length, "sequence_length", 1, "20")
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
            numeric_like = bool(values) and all(_parse_float(v) is not None for v in values)
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
        value = _parse_float(r[li])
        if task == "binary":
            if value not in (0.0, 1.0):
                raise ValueError(
                    f"{path} line {line}: label {r[li]!r} is not 0 or 1; binary labels must be "
                    "0 or 1 (or pass task='multiclass' for class ids)."
                )
        elif value is None or value < 0 or not float(value).is_integer() or value > _MAX_ID:
            raise ValueError(
                f"{path} line {line}: label {r[li]!r} is not a class id (an integer >= 0)."
            )
        label_values[k] = int(value)
    num_classes = None
    if task == "multiclass":
        num_classes = int(label_values.max()) + 1
        if num_classes < 2:
            raise ValueError(f"{path}: every label is 0; multiclass needs at least 2 classes.")

    parts = _random_split(len(rows), fractions, seed)
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
                value = _parse_float(cell)
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
            standard, mean, std = _standardise(values, train_rows)
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
            ids = np.zeros((len(rows), sequence_length), dtype=np.int32)
            for k, seq in enumerate(tokens):
                seq = seq[-sequence_length:]
                if seq:
                    ids[k, sequence_length - len(seq) :] = [encode(t) for t in seq]
            columns[name] = ids
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
    arrays = {s: ({k: v[idx] for k, v in columns.items()}, labels[idx]) for s, idx in parts.items()}
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
    return _finish(arrays, schema, batch_size, seed, info, fractions)


# --------------------------------------------------------------------------- libFM / libFFM


def load_libfm(
    path: str | os.PathLike[str],
    *,
    n_features: int | None = None,
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    max_fields: int | None = None,
) -> TaskData:
    """Load a libFM / libSVM or libFFM file (public CTR benchmarks) into a :class:`TaskData`.

    Each line is ``label idx:value idx:value ...`` (libFM / libSVM) or
    ``label field:idx:value ...`` (libFFM). The label is 0/1 or -1/+1 (-1 becomes 0).

    Design (the one of the DeepFM / FiBiNET reference code): the data has *fields*, the fields of
    a libFFM file, or the token *positions* of a libFM line (Criteo / Avazu conversions write
    one token per field, in a fixed order). For each field ``f`` the schema has

    * ``field_{f}``: categorical, id = ``idx + 1`` (0 = the field is absent from the line). All
      fields share ``vocab_name="feature_index"`` and so ONE embedding table of
      ``n_features + 1`` rows, indexed by the global feature index;
    * ``value_{f}``: numeric, only for fields whose values are not all 1: the value (0 when the
      field is absent, as in sparse libSVM semantics), standardised with train statistics.

    Fields beyond ``max_fields`` (the highest field ids, or the last positions) are dropped.
    The split is a seeded random split of the lines; blank lines are skipped.

    Args:
        path: the file (``.gz`` accepted).
        n_features: size of the feature index space; indices must be ``< n_features``. None:
            the largest index in the file + 1.
        batch_size: examples per batch.
        split: fractions of lines for train, validation and test.
        seed: seeds the split and the training shuffle.
        max_fields: keep at most this many fields (None: all).

    Returns:
        A :class:`TaskData` with label ``"label"`` (task ``"binary"``); ``info`` holds
        ``source``, ``format`` (``"libfm"`` or ``"libffm"``), ``rows``, ``n_features``,
        ``fields``, ``numeric_fields``, ``dropped_tokens``, ``numeric_stats`` and ``arrays``.

    Raises:
        ValueError: a bad argument or file (with file and line): empty file, bad token, label
            not 0/1/-1, index >= ``n_features``, a field repeated in a libFFM line.
        TypeError: an argument of the wrong type.

    Example:
        >>> task = load_libfm("criteo.libsvm", n_features=1_000_000, max_fields=39)
        >>> task.schema["field_0"].vocab_name
        'feature_index'
    """
    path = _check_path(path, "libFM")
    fractions = _check_common(batch_size, split, seed)
    if n_features is not None:
        _check_int(n_features, "n_features", 1, "1_000_000")
        if n_features >= _MAX_ID:
            raise ValueError(f"n_features must be < {_MAX_ID} (int32 ids), got {n_features}.")
    if max_fields is not None:
        _check_int(max_fields, "max_fields", 1, "39")

    labels: list[float] = []
    lines: list[list[tuple[int, int, float]]] = []
    mode: str | None = None
    mode_line = 0
    for number, text in _iter_lines(path):
        tokens = text.split()
        label = _parse_float(tokens[0])
        if label not in (0.0, 1.0, -1.0):
            raise ValueError(
                f"{path} line {number}: label {tokens[0]!r} is not 0/1 or -1/+1; each line must "
                "start with the label, e.g. '1 3:1 17:0.5'."
            )
        entries: list[tuple[int, int, float]] = []
        seen: set[int] = set()
        for pos, token in enumerate(tokens[1:]):
            parts = token.split(":")
            kind = "libfm" if len(parts) == 2 else "libffm" if len(parts) == 3 else None
            try:
                field = pos if len(parts) == 2 else int(parts[0])
                index, value = int(parts[-2]), float(parts[-1])
            except (ValueError, IndexError):
                kind = None
            if kind is None or field < 0 or index < 0 or not math.isfinite(value):
                raise ValueError(
                    f"{path} line {number}: token {token!r} is not idx:value or "
                    "field:idx:value (non-negative integers, a finite value)."
                )
            if mode is None:
                mode, mode_line = kind, number
            elif kind != mode:
                raise ValueError(
                    f"{path} line {number}: token {token!r} is {kind} but line {mode_line} "
                    f"was {mode}; a file holds one format."
                )
            if n_features is not None and index >= n_features:
                raise ValueError(
                    f"{path} line {number}: feature index {index} >= n_features={n_features}; "
                    "raise n_features or pass n_features=None to infer it."
                )
            if field in seen:
                raise ValueError(
                    f"{path} line {number}: field {field} appears twice; this loader takes one "
                    "feature per field."
                )
            seen.add(field)
            entries.append((field, index, value))
        labels.append(1.0 if label == 1.0 else 0.0)
        lines.append(entries)
    if not lines:
        raise ValueError(
            f"{path} line 1: file is empty; expected lines like '1 3:1 17:0.5' (libFM) or "
            "'1 0:3:1 1:17:0.5' (libFFM)."
        )
    all_fields = sorted({f for entries in lines for f, _, _ in entries})
    if not all_fields:
        raise ValueError(f"{path} line 1: no line has a feature token (only labels).")
    fields = all_fields[:max_fields] if max_fields is not None else all_fields
    column = {f: j for j, f in enumerate(fields)}
    max_index = max(i for entries in lines for _, i, _ in entries)
    if n_features is None:
        n_features = max_index + 1
        if n_features >= _MAX_ID:
            raise ValueError(f"{path}: feature index {max_index} does not fit an int32 id.")

    n, width = len(lines), len(fields)
    ids = np.zeros((n, width), dtype=np.int32)
    values = np.zeros((n, width), dtype=np.float64)
    not_one = np.zeros(width, dtype=bool)
    dropped = 0
    for k, entries in enumerate(lines):
        for field, index, value in entries:
            j = column.get(field)
            if j is None:
                dropped += 1
                continue
            ids[k, j] = index + 1
            values[k, j] = value
            not_one[j] |= value != 1.0
    if dropped:
        _log.info(
            "%s: dropped %d tokens of fields beyond max_fields=%s.", path, dropped, max_fields
        )

    parts = _random_split(n, fractions, seed)
    columns: dict[str, np.ndarray] = {}
    features = []
    for j, f in enumerate(fields):
        columns[f"field_{f}"] = ids[:, j : j + 1]
        features.append(
            Feature(
                f"field_{f}", "categorical", vocab_size=n_features + 1, vocab_name="feature_index"
            )
        )
    stats: dict[str, dict[str, float]] = {}
    for j, f in enumerate(fields):
        if not_one[j]:
            standard, mean, std = _standardise(values[:, j], parts["train"])
            columns[f"value_{f}"] = standard.reshape(-1, 1)
            stats[f"value_{f}"] = {"mean": mean, "std": std}
            features.append(Feature(f"value_{f}", "numeric"))
    label_array = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    schema = Schema(
        tuple(features),
        label="label",
        task="binary",
        metadata={"source": path, "format": mode, "numeric_stats": stats, "id": "index + 1"},
    )
    arrays = {
        s: ({k: v[idx] for k, v in columns.items()}, label_array[idx]) for s, idx in parts.items()
    }
    info: dict[str, Any] = {
        "source": path,
        "format": mode,
        "n_features": n_features,
        "fields": fields,
        "numeric_fields": [f for j, f in enumerate(fields) if not_one[j]],
        "dropped_tokens": dropped,
        "numeric_stats": stats,
    }
    return _finish(arrays, schema, batch_size, seed, info, fractions)


# --------------------------------------------------------------------------- MovieLens


def _remap(raw: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Raw ids -> ids 1..n in sorted order (numeric when every id is an integer)."""
    try:
        keys: np.ndarray = np.array([int(x) for x in raw], dtype=np.int64)
    except ValueError:
        keys = np.array(raw)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return inverse.astype(np.int64) + 1, {str(k): i + 1 for i, k in enumerate(uniq.tolist())}


def _in_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def _sample_negatives(
    rng: np.random.Generator, users: np.ndarray, n_items: int, seen: np.ndarray, k: int
) -> np.ndarray:
    """``(len(users), k)`` items each user never interacted with (0 where none is left)."""
    stride = n_items + 1
    out = rng.integers(1, n_items + 1, size=(len(users), k))
    base = np.repeat(users.astype(np.int64) * stride, k).reshape(out.shape)
    bad = np.flatnonzero(_in_sorted(base + out, seen))
    flat_out, flat_base = out.reshape(-1), base.reshape(-1)
    for _ in range(30):
        if not bad.size:
            break
        flat_out[bad] = rng.integers(1, n_items + 1, size=bad.size)
        bad = bad[_in_sorted(flat_base[bad] + flat_out[bad], seen)]
    if bad.size:  # users who have seen nearly every item: draw from their complement
        for user in np.unique(flat_base[bad] // stride):
            rows = bad[flat_base[bad] // stride == user]
            lo, hi = np.searchsorted(seen, [user * stride, (user + 1) * stride])
            free = np.setdiff1d(np.arange(1, n_items + 1), seen[lo:hi] - user * stride)
            flat_out[rows] = rng.choice(free, size=rows.size) if free.size else 0
    return out


def load_movielens(
    path: str | os.PathLike[str],
    *,
    sep: str | None = None,
    min_rating: float = 4.0,
    sequence_length: int = 20,
    negatives: int = 4,
    task: str = "ctr",
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> TaskData:
    """Load MovieLens-style ratings into an implicit-feedback CTR or retrieval :class:`TaskData`.

    Each line is ``user, item, rating, timestamp`` separated by ``sep``: ``ratings.dat``
    (``"::"``), ``u.data`` (tab) or ``ratings.csv`` (``","``, with a header). ``sep=None``
    detects the separator from the first line; a first line whose rating and timestamp are not
    numbers is a header. Users and items get ids ``1..n`` in sorted raw-id order
    (``info["vocabularies"]``); every item of the file is in the catalogue.

    Ratings ``>= min_rating`` are positives, ordered by timestamp per user (ties: file order).
    Each positive gets the user's previous positives as ``hist_item_ids`` (the last
    ``sequence_length``, most recent last, front-padded with 0; it shares ``vocab_name``
    ``"item_id"``).

    * ``task="ctr"``: each positive (label ``click`` = 1) plus ``negatives`` items the user never
      rated (label 0), drawn uniformly with replacement with the seed, sharing the positive's
      user, history and split. Features ``user_id``, ``item_id``, ``hist_item_ids``.
    * ``task="retrieval"``: one example per positive, label ``next_item`` = its item id, schema
      task ``"retrieval"`` with ``num_classes = n_items + 1``; features ``user_id``,
      ``hist_item_ids`` (group ``"user"``) and ``item_id`` (group ``"item"``);
      ``info["catalog"] = {"item_id": ids 0..n_items as an (n_items + 1, 1) array}``.

    The split is by TIME per user (leave-last-out): of a user's ``k`` positives the last
    ``max(1, floor(k * split[2]))`` go to test, the ones before them
    ``max(1, floor(k * split[1]))`` to validation (none where the fraction is 0), the rest to
    train. Users with fewer than 3 positives stay in train. Train is shuffled with the seed;
    validation and test are in user, then time order.

    Args:
        path: the ratings file (``.gz`` accepted).
        sep: the field separator; None detects ``"::"``, tab or ``","``.
        min_rating: the smallest rating that counts as a positive.
        sequence_length: padded length of ``hist_item_ids``.
        negatives: sampled negatives per positive (``task="ctr"``; >= 1).
        task: ``"ctr"`` or ``"retrieval"``.
        batch_size: examples per batch.
        split: fractions of each user's positives for train, validation and test (by time).
        seed: seeds the negatives and the training shuffle.

    Returns:
        A :class:`TaskData`; ``info`` holds ``source``, ``sep``, ``header``, ``rows``,
        ``n_users``, ``n_items``, ``n_interactions``, ``n_positives``, ``vocabularies``,
        ``arrays`` and, for retrieval, ``catalog``.

    Raises:
        ValueError: a bad argument or file (with file and line): empty file, wrong number of
            fields, non-numeric rating or timestamp, no rating >= ``min_rating``.
        TypeError: an argument of the wrong type.

    Example:
        >>> task = load_movielens("ml-1m/ratings.dat", task="retrieval")
        >>> task.info["catalog"]["item_id"].shape[1]
        1
    """
    path = _check_path(path, "MovieLens ratings")
    fractions = _check_common(batch_size, split, seed)
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise ValueError(f"sep must be None (detect) or a non-empty string, received {sep!r}.")
    if (
        isinstance(min_rating, bool)
        or not isinstance(min_rating, (int, float))
        or not (math.isfinite(min_rating))
    ):
        raise TypeError(f"min_rating must be a finite number, received {min_rating!r}; e.g. 4.0.")
    _check_int(sequence_length, "sequence_length", 1, "20")
    if task not in ("ctr", "retrieval"):
        raise ValueError(f"task must be 'ctr' or 'retrieval', received {task!r}.")
    _check_int(negatives, "negatives", 1 if task == "ctr" else 0, "4")

    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    header = False
    for number, text in _iter_lines(path):
        if sep is None:
            sep = next((s for s in ("::", "\t", ",") if s in text), None)
            if sep is None:
                raise ValueError(
                    f"{path} line {number}: cannot tell the separator (no '::', tab or ','); "
                    "pass sep=."
                )
        fields = [f.strip() for f in text.split(sep)]
        if len(fields) != 4:
            raise ValueError(
                f"{path} line {number}: expected 4 fields (user, item, rating, timestamp) "
                f"separated by {sep!r}, found {len(fields)}; fix the line or pass sep=."
            )
        rating, time = _parse_float(fields[2]), _parse_float(fields[3])
        if not users and not header and rating is None and time is None:
            header = True
            continue
        if rating is None:
            raise ValueError(f"{path} line {number}: rating {fields[2]!r} is not a number.")
        if time is None:
            raise ValueError(f"{path} line {number}: timestamp {fields[3]!r} is not a number.")
        users.append(fields[0])
        items.append(fields[1])
        ratings.append(rating)
        times.append(time)
    if not users:
        raise ValueError(
            f"{path} line 1: file is empty{' (header only)' if header else ''}; expected lines "
            "'user::item::rating::timestamp'."
        )
    user_ids, user_vocab = _remap(users)
    item_ids, item_vocab = _remap(items)
    n_users, n_items = len(user_vocab), len(item_vocab)
    rating_arr, time_arr = np.asarray(ratings), np.asarray(times)
    positive = np.flatnonzero(rating_arr >= min_rating)
    if not positive.size:
        raise ValueError(
            f"{path}: no rating >= min_rating={min_rating} among {len(users)} interactions "
            f"(ratings range {rating_arr.min()}..{rating_arr.max()}); lower min_rating."
        )
    # positives sorted by user, then time, then file order
    order = positive[np.lexsort((positive, time_arr[positive], user_ids[positive]))]
    pu, pi = user_ids[order], item_ids[order]
    m = len(order)
    new_user = np.r_[True, pu[1:] != pu[:-1]]
    start = np.flatnonzero(new_user)
    group = np.cumsum(new_user) - 1
    size = np.diff(np.r_[start, m])[group]
    rank = np.arange(m) - start[group]

    def part(fraction: float) -> np.ndarray:
        n = np.floor(size * fraction).astype(np.int64)
        return np.where(size >= 3, np.maximum(n, 1 if fraction > 0 else 0), 0)

    n_test = np.minimum(part(fractions[2]), np.maximum(size - 1, 0))
    n_val = np.minimum(part(fractions[1]), np.maximum(size - 1 - n_test, 0))
    role = np.zeros(m, dtype=np.int64)  # 0 train, 1 validation, 2 test
    role[rank >= size - n_test - n_val] = 1
    role[rank >= size - n_test] = 2

    hist = np.zeros((m, sequence_length), dtype=np.int32)
    for back in range(1, sequence_length + 1):
        src = np.arange(m) - back
        ok = (src >= 0) & (rank >= back)
        hist[ok, sequence_length - back] = pi[src[ok]]

    rng = np.random.default_rng(seed)
    user_f = Feature("user_id", "categorical", vocab_size=n_users + 1, group="user")
    item_f = Feature("item_id", "categorical", vocab_size=n_items + 1, group="item")
    hist_f = Feature(
        "hist_item_ids",
        "sequence",
        vocab_size=n_items + 1,
        length=sequence_length,
        vocab_name="item_id",
        group="user",
    )
    if task == "ctr":
        seen = np.unique(user_ids * (n_items + 1) + item_ids)
        negs = _sample_negatives(rng, pu, n_items, seen, negatives)
        block = 1 + negatives
        ex_items = np.concatenate([pi[:, None], negs], axis=1).reshape(-1)
        keep = ex_items > 0
        columns = {
            "user_id": np.repeat(pu, block)[keep],
            "item_id": ex_items[keep],
            "hist_item_ids": np.repeat(hist, block, axis=0)[keep],
        }
        labels = np.tile(np.r_[1.0, np.zeros(negatives)], m)[keep].astype(np.float32)
        labels = labels.reshape(-1, 1)
        ex_role = np.repeat(role, block)[keep]
        if not keep.all():
            _log.warning(
                "%s: %d negatives could not be drawn (users who rated every item).",
                path,
                int((~keep).sum()),
            )
        schema = Schema(
            (user_f, item_f, hist_f),
            label="click",
            task="binary",
            metadata={
                "source": path,
                "format": "movielens",
                "min_rating": min_rating,
                "negatives": negatives,
                "split": "time per user",
            },
        )
    else:
        columns = {"user_id": pu, "hist_item_ids": hist, "item_id": pi}
        labels = pi.astype(np.int32)
        ex_role = role
        if n_items + 1 < 2:  # pragma: no cover - n_items >= 1 always
            raise ValueError(f"{path}: retrieval needs at least one item.")
        schema = Schema(
            (user_f, hist_f, item_f),
            label="next_item",
            task="retrieval",
            num_classes=n_items + 1,
            metadata={
                "source": path,
                "format": "movielens",
                "min_rating": min_rating,
                "split": "time per user",
            },
        )
    columns = {
        k: v.astype(np.int32).reshape(-1, 1) if v.ndim == 1 else v.astype(np.int32)
        for k, v in columns.items()
    }
    arrays: dict[str, _Arrays] = {}
    for code, name in enumerate(_SPLITS):
        idx = np.flatnonzero(ex_role == code)
        if name == "train":
            idx = rng.permutation(idx)
        arrays[name] = ({k: v[idx] for k, v in columns.items()}, labels[idx])
    info: dict[str, Any] = {
        "source": path,
        "format": "movielens",
        "sep": sep,
        "header": header,
        "task": task,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": len(users),
        "n_positives": m,
        "vocabularies": {"user_id": user_vocab, "item_id": item_vocab},
        "split_policy": "time per user: last positives to test, the ones before to validation",
    }
    if task == "retrieval":
        info["catalog"] = {"item_id": np.arange(n_items + 1, dtype=np.int32).reshape(-1, 1)}
    return _finish(arrays, schema, batch_size, seed, info, fractions)
