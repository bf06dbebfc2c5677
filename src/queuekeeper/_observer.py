"""The events a pool reports, for metrics and other observers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._pool import WorkerPool
    from ._ticket import TicketState

__all__ = ["PoolObserver"]


class PoolObserver(Protocol):
    """What a pool tells its ``metrics`` object; every method must be cheap.

    Priorities are plain ints. Times are seconds.
    """

    def attach(self, pool: WorkerPool[object, object]) -> None:
        """Start observing *pool* (called once, when the pool is built)."""

    def submitted(self, pool: str, priority: int) -> None:
        """A request entered the queue."""

    def rejected(self, pool: str, priority: int) -> None:
        """A submitter got :exc:`QueueFull`."""

    def started(self, pool: str, priority: int, wait: float) -> None:
        """A worker took a request that had waited *wait* seconds."""

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        """A request reached its final *outcome*; *duration* is its run time.

        *duration* is ``None`` for requests that never ran.
        """
