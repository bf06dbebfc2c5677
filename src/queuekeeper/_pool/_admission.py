"""Admission: how a request gets into the queue, and what a full queue does to it.

``REJECT`` raises :exc:`QueueFull`; ``BLOCK`` waits for room; ``SHED`` evicts the
newest request of a strictly lower level to make room. A request counts in at the
moment it enters the queue, which for a blocked submitter may be before the
submitter resumes. Admission also knows the requests that left the queue but are
not yet running: those handed straight to a worker waiting for work.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from anyio import CancelScope, ClosedResourceError, current_time

from .._errors import PoolClosed, QueueFull, QueueTimeout, RequestShed, RequestTimeout
from .._priority import priority_name
from .._states import Backpressure, TicketState
from .._util import ki_protected
from ._deadlines import wake_at

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._queue import RequestQueue
    from ._accounting import Accounting
    from ._deadlines import Deadlines
    from ._retry import Retries
    from ._ticket import Ticket

__all__ = ["Admission", "expiry_error"]

Res = TypeVar("Res")

_SHED_MODE: Final = Backpressure.SHED
_SHED: Final = TicketState.SHED
_TIMED_OUT: Final = TicketState.TIMED_OUT


def _no_one() -> None:
    """Wake no one (a queue without watchers: the pool's on Redis)."""


def expiry_error(ticket: Ticket[Any], now: float) -> Exception:
    """Why a queued *ticket* expires at *now*: its ``timeout`` or ``queue_timeout``."""
    if now >= ticket._deadline:
        return RequestTimeout(f"request {ticket.id} timed out while queued")
    return QueueTimeout(f"request {ticket.id} waited too long in the queue")


@final
class Admission(Generic[Res]):
    """Puts requests into a :class:`RequestQueue` under a :class:`Backpressure` mode."""

    __slots__ = (
        "accounting",
        "clock",
        "deadlines",
        "handover",
        "max_queue_size",
        "mode",
        "moved_in",
        "queue",
        "retries",
        "wake",
        "watchers",
    )

    def __init__(
        self,
        queue: RequestQueue[Ticket[Res]],
        mode: Backpressure,
        max_queue_size: int | None,
        accounting: Accounting,
        deadlines: Deadlines,
    ) -> None:
        self.queue = queue
        self.mode = mode
        self.max_queue_size = max_queue_size
        self.accounting = accounting
        self.deadlines = deadlines
        #: The backend's clock; anyio's current_time() until the pool runs.
        self.clock: Callable[[], float] = current_time
        # Requests handed straight to a worker waiting for work, which has not
        # resumed to start them yet: still queued, but no longer in the queue.
        self.handover: set[Ticket[Res]] = set()
        # BLOCK requests that moved into the queue before their submitter resumed.
        self.moved_in: set[Ticket[Res]] = set()
        queue.on_admit = self.admitted
        #: Tasks watching positions (``Ticket.positions()``), and what wakes
        #: them when a request leaves the queue other than through it (handed
        #: over, then started or withdrawn).
        self.watchers = 0
        self.wake: Callable[[], None] = _no_one
        #: The pool's retries (``retry=``), whose backoffs hold queued
        #: requests outside the queue; ``None`` without them.
        self.retries: Retries | None = None

    # -- putting in ---------------------------------------------------------------

    @ki_protected
    def put_nowait(self, ticket: Ticket[Res]) -> None:
        """Put *ticket* in the queue, or an idle worker's hands, and count it in.

        Raises:
            anyio.WouldBlock: The queue is full.
        """
        if self.queue.put_nowait(ticket, ticket._level):
            self.handover.add(ticket)
        # counted_in(), inlined: every request goes this way.
        accounting = self.accounting
        accounting.submitted += 1
        if accounting.observer is not None:
            accounting.observer.submitted(accounting.name, ticket._level)
        if ticket._deadline != math.inf or ticket._queue_deadline != math.inf:
            self.deadlines.add(wake_at(ticket), ticket)

    @ki_protected
    def counted_in(self, ticket: Ticket[Res]) -> None:
        """*ticket* entered the queue: count it, and let its deadline run."""
        self.accounting.queued(ticket)
        if ticket._deadline != math.inf or ticket._queue_deadline != math.inf:
            self.deadlines.add(wake_at(ticket), ticket)

    @ki_protected
    def refuse_or_shed(self, ticket: Ticket[Res]) -> None:
        """*ticket* found the queue full: shed a lower one for it, or refuse it.

        Raises:
            QueueFull: Not ``SHED``, or nothing queued is lower than *ticket*.
        """
        level = ticket._level
        if self.mode is not _SHED_MODE or not self._shed_for(level):
            self.accounting.refused(level)
            raise QueueFull(self.max_queue_size or 0, ticket.priority) from None
        self.put_nowait(ticket)

    def _shed_for(self, level: int) -> bool:
        """Evict the newest request of the lowest level if it is below *level*."""
        evicted = self.queue.evict(level)
        if evicted is None:
            return False
        victim = evicted[0]
        self.accounting.settle(
            victim,
            _SHED,
            self.clock(),
            error=RequestShed(
                f"request {victim.id} was shed for a request at priority "
                f"{priority_name(level)}"
            ),
        )
        return True

    @ki_protected
    async def enqueue(self, ticket: Ticket[Res], pool: str) -> None:
        """BLOCK: wait for room in the full queue, then put *ticket* in.

        Waiting for room is waiting in the queue: the request's timeouts bound
        it; if one expires first, the request is counted in and fails at once.

        Raises:
            PoolClosed: The pool shut down while the request waited.
        """
        when = wake_at(ticket)
        queue = self.queue
        level = ticket._level
        try:
            if when == math.inf:
                await queue.put(ticket, level)
            else:
                with CancelScope(deadline=when) as scope:
                    await queue.put(ticket, level)
                if scope.cancelled_caught:
                    # Never entered the queue: it timed out waiting for room.
                    self.counted_in(ticket)
                    self.expire(ticket, self.clock())
        except ClosedResourceError:
            msg = f"WorkerPool {pool!r} shut down while the request waited"
            raise PoolClosed(msg) from None
        except BaseException:
            if ticket in self.moved_in:
                # Raised in the instant it moved in (a native asyncio cancellation):
                # its submitter never gets the ticket, so the request is abandoned.
                ticket.cancel()
            raise
        finally:
            self.moved_in.discard(ticket)

    @ki_protected
    def admitted(self, ticket: Ticket[Res]) -> None:
        """A blocked submitter's *ticket* moved into the queue: count it in now."""
        self.moved_in.add(ticket)
        self.counted_in(ticket)

    # -- leaving the queue unrun --------------------------------------------------

    @ki_protected
    def withdraw(self, ticket: Ticket[Res]) -> None:
        """Take the queued *ticket* out: from the queue, or from a worker's hands."""
        if not self.queue.remove(ticket, ticket._level):
            self.handover.discard(ticket)
            if self.retries is not None:
                self.retries.withdraw(ticket)
            if self.watchers:
                self.picked()

    @ki_protected
    def expire(self, ticket: Ticket[Res], now: float) -> None:
        """Fail the queued *ticket*: its ``timeout`` or ``queue_timeout`` expired."""
        self.withdraw(ticket)
        self.accounting.settle(ticket, _TIMED_OUT, now, error=expiry_error(ticket, now))

    @ki_protected
    def drain(self) -> list[Ticket[Res]]:
        """Take out every queued request, those handed over included."""
        handed = list(self.handover)
        self.handover.clear()
        if handed and self.watchers:
            self.picked()
        return [*handed, *self.queue.drain()]

    def picked(self) -> None:
        """A request handed over left the queue: wake the position watchers."""
        self.wake()

    def sizes(self) -> tuple[int, dict[int, int] | None]:
        """Requests handed over: their number, and by level (``None`` if none)."""
        handed = tuple(self.handover)  # one step: safe from a scrape thread
        if not handed:
            return 0, None
        by_level: dict[int, int] = {}
        for ticket in handed:
            by_level[ticket._level] = by_level.get(ticket._level, 0) + 1
        return len(handed), by_level
