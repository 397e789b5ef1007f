"""Load a libFM / libSVM or libFFM file (public CTR benchmarks): :func:`load_libfm`.

Example:
    >>> from tfcompress.data import load_libfm
    >>> task = load_libfm("criteo.libsvm", n_features=1_000_000, max_fields=39)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress._validation import check_bool
from tfcompress.data import inference
from tfcompress.data._common import (
    MAX_ID,
    build_task,
    check_common,
    check_int,
    check_path,
    check_split_mode,
    gather_splits,
    iter_lines,
    parse_float,
    random_split,
    standardise,
)
from tfcompress.data.schema import Feature, Schema, TaskData

__all__ = ["load_libfm"]

_log = logging.getLogger("tfcompress")

#: The largest feature index space ``n_features=None`` infers (2**24 = 16,777,216 rows of the
#: shared embedding table). A larger index is far more often one stray or unhashed token than
#: a real index space, and it would size an embedding table that cannot be allocated; pass
#: ``n_features=`` explicitly to go beyond it.
MAX_INFERRED_FEATURES = 2**24


def load_libfm(
    path: str | os.PathLike[str],
    *,
    n_features: int | None = None,
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    split_mode: str = "random",
    seed: int = 0,
    max_fields: int | None = None,
    strict: bool = False,
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
    The split is a seeded random split of the lines (the only ``split_mode``: the format has
    no time or user); blank lines are skipped.

    The leak check of :func:`load_csv` runs on the fields: a field whose ids (or values)
    alone predict the label on the train split with AUC >= 0.99 is logged as a WARNING
    (``strict=True``: ``ValueError``).

    Args:
        path: the file (``.gz`` accepted).
        n_features: size of the feature index space; indices must be ``< n_features``. None:
            the largest index in the file + 1, at most :data:`MAX_INFERRED_FEATURES`
            (2**24): a larger index raises ``ValueError`` naming its line before anything
            large is allocated (pass ``n_features=`` explicitly for a larger space, or hash
            the indices into a smaller one).
        batch_size: examples per batch.
        split: fractions of lines for train, validation and test.
        split_mode: ``"random"`` (the only one for libFM files).
        seed: seeds the split and the training shuffle.
        max_fields: keep at most this many fields (None: all).
        strict: a leaking field is a ValueError instead of a warning.

    Returns:
        A :class:`TaskData` with label ``"label"`` (task ``"binary"``); ``info`` holds
        ``source``, ``format`` (``"libfm"`` or ``"libffm"``), ``rows``, ``n_features``,
        ``fields``, ``numeric_fields``, ``dropped_tokens``, ``numeric_stats`` and ``arrays``.

    Raises:
        ValueError: a bad argument or file (with file and line): empty file, bad token, label
            not 0/1/-1, index >= ``n_features`` (or above :data:`MAX_INFERRED_FEATURES` with
            ``n_features=None``), a field repeated in a libFFM line, a value too large to
            standardise, a corrupt ``.gz`` file.
        TypeError: an argument of the wrong type.

    Example:
        >>> task = load_libfm("criteo.libsvm", n_features=1_000_000, max_fields=39)
        >>> task.schema["field_0"].vocab_name
        'feature_index'
    """
    path = check_path(path, "libFM")
    fractions = check_common(batch_size, split, seed)
    _check_args(split_mode, strict, n_features, max_fields)
    parsed = _parse_file(path, n_features)
    labels, lines, numbers, mode = parsed.labels, parsed.lines, parsed.numbers, parsed.mode
    all_fields = sorted({f for entries in lines for f, _, _ in entries})
    if not all_fields:
        raise ValueError(f"{path} line 1: no line has a feature token (only labels).")
    fields = all_fields[:max_fields] if max_fields is not None else all_fields
    if n_features is None:
        n_features = _infer_n_features(path, parsed.top)
    ids, values, not_one, dropped = _field_arrays(lines, fields)
    if dropped:
        _log.info(
            "%s: dropped %d tokens of fields beyond max_fields=%s.", path, dropped, max_fields
        )

    parts = random_split(len(lines), fractions, seed)
    columns: dict[str, np.ndarray] = {}
    features = []
    for j, f in enumerate(fields):
        columns[f"field_{f}"] = ids[:, j : j + 1]
        features.append(
            Feature(
                f"field_{f}", "categorical", vocab_size=n_features + 1, vocab_name="feature_index"
            )
        )
    stats = _value_columns(
        path, fields, values, not_one, parts["train"], numbers, columns, features
    )
    label_array = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    sample = inference.sample_rows(parts["train"], seed)
    scored = {
        name: (values[sample], "numeric" if name.startswith("value_") else "categorical")
        for name, values in columns.items()
    }
    leaks = inference.find_leaks(scored, label_array[sample])
    inference.report_leaks(
        leaks,
        source=path,
        strict=strict,
        fix="remove the field from the file (or keep the fields before it: max_fields=)",
    )
    schema = Schema(
        tuple(features),
        label="label",
        task="binary",
        metadata={"source": path, "format": mode, "numeric_stats": stats, "id": "index + 1"},
    )
    arrays = gather_splits(columns, label_array, parts)
    info: dict[str, Any] = {
        "source": path,
        "format": mode,
        "n_features": n_features,
        "fields": fields,
        "numeric_fields": [f for j, f in enumerate(fields) if not_one[j]],
        "dropped_tokens": dropped,
        "numeric_stats": stats,
        "leaks": {name: score for name, (score, _) in leaks.items()},
        "split_mode": split_mode,
        "split_rows": parts,
    }
    return build_task(
        arrays, schema, batch_size=batch_size, seed=seed, info=info, fractions=fractions
    )


def _check_args(split_mode: Any, strict: Any, n_features: Any, max_fields: Any) -> None:
    check_split_mode(split_mode, ("random",), "libFM files (no time or user column)")
    check_bool(strict, "strict")
    if n_features is not None:
        check_int(n_features, "n_features", 1, "1_000_000")
        if n_features >= MAX_ID:
            raise ValueError(f"n_features must be < {MAX_ID} (int32 ids), got {n_features}.")
    if max_fields is not None:
        check_int(max_fields, "max_fields", 1, "39")


@dataclasses.dataclass
class _Parsed:
    """What one pass over the file read."""

    labels: list[float] = dataclasses.field(default_factory=list)
    lines: list[list[tuple[int, int, float]]] = dataclasses.field(default_factory=list)
    numbers: list[int] = dataclasses.field(default_factory=list)  # file line of each entry
    mode: str | None = None
    mode_line: int = 0
    top: tuple[int, int, str] = (-1, 0, "")  # the largest index, its line and token


def _parse_file(path: str, n_features: int | None) -> _Parsed:
    """Every line's label and ``(field, index, value)`` entries, checked."""
    parsed = _Parsed()
    for number, text in iter_lines(path):
        tokens = text.split()
        label = parse_float(tokens[0])
        if label not in (0.0, 1.0, -1.0):
            raise ValueError(
                f"{path} line {number}: label {tokens[0]!r} is not 0/1 or -1/+1; each line must "
                "start with the label, e.g. '1 3:1 17:0.5'."
            )
        entries: list[tuple[int, int, float]] = []
        seen: set[int] = set()
        for pos, token in enumerate(tokens[1:]):
            field, index, value = _parse_token(path, number, pos, token, parsed, n_features)
            if field in seen:
                raise ValueError(
                    f"{path} line {number}: field {field} appears twice; this loader takes one "
                    "feature per field."
                )
            seen.add(field)
            entries.append((field, index, value))
            if index > parsed.top[0]:
                parsed.top = (index, number, token)
        parsed.labels.append(1.0 if label == 1.0 else 0.0)
        parsed.lines.append(entries)
        parsed.numbers.append(number)
    if not parsed.lines:
        raise ValueError(
            f"{path} line 1: file is empty; expected lines like '1 3:1 17:0.5' (libFM) or "
            "'1 0:3:1 1:17:0.5' (libFFM)."
        )
    return parsed


def _parse_token(
    path: str, number: int, pos: int, token: str, parsed: _Parsed, n_features: int | None
) -> tuple[int, int, float]:
    """``(field, index, value)`` of one ``idx:value`` or ``field:idx:value`` token."""
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
    if parsed.mode is None:
        parsed.mode, parsed.mode_line = kind, number
    elif kind != parsed.mode:
        raise ValueError(
            f"{path} line {number}: token {token!r} is {kind} but line {parsed.mode_line} "
            f"was {parsed.mode}; a file holds one format."
        )
    if n_features is not None and index >= n_features:
        raise ValueError(
            f"{path} line {number}: feature index {index} >= n_features={n_features}; "
            "raise n_features or pass n_features=None to infer it."
        )
    return field, index, value


def _infer_n_features(path: str, top: tuple[int, int, str]) -> int:
    """The largest index + 1, refused above :data:`MAX_INFERRED_FEATURES`."""
    max_index, max_line, max_token = top
    n_features = max_index + 1
    if n_features > MAX_INFERRED_FEATURES:
        fits = "does not fit an int32 id; " if n_features >= MAX_ID else ""
        raise ValueError(
            f"{path} line {max_line}: feature index {max_index} (token {max_token!r}) "
            f"{fits}inferring n_features would size an embedding table of "
            f"{n_features + 1:,} rows (the limit for an inferred size is "
            f"{MAX_INFERRED_FEATURES:,}); fix the line if the index is a stray, hash the "
            "indices into a smaller range (e.g. index % 1_000_000) before loading, or pass "
            "n_features= explicitly if the index space really is this large."
        )
    return n_features


def _field_arrays(
    lines: list[list[tuple[int, int, float]]], fields: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(ids, values, not_one, dropped)``: one column per kept field."""
    column = {f: j for j, f in enumerate(fields)}
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
    return ids, values, not_one, dropped


def _value_columns(
    path: str,
    fields: list[int],
    values: np.ndarray,
    not_one: np.ndarray,
    train: np.ndarray,
    numbers: list[int],
    columns: dict[str, np.ndarray],
    features: list[Feature],
) -> dict[str, dict[str, float]]:
    """Add ``value_{f}`` (standardised) for fields whose values are not all 1; their stats."""
    stats: dict[str, dict[str, float]] = {}
    for j, f in enumerate(fields):
        if not not_one[j]:
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            standard, mean, std = standardise(values[:, j], train)
        if not (np.isfinite(mean) and np.isfinite(std) and np.isfinite(standard).all()):
            k = int(np.argmax(np.abs(values[:, j])))
            raise ValueError(
                f"{path} line {numbers[k]}: value {float(values[k, j])!r} of field {f} is too "
                f"large to standardise (train mean {mean:g}, std {std:g}: the result is "
                "not a finite float32); fix the value or scale the field's values before "
                "loading (e.g. log10 of them)."
            )
        columns[f"value_{f}"] = standard.reshape(-1, 1)
        stats[f"value_{f}"] = {"mean": mean, "std": std}
        features.append(Feature(f"value_{f}", "numeric"))
    return stats
