"""Retries: a request whose handler failed waits out a backoff, then is queued again.

An outcome policy (see ``WorkerPool(retry=...)``), consulted by Accounting when a
handler's error would fail a request. A request it keeps is not settled: its
state stays ``QUEUED``, it holds no worker, and its ticket is the same. The
backoff runs on the pool's deadline heap, so the one timekeeper task that
expires queued requests also ends backoffs: no task per request. When the
backoff ends (the timekeeper calls :meth:`Retries.due`) the request goes back
into the queue behind what is queued at its priority, even into a full queue
(it was admitted once; see ``MemoryQueue.put_over``); when its ``timeout``
passes first it fails with :exc:`RequestTimeout` instead. Nothing of this is on
the path of a request that succeeds.
"""

from __future__ import annotations

import itertools
import math
import weakref
from typing import TYPE_CHECKING, Any, Final, final

from .._errors import RequestTimeout
from .._policies import Retry
from .._states import TicketState
from .._util import describe, ki_protected

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._memory import MemoryQueue
    from ._deadlines import Deadlines
    from ._ticket import Ticket

__all__ = ["Retries", "check_retry"]

_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING
_SUCCEEDED: Final = TicketState.SUCCEEDED
_FAILED: Final = TicketState.FAILED
_TIMED_OUT: Final = TicketState.TIMED_OUT


def check_retry(value: object) -> Retry | None:
    """Validate ``retry=``: a :class:`Retry`, or ``None`` (no retries)."""
    if value is None or isinstance(value, Retry):
        return value
    msg = (
        "retry must be None or a queuekeeper.Retry, "
        f"not {describe(value)} ({type(value).__name__})"
    )
    raise TypeError(msg)


@final
class _Record:
    """What the pool remembers of a request it retried."""

    __slots__ = ("queued_at", "ran_last", "retries")

    def __init__(self, queued_at: float) -> None:
        #: Retries scheduled: runs that failed and were kept to run again.
        self.retries = 0
        #: When it entered the queue last (its arrival time, for aging).
        self.queued_at = queued_at
        #: Whether it settled from a run (rather than waiting for its next one).
        self.ran_last = False


@final
class Retries:
    """The pool's retry policy at work: the backoffs, and what they counted.

    Invariant: ``waiting`` holds exactly the requests waiting out a backoff;
    each is ``QUEUED``, in neither the queue nor a worker's hands, and has one
    entry on the deadline heap (when its backoff ends, or its ``timeout`` if
    sooner).
    """

    __slots__ = (
        "by_level",
        "deadlines",
        "handover",
        "open",
        "order",
        "policy",
        "queue",
        "records",
        "retried",
        "settle",
        "waiting",
    )

    def __init__(
        self,
        retry: Retry,
        queue: MemoryQueue[Ticket[Any]],
        handover: set[Ticket[Any]],
        settle: Callable[[Ticket[Any], TicketState, float, BaseException], None],
        deadlines: Deadlines,
    ) -> None:
        self.policy = retry
        self.queue = queue
        #: Admission's requests handed straight to a waiting worker.
        self.handover = handover
        #: Accounting's settle: put a request in its final state.
        self.settle = settle
        self.deadlines = deadlines
        #: The requests waiting out a backoff, each with its last error.
        self.waiting: dict[Ticket[Any], BaseException] = {}
        #: Retries scheduled, in all and by submitted level.
        self.retried = 0
        self.by_level: dict[int, int] = {}
        #: The requests retried at least once (while their tickets live).
        self.records: weakref.WeakKeyDictionary[Ticket[Any], _Record] = (
            weakref.WeakKeyDictionary()
        )
        #: Cleared at shutdown: no backoff starts after that.
        self.open = True
        # What ranks this policy's entries on the deadline heap among equal
        # times: unique, and apart from the tickets' own (positive) numbers.
        self.order = itertools.count(-1, -1)

    def attempts(self, ticket: Ticket[Any]) -> int:
        """How many times *ticket*'s request started running.

        A request retried ran once for each retry, plus once more if its
        current run started (running, or it settled from a run).
        """
        record = self.records.get(ticket)
        if record is None:
            return 0 if ticket.started_at is None else 1
        state = ticket._state
        if state is _QUEUED:
            return record.retries
        if state is _RUNNING or state is _SUCCEEDED or record.ran_last:
            return record.retries + 1
        return record.retries

    def born(self, ticket: Ticket[Any]) -> float:
        """When *ticket* entered the queue last: its arrival time, for aging."""
        record = self.records.get(ticket)
        return ticket.submitted_at if record is None else record.queued_at

    @ki_protected
    def after_run(
        self, ticket: Ticket[Any], state: TicketState, error: BaseException, now: float
    ) -> bool:
        """A run of *ticket* ended in *state* (not success) by *error*: retry it?

        If it runs again, it now waits out its backoff (``QUEUED``, holding no
        worker), and this returns ``True``; ``False`` leaves it to be settled.
        Only a ``FAILED`` run is retried.
        Never while the pool shuts down, never for a ``BaseException`` that is
        not an ``Exception``, and never for a request cancelled or past its
        ``timeout`` (its handler raised something else as it was cut short).
        A callable backoff that raises, or gives no number of seconds, fails
        the request at once with that error (the handler's as its cause), and
        this returns ``True`` too.
        """
        if (
            state is not _FAILED
            or not self.open
            or ticket._state is not _RUNNING
            or not isinstance(error, Exception)
            or ticket._cancelled_at != math.inf
            or now >= ticket._deadline
        ):
            return self._settles(ticket)
        record = self.records.get(ticket)
        retries = 0 if record is None else record.retries
        if not self.policy.retries(error, retries + 1):
            return self._settles(ticket)
        try:
            delay = self.policy.delay(retries + 1)
        except Exception as exc:  # noqa: BLE001 (the user's callable: fail the request)
            exc.__cause__ = error
            self._settles(ticket)
            self.settle(ticket, _FAILED, now, exc)
            return True
        if record is None:
            record = self.records[ticket] = _Record(now)
        record.retries = retries + 1
        self.retried += 1
        level = ticket._level
        self.by_level[level] = self.by_level.get(level, 0) + 1
        ticket._state = _QUEUED
        ticket._scope = None
        # queue_timeout bounds the wait for a first worker, which it had.
        ticket._queue_deadline = math.inf
        if ticket._deadline_entry is not None:
            self.deadlines.clear(ticket)
        self.waiting[ticket] = error
        end = now + delay
        deadline = ticket._deadline
        when = end if end < deadline else deadline  # noqa: FURB136
        self.deadlines.add_unique(when, next(self.order), ticket)
        return True

    def _settles(self, ticket: Ticket[Any]) -> bool:
        """*ticket* settles from the run that just ended; ``False``."""
        record = self.records.get(ticket)
        if record is not None:
            record.ran_last = True
        return False

    @ki_protected
    def due(self, ticket: Ticket[Any], now: float) -> bool:
        """The timekeeper's call for the queued *ticket*: end its backoff.

        Returns ``False`` if it waits out none (a deadline of a queued request,
        for the pool to expire). Else it is queued again, or fails with
        :exc:`RequestTimeout` if its ``timeout`` has passed.
        """
        error = self.waiting.pop(ticket, None)
        if error is None:
            return False
        if now >= ticket._deadline:
            timeout = RequestTimeout(
                f"request {ticket.id} timed out waiting out a retry's backoff"
            )
            timeout.__cause__ = error
            self.settle(ticket, _TIMED_OUT, now, timeout)
            return True
        self.records[ticket].queued_at = now
        if self.queue.put_over(ticket, ticket._level):
            self.handover.add(ticket)
        if ticket._deadline != math.inf:
            self.deadlines.add_unique(ticket._deadline, next(self.order), ticket)
        return True

    @ki_protected
    def withdraw(self, ticket: Ticket[Any]) -> None:
        """*ticket* leaves unrun (cancelled, or ended with its last sharer)."""
        self.waiting.pop(ticket, None)
        # Its deadline-heap entry goes as it settles.

    @ki_protected
    def close(self, now: float) -> None:
        """Shutdown: fail every request waiting out a backoff, with its last error."""
        self.open = False
        waiting, self.waiting = self.waiting, {}
        settle = self.settle
        for ticket, error in waiting.items():
            settle(ticket, _FAILED, now, error)

    @property
    def retrying(self) -> int:
        """How many requests wait out a backoff now."""
        return len(self.waiting)

    def backing_off(self, ticket: Ticket[Any]) -> bool:
        """Whether *ticket* waits out a backoff now."""
        return ticket in self.waiting
