"""Load a CSV (or any delimited) file: :func:`load_csv`, streamed once in chunks.

Example:
    >>> from tfcompress.data import load_csv
    >>> task = load_csv("clicks.csv", label="click", drop=["attributed_time"])  # doctest: +SKIP
    >>> print(task.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfcompress.data import inference
from tfcompress.data._common import (
    SPLIT_MODES,
    build_task,
    check_common,
    check_path,
    check_split_mode,
)
from tfcompress.data._csv_args import TIMESTAMP_FEATURES as TIMESTAMP_FEATURES  # re-exported
from tfcompress.data._csv_args import check_options, column_roles, columns_arg, per_column
from tfcompress.data._csv_build import Build, feature_name, gather
from tfcompress.data._csv_kinds import decide, split_parts
from tfcompress.data._csv_scan import Buffer, Column, CsvFile, read_labels
from tfcompress.data.schema import Schema, TaskData

__all__ = ["load_csv"]


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
    check_options(
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
        arg: columns_arg(value, arg)
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
    buckets: dict[str, int] = per_column(hash_buckets or {}, "hash_buckets", "1000")  # type: ignore[assignment]
    caps = per_column(max_vocab, "max_vocab", "10000")
    for arg, value in (("time_column", time_column), ("user_column", user_column)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{arg} must be a column name, received {value!r}.")

    reader = CsvFile(path, delimiter, header)
    names = reader.read_header()
    roles = column_roles(names, label, lists, buckets, caps, time_column, user_column, reader)

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

    decided = {col: decide(c) for col, c in columns.items()}
    parts, split_column = split_parts(
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
