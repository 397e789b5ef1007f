"""Text rendering shared by every report: one Markdown-table renderer (:func:`markdown_table`).

Example:
    >>> print(markdown_table(["layer", "zeros"], [["dense|1", "1,024"]], align="lr"))
    | layer | zeros |
    |---|---:|
    | dense\\|1 | 1,024 |
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

__all__ = ["escape_cell", "markdown_table", "warn_to_json_path"]

_SEPARATORS = {"l": "---", "r": "---:", "c": ":---:"}


def escape_cell(text: object) -> str:
    """One table cell as Markdown: ``|`` escaped as ``\\|``, line breaks as ``<br>``.

    Args:
        text: the cell's value (converted with ``str``).

    Returns:
        The cell's text, safe inside a Markdown table row.

    Example:
        >>> escape_cell("a|b\\nc")
        'a\\\\|b<br>c'
    """
    cell = str(text).replace("|", "\\|")
    return cell.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


def markdown_table(
    head: Sequence[object],
    rows: Iterable[Sequence[object]],
    align: str | Sequence[str] | None = None,
) -> str:
    """A GitHub-flavoured Markdown table, every cell escaped by :func:`escape_cell`.

    Args:
        head: the column names.
        rows: one sequence of cells per row, each as long as ``head``.
        align: None (every column left, the default ``|---|``), or one letter per column:
            ``"l"`` left, ``"r"`` right (numbers), ``"c"`` centred; a string such as ``"llr"``
            or a sequence of letters.

    Returns:
        The table's lines joined by ``\\n`` (no trailing newline).

    Raises:
        ValueError: ``align`` or a row does not have one entry per column of ``head``, or
            ``align`` holds a letter other than ``l``, ``r``, ``c``.

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 2]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    head = list(head)
    if align is None:
        align = "l" * len(head)
    if len(align) != len(head):
        raise ValueError(
            f"`align` needs one letter per column ({len(head)}: {head}), received {align!r}."
        )
    bad = [a for a in align if a not in _SEPARATORS]
    if bad:
        raise ValueError(
            f"`align` letters must be 'l', 'r' or 'c', received {bad[0]!r} in {align!r}."
        )
    lines = [_row(head), "|" + "|".join(_SEPARATORS[a] for a in align) + "|"]
    for k, cells in enumerate(rows):
        cells = list(cells)
        if len(cells) != len(head):
            raise ValueError(
                f"Row {k} of the table has {len(cells)} cell(s) but the head has "
                f"{len(head)} ({head}); pass one cell per column."
            )
        lines.append(_row(cells))
    return "\n".join(lines)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(escape_cell(c) for c in cells) + " |"


def warn_to_json_path(cls_name: str) -> None:
    """Warn that ``to_json(path)`` (writing a file) is deprecated in favour of ``save_json``.

    ``to_json()`` returns a JSON string everywhere (Keras' meaning); the path form keeps
    writing the file for one release.

    Args:
        cls_name: the report class whose ``to_json`` got a path.
    """
    warnings.warn(
        f"{cls_name}.to_json(path) is deprecated and will be removed in the next release: "
        f"to_json() returns a JSON string; write the file with {cls_name}.save_json(path).",
        DeprecationWarning,
        stacklevel=3,
    )
