"""The ``[data]`` part of a recipe: :class:`DataSpec` (import it from :mod:`tfcompress.recipe`),
a simulated task or a data file with its loader's options, validated.

Example:
    >>> spec = DataSpec(path="train_sample.csv", label="is_attributed",
    ...                 drop=["attributed_time"], split_mode="time")
    >>> spec.loader_options()
    {'split_mode': 'time', 'drop': ['attributed_time']}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from tfcompress.data import (
    LOADER_OPTIONS,
    TASK_NAMES,
    check_memory,
    file_format,
    load_file,
    load_task,
)
from tfcompress.data.csv_loader import TIMESTAMP_FEATURES
from tfcompress.data.movielens import MOVIELENS_SPLITS
from tfcompress.data.simulated import task_memory_bytes
from tfcompress.recipe._files import (
    FrozenDict,
    RecipeError,
    check_bool,
    check_choice,
    check_int,
    check_keys,
    check_number,
    fail,
    freeze,
    is_number,
    plain,
    show,
)

#: ``DataSpec.format`` values; all but ``"auto"`` need a ``path``.
DATA_FORMATS = ("auto", "csv", "libfm", "movielens")
#: ``split_mode`` values per file format (the first is the loader's default).
SPLIT_MODES_BY_FORMAT = {
    "csv": ("random", "time", "by_user"),
    "movielens": MOVIELENS_SPLITS,
    "libfm": ("random",),
}
#: With a ``path``, ``task`` names the loader's task (the first is the default).
FILE_TASKS = {"csv": ("binary", "multiclass"), "movielens": ("ctr", "retrieval"), "libfm": ()}
_FORMAT_NAMES = {"csv": "CSV", "movielens": "MovieLens", "libfm": "libFM"}
_COLUMN_LISTS = ("drop", "numeric", "categorical", "sequence", "timestamps")


def _columns(value: Any, key: str) -> tuple[str, ...] | None:
    """None, or a non-empty list of column names (a single string is a list of one)."""
    example = f'{key} = ["attributed_time"]' if key == "drop" else f'{key} = ["price"]'
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise fail(
            key,
            "a non-empty list of column names",
            value,
            example,
            typed=not isinstance(value, (list, tuple)),
        )
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise fail(
                f"{key}[{i}]", "a column name (a non-empty string)", item, example, typed=True
            )
    return tuple(value)


def _name(value: Any, key: str, example: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise fail(key, "a column name (a non-empty string)", value, example, typed=True)
    return value


def _per_column(value: Any, key: str, example: str, allow_int: bool) -> Any:
    if value is None:
        return None
    if allow_int and not isinstance(value, Mapping):
        return check_int(value, key, minimum=1, example=example)
    if not isinstance(value, Mapping) or not value:
        raise fail(key, "a table {column = count}", value, example, typed=True)
    return FrozenDict(
        {
            str(col): check_int(n, f"{key}.{col}", minimum=1, example=example)
            for col, n in value.items()
        }
    )


def _split(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    example = "split = [0.8, 0.1, 0.1]"
    expected = "three fractions (train, validation, test) >= 0 that sum to 1, train > 0"
    if not isinstance(value, (list, tuple)) or not all(is_number(v) for v in value):
        raise fail("split", expected, value, example, typed=True)
    parts = tuple(float(v) for v in value)
    if (
        len(parts) != 3
        or not all(math.isfinite(p) and p >= 0 for p in parts)
        or abs(sum(parts) - 1.0) > 1e-6
        or parts[0] <= 0
    ):
        raise fail("split", expected, value, example)
    return parts


@dataclass(frozen=True)
class DataSpec:
    """The data of a run: a simulated task or a data file with its loader's options.

    Attributes:
        task: a simulated task (``tfcompress.data.TASK_NAMES``: ``"ctr"``, ``"retrieval"``,
            ``"profile"``), or, with a ``path``, the file's task: ``"binary"`` /
            ``"multiclass"`` (CSV) or ``"ctr"`` / ``"retrieval"`` (MovieLens); None: the
            loader's default. The default ``"ctr"`` gives way to a ``path``.
        path: a data file (CSV, libFM/libFFM, MovieLens ratings) instead of a task.
        format: ``"auto"`` (from the file name) or ``"csv"``, ``"libfm"``, ``"movielens"``.
        label: the label column of a CSV file (required for CSV).
        samples: the size of a simulated task (>= 100, and small enough to fit in this
            machine's memory: about 1.4 KB a sample; a larger one is refused here, before
            anything is drawn).
        seed: the data seed (>= 0).
        batch_size: the training batch size (>= 1).
        split: train / validation / test fractions (None: 0.8, 0.1, 0.1), of a file or of
            a simulated task's samples.
        split_mode: ``"random"``, ``"time"``, ``"by_user"`` (CSV, MovieLens) or
            ``"leave_last_out"`` (MovieLens' default).
        time_column, user_column: the time / user of a CSV row for those split modes.
        drop, numeric, categorical, sequence, timestamps: CSV column lists (drop; kind
            overrides).
        timestamp_features: ``"hour_weekday"`` or ``"drop"`` (CSV).
        hash_buckets, max_vocab, hash_threshold: CSV id encodings (see
            :func:`tfcompress.data.load_csv`).
        numeric_fill: ``"mean"`` or a number for empty numeric cells (CSV).
        delimiter, header: the field separator; the header (CSV: true, false or the column
            names; MovieLens: true / false, detected when left out).
        sequence_separator, sequence_length: CSV token lists (and MovieLens' history length).
        strict: a leak (a column predicting the label with AUC >= 0.99) is an error (CSV,
            libFM).
        min_rating, negatives: MovieLens' positive threshold and sampled negatives.
        n_features, max_fields: libFM's index space and kept fields.

    Example:
        >>> DataSpec(task="ctr", samples=5_000).batch_size
        256
        >>> DataSpec(path="clicks.csv", label="click").task is None
        True
    """

    _WHAT: ClassVar[str] = "the data"
    _EXAMPLE: ClassVar[str] = '[data] task = "ctr"'
    task: str | None = "ctr"
    path: str | None = None
    format: str = "auto"
    label: str | None = None
    samples: int = 20_000
    seed: int = 0
    batch_size: int = 256
    split: tuple[float, ...] | None = None
    split_mode: str | None = None
    time_column: str | None = None
    user_column: str | None = None
    drop: tuple[str, ...] | None = None
    numeric: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    sequence: tuple[str, ...] | None = None
    timestamps: tuple[str, ...] | None = None
    timestamp_features: str | None = None
    hash_buckets: Mapping[str, int] | None = None
    max_vocab: int | Mapping[str, int] | None = None
    hash_threshold: int | None = None
    numeric_fill: float | str | None = None
    delimiter: str | None = None
    header: bool | tuple[str, ...] | None = None
    sequence_separator: str | None = None
    sequence_length: int | None = None
    strict: bool = False
    min_rating: float | None = None
    negatives: int | None = None
    n_features: int | None = None
    max_fields: int | None = None

    def __post_init__(self) -> None:
        path = self.path
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if path is not None and (not isinstance(path, str) or not path):
            raise fail(
                "path", "a data file path (a string)", path, 'path = "clicks.csv"', typed=True
            )
        check_choice(self.format, "format", DATA_FORMATS, example='format = "csv"')
        fmt = None if path is None else file_format(path, self.format)
        task = self._task(path, fmt)
        if path is None and self.format != "auto":
            raise RecipeError(
                f"format = {show(self.format)} applies to data files only; set path to the "
                "file, or remove format (simulated tasks need none).",
                key="format",
            )
        self._label(path, fmt, task)
        _set(self, "path", path)
        _set(self, "task", task)
        _set(
            self,
            "samples",
            check_int(self.samples, "samples", minimum=100, example="samples = 20000"),
        )
        if path is None:  # a simulated task: refuse a size that cannot fit before drawing it
            _check_fits(task, self.samples)  # type: ignore[arg-type]
        _set(self, "seed", check_int(self.seed, "seed", minimum=0, example="seed = 0"))
        _set(
            self,
            "batch_size",
            check_int(self.batch_size, "batch_size", minimum=1, example="batch_size = 256"),
        )
        self._check_options(fmt)
        self._applies(path, fmt, task)

    # ------------------------------------------------------------------ checks

    def _task(self, path: str | None, fmt: str | None) -> str | None:
        task = self.task
        if path is None:
            check_choice(
                task,
                "task",
                TASK_NAMES,
                example='task = "ctr"',
                note=" (or set path to a data file)",
            )
            return task
        if task is None or task == "ctr":
            return None  # the default task gives way to a file (and is MovieLens' default)
        _check_file_task(task, path, fmt)  # type: ignore[arg-type]
        return task

    def _label(self, path: str | None, fmt: str | None, task: str | None) -> None:
        if self.label is not None and (not isinstance(self.label, str) or not self.label):
            raise fail(
                "label",
                "the label column name (a string)",
                self.label,
                'label = "click"',
                typed=True,
            )
        if fmt == "csv" and self.label is None:
            raise RecipeError(
                f"the CSV file {show(path)} needs its label column: expected label = "
                '"<column name>", received nothing; e.g. label = "click"',
                key="label",
            )
        if self.label is not None and fmt != "csv":
            raise RecipeError(
                f"label applies to CSV files only, received label = {show(self.label)} with "
                f"{'task = ' + show(task) if path is None else 'path = ' + show(path)}; "
                'remove label (or use a .csv file / format = "csv").',
                key="label",
            )

    def _check_options(self, fmt: str | None) -> None:
        self._check_split(fmt)
        self._check_columns()
        if self.timestamp_features is not None:
            check_choice(
                self.timestamp_features,
                "timestamp_features",
                TIMESTAMP_FEATURES,
                example='timestamp_features = "hour_weekday"',
            )
        _set(
            self,
            "hash_buckets",
            _per_column(
                self.hash_buckets, "hash_buckets", "hash_buckets = { user = 100000 }", False
            ),
        )
        _set(self, "max_vocab", _per_column(self.max_vocab, "max_vocab", "max_vocab = 50000", True))
        for key, example in (
            ("hash_threshold", "hash_threshold = 100000"),
            ("sequence_length", "sequence_length = 20"),
            ("n_features", "n_features = 1000000"),
            ("max_fields", "max_fields = 39"),
        ):
            if getattr(self, key) is not None:
                _set(self, key, check_int(getattr(self, key), key, minimum=1, example=example))
        if self.negatives is not None:
            least = 0 if self.task == "retrieval" else 1
            _set(
                self,
                "negatives",
                check_int(self.negatives, "negatives", minimum=least, example="negatives = 4"),
            )
        if self.min_rating is not None:
            _set(
                self,
                "min_rating",
                check_number(self.min_rating, "min_rating", example="min_rating = 4.0"),
            )
        fill = self.numeric_fill
        if fill is not None and fill != "mean" and (not is_number(fill) or not math.isfinite(fill)):
            raise fail(
                "numeric_fill",
                '"mean" or a number',
                fill,
                'numeric_fill = "mean"',
                typed=not isinstance(fill, str),
            )
        self._text_options(fmt)
        check_bool(self.strict, "strict", example="strict = true")

    def _check_split(self, fmt: str | None) -> None:
        """``split``, ``split_mode`` and the columns a split mode reads."""
        _set(self, "split", _split(self.split))
        if self.split_mode is not None:
            modes = SPLIT_MODES_BY_FORMAT[fmt] if fmt else MOVIELENS_SPLITS
            if self.split_mode not in modes:
                listed = ", ".join(f'"{m}"' for m in modes)
                where = f" for {_FORMAT_NAMES[fmt]} files" if fmt else ""
                raise fail(
                    "split_mode",
                    f"one of {listed}{where}",
                    self.split_mode,
                    f'split_mode = "{modes[min(1, len(modes) - 1)]}"',
                    typed=not isinstance(self.split_mode, str),
                )
        for key in ("time_column", "user_column"):
            _set(self, key, _name(getattr(self, key), key, f'{key} = "click_time"'))
        for key, mode in (("time_column", "time"), ("user_column", "by_user")):
            if getattr(self, key) is not None and self.split_mode != mode:
                raise RecipeError(
                    f'{key} applies to split_mode = "{mode}", received {key} = '
                    f"{show(getattr(self, key))} with split_mode = {show(self.split_mode)}; "
                    f'set split_mode = "{mode}" or remove {key}.',
                    key=key,
                )

    def _check_columns(self) -> None:
        """The column lists: each column in one list at most, never the label."""
        seen: dict[str, str] = {}
        for key in _COLUMN_LISTS:
            cols = _columns(getattr(self, key), key)
            _set(self, key, cols)
            for col in cols or ():
                if col == self.label:
                    raise RecipeError(
                        f"{show(col)} is the label column; remove it from {key}.", key=key
                    )
                if col in seen:
                    raise RecipeError(
                        f"the column {show(col)} is listed in both {seen[col]} and {key}; "
                        "keep one.",
                        key=key,
                    )
                seen[col] = key

    def _text_options(self, fmt: str | None) -> None:
        one_char = fmt == "csv"
        for key, example in (
            ("delimiter", 'delimiter = "\\t"'),
            ("sequence_separator", 'sequence_separator = "|"'),
        ):
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, str) or not value or (one_char and len(value) != 1):
                expected = "one character" if one_char else "a non-empty string"
                raise fail(key, expected, value, example, typed=not isinstance(value, str))
        header = self.header
        if header is None or isinstance(header, bool):
            return
        if (
            fmt == "csv"
            and isinstance(header, (list, tuple))
            and header
            and all(isinstance(h, str) and h for h in header)
        ):
            _set(self, "header", tuple(header))
            return
        expected = (
            "true, false or the list of column names"
            if fmt == "csv"
            else "true or false (leave it out to detect it)"
        )
        raise fail("header", expected, header, 'header = ["label", "I1", "C1"]', typed=True)

    def _applies(self, path: str | None, fmt: str | None, task: str | None) -> None:
        """Every option that is set must be one of the format's loader options."""
        for key in self._option_names():
            value = getattr(self, key)
            if value is None or (key == "strict" and value is False):
                continue
            if path is None and key == "split":  # a simulated task is split as well
                continue
            if path is None:
                raise RecipeError(
                    f"{key} applies to data files only, received {key} = {show(plain(value))} "
                    f"with task = {show(task)}; remove {key} (or set path to a data file).",
                    key=key,
                )
            if key not in LOADER_OPTIONS[fmt]:  # type: ignore[index]
                takes = sorted(set(LOADER_OPTIONS[fmt]) & set(self._option_names()))  # type: ignore[index]
                raise RecipeError(
                    f"{key} does not apply to {_FORMAT_NAMES[fmt]} files, received "  # type: ignore[index]
                    f"{key} = {show(plain(value))} with path = {show(path)}; remove it "
                    f"({_FORMAT_NAMES[fmt]} options: {', '.join(takes)}).",  # type: ignore[index]
                    key=key,
                )

    @classmethod
    def _option_names(cls) -> list[str]:
        fixed = ("task", "path", "format", "label", "samples", "seed", "batch_size")
        return [f.name for f in fields(cls) if f.name not in fixed]

    # ------------------------------------------------------------------ use

    @property
    def resolved_format(self) -> str | None:
        """The file format (``format``, or what ``"auto"`` reads from the name); None for a task.

        ``"auto"``: ``*.csv``/``*.csv.gz``/``*.tsv`` is CSV, unless the name contains
        ``rating`` (MovieLens ``ratings.csv``); ``*.dat``/``*.data`` or a name with ``rating``
        is MovieLens; anything else libFM.

        Example:
            >>> DataSpec(path="ml/ratings.dat").resolved_format
            'movielens'
        """
        return None if self.path is None else file_format(self.path, self.format)

    def loader_options(self) -> dict[str, Any]:
        """The keyword options for the file's loader (those that are set), as plain values.

        ``tfcompress.data.load_file(spec.path, format=spec.resolved_format, label=spec.label,
        seed=spec.seed, batch_size=spec.batch_size, **spec.loader_options())`` loads the data.
        Empty for a simulated task.

        Example:
            >>> DataSpec(path="u.data", min_rating=4, task="retrieval").loader_options()
            {'task': 'retrieval', 'min_rating': 4.0}
        """
        if self.path is None:
            return {}
        options: dict[str, Any] = {} if self.task is None else {"task": self.task}
        for key in self._option_names():
            value = getattr(self, key)
            if value is None or (key == "strict" and value is False):
                continue
            options[key] = plain(value)
        return options

    def get_config(self) -> dict[str, Any]:
        """Every field (defaults included) as plain JSON types."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DataSpec:
        """Build from a ``get_config()`` dict; unknown keys raise a :class:`RecipeError`."""
        check_keys(config, None, [f.name for f in fields(cls)], cls._WHAT, cls._EXAMPLE)
        path, task = config.get("path"), config.get("task")
        if isinstance(path, str) and path and task is not None:  # both written in the recipe
            fmt = config.get("format", "auto")
            if fmt in DATA_FORMATS:
                _check_file_task(task, path, file_format(path, fmt))
        if path is not None and "task" not in config:
            config = {**config, "task": None}
        frozen = {
            k: freeze(v) if k in ("hash_buckets", "max_vocab") else v for k, v in config.items()
        }
        return cls(**frozen)


def _check_file_task(task: Any, path: str, fmt: str) -> None:
    """A task written next to a path must be one of the file format's tasks."""
    allowed = FILE_TASKS[fmt]
    if task in allowed:
        return
    tasks = " or ".join(f'"{t}"' for t in allowed) or "none"
    raise RecipeError(
        f"give either task (a simulated dataset) or path (a data file), not both; received "
        f"task = {show(task)} and path = {show(path)}. Remove one of them (with a path, task "
        f"names the file's task: {tasks} for {_FORMAT_NAMES[fmt]} files).",
        key="task",
    )


def _check_fits(task: str, samples: int) -> None:
    """``samples`` of the simulated ``task`` must fit in this machine's memory."""
    fixed = task_memory_bytes(task, 0)
    try:
        check_memory(
            f"samples = {samples}",
            samples,
            task_memory_bytes(task, 1) - fixed,
            fixed,
            f"the simulated {task} task",
            "samples",
            'path = "clicks.csv" in [data], read from disk',
        )
    except ValueError as err:
        raise RecipeError(str(err), key="samples") from None


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- loading


def load_data(spec: DataSpec) -> Any:
    """The :class:`~tfcompress.data.TaskData` a recipe's ``[data]`` describes.

    It imports the data loaders only (no compression technique): ``tfcompress bench`` reads its
    ``--data`` through it.

    Example:
        >>> from tfcompress.recipe import DataSpec
        >>> load_data(DataSpec(task="ctr", samples=1_000)).schema.task
        'binary'
    """
    if not isinstance(spec, DataSpec):
        raise TypeError(f"`spec` must be a tfcompress.recipe.DataSpec, received {spec!r:.80}.")
    if spec.path is None:
        split = {} if spec.split is None else {"split": spec.split}
        return load_task(
            spec.task, n_samples=spec.samples, seed=spec.seed, batch_size=spec.batch_size, **split
        )
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"data.path {spec.path!r} does not exist (a relative path in a recipe file is read "
            "from the recipe's folder; in a Recipe built in Python, from the working directory "
            f"{os.getcwd()!r}); fix the path or give an absolute one."
        )
    # every [data] option of the file's loader (drop, strict, split_mode, ...)
    return load_file(
        path,
        format=spec.resolved_format,
        label=spec.label,
        seed=spec.seed,
        batch_size=spec.batch_size,
        **spec.loader_options(),
    )
