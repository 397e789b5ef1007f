"""Load MovieLens-style ratings as implicit-feedback CTR or retrieval data: :func:`load_movielens`.

Example:
    >>> from tfcompress.data import load_movielens
    >>> task = load_movielens("ml-1m/ratings.dat", task="retrieval")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress.data._common import (
    SPLITS,
    build_task,
    check_common,
    check_int,
    check_path,
    check_split_mode,
    gather_splits,
    iter_lines,
    pad_trailing,
    parse_float,
    split_rows,
)
from tfcompress.data.schema import Feature, Schema, TaskData

__all__ = ["load_movielens"]

_log = logging.getLogger("tfcompress")

#: ``split_mode`` values of :func:`load_movielens`.
MOVIELENS_SPLITS = ("leave_last_out", "time", "by_user", "random")


def _remap(raw: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Raw ids -> ids 1..n in sorted order (numeric when every id is an integer).

    Integer ids of any size are ordered as numbers (a 26-digit id does not fit int64: those
    are sorted as Python ints, so ids never collide or overflow).
    """
    try:
        ints = [int(x) for x in raw]
    except ValueError:
        keys: np.ndarray = np.array(raw)
    else:
        try:
            keys = np.array(ints, dtype=np.int64)
        except OverflowError:  # ids beyond int64: order them as Python ints
            order = {k: i + 1 for i, k in enumerate(sorted(set(ints)))}
            ids = np.fromiter(map(order.__getitem__, ints), np.int64, len(ints))
            return ids, {str(k): i for k, i in order.items()}
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
    delimiter: str | None = None,
    header: bool | None = None,
    min_rating: float = 4.0,
    sequence_length: int = 20,
    negatives: int = 4,
    task: str = "ctr",
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    split_mode: str = "leave_last_out",
    seed: int = 0,
    sep: str | None = None,
) -> TaskData:
    """Load MovieLens-style ratings into an implicit-feedback CTR or retrieval :class:`TaskData`.

    Each line is ``user, item, rating, timestamp`` separated by ``delimiter``: ``ratings.dat``
    (``"::"``), ``u.data`` (tab) or ``ratings.csv`` (``","``, with a header). ``delimiter=None``
    detects the separator from the first line; ``header=None`` takes a first line whose rating
    and timestamp are not numbers for a header (True / False: the file has one / has none).
    Users and items get ids ``1..n`` in sorted raw-id order (numeric order when every id is
    an integer, of any size: a 26-digit id is an id like any other; ``info["vocabularies"]``
    maps the raw id text to it); every item of the file is in the catalogue.

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

    The split (of the positives; a positive's negatives go with it), by ``split_mode``:

    * ``"leave_last_out"`` (default): by TIME per user: of a user's ``k`` positives the last
      ``max(1, floor(k * split[2]))`` go to test, the ones before them
      ``max(1, floor(k * split[1]))`` to validation (none where the fraction is 0), the rest
      to train. Users with fewer than 3 positives stay in train.
    * ``"time"``: globally by timestamp: every test positive is at least as recent as every
      validation one, and those as every train one.
    * ``"by_user"``: every user's positives in one split (new users in validation and test).
    * ``"random"``: a seeded random split of the positives.

    Train is shuffled with the seed; validation and test are in user, then time order
    (``"time"``: time order). ``info["split_rows"][split]`` gives, per example, the data line
    (0 = the first rating) it comes from.

    Args:
        path: the ratings file (``.gz`` accepted).
        delimiter: the field separator; None detects ``"::"``, tab or ``","``.
        header: whether the first line is a header; None detects it.
        min_rating: the smallest rating that counts as a positive.
        sequence_length: padded length of ``hist_item_ids``.
        negatives: sampled negatives per positive (``task="ctr"``; >= 1).
        task: ``"ctr"`` or ``"retrieval"``.
        batch_size: examples per batch.
        split: fractions of the positives (of each user's, for ``"leave_last_out"``) for
            train, validation and test.
        split_mode: ``"leave_last_out"``, ``"time"``, ``"by_user"`` or ``"random"``.
        seed: seeds the negatives, the split and the training shuffle.
        sep: the former name of ``delimiter`` (still accepted).

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
    path = check_path(path, "MovieLens ratings")
    fractions = check_common(batch_size, split, seed)
    check_split_mode(split_mode, MOVIELENS_SPLITS, "MovieLens ratings")
    sep = _check_args(delimiter, sep, header, min_rating, sequence_length, task, negatives)
    users, items, ratings, times, sep, found_header = _read_ratings(path, sep, header)
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

    role = np.zeros(m, dtype=np.int64)  # 0 train, 1 validation, 2 test
    if split_mode == "leave_last_out":
        n_test = np.minimum(part(fractions[2]), np.maximum(size - 1, 0))
        n_val = np.minimum(part(fractions[1]), np.maximum(size - 1 - n_test, 0))
        role[rank >= size - n_test - n_val] = 1
        role[rank >= size - n_test] = 2
    else:
        by = split_rows(split_mode, m, fractions, seed, times=time_arr[order], groups=pu)
        role[by["validation"]] = 1
        role[by["test"]] = 2

    # each positive's history: the user's earlier positives (``rank`` of them, just before it)
    hist = pad_trailing(pi, np.arange(m), rank, sequence_length).astype(np.int32)

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
        ex_source = np.repeat(order, block)[keep]
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
                "split": split_mode,
            },
        )
    else:
        columns = {"user_id": pu, "hist_item_ids": hist, "item_id": pi}
        labels = pi.astype(np.int32)
        ex_role = role
        ex_source = order
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
                "split": split_mode,
            },
        )
    columns = {
        k: v.astype(np.int32).reshape(-1, 1) if v.ndim == 1 else v.astype(np.int32)
        for k, v in columns.items()
    }
    parts = {name: np.flatnonzero(ex_role == code) for code, name in enumerate(SPLITS)}
    parts["train"] = rng.permutation(parts["train"])
    if split_mode == "time":  # validation and test in time order (ties: user order)
        for name in ("validation", "test"):
            rows = parts[name]
            parts[name] = rows[np.argsort(time_arr[ex_source[rows]], kind="stable")]
    arrays = gather_splits(columns, labels, parts)
    info: dict[str, Any] = {
        "source": path,
        "format": "movielens",
        "sep": sep,
        "header": found_header,
        "task": task,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": len(users),
        "n_positives": m,
        "vocabularies": {"user_id": user_vocab, "item_id": item_vocab},
        "split_mode": split_mode,
        "split_policy": {
            "leave_last_out": "time per user: last positives to test, the ones before to "
            "validation",
            "time": "time: the oldest positives train, the newest test",
            "by_user": "by user: each user's positives in one split",
            "random": "random positives",
        }[split_mode],
        "split_rows": {name: ex_source[rows] for name, rows in parts.items()},
    }
    if task == "retrieval":
        info["catalog"] = {"item_id": np.arange(n_items + 1, dtype=np.int32).reshape(-1, 1)}
    return build_task(
        arrays, schema, batch_size=batch_size, seed=seed, info=info, fractions=fractions
    )


def _check_args(
    delimiter: Any,
    sep: Any,
    header: Any,
    min_rating: Any,
    sequence_length: Any,
    task: Any,
    negatives: Any,
) -> str | None:
    """Check :func:`load_movielens`'s arguments; the separator asked for (None: detect)."""
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise ValueError(f"sep must be None (detect) or a non-empty string, received {sep!r}.")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise ValueError(
            f"delimiter must be None (detect) or a non-empty string, received {delimiter!r}; "
            "pass e.g. delimiter='::'."
        )
    if delimiter is not None and sep is not None:
        raise ValueError(
            f"pass either delimiter or sep (its former name), not both; received "
            f"delimiter={delimiter!r} and sep={sep!r}."
        )
    if header is not None and not isinstance(header, bool):
        raise TypeError(
            f"header must be None (detect), True or False, received {header!r}; pass e.g. "
            "header=True."
        )
    if (
        isinstance(min_rating, bool)
        or not isinstance(min_rating, (int, float))
        or not (math.isfinite(min_rating))
    ):
        raise TypeError(f"min_rating must be a finite number, received {min_rating!r}; e.g. 4.0.")
    check_int(sequence_length, "sequence_length", 1, "20")
    if task not in ("ctr", "retrieval"):
        raise ValueError(f"task must be 'ctr' or 'retrieval', received {task!r}.")
    check_int(negatives, "negatives", 1 if task == "ctr" else 0, "4")
    return delimiter if delimiter is not None else sep


def _read_ratings(
    path: str, sep: str | None, header: bool | None
) -> tuple[list[str], list[str], list[float], list[float], str | None, bool]:
    """``(users, items, ratings, times, separator, found_header)`` of the ratings file."""
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    found_header = False
    first = True
    for number, text in iter_lines(path):
        if sep is None:
            sep = next((s for s in ("::", "\t", ",") if s in text), None)
            if sep is None:
                raise ValueError(
                    f"{path} line {number}: cannot tell the separator (no '::', tab or ','); "
                    "pass delimiter=."
                )
        fields = [f.strip() for f in text.split(sep)]
        if len(fields) != 4:
            raise ValueError(
                f"{path} line {number}: expected 4 fields (user, item, rating, timestamp) "
                f"separated by {sep!r}, found {len(fields)}; fix the line or pass delimiter=."
            )
        if first:
            first = False
            rating, time = parse_float(fields[2]), parse_float(fields[3])
            if header or (header is None and rating is None and time is None):
                found_header = True
                continue
        rating, time = parse_float(fields[2]), parse_float(fields[3])
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
            f"{path} line 1: file is empty{' (header only)' if found_header else ''}; expected "
            "lines 'user::item::rating::timestamp'."
        )
    return users, items, ratings, times, sep, found_header
