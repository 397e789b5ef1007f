"""What the recipe's spec classes share: building one from a config table (unknown and
missing keys named), ``get_config``, and setting a field of a frozen dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

from tfcompress.recipe._files import RecipeError, check_keys, fail, plain

__all__ = ["_SpecMixin", "_from_config", "_get_config", "_nested", "_set"]


def _nested(value: Any, key: str, cls: type, what: str, example: str) -> Any:
    """``value`` as a ``cls`` object: kept if it is one, built with ``from_config`` if a table."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        try:
            return cls.from_config(value)
        except RecipeError as err:
            raise err.under(key) from None
    raise fail(key, f"a table ({what}) or a {cls.__name__}", value, example, typed=True)


_REQUIRED_EXAMPLES = {
    "name": 'name = "ctr_prune_int8"',
    "model": '[model] name = "dcn" epochs = 3',
    "student": 'student = { name = "dcn", size = "student" }',
}


def _from_config(
    cls: type, config: Mapping[str, Any], what: str, example: str, extra: tuple = ()
) -> Any:
    names = [f.name for f in fields(cls)]
    check_keys(config, None, [*names, *extra], what, example)
    for f in fields(cls):
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and f.name not in config:
            raise RecipeError(
                f"{what} needs {f.name}: expected {f.name}, received nothing; e.g. "
                f"{_REQUIRED_EXAMPLES.get(f.name, f.name + ' = ...')}",
                key=f.name,
            )
    return cls(**{k: v for k, v in config.items() if k not in extra})


def _get_config(obj: Any) -> dict[str, Any]:
    return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


class _SpecMixin:
    """``get_config``/``from_config`` of the recipe's tables (``[model]``, ``[export]``, ...)."""

    _WHAT: ClassVar[str]  # how errors name the table, e.g. "a model"
    _EXAMPLE: ClassVar[str]  # an example line for error messages

    def get_config(self) -> dict[str, Any]:
        """Every field (defaults included) as plain JSON types."""
        return _get_config(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Build from a ``get_config()`` dict; unknown keys raise a :class:`RecipeError`."""
        return _from_config(cls, config, cls._WHAT, cls._EXAMPLE)
