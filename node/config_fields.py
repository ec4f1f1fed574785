"""Type checks for values read from config files into frozen config dataclasses.

TOML gives strings, booleans, integers, floats (``inf`` and ``nan`` included), arrays
and tables; a config dataclass declares what each field takes. ``checked_fields``
compares the two before the dataclass is built, so ``peers = "ten"`` or ``lr = inf``
is one ConfigError naming the file and the key, not a TypeError deep in a run.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from rumor.protocols.errors import ConfigError

_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          dict: "a table", tuple: "an array", list: "an array"}


def _accepts(hint: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) for one value against one field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, v = _accepts(arg, value)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    base = origin or hint
    if base is bool:
        return isinstance(value, bool), value
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return math.isfinite(value), float(value)
    if base is str:
        return isinstance(value, str), value
    if base is dict:
        return isinstance(value, dict), value
    if base in (tuple, list):
        return isinstance(value, list | tuple), value
    return True, value  # a type this checker does not know: the dataclass decides


def _describe(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        return " or ".join(_describe(a) for a in args)
    base = typing.get_origin(hint) or hint
    return _NAMES.get(base, getattr(base, "__name__", str(base)))


def checked_fields(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` with ints widened to float where the field is a float; ConfigError
    ``"{where}: {key} must be ..."`` for a value of the wrong type or a non-finite
    number. Keys that are not fields are left to the dataclass (the callers name them).
    """
    hints = typing.get_type_hints(cls)
    out = dict(values)
    for key, value in values.items():
        if key not in hints:
            continue
        ok, converted = _accepts(hints[key], value)
        if not ok:
            shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
            finite = " (finite)" if isinstance(value, float) and not math.isfinite(value) else ""
            raise ConfigError(
                f"{where}: {key} must be {_describe(hints[key])}{finite}, got {shown}")
        out[key] = converted
    return out
