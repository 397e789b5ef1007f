"""Rules that decide what a file's column is (id, time, code or quantity), and the leak check
every file load runs.

Example:
    >>> is_id_name("user_id"), is_id_name("paid"), is_time_name("click_time")
    (True, False, True)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import numpy as np

from tfcompress._metrics import auc

_log = logging.getLogger("tfcompress")

#: A column whose AUC for the label alone (train split) reaches this is reported as a leak.
LEAK_AUC = 0.99
#: Columns are scored on at most this many train rows (a seeded sample; enough to tell an AUC
#: of 0.99 from 0.98, and the exact AUC costs a Python pass over the rows).
SAMPLE_ROWS = 30_000
#: An integer column is categorical when target encoding beats the value order by this much...
UNORDERED_MARGIN = 0.03
#: ...and reaches at least this AUC.
UNORDERED_MIN_AUC = 0.55

_ID_WORDS = frozenset(
    {
        "id",
        "ids",
        "uid",
        "uuid",
        "guid",
        "ip",
        "app",
        "device",
        "os",
        "channel",
        "sku",
        "zip",
        "zipcode",
        "postcode",
        "campaign",
        "advertiser",
        "publisher",
        "site",
        "domain",
        "creative",
        "placement",
        "brand",
        "category",
        "country",
        "city",
        "region",
        "code",
        "hash",
        "key",
        "slot",
    }
)
_ID_COMPOUND = re.compile(
    r"(user|item|product|ad|adv|campaign|creative|session|order|customer|account|device|movie|"
    r"song|shop|store|seller|merchant|cat|app|site|page|query|doc|visitor|client|member)ids?"
)
_TIME_WORDS = frozenset({"time", "timestamp", "ts", "date", "datetime", "epoch"})
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?Z?")


def _words(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_id_name(column: str) -> bool:
    """True for names of identifiers: ``*_id``, ``userId``, ``ip``, ``app``, ``os``, ...

    Example:
        >>> [is_id_name(c) for c in ("itemId", "channel", "valid", "price")]
        [True, True, False, False]
    """
    return any(w in _ID_WORDS or _ID_COMPOUND.fullmatch(w) for w in _words(column))


def is_time_name(column: str) -> bool:
    """True for names of timestamps: ``click_time``, ``timestamp``, ``ts``, ``created_at``.

    Example:
        >>> is_time_name("createdAt"), is_time_name("price")
        (True, False)
    """
    words = _words(column)
    return any(w in _TIME_WORDS for w in words) or (len(words) > 1 and words[-1] == "at")


def is_iso_time(value: str) -> bool:
    """True for ``2017-11-07``, ``2017-11-07 09:30:38``, ``2017-11-07T09:30:38.5Z``."""
    return _ISO.fullmatch(value) is not None


def epoch_scale(low: float, high: float) -> float | None:
    """Seconds per unit when ``[low, high]`` looks like epoch seconds (1) or ms (0.001)."""
    if low >= 1e8 and high <= 1e10:
        return 1.0
    if low >= 1e11 and high <= 1e13:
        return 1e-3
    return None


def parse_times(values: Iterable[str], scale: float | None = None) -> np.ndarray:
    """Seconds since 1970-01-01 (float64; NaN for ``""``) of ISO strings or epoch numbers.

    Args:
        values: the cells; empty cells become NaN.
        scale: None for ISO date/time strings; else seconds per unit of epoch numbers.

    Raises:
        ValueError: a value that is not a date/time (the message names it).

    Example:
        >>> parse_times(["1970-01-02", ""]).tolist()[0]
        86400.0
    """
    values = list(values)
    out = np.full(len(values), np.nan)
    present = [i for i, v in enumerate(values) if v]
    if not present:
        return out
    cells = [values[i] for i in present]
    if scale is None:
        bad = next((v for v in cells if not is_iso_time(v)), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a date/time like '2017-11-07 09:30:38'")
        stamps = np.array([v.removesuffix("Z") for v in cells], dtype="datetime64[ms]")
        out[present] = stamps.astype(np.int64) / 1000.0
    else:
        out[present] = np.array(cells, dtype=np.float64) * scale
    return out


def hour_weekday(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the hour (1..24) and weekday (1 = Monday .. 7) in UTC; 0 where NaN.

    Example:
        >>> [a.tolist() for a in hour_weekday(np.array([3600.0 * 25, np.nan]))]
        [[2, 0], [5, 0]]
    """
    known = ~np.isnan(seconds)
    whole = np.floor(np.where(known, seconds, 0.0)).astype(np.int64)
    hour = np.where(known, whole // 3600 % 24 + 1, 0).astype(np.int32)
    weekday = np.where(known, (whole // 86400 + 3) % 7 + 1, 0).astype(np.int32)  # 1970-01-01: Thu
    return hour, weekday


# --------------------------------------------------------------------------- scores


def sample_rows(train_rows: np.ndarray, seed: int) -> np.ndarray:
    """At most :data:`SAMPLE_ROWS` of ``train_rows`` (seeded), sorted."""
    if len(train_rows) <= SAMPLE_ROWS:
        return np.sort(train_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_rows, size=SAMPLE_ROWS, replace=False))


def _two_way(score: float | None) -> float:
    return 0.5 if score is None else max(score, 1.0 - score)


def order_auc(values: np.ndarray, labels: np.ndarray) -> float:
    """AUC of the values themselves (either direction), rows with NaN left out."""
    known = ~np.isnan(values)
    return _two_way(auc(labels[known], values[known]))


def category_auc(codes: np.ndarray, labels: np.ndarray) -> float:
    """AUC of a cross-fitted label rate per category (two folds, so unseen ids score nothing).

    Each half of the rows is scored with the label rate of its category in the OTHER half
    (smoothed towards that half's rate), so a category seen once (a unique id) predicts
    nothing, while a category that marks the label does.
    """
    _, inverse = np.unique(codes, return_inverse=True)
    inverse = inverse.reshape(-1)
    y = labels.reshape(-1).astype(np.float64)
    fold = np.arange(len(y)) % 2
    score = np.empty(len(y))
    size = int(inverse.max()) + 1 if len(inverse) else 1
    for f in (0, 1):
        src, dst = fold != f, fold == f
        if not src.any() or not dst.any():
            return 0.5
        sums = np.bincount(inverse[src], weights=y[src], minlength=size)
        counts = np.bincount(inverse[src], minlength=size)
        prior = float(y[src].mean())
        score[dst] = ((sums + prior) / (counts + 1.0))[inverse[dst]]
    value = auc(y, score)
    return 0.5 if value is None else value


def looks_unordered(values: np.ndarray, labels: np.ndarray) -> tuple[bool, float, float]:
    """Whether an integer column acts as codes: ``(unordered, category AUC, order AUC)``.

    Codes (zip codes, ad-network ids) predict the label through their identity, not their
    size: the cross-fitted label rate per value beats the value order by at least
    :data:`UNORDERED_MARGIN` and reaches :data:`UNORDERED_MIN_AUC`.
    """
    known = ~np.isnan(values)
    if known.sum() < 20:
        return False, 0.5, 0.5
    by_category = category_auc(values[known], labels[known])
    by_order = order_auc(values[known], labels[known])
    unordered = by_category >= UNORDERED_MIN_AUC and by_category >= by_order + UNORDERED_MARGIN
    return unordered, by_category, by_order


def leak_auc(values: np.ndarray, labels: np.ndarray, kind: str) -> tuple[float, str]:
    """How well one column alone predicts the label: ``(AUC, how)``.

    Args:
        values: float values with NaN for missing (``kind="numeric"``), or ids with 0 for
            missing (``kind="categorical"``).
        labels: the 0/1 labels of the same rows.
        kind: ``"numeric"`` or ``"categorical"``.

    Returns:
        The best of: whether the cell is empty, the value order (missing first or last), and
        for ids the cross-fitted label rate per id; ``how`` names the winner.
    """
    y = labels.reshape(-1)
    v = values.reshape(-1)
    missing = v == 0 if kind == "categorical" else np.isnan(v)
    partly = bool(missing.any() and not missing.all())
    scores = {}  # on a tie the first (the simplest explanation) is named
    if partly:
        scores["whether it is empty"] = _two_way(auc(y, missing.astype(np.float64)))
    if kind == "categorical":
        scores["its ids"] = category_auc(v, y)
    elif partly:
        low, high = np.nanmin(v), np.nanmax(v)
        scores["its values"] = max(
            _two_way(auc(y, np.where(missing, low - 1.0, v))),
            _two_way(auc(y, np.where(missing, high + 1.0, v))),
        )
    else:
        scores["its values"] = order_auc(v, y)
    how = max(scores, key=lambda k: scores[k])
    return scores[how], how


def find_leaks(
    columns: Mapping[str, tuple[np.ndarray, str]], labels: np.ndarray
) -> dict[str, tuple[float, str]]:
    """``{column: (AUC, how)}`` of the columns that reach :data:`LEAK_AUC`.

    Args:
        columns: ``{column: (values on the scored rows, kind)}``, kinds as in :func:`leak_auc`.
        labels: the 0/1 labels of those rows (with a single class nothing is found).
    """
    y = labels.reshape(-1)
    if len(np.unique(y)) < 2:
        return {}
    found = {}
    for name, (values, kind) in columns.items():
        score, how = leak_auc(values, y, kind)
        if score >= LEAK_AUC:
            found[name] = (score, how)
    return found


def report_leaks(
    found: Mapping[str, tuple[float, str]], *, source: str, strict: bool, fix: str
) -> None:
    """Log a WARNING per leaking column, or raise one ValueError when ``strict``.

    Args:
        found: ``{column: (AUC, how)}`` of the columns at or above :data:`LEAK_AUC`.
        source: the file (named in the message).
        strict: raise instead of warning.
        fix: how to remove a column, with ``{columns}`` for the list, e.g.
            ``'drop={columns} (recipe: drop = {columns})'``.
    """
    if not found:
        return
    names = sorted(found)
    listed = "[" + ", ".join(f'"{c}"' for c in names) + "]"
    details = "; ".join(f"{c!r}: AUC {found[c][0]:.4f} from {found[c][1]}" for c in names)
    message = (
        f"{source}: {len(names)} column(s) alone predict the label on the train split "
        f"(AUC >= {LEAK_AUC}) — {details}. Such a column is usually only known after the "
        f"outcome (a leak: a post-click time, a status) and makes the model useless in "
        f"production. Remove it: {fix.format(columns=listed)}"
    )
    if strict:
        raise ValueError(message + ".")
    _log.warning("%s; strict=True (recipe: strict = true) makes this an error.", message)
