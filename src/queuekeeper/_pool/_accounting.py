"""Accounting: the counters, the wait window and the worker records behind status().

Every request that enters the queue is counted in once (:meth:`Accounting.queued`)
and settled once (:meth:`Accounting.settle`): its final state is counted, its
ticket finished and the observer told. At every instant, submitted equals the
settled ones plus those queued plus those running.
"""

from __future__ import annotations

import math
from collections import deque
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol, final

from anyio import current_time

from .._states import TicketState
from .._status import PoolStatus, WorkerHealth
from .._util import ki_protected

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._observer import PoolObserver
    from ._dead import DeadLetterStream
    from ._deadlines import Deadlines
    from ._ticket import Ticket

__all__ = ["WAIT_WINDOW", "Accounting", "WorkerRecord"]

_RUNNING: Final = TicketState.RUNNING
_SUCCEEDED: Final = TicketState.SUCCEEDED
_FAILED: Final = TicketState.FAILED
_CANCELLED: Final = TicketState.CANCELLED
_TIMED_OUT: Final = TicketState.TIMED_OUT

#: How far back :meth:`Accounting.service_rate` looks, and how often it samples
#: (seconds).
RATE_WINDOW: Final = 10.0
RATE_STEP: Final = 0.1

#: How many recent wait times the percentiles in :class:`PoolStatus` cover.
WAIT_WINDOW: Final = 1024


def _ran_once(ticket: Ticket[Any]) -> int:
    """Runs of *ticket*'s request in a pool without retries: 1 once it started."""
    return 0 if ticket.started_at is None else 1


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[index]


@final
class WorkerRecord:
    """What one worker is doing and has done: the source of its ``WorkerHealth``."""

    __slots__ = (
        "consecutive_errors",
        "current",
        "errors",
        "last_error",
        "limit",
        "processed",
        "retired",
        "worker_id",
    )

    def __init__(self, worker_id: int, limit: int | None = None) -> None:
        self.worker_id = worker_id
        #: A reserved worker's level: it takes requests at that level or above.
        self.limit = limit
        #: Set when it retired (after a shrink) rather than ended with the pool.
        self.retired = False
        self.processed = 0
        self.errors = 0
        self.consecutive_errors = 0
        # The request it runs (its started_at is when the worker became busy).
        self.current: Ticket[Any] | None = None
        self.last_error: str | None = None


class RetryPolicy(Protocol):
    """What Accounting asks of a pool's retries, and reads for ``status()``.

    In-process ``_retry.Retries``; on Redis ``_graves.Graves``.
    """

    #: Retries made, in all and by submitted level.
    retried: int
    by_level: dict[int, int]

    @property
    def retrying(self) -> int:
        """Requests waiting out a backoff now."""
        ...

    def after_run(
        self, ticket: Ticket[Any], state: TicketState, error: BaseException, now: float
    ) -> bool:
        """A run of *ticket* ended in *state* by *error*: ``True`` if it runs again."""
        ...


@final
class Accounting:
    """Counts requests in and out, keeps recent waits and the worker records."""

    __slots__ = (
        "active",
        "attempts",
        "cancel_grace",
        "cancelled",
        "clock",
        "coalesced",
        "completed",
        "count",
        "dead_letters",
        "deadlines",
        "failed",
        "hung_after",
        "name",
        "next_id",
        "observer",
        "on_coalesced",
        "rates",
        "rejected",
        "retries",
        "shed",
        "submitted",
        "timed_out",
        "unhealthy_after",
        "waits",
        "workers",
    )

    def __init__(
        self,
        name: str,
        workers: int,
        observer: PoolObserver | None,
        deadlines: Deadlines,
        *,
        hung_after: float,
        unhealthy_after: int,
        cancel_grace: float,
    ) -> None:
        self.name = name
        self.observer = observer
        self.deadlines = deadlines
        self.hung_after = hung_after
        self.unhealthy_after = unhealthy_after
        self.cancel_grace = cancel_grace
        #: The backend's clock; anyio's current_time() until the pool runs.
        self.clock: Callable[[], float] = current_time
        self.workers = tuple(WorkerRecord(i) for i in range(workers))
        #: How many workers the pool runs (``max_workers``); ``workers`` also
        #: lists those still to retire after a shrink until they do.
        self.count = workers
        self.next_id = workers
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.rejected = 0
        self.timed_out = 0
        self.cancelled = 0
        self.shed = 0
        self.active = 0
        self.coalesced = 0
        # The observer's optional coalesced() (observers may predate it).
        self.on_coalesced: Callable[[str, int], object] | None = getattr(
            observer, "coalesced", None
        )
        self.waits: deque[float] = deque(maxlen=WAIT_WINDOW)
        #: (time, requests finished) samples for :meth:`service_rate`; the pool
        #: adds the first as it starts.
        self.rates: deque[tuple[float, int]] = deque()
        #: The pool's retry policy at work (``retry=``), consulted as a
        #: handler's error would fail a request; ``None`` without one.
        self.retries: RetryPolicy | None = None
        #: Where requests that failed for good are recorded
        #: (``dead_letter_size=``), and how many runs a request had; ``None``
        #: without dead letters.
        self.dead_letters: DeadLetterStream[Any] | None = None
        self.attempts: Callable[[Ticket[Any]], int] = _ran_once

    # -- the workers --------------------------------------------------------------

    def reserve(self, limits: list[int]) -> None:
        """Make the first ``len(limits)`` workers reserved, at those levels."""
        workers = self.workers
        self.workers = (
            *(WorkerRecord(i, limit) for i, limit in enumerate(limits)),
            *workers[len(limits) :],
        )

    @ki_protected
    def add(self, count: int) -> list[WorkerRecord]:
        """*count* new workers' records, listed from now on (fresh ids)."""
        first = self.next_id
        self.next_id += count
        records = [WorkerRecord(i) for i in range(first, first + count)]
        self.workers = (*self.workers, *records)  # one step: safe from a scrape
        return records

    @ki_protected
    def retire(self, worker: WorkerRecord) -> None:
        """*worker* retired: stop listing it."""
        self.workers = tuple(w for w in self.workers if w is not worker)

    # -- in -----------------------------------------------------------------------

    @ki_protected
    def queued(self, ticket: Ticket[Any]) -> None:
        """Count *ticket* in: it entered the queue."""
        self.submitted += 1
        observer = self.observer
        if observer is not None:
            observer.submitted(self.name, ticket._level)

    @ki_protected
    def refused(self, level: int) -> None:
        """Count a :exc:`QueueFull` raised to a submitter at *level*."""
        self.rejected += 1
        observer = self.observer
        if observer is not None:
            observer.rejected(self.name, level)

    @ki_protected
    def shared(self, level: int) -> None:
        """Count a submit at *level* that shares a queued or running request."""
        self.coalesced += 1
        if self.on_coalesced is not None:
            self.on_coalesced(self.name, level)

    # -- running ------------------------------------------------------------------

    @ki_protected
    def finish(
        self,
        worker: WorkerRecord,
        ticket: Ticket[Any],
        state: TicketState,
        error: BaseException,
    ) -> None:
        """*worker* is done with *ticket*, which ends in *state* because of *error*.

        For every outcome but success (see :meth:`succeeded`).
        """
        now = self.clock()
        self.active -= 1
        worker.current = None
        worker.processed += 1
        if state is not _CANCELLED:  # failed or timed out: the handler's error
            worker.errors += 1
            worker.consecutive_errors += 1
            worker.last_error = repr(error)
        if not ticket.done():  # shutdown may have given up on it already
            retries = self.retries
            if retries is not None and retries.after_run(ticket, state, error, now):
                return  # it waits out a backoff, then runs again
            self.settle(ticket, state, now, error)

    @ki_protected
    def succeeded(
        self, worker: WorkerRecord, ticket: Ticket[Any], result: object
    ) -> None:
        """*worker*'s handler returned *result* for *ticket*: finish and settle it.

        :meth:`finish` and :meth:`settle` for the common case, in one call.
        """
        now = self.clock()
        self.active -= 1
        worker.current = None
        worker.processed += 1
        worker.consecutive_errors = 0
        if ticket._state is not _RUNNING:  # shutdown may have given up on it
            return
        self.completed += 1
        if ticket._deadline_entry is not None:
            self.deadlines.clear(ticket)
        ticket._state = _SUCCEEDED
        ticket.finished_at = now
        ticket._result = result
        ticket._scope = None
        if ticket._event is not None:
            ticket._event.set()
        observer = self.observer
        if observer is not None:
            started = ticket.started_at
            duration = None if started is None else now - started
            observer.finished(self.name, ticket._level, _SUCCEEDED, duration)

    # -- out ----------------------------------------------------------------------

    @ki_protected
    def settle(
        self,
        ticket: Ticket[Any],
        state: TicketState,
        now: float,
        error: BaseException,
    ) -> None:
        """Put *ticket* in its final *state*, failed with *error*; count and report it.

        For every outcome but success (see :meth:`succeeded`).
        """
        if state is _FAILED:
            self.failed += 1
        elif state is _CANCELLED:
            self.cancelled += 1
        elif state is _TIMED_OUT:
            self.timed_out += 1
        else:
            self.shed += 1
        if ticket._deadline_entry is not None:
            self.deadlines.clear(ticket)
        started = ticket.started_at
        ticket._finish(state, now, error)
        observer = self.observer
        if observer is not None:
            duration = None if started is None else now - started
            observer.finished(self.name, ticket._level, state, duration)
        if state is _FAILED and self.dead_letters is not None:
            self.dead_letters.record(ticket, error, now, self.attempts(ticket))

    # -- snapshots ----------------------------------------------------------------

    def service_rate(self) -> float | None:
        """Requests finished per second lately; ``None`` if none yet (or not run).

        Sampled when asked, not on the request path: over the last
        :data:`RATE_WINDOW` seconds of samples, or since the pool started.
        """
        rates = self.rates
        if not rates:
            return None
        now = self.clock()
        done = sum(worker.processed for worker in self.workers)
        if now - rates[-1][0] >= RATE_STEP:
            rates.append((now, done))
        while len(rates) > 2 and now - rates[1][0] >= RATE_WINDOW:  # noqa: PLR2004
            rates.popleft()
        since, before = rates[0]
        if done <= before or now <= since:
            return None
        return (done - before) / (now - since)

    def worker_health(self) -> tuple[WorkerHealth, ...]:
        """A :class:`WorkerHealth` for every worker (see ``WorkerPool``)."""
        workers = self.workers
        busy = any(worker.current is not None for worker in workers)
        now = self.clock() if busy else 0.0
        return tuple(self._health(worker, now) for worker in workers)

    def _health(self, worker: WorkerRecord, now: float) -> WorkerHealth:
        current = worker.current
        busy_since = None if current is None else current.started_at
        hung = busy_since is not None and now - busy_since > self.hung_after
        if current is not None:
            # Cancelled (deadline, ticket or shutdown) but still running past grace.
            cancelled_at = min(current._deadline, current._cancelled_at)
            hung = hung or now >= cancelled_at + self.cancel_grace
        return WorkerHealth(
            worker_id=worker.worker_id,
            is_healthy=not hung and worker.consecutive_errors < self.unhealthy_after,
            total_processed=worker.processed,
            total_errors=worker.errors,
            current_request=None if current is None else current.id,
            busy_since=busy_since,
            last_error=worker.last_error,
            consecutive_errors=worker.consecutive_errors,
            reserved_for=worker.limit,
        )

    def status(
        self,
        state: str,
        queue_size: int,
        by_level: Mapping[int, int],
        max_queue_size: int | None,
        in_flight: int,
        workers_alive: Mapping[str, int],
    ) -> PoolStatus:
        """A :class:`PoolStatus`, given what the pool knows of itself and its queue.

        Safe to call from another thread (a metrics scrape): the window is copied
        in one step.
        """
        waits = sorted(self.waits)
        if waits:
            average = 1000 * sum(waits) / len(waits)
            p50, p95, p99 = (1000 * _percentile(waits, f) for f in (0.5, 0.95, 0.99))
        else:
            average = p50 = p95 = p99 = 0.0
        return PoolStatus(
            name=self.name,
            state=state,
            max_workers=self.count,
            active_workers=self.active,
            queue_size=queue_size,
            queue_size_by_priority=by_level,
            max_queue_size=max_queue_size,
            submitted=self.submitted,
            completed=self.completed,
            failed=self.failed,
            rejected=self.rejected,
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            shed=self.shed,
            average_wait_time_ms=average,
            wait_time_ms_p50=p50,
            wait_time_ms_p95=p95,
            wait_time_ms_p99=p99,
            workers=self.worker_health(),
            in_flight=in_flight,
            workers_alive=workers_alive,
            coalesced=self.coalesced,
            **self._outcome_counts(),
        )

    def _outcome_counts(self) -> dict[str, Any]:
        """The status fields of the outcome policies (retries, dead letters)."""
        counts: dict[str, Any] = {}
        retries = self.retries
        if retries is not None:
            counts["retried"] = retries.retried
            counts["retrying"] = retries.retrying
            counts["retried_by_priority"] = MappingProxyType(
                dict(sorted(retries.by_level.items()))
            )
        dead = self.dead_letters
        if dead is not None:
            counts["dead_letters"] = dead.made
            counts["dead_letters_dropped"] = dead.dropped
        return counts
