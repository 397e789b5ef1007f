"""Writing a recipe's config as TOML (:meth:`tfcompress.recipe.Recipe.to_toml`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from tfcompress.recipe._files import is_int, is_number

__all__ = ["dumps_toml"]


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if is_int(value):
        return str(int(value))
    if is_number(value):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"TOML cannot hold the non-finite number {number!r}.")
        return repr(number)
    if isinstance(value, Mapping):
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"TOML cannot hold {type(value).__name__} {value!r}.")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def dumps_toml(config: Mapping[str, Any], *, header: str = "") -> str:
    """Write a plain config dict as TOML: scalars first, then ``[tables]`` and ``[[arrays]]``.

    None values are left out (TOML has no null); tables inside tables are written inline.

    Example:
        >>> print(dumps_toml({"name": "x", "data": {"task": "ctr", "path": None}}), end="")
        name = "x"
        <BLANKLINE>
        [data]
        task = "ctr"
    """
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    body = [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in config.items()
        if v is not None and not isinstance(v, Mapping) and not _is_table_list(v)
    ]
    out.extend(body)
    for key, value in config.items():
        tables = [value] if isinstance(value, Mapping) else value if _is_table_list(value) else []
        for table in tables:
            if out:
                out.append("")
            out.append(f"[{_toml_key(key)}]" if isinstance(value, Mapping) else f"[[{key}]]")
            out.extend(
                f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None
            )
    return "\n".join(out) + "\n"
