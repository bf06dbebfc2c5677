"""Priority levels and their validation."""

from __future__ import annotations

import enum
from typing import Final

from ._util import describe

__all__ = [
    "Priority",
    "check_priority",
    "display_priority",
    "priority_label",
    "priority_name",
]


class Priority(enum.IntEnum):
    """The four named priority levels; a lower value is served first.

    Every place that takes a priority also accepts a plain :class:`int`, for custom
    levels such as ``0`` (ahead of :attr:`CRITICAL`) or ``10`` (behind :attr:`LOW`).
    Within one level, items are served strictly in the order they were submitted.
    """

    #: SLA-bound, real-time work.
    CRITICAL = 1
    #: User-facing, interactive work.
    HIGH = 2
    #: The default: standard workload.
    NORMAL = 3
    #: Background work.
    LOW = 4


_NAMED: Final = {int(p): p for p in Priority}
_LABELS: Final = {int(p): p.name.lower() for p in Priority}


def check_priority(priority: object) -> int:
    """Return *priority* as a plain :class:`int`, or raise :exc:`TypeError`.

    ``int`` and :class:`Priority` are accepted; ``bool`` (although an ``int``
    subclass), floats, strings, ``None`` and everything else are rejected.
    """
    if isinstance(priority, int) and not isinstance(priority, bool):
        return int(priority)
    msg = (
        "priority must be an int or a queuekeeper.Priority, "
        f"not {priority!r} ({type(priority).__name__})"
    )
    raise TypeError(msg)


def display_priority(priority: int) -> int:
    """Return the :class:`Priority` member for a named level, else the plain int."""
    return _NAMED.get(priority, priority)


def priority_label(priority: int) -> str:
    """Return ``"critical"``/``"high"``/``"normal"``/``"low"``, or the decimal value.

    An int too long to print (Python refuses beyond 4,300 digits) is named by its
    length.
    """
    label = _LABELS.get(priority)
    return label if label is not None else describe(priority)


def priority_name(priority: int) -> str:
    """Return ``"CRITICAL"``/``"HIGH"``/``"NORMAL"``/``"LOW"``, or the decimal value.

    How messages name a level: what users write, never ``<Priority.LOW: 4>``.
    """
    named = _NAMED.get(priority)
    return named.name if named is not None else describe(priority)
