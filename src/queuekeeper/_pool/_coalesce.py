"""Coalescing: submits with an equal ``key`` share one request's outcome.

The first submit of a key queues an internal ticket, the *work*, and returns a
ticket of its own, a *sharer*; while the work is queued or running, every later
submit of an equal key returns another sharer instead of queuing a duplicate. A
:class:`Share` ties them together: it owns the sharers (their position, state and
cancellation go through it), and it is the work's event, so the moment the work
settles, however it settles, its ``set()`` hands the outcome to every sharer
still attached. Nothing of this is on the path of a submit without a key.

A sharer has its own id and its own ``timeout`` and ``queue_timeout``: when one
of them passes, or the sharer is cancelled, that ticket alone fails and detaches;
the work is ended only when no sharer remains (removed if queued, its handler
cancelled if running).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, final

from .._errors import RequestCancelled, RequestTimeout
from .._states import TicketState
from .._util import describe, ki_protected
from ._admission import expiry_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Hashable

    from ._ticket import Ticket

__all__ = ["Share", "check_key"]

_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING
_CANCELLED: Final = TicketState.CANCELLED
_TIMED_OUT: Final = TicketState.TIMED_OUT


def check_key(key: object) -> None:
    """Raise a TypeError naming *key* if it cannot be a coalescing key."""
    try:
        hash(key)
    except TypeError:
        msg = f"key must be hashable, not {describe(key)} ({type(key).__name__})"
        raise TypeError(msg) from None


@final
class Share:
    """A request queued under a key, and the tickets that share its outcome.

    The owner (``TicketOwner``) of its sharers, and the event of its work: the
    work's ``set()`` is called once, when it settles.
    """

    __slots__ = ("closed", "key", "pool", "sharers", "work")

    def __init__(self, pool: Any, key: Hashable, work: Ticket[Any]) -> None:  # noqa: ANN401 (the WorkerPool)
        self.pool = pool
        self.key = key
        self.work = work
        #: The sharers still waiting for the work's outcome, first one first.
        self.sharers: list[Ticket[Any]] = []
        #: Set once the key no longer takes sharers (the work ends or is ended).
        self.closed = False
        work._event = self

    # -- the pool's side ----------------------------------------------------------

    def open(self) -> None:
        """Take sharers under the key (the work is in the queue, or running)."""
        self.pool._shares.setdefault(self.key, self)

    def close(self) -> None:
        """Take no more sharers: a later submit of the key queues anew."""
        if not self.closed:
            self.closed = True
            shares = self.pool._shares
            if shares.get(self.key) is self:
                del shares[self.key]

    def attach(self, ticket: Ticket[Any]) -> None:
        """Make *ticket* a sharer (its deadlines are armed by :meth:`arm`)."""
        ticket._owner = self
        self.sharers.append(ticket)

    def arm(self, ticket: Ticket[Any]) -> None:
        """Let *ticket*'s own timeouts run (the pool's timekeeper calls expire)."""
        if ticket._deadline != math.inf or ticket._queue_deadline != math.inf:
            deadline = ticket._deadline
            queue_deadline = ticket._queue_deadline
            when = deadline if deadline < queue_deadline else queue_deadline  # noqa: FURB136
            self.pool._deadlines.add(when, ticket)

    # -- the work settled: the event's side ---------------------------------------

    @ki_protected
    def set(self) -> None:
        """The work settled: give every sharer its outcome."""
        self.close()
        work = self.work
        sharers, self.sharers = self.sharers, []
        clear = self.pool._deadlines.clear
        state, error = work._state, work._error
        for ticket in sharers:
            if ticket._deadline_entry is not None:
                clear(ticket)
            ticket.started_at = work.started_at
            ticket.finished_at = work.finished_at
            if error is None:
                ticket._state = state
                ticket._result = work._result
            else:
                ticket._state = state
                ticket._error = error
                ticket._error_traceback = work._error_traceback
                ticket._error_context = work._error_context
            if ticket._event is not None:
                ticket._event.set()

    # -- the sharers' side (TicketOwner) ------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name."""
        return self.pool.name  # type: ignore[no-any-return]

    def _live_state(self, ticket: Ticket[Any]) -> TicketState:
        """A waiting sharer's state: the work's, queued or running."""
        work = self.work
        if work._state is _RUNNING:
            ticket.started_at = work.started_at
            return _RUNNING
        return _QUEUED

    def _position(self, ticket: Ticket[Any]) -> int | None:  # noqa: ARG002
        return self.work.position

    async def _fetch_position(self, ticket: Ticket[Any]) -> int | None:  # noqa: ARG002
        return await self.work.fetch_position()

    def _deliveries(self, ticket: Ticket[Any]) -> int:  # noqa: ARG002
        return self.work.deliveries

    def _attempts(self, ticket: Ticket[Any]) -> int:  # noqa: ARG002
        return self.pool._attempts(self.work)  # type: ignore[no-any-return]

    def _effective_level(self, ticket: Ticket[Any]) -> int:
        """A waiting sharer competes as the work does; a settled one by itself."""
        if ticket._state is _QUEUED:
            return self.pool._effective_level(self.work)  # type: ignore[no-any-return]
        return self.pool._effective_level(ticket)  # type: ignore[no-any-return]

    def _positions(self, ticket: Ticket[Any]) -> AsyncIterator[int]:  # noqa: ARG002
        return self.pool._positions(self.work)  # type: ignore[no-any-return]

    def _eta(self, ticket: Ticket[Any]) -> float | None:  # noqa: ARG002
        return self.pool._eta(self.work)  # type: ignore[no-any-return]

    def _checkpoint(self) -> Awaitable[object]:
        return self.pool._checkpoint()  # type: ignore[no-any-return]

    def _new_event(self) -> Any:  # noqa: ANN401 (an anyio, trio or asyncio Event)
        return self.pool._new_event()

    @ki_protected
    def _cancel_ticket(self, ticket: Ticket[Any]) -> bool:
        """Cancel one sharer; the work too if it was the last one."""
        return self.detach(
            ticket, _CANCELLED, RequestCancelled(f"request {ticket.id} was cancelled")
        )

    @ki_protected
    def expire(self, ticket: Ticket[Any], now: float) -> None:
        """A deadline of the waiting sharer *ticket* passed."""
        if self.work._state is not _RUNNING:
            self.detach(ticket, _TIMED_OUT, expiry_error(ticket, now))
        elif now >= ticket._deadline:
            error = RequestTimeout(f"request {ticket.id} timed out while running")
            self.detach(ticket, _TIMED_OUT, error)
        else:
            # Its queue_timeout, but the work left the queue: its timeout remains.
            self.pool._deadlines.add(ticket._deadline, ticket)

    def detach(
        self, ticket: Ticket[Any], state: TicketState, error: BaseException
    ) -> bool:
        """Fail the sharer *ticket* alone; end the work if no sharer remains.

        Returns ``False`` if *ticket* had already settled.
        """
        if ticket._state is not _QUEUED:
            return False
        self.sharers.remove(ticket)
        pool = self.pool
        if ticket._deadline_entry is not None:
            pool._deadlines.clear(ticket)
        now = pool._clock()
        work = self.work
        ticket.started_at = work.started_at
        ticket._finish(state, now, error)
        if not self.sharers:
            self.close()
            pool._end_work(work, state, now, error)
        return True
