"""Config values: a TOML value checked against a field's type, a command-line string parsed by it.

The one place that knows how a config value becomes the type its dataclass field declares: train's
sections and overrides use it, and so does every other config with typed fields (the apps' [app]).

    coerce_value("optim.lr", 3, float)          -> 3.0     (a TOML int where a float is expected)
    parse_value("train.max_steps", "1e3", int)  -> 1000    (a command line is text)
    parse_value("data.special_tokens", "a,b", tuple[str, ...]) -> ["a", "b"]

Errors are one line naming the key: `config key 'optim.lr' must be a number, got 'fast'`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from typing import Any

__all__ = ["coerce_value", "field_types", "hint", "parse_value"]


def hint(name: str, valid) -> str:
    """ "; did you mean 'x'?" for the closest valid name, or ""."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def field_types(kind: type) -> dict[str, Any]:
    """{field name: its resolved annotation} of a dataclass, in field order."""
    hints = typing.get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)}


def _base_type(tp: Any) -> Any:
    """bool/int/float/str/tuple for the annotations used in config dataclasses."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return type(typing.get_args(tp)[0])
    if origin in (tuple, list):
        return tuple
    if origin in (typing.Union, types.UnionType):
        return _base_type(next(a for a in typing.get_args(tp) if a is not type(None)))
    return tp


def _item_type(tp: Any) -> Any:
    """The element type of a tuple[X, ...] annotation (possibly inside `| None`), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    return args[0] if args else None


def parse_value(key: str, text: str, tp: Any) -> Any:
    """Parse a command-line string for a field of type `tp` ("true"/"yes"/"1", "3e-4", "a,b")."""
    base = _base_type(tp)
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"config key '{key}' must be true or false, got {text!r}")
    if base is tuple:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = tomllib.loads(f"v = {stripped}")["v"]
            except tomllib.TOMLDecodeError:
                raise ValueError(f"config key '{key}' must be a list, got {text!r}") from None
        else:
            items = [part for part in stripped.split(",") if part] if stripped else []
        item = _item_type(tp)
        if item in (int, float):
            return [parse_value(key, str(v), item) for v in items]
        return items
    if base is int:
        try:  # exactly, before the float route below (which rounds past 2**53)
            return int(text.strip())
        except ValueError:
            pass
    if base in (int, float):
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"config key '{key}' must be a number, got {text!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"config key '{key}' must be a finite number, got {text!r}")
        if base is int:
            if number != int(number):
                raise ValueError(f"config key '{key}' must be an integer, got {text!r}")
            return int(number)
        return number
    return text


def coerce_value(key: str, value: Any, tp: Any) -> Any:
    """Check a TOML value against the field type (ints are accepted where floats are expected)."""
    base = _base_type(tp)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is tuple and isinstance(value, list | tuple):
        item = _item_type(tp)
        if item in (int, float):
            return tuple(coerce_value(f"{key}[]", v, item) for v in value)
        return tuple(value)
    ok = isinstance(value, base) and (base is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(f"config key '{key}' must be {base.__name__}, got {value!r}")
    return value
