"""The ``tfcompress`` command; it imports TensorFlow only in the subcommands that need it.

Example:
    $ tfcompress demo --samples 8000 --epochs 1
    $ tfcompress run recipes/demo.toml --logdir runs/
    $ tfcompress report savedmodels/demo
    $ tfcompress compress model.keras --data ctr --max-loss 0.002 --objective size
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from tfcompress.cli._commands import COMMANDS as _BASE_COMMANDS
from tfcompress.cli._commands import read_data
from tfcompress.cli._compress import run_compress
from tfcompress.cli._errors import (
    ERROR_FRAMES,
    USER_ERRORS,
    error_lines,
    message_lines,
    report_error,
)
from tfcompress.cli._parser import build_parser, demo_defaults

__all__ = [
    "ERROR_FRAMES",
    "USER_ERRORS",
    "build_parser",
    "demo_defaults",
    "error_lines",
    "main",
    "message_lines",
]

# the spellings of cli.py before it became a package (tests and scripts import them)
_build_parser = build_parser
_read_data = read_data
_COMMANDS = {**_BASE_COMMANDS, "compress": run_compress}
#: commands that resume where an interrupted run stopped
_RESUMABLE = {
    "run": "at the stage (and epoch) that was running",
    "demo": "at the stage (and epoch) that was running",
    "compress": "with the candidates already finished (cached under --out)",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tfcompress`` command line; returns the exit status.

    Example:
        >>> main(["demo", "--print-recipe"])  # doctest: +SKIP
        0
    """
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # before any command loads TensorFlow
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.command in _RESUMABLE:
            print(
                f"tfcompress {args.command}: interrupted; run the same command again to resume "
                f"{_RESUMABLE[args.command]}.",
                file=sys.stderr,
            )
        return 130
    except Exception as err:  # every failure: one line and where it came from
        report_error(args.command, err, args.traceback)
        return 2 if isinstance(err, USER_ERRORS) else 1
