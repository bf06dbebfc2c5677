"""What a pool reports as requests move through it: the observer protocol.

:class:`PrometheusMetrics` is one observer; any object with these methods is
another (OpenTelemetry, StatsD, logging...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._states import TicketState
    from ._status import PoolStatus

__all__ = ["ObservedPool", "PoolObserver"]


class ObservedPool(Protocol):
    """What an observer may read of the pool it observes."""

    @property
    def name(self) -> str:
        """The pool's name, as in every event."""
        ...

    def status(self) -> PoolStatus:
        """A snapshot of the pool; safe to call from another thread."""
        ...


@runtime_checkable
class PoolObserver(Protocol):
    """What a pool tells the object passed as its ``metrics``.

    Every method is called on the event loop's thread, synchronously, as the event
    happens, so each must be cheap and must not raise. Priorities are ints (a
    :class:`Priority` member for the named levels, as submitted, or a custom
    level); times are seconds on the backend's clock. ``isinstance(obj,
    PoolObserver)`` checks that an object has the five methods.

    An observer may also have ``coalesced(pool, priority)`` (not part of the
    protocol, so that observers written without it keep working): the pool then
    calls it for each submit at *priority* that shared the outcome of a queued
    or running request with an equal ``key`` instead of queuing one (such a
    submit is not reported to ``submitted``).

    .. versionadded:: 0.2
    """

    def attach(self, pool: ObservedPool) -> None:
        """Start observing *pool*; called once, when the pool is built.

        Keep *pool* to read :meth:`WorkerPool.status` later (at a scrape, say).
        Raise here to refuse the pool (a name already in use, for instance).
        """

    def submitted(self, pool: str, priority: int) -> None:
        """A request entered the queue of the pool named *pool*."""

    def rejected(self, pool: str, priority: int) -> None:
        """A submitter got :exc:`QueueFull`."""

    def started(self, pool: str, priority: int, wait: float) -> None:
        """A worker started a request that had waited *wait* seconds."""

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        """A request reached its final *outcome*.

        *duration* is how long its handler ran, ``None`` if it never ran.
        """
