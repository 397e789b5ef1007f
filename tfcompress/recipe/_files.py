"""The plumbing of :mod:`tfcompress.recipe`: :class:`RecipeError` (file, line and key path),
the ``check_*`` value checks, and key path -> line maps of recipe files.

Example:
    >>> err = RecipeError("expected an int >= 1, received 0", key="epochs")
    >>> str(err.under("stages[1]").at(line_for({"stages[1]": 12}, "stages[1].epochs"), "r.toml"))
    'r.toml line 12, stages[1].epochs: expected an int >= 1, received 0'
"""

from __future__ import annotations

import difflib
import json
import numbers
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tfcompress import _validation as validation

__all__ = [
    "FrozenDict",
    "RecipeError",
    "line_for",
    "plain",
    "toml_lines",
]


class RecipeError(ValueError):
    """A recipe that cannot be used: names the file, line and key path, the value and the fix.

    Attributes:
        message: what is wrong, what was expected and how to fix it.
        key: the dotted key path (``"stages[1].sparsity"``) or None.
        line: the 1-based line in ``source`` or None.
        source: the recipe file (or another label of where the recipe came from) or None.

    ``str(err)`` is ``"<source> line <line>, <key>: <message>"`` (absent parts omitted).

    Example:
        >>> str(RecipeError("expected a number in (0, 1), received 1.5",
        ...                 key="stages[1].sparsity", line=23, source="recipe.toml"))
        'recipe.toml line 23, stages[1].sparsity: expected a number in (0, 1), received 1.5'
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        line: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.key = key
        self.line = line
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = " ".join(p for p in (self.source, f"line {self.line}" if self.line else None) if p)
        head = ", ".join(p for p in (where, self.key) if p)
        return f"{head}: {self.message}" if head else self.message

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[Any, ...]:  # keep key/line/source through pickling
        return (_rebuild_error, (self.message, self.key, self.line, self.source))

    def under(self, prefix: str) -> RecipeError:
        """The same error with its key path placed under ``prefix`` (``"stages[1]"``)."""
        if not self.key:
            key = prefix
        elif self.key.startswith("["):
            key = prefix + self.key
        else:
            key = f"{prefix}.{self.key}"
        return RecipeError(self.message, key=key, line=self.line, source=self.source)

    def at(self, line: int | None = None, source: str | None = None) -> RecipeError:
        """The same error with a line and a source filled in (existing ones are kept)."""
        return RecipeError(
            self.message,
            key=self.key,
            line=self.line if self.line is not None else line,
            source=self.source if self.source is not None else source,
        )


def _rebuild_error(message: str, key: Any, line: Any, source: Any) -> RecipeError:
    return RecipeError(message, key=key, line=line, source=source)


# --------------------------------------------------------------------------- values


class FrozenDict(Mapping):
    """A read-only, hashable mapping (a model ``size`` given as a table of overrides)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] = ()) -> None:
        self._data = {key: freeze(value) for key, value in dict(data).items()}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


def freeze(value: Any) -> Any:
    """Lists become tuples and dicts :class:`FrozenDict`, recursively (hashable configs)."""
    if isinstance(value, Mapping):
        return value if isinstance(value, FrozenDict) else FrozenDict(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """JSON types: tuples become lists, mappings dicts, config objects their ``get_config()``."""
    if hasattr(value, "get_config") and callable(value.get_config):
        return value.get_config()
    if isinstance(value, Mapping):
        return {str(key): plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def describe(value: Any) -> str:
    """``value`` as a recipe author would write it, with its type: ``a string "0.7"``."""
    return f"{_type_name(value)} {show(value)}"


def show(value: Any) -> str:
    """``value`` in TOML/YAML-like spelling (``true``, ``"text"``, ``[1, 2]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {show(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a float"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def fail(
    key: str | None, expected: str, value: Any, example: str | None = None, *, typed: bool = False
) -> RecipeError:
    """``<key>: expected <expected>, received <value>; e.g. <example>`` as a RecipeError."""
    received = describe(value) if typed else show(value)
    message = f"expected {expected}, received {received}"
    if example:
        message += f"; e.g. {example}"
    return RecipeError(message, key=key)


def suggest(word: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (case-insensitive), or None."""
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, key: str, *, minimum: int | None = None, example: str) -> int:
    """``value`` as an int (bools and floats are rejected), ``>= minimum``; the check is
    :func:`tfcompress._validation.check_int`'s, the message names the recipe key."""
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    try:
        return validation.check_int(value, key, minimum=minimum)
    except TypeError:
        raise fail(key, expected, value, example, typed=True) from None
    except ValueError:
        raise fail(key, expected, value, example) from None


def check_number(
    value: Any,
    key: str,
    *,
    low: float | None = None,
    high: float | None = None,
    closed: str = "()",
    example: str,
) -> float:
    """``value`` as a finite float inside ``low``/``high`` (``closed``: ``"()"``, ``"[]"``, ...).

    An int is accepted where a float is expected; a bool or a string is not.
    """
    if low is not None and high is not None:
        expected = f"a number in {closed[0]}{_num(low)}, {_num(high)}{closed[1]}"
    elif low is not None:
        expected = f"a number {'>' if closed[0] == '(' else '>='} {_num(low)}"
    else:
        expected = "a number"
    try:  # the check of tfcompress._validation; the message names the recipe key
        return validation.check_float(
            value,
            key,
            minimum=low,
            maximum=high,
            min_open=closed[0] == "(",
            max_open=closed[1] == ")",
        )
    except TypeError:
        raise fail(key, expected, value, example, typed=True) from None
    except ValueError:
        raise fail(key, expected, value, example) from None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_bool(value: Any, key: str, *, example: str) -> bool:
    """``value`` if it is ``true``/``false`` (not 0/1, not a string)."""
    try:
        return validation.check_bool(value, key)
    except TypeError:
        raise fail(key, "true or false", value, example, typed=True) from None


def check_choice(
    value: Any, key: str, choices: Sequence[str | None], *, example: str, note: str = ""
) -> Any:
    """``value`` if it is one of ``choices`` (strings, possibly None); did-you-mean otherwise."""
    names = [c for c in choices if c is not None]
    listed = ", ".join(json.dumps(c) for c in names)
    if None in choices:
        listed += " (or leave it out)"
    expected = f"one of {listed}"
    if value in choices and (value is None or isinstance(value, str)):
        return value
    if not isinstance(value, str):
        raise fail(key, expected, value, example + note, typed=True)
    guess = suggest(value, names)
    hint = f" (did you mean {json.dumps(guess)}?)" if guess is not None else ""
    raise RecipeError(
        f"expected {expected}, received {show(value)}{hint}; e.g. {example}{note}", key=key
    )


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_run_name(value: Any, key: str, *, example: str) -> str:
    """A name that is safe as a directory name: ``[A-Za-z0-9][A-Za-z0-9_.-]*``."""
    expected = "a name of letters, digits, '_', '.' and '-' that starts with a letter or digit"
    if not isinstance(value, str):
        raise fail(key, expected, value, example, typed=True)
    if not _RUN_NAME.fullmatch(value) or len(value) > 128:
        raise fail(key, expected + " (at most 128 characters)", value, example)
    return value


def check_strings(value: Any, key: str, *, example: str) -> tuple[str, ...] | None:
    """None, or a non-empty list of non-empty strings (a single string is a list of one)."""
    expected = "a non-empty list of layer names or regexes"
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise fail(key, expected, value, example, typed=True)
    if not value:
        raise fail(key, expected + " (leave the key out to select every layer)", value, example)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise fail(
                f"{key}[{i}]",
                "a non-empty layer name or regex (a string)",
                item,
                example,
                typed=True,
            )
    return tuple(value)


def check_keys(
    config: Any, key: str | None, valid: Sequence[str], what: str, example: str
) -> Mapping[str, Any]:
    """``config`` if it is a table whose keys are all in ``valid`` (did-you-mean otherwise)."""
    if not isinstance(config, Mapping):
        raise fail(key, f"a table ({what})", config, example, typed=True)
    for name in config:
        path = name if key is None else f"{key}.{name}"
        if not isinstance(name, str):
            raise RecipeError(
                f"keys must be strings, received {describe(name)}; valid keys for {what}: "
                f"{', '.join(sorted(valid))}.",
                key=key,
            )
        if name not in valid:
            guess = suggest(name, valid)
            hint = f"did you mean {json.dumps(guess)}? " if guess else ""
            raise RecipeError(
                f"unknown key {json.dumps(name)}; {hint}valid keys for {what}: "
                f"{', '.join(sorted(valid))}.",
                key=path,
            )
    return config


# --------------------------------------------------------------------------- line numbers


def line_for(lines: Mapping[str, int], key: str | None) -> int | None:
    """The line of ``key``, else of its nearest parent with one (``"a[1].b"`` -> ``"a[1]"``)."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("[") if key.endswith("]") else -1)
        key = key[:cut] if cut > 0 else None
    return None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class _StopError(Exception):
    """The locator met text it does not follow (it then keeps the lines found so far)."""


class _TomlLocator:
    """Maps key paths of a (syntactically valid) TOML text to the lines that define them."""

    _BARE = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[str, int] = {}
        self.tables_of_arrays: dict[str, int] = {}

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def skip_space(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self.advance()
            elif c == "#":
                end = self.text.find("\n", self.pos)
                self.advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    def expect(self, token: str) -> None:
        self.skip_space(False)
        if self.peek(len(token)) != token:
            raise _StopError
        self.advance(len(token))

    def record(self, path: str, line: int) -> None:
        self.lines.setdefault(path, line)

    def string(self) -> str:
        quote = self.peek()
        triple = self.peek(3) == quote * 3
        delim = quote * 3 if triple else quote
        self.advance(len(delim))
        start = self.pos
        while self.pos < len(self.text):
            if quote == '"' and self.text[self.pos] == "\\":
                self.advance(2)
            elif self.text.startswith(delim, self.pos):
                raw = self.text[start : self.pos]
                self.advance(len(delim))
                while triple and self.peek() == quote:  # up to two quotes close a """ string
                    raw += quote
                    self.advance()
                return raw
            else:
                self.advance()
        raise _StopError

    def key(self) -> list[str]:
        parts = []
        while True:
            self.skip_space(False)
            quote = self.peek()
            if quote in ('"', "'"):
                raw = self.string()
                try:
                    parts.append(json.loads(f'"{raw}"') if quote == '"' else raw)
                except ValueError:
                    parts.append(raw)
            else:
                match = self._BARE.match(self.text, self.pos)
                if not match:
                    raise _StopError
                parts.append(match.group())
                self.advance(match.end() - self.pos)
            self.skip_space(False)
            if self.peek() != ".":
                return parts
            self.advance()

    def value(self, path: str) -> None:
        self.skip_space(False)
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.advance()
            index = 0
            while True:
                self.skip_space(True)
                if self.peek() == "]":
                    self.advance()
                    return
                item = f"{path}[{index}]"
                self.record(item, self.line)
                self.value(item)
                self.skip_space(True)
                if self.peek() == ",":
                    self.advance()
                    index += 1
                elif self.peek() != "]":
                    raise _StopError
        elif c == "{":
            self.advance()
            while True:
                self.skip_space(False)
                if self.peek() == "}":
                    self.advance()
                    return
                self.key_value(path)
                self.skip_space(False)
                if self.peek() == ",":
                    self.advance()
                elif self.peek() != "}":
                    raise _StopError
        else:
            match = re.compile(r"[^,\]}\r\n#]*").match(self.text, self.pos)
            self.advance(match.end() - self.pos if match else 0)

    def key_value(self, prefix: str) -> None:
        line = self.line
        path = prefix
        for part in self.key():
            path = _join(path, part)
            self.record(path, line)
        self.expect("=")
        self.value(path)

    def header(self) -> str:
        array = self.peek(2) == "[["
        self.advance(2 if array else 1)
        line = self.line
        parts = self.key()
        self.expect("]]" if array else "]")
        resolved = ""
        for i, part in enumerate(parts):
            resolved = _join(resolved, part)
            if array and i == len(parts) - 1:
                count = self.tables_of_arrays.get(resolved, 0)
                self.tables_of_arrays[resolved] = count + 1
                self.record(resolved, line)
                resolved += f"[{count}]"
            elif resolved in self.tables_of_arrays:
                resolved += f"[{self.tables_of_arrays[resolved] - 1}]"
            self.record(resolved, line)
        return resolved

    def run(self) -> dict[str, int]:
        prefix = ""
        try:
            while True:
                self.skip_space(True)
                if self.pos >= len(self.text):
                    break
                if self.peek() == "[":
                    prefix = self.header()
                else:
                    self.key_value(prefix)
        except (_StopError, IndexError):
            pass
        return self.lines


def toml_lines(text: str) -> dict[str, int]:
    """Map each key path of a valid TOML ``text`` to its 1-based line.

    Example:
        >>> toml_lines('name = "x"\\n[[stages]]\\nkind = "prune"\\n')["stages[0].kind"]
        3
    """
    return _TomlLocator(text).run()


def toml_syntax_line(err: Exception) -> int | None:
    """The line of a ``tomllib.TOMLDecodeError`` (``lineno`` or ``"(at line N, ..."``)."""
    line = getattr(err, "lineno", None)
    if isinstance(line, int):
        return line
    match = re.search(r"at line (\d+)", str(err))
    return int(match.group(1)) if match else None
