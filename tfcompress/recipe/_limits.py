"""Bounds on the work of reading a recipe: file size (:data:`MAX_BYTES`), nesting depth
(:data:`MAX_DEPTH`) and YAML alias expansion (:data:`MAX_VALUES`), each refused with a
:class:`~tfcompress.recipe._files.RecipeError` that says how to fix the file.

Example:
    >>> check_toml_depth("a = [[1], [2]]\\n")
    >>> check_toml_depth("a = " + "[" * 40 + "]" * 40)
    Traceback (most recent call last):
    ...
    tfcompress.recipe._files.RecipeError: line 1: values nested more than 32 deep ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfcompress.recipe._files import RecipeError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "bounded_yaml_loader",
    "check_data_depth",
    "check_size",
    "check_toml_depth",
    "read_text",
    "yaml_tree",
    "strip_bom",
]

#: The largest recipe (file or text), in bytes (characters for a text).
MAX_BYTES = 1 << 20
#: The deepest nesting of lists and tables inside each other.
MAX_DEPTH = 32
#: The most values (scalars, lists, tables) a YAML document may expand to through its aliases.
MAX_VALUES = 100_000

_BOM = "\ufeff"


def _depth_message() -> str:
    return (
        f"values nested more than {MAX_DEPTH} deep (lists or tables inside each other); a "
        "recipe needs a few levels. Flatten the value, or check that this is the right file."
    )


def check_size(text: str) -> None:
    """Refuse a recipe text longer than :data:`MAX_BYTES` characters.

    Raises:
        RecipeError: the text is too long.

    Example:
        >>> check_size('name = "run"')
    """
    if len(text) > MAX_BYTES:
        raise RecipeError(
            f"the recipe text is larger than the 1 MiB limit for recipe files (received "
            f"{len(text):,} characters); a recipe is a few KB of TOML or YAML. Check that this "
            "is the recipe and not a data file."
        )


def read_text(file: Path) -> str:
    """The UTF-8 text of a recipe file (a leading BOM dropped), reading at most 1 MiB + 1 byte.

    Raises:
        RecipeError: the file is larger than :data:`MAX_BYTES` or is not UTF-8 (no ``source``
            set: the caller adds it).

    Example:
        >>> read_text(Path("recipes/demo.toml")).startswith("#")  # doctest: +SKIP
        True
    """
    with open(file, "rb") as stream:
        raw = stream.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise RecipeError(
            "the file is larger than the 1 MiB limit for recipe files; a recipe is a few KB of "
            "TOML or YAML. Check that this is the recipe and not a data file."
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RecipeError(f"the file is not UTF-8 text ({err}); save it as UTF-8.") from None


def strip_bom(text: str) -> str:
    """``text`` without a leading UTF-8 byte-order mark (Windows editors write one)."""
    return text[1:] if text.startswith(_BOM) else text


# TOML strings and comments, whose brackets do not nest anything.
_TOML_SKIP = re.compile(
    r'"""[\s\S]*?"""(?!")|\'\'\'[\s\S]*?\'\'\'(?!\')|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\'|#[^\n]*'
)
_TOML_BRACKETS = re.compile(r"[\[\]{}]")


def check_toml_depth(text: str) -> None:
    """Refuse a TOML text whose arrays / inline tables nest deeper than :data:`MAX_DEPTH`.

    A linear scan before parsing (the TOML parser recurses once per level).

    Raises:
        RecipeError: with the line where the limit is passed.

    Example:
        >>> check_toml_depth('a = [1, "[[[["]\\n[[stages]]\\n')
    """
    depth = 0
    pos = 0
    for match in _TOML_SKIP.finditer(text):
        depth = _scan(text, pos, match.start(), depth)
        pos = match.end()
    _scan(text, pos, len(text), depth)


def _scan(text: str, start: int, end: int, depth: int) -> int:
    for match in _TOML_BRACKETS.finditer(text, start, end):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise RecipeError(_depth_message(), line=line)
        else:
            depth = max(depth - 1, 0)
    return depth


def check_data_depth(data: Any) -> None:
    """Refuse a parsed recipe nested deeper than :data:`MAX_DEPTH` (e.g. a long dotted key).

    Iterative, so it cannot overflow the stack itself.

    Raises:
        RecipeError: with the key path of the first value past the limit.

    Example:
        >>> check_data_depth({"a": [{"b": 1}]})
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping):
            children = [(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            continue
        if depth >= MAX_DEPTH:
            raise RecipeError(_depth_message(), key=path or None)
        stack.extend((child, sub, depth + 1) for child, sub in children)


_LOADER: Any = None


def bounded_yaml_loader() -> Any:
    """A ``yaml.SafeLoader`` subclass that bounds depth, alias expansion and recursion.

    While composing, every node records how many values it expands to with its aliases written
    out (``1 + `` its children's); a node past :data:`MAX_VALUES`, a collection nested past
    :data:`MAX_DEPTH`, or an alias to a collection that is still open (``&a [1, *a]``) raises a
    :class:`RecipeError` with the line, before any exponential or recursive work is done.

    Example:
        >>> loader = bounded_yaml_loader()("a: [1, 2]")
        >>> loader.get_single_data()
        {'a': [1, 2]}
    """
    global _LOADER
    if _LOADER is None:
        _LOADER = _make_loader()
    return _LOADER


def _make_loader() -> Any:
    import yaml

    class BoundedSafeLoader(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._sizes: dict[int, int] = {}  # id(node) -> values it expands to
            self._depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                target = self.anchors.get(event.anchor)
                # every node gets its size once composed: a target without one is still open
                if target is not None and id(target) not in self._sizes:
                    raise RecipeError(
                        f"YAML alias *{event.anchor} refers to the value that contains it (a "
                        "recursive structure); a recipe is a tree. Write the value out instead "
                        "of the alias.",
                        line=event.start_mark.line + 1,
                    )
                return super().compose_node(parent, index)
            collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
            if collection:
                if self._depth >= MAX_DEPTH:
                    raise RecipeError(_depth_message(), line=self.peek_event().start_mark.line + 1)
                self._depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                if collection:
                    self._depth -= 1
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = []
            size = 1 + sum(self._sizes[id(child)] for child in children)
            if size > MAX_VALUES:
                raise RecipeError(
                    f"YAML aliases expand to more than {MAX_VALUES} values (an alias bomb); a "
                    "recipe has a few hundred. Remove the aliases (write the values out), or "
                    "check that this is the right file.",
                    line=node.start_mark.line + 1,
                )
            self._sizes[id(node)] = size
            return node

    return BoundedSafeLoader


def yaml_tree(text: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML ``text`` safely: ``(data, {key path: 1-based line})``.

    Raises:
        RecipeError: a syntax error (with its line), a key given twice in one table, or a
            document past the limits of ``_recipe_limits`` (depth, alias expansion).

    Example:
        >>> yaml_tree("name: x\\nstages:\\n  - kind: prune\\n")[1]["stages[0].kind"]
        3
    """
    import yaml

    loader = bounded_yaml_loader()(text)  # a SafeLoader bounding depth and alias expansion
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        detail = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise RecipeError(
            f"YAML syntax error: {detail}; fix the YAML (indent nested keys consistently, "
            "put a space after ':' and quote strings that contain ':' or '#').",
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as err:
        raise RecipeError(f"YAML error: {err}") from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if node is not None:
        _yaml_walk(node, "", lines)
    return data, lines


def _yaml_walk(node: Any, path: str, lines: dict[str, int]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            name = str(key_node.value)
            sub = f"{path}.{name}" if path else name
            if name in seen:
                raise RecipeError(
                    f"key {json.dumps(name)} is given twice; keep one of them.",
                    key=sub,
                    line=key_node.start_mark.line + 1,
                )
            seen.add(name)
            lines.setdefault(sub, key_node.start_mark.line + 1)
            _yaml_walk(value_node, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines.setdefault(sub, item.start_mark.line + 1)
            _yaml_walk(item, sub, lines)
