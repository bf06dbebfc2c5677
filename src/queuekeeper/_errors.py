"""The exceptions queuekeeper raises."""

from __future__ import annotations

from ._priority import priority_name

__all__ = [
    "PoolClosed",
    "QueueFull",
    "QueueKeeperError",
    "QueueTimeout",
    "RequestCancelled",
    "RequestShed",
    "RequestTimeout",
]


class QueueKeeperError(Exception):
    """Base class of every error queuekeeper raises on its own account.

    A handler's own exceptions are never wrapped: :meth:`Ticket.result` re-raises
    them unchanged.
    """


class QueueFull(QueueKeeperError):
    """The queue had no room for the request, and the pool does not wait for room.

    Attributes:
        max_size: The queue's capacity.
        priority: The priority of the request that was refused.
    """

    def __init__(self, max_size: int, priority: int) -> None:
        waiting = "request" if max_size == 1 else "requests"
        super().__init__(
            f"queue is full ({max_size} {waiting} waiting); "
            f"request at priority {priority_name(priority)} rejected"
        )
        self.max_size = max_size
        self.priority = priority


class PoolClosed(QueueKeeperError):
    """The pool is shutting down or has shut down, and takes no more requests."""


class RequestCancelled(QueueKeeperError):
    """The request was cancelled: by :meth:`Ticket.cancel`, its caller or shutdown."""


class RequestShed(QueueKeeperError):
    """The queued request was evicted to admit a request of a higher priority."""


class QueueTimeout(QueueKeeperError, TimeoutError):
    """The request waited in the queue longer than its ``queue_timeout``."""


class RequestTimeout(QueueKeeperError, TimeoutError):
    """The request (waiting plus running) took longer than its ``timeout``."""
