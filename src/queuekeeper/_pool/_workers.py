"""The worker loop: take the next request, run its handler in a cancel scope, settle it.

Each worker is a task in the pool's task group. It runs its requests inside one
cancel scope of its own, which carries each request's deadline and is cancelled
to cut a request short; only then is it replaced (one scope per request would
cost more than the rest of a request's way through the pool). Whatever a handler
does (raise anything, swallow or fake a cancellation, spawn task groups), the
worker settles the request and goes on; only the pool's own cancellations, or a
``BaseException`` that is not an ``Exception``, stop it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import sys
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from anyio import (
    CancelScope,
    EndOfStream,
    Event,
    current_effective_deadline,
    get_cancelled_exc_class,
)
from anyio.lowlevel import checkpoint

from .._errors import RequestCancelled, RequestTimeout
from .._memory import RETIRE
from .._states import TicketState
from .._util import ki_protected, ki_unprotected

if sys.version_info < (3, 11):  # pragma: no cover (Python 3.10 only)
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._queue import RequestQueue
    from ._accounting import Accounting, WorkerRecord
    from ._admission import Admission
    from ._ticket import Ticket

__all__ = ["Workers"]

Req = TypeVar("Req")
Res = TypeVar("Res")

_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING
_INF: Final = math.inf
_SUCCEEDED: Final = TicketState.SUCCEEDED
_FAILED: Final = TicketState.FAILED
_CANCELLED: Final = TicketState.CANCELLED
_TIMED_OUT: Final = TicketState.TIMED_OUT

#: Requests a worker may take from a non-empty queue between checkpoints.
#: Taking the next one without a trip through the event loop halves the pool's
#: per-request cost on a busy queue (the handler's own awaits are the worker's
#: checkpoints); the bound keeps a handler that never awaits from hogging the loop.
_STREAK: Final = 32


def _check_awaitable(handler: object, value: object) -> None:
    """Raise a clear TypeError if *value*, what *handler* returned, is no awaitable."""
    if not inspect.isawaitable(value):
        msg = (
            f"handler {handler!r} returned {value!r}, which is not awaitable "
            "(an 'async def' handler returns a coroutine)"
        )
        raise TypeError(msg)


def _take_nothing() -> None:
    """``take_nowait`` while workers are to retire: as if the queue were empty."""


def _forget_native_cancels() -> None:
    """On asyncio, withdraw native cancellation requests of the current task.

    A handler that cancels the task serving it (``asyncio.current_task().cancel()``)
    leaves the worker task's ``cancelling()`` count raised once that cancellation
    has been delivered, and anyio's cancel scopes then refuse to swallow their own
    cancellations: the worker's next timeout would end it. No cancel scope around
    the worker is cancelled when this is called, so every request counted is such
    a stray one.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio
        return
    # No branch: the version test is constant on the Python measured (3.11+).
    if task is not None and sys.version_info >= (3, 11):  # pragma: no branch
        while task.cancelling():
            task.uncancel()


@final
class Workers(Generic[Req, Res]):
    """The pool's workers: their loop, and how many are still alive."""

    __slots__ = (
        "accounting",
        "acknowledge",
        "admission",
        "all_done",
        "clock",
        "excess",
        "handler",
        "live",
        "queue",
        "take_nowait",
    )

    def __init__(
        self,
        handler: Callable[[Req], Awaitable[Res]],
        queue: RequestQueue[Ticket[Res]],
        admission: Admission[Res],
        accounting: Accounting,
    ) -> None:
        self.handler = handler
        self.queue = queue
        self.admission = admission
        self.accounting = accounting
        #: The backend's clock, set when the pool runs.
        self.clock: Callable[[], float] = accounting.clock
        #: Workers whose task has started and not yet ended.
        self.live = 0
        #: Set when the last live worker ends (unless it retired).
        self.all_done = Event()
        #: Workers still to retire after a shrink (see WorkerPool.resize); set
        #: with set_excess().
        self.excess = 0
        #: The queue's take_nowait, or, while workers are to retire, a stand-in
        #: that finds nothing (so a worker done with its request goes to wait,
        #: and retires there), at no cost to the worker loop otherwise.
        self.take_nowait: Callable[[], Ticket[Res] | None] = queue.take_nowait
        # What a queue that leases its requests wants told of each one taken
        # (its lease then moves to the worker's own bookkeeping).
        self.acknowledge = queue.settled if queue.acknowledges else None

    @ki_protected
    async def work(self, worker: WorkerRecord) -> None:
        """One worker's task: serve requests until the queue is closed and empty.

        The pool counts it in ``live`` when it starts the task. A reserved worker
        (its record has a ``limit``) takes only requests at that level or above;
        any other worker retires when the pool has workers in excess.
        """
        serve = self._serve if worker.limit is None else self._serve_reserved
        try:
            while True:
                with CancelScope() as scope:
                    if not await serve(worker, scope):
                        return  # the queue is closed and empty, or it retired
        finally:
            ticket = worker.current
            # Reached only when Ctrl-C lands, under Trio, on one of the few
            # bytecodes of _serve between _begin() and the handler's try: no
            # test can aim a signal at one bytecode.
            if ticket is not None:  # pragma: no cover
                self.accounting.finish(
                    worker, ticket, _CANCELLED, RequestCancelled("pool shut down")
                )
            self.live -= 1
            if not self.live and not worker.retired:
                self.all_done.set()

    @ki_unprotected
    async def _serve(  # noqa: C901 (the hot loop, in one frame: see the docstring)
        self, worker: WorkerRecord, scope: CancelScope
    ) -> bool:
        """Run requests in *scope* until a request spends it; ``False`` at the end.

        Only the request running in it ever cancels *scope* (or moves its
        deadline), so a scope that comes back from a run uncancelled is as good as
        new.

        The handler runs in this frame, rather than in a coroutine of its own
        (which cost 1,200-1,500 more instructions a request, 1-2 %), and this
        frame is not protected from Ctrl-C under
        Trio, so that the handler is not either. Every request taken is at every
        moment in the queue, in ``worker.current`` (started, by the protected
        :meth:`_begin` and :meth:`_begin_waiting`), or in a protected frame: a
        ``KeyboardInterrupt`` here loses none (``work`` settles the current one).
        """
        begin = self._begin
        accounting = self.accounting
        handler = self.handler
        acknowledge = self.acknowledge
        awaitable: Any
        result: object
        streak = 0
        while True:
            ticket = begin(worker, scope) if streak < _STREAK else None
            if ticket is None:
                # The queue is empty, or _STREAK requests ran without a
                # checkpoint: take the next one through the event loop. While
                # this frame waits, it keeps no settled request or result alive.
                streak = 0
                awaitable = result = None
                ticket = await self._begin_waiting(worker, scope)
                if ticket is None:
                    return False  # the queue is closed and empty
            else:
                streak += 1
            try:
                awaitable = handler(ticket.request)  # type: ignore[arg-type]
                if awaitable.__class__ is not CoroutineType:
                    _check_awaitable(handler, awaitable)
                result = await awaitable
            except BaseException as exc:  # noqa: BLE001 (every outcome is settled)
                cut = self._handler_raised(worker, ticket, exc)
            else:
                cut = False
                accounting.succeeded(worker, ticket, result)
            if acknowledge is not None:
                acknowledge(ticket)
            if cut:
                # A scope around this worker is cancelled: let the cancellation
                # surface here, fresh, for its scope to catch.
                await checkpoint()
            if ticket._deadline != _INF:
                scope.deadline = _INF
            elif ticket._cancelled_at == _INF:
                continue  # nothing can have cancelled the scope
            if scope.cancel_called:
                return True  # it cut that request short: take a fresh scope

    @ki_protected
    def _begin(self, worker: WorkerRecord, scope: CancelScope) -> Ticket[Res] | None:
        """Start the next queued request on *worker*; ``None`` if none is queued.

        Requests whose timeout passed before their timer fired fail instead.
        ``None`` too when workers are to retire: the worker then waits, and so
        retires (see :meth:`_begin_waiting`).
        """
        take_nowait = self.take_nowait
        while (ticket := take_nowait()) is not None:
            if self._start(worker, ticket, scope):
                return ticket
        return None

    @ki_protected
    async def _begin_waiting(
        self, worker: WorkerRecord, scope: CancelScope
    ) -> Ticket[Res] | None:
        """Wait for the next request, start it on *worker*; ``None`` at the end.

        Always a checkpoint, unless the worker retires (``None`` too).
        """
        queue = self.queue
        admission = self.admission
        handover = admission.handover
        while True:
            if self.excess:
                self._retire(worker)
                return None
            try:
                ticket = await queue.take()
            except EndOfStream:
                return None
            if ticket is RETIRE:
                continue  # retire, if some other worker has not retired instead
            handover.discard(ticket)
            if admission.watchers:
                admission.picked()
            if self._start(worker, ticket, scope):
                return ticket
            started = self._begin(worker, scope)
            if started is not None:
                return started

    def _start(
        self, worker: WorkerRecord, ticket: Ticket[Res], scope: CancelScope
    ) -> bool:
        """Start the taken *ticket* on *worker*, unless it is already settled or late.

        Called from protected frames only.
        """
        if ticket._state is _QUEUED:
            now = self.clock()
            deadline = ticket._deadline
            if now < ticket._queue_deadline and now < deadline:
                # Accounting.start(), inlined: every request goes this way.
                ticket._state = _RUNNING
                ticket.started_at = now
                wait = now - ticket.submitted_at
                accounting = self.accounting
                accounting.waits.append(wait)
                accounting.active += 1
                worker.current = ticket
                ticket._scope = scope
                if deadline != _INF:
                    scope.deadline = deadline
                observer = accounting.observer
                if observer is not None:
                    observer.started(accounting.name, ticket._level, wait)
                return True
            # Expired before its timer fired: it must not start.
            self.admission.expire(ticket, now)
        # else: cancelled or expired while handed over
        if ticket is RETIRE:  # pragma: no cover (given back by a native cancel)
            return False
        if self.acknowledge is not None:
            self.acknowledge(ticket)
        return False

    @ki_protected
    def set_excess(self, excess: int) -> None:
        """Have *excess* workers retire (as each is next done with a request)."""
        self.excess = excess
        self.take_nowait = _take_nothing if excess else self.queue.take_nowait

    @ki_protected
    def _retire(self, worker: WorkerRecord) -> None:
        """Retire *worker*, one of the workers in excess."""
        self.set_excess(self.excess - 1)
        worker.retired = True
        self.accounting.retire(worker)

    # -- reserved workers ---------------------------------------------------------

    @ki_unprotected
    async def _serve_reserved(self, worker: WorkerRecord, scope: CancelScope) -> bool:
        """:meth:`_serve` for a reserved worker: requests at its limit or above.

        Off the default path, so plainer: one checkpoint per request.
        """
        accounting = self.accounting
        handler = self.handler
        acknowledge = self.acknowledge
        limit = worker.limit
        awaitable: Any
        result: object
        while True:
            ticket = await self._begin_reserved(worker, scope, limit)  # type: ignore[arg-type]
            if ticket is None:
                return False  # the queue is closed, with nothing at its levels
            try:
                awaitable = handler(ticket.request)  # type: ignore[arg-type]
                if awaitable.__class__ is not CoroutineType:
                    _check_awaitable(handler, awaitable)
                result = await awaitable
            except BaseException as exc:  # noqa: BLE001 (every outcome is settled)
                cut = self._handler_raised(worker, ticket, exc)
            else:
                cut = False
                accounting.succeeded(worker, ticket, result)
            awaitable = result = None
            if acknowledge is not None:
                acknowledge(ticket)
            if cut:
                await checkpoint()
            if ticket._deadline != _INF:
                scope.deadline = _INF
            if scope.cancel_called:
                return True

    @ki_protected
    async def _begin_reserved(
        self, worker: WorkerRecord, scope: CancelScope, limit: int
    ) -> Ticket[Res] | None:
        """Wait for a request at *limit* or above, start it; ``None`` at the end."""
        take = self.queue.take_within
        handover = self.admission.handover
        while True:
            try:
                ticket = await take(limit)
            except EndOfStream:
                return None
            handover.discard(ticket)
            if self._start(worker, ticket, scope):
                return ticket

    @ki_protected
    def _handler_raised(
        self, worker: WorkerRecord, ticket: Ticket[Res], exc: BaseException
    ) -> bool:
        """Settle *ticket*, whose handler raised *exc*; tell whether to checkpoint.

        The handler's own errors (anything but cancellations, bare or in a group)
        fail the request; a ``BaseException`` that is not an ``Exception``
        (``KeyboardInterrupt``, ``SystemExit``...) then propagates. A cancellation
        counts only if a cancel scope around the worker is cancelled: the
        request's deadline, ``ticket.cancel()``, shutdown, or a cancellation of
        the pool from outside. Any other cancellation is the handler's own doing:
        it fails the request, and the worker goes on.

        Returns whether a scope around the worker is cancelled.
        """
        cancelled = get_cancelled_exc_class()
        cancels: BaseException | None
        errors: BaseException | None
        if isinstance(exc, cancelled):
            cancels, errors = exc, None
        elif isinstance(exc, BaseExceptionGroup):
            cancels, errors = exc.split(cancelled)
            if cancels is None:
                errors = exc  # the handler's own group, not a copy of it
        else:
            cancels, errors = None, exc
        now = self.clock()
        in_effect = cancels is not None and current_effective_deadline() <= now
        finish = self.accounting.finish
        error: BaseException
        if errors is not None:
            finish(worker, ticket, _FAILED, errors)
            if not isinstance(errors, Exception):
                raise errors
        elif not in_effect:
            _forget_native_cancels()
            error = RequestCancelled(
                f"request {ticket.id} failed: its handler raised a cancellation "
                f"that the pool did not issue ({exc!r})"
            )
            error.__cause__ = exc
            finish(worker, ticket, _FAILED, error)
        elif ticket._cancelled_at != math.inf:
            error = RequestCancelled(f"request {ticket.id} was cancelled")
            finish(worker, ticket, _CANCELLED, error)
        elif now >= ticket._deadline:
            error = RequestTimeout(f"request {ticket.id} timed out while running")
            finish(worker, ticket, _TIMED_OUT, error)
        else:
            error = RequestCancelled("pool shut down")
            finish(worker, ticket, _CANCELLED, error)
        return in_effect
