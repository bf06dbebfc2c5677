"""The worker pool: a priority channel feeding workers in a task group."""

from __future__ import annotations

import asyncio
import enum
import functools
import heapq
import inspect
import math
import sys
from collections import deque
from types import CoroutineType, MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    ClosedResourceError,
    EndOfStream,
    Event,
    WouldBlock,
    create_task_group,
    current_effective_deadline,
    current_time,
    get_cancelled_exc_class,
    move_on_after,
    sleep_forever,
)
from anyio.lowlevel import checkpoint

from ._channel import check_max_size, create_priority_channel
from ._errors import (
    PoolClosed,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
)
from ._priority import Priority, check_priority, priority_name
from ._status import PoolStatus, WorkerHealth
from ._ticket import Ticket, TicketState
from ._util import describe, enable_ki_protection, ki_protected, ki_unprotected

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup, TaskStatus
    from typing_extensions import Self

    from ._channel import _ChannelState
    from ._observer import PoolObserver

__all__ = ["Backpressure", "WorkerPool"]

Req = TypeVar("Req")
Res = TypeVar("Res")

_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING
_SUCCEEDED: Final = TicketState.SUCCEEDED
_FAILED: Final = TicketState.FAILED
_CANCELLED: Final = TicketState.CANCELLED
_TIMED_OUT: Final = TicketState.TIMED_OUT
_SHED: Final = TicketState.SHED

#: How many recent wait times the percentiles in :class:`PoolStatus` cover.
WAIT_WINDOW: Final = 1024
#: The most workers a pool may have (each is a task, a few KiB).
MAX_WORKERS: Final = 1_000_000


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


_REJECT: Final = Backpressure.REJECT
_BLOCK: Final = Backpressure.BLOCK
_SHED_MODE: Final = Backpressure.SHED


def _check_seconds(value: object, name: str) -> float:
    """Validate a duration: ``None`` (no limit, returned as inf) or a finite > 0."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = (
            f"{name} must be None or a number of seconds > 0, "
            f"not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if not (0 < value < math.inf):
        msg = (
            f"{name} must be None or a finite number of seconds > 0, "
            f"not {describe(value)}"
        )
        raise ValueError(msg)
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        msg = (
            f"{name} must be None or a finite number of seconds > 0, "
            f"not {describe(value)} (too large)"
        )
        raise ValueError(msg) from None


def _check_count(value: object, name: str, maximum: int | None = None) -> int:
    """Validate a count: an ``int >= 1``, and at most *maximum* if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = (
            f"{name} must be an int >= 1, "
            f"not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if value < 1:
        msg = f"{name} must be an int >= 1, not {describe(value)}"
        raise ValueError(msg)
    if maximum is not None and value > maximum:
        msg = f"{name} must be an int from 1 to {maximum:,}, not {describe(value)}"
        raise ValueError(msg)
    return value


#: How deep _synchronous() looks through partials, methods and wrappers.
_MAX_LAYERS: Final = 64


def _innermost(handler: object) -> object:
    """Look through *handler*'s layers; the first ``async def`` one, else the last.

    The layers: ``functools.partial``, bound methods, ``__wrapped__`` (what
    ``functools.wraps`` leaves) and a callable object's ``__call__``.
    """
    layer = handler
    for _ in range(_MAX_LAYERS):
        if inspect.iscoroutinefunction(layer):
            break
        if isinstance(layer, functools.partial):
            layer = layer.func
        elif inspect.ismethod(layer):
            layer = layer.__func__
        elif callable(wrapped := getattr(layer, "__wrapped__", None)):
            layer = wrapped
        elif (
            inspect.isfunction(layer)
            or inspect.isbuiltin(layer)
            or inspect.ismethoddescriptor(layer)
            or isinstance(layer, type)
        ):
            break
        else:
            layer = type(layer).__call__  # a callable object: what __call__ is
    return layer


def _synchronous(handler: object) -> str | None:
    """Say what *handler* is if calling it can never give an awaitable, else ``None``.

    A ``def`` function (or ``__call__`` method) is taken as synchronous, a lambda
    is not (its expression may well build a coroutine), nor is a class.
    """
    layer = _innermost(handler)
    if inspect.iscoroutinefunction(layer):
        return None
    if inspect.isasyncgenfunction(layer):
        return "an async generator function"
    if inspect.isgeneratorfunction(layer):
        return "a generator function"
    if inspect.isfunction(layer):
        return None if layer.__name__ == "<lambda>" else "a plain function"
    if inspect.isbuiltin(layer) or inspect.ismethoddescriptor(layer):
        return "a built-in function"
    return None


def _check_handler(handler: object) -> None:
    if not callable(handler):
        msg = f"handler must be an async callable, not {handler!r}"
        raise TypeError(msg)
    what = _synchronous(handler)
    if what is not None:
        msg = (
            "handler must be an async callable (an 'async def' function, or a "
            f"callable returning an awaitable); {handler!r} is {what}"
        )
        raise TypeError(msg)


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        msg = f"name must be a str, not {name!r} ({type(name).__name__})"
        raise TypeError(msg)
    if not name:
        msg = "name must be a non-empty str, not ''"
        raise ValueError(msg)


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[index]


@final
class _Worker:
    __slots__ = (
        "busy_since",
        "consecutive_errors",
        "current",
        "errors",
        "last_error",
        "processed",
        "worker_id",
    )

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id
        self.processed = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.current: Ticket[Any] | None = None
        self.busy_since: float | None = None
        self.last_error: str | None = None


_UNSET: Final[Any] = object()
_new_object: Final = object.__new__
_init_ticket: Final = Ticket.__init__
#: Requests a worker may take from a non-empty queue between checkpoints.
_STREAK: Final = 32
#: Cleared deadline entries the heap may hold before they can outnumber the rest.
_MIN_PRUNE: Final = 32


def _wake_at(ticket: Ticket[Any]) -> float:
    """When a queued *ticket* expires: the earlier of its two deadlines."""
    deadline, queue_deadline = ticket._deadline, ticket._queue_deadline
    return deadline if deadline < queue_deadline else queue_deadline  # noqa: FURB136 (min() costs a call)


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
    if task is not None and sys.version_info >= (3, 11):
        while task.cancelling():
            task.uncancel()


def _backend_clock() -> Callable[[], float]:
    """The running backend's clock function, which anyio's current_time() calls."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return cast("Callable[[], float]", trio.current_time)
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # pragma: no cover (another anyio backend)
        return current_time


@final
class WorkerPool(Generic[Req, Res]):
    """Run requests through *handler* on a fixed set of workers, by priority.

    Requests wait in a priority queue (see :func:`create_priority_channel`) and
    are served lowest priority value first, first-in first-out within a level.
    Workers are tasks in a task group: the pool's own (``async with pool``) or the
    caller's (``await task_group.start(pool.run)``). A handler's exception fails
    its request and never kills a worker.

    Args:
        handler: ``async def handler(request) -> result``, or any callable that
            returns an awaitable: a lambda, a ``functools.partial``, a function
            decorated with ``functools.wraps``, an object with an ``async def
            __call__``. One that certainly returns none (a plain ``def``
            function or ``__call__``, a generator, a built-in), after looking
            through partials and ``__wrapped__``, is refused here; one that
            returns something not awaitable fails that request with
            :exc:`TypeError`.
        workers: How many requests may run at once (1 to 1,000,000).
        max_queue_size: How many requests may wait (running ones not counted);
            ``None`` or :data:`math.inf` for no limit, else an ``int >= 1``.
        backpressure: What a full queue does to a new request (:class:`Backpressure`).
        name: The pool's name, in ticket ids, status and metric labels.
        metrics: An observer such as :class:`PrometheusMetrics`, or ``None``.
        drain_timeout: Default limit on how long :meth:`shutdown` drains; ``None``
            for no limit.
        hung_after: Seconds on one request after which a worker reports unhealthy
            (default 60).
        cancel_grace: Seconds a cancelled handler (by its deadline, its ticket or
            shutdown) may take to exit (default 1). Past that its worker reports
            unhealthy, and :meth:`shutdown` stops waiting for it.
        unhealthy_after: Failures in a row after which a worker reports unhealthy
            (default 5).

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).
    """

    def __init__(
        self,
        handler: Callable[[Req], Awaitable[Res]],
        *,
        workers: int = 5,
        max_queue_size: int | None = None,
        backpressure: Backpressure = Backpressure.REJECT,
        name: str = "default",
        metrics: PoolObserver | None = None,
        drain_timeout: float | None = None,
        hung_after: float = 60.0,
        unhealthy_after: int = 5,
        cancel_grace: float = 1.0,
    ) -> None:
        enable_ki_protection()
        _check_handler(handler)
        _check_name(name)
        workers = _check_count(workers, "workers", MAX_WORKERS)
        capacity = check_max_size(max_queue_size, name="max_queue_size")
        if not isinstance(cast("object", backpressure), Backpressure):
            msg = (
                "backpressure must be a queuekeeper.Backpressure, "
                f"not {backpressure!r} ({type(backpressure).__name__})"
            )
            raise TypeError(msg)
        self._drain_timeout = _check_seconds(drain_timeout, "drain_timeout")
        self._hung_after = _check_seconds(hung_after, "hung_after")
        self._unhealthy_after = _check_count(unhealthy_after, "unhealthy_after")
        self._cancel_grace = _check_seconds(cancel_grace, "cancel_grace")

        self._handler = handler
        self._name = name
        self._backpressure = backpressure
        self._max_queue_size = None if capacity == math.inf else int(capacity)
        self._send, self._receive = create_priority_channel[Ticket[Res]](capacity)
        self._queue: _ChannelState[Ticket[Res]] = self._send._state
        # A BLOCK submitter's request counts in when it moves into the queue.
        self._queue.on_admit = self._admitted
        self._workers = tuple(_Worker(i) for i in range(workers))
        self._observer = metrics
        # The backend's clock: anyio's current_time() until run() finds the
        # backend's own function (the same clock, without the dispatch).
        self._clock: Callable[[], float] = current_time

        # Lifecycle.
        self._started = False
        self._accepting = True
        self._state = "created"
        self._live_workers = 0
        self._workers_done = Event()
        self._stopped = Event()
        self._task_group: TaskGroup | None = None
        self._own_task_group: TaskGroup | None = None

        # Requests handed straight to a worker waiting for work, which has not
        # resumed to start them yet: still queued, but no longer in the channel.
        self._handover: set[Ticket[Res]] = set()
        # BLOCK requests that moved into the queue before their submitter resumed.
        self._moved_in: set[Ticket[Res]] = set()

        # Deadlines of queued requests: a heap the timekeeper task sleeps on.
        # Entries are [when, ticket sequence number, ticket]; a ticket that
        # finishes before its entry comes up clears it (ticket set to None), so
        # the heap keeps no finished request alive.
        self._deadlines: list[list[Any]] = []
        self._cleared_deadlines = 0
        self._timer_scope: CancelScope | None = None

        # Counters and the wait-time window.
        self._submitted = 0
        self._completed = 0
        self._failed = 0
        self._rejected = 0
        self._timed_out = 0
        self._cancelled = 0
        self._shed = 0
        self._active = 0
        self._waits: deque[float] = deque(maxlen=WAIT_WINDOW)

        if metrics is not None:
            metrics.attach(self)  # type: ignore[arg-type]

    # -- properties ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def backpressure(self) -> Backpressure:
        """The pool's :class:`Backpressure` mode."""
        return self._backpressure

    @property
    def max_workers(self) -> int:
        """How many workers the pool runs."""
        return len(self._workers)

    @property
    def max_queue_size(self) -> int | None:
        """The queue's capacity, ``None`` when unbounded."""
        return self._max_queue_size

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Run the workers in a task group of the pool's own; return after shutdown.

        Meant for ``await task_group.start(pool.run)`` (or ``nursery.start``),
        which returns once the workers are up. Cancelling it cancels the pool's
        work like ``shutdown(drain=False)``: every request still queued or running
        fails with :exc:`RequestCancelled`. (A request handed to an idle worker in
        the very instant of that cancellation may start; it is cancelled at its
        first checkpoint. ``shutdown(drain=False)`` never starts one.)

        Raises:
            RuntimeError: The pool was already started.
        """
        self._check_not_started()
        self._started = True
        enable_ki_protection()
        self._clock = _backend_clock()
        try:
            async with create_task_group() as task_group:
                self._task_group = task_group
                for worker in self._workers:
                    task_group.start_soon(
                        self._work,
                        worker,
                        name=f"{self._name}-worker-{worker.worker_id}",
                    )
                    self._live_workers += 1
                task_group.start_soon(self._keep_time, name=f"{self._name}-timekeeper")
                self._state = "running"
                task_status.started()
                await self._workers_done.wait()
                task_group.cancel_scope.cancel()
        finally:
            self._task_group = None
            self._close_intake()
            self._abandon_all(current_time())
            self._state = "closed"
            self._stopped.set()

    def _check_not_started(self) -> None:
        if self._started:
            msg = f"WorkerPool {self._name!r} was already started; a pool runs once"
            raise RuntimeError(msg)

    async def __aenter__(self) -> Self:
        """Start the workers in a task group of the pool's own.

        Raises:
            RuntimeError: The pool was already started (or shut down).
        """
        self._check_not_started()
        task_group = create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self.run)
        except BaseException as exc:
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._own_task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Drain and stop the pool; on an exception, cancel its work instead.

        Returns when every worker has exited. The body's exception propagates
        unchanged.
        """
        task_group = self._own_task_group
        if task_group is None:
            msg = "WorkerPool.__aexit__ called without __aenter__"
            raise RuntimeError(msg)
        self._own_task_group = None
        if exc is None:
            try:
                await self.shutdown(drain=True)
            except BaseException:
                self._abort()
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
                raise
        else:
            self._abort()
            task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)

    @ki_protected
    async def shutdown(
        self, *, drain: bool = True, timeout: float | None = _UNSET
    ) -> None:
        """Stop taking requests, finish or cancel the rest, and wait for the workers.

        From the first call on, :meth:`submit` raises :exc:`PoolClosed` (tasks
        blocked in ``submit`` included). With *drain*, queued and running requests
        may finish for up to *timeout* seconds (default: the pool's
        ``drain_timeout``; ``None`` for no limit); whatever is still queued or
        running after that is cancelled and fails with :exc:`RequestCancelled`.
        Without *drain*, that happens at once. When this returns, no ticket is
        pending and no worker is alive. Calling it again waits for the same end.

        A handler that ignores cancellation cannot hold this up for more than the
        pool's ``cancel_grace`` past the drain deadline: its ticket then fails with
        :exc:`RequestCancelled`, its worker reports unhealthy, and ``shutdown``
        returns. That worker's task (and so :meth:`run`, or leaving ``async
        with``) still ends only when the handler returns: structured concurrency
        abandons no task.

        Cancellation: cancelling a draining ``shutdown`` cancels the remaining work
        as ``drain=False`` would; the pool still ends.

        Raises:
            TypeError: *timeout* has the wrong type.
            ValueError: *timeout* is not a finite number > 0.
        """
        limit = (
            self._drain_timeout
            if timeout is _UNSET
            else _check_seconds(timeout, "timeout")
        )
        self._close_intake()
        if not self._started:
            # Never ran: nothing is running, and nothing will serve the queue.
            self._started = True
            self._abandon_all(current_time())
            self._state = "closed"
            self._stopped.set()
            await checkpoint()
            return
        if drain and not self._workers_done.is_set():
            try:
                with move_on_after(limit):
                    await self._workers_done.wait()
            except BaseException:
                self._abort()
                raise
        self._abort()
        with move_on_after(self._cancel_grace):
            await self._stopped.wait()
        if not self._stopped.is_set():
            # A handler ignores its cancellation: stop waiting for it.
            self._state = "closed"
            now = current_time()
            for worker in self._workers:
                ticket = worker.current
                if ticket is not None and not ticket.done():
                    error = RequestCancelled(
                        f"request {ticket.id} was cancelled; its handler ignores it"
                    )
                    self._resolve(ticket, _CANCELLED, now, error=error)

    @ki_protected
    def _close_intake(self) -> None:
        """Stop taking requests; workers end once the queue is empty."""
        self._accepting = False
        if self._state == "running":
            self._state = "draining"
        self._send.close()

    @ki_protected
    def _abort(self) -> None:
        """Cancel everything queued or running (the pool keeps no pending ticket)."""
        self._close_intake()
        now = current_time()
        self._drop_queue(now)
        for worker in self._workers:
            ticket = worker.current
            if ticket is not None and ticket._scope is not None:
                ticket._cancelled_at = current_time()
                ticket._scope.cancel()

    @ki_protected
    def _drop_queue(self, now: float) -> None:
        """Cancel every queued request, handed-over ones included."""
        handover = list(self._handover)
        self._handover.clear()
        for ticket in handover:
            if ticket._state is _QUEUED:
                self._resolve(
                    ticket, _CANCELLED, now, error=RequestCancelled("pool shut down")
                )
        receive = self._receive
        while True:
            try:
                ticket = receive.receive_nowait()
            except (WouldBlock, EndOfStream, ClosedResourceError):
                return
            if ticket._state is _QUEUED:
                self._resolve(
                    ticket, _CANCELLED, now, error=RequestCancelled("pool shut down")
                )

    @ki_protected
    def _abandon_all(self, now: float) -> None:
        """After the workers are gone: fail whatever is somehow still pending."""
        self._drop_queue(now)
        for worker in self._workers:
            ticket = worker.current
            if ticket is not None and not ticket.done():
                self._resolve(
                    ticket, _CANCELLED, now, error=RequestCancelled("pool shut down")
                )

    # -- submitting ---------------------------------------------------------------

    def _make_ticket(
        self, request: Req, priority: object, timeout: object, queue_timeout: object
    ) -> Ticket[Res]:
        level = priority if priority.__class__ is int else check_priority(priority)
        deadline = math.inf if timeout is None else _check_seconds(timeout, "timeout")
        queue_deadline = (
            math.inf
            if queue_timeout is None
            else _check_seconds(queue_timeout, "queue_timeout")
        )
        if not self._accepting:
            raise self._closed_error()
        now = self._clock()
        # Ticket._create without the metaclass's dispatch: this is the hot path.
        ticket: Ticket[Res] = _new_object(Ticket)
        _init_ticket(
            ticket, self, request, level, now, now + deadline, now + queue_deadline
        )
        return ticket

    @ki_protected
    async def submit(
        self,
        request: Req,
        *,
        priority: int = Priority.NORMAL,
        timeout: float | None = None,
        queue_timeout: float | None = None,
    ) -> Ticket[Res]:
        """Queue *request*; return its :class:`Ticket` without waiting for the result.

        Always a checkpoint. When the queue is full, the pool's
        :class:`Backpressure` decides: ``REJECT`` raises :exc:`QueueFull`,
        ``BLOCK`` waits for room (blocked submitters are admitted in the order
        they arrived), ``SHED`` evicts a lower-priority request or raises.

        Args:
            request: Passed to the handler as it is.
            priority: A :class:`Priority` or any ``int``; lower is served first.
            timeout: Seconds from now until the request, waiting plus running,
                fails with :exc:`RequestTimeout` (its handler cancelled).
            queue_timeout: Seconds the request may wait for a worker before it
                fails with :exc:`QueueTimeout`, without running.

        Before the pool starts (``status().state == "created"``) requests wait in
        the queue and run once it starts; a pool that never starts never serves
        them, and its :meth:`shutdown` cancels them.

        Cancellation: atomic. If ``submit`` is cancelled (while blocked for room
        or at its checkpoint), nothing was queued. On plain asyncio, a native
        ``task.cancel()`` landing in the very loop turn a blocked request moves
        into the queue raises too, and that request is cancelled.

        Raises:
            TypeError: *priority*, *timeout* or *queue_timeout* has the wrong type.
            ValueError: *timeout* or *queue_timeout* is not a finite number > 0.
            QueueFull: The queue is full and the backpressure mode does not wait.
            PoolClosed: The pool is shutting down or shut down.
        """
        ticket = self._make_ticket(request, priority, timeout, queue_timeout)
        await checkpoint()
        if not self._accepting:  # shut down while we were at the checkpoint
            raise self._closed_error()
        if self._backpressure is not _BLOCK:
            self._enqueue_nowait(ticket)
            return ticket
        try:
            self._put_nowait(ticket)
        except WouldBlock:
            await self._wait_for_room(ticket)
        return ticket

    @ki_protected
    async def _wait_for_room(self, ticket: Ticket[Res]) -> None:
        """BLOCK: wait until *ticket* moves into the full queue, or times out."""
        # Waiting for room is waiting in the queue: the timeouts bound it.
        wake_at = _wake_at(ticket)
        level = ticket._level
        try:
            if wake_at == math.inf:
                await self._send._wait_to_send(ticket, level)
            else:
                with CancelScope(deadline=wake_at) as scope:
                    await self._send._wait_to_send(ticket, level)
                if scope.cancelled_caught:
                    # Never entered the queue: it timed out waiting for room.
                    self._queued(ticket, wake_at)
                    self._expire(ticket, self._clock())
        except ClosedResourceError:
            msg = f"WorkerPool {self._name!r} shut down while the request waited"
            raise PoolClosed(msg) from None
        except BaseException:
            if ticket in self._moved_in:
                # Raised in the instant it moved in (a native asyncio cancellation):
                # its submitter never gets the ticket, so the request is abandoned.
                self._cancel_ticket(ticket)
            raise
        finally:
            self._moved_in.discard(ticket)

    @ki_protected
    def _admitted(self, ticket: Ticket[Res]) -> None:
        """A BLOCK submitter's *ticket* moved into the queue: count it in now."""
        self._moved_in.add(ticket)
        self._queued(ticket, _wake_at(ticket))

    @ki_protected
    def submit_nowait(
        self,
        request: Req,
        *,
        priority: int = Priority.NORMAL,
        timeout: float | None = None,
        queue_timeout: float | None = None,
    ) -> Ticket[Res]:
        """Queue *request* without ever waiting (see :meth:`submit`).

        A full queue raises :exc:`QueueFull` in ``BLOCK`` mode too; ``SHED`` still
        evicts.

        Raises:
            TypeError: *priority*, *timeout* or *queue_timeout* has the wrong type.
            ValueError: *timeout* or *queue_timeout* is not a finite number > 0.
            QueueFull: The queue is full.
            PoolClosed: The pool is shutting down or shut down.
        """
        ticket = self._make_ticket(request, priority, timeout, queue_timeout)
        self._enqueue_nowait(ticket)
        return ticket

    async def execute(
        self,
        request: Req,
        *,
        priority: int = Priority.NORMAL,
        timeout: float | None = None,
        queue_timeout: float | None = None,
    ) -> Res:
        """Submit *request* and return its result (see :meth:`submit`).

        Cancellation: if the caller is cancelled while waiting, the request is
        cancelled too: taken out of the queue, or its handler cancelled if it
        is running. Abandoned work does not run.

        Raises:
            The errors of :meth:`submit` and of :meth:`Ticket.result`.
        """
        ticket = await self.submit(
            request, priority=priority, timeout=timeout, queue_timeout=queue_timeout
        )
        try:
            return await ticket.result()
        except BaseException:
            ticket.cancel()
            raise

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(
            f"WorkerPool {self._name!r} is shut down; it takes no more requests"
        )

    @ki_protected
    def _put_nowait(self, ticket: Ticket[Res]) -> None:
        """Put *ticket* in the queue, or an idle worker's hands, and count it in.

        Raises:
            anyio.WouldBlock: The queue is full.
        """
        queue = self._queue
        if queue.waiting_receivers:
            # An idle worker may take it straight from our hands.
            size = queue.size
            self._send.send_nowait(ticket, ticket._level)
            if queue.size == size:
                self._handover.add(ticket)
        else:
            self._send.send_nowait(ticket, ticket._level)
        self._queued(ticket, _wake_at(ticket))

    @ki_protected
    def _enqueue_nowait(self, ticket: Ticket[Res]) -> None:
        """:meth:`_put_nowait`, and when the queue is full, REJECT or SHED."""
        try:
            self._put_nowait(ticket)
        except WouldBlock:
            level = ticket._level
            if self._backpressure is not _SHED_MODE or not self._shed_for(level):
                self._rejected += 1
                if self._observer is not None:
                    self._observer.rejected(self._name, level)
                raise QueueFull(self._max_queue_size or 0, ticket.priority) from None
            self._put_nowait(ticket)

    @ki_protected
    def _shed_for(self, level: int) -> bool:
        """Evict the newest request of the lowest level if it is below *level*."""
        lowest = self._queue.newest_of_lowest()
        if lowest is None or lowest[1] <= level:
            return False
        victim, victim_level = lowest
        self._queue.remove(victim, victim_level)
        self._resolve(
            victim,
            _SHED,
            current_time(),
            error=RequestShed(
                f"request {victim.id} was shed for a request at priority "
                f"{priority_name(level)}"
            ),
        )
        return True

    @ki_protected
    def _queued(self, ticket: Ticket[Res], wake_at: float) -> None:
        """Count *ticket* in; *wake_at* is its ``_wake_at``, when it expires."""
        self._submitted += 1
        if self._observer is not None:
            self._observer.submitted(self._name, ticket._level)
        if wake_at != math.inf:
            self._add_deadline(wake_at, ticket)

    # -- deadlines of queued requests ----------------------------------------------

    @ki_protected
    def _add_deadline(self, when: float, ticket: Ticket[Res]) -> None:
        entry = [when, ticket._seq, ticket]
        ticket._deadline_entry = entry
        heapq.heappush(self._deadlines, entry)
        scope = self._timer_scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    @ki_protected
    def _clear_deadline(self, entry: list[Any]) -> None:
        """Forget the finished ticket of *entry*, still in the heap."""
        entry[2] = None
        cleared = self._cleared_deadlines = self._cleared_deadlines + 1
        heap = self._deadlines
        if cleared > _MIN_PRUNE and 2 * cleared > len(heap):
            # Most entries are cleared: drop them, so memory follows the number
            # of requests in the pool, not the traffic.
            heap[:] = [entry for entry in heap if entry[2] is not None]
            heapq.heapify(heap)
            self._cleared_deadlines = 0

    @ki_protected
    async def _keep_time(self) -> None:
        """Fail queued requests whose ``queue_timeout`` or ``timeout`` expired."""
        heap = self._deadlines
        while True:
            now = current_time()
            while heap and heap[0][0] <= now:
                ticket = heapq.heappop(heap)[2]
                if ticket is None:
                    self._cleared_deadlines -= 1
                    continue
                ticket._deadline_entry = None
                if ticket._state is _QUEUED:
                    self._expire(ticket, now)
            with CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._timer_scope = scope
                await sleep_forever()

    @ki_protected
    def _expire(self, ticket: Ticket[Res], now: float) -> None:
        """Fail the queued *ticket*: its ``timeout`` or ``queue_timeout`` expired."""
        if not self._queue.remove(ticket, ticket._level):
            self._handover.discard(ticket)
        error: Exception
        if now >= ticket._deadline:
            error = RequestTimeout(f"request {ticket.id} timed out while queued")
        else:
            error = QueueTimeout(f"request {ticket.id} waited too long in the queue")
        self._resolve(ticket, _TIMED_OUT, now, error=error)

    # -- running ------------------------------------------------------------------

    @ki_protected
    async def _work(self, worker: _Worker) -> None:
        # A worker runs its requests inside one cancel scope of its own, which
        # carries each request's deadline and is cancelled to cut a request
        # short; only then is it replaced. One scope per request would cost more
        # than the rest of the request's way through the pool.
        try:
            while True:
                with CancelScope() as scope:
                    if not await self._serve(worker, scope):
                        return  # the queue is closed and empty
        finally:
            ticket = worker.current
            if ticket is not None:  # cancelled from outside: the pool is aborting
                self._finish_run(
                    worker, ticket, _CANCELLED, RequestCancelled("pool shut down")
                )
            self._live_workers -= 1
            if not self._live_workers:
                self._workers_done.set()

    @ki_protected
    async def _serve(self, worker: _Worker, scope: CancelScope) -> bool:
        """Run requests in *scope* until a request spends it; ``False`` at the end.

        Only the request running in it ever cancels *scope* (or moves its
        deadline), so a scope that comes back from a run uncancelled is as good as
        new.
        """
        receive = self._receive
        queue = self._queue
        streak = 0
        ticket: Ticket[Res] | None = None
        while True:
            if ticket is None:
                if streak < _STREAK and (queue.size or queue.waiting_senders):
                    # A queued request is taken without another trip through the
                    # event loop (the handler's awaits are this worker's
                    # checkpoints); a checkpoint at least every _STREAK requests
                    # keeps a handler that never awaits from hogging the loop.
                    ticket = receive.receive_nowait()
                    streak += 1
                else:
                    streak = 0
                    try:
                        ticket = await receive.receive()
                    except EndOfStream:
                        return False
                    self._handover.discard(ticket)
            if ticket._state is _QUEUED:
                now = self._clock()
                if now >= ticket._queue_deadline or now >= ticket._deadline:
                    # Expired before its timer fired: it must not start.
                    self._expire(ticket, now)
                elif await self._run_one(worker, ticket, now, scope):
                    return True  # it cut that request short: take a fresh one
            # else: cancelled or expired while handed over
            ticket = None

    @ki_unprotected
    async def _run_one(
        self, worker: _Worker, ticket: Ticket[Res], now: float, scope: CancelScope
    ) -> bool:
        """Run *ticket*'s handler in *scope*; return whether the scope is now spent.

        Not protected from Ctrl-C under Trio, so that neither is the handler.
        """
        deadline = self._start(worker, ticket, now, scope)
        try:
            awaitable: object = self._handler(ticket.request)  # type: ignore[arg-type]
            if awaitable.__class__ is not CoroutineType and not inspect.isawaitable(
                awaitable
            ):
                msg = (
                    f"handler {self._handler!r} returned {awaitable!r}, which is "
                    "not awaitable (an 'async def' handler returns a coroutine)"
                )
                raise TypeError(msg)  # noqa: TRY301
            result = await cast("Awaitable[Res]", awaitable)
        except BaseException as exc:  # noqa: BLE001 (every outcome is settled)
            if self._handler_raised(worker, ticket, exc):
                # A scope around this worker is cancelled: let the cancellation
                # surface here, fresh, for the scope that issued it to catch.
                await checkpoint()
        else:
            self._finish_run(worker, ticket, _SUCCEEDED, None, result)
        if deadline != math.inf:
            scope.deadline = math.inf
        return scope.cancel_called

    @ki_protected
    def _start(
        self, worker: _Worker, ticket: Ticket[Res], now: float, scope: CancelScope
    ) -> float:
        """Mark *ticket* running on *worker*, under *scope*; return its deadline."""
        ticket._state = _RUNNING
        ticket.started_at = now
        wait = now - ticket.submitted_at
        self._waits.append(wait)
        worker.current = ticket
        worker.busy_since = now
        self._active += 1
        observer = self._observer
        if observer is not None:
            observer.started(self._name, ticket._level, wait)
        ticket._scope = scope
        deadline = ticket._deadline
        if deadline != math.inf:
            scope.deadline = deadline
        return deadline

    @ki_protected
    def _handler_raised(
        self, worker: _Worker, ticket: Ticket[Res], exc: BaseException
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
        now = self._clock()
        in_effect = cancels is not None and current_effective_deadline() <= now
        error: BaseException
        if errors is not None:
            self._finish_run(worker, ticket, _FAILED, errors)
            if not isinstance(errors, Exception):
                raise errors
        elif not in_effect:
            _forget_native_cancels()
            error = RequestCancelled(
                f"request {ticket.id} failed: its handler raised a cancellation "
                f"that the pool did not issue ({exc!r})"
            )
            error.__cause__ = exc
            self._finish_run(worker, ticket, _FAILED, error)
        elif ticket._cancelled_at != math.inf:
            error = RequestCancelled(f"request {ticket.id} was cancelled")
            self._finish_run(worker, ticket, _CANCELLED, error)
        elif now >= ticket._deadline:
            error = RequestTimeout(f"request {ticket.id} timed out while running")
            self._finish_run(worker, ticket, _TIMED_OUT, error)
        else:
            error = RequestCancelled("pool shut down")
            self._finish_run(worker, ticket, _CANCELLED, error)
        return in_effect

    @ki_protected
    def _finish_run(
        self,
        worker: _Worker,
        ticket: Ticket[Res],
        state: TicketState,
        error: BaseException | None,
        result: Res | None = None,
    ) -> None:
        now = self._clock()
        self._active -= 1
        worker.current = None
        worker.busy_since = None
        worker.processed += 1
        if state is _FAILED or state is _TIMED_OUT:
            worker.errors += 1
            worker.consecutive_errors += 1
            worker.last_error = repr(error)
        elif state is _SUCCEEDED:
            worker.consecutive_errors = 0
        if not ticket.done():  # shutdown may have given up on it already
            self._resolve(ticket, state, now, result, error)

    @ki_protected
    def _resolve(
        self,
        ticket: Ticket[Res],
        state: TicketState,
        now: float,
        result: Res | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Put *ticket* in its final *state*, count it and report it."""
        if state is _SUCCEEDED:
            self._completed += 1
        elif state is _FAILED:
            self._failed += 1
        elif state is _CANCELLED:
            self._cancelled += 1
        elif state is _TIMED_OUT:
            self._timed_out += 1
        else:
            self._shed += 1
        entry = ticket._deadline_entry
        if entry is not None:
            ticket._deadline_entry = None
            self._clear_deadline(entry)
        started = ticket.started_at
        ticket._finish(state, now, result, error)
        if self._observer is not None:
            duration = None if started is None else now - started
            self._observer.finished(self._name, ticket._level, state, duration)

    # -- tickets ------------------------------------------------------------------

    def _position(self, ticket: Ticket[Res]) -> int:
        position = self._queue.position(ticket, ticket._level)
        # None: handed to a worker that has not started it yet, so it is next.
        return 0 if position is None else position

    @ki_protected
    def _cancel_ticket(self, ticket: Ticket[Res]) -> bool:
        state = ticket._state
        if state is _QUEUED:
            if not self._queue.remove(ticket, ticket._level):
                self._handover.discard(ticket)
            self._resolve(
                ticket,
                _CANCELLED,
                current_time(),
                error=RequestCancelled(f"request {ticket.id} was cancelled"),
            )
            return True
        if state is _RUNNING:
            ticket._cancelled_at = current_time()
            if ticket._scope is not None:
                ticket._scope.cancel()
            return True
        return False

    # -- status -------------------------------------------------------------------

    def worker_health(self) -> tuple[WorkerHealth, ...]:
        """Return a :class:`WorkerHealth` snapshot of every worker.

        Works outside the event loop too, once no worker is busy (after shutdown).
        """
        workers = self._workers
        busy = any(worker.busy_since is not None for worker in workers)
        now = current_time() if busy else 0.0
        return tuple(self._health(worker, now) for worker in workers)

    def _health(self, worker: _Worker, now: float) -> WorkerHealth:
        busy_since = worker.busy_since
        current = worker.current
        hung = busy_since is not None and now - busy_since > self._hung_after
        if current is not None:
            # Cancelled (deadline, ticket or shutdown) but still running past grace.
            cancelled_at = min(current._deadline, current._cancelled_at)
            hung = hung or now >= cancelled_at + self._cancel_grace
        return WorkerHealth(
            worker_id=worker.worker_id,
            is_healthy=not hung and worker.consecutive_errors < self._unhealthy_after,
            total_processed=worker.processed,
            total_errors=worker.errors,
            current_request=None if current is None else current.id,
            busy_since=busy_since,
            last_error=worker.last_error,
            consecutive_errors=worker.consecutive_errors,
        )

    def _queue_sizes(self) -> tuple[int, Mapping[int, int]]:
        """Queued requests, in all and by level, those handed over included.

        Safe to call from another thread (a metrics scrape).
        """
        stats = self._queue.statistics()
        handover = tuple(self._handover)
        if not handover:
            return stats.current_size, stats.size_by_priority
        by_level = dict(stats.size_by_priority)
        for ticket in handover:
            by_level[ticket._level] = by_level.get(ticket._level, 0) + 1
        ordered = {level: by_level[level] for level in sorted(by_level)}
        return stats.current_size + len(handover), MappingProxyType(ordered)

    def status(self) -> PoolStatus:
        """Return a :class:`PoolStatus` snapshot: queue, counters, waits, workers.

        Requests handed to a worker that has not started them yet count as queued.
        """
        queue_size, by_level = self._queue_sizes()
        waits = sorted(self._waits)
        if waits:
            average = 1000 * sum(waits) / len(waits)
            p50, p95, p99 = (1000 * _percentile(waits, f) for f in (0.5, 0.95, 0.99))
        else:
            average = p50 = p95 = p99 = 0.0
        return PoolStatus(
            name=self._name,
            state=self._state,
            max_workers=len(self._workers),
            active_workers=self._active,
            queue_size=queue_size,
            queue_size_by_priority=by_level,
            max_queue_size=self._max_queue_size,
            submitted=self._submitted,
            completed=self._completed,
            failed=self._failed,
            rejected=self._rejected,
            timed_out=self._timed_out,
            cancelled=self._cancelled,
            shed=self._shed,
            average_wait_time_ms=average,
            wait_time_ms_p50=p50,
            wait_time_ms_p95=p95,
            wait_time_ms_p99=p99,
            workers=self.worker_health(),
        )

    def __repr__(self) -> str:
        return (
            f"<queuekeeper.WorkerPool {self._name!r} {self._state}, "
            f"{len(self._workers)} workers>"
        )
