"""Validation of what a pool is given: clear errors that name the value."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Final

from .._util import describe

__all__ = ["MAX_WORKERS", "check_count", "check_handler", "check_name", "check_seconds"]

#: The most workers a pool may have (each is a task, a few KiB).
MAX_WORKERS: Final = 1_000_000


def check_seconds(value: object, name: str) -> float:
    """Validate a duration: ``None`` (no limit, returned as inf) or a finite > 0."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = (
            f"{name} must be None or a number of seconds > 0, "
            f"not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if not (0 < value < math.inf):
        msg = (
            f"{name} must be None or a finite number of seconds > 0, "
            f"not {describe(value)}"
        )
        raise ValueError(msg)
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        msg = (
            f"{name} must be None or a finite number of seconds > 0, "
            f"not {describe(value)} (too large)"
        )
        raise ValueError(msg) from None


def check_count(value: object, name: str, maximum: int | None = None) -> int:
    """Validate a count: an ``int >= 1``, and at most *maximum* if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = (
            f"{name} must be an int >= 1, "
            f"not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if value < 1:
        msg = f"{name} must be an int >= 1, not {describe(value)}"
        raise ValueError(msg)
    if maximum is not None and value > maximum:
        msg = f"{name} must be an int from 1 to {maximum:,}, not {describe(value)}"
        raise ValueError(msg)
    return value


#: How deep _synchronous() looks through partials, methods and wrappers.
_MAX_LAYERS: Final = 64


def _innermost(handler: object) -> object:
    """Look through *handler*'s layers; the first ``async def`` one, else the last.

    The layers: ``functools.partial``, bound methods, ``__wrapped__`` (what
    ``functools.wraps`` leaves) and a callable object's ``__call__``.
    """
    layer = handler
    for _ in range(_MAX_LAYERS):
        if inspect.iscoroutinefunction(layer):
            break
        if isinstance(layer, functools.partial):
            layer = layer.func
        elif inspect.ismethod(layer):
            layer = layer.__func__
        elif callable(wrapped := getattr(layer, "__wrapped__", None)):
            layer = wrapped
        elif (
            inspect.isfunction(layer)
            or inspect.isbuiltin(layer)
            or inspect.ismethoddescriptor(layer)
            or isinstance(layer, type)
        ):
            break
        else:
            layer = type(layer).__call__  # a callable object: what __call__ is
    return layer


def _synchronous(handler: object) -> str | None:
    """Say what *handler* is if calling it can never give an awaitable, else ``None``.

    A ``def`` function (or ``__call__`` method) is taken as synchronous, a lambda
    is not (its expression may well build a coroutine), nor is a class.
    """
    layer = _innermost(handler)
    if inspect.iscoroutinefunction(layer):
        return None
    if inspect.isasyncgenfunction(layer):
        return "an async generator function"
    if inspect.isgeneratorfunction(layer):
        return "a generator function"
    if inspect.isfunction(layer):
        return None if layer.__name__ == "<lambda>" else "a plain function"
    if inspect.isbuiltin(layer) or inspect.ismethoddescriptor(layer):
        return "a built-in function"
    return None


def check_handler(handler: object) -> None:
    if not callable(handler):
        msg = f"handler must be an async callable, not {handler!r}"
        raise TypeError(msg)
    what = _synchronous(handler)
    if what is not None:
        msg = (
            "handler must be an async callable (an 'async def' function, or a "
            f"callable returning an awaitable); {handler!r} is {what}"
        )
        raise TypeError(msg)


def check_name(name: object) -> None:
    if not isinstance(name, str):
        msg = f"name must be a str, not {name!r} ({type(name).__name__})"
        raise TypeError(msg)
    if not name:
        msg = "name must be a non-empty str, not ''"
        raise ValueError(msg)
