"""Check one config value against a parameter's type hint, and say the expected type in words.

Pydantic's lax validation does the checking (it knows unions, Literal, Path, lists, ...): a value Hydra parsed
from the command line (`8` is an int, `abc` a string) is accepted where the code could use it.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ConfigDict, TypeAdapter, ValidationError

_CONFIG = ConfigDict(arbitrary_types_allowed=True, coerce_numbers_to_str=True)
_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path"}


@functools.cache
def _adapter(annotation: object) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=_CONFIG)
    except Exception:  # a type pydantic cannot build a check for: not checked
        return None


def conforms(value: object, annotation: object) -> bool:
    """Whether `value` (plain Python, interpolations resolved) fits `annotation`; True where it cannot tell."""
    try:
        adapter = _adapter(annotation)
    except TypeError:  # unhashable annotation
        return True
    if adapter is None:
        return True
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    except Exception:  # a validator of a foreign type failed in its own way: not our call
        return True
    return True


def describe(annotation: object) -> str:
    """`int | None` -> "an integer or null"; `Literal["a", "b"]` -> "one of a, b"."""
    if annotation is type(None) or annotation is None:
        return "null"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if isinstance(origin, type) and issubclass(origin, Mapping) or annotation in (dict, Mapping):
        return "a mapping"
    if isinstance(origin, type) and issubclass(origin, Sequence) or annotation in (list, tuple):
        return f"a list of {describe(args[0])}" if args and args[0] is not Ellipsis else "a list"
    if annotation in _WORDS:
        return _WORDS[annotation]
    return getattr(annotation, "__name__", str(annotation))
