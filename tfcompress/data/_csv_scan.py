"""One streaming pass over a CSV file for :func:`tfcompress.data.load_csv`, in chunks of
:data:`CHUNK_ROWS` rows (see docs/data.md). Not public API.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tfcompress.data._common import MAX_ID, READ_ERRORS, open_text, parse_float, read_error
from tfcompress.data.inference import is_iso_time, parse_times

#: Data rows per chunk.
CHUNK_ROWS = 16_384
#: Integers from here on are not all exact in a float64: distinct ids would collapse.
EXACT_INTEGERS = 2**53
_INTEGER = re.compile(r"[+-]?[0-9]+")


class Buffer:
    """A growing 1-D array (capacity doubles; unwritten capacity is never touched).

    One allocation per column instead of one small array per chunk: chunk arrays freed after
    concatenation leave holes in the heap that the process keeps, so the peak memory was the
    chunks plus the final arrays; a large ``np.empty`` is mapped memory whose untouched pages
    cost nothing and which goes back to the system when freed.
    """

    def __init__(self, dtype: Any) -> None:
        self.data = np.empty(0, dtype)
        self.size = 0

    def append(self, chunk: np.ndarray) -> None:
        """Add ``chunk`` at the end (a wider dtype, e.g. float64 after float32, widens all)."""
        end = self.size + len(chunk)
        dtype = np.promote_types(self.data.dtype, chunk.dtype)
        if end > len(self.data) or dtype != self.data.dtype:
            grown = np.empty(max(end, 2 * len(self.data)), dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = chunk
        self.size = end

    def view(self) -> np.ndarray:
        """The values written so far (a view)."""
        return self.data[: self.size]


def stable_hash(token: str, buckets: int) -> int:
    """``crc32(utf-8 token) % buckets + 1``: the hashed id, stable across runs and machines."""
    return zlib.crc32(token.encode("utf-8")) % buckets + 1


class CsvFile:
    """A delimited text file read in chunks of rows.

    Args:
        path: the file (``.gz`` read through gzip).
        delimiter: the one-character field delimiter.
        header: True (the first row names the columns), False (no header row; columns are
            ``col_1`` .. ``col_N``) or the list of column names of a file without a header.
    """

    def __init__(self, path: str, delimiter: str, header: bool | Sequence[str]) -> None:
        self.path = path
        self.delimiter = delimiter
        self.header = header
        self.columns: list[str] = []
        self.header_line = 0

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        last = 0
        try:
            with open_text(self.path) as fh:
                reader = csv.reader(fh, delimiter=self.delimiter, strict=True)
                for fields in reader:
                    start, last = last + 1, reader.line_num
                    if not _blank(fields):
                        yield start, fields
        except csv.Error as exc:
            raise ValueError(f"{self.path} line {last + 1}: malformed CSV ({exc}).") from exc
        except READ_ERRORS as exc:
            raise read_error(self.path, last + 1, exc) from exc

    def read_header(self) -> list[str]:
        """The column names (reads the first row of the file)."""
        first = next(self._rows(), None)
        if first is None:
            raise ValueError(
                f"{self.path} line 1: file is empty; a CSV file needs a header row and data "
                "rows (or header=[names] and data rows)."
            )
        line, fields = first
        if self.header is True:
            names = [f.strip() for f in fields]
            self.header_line = line
            where = f"{self.path} line {line}"
        elif self.header is False:
            names = [f"col_{i + 1}" for i in range(len(fields))]
            where = f"{self.path} header=False"
        else:
            names = [str(h).strip() for h in self.header]
            where = f"{self.path} header="
        for i, name in enumerate(names):
            if not name:
                raise ValueError(
                    f"{where}: header column {i + 1} has an empty name; name every column "
                    f"(header: {names})."
                )
        dupes = sorted({h for h in names if names.count(h) > 1})
        if dupes:
            raise ValueError(
                f"{where}: header repeats column(s) {dupes}; give every column a distinct name."
            )
        self.columns = names
        return names

    def chunks(self) -> Iterator[tuple[RowLines, list[list[str]]]]:
        """``(their line numbers, rows)``: chunks of at most :data:`CHUNK_ROWS` data rows.

        Rows are taken from the csv reader in bulk; line numbers are only worked out (by
        :meth:`line_of`) for a row an error names.
        """
        width = len(self.columns)
        first = 0
        reader = None
        try:
            with open_text(self.path) as fh:
                reader = csv.reader(fh, delimiter=self.delimiter, strict=True)
                if self.header is True:
                    for fields in reader:
                        if not _blank(fields):
                            break
                while True:
                    rows = list(itertools.islice(reader, CHUNK_ROWS))
                    if not rows:
                        break
                    if set(map(len, rows)) != {width}:
                        rows = [r for r in rows if not _blank(r)]
                        bad = next((k for k, r in enumerate(rows) if len(r) != width), None)
                        if bad is not None:
                            raise ValueError(
                                f"{self.path} line {self.line_of(first + bad)}: row has "
                                f"{len(rows[bad])} fields but the header has {width} (delimiter "
                                f"{self.delimiter!r}); fix the row (quote values that contain the "
                                "delimiter) or pass the right delimiter= (and header=)."
                            )
                        if not rows:
                            continue
                    yield RowLines(self, first), rows
                    first += len(rows)
        except (csv.Error, *READ_ERRORS) as exc:
            for _ in self._rows():  # the row-by-row reader names the line where the row starts
                pass
            line = (reader.line_num if reader is not None else 0) + 1
            raise read_error(self.path, line, exc) from exc
        if not first:
            raise ValueError(
                f"{self.path} line {self.header_line + 1}: no data rows after the header "
                "(header only); add at least one data row."
            )

    def line_of(self, row: int) -> int:
        """The line where data row ``row`` (0 = the first) starts; reads the file up to it."""
        skip = self.header is True
        k = -1
        for line, _ in self._rows():
            if skip:
                skip = False
                continue
            k += 1
            if k == row:
                return line
        return 0


def _blank(fields: list[str]) -> bool:
    return len(fields) <= 1 and not "".join(fields).strip()


class RowLines:
    """The line numbers of one chunk's rows, worked out only when asked (for an error)."""

    def __init__(self, file: CsvFile, first: int) -> None:
        self.file, self.first = file, first

    def __getitem__(self, k: int) -> int:
        return self.file.line_of(self.first + k)


def read_labels(values: Sequence[str], lines: RowLines, path: str, task: str) -> np.ndarray:
    """The labels of one chunk as float64 (binary 0/1, or class ids for multiclass)."""
    parsed: dict[str, float] = {}
    for text in set(values):
        value = parse_float(text)
        if task == "binary":
            ok = value in (0.0, 1.0)
        else:
            ok = value is not None and value >= 0 and float(value).is_integer() and value <= MAX_ID
        if not ok:
            line = lines[values.index(text)]
            if task == "binary":
                raise ValueError(
                    f"{path} line {line}: label {text!r} is not 0 or 1; binary labels must be "
                    "0 or 1 (for class ids 0..K-1 pass task='multiclass')."
                )
            raise ValueError(
                f"{path} line {line}: label {text!r} is not a class id (an integer >= 0)."
            )
        parsed[text] = float(value)  # type: ignore[arg-type]
    return np.fromiter(map(parsed.__getitem__, values), np.float64, len(values))


class Column:
    """What one pass keeps of one column (see the module docstring).

    Args:
        name: the column name.
        role: ``"auto"`` (infer), ``"numeric"``, ``"categorical"``, ``"timestamp"`` or
            ``"sequence"``.
        path: the file, for error messages.
        buckets: hash into ``1..buckets`` from the start (the user's ``hash_buckets``).
        limit: distinct values kept in a vocabulary before switching to ``limit`` hash
            buckets (None: no limit).
        separator: the token separator of a sequence column.
    """

    def __init__(
        self,
        name: str,
        role: str,
        path: str,
        *,
        buckets: int | None,
        limit: int | None,
        separator: str = "|",
    ) -> None:
        self.name, self.role, self.path = name, role, path
        self.limit, self.separator = limit, separator
        self.rows = 0
        self.missing = 0
        self._first_missing: tuple[RowLines, int] | None = None
        self.numeric = role in ("auto", "numeric", "timestamp")
        self.integer = self.numeric
        self.low, self.high = math.inf, -math.inf
        self.iso = role in ("auto", "timestamp")
        self.floats: Buffer | None = Buffer(np.float32) if self.numeric else None
        self.times: Buffer | None = Buffer(np.float64) if self.iso else None
        wants_ids = role in ("auto", "categorical", "sequence")
        self.ids: Buffer | None = Buffer(np.int32) if wants_ids else None
        self.lengths = Buffer(np.int64)
        self.vocab: dict[str, int] | None = {} if wants_ids and buckets is None else None
        self.buckets = buckets
        self.hashed = "hash_buckets" if buckets is not None else None
        #: ``(lines, row in chunk)`` of the first integer id beyond :data:`EXACT_INTEGERS` of an
        #: ``auto`` column of integers: such a column is kept as text (categorical).
        self._big_id: tuple[RowLines, int, str] | None = None
        #: every non-empty value so far parses with ``float()`` (``inf`` and ``nan`` included),
        #: and where the first non-finite one is: an ``auto`` column of numbers with an ``inf``
        #: or ``nan`` raises instead of silently becoming categorical text.
        self.floaty = self.numeric
        self._nonfinite: tuple[RowLines, int, str] | None = None
        #: ``(|value|, lines, row in chunk, text)`` of the largest number, for the error of a
        #: value too large to standardise.
        self._extreme: tuple[float, RowLines, int, str] | None = None

    # ------------------------------------------------------------------ one chunk

    def update(self, values: tuple[str, ...], lines: RowLines) -> None:
        """Take one chunk of (stripped) cells."""
        self.rows += len(values)
        empty = values.count("")
        if empty:
            self.missing += empty
            if self._first_missing is None:
                self._first_missing = (lines, values.index(""))
        if self.role == "sequence":
            self._tokens(values)
            return
        if self.numeric:
            self._numbers(values, lines, empty)
        elif self.floaty and self._nonfinite is not None:
            try:
                for v in values:
                    if v:
                        float(v)
            except ValueError:
                self.floaty = False  # real text: a categorical column after all
        if self.iso and not self.numeric:
            self._iso(values, lines)
        if self.ids is not None:
            self.ids.append(self._encode(values))

    def _numbers(self, values: tuple[str, ...], lines: RowLines, empty: int) -> None:
        cells = [v or "nan" for v in values] if empty else values
        try:
            numbers = np.fromiter(map(float, cells), np.float64, len(cells))
            present = numbers if not empty else numbers[[bool(v) for v in values]]
            bad = not np.isfinite(present).all()
        except ValueError:
            bad, present, numbers = True, None, None
        if bad:
            k = next(i for i, v in enumerate(values) if v and parse_float(v) is None)
            self.numeric = self.integer = False
            self.floats = None
            if numbers is None:
                self.floaty = False
            elif self._nonfinite is None:
                self._nonfinite = (lines, k, values[k])
            if self.role == "numeric":
                raise ValueError(
                    f"{self.path} line {lines[k]}: value {values[k]!r} in numeric column "
                    f"{self.name!r} is not a finite number; fix it or list the column in "
                    "categorical=."
                )
            if self.role == "timestamp" and not self.iso:
                raise self._not_time(lines[k], values[k])
            return
        with np.errstate(over="ignore"):  # beyond float32 -> inf, and so not equal below
            narrow = numbers.astype(np.float32)  # half the memory where that loses nothing
        exact = np.array_equal(narrow, numbers, equal_nan=True)
        self.floats.append(narrow if exact else numbers)
        if present.size:
            j = int(np.nanargmax(np.abs(numbers)))
            if self._extreme is None or abs(numbers[j]) > self._extreme[0]:
                self._extreme = (abs(float(numbers[j])), lines, j, values[j])
            self.low = min(self.low, float(present.min()))
            self.high = max(self.high, float(present.max()))
            whole = self.integer and np.all(present == np.round(present))
            if whole and self.role == "auto" and np.abs(present).max() >= EXACT_INTEGERS:
                big = np.flatnonzero(np.abs(numbers) >= EXACT_INTEGERS)
                if all(_INTEGER.fullmatch(values[k]) for k in big):
                    # integer ids a float cannot tell apart: keep the text (the ids) instead
                    self._big_id = (lines, int(big[0]), values[big[0]])
                    self.numeric = self.integer = self.iso = self.floaty = False
                    self.floats = self.times = None
                    return
            if self.integer and not (whole and np.abs(present).max() < EXACT_INTEGERS):
                self.integer = False
                if self.role == "auto":  # a float column: no vocabulary needed
                    self.ids = self.vocab = None
        if self.iso and present.size:
            self.iso = False  # numbers are not ISO strings
            self.times = None
        elif self.iso and self.times is not None:
            self.times.append(np.full(len(values), np.nan))  # only empty cells so far

    def _iso(self, values: tuple[str, ...], lines: RowLines) -> None:
        try:
            seconds = parse_times(values)
        except ValueError:
            self.iso = False
            self.times = None
            if self.role == "timestamp":
                k = next(i for i, v in enumerate(values) if v and not is_iso_time(v))
                raise self._not_time(lines[k], values[k]) from None
            return
        self.times.append(seconds)  # type: ignore[union-attr]  (set while iso)

    def _not_time(self, line: int, value: str) -> ValueError:
        return ValueError(
            f"{self.path} line {line}: value {value!r} in timestamp column {self.name!r} is not "
            "a date/time ('2017-11-07 09:30:38') or epoch number; fix it or remove the column "
            "from timestamps=."
        )

    def _tokens(self, values: tuple[str, ...]) -> None:
        sep = self.separator
        tokens = [[t.strip() for t in v.split(sep) if t.strip()] if v else [] for v in values]
        self.lengths.append(np.fromiter(map(len, tokens), np.int64, len(tokens)))
        flat = tuple(t for row in tokens for t in row)
        self.ids.append(self._encode(flat))  # type: ignore[union-attr]  (set for tokens)

    def _encode(self, values: tuple[str, ...]) -> np.ndarray:
        if self.vocab is not None:
            vocab = self.vocab
            new = set(values).difference(vocab)
            new.discard("")
            if new:  # ids in order of first appearance (the order of a chunk's new values
                # does not matter: the loader re-ranks by count, ties by value)
                start = len(vocab) + 1
                vocab.update(zip(new, range(start, start + len(new)), strict=True))
            if self.limit is not None and len(vocab) > self.limit:
                self._overflow()
            else:
                ids = map(vocab.get, values, itertools.repeat(0))
                return np.fromiter(ids, np.int32, len(values))
        buckets = self.buckets
        if buckets is None:  # internal invariant: hashing starts only with a bucket count
            raise RuntimeError("CSV scanner: hashing a column without a bucket count")
        hashes = {v: stable_hash(v, buckets) for v in set(values) if v}
        hashes[""] = 0
        return np.fromiter(map(hashes.__getitem__, values), np.int32, len(values))

    def _overflow(self) -> None:
        """More than ``limit`` distinct values: hash the ids kept so far and from now on."""
        if self.vocab is None or self.ids is None or self.limit is None:  # internal invariant
            raise RuntimeError("CSV scanner: vocabulary overflow on a column without a vocabulary")
        self.buckets = self.limit
        self.hashed = f"more than {self.limit} distinct values"
        table = np.zeros(len(self.vocab) + 1, np.int32)
        for value, pid in self.vocab.items():
            table[pid] = stable_hash(value, self.buckets)
        ids = self.ids.view()
        np.take(table, ids, out=ids)
        self.vocab = None

    # ------------------------------------------------------------------ after the pass

    @property
    def first_missing(self) -> int | None:
        """The line of the first empty cell (None if none)."""
        if self._first_missing is None:
            return None
        lines, k = self._first_missing
        return lines[k]

    @property
    def big_id(self) -> tuple[int, str] | None:
        """``(line, value)`` of the first integer id beyond 2**53 that made the column text."""
        if self._big_id is None:
            return None
        lines, k, value = self._big_id
        return lines[k], value

    @property
    def nonfinite(self) -> tuple[int, str] | None:
        """``(line, value)`` of the first ``inf`` / ``nan`` of a column whose every value is
        otherwise a number (None if the column holds text or no such value)."""
        if self._nonfinite is None or not self.floaty:
            return None
        lines, k, value = self._nonfinite
        return lines[k], value

    @property
    def extreme(self) -> tuple[int, str] | None:
        """``(line, value)`` of the number of largest magnitude (None if none)."""
        if self._extreme is None:
            return None
        _, lines, k, value = self._extreme
        return lines[k], value

    def distinct(self) -> int | None:
        """Distinct non-empty values (None once hashed)."""
        return None if self.vocab is None else len(self.vocab)

    def float_array(self) -> np.ndarray:
        """All numbers (NaN for empty cells) in one array; frees the chunks.

        float32 when every number is exactly a float32 (small integers, as most counts are),
        else float64.
        """
        if self.floats is None:  # internal invariant: the numbers are taken once
            raise RuntimeError("CSV scanner: the numbers of this column were already taken")
        out = self.floats.view()
        self.floats = None
        return out

    def time_array(self, scale: float | None) -> np.ndarray:
        """Seconds since 1970 (NaN for empty cells); ``scale`` for epoch numbers."""
        if scale is not None:
            return self.float_array().astype(np.float64) * scale
        if self.times is None:
            raise RuntimeError("CSV scanner: the times of this column were already taken")
        out = self.times.view()
        self.times = None
        return out

    def id_array(self) -> np.ndarray:
        """Vocabulary ids (by first appearance) or hashed ids, one int32 array (0 = empty)."""
        if self.ids is None:
            raise RuntimeError("CSV scanner: the ids of this column were already taken")
        out = self.ids.view()
        self.ids = None
        return out

    def length_array(self) -> np.ndarray:
        """Tokens per row of a sequence column."""
        return self.lengths.view()

    def drop_numbers(self) -> None:
        self.floats = None

    def drop_ids(self) -> None:
        self.ids = self.vocab = None

    def facts(self) -> dict[str, Any]:
        """Counts for the summary."""
        return {"rows": self.rows, "missing": self.missing, "distinct": self.distinct()}
