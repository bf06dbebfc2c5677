"""The worker pool: lifecycle and wiring of its parts.

A :class:`WorkerPool` owns a :class:`RequestQueue` and four parts, each in its own
module: :class:`Admission` (putting requests in: REJECT, BLOCK, SHED),
:class:`Deadlines` (failing queued requests when their time is up),
:class:`Workers` (the worker loop) and :class:`Accounting` (counters, waits,
health, status). The pool starts and stops them, and routes each public call to
the part that does it.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import attrs
from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    WouldBlock,
    create_task_group,
    move_on_after,
)
from anyio.lowlevel import checkpoint

from .._channel import check_max_size
from .._errors import PoolClosed, RequestCancelled
from .._memory import MemoryQueue
from .._order import aged_level, check_aging
from .._policies import check_rate_limits, check_scheduling
from .._priority import Priority, check_priority
from .._states import Backpressure, TicketState
from .._util import (
    Backend,
    describe,
    enable_ki_protection,
    ki_protected,
    process_name,
)
from ._accounting import Accounting
from ._admission import Admission
from ._checks import MAX_WORKERS, check_count, check_handler, check_name, check_seconds
from ._coalesce import Share, check_key
from ._dead import DeadLetterStream
from ._deadlines import Deadlines
from ._retry import Retries, check_retry
from ._scaling import Autoscale, Autoscaler, check_reserved
from ._ticket import Ticket
from ._workers import Workers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
    from types import TracebackType

    from anyio.abc import ObjectReceiveStream, TaskGroup, TaskStatus
    from typing_extensions import Self

    from .._observer import PoolObserver
    from .._policies import DeadLetter, RateLimit, Retry, StrictPriority, WeightedFair
    from .._queue import RequestQueue, SharedQueue
    from .._status import PoolStatus, WorkerHealth

__all__ = ["WorkerPool"]

Req = TypeVar("Req")
Res = TypeVar("Res")

_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING
#: A request not settled yet (on Redis a shared one may be running already).
_WAITING: Final = frozenset({_QUEUED, _RUNNING})
_TIMED_OUT: Final = TicketState.TIMED_OUT
_CANCELLED: Final = TicketState.CANCELLED
_BLOCK: Final = Backpressure.BLOCK
#: The states in which an in-process pool's workers are alive.
_WORKING: Final = frozenset({"running", "draining"})

_UNSET: Final[Any] = object()
_new_object: Final = object.__new__
_init_ticket: Final = Ticket.__init__


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
        queue: A queue outside the process, a
            :class:`queuekeeper.redis.RedisQueue`: the pools of every process
            that open it serve one queue (``submit`` puts requests into it, the
            workers take them from it). Its ``max_size`` is the limit
            (``max_queue_size`` must then be left out); ``workers`` may be 0, for a
            pool that only submits, whose ``handler`` may be ``None``; and
            :meth:`submit_nowait` is not available.
        reserved: ``{level: n}`` keeps *n* workers for requests at *level* or
            above (a lower or equal value): however many slow requests of lower
            levels keep the other workers busy, a request at that level starts
            as soon as one of its reserved workers is free. The counts must leave
            at least one unreserved worker. A reserved worker that is idle is
            handed such a request before an unreserved one; unreserved workers
            take requests of every level. On Redis, each process keeps its own
            reserved workers: its pool takes from the shared queue only what an
            idle worker of its own may run.
        autoscale: An :class:`Autoscale`: the pool grows from *workers* up to its
            ``max_workers`` while requests wait longer than its ``target_wait``,
            and shrinks back when workers sit idle for its ``cooldown``.
        aging: Seconds per level, or ``None`` (the default: strict priority). A
            queued request gains one level for every *aging* seconds it has
            waited (since ``submit``), never past :attr:`Priority.CRITICAL` (a
            custom level below 1 is never changed); within a level, requests are
            served in the order they were submitted, so a promoted request goes
            ahead of those submitted at that level after it.
            :attr:`Ticket.effective_priority` shows the level it competes at;
            :attr:`Ticket.priority` stays as submitted. On Redis the server ages
            requests by its own clock. A reserved worker (see *reserved*) takes
            a request by the level it has aged to, and one that ages into its
            levels while it waits.
        rate_limits: ``{level: RateLimit(rate, per=..., burst=...)}``: requests
            of that level (as submitted) start at most *rate* per *per* seconds,
            a token bucket on the backend's clock holding up to *burst* tokens.
            A request waiting for a token stays queued, holding no worker, and
            requests of other levels start meanwhile; a worker with nothing else
            to start waits for the earliest token (or a new request).
            ``position`` counts in the scheduling order as if every level had
            tokens; ``status().rate_limited`` and ``rate_limited_now`` count
            the waits. Reserved workers obey the limits too. On Redis the
            buckets are on the server, shared by every process that takes from
            the queue: the limit is global (each of those processes must be
            given the same limits).
        scheduling: :class:`StrictPriority` (the default) or
            :class:`WeightedFair`: while several levels have requests queued,
            each level's share of the requests that start converges to its
            weight's share; a level with nothing queued takes no share (the
            others divide it). ``position`` and :meth:`Ticket.positions` count
            in that order (as if nothing else arrived); a reserved worker takes,
            among the levels it serves, by the same order. Not with *aging*
            (both decide the order). On Redis the server keeps the shares,
            across every process that takes from the queue (each must be given
            the same weights).
        retry: A :class:`Retry`, or ``None`` (the default: a handler's error
            fails its request). A request whose handler raised one of its
            ``on`` exceptions, with runs left, is not settled: it waits out the
            backoff holding no worker (its state stays ``QUEUED``, its
            :attr:`~Ticket.position` is ``None``), then is queued again at its
            priority behind what is queued there, with the same ticket;
            :attr:`Ticket.attempts` counts its runs and ``status().retried``
            the retries. A re-queued request is never refused or made to wait
            for room: the queue may hold more than *max_queue_size* until
            workers take it back under (new requests find it full meanwhile).
            Its ``timeout`` covers every run and backoff (it fails with
            :exc:`RequestTimeout` if it passes during a backoff); its
            ``queue_timeout`` bounds only the wait for its first run. Never
            retried: other exceptions, cancellations (its ticket, its
            ``timeout``, shutdown), and failures once shutdown began; a
            shutdown fails the requests waiting out a backoff at once, with
            their last error. With aging, a re-queued request ages from when
            it was queued again. On Redis the retry waits on the server and
            survives the death of the process that ran the failed attempt; a
            run cut short by its worker's death counts as an attempt.
        dead_letter_size: Keep a record (a :class:`DeadLetter`) of each
            request that failed for good, its handler having raised (after its
            retries, with *retry*), for :attr:`dead_letters`; at most this many
            unread (an ``int >= 1``), the oldest dropped for a new one. ``None``
            (the default): none kept. On Redis the records of the requests this
            pool's workers failed come here, and every record also goes to the
            queue's capped list of that size, which any process reads
            (:meth:`queuekeeper.redis.RedisQueue.dead_letters`).

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).
    """

    def __init__(  # noqa: C901, PLR0912, PLR0915 (validation, one argument at a time)
        self,
        handler: Callable[[Req], Awaitable[Res]] | None,
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
        queue: SharedQueue | None = None,
        reserved: Mapping[Priority, int] | Mapping[int, int] | None = None,
        autoscale: Autoscale | None = None,
        aging: float | None = None,
        rate_limits: Mapping[Priority, RateLimit]
        | Mapping[int, RateLimit]
        | None = None,
        scheduling: StrictPriority | WeightedFair | None = None,
        retry: Retry | None = None,
        dead_letter_size: int | None = None,
    ) -> None:
        enable_ki_protection()
        check_name(name)
        if queue is not None and not callable(getattr(queue, "_link", None)):
            msg = (
                "queue must be a shared queue such as queuekeeper.redis.RedisQueue, "
                f"not {queue!r}"
            )
            raise TypeError(msg)
        if queue is not None and workers == 0 and not isinstance(workers, bool):
            # A submit-only pool: its requests run in other processes.
            if handler is not None:
                check_handler(handler)
        else:
            check_handler(handler)
            workers = check_count(workers, "workers", MAX_WORKERS)
        limits = [] if reserved is None else check_reserved(reserved, workers)
        if autoscale is not None:
            self._check_autoscale(autoscale, workers)
        if queue is not None and max_queue_size is not None:
            msg = (
                f"max_queue_size={max_queue_size!r} cannot be given with a shared "
                "queue: give the queue its max_size"
            )
            raise ValueError(msg)
        capacity = check_max_size(max_queue_size, name="max_queue_size")
        if not isinstance(cast("object", backpressure), Backpressure):
            msg = (
                "backpressure must be a queuekeeper.Backpressure, "
                f"not {backpressure!r} ({type(backpressure).__name__})"
            )
            raise TypeError(msg)
        self._drain_timeout = check_seconds(drain_timeout, "drain_timeout")
        self._cancel_grace = check_seconds(cancel_grace, "cancel_grace")
        self._name = name
        self._max_queue_size = None if capacity == math.inf else int(capacity)
        self._aging = check_aging(aging)
        self._rate_limits: dict[int, RateLimit] = check_rate_limits(rate_limits)
        self._scheduling: WeightedFair | None = check_scheduling(scheduling)
        if self._scheduling is not None and self._aging is not None:
            msg = (
                f"aging={aging!r} cannot be given with scheduling="
                f"{self._scheduling!r}: both decide the order (weighted sharing "
                "already bounds every level's wait)"
            )
            raise ValueError(msg)
        self._retry: Retry | None = check_retry(retry)
        self._dead_letter_size: int | None = (
            None
            if dead_letter_size is None
            else check_count(dead_letter_size, "dead_letter_size")
        )

        # The parts. The queue is the only way to the requests.
        self._deadlines = Deadlines()
        self._accounting = accounting = Accounting(
            name,
            workers,
            metrics,
            self._deadlines,
            hung_after=check_seconds(hung_after, "hung_after"),
            unhealthy_after=check_count(unhealthy_after, "unhealthy_after"),
            cancel_grace=self._cancel_grace,
        )
        self._link: Any = None
        if queue is None:
            self._queue: RequestQueue[Ticket[Res]] = MemoryQueue[Ticket[Res]](
                capacity,
                aging=self._aging,
                born=_submitted_at if self._retry is None else self._born,
                scheduling=self._scheduling,
                rate_limits=self._rate_limits,
            )
        else:
            self._link = self._queue = queue._link(
                pool=name,
                workers=workers,
                mode=backpressure,
                accounting=accounting,
                deadlines=self._deadlines,
                new_ticket=self._execution_ticket,
                aging=self._aging,
                rate_limits=self._rate_limits,
                scheduling=self._scheduling,
                retry=self._retry,
                dead_letter_size=self._dead_letter_size,
            )
            self._max_queue_size = self._link.max_size
        self._handler = handler
        if self._link is not None:
            self._link.serves = handler is not None
        self._reserved = len(limits)
        if limits:
            accounting.reserve(limits)
            self._queue.reserve(limits)
        self._admission = Admission[Res](
            self._queue, backpressure, self._max_queue_size, accounting, self._deadlines
        )
        if queue is None:
            self._admission.wake = cast("MemoryQueue[Any]", self._queue).wake_watchers
        # The outcome policies: retries and dead letters (opt-in).
        # On a shared queue they are the link's (see _graves).
        self._retries: Retries | None = None
        if self._retry is not None and self._link is None:
            self._retries = self._admission.retries = accounting.retries = Retries(
                self._retry,
                cast("MemoryQueue[Ticket[Any]]", self._queue),
                self._admission.handover,
                accounting.settle,
                self._deadlines,
            )
            accounting.attempts = self._retries.attempts
        self._dead_letters: DeadLetterStream[Req] | None = None
        if self._link is not None:
            self._dead_letters = self._link.graves.box
        elif self._dead_letter_size is not None:
            self._dead_letters = DeadLetterStream[Req](self._dead_letter_size)
            accounting.dead_letters = self._dead_letters
        self._workers = Workers[Req, Res](
            # None only in a pool without workers, which never calls it.
            cast("Callable[[Req], Awaitable[Res]]", handler),
            self._queue,
            self._admission,
            accounting,
        )
        # The backend's clock, checkpoint and event: anyio's until run() finds
        # the backend's own (the same, without anyio's dispatch on every call).
        backend = Backend()
        self._clock: Callable[[], float] = backend.clock
        self._checkpoint: Callable[[], Awaitable[object]] = backend.checkpoint
        self._new_event: Callable[[], Any] = backend.event

        # Lifecycle.
        self._started = False
        self._accepting = True
        self._state = "created"
        self._stopped = Event()
        self._own_task_group: TaskGroup | None = None
        # Coalescing: the request queued or running under each key in use.
        self._shares: dict[Hashable, Share] = {}
        # The task group the workers run in, once they do (for workers added).
        self._task_group: TaskGroup | None = None

        # Scaling: the fewest workers the autoscaler keeps (resize sets it).
        self._autoscale = autoscale
        self._floor = workers

        if metrics is not None:
            metrics.attach(self)

    # -- properties ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def backpressure(self) -> Backpressure:
        """The pool's :class:`Backpressure` mode."""
        return self._admission.mode

    @property
    def max_workers(self) -> int:
        """How many workers the pool runs (see :meth:`resize`)."""
        return self._accounting.count

    @property
    def autoscale(self) -> Autoscale | None:
        """The pool's :class:`Autoscale` setting, or ``None``."""
        return self._autoscale

    @property
    def max_queue_size(self) -> int | None:
        """The queue's capacity, ``None`` when unbounded."""
        return self._max_queue_size

    @property
    def retry(self) -> Retry | None:
        """The pool's :class:`Retry` setting, or ``None``.

        .. versionadded:: 0.3
        """
        return self._retry

    @property
    def dead_letters(self) -> ObjectReceiveStream[DeadLetter[Req]]:
        """The records of requests that failed for good (``dead_letter_size=``).

        An anyio receive stream of :class:`DeadLetter`: ``await
        pool.dead_letters.receive()``, or ``async for letter in
        pool.dead_letters``. A request becomes one when its handler raised and
        no retry was left (state :attr:`TicketState.FAILED`; cancelled, timed
        out and shed requests do not), shutdown's included. The pool never
        waits on it: it holds at most ``dead_letter_size`` unread records, and
        a new one then drops the oldest (counted in
        ``status().dead_letters_dropped``). Once the pool has closed and every
        record was read, ``receive()`` raises :exc:`anyio.EndOfStream` (the
        ``async for`` ends). Closing it discards the records it holds and any
        made later (counted as dropped). The same stream every time.

        On Redis it holds the requests this pool's workers failed (whichever
        process submitted them), with the exception itself, and the request's
        id on the queue as ``ticket_id``; every process reads all of them from
        the queue's list (see :meth:`queuekeeper.redis.RedisQueue.dead_letters`).

        Cancellation: a cancelled ``receive()`` takes no record.

        Raises:
            RuntimeError: The pool keeps no dead letters (no ``dead_letter_size``).

        .. versionadded:: 0.3
        """
        if self._dead_letters is None:
            msg = (
                f"WorkerPool {self._name!r} keeps no dead letters: "
                "pass dead_letter_size=n to keep the last n"
            )
            raise RuntimeError(msg)
        return self._dead_letters

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
        backend = Backend()
        backend.bind()
        clock = self._clock = backend.clock
        self._accounting.rates.append((clock(), 0))
        self._checkpoint = backend.checkpoint
        self._new_event = backend.event
        self._accounting.clock = self._admission.clock = self._workers.clock = clock
        workers = self._workers
        link = self._link
        try:
            async with create_task_group() as task_group:
                if link is not None:
                    task_group.start_soon(link.serve, clock, name=f"{self._name}-link")
                    task_group.start_soon(self._end_link)
                self._task_group = task_group
                for record in self._accounting.workers:
                    task_group.start_soon(
                        workers.work,
                        record,
                        name=f"{self._name}-worker-{record.worker_id}",
                    )
                    workers.live += 1
                if self._autoscale is not None:
                    task_group.start_soon(
                        self._autoscaler(self._autoscale).run,
                        name=f"{self._name}-autoscaler",
                    )
                task_group.start_soon(
                    self._deadlines.keep,
                    self._expire,
                    clock,
                    name=f"{self._name}-timekeeper",
                )
                self._state = "running"
                task_status.started()
                await workers.all_done.wait()
                task_group.cancel_scope.cancel()
        finally:
            self._close_intake()
            self._abandon_all()
            self._state = "closed"
            self._stopped.set()
            self._end_dead_letters()

    def _end_dead_letters(self) -> None:
        """The pool closed: the dead-letter stream ends once read."""
        if self._dead_letters is not None:
            self._dead_letters.end()

    def _born(self, ticket: Ticket[Any]) -> float:
        """When *ticket* entered the queue last: its arrival time for aging.

        A pool with retries' (see :meth:`Retries.born`); the others' is
        :func:`_submitted_at`.
        """
        return cast("Retries", self._retries).born(ticket)

    async def _end_link(self) -> None:
        """Redis: once nothing submitted here is pending after shutdown, stop."""
        link = self._link
        await link.ended.wait()
        link.stop_feeding()
        if not self._workers.live:
            self._workers.all_done.set()

    def _execution_ticket(
        self,
        request: object,
        level: int,
        submitted_at: float,
        deadline: float,
        queue_deadline: float,
    ) -> Ticket[Res]:
        """A ticket for a request taken from a shared queue, to run here."""
        ticket: Ticket[Res] = Ticket._create(
            self, request, level, submitted_at, deadline, queue_deadline
        )
        return ticket

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
            # Not reached by a cancellation, which the exit above raises itself
            # (on both backends); kept for an error that it lets through.
            raise  # pragma: no cover
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
                # As in __aenter__: the exit raises a cancellation itself.
                raise  # pragma: no cover
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
            else check_seconds(timeout, "timeout")
        )
        self._close_intake()
        if not self._started and self._link is not None:
            # Never ran: what it submitted is served elsewhere; nothing to wait on.
            self._started = True
            self._link.abort(self._clock())
            self._state = "closed"
            self._stopped.set()
            self._end_dead_letters()
            await checkpoint()
            return
        if not self._started:
            # Never ran: nothing is running, and nothing will serve the queue.
            self._started = True
            self._abandon_all()
            self._state = "closed"
            self._stopped.set()
            self._end_dead_letters()
            await checkpoint()
            return
        all_done = self._workers.all_done
        if drain and not all_done.is_set():
            try:
                with move_on_after(limit):
                    await all_done.wait()
            except BaseException:
                self._abort()
                raise
        self._abort()
        with move_on_after(self._cancel_grace):
            await self._stopped.wait()
        if not self._stopped.is_set():
            # A handler ignores its cancellation: stop waiting for it.
            self._state = "closed"
            now = self._clock()
            accounting = self._accounting
            for record in accounting.workers:
                ticket = record.current
                if ticket is not None and not ticket.done():
                    error = RequestCancelled(
                        f"request {ticket.id} was cancelled; its handler ignores it"
                    )
                    accounting.settle(ticket, _CANCELLED, now, error=error)

    @ki_protected
    def _close_intake(self) -> None:
        """Stop taking requests; workers end once the queue is empty."""
        self._accepting = False
        # Workers still to retire serve on to the end (and none retires later:
        # resize() now raises).
        self._workers.set_excess(0)
        if self._state == "running":
            self._state = "draining"
        self._queue.close()
        if self._retries is not None:
            self._retries.close(self._clock())

    @ki_protected
    def _abort(self) -> None:
        """Cancel everything queued or running (the pool keeps no pending ticket)."""
        self._close_intake()
        if self._link is not None:
            self._link.abort(self._clock())
        self._drop_queue()
        now = self._clock()
        for record in self._accounting.workers:
            ticket = record.current
            if ticket is not None and ticket._scope is not None:
                ticket._cancelled_at = now
                ticket._scope.cancel()

    @ki_protected
    def _drop_queue(self) -> None:
        """Cancel every queued request, handed-over ones included."""
        now = self._clock()
        settle = self._accounting.settle
        for ticket in self._admission.drain():
            # Only queued tickets are in the queue or a worker's hands (settling
            # one withdraws it): the test keeps a slip elsewhere from settling a
            # ticket twice.
            if ticket._state is _QUEUED:  # pragma: no branch
                settle(
                    ticket, _CANCELLED, now, error=RequestCancelled("pool shut down")
                )

    @ki_protected
    def _abandon_all(self) -> None:
        """After the workers are gone: fail whatever is somehow still pending."""
        self._drop_queue()
        now = self._clock()
        for record in self._accounting.workers:
            ticket = record.current
            # Workers settle their current ticket as they end: a safety net, so
            # that a slip elsewhere never leaves an awaiter waiting forever.
            if ticket is not None and not ticket.done():  # pragma: no cover
                self._accounting.settle(
                    ticket, _CANCELLED, now, error=RequestCancelled("pool shut down")
                )

    # -- scaling ------------------------------------------------------------------

    def _check_autoscale(self, autoscale: object, workers: int) -> None:
        if not isinstance(autoscale, Autoscale):
            msg = (
                "autoscale must be None or a queuekeeper.Autoscale, "
                f"not {autoscale!r} ({type(autoscale).__name__})"
            )
            raise TypeError(msg)
        if workers < 1:
            msg = "autoscale needs a pool with workers >= 1, not workers=0"
            raise ValueError(msg)
        if autoscale.max_workers < workers:
            msg = (
                f"autoscale max_workers={autoscale.max_workers} must be at least "
                f"the pool's workers={workers}"
            )
            raise ValueError(msg)

    @ki_protected
    def resize(self, workers: int) -> None:
        """Run *workers* workers from now on.

        Growing starts the new workers at once (in the pool's task group).
        Shrinking retires workers as they finish their current request: idle ones
        at once, busy ones when their request ends; none is cancelled, and until
        they retire they still appear in :meth:`worker_health` (``max_workers``
        is the new count at once). Reserved workers never retire: *workers*
        counts them, and must leave at least one unreserved worker. With
        ``autoscale``, *workers* becomes the fewest the autoscaler keeps, at most
        its ``max_workers``; the autoscaler grows from there again.

        Before the pool starts it sets how many workers it will start with. A
        pool on a shared queue (Redis) may be resized to 0 (it then only
        submits) and back, if it has a handler; its link takes from the queue
        only as many requests as it has workers.

        Must be called from the pool's event loop thread.

        Raises:
            TypeError: *workers* is not an int, or the pool has no handler.
            ValueError: *workers* is out of range (the message says why).
            PoolClosed: The pool is shutting down or shut down.
        """
        minimum = 0 if self._link is not None else 1
        if isinstance(workers, bool) or not isinstance(workers, int):
            msg = (
                f"workers must be an int >= {minimum}, "
                f"not {describe(workers)} ({type(workers).__name__})"
            )
            raise TypeError(msg)
        if not minimum <= workers <= MAX_WORKERS:
            msg = (
                f"workers must be an int from {minimum} to {MAX_WORKERS:,}, "
                f"not {describe(workers)}"
            )
            raise ValueError(msg)
        if self._handler is None:
            msg = f"WorkerPool {self._name!r} has no handler: it cannot run workers"
            raise TypeError(msg)
        if self._reserved and workers <= self._reserved:
            msg = (
                f"workers={workers} must be more than the pool's {self._reserved} "
                "reserved workers: at least one worker must stay unreserved"
            )
            raise ValueError(msg)
        autoscale = self._autoscale
        if autoscale is not None:
            if workers > autoscale.max_workers:
                msg = (
                    f"workers={workers} must be at most the pool's autoscale "
                    f"max_workers={autoscale.max_workers}"
                )
                raise ValueError(msg)
            self._floor = workers
        if not self._accepting:
            msg = f"WorkerPool {self._name!r} is shut down; it cannot be resized"
            raise PoolClosed(msg)
        self._set_size(workers)

    @ki_protected
    def _set_size(self, count: int) -> None:
        """Grow or shrink to *count* workers (see :meth:`resize`)."""
        accounting = self._accounting
        workers = self._workers
        change = count - accounting.count
        if not change:
            return
        accounting.count = count
        if self._link is not None:
            self._link.resize(count)
        task_group = self._task_group
        if task_group is None:  # not started: start with that many
            if change > 0:
                accounting.add(change)
            else:  # the last records are unreserved ones
                accounting.workers = accounting.workers[:change]
            return
        if change < 0:
            workers.set_excess(workers.excess - change)
            self._queue.retire_waiting(-change)
            return
        # Workers still to retire stay instead; the rest are new.
        stay = min(workers.excess, change)
        workers.set_excess(workers.excess - stay)
        for record in accounting.add(change - stay):
            task_group.start_soon(
                workers.work, record, name=f"{self._name}-worker-{record.worker_id}"
            )
            workers.live += 1

    def _autoscaler(self, settings: Autoscale) -> Autoscaler:
        accounting = self._accounting
        link = self._link

        def idle() -> list[object]:
            return [
                record
                for record in accounting.workers
                if record.current is None and record.limit is None
            ]

        def queued(now: float) -> tuple[int, float | None]:
            if link is not None:
                return self._queue.sizes()[0], None
            firsts = cast("MemoryQueue[Ticket[Res]]", self._queue).firsts()
            oldest = min((t.submitted_at for t in firsts), default=None)
            handed = len(self._admission.handover)
            waited = None if oldest is None else now - oldest
            return self._queue.sizes()[0] + handed, waited

        def recent(count: int) -> float | None:
            waits = list(accounting.waits)[-count:]
            return sum(waits) / len(waits) if waits else None

        return Autoscaler(
            settings,
            size=lambda: accounting.count,
            floor=lambda: self._floor,
            idle=idle,
            queued=queued,
            recent=recent,
            resize=self._set_size,
            stopped=lambda: not self._accepting,
            clock=self._clock,
        )

    # -- submitting ---------------------------------------------------------------

    def _make_ticket(
        self, request: Req, priority: int, timeout: object, queue_timeout: object
    ) -> Ticket[Res]:
        cls = priority.__class__
        level = priority if cls is int or cls is Priority else check_priority(priority)
        deadline = math.inf if timeout is None else check_seconds(timeout, "timeout")
        queue_deadline = (
            math.inf
            if queue_timeout is None
            else check_seconds(queue_timeout, "queue_timeout")
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
        key: Hashable | None = None,
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
            key: Coalesce: while a request submitted with an equal (hashable)
                key is queued or running, return a new ticket that shares its
                outcome instead of queuing *request* (which is then unused); a
                higher *priority* promotes that request, if still queued, to
                the end of the new level. Such a submit takes no room (it is
                never refused for a full queue) and counts in
                ``status().coalesced``, not in ``submitted``. Each sharing
                ticket has its own id, *timeout* and *queue_timeout*: when one
                passes, or the ticket is cancelled, that ticket alone fails; the
                request is cancelled (removed, or its handler cancelled) only
                when no ticket shares it any more. ``None`` (the default): no
                coalescing. On Redis, across processes: keys are compared as the
                queue's serializer writes them.

        Before the pool starts (``status().state == "created"``) requests wait in
        the queue and run once it starts; a pool that never starts never serves
        them, and its :meth:`shutdown` cancels them.

        Cancellation: atomic. If ``submit`` is cancelled (while blocked for room
        or at its checkpoint), nothing was queued. On plain asyncio, a native
        ``task.cancel()`` landing in the very loop turn a blocked request moves
        into the queue raises too, and that request is cancelled.

        Raises:
            TypeError: *priority*, *timeout* or *queue_timeout* has the wrong type,
                or *key* is not hashable (on Redis: cannot be serialized).
            ValueError: *timeout* or *queue_timeout* is not a finite number > 0.
            QueueFull: The queue is full and the backpressure mode does not wait.
            PoolClosed: The pool is shutting down or shut down.

        .. versionchanged:: 0.2
           The *key* argument.
        """
        if key is not None:
            return await self._submit_keyed(
                request, priority, timeout, queue_timeout, key
            )
        ticket = self._make_ticket(request, priority, timeout, queue_timeout)
        await self._checkpoint()
        if not self._accepting:  # shut down while we were at the checkpoint
            raise self._closed_error()
        if self._link is not None:
            await self._link.submit(ticket)
            return ticket
        admission = self._admission
        try:
            admission.put_nowait(ticket)
        except WouldBlock:
            if admission.mode is _BLOCK:
                await admission.enqueue(ticket, self._name)
            else:
                admission.refuse_or_shed(ticket)
        return ticket

    @ki_protected
    def submit_nowait(
        self,
        request: Req,
        *,
        priority: int = Priority.NORMAL,
        timeout: float | None = None,
        queue_timeout: float | None = None,
        key: Hashable | None = None,
    ) -> Ticket[Res]:
        """Queue *request* without ever waiting (see :meth:`submit`).

        A full queue raises :exc:`QueueFull` in ``BLOCK`` mode too; ``SHED`` still
        evicts. *key* coalesces as in :meth:`submit`.

        Raises:
            TypeError: *priority*, *timeout* or *queue_timeout* has the wrong type,
                or *key* is not hashable.
            ValueError: *timeout* or *queue_timeout* is not a finite number > 0.
            QueueFull: The queue is full.
            PoolClosed: The pool is shutting down or shut down.
            TypeError: The pool's queue is on Redis: use :meth:`submit`.

        .. versionchanged:: 0.2
           The *key* argument.
        """
        if self._link is not None:
            msg = (
                f"WorkerPool {self._name!r} queues on Redis, which takes a round "
                "trip: use 'await pool.submit(...)', not submit_nowait()"
            )
            raise TypeError(msg)
        if key is not None:
            return self._submit_keyed_nowait(
                request, priority, timeout, queue_timeout, key
            )
        ticket = self._make_ticket(request, priority, timeout, queue_timeout)
        admission = self._admission
        try:
            admission.put_nowait(ticket)
        except WouldBlock:
            admission.refuse_or_shed(ticket)
        return ticket

    async def execute(
        self,
        request: Req,
        *,
        priority: int = Priority.NORMAL,
        timeout: float | None = None,
        queue_timeout: float | None = None,
        key: Hashable | None = None,
    ) -> Res:
        """Submit *request* and return its result (see :meth:`submit`).

        Cancellation: if the caller is cancelled while waiting, the request is
        cancelled too: taken out of the queue, or its handler cancelled if it
        is running. Abandoned work does not run. (With a *key*, only the
        caller's ticket is cancelled while other tickets share the request.)

        Raises:
            TypeError: *priority*, *timeout* or *queue_timeout* has the wrong type.
            ValueError: *timeout* or *queue_timeout* is not a finite number > 0.
            QueueFull: The queue is full and the backpressure mode does not wait.
            PoolClosed: The pool is shutting down or shut down.
            QueueTimeout: The request waited longer than its *queue_timeout*.
            RequestTimeout: The request exceeded its *timeout*.
            RequestCancelled: The request was cancelled (its ticket, or shutdown).
            RequestShed: The request was evicted for a higher-priority one.
            Exception: Whatever the handler raised, unchanged.

        .. versionchanged:: 0.2
           The *key* argument.
        """
        ticket = await self.submit(
            request,
            priority=priority,
            timeout=timeout,
            queue_timeout=queue_timeout,
            key=key,
        )
        try:
            return await ticket.result()
        except BaseException:
            ticket.cancel()
            raise

    # -- coalescing (see _coalesce) ------------------------------------------------

    def _join(self, ticket: Ticket[Res], key: Hashable) -> Share | None:
        """Make *ticket* a sharer if a request of *key* is queued or running."""
        share = self._shares.get(key)
        if share is not None:
            share.attach(ticket)
            work = share.work
            if ticket._level < work._level and work._state is _QUEUED:
                self._promote(work, ticket._level)
            self._accounting.shared(ticket._level)
            share.arm(ticket)
        return share

    def _new_share(self, ticket: Ticket[Res], key: Hashable) -> Share:
        """Make the work of a new key's request, with *ticket* its first sharer.

        Until it is in the queue, the work keeps *ticket*'s deadlines (they
        bound a ``BLOCK`` wait for room); :meth:`_opened` then hands them to
        *ticket*.
        """
        work: Ticket[Res] = Ticket._create(
            self,
            ticket.request,
            ticket._level,
            ticket.submitted_at,
            ticket._deadline,
            ticket._queue_deadline,
        )
        # The work goes by its first sharer's id (errors, worker health).
        work._seq = ticket._seq
        share = Share(self, key, work)
        share.attach(ticket)
        return share

    def _opened(self, share: Share) -> None:
        """The work of *share* entered the queue: take sharers under its key."""
        work, ticket = share.work, share.sharers[0] if share.sharers else None
        if ticket is None:  # settled already (it timed out waiting for room)
            return
        if work._state in _WAITING and (
            work._deadline != math.inf or work._queue_deadline != math.inf
        ):
            # The sharer's deadlines are its own from now on: its entry in the
            # deadline heap is the work's (the same times, and the same sequence
            # number, so the two must never both be there).
            work._deadline = work._queue_deadline = math.inf
            entry = work._deadline_entry
            work._deadline_entry = None
            if entry is not None:  # pragma: no branch (put in, it got one)
                entry[2] = ticket
                ticket._deadline_entry = entry
        share.open()

    async def _submit_keyed(
        self,
        request: Req,
        priority: int,
        timeout: object,
        queue_timeout: object,
        key: Hashable,
    ) -> Ticket[Res]:
        """:meth:`submit` with a *key*."""
        check_key(key)
        link = self._link
        # On Redis the server compares keys by their serialized form.
        shared_key = None if link is None else link.encode_key(key)
        ticket = self._make_ticket(request, priority, timeout, queue_timeout)
        await self._checkpoint()
        if not self._accepting:
            raise self._closed_error()
        share = self._join(ticket, key)
        if share is not None:
            return ticket
        share = self._new_share(ticket, key)
        work = share.work
        if link is not None:
            await link.submit(work, shared_key)
            self._opened(share)
            return ticket
        admission = self._admission
        try:
            admission.put_nowait(work)
        except WouldBlock:
            if admission.mode is _BLOCK:
                await admission.enqueue(work, self._name)
            else:
                admission.refuse_or_shed(work)
        self._opened(share)
        return ticket

    def _submit_keyed_nowait(
        self,
        request: Req,
        priority: int,
        timeout: object,
        queue_timeout: object,
        key: Hashable,
    ) -> Ticket[Res]:
        """:meth:`submit_nowait` with a *key*."""
        check_key(key)
        ticket = self._make_ticket(request, priority, timeout, queue_timeout)
        share = self._join(ticket, key)
        if share is not None:
            return ticket
        share = self._new_share(ticket, key)
        admission = self._admission
        try:
            admission.put_nowait(share.work)
        except WouldBlock:
            admission.refuse_or_shed(share.work)
        self._opened(share)
        return ticket

    @ki_protected
    def _promote(self, work: Ticket[Res], level: int) -> None:
        """Move the queued *work* to *level*, behind the requests waiting there."""
        if self._link is not None:
            self._link.promote(work, level)
            work._level = level
            return
        queue = cast("MemoryQueue[Ticket[Res]]", self._queue)
        if queue.move(work, work._level, level):
            work._level = level
        # else: handed to a worker that has not started it yet: it is next

    @ki_protected
    def _expire(self, ticket: Ticket[Res], now: float) -> None:
        """A deadline of the queued *ticket* passed (the timekeeper's call)."""
        owner = ticket._owner
        if owner is not self:
            cast("Share", owner).expire(ticket, now)
        elif self._link is None:
            retries = self._retries
            if retries is None or not retries.due(ticket, now):
                self._admission.expire(ticket, now)
        else:
            self._link.expire(ticket, now)

    @ki_protected
    def _end_work(
        self, work: Ticket[Res], state: TicketState, now: float, error: BaseException
    ) -> None:
        """No sharer of *work* remains: cancel it, or let it time out (*state*).

        On Redis it is cancelled either way (other processes may wait for it:
        the server decides).
        """
        if state is not _TIMED_OUT or self._link is not None:
            self._cancel_ticket(work)
        elif work._state is _QUEUED:
            self._admission.withdraw(work)
            self._accounting.settle(work, _TIMED_OUT, now, error=error)
        else:  # running (a work with a sharer left has not settled)
            # Its handler is cut short as by its own timeout.
            work._deadline = now
            if work._scope is not None:  # pragma: no branch
                work._scope.deadline = now

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(
            f"WorkerPool {self._name!r} is shut down; it takes no more requests"
        )

    # -- tickets (the TicketOwner protocol) ----------------------------------------

    def _position(self, ticket: Ticket[Res]) -> int | None:
        if self._link is not None:
            return self._link.position(ticket)  # type: ignore[no-any-return]
        if self._retries is not None and self._retries.backing_off(ticket):
            return None  # waiting out a retry's backoff: in no queue
        position = self._queue.position(ticket, ticket._level)
        # None: handed to a worker that has not started it yet, so it is next.
        return 0 if position is None else position

    async def _fetch_position(self, ticket: Ticket[Res]) -> int | None:
        if self._link is not None:
            return await self._link.fetch_position(ticket)  # type: ignore[no-any-return]
        await self._checkpoint()
        return ticket.position

    def _effective_level(self, ticket: Ticket[Res]) -> int:
        level = ticket._level
        aging = self._aging
        if aging is None:
            return level
        if ticket._state is _QUEUED and self._link is None:
            current = self._queue.effective(ticket, level)  # type: ignore[attr-defined]
            if current is not None:
                return current  # type: ignore[no-any-return]
        # Left the queue (or handed to a worker, or on Redis): the level it had
        # then, by the ticket's own clock.
        end = ticket.started_at
        if end is None:
            end = ticket.finished_at
        if end is None:
            end = self._clock()
        return aged_level(level, end - ticket.submitted_at, aging)

    async def _positions(self, ticket: Ticket[Res]) -> AsyncIterator[int]:
        if self._link is not None:
            async for position in self._link.watch(ticket):
                yield position
            return
        queue = cast("MemoryQueue[Ticket[Res]]", self._queue)
        admission = self._admission
        level = ticket._level
        queue.watch(level)
        admission.watchers += 1
        try:
            last = None
            retries = self._retries
            while ticket._state is _QUEUED:
                if retries is not None and retries.backing_off(ticket):
                    return  # it left the queue (it ran), and is in none now
                if ticket._level != level:
                    # Promoted (coalescing): watch its new level instead.
                    queue.watch(ticket._level)
                    queue.unwatch(level)
                    level = ticket._level
                position, when, event = queue.rank(ticket, level)
                if position is None:
                    position = 0  # handed to a worker that has not started it
                if position != last:
                    last = position
                    yield position
                    continue  # the queue may have changed meanwhile: look again
                with CancelScope(deadline=when):
                    await event.wait()
        finally:
            admission.watchers -= 1
            queue.unwatch(level)

    def _eta(self, ticket: Ticket[Res]) -> float | None:
        if self._link is not None:
            return self._link.eta(ticket)  # type: ignore[no-any-return]
        position = ticket.position
        if position is None:
            return None
        rate = self._accounting.service_rate()
        if rate is None:
            return None
        return (position + 1) / rate

    def _attempts(self, ticket: Ticket[Res]) -> int:
        if self._link is not None:
            return self._deliveries(ticket)
        return self._accounting.attempts(ticket)

    def _deliveries(self, ticket: Ticket[Res]) -> int:
        if self._link is not None:
            return self._link.deliveries(ticket)  # type: ignore[no-any-return]
        return 0 if ticket.started_at is None else 1

    def _live_state(self, ticket: Ticket[Res]) -> TicketState:
        return ticket._state

    @ki_protected
    def _cancel_ticket(self, ticket: Ticket[Res]) -> bool:
        link = self._link
        if link is not None and ticket in link.pending_ids:
            return link.cancel(ticket)  # type: ignore[no-any-return]
        state = ticket._state
        if state is _QUEUED:
            self._admission.withdraw(ticket)
            self._accounting.settle(
                ticket,
                _CANCELLED,
                self._clock(),
                error=RequestCancelled(f"request {ticket.id} was cancelled"),
            )
            return True
        if state is _RUNNING:
            ticket._cancelled_at = self._clock()
            # A running ticket has its scope: Workers._start sets both at once.
            if ticket._scope is not None:  # pragma: no branch
                ticket._scope.cancel()
            return True
        return False

    # -- status -------------------------------------------------------------------

    def worker_health(self) -> tuple[WorkerHealth, ...]:
        """Return a :class:`WorkerHealth` snapshot of every worker.

        Works outside the event loop too, once no worker is busy (after shutdown),
        and from another thread.
        """
        return self._accounting.worker_health()

    def status(self) -> PoolStatus:
        """Return a :class:`PoolStatus` snapshot: queue, counters, waits, workers.

        Requests handed to a worker that has not started them yet count as queued.
        Safe to call from another thread (a metrics scrape).
        """
        queue_size, by_level = self._queue.sizes()
        handed, handed_by_level = self._admission.sizes()
        if handed_by_level is not None:
            merged = dict(by_level)
            for level, count in handed_by_level.items():
                merged[level] = merged.get(level, 0) + count
            by_level = _ordered(merged)
            queue_size += handed
        accounting, state = self._accounting, self._state
        own = process_name()
        if self._link is None:
            in_flight = accounting.active
            alive = self._workers.live if state in _WORKING else 0
            workers_alive: Mapping[str, int] = MappingProxyType({own: alive})
        else:
            in_flight, processes = self._link.spread()
            workers_alive = MappingProxyType({own: 0, **processes})
        status = accounting.status(
            state,
            queue_size,
            by_level,
            self._max_queue_size,
            in_flight,
            workers_alive,
        )
        if self._rate_limits and self._link is None:
            waited, waiting = cast("MemoryQueue[Any]", self._queue).rate_limited()
            status = attrs.evolve(
                status,
                rate_limited=sum(waited.values()),
                rate_limited_now=sum(waiting.values()),
                rate_limited_by_priority=MappingProxyType(waited),
                rate_limited_now_by_priority=MappingProxyType(waiting),
            )
        if self._link is not None:
            status = attrs.evolve(status, **self._link.graves.counts())
            if self._link.limited:
                return _with_limits(status, self._link.limited)
        return status

    def __repr__(self) -> str:
        return (
            f"<queuekeeper.WorkerPool {self._name!r} {self._state}, "
            f"{self.max_workers} workers>"
        )


def _submitted_at(ticket: Ticket[Any]) -> float:
    """When *ticket*'s request was submitted: its arrival time for aging."""
    return ticket.submitted_at


def _ordered(by_level: dict[int, int]) -> MappingProxyType[int, int]:
    """*by_level*, read-only, its levels in the order they are served."""
    return MappingProxyType({level: by_level[level] for level in sorted(by_level)})


def _with_limits(
    status: PoolStatus, limited: Mapping[int, tuple[int, int]]
) -> PoolStatus:
    """*status* with the rate-limit figures of a shared queue's server."""
    waited = {level: limited[level][0] for level in sorted(limited)}
    waiting = {level: limited[level][1] for level in sorted(limited)}
    return attrs.evolve(
        status,
        rate_limited=sum(waited.values()),
        rate_limited_now=sum(waiting.values()),
        rate_limited_by_priority=MappingProxyType(waited),
        rate_limited_now_by_priority=MappingProxyType(waiting),
    )
