"""What a load produced, as a table a user can check: :class:`DataSummary` (``task.summary()``).

Example:
    >>> from tfcompress import data
    >>> task = data.load_task("ctr", n_samples=1_000, seed=0)
    >>> summary = task.summary()
    >>> summary.label["column"], summary.rows[0]["kind"] in ("categorical", "numeric", "sequence")
    ('click', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress._text import markdown_table

__all__ = ["DataSummary", "summarise"]

_HEAD = ("column", "kind", "encoding", "vocabulary / buckets", "missing", "features", "why")


@dataclass(frozen=True)
class DataSummary:
    """The columns and the label of a loaded dataset.

    Attributes:
        source: the file (or the simulated task's name).
        rows: one dict per column: ``column``, ``features`` (the model inputs it became),
            ``kind`` (``"numeric"``, ``"categorical"``, ``"sequence"``, ``"timestamp"``),
            ``encoding`` (``"standardised"``, ``"vocabulary"``, ``"hash"``,
            ``"hour+weekday (UTC)"``, ``"dropped"``, ``"ids"``), ``values`` (vocabulary size
            without id 0, or None), ``buckets`` (hash buckets, or None), ``missing`` (share of
            empty cells, 0..1) and ``reason``.
        label: ``column``, ``task``, ``rows``, ``positives`` and ``rate`` over all splits
            (positives and rate None unless binary), ``classes`` (multiclass / retrieval) and
            ``splits`` (``{split: {"rows", "positives", "rate"}}``).

    ``str(summary)`` is an aligned text table; :meth:`to_markdown` a Markdown one.
    """

    source: str
    rows: tuple[dict[str, Any], ...]
    label: dict[str, Any]

    def _cells(self) -> list[list[str]]:
        out = []
        for r in self.rows:
            if r["buckets"] is not None:
                size = f"{r['buckets']:,} buckets"
            elif r["values"] is not None:
                size = f"{r['values']:,} values"
            else:
                size = "-"
            out.append(
                [
                    r["column"],
                    r["kind"],
                    r["encoding"],
                    size,
                    f"{r['missing']:.1%}",
                    ", ".join(r["features"]) or "-",
                    r["reason"],
                ]
            )
        return out

    def label_line(self) -> str:
        """One line: the label, its rate and positives overall and per split."""
        lab = self.label
        if lab["positives"] is None:
            classes = f", {lab['classes']:,} classes" if lab.get("classes") else ""
            parts = ", ".join(f"{k} {v['rows']:,}" for k, v in lab["splits"].items())
            return f"label {lab['column']} ({lab['task']}{classes}): {lab['rows']:,} rows ({parts})"
        parts = ", ".join(
            f"{k} {v['positives']:,}/{v['rows']:,}" + (f" = {v['rate']:.4f}" if v["rows"] else "")
            for k, v in lab["splits"].items()
        )
        rate = f"{lab['rate']:.4f}" if lab["rows"] else "-"
        return (
            f"label {lab['column']} ({lab['task']}): rate {rate}, {lab['positives']:,} positives "
            f"in {lab['rows']:,} rows ({parts})"
        )

    def __str__(self) -> str:
        cells = [list(_HEAD), *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(_HEAD))]
        lines = [f"data: {self.source}"]
        for k, row in enumerate(cells):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(self.label_line())
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The table in Markdown, the label line below it."""
        table = markdown_table(_HEAD, self._cells())
        return "\n".join([f"Data: `{self.source}`", "", table, "", self.label_line()])


def _missing(values: list[np.ndarray], kind: str) -> float:
    total = sum(len(v) for v in values)
    if not total:
        return 0.0
    if kind == "numeric":
        empty = sum(int(np.isnan(v).all(axis=-1).sum()) for v in values)
    else:
        empty = sum(int((v.reshape(len(v), -1) == 0).all(axis=-1).sum()) for v in values)
    return empty / total


def _label(task: Any, arrays: Mapping[str, Any] | None) -> dict[str, Any]:
    schema = task.schema
    splits: dict[str, dict[str, Any]] = {}
    binary = schema.task == "binary"
    for name in ("train", "validation", "test"):
        if arrays is None or name not in arrays:
            continue
        y = np.asarray(arrays[name][1])
        rows = int(y.shape[0])
        positives = int((y.reshape(-1) > 0.5).sum()) if binary else None
        rate = positives / rows if binary and rows else None
        splits[name] = {"rows": rows, "positives": positives, "rate": rate}
    rows = sum(s["rows"] for s in splits.values())
    positives = sum(s["positives"] for s in splits.values()) if binary else None
    return {
        "column": task.info.get("label_column", schema.label),
        "task": schema.task,
        "rows": rows,
        "positives": positives,
        "rate": positives / rows if binary and rows else None,
        "classes": schema.num_classes,
        "splits": splits,
    }


def summarise(task: Any) -> DataSummary:
    """The :class:`DataSummary` of a :class:`~tfcompress.data.TaskData`.

    Loaders that describe their columns in ``info["columns"]`` (``kind``, ``features``,
    ``encoding``, ``vocab_size``, ``buckets``, ``missing``, ``reason``; see
    :func:`~tfcompress.data.load_csv`) are summarised from that; otherwise every feature is
    a row, its empty share counted in ``info["arrays"]`` (id 0, an all-padding sequence or NaN).
    """
    info = task.info
    arrays = info.get("arrays")
    source = str(info.get("source", task.schema.metadata.get("source", "data")))
    described = info.get("columns")
    rows: list[dict[str, Any]] = []
    if isinstance(described, Mapping) and all(
        isinstance(e, Mapping) and "kind" in e and "features" in e for e in described.values()
    ):
        for col, e in described.items():
            size = e.get("vocab_size")
            rows.append(
                {
                    "column": str(col),
                    "features": tuple(e["features"]),
                    "kind": e["kind"],
                    "encoding": e.get("encoding") or "-",
                    "values": None if size is None or e.get("buckets") else int(size) - 1,
                    "buckets": e.get("buckets"),
                    "missing": float(e.get("missing", 0.0)),
                    "reason": e.get("reason", ""),
                }
            )
    else:
        for f in task.schema:
            parts = [arrays[s][0][f.name] for s in arrays] if arrays else []
            shared = f" (shared: {f.vocab_name})" if f.vocab_name != f.name else ""
            rows.append(
                {
                    "column": f.name,
                    "features": (f.name,),
                    "kind": f.kind,
                    "encoding": "values" if f.kind == "numeric" else f"ids{shared}",
                    "values": None if f.vocab_size is None else f.vocab_size - 1,
                    "buckets": None,
                    "missing": _missing(parts, f.kind),
                    "reason": info.get("reasons", {}).get(f.name, "from the loader"),
                }
            )
    return DataSummary(source=source, rows=tuple(rows), label=_label(task, arrays))
