"""How ``tfcompress`` prints an error: one line naming what went wrong, a hint, the last frames.

Example:
    >>> message_lines(ValueError("bad"))
    ['bad']
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

__all__ = ["ERROR_FRAMES", "USER_ERRORS", "error_lines", "message_lines", "report_error"]


#: frames shown under a one-line error (``--traceback`` shows them all)
ERROR_FRAMES = 3
#: errors in what the user gave (arguments, recipe, files, sizes, the output path): exit status
#: 2; anything else 1
USER_ERRORS = (ValueError, TypeError, OSError, MemoryError, OverflowError, RecursionError)
#: errors printed without their type name (their message says it all)
_PLAIN_ERRORS = (ValueError, TypeError, FileNotFoundError)
#: what to try, after the message of an error that rarely says it
_HINTS = (
    (
        MemoryError,
        "out of memory: reduce the sizes asked for (samples, batch size, vocabulary, model size)",
    ),
    (RecursionError, "the input is nested too deeply (or refers to itself): simplify it"),
    (OverflowError, "a number is too large: check the sizes and ids in the input"),
    (
        OSError,
        "check the path exists, is of the right kind and is readable (or writable for an output)",
    ),
)


def _where(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    parts = path.parts
    if "tfcompress" in parts:  # the package's own files, from the package directory
        path = Path(*parts[len(parts) - 1 - parts[::-1].index("tfcompress") :])
    elif "site-packages" in parts:
        path = Path(*parts[parts.index("site-packages") + 1 :])
    return f"{path.as_posix()}:{frame.lineno} in {frame.name}"


def error_lines(err: BaseException, frames: int = ERROR_FRAMES) -> list[str]:
    """``"  at FILE:LINE in FUNCTION"`` for the last ``frames`` frames of where ``err`` was
    raised (innermost last), and the innermost tfcompress frame when it is not among them.

    Example:
        >>> try:
        ...     int("x")
        ... except ValueError as e:
        ...     error_lines(e)[-1].startswith("  at ")
        True
    """
    stack = traceback.extract_tb(err.__traceback__)
    shown = list(stack[-frames:])
    ours = [
        f
        for f in stack
        if "tfcompress" in Path(f.filename).parts and Path(f.filename).parent.name != "cli"
    ]
    if ours and ours[-1] not in shown:
        shown = [ours[-1], *shown]
    return [f"  at {_where(f)}" for f in shown]


#: lines and characters of an error message printed (``--traceback`` shows all of it)
ERROR_LINES, ERROR_CHARS = 40, 4000


def message_lines(err: BaseException) -> list[str]:
    """The message of ``err`` as the lines ``tfcompress`` prints under ``error:``.

    A one-line message stays one line; a message of several lines (a recipe listing several
    problems, a worker's log tail) keeps its lines, blank ones dropped, each line and the whole
    bounded (:data:`ERROR_LINES`, :data:`ERROR_CHARS`) with a note of what was left out. The
    type name leads unless the error is a plain ``ValueError`` / ``TypeError`` /
    ``FileNotFoundError``; a hint of what to try follows the first line of a resource error.

    Example:
        >>> message_lines(RuntimeError("2 workers failed:\\n- worker 0\\n- worker 1"))
        ['RuntimeError: 2 workers failed:', '- worker 0', '- worker 1']
    """
    kind = "" if isinstance(err, _PLAIN_ERRORS) or not str(err) else f"{type(err).__name__}: "
    lines = [ln.rstrip() for ln in (str(err) or type(err).__name__).splitlines() if ln.strip()]
    lines = lines or [type(err).__name__]
    shown, size = [], 0
    for line in lines[:ERROR_LINES]:
        if size + len(line) > ERROR_CHARS and shown:
            break
        shown.append(line[:ERROR_CHARS])
        size += len(shown[-1])
    if len(shown) < len(lines):
        shown.append(f"... {len(lines) - len(shown):,} more lines (--traceback shows them all)")
    if len(lines[0]) > ERROR_CHARS:
        shown[0] += " ... (cut; --traceback shows all of it)"
    hint = (
        None
        if isinstance(err, _PLAIN_ERRORS)
        else next((h for t, h in _HINTS if isinstance(err, t)), None)
    )
    shown[0] = f"{kind}{shown[0]}" + (f" ({hint})" if hint else "")
    return shown


def report_error(command: str, err: BaseException, full: bool) -> None:
    """Print ``err`` to stderr as ``tfcompress COMMAND: error: ...`` with its last frames
    (``full``: the whole traceback).

    Example:
        >>> report_error("run", ValueError("bad"), full=False)  # doctest: +SKIP
    """
    first, *more = message_lines(err)
    print(f"tfcompress {command}: error: {first}", file=sys.stderr)
    for line in more:  # indented under the first line, deeper than the "  at" frames below
        print(f"    {line}", file=sys.stderr)
    if full:
        traceback.print_exception(err, file=sys.stderr)
        return
    for line in error_lines(err):
        print(line, file=sys.stderr)
    print("  (run again with --traceback for the full traceback)", file=sys.stderr)
