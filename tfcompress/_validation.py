"""Argument checks shared by every subpackage: one copy of each kind, one message style.

Every message reads "`{name}` must be {expected}, received {value!r} ({type}). {fix}".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network
from tfcompress._keras import check_model, keras

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_functional",
    "check_int",
    "is_functional",
    "must_be",
]


def _shown(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def must_be(name: str, expected: str, value: Any, fix: str = "", *, where: str = "") -> str:
    """The one message style: "`name` must be expected, received value (type). fix".

    Args:
        name: the argument's name (or a path into it, e.g. ``"sizes['user']"``).
        expected: what the argument must be, e.g. ``"an int >= 1"``.
        value: what was received.
        fix: one sentence that says what to pass instead; may be empty.
        where: the function or class the argument belongs to; prefixed as ``"where: "``.

    Returns:
        The message text.

    Example:
        >>> must_be("seed", "an int >= 0", -1, "Pass e.g. seed=0.")
        '`seed` must be an int >= 0, received -1 (int). Pass e.g. seed=0.'
    """
    prefix = f"{where}: " if where else ""
    text = (
        f"{prefix}`{name}` must be {expected}, received {_shown(value)} ({type(value).__name__})."
    )
    return f"{text} {fix}" if fix else text


def _bounds(
    kind: str,
    minimum: float | None,
    maximum: float | None,
    min_open: bool = False,
    max_open: bool = False,
) -> str:
    low = "(" if min_open else "["
    high = ")" if max_open else "]"
    if minimum is not None and maximum is not None:
        return f"{kind} in {low}{minimum}, {maximum}{high}"
    if minimum is not None:
        return f"{kind} {'>' if min_open else '>='} {minimum}"
    if maximum is not None:
        return f"{kind} {'<' if max_open else '<='} {maximum}"
    return kind


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    fix: str = "",
    where: str = "",
) -> int:
    """Return ``value`` as an ``int`` if it is an integer within ``[minimum, maximum]``.

    Python and numpy integers are accepted; ``bool`` is not (``True`` is not a count).

    Args:
        value: the argument as received.
        name: the argument's name, used in the message.
        minimum: the smallest value allowed (inclusive); ``None`` for no bound.
        maximum: the largest value allowed (inclusive); ``None`` for no bound.
        fix: one sentence appended to the message, e.g. ``"Pass e.g. seed=0."``.
        where: the function or class the argument belongs to, prefixed to the message.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an integer (or is a bool).
        ValueError: ``value`` lies outside the bounds.

    Example:
        >>> import numpy as np
        >>> check_int(np.int64(3), "repeats", minimum=1)
        3
        >>> check_int(0, "repeats", minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: `repeats` must be an int >= 1, received 0 (int).
    """
    expected = _bounds("an int", minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(must_be(name, expected, value, fix, where=where))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(must_be(name, expected, value, fix, where=where))
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    fix: str = "",
    where: str = "",
) -> float:
    """Return ``value`` as a finite ``float`` within the bounds.

    Python and numpy ints and floats are accepted; ``bool``, ``nan`` and ``inf`` are not.

    Args:
        value: the argument as received.
        name: the argument's name, used in the message.
        minimum: the lower bound; ``None`` for none.
        maximum: the upper bound; ``None`` for none.
        min_open: the lower bound itself is excluded (``value > minimum``).
        max_open: the upper bound itself is excluded (``value < maximum``).
        fix: one sentence appended to the message.
        where: the function or class the argument belongs to, prefixed to the message.

    Returns:
        ``float(value)``.

    Raises:
        TypeError: ``value`` is not a real number (or is a bool).
        ValueError: ``value`` is not finite or lies outside the bounds.

    Example:
        >>> check_float(1, "temperature", minimum=0, min_open=True)
        1.0
        >>> check_float(float("nan"), "alpha", minimum=0, maximum=1)
        Traceback (most recent call last):
        ...
        ValueError: `alpha` must be a finite float in [0, 1], received nan (float).
    """
    expected = _bounds("a float", minimum, maximum, min_open, max_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(must_be(name, expected, value, fix, where=where))
    number = float(value)
    low_ok = minimum is None or (number > minimum if min_open else number >= minimum)
    high_ok = maximum is None or (number < maximum if max_open else number <= maximum)
    if not math.isfinite(number) or not (low_ok and high_ok):
        finite = expected.replace("a float", "a finite float", 1)
        raise ValueError(must_be(name, finite, value, fix, where=where))
    return number


def check_bool(value: Any, name: str, *, fix: str = "", where: str = "") -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (not ``1``, ``"yes"`` or ``None``).

    Args:
        value: the argument as received.
        name: the argument's name, used in the message.
        fix: one sentence appended to the message.
        where: the function or class the argument belongs to, prefixed to the message.

    Returns:
        ``value``.

    Raises:
        TypeError: ``value`` is not a bool.

    Example:
        >>> check_bool(True, "strict")
        True
        >>> check_bool("yes", "strict")
        Traceback (most recent call last):
        ...
        TypeError: `strict` must be True or False, received 'yes' (str).
    """
    if not isinstance(value, bool):
        raise TypeError(must_be(name, "True or False", value, fix, where=where))
    return value


def _is_one_of(value: Any, allowed: list[Any]) -> bool:
    for choice in allowed:
        if value is choice:
            return True
        if isinstance(value, bool) != isinstance(choice, bool) or not isinstance(
            value, type(choice)
        ):
            continue
        try:
            if bool(value == choice):
                return True
        except (TypeError, ValueError):  # e.g. an array's elementwise ==
            continue
    return False


def check_choice(
    value: Any, name: str, choices: Iterable[Any], *, fix: str = "", where: str = ""
) -> Any:
    """Return ``value`` if it equals one of ``choices``.

    Args:
        value: the argument as received.
        name: the argument's name, used in the message.
        choices: the allowed values, listed in the message in this order.
        fix: one sentence appended to the message; defaults to "Pass e.g. name=first choice."
        where: the function or class the argument belongs to, prefixed to the message.

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is none of ``choices`` (including a value of another type).

    Example:
        >>> check_choice("time", "split_mode", ("random", "time"))
        'time'
        >>> check_choice("day", "split_mode", ("random", "time"))
        Traceback (most recent call last):
        ...
        ValueError: `split_mode` must be one of ['random', 'time'], received 'day' (str). Pass e.g. split_mode='random'.
    """  # noqa: E501
    allowed = list(choices)
    if not _is_one_of(value, allowed):
        if not fix and allowed:
            fix = f"Pass e.g. {name}={allowed[0]!r}."
        raise ValueError(must_be(name, f"one of {allowed}", value, fix, where=where))
    return value


def is_functional(model: Any) -> bool:
    """True when ``model`` is a tf_keras functional or Sequential model (Keras can clone it).

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> is_functional(m)
        True
    """
    return isinstance(model, keras.Model) and (
        isinstance(model, keras.Sequential) or is_graph_network(model)
    )


def check_functional(
    model: Any, function: str, *, fix: str = "", built: bool = False, name: str = "model"
) -> keras.Model:
    """Return ``model`` if it is a functional or Sequential tf_keras model (not subclassed).

    Args:
        model: the argument as received.
        function: the public function that needs it (e.g. ``"prune"``), prefixed to the message.
        fix: what to do instead; defaults to applying ``function`` to the functional models a
            subclassed model holds, or rebuilding it with the functional API.
        built: also require the model to be built (it has weights and an input shape).
        name: the argument's name, used in the message.

    Returns:
        ``model``.

    Raises:
        TypeError: ``model`` is not a tf_keras model (see :func:`tfcompress._keras.check_model`).
        ValueError: ``model`` is a subclassed model, or (with ``built``) is not built.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> check_functional(m, "prune") is m
        True
    """
    check_model(model, name)
    if not is_functional(model):
        if not fix:
            fix = (
                f"Apply {function} to the functional models it holds (e.g. `distiller.student "
                f"= tfcompress.{function}(distiller.student)`), or rebuild it with the "
                "functional API (keras.Input ... keras.Model(inputs, outputs))."
            )
        raise ValueError(
            f"{function}: `{name}` must be a functional or Sequential model, received "
            f"{model.name!r} ({type(model).__name__}), a subclassed model. {fix}"
        )
    if built and not model.built:
        raise ValueError(
            f"{function}: `{name}` must be a built model, received {model.name!r} "
            f"({type(model).__name__}), which is not built. Give it an input shape "
            "(keras.Input) or call it once on data first."
        )
    return model
