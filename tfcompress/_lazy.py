"""Names of a package that load on first use (PEP 562), so importing a namespace stays cheap:
the one copy of the ``__getattr__``/``__dir__`` pair the subpackages' ``__init__`` use.

Example:
    >>> import types
    >>> pkg = types.ModuleType("pkg")
    >>> pkg.__getattr__, pkg.__dir__ = attach("pkg", {"sqrt": "math"}, vars(pkg), ["sqrt"])
    >>> pkg.sqrt(9.0)
    3.0
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["attach"]


def attach(
    package: str,
    names: Mapping[str, str],
    namespace: dict[str, Any],
    public: Sequence[str],
    deprecated: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's name (``__name__``), for messages.
        names: public name -> the module that defines it (``"module:attribute"`` when the
            attribute is spelled differently there).
        namespace: the package's ``globals()``: a loaded name is cached there, so later lookups
            skip ``__getattr__``.
        public: the package's ``__all__`` (``dir()`` lists it before anything is loaded).
        deprecated: old name -> its new spelling; such a name warns (``DeprecationWarning``)
            on every use and returns the new object.

    Returns:
        The two module-level functions, to assign to ``__getattr__`` and ``__dir__``.
    """
    old = dict(deprecated or {})

    def module_getattr(name: str) -> Any:
        if name in old:
            from tfcompress._moved import deprecated as warn_moved

            return warn_moved(f"{package}.{name}", old[name])
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        namespace[name] = value
        return value

    def module_dir() -> list[str]:
        return sorted({*namespace, *public})

    return module_getattr, module_dir
