"""Where a request is, and what a full queue does: the pool's shared vocabulary."""

from __future__ import annotations

import enum

__all__ = ["Backpressure", "TicketState"]


class TicketState(enum.Enum):
    """Where a request is in its life; the last five states are final."""

    #: Waiting in the queue for a worker.
    QUEUED = "queued"
    #: A worker is running the handler on it.
    RUNNING = "running"
    #: The handler returned; :meth:`Ticket.result` gives its return value.
    SUCCEEDED = "succeeded"
    #: The handler raised; :meth:`Ticket.result` re-raises that exception.
    FAILED = "failed"
    #: Cancelled by :meth:`Ticket.cancel`, by its caller, or by shutdown.
    CANCELLED = "cancelled"
    #: Its ``queue_timeout`` or ``timeout`` expired.
    TIMED_OUT = "timed_out"
    #: Evicted from a full queue for a request of higher priority.
    SHED = "shed"

    def __str__(self) -> str:
        return self.value


class Backpressure(enum.Enum):
    """What :meth:`WorkerPool.submit` does when the queue is full."""

    #: Raise :exc:`QueueFull` at once.
    REJECT = "reject"
    #: Wait for room (``submit_nowait`` still raises :exc:`QueueFull`).
    BLOCK = "block"
    #: Evict the newest request of the lowest queued level if that level is
    #: strictly lower than the new request's (it fails with :exc:`RequestShed`);
    #: otherwise raise :exc:`QueueFull`.
    SHED = "shed"

    def __str__(self) -> str:
        return self.value
