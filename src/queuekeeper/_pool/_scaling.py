"""How many workers a pool runs: reserved workers, and the autoscaler.

:class:`Autoscale` is the setting a user passes; :class:`Autoscaler` is the pool's
task that acts on it; :func:`check_reserved` validates ``reserved=``. The pool
itself grows and shrinks (see ``WorkerPool.resize``): this module only decides
when and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, final

import attrs
from anyio import sleep

from .._priority import check_priority
from .._util import describe
from ._checks import MAX_WORKERS, check_count, check_seconds

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Autoscale", "Autoscaler", "check_reserved"]

#: The autoscaler looks at the pool at least this often, and at most this often.
_LONGEST_TICK: Final = 0.5
_SHORTEST_TICK: Final = 0.01


def check_reserved(reserved: object, workers: int) -> list[int]:
    """Validate ``reserved=``; return the reserved workers' levels, ascending.

    ``{Priority.CRITICAL: 1, Priority.HIGH: 2}`` gives ``[1, 2, 2]``.

    Raises:
        TypeError: *reserved* is not a mapping of priorities to counts.
        ValueError: A count is below 1, or they leave no unreserved worker.
    """
    if not isinstance(reserved, Mapping):
        msg = (
            "reserved must be None or a mapping of priority to a number of "
            f"workers, not {describe(reserved)} ({type(reserved).__name__})"
        )
        raise TypeError(msg)
    pairs = sorted(
        ((_reserved_level(key), value) for key, value in reserved.items()),
        key=lambda pair: pair[0],
    )
    for level, count in pairs:
        if isinstance(count, bool) or not isinstance(count, int):
            msg = (
                f"reserved[{level}] must be an int >= 1 (a number of workers), "
                f"not {describe(count)} ({type(count).__name__})"
            )
            raise TypeError(msg)
        if count < 1:
            msg = f"reserved[{level}] must be an int >= 1, not {describe(count)}"
            raise ValueError(msg)
    total = sum(count for _, count in pairs)
    if total >= workers:
        shown = dict(pairs)
        msg = (
            f"reserved={shown!r} keeps {describe(total)} of the pool's "
            f"workers={workers}: at least one worker must stay unreserved"
        )
        raise ValueError(msg)
    limits: list[int] = []
    for level, count in pairs:
        limits.extend([level] * count)
    return limits


def _reserved_level(key: object) -> int:
    try:
        return check_priority(key)
    except TypeError:
        msg = (
            "reserved's keys must be priorities (an int or a queuekeeper.Priority), "
            f"not {describe(key)} ({type(key).__name__})"
        )
        raise TypeError(msg) from None


def _check_max_workers(value: int) -> int:
    return check_count(value, "Autoscale max_workers", MAX_WORKERS)


def _check_target_wait(value: float) -> float:
    return check_seconds(value, "Autoscale target_wait")


def _check_cooldown(value: float) -> float:
    return check_seconds(value, "Autoscale cooldown")


@final
@attrs.frozen
class Autoscale:
    """Let a pool add workers when requests wait, and retire them when idle.

    Pass as ``WorkerPool(autoscale=Autoscale(...))``. The pool starts with its
    ``workers`` and never runs fewer. While requests are queued, no worker is
    idle and the recent queue wait exceeds *target_wait*, it adds workers, as
    many as requests are queued, up to *max_workers*. Workers that sat idle for
    *cooldown* seconds in a row retire (each after the request it runs), back
    down to ``workers`` at most.

    The recent queue wait is the larger of how long the oldest request still
    queued has waited (in-process) and the average wait of the last requests
    that started, one per worker (on Redis, those started by this pool).

    Args:
        max_workers: The most workers the pool may run (at least its ``workers``).
        target_wait: Seconds a request may wait before the pool grows.
        cooldown: Seconds a worker must sit idle before it retires.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).

    .. versionadded:: 0.2
    """

    max_workers: int = attrs.field(converter=_check_max_workers)
    target_wait: float = attrs.field(
        default=0.5,
        kw_only=True,
        converter=_check_target_wait,
    )
    cooldown: float = attrs.field(
        default=10.0,
        kw_only=True,
        converter=_check_cooldown,
    )

    def __attrs_post_init__(self) -> None:
        for name in ("target_wait", "cooldown"):
            if getattr(self, name) == math.inf:
                msg = (
                    f"Autoscale {name} must be a finite number of seconds > 0, not None"
                )
                raise ValueError(msg)

    @property
    def tick(self) -> float:
        """How often the pool is looked at, in seconds."""
        return max(
            _SHORTEST_TICK, min(self.target_wait / 2, self.cooldown / 4, _LONGEST_TICK)
        )


@final
class Autoscaler:
    """The pool's task that acts on an :class:`Autoscale` (see its docstring).

    Everything it reads and does goes through the callables it is given, so it
    knows nothing of the pool: *size* (workers now), *floor* (the fewest), *idle*
    (the unreserved workers without a request, as objects that stay the same),
    *queued* (requests waiting, and how long the oldest has, if known),
    *recent* (the average of recent waits), *resize* (set the size, keeping the
    floor), *stopped* and *clock*.
    """

    def __init__(
        self,
        settings: Autoscale,
        *,
        size: Callable[[], int],
        floor: Callable[[], int],
        idle: Callable[[], list[object]],
        queued: Callable[[float], tuple[int, float | None]],
        recent: Callable[[int], float | None],
        resize: Callable[[int], None],
        stopped: Callable[[], bool],
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.size = size
        self.floor = floor
        self.idle = idle
        self.queued = queued
        self.recent = recent
        self.resize = resize
        self.stopped = stopped
        self.clock = clock
        #: Since when each idle worker has been idle at every look.
        self.idle_since: dict[object, float] = {}

    async def run(self) -> None:
        """Look at the pool every tick and grow or shrink it; runs until cancelled."""
        tick = self.settings.tick
        while not self.stopped():
            await sleep(tick)
            if not self.stopped():
                self.step(self.clock())

    def step(self, now: float) -> None:
        """One look at the pool at *now*: grow, shrink, or note idle workers."""
        settings = self.settings
        size = self.size()
        idle = self.idle()
        since = self.idle_since
        self.idle_since = {worker: since.get(worker, now) for worker in idle}
        queued, oldest = self.queued(now)
        if queued and not idle:
            wait = max(oldest or 0.0, self.recent(size) or 0.0)
            if wait > settings.target_wait and size < settings.max_workers:
                self.resize(min(settings.max_workers, size + queued))
            return
        floor = self.floor()
        if size <= floor:
            return
        cooled = [w for w, t in self.idle_since.items() if now - t >= settings.cooldown]
        if cooled:
            for worker in cooled:
                del self.idle_since[worker]
            self.resize(max(floor, size - len(cooled)))
