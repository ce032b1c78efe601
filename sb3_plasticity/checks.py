"""Argument checks with the package's error messages.

The lowest layer: nothing here knows SB3 or the package's other modules. Every check raises one ``ValueError`` (for
a wrong type too) whose message names the parameter, the value (its ``repr``) and what is allowed, as
``"<name> must be <allowed>, got <value!r>"`` (DESIGN.md, "Errors"), and returns the value in its normal type (a
Python ``int``, ``float`` or ``bool``). Integers are any :class:`numbers.Integral` (NumPy's included), numbers any
:class:`numbers.Real`; ``True`` and ``False`` are neither.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_nonnegative",
    "check_positive_int",
    "check_probability",
    "check_range",
    "check_sequence",
]

T = TypeVar("T")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """A number (an integer when ``integer``) in the interval from ``low`` to ``high``, open on the sides asked.

    ``check_range("tau", -0.1, 0.0)`` raises ``tau must be a number in [0, inf], got -0.1``.

    :return: ``value`` as a ``float`` (an ``int`` when ``integer``).
    """
    ok = _is_int(value) if integer else _is_number(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} in {interval}, got {value!r}")
    return int(value) if integer else float(value)


def check_positive_int(name: str, value: object, unit: str | None = None) -> int:
    """An integer ``>= 1``: ``<name> must be a positive integer (<unit>), got <value>``.

    :param unit: what the integer counts, named in the message (e.g. ``"env steps"``); None: nothing.
    """
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name} must be a positive integer{f' ({unit})' if unit else ''}, got {value!r}")
    return int(value)


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``high`` None: no upper bound): ``<name> must be an integer >= <low>`` or
    ``... an integer in [<low>, <high>]``."""
    if not _is_int(value) or value < low or (high is not None and value > high):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_nonnegative(name: str, value: object) -> float:
    """A number ``>= 0`` (a threshold such as ``tau``): ``<name> must be a number in [0, inf]``."""
    return check_range(name, value, 0.0)


def check_probability(name: str, value: object) -> float:
    """A probability or mixing weight in ``[0, 1]``: ``<name> must be a number in [0, 1]``."""
    return check_range(name, value, 0.0, 1.0)


def check_fraction(name: str, value: object, allow_none: bool = True) -> float | None:
    """A fraction in ``(0, 1]`` (of a layer's neurons, of a run), or None when ``allow_none``:
    ``<name> must be a number in (0, 1]``."""
    if value is None and allow_none:
        return None
    return check_range(name, value, 0.0, 1.0, low_open=True)


def check_bool(name: str, value: object) -> bool:
    """``True`` or ``False`` (NumPy's ``bool_`` too; not 0 or 1): ``<name> must be True or False``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """One of ``choices``: ``<name> must be 'a' or 'b'`` (two choices) or ``<name> must be one of ('a', 'b', 'c')``.

    :return: ``value`` unchanged.
    """
    allowed = tuple(choices)
    try:
        ok = value in allowed
    except (TypeError, ValueError):  # a comparison that refuses (an array's truth value)
        ok = False
    if not ok:
        what = f"{allowed[0]!r} or {allowed[1]!r}" if len(allowed) == 2 else f"one of {allowed!r}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_sequence(name: str, value: object, check_item: Callable[[str, object], T]) -> tuple[T, ...]:
    """A non-empty sequence (a list, tuple or 1-d array; not a string or a mapping) whose items each pass
    ``check_item(f"{name}[{i}]", item)``: ``<name> must be a non-empty sequence, got <value>``, or the item's own
    message, e.g. ``check_sequence("hidden", [64, 0], check_positive_int)`` raises
    ``hidden[1] must be a positive integer, got 0``.

    :param check_item: one of this module's checks (or a ``lambda`` binding its bounds), called with the item's name
        and the item.
    :return: the checked items, as ``check_item`` returns them, in a tuple.
    """
    if isinstance(value, np.ndarray):
        ok = value.ndim == 1
    else:  # a Mapping is no Sequence; a string is one, of characters
        ok = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    if not ok or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty sequence, got {value!r}")
    return tuple(check_item(f"{name}[{i}]", item) for i, item in enumerate(value))
