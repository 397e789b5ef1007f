"""One entry point for data files: :func:`load_file` picks the loader and passes the options.

Example:
    >>> from tfcompress.data import load_file
    >>> task = load_file("train_sample.csv", label="is_attributed", drop=["attributed_time"],
    ...                  split_mode="time")  # doctest: +SKIP
    >>> print(task.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from tfcompress.data.csv_loader import load_csv
from tfcompress.data.libfm import load_libfm
from tfcompress.data.movielens import load_movielens
from tfcompress.data.schema import TaskData

__all__ = ["FORMATS", "LOADER_OPTIONS", "file_format", "load_file"]

#: ``format`` values of :func:`load_file`; ``"auto"`` reads the format from the file name.
FORMATS = ("auto", "csv", "libfm", "movielens")
_LOADERS = {"csv": load_csv, "libfm": load_libfm, "movielens": load_movielens}
_COMMON = ("path", "label", "seed", "batch_size")
#: The keyword options each loader takes besides path, label, seed and batch_size.
LOADER_OPTIONS: dict[str, tuple[str, ...]] = {
    fmt: tuple(p for p in inspect.signature(fn).parameters if p not in (*_COMMON, "sep"))
    for fmt, fn in _LOADERS.items()
}


def file_format(path: str | os.PathLike[str], format: str = "auto") -> str:
    """The loader a file needs: ``format``, or what ``"auto"`` reads from the name.

    ``*.csv`` / ``*.csv.gz`` / ``*.tsv`` is CSV unless the name contains ``rating`` (MovieLens
    ``ratings.csv``); ``*.dat`` / ``*.data`` or a name with ``rating`` is MovieLens; anything
    else libFM.

    Example:
        >>> file_format("ml-100k/u.data"), file_format("day_0.csv.gz"), file_format("a.ffm")
        ('movielens', 'csv', 'libfm')
    """
    if format not in FORMATS:
        raise ValueError(
            f"format must be one of {list(FORMATS)}, received {format!r}; pass e.g. format='csv'."
        )
    if format != "auto":
        return format
    name = os.path.basename(os.fsdecode(os.fspath(path))).lower()
    stem = name.removesuffix(".gz")
    if stem.endswith((".csv", ".tsv")) and "rating" not in name:
        return "csv"
    if os.path.splitext(stem)[1] in (".dat", ".data") or "rating" in name:
        return "movielens"
    return "libfm"


def load_file(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    label: str | None = None,
    seed: int = 0,
    batch_size: int = 256,
    **options: Any,
) -> TaskData:
    """Load a data file with :func:`load_csv`, :func:`load_movielens` or :func:`load_libfm`.

    Args:
        path: the file.
        format: ``"auto"`` (:func:`file_format`), ``"csv"``, ``"movielens"`` or ``"libfm"``.
        label: the label column (CSV files only, required there).
        seed: seeds the split, the negatives and the shuffle.
        batch_size: examples per batch.
        **options: the loader's other keyword arguments (:data:`LOADER_OPTIONS`), e.g.
            ``drop``, ``numeric_fill``, ``split_mode`` (CSV) or ``min_rating``, ``negatives``
            (MovieLens).

    Returns:
        The loader's :class:`TaskData`; ``print(task.summary())`` shows what was loaded.

    Raises:
        ValueError: an unknown format, a missing or misplaced ``label``, or what the loader
            raises.
        TypeError: an option the format's loader does not take (the message lists them).

    Example:
        >>> task = load_file("ml-100k/u.data", min_rating=4, negatives=4, split_mode="time")
        >>> task.schema.label
        'click'
    """
    fmt = file_format(path, format)
    unknown = sorted(
        set(options) - set(LOADER_OPTIONS[fmt]) - ({"sep"} if fmt == "movielens" else set())
    )
    if unknown:
        raise TypeError(
            f"{unknown[0]} is not an option of {fmt} files ({os.fspath(path)}); accepted: "
            f"{', '.join(LOADER_OPTIONS[fmt])}."
        )
    common: dict[str, Any] = {"seed": seed, "batch_size": batch_size}
    if fmt == "csv":
        if label is None:
            raise ValueError(
                f"the CSV file {os.fspath(path)} needs label='<label column>' (recipe [data]: "
                'label = "click").'
            )
        return load_csv(path, label=label, **common, **options)
    if label is not None:
        raise ValueError(
            f"label= applies to CSV files only, received label={label!r} for the {fmt} file "
            f"{os.fspath(path)}; remove it (or pass format='csv')."
        )
    return _LOADERS[fmt](path, **common, **options)
