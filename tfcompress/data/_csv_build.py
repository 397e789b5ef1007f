"""Turn the columns of one CSV pass into features: :class:`Build` (for :mod:`.csv_loader`).
Not public API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfcompress.data import inference
from tfcompress.data._common import pad_trailing, standardise
from tfcompress.data._csv_scan import Column
from tfcompress.data.schema import Feature

_log = logging.getLogger("tfcompress")


def feature_name(column: str) -> str:
    """The feature name of a column: characters other than letters, digits and ``_`` -> ``_``."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in column.strip())
    if not name or not name.isidentifier():
        name = f"f_{name}"
    return name


def rank(
    vocab: dict[str, int], counted: np.ndarray, cap: int | None
) -> tuple[np.ndarray, dict[str, int], int]:
    """Re-number first-appearance ids by descending count in ``counted`` (ties by value).

    ``vocab`` maps each value to its id in order of first appearance (1, 2, ...), as
    :class:`~tfcompress.data._csv_scan.Column` builds it. Returns the table old id -> new id (0
    for values never counted or beyond ``cap``), the vocabulary ``{value: new id}`` and the
    number of values left out by the cap.
    """
    size = len(vocab) + 1
    counts = np.bincount(counted, minlength=size)[1:size]
    values = np.array(list(vocab), dtype=str) if vocab else np.zeros(0, "U1")
    keep = np.flatnonzero(counts > 0)
    order = keep[np.lexsort((values[keep], -counts[keep]))]
    dropped = 0
    if cap is not None and len(order) > cap:
        dropped, order = len(order) - cap, order[:cap]
    table = np.zeros(size, np.int32)
    table[order + 1] = np.arange(1, len(order) + 1)
    lookup = dict(zip(values[order].tolist(), range(1, len(order) + 1), strict=True))
    return table, lookup, dropped


def gather(
    columns: dict[str, np.ndarray], labels: np.ndarray, parts: Mapping[str, np.ndarray]
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """Per-split arrays, one column at a time (each full column freed once split)."""
    out: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {
        name: ({}, labels[rows]) for name, rows in parts.items()
    }
    for key in list(columns):
        full = columns.pop(key)
        for name, rows in parts.items():
            out[name][0][key] = full[rows]
        del full
    return out


class Build:
    """Turns each scanned column into features, vocabularies, stats and leak scores."""

    def __init__(
        self,
        path: str,
        n: int,
        is_train: np.ndarray,
        sample: np.ndarray,
        y_sample: np.ndarray,
        binary: bool,
    ) -> None:
        self.path, self.n, self.is_train = path, n, is_train
        self.sample, self.y_sample, self.binary = sample, y_sample, binary
        self.features: list[Feature] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.vocabularies: dict[str, dict[str, int]] = {}
        self.hashed: dict[str, int] = {}
        self.stats: dict[str, dict[str, float]] = {}
        self.leaks: dict[str, tuple[float, str]] = {}
        self.ignored: list[str] = []

    def _leak(self, col: str, values: np.ndarray, kind: str) -> None:
        if not self.binary or len(np.unique(self.y_sample)) < 2:
            return
        score, how = inference.leak_auc(values[self.sample], self.y_sample, kind)
        if score >= inference.LEAK_AUC:
            self.leaks[col] = (score, how)

    def column(
        self,
        col: Column,
        kind: str,
        reason: str,
        scale: float | None,
        *,
        numeric_fill: Any,
        timestamp_features: str,
        cap: int | None,
        sequence_length: int,
    ) -> None:
        name = feature_name(col.name)
        entry: dict[str, Any] = {
            "features": [],
            "kind": kind,
            "encoding": None,
            "vocab_size": None,
            "buckets": None,
            "missing": col.missing / max(col.rows, 1),
            "reason": reason,
        }
        if kind == "undecided":
            values = col.float_array()
            unordered, by_cat, by_order = inference.looks_unordered(
                values[self.sample], self.y_sample
            )
            kind = entry["kind"] = "categorical" if unordered else "numeric"
            entry["reason"] = (
                f"integer codes: label rate per value AUC {by_cat:.3f} vs value order "
                f"{by_order:.3f}"
                if unordered
                else "integer counts / amounts"
            )
            if not unordered:
                col.drop_ids()
                self._numeric(col, name, entry, numeric_fill, values)
            del values
        elif kind == "numeric":
            col.drop_ids()
            self._numeric(col, name, entry, numeric_fill, col.float_array())
        if kind == "categorical":
            col.drop_numbers()
            self._categorical(col, name, entry, cap)
        elif kind == "timestamp":
            col.drop_ids()
            seconds = col.time_array(scale)
            self._leak(col.name, seconds, "numeric")
            if timestamp_features == "drop":
                entry["encoding"] = "dropped"
                self.ignored.append(col.name)
            else:
                entry["encoding"] = "hour+weekday (UTC)"
                for suffix, ids, size in zip(
                    ("hour", "weekday"), inference.hour_weekday(seconds), (25, 8), strict=True
                ):
                    self._add(
                        entry,
                        Feature(f"{name}_{suffix}", "categorical", vocab_size=size),
                        ids.reshape(-1, 1),
                    )
        elif kind == "sequence":
            self._sequence(col, name, entry, cap, sequence_length)
        self.info[col.name] = entry

    def _add(self, entry: dict[str, Any], feature: Feature, values: np.ndarray) -> None:
        entry["features"].append(feature.name)
        self.features.append(feature)
        self.arrays[feature.name] = values

    def _numeric(
        self, col: Column, name: str, entry: dict[str, Any], fill: Any, values: np.ndarray
    ) -> None:
        self._leak(col.name, values, "numeric")
        missing = np.isnan(values)
        if missing.any():
            if fill is None:
                raise ValueError(
                    f"{self.path} line {col.first_missing}: empty value in numeric column "
                    f"{col.name!r}; fill it, pass numeric_fill='mean' (or a number; recipe "
                    '[data]: numeric_fill = "mean"), or list the column in categorical=.'
                )
            if fill == "mean":
                known = values[self.is_train & ~missing]
                fill = float(known.mean()) if known.size else 0.0
            values[missing] = float(fill)
        train = np.flatnonzero(self.is_train)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            standard, mean, std = standardise(values, train)
        if not (np.isfinite(mean) and np.isfinite(std) and np.isfinite(standard).all()):
            line, value = col.extreme or (0, "?")
            raise ValueError(
                f"{self.path} line {line}: value {value!r} in numeric column {col.name!r} is "
                f"too large to standardise (train mean {mean:g}, std {std:g}: the result is "
                "not a finite float32); fix the value, scale the column before loading (e.g. "
                "log10 of it), or list the column in categorical=."
            )
        del values
        self.stats[name] = {"mean": mean, "std": std}
        entry["encoding"] = "standardised"
        self._add(entry, Feature(name, "numeric"), standard.reshape(-1, 1))

    def _categorical(self, col: Column, name: str, entry: dict[str, Any], cap: int | None) -> None:
        ids = col.id_array()
        size = self._encode(col, name, entry, cap, ids, self.is_train)
        if col.vocab is None and col.hashed != "hash_buckets":
            entry["reason"] += f"; hashed: {col.hashed}"
        self._leak(col.name, ids, "categorical")
        col.vocab = None
        self._add(entry, Feature(name, "categorical", vocab_size=size), ids.reshape(-1, 1))

    def _encode(
        self,
        col: Column,
        name: str,
        entry: dict[str, Any],
        cap: int | None,
        ids: np.ndarray,
        in_train: np.ndarray,
    ) -> int:
        """Map ``ids`` in place to vocabulary ids (ranked on the train rows) or keep the hash
        buckets; records the encoding in ``entry``; returns the feature's vocab size."""
        if col.vocab is not None:
            table, lookup, dropped = rank(col.vocab, ids[in_train], cap)
            np.take(table, ids, out=ids)
            if dropped:
                _log.info(
                    "%s: column %r keeps %d of %d values (max_vocab).",
                    self.path,
                    col.name,
                    len(lookup),
                    len(lookup) + dropped,
                )
            self.vocabularies[name] = lookup
            size = max(2, len(lookup) + 1)
            entry.update(encoding="vocabulary", vocab_size=size)
            return size
        buckets = int(col.buckets)  # type: ignore[arg-type]
        self.hashed[name] = buckets
        entry.update(encoding="hash", vocab_size=buckets + 1, buckets=buckets)
        return buckets + 1

    def _sequence(
        self, col: Column, name: str, entry: dict[str, Any], cap: int | None, length: int
    ) -> None:
        lengths = col.length_array()
        flat = col.id_array()
        size = self._encode(col, name, entry, cap, flat, np.repeat(self.is_train, lengths))
        col.vocab = None
        padded = pad_trailing(flat, np.cumsum(lengths), lengths, length)
        self._add(entry, Feature(name, "sequence", vocab_size=size, length=length), padded)
