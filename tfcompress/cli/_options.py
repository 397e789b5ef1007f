"""Option types and option groups shared by several ``tfcompress`` commands.

Example:
    >>> positive_int("3")
    3
"""

from __future__ import annotations

import argparse

__all__ = ["add_data_options", "add_import_option", "positive_int"]

#: what ``--data`` is used for, in the help of ``export`` and ``bench``
_DATA_USE = "the test split is used for parity/benchmark and the validation split for calibration"


def positive_int(text: str) -> int:
    """An ``argparse`` type: a positive integer, or an error naming the value received.

    Example:
        >>> positive_int("0")  # doctest: +SKIP
        argparse.ArgumentTypeError: expected a positive integer, received '0'
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def add_data_options(
    p: argparse.ArgumentParser,
    required: bool,
    use: str = _DATA_USE,
    seed_help: str = "data seed (default: 0)",
) -> None:
    """``--data`` (a simulated task or a file), ``--data-format``, ``--label``, ``--samples``,
    ``--seed``: what :func:`tfcompress.cli._commands.read_data` reads."""
    p.add_argument(
        "--data",
        required=required,
        metavar="TASK_OR_FILE",
        help="a simulated task (ctr, retrieval, profile) or a data file (.csv, libFM/libFFM "
        "text, MovieLens ratings); " + use,
    )
    p.add_argument(
        "--data-format",
        default="auto",
        choices=("auto", "sim", "csv", "libfm", "movielens"),
        help="how to read --data (default: by name / suffix)",
    )
    p.add_argument("--label", help="label column of a CSV file")
    p.add_argument(
        "--samples",
        type=positive_int,
        default=20_000,
        help="samples of a simulated task (default: 20000)",
    )
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def add_import_option(p: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): packages imported before a ``.keras`` model is loaded,
    so the layer classes they register (``tensorflow_recommenders``' ``Cross``, Model Garden's
    ``BertEncoder``) are known to ``safe_mode`` loading."""
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before loading the model, for the layer classes it registers "
        "(e.g. --import tensorflow_recommenders); repeat for several",
    )
