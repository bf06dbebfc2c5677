"""WorkerPool under random trouble, memory over a long run, and handlers that misbehave.

The randomized scenarios mix handler failures, hangs cut by ``timeout``, queue
timeouts, ``Ticket.cancel()`` on queued and running requests, cancelled ``execute``
callers and every backpressure mode on small queues, on the backend's real clock.
They assert invariants only: what must hold whatever the interleaving was.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import random
import sys
import tracemalloc
from collections import Counter
from typing import Any, NamedTuple

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry

from helpers import (
    FINAL,
    LEVELS,
    Boom,
    CountingObserver,
    metric_total,
    pool_task_names,
    settled,
    stray_cancellation,
    worker_names,
)
from queuekeeper import (
    Backpressure,
    PoolClosed,
    Priority,
    PrometheusMetrics,
    QueueFull,
    QueueKeeperError,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    Ticket,
    TicketState,
    WorkerPool,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

pytestmark = pytest.mark.anyio


class Fatal(BaseException):
    """A BaseException that is neither a cancellation nor KeyboardInterrupt."""


class Request(NamedTuple):
    """A request of the randomized scenarios."""

    n: int
    behaviour: str  # "ok", "fail" or "hang"
    seconds: float


def request_of(ticket: Ticket[int]) -> Request:
    """The :class:`Request` a ticket of these scenarios carries."""
    request = ticket.request
    assert isinstance(request, Request)
    return request


class Observer(CountingObserver):
    """A pool observer counting every event, and passing it on to Prometheus."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = CollectorRegistry()
        self.prometheus = PrometheusMetrics(self.registry)

    def attach(self, pool: Any) -> None:
        """Let the Prometheus metrics read the pool's gauges."""
        self.prometheus.attach(pool)

    def submitted(self, pool: str, priority: int) -> None:
        """Count a request that entered the queue."""
        super().submitted(pool, priority)
        self.prometheus.submitted(pool, priority)

    def rejected(self, pool: str, priority: int) -> None:
        """Count a QueueFull."""
        super().rejected(pool, priority)
        self.prometheus.rejected(pool, priority)

    def started(self, pool: str, priority: int, wait: float) -> None:
        """Count a start."""
        super().started(pool, priority, wait)
        self.prometheus.started(pool, priority, wait)

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        """Count a final state."""
        super().finished(pool, priority, outcome, duration)
        self.prometheus.finished(pool, priority, outcome, duration)

    def sample(self, name: str, **labels: str) -> float:
        """The sum of the Prometheus samples *name* with *labels*."""
        return metric_total(self.registry, name, **labels)


# -- randomized scenarios -----------------------------------------------------------


class Chaos:
    """One randomized run: a small pool, producers making trouble, what they saw."""

    def __init__(self, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        self.mode = rng.choice(list(Backpressure))
        self.workers = rng.randint(1, 3)
        self.max_queue_size = rng.randint(1, 4)
        self.observer = Observer()
        self.pool: WorkerPool[Request, int] = WorkerPool(
            self.handler,
            workers=self.workers,
            max_queue_size=self.max_queue_size,
            backpressure=self.mode,
            name=f"chaos{seed}",
            metrics=self.observer,
        )
        # execute() submits through pool.submit: record its tickets too.
        self._submit = self.pool.submit
        self.pool.submit = self.recording_submit  # type: ignore[method-assign]
        self.numbers = itertools.count()
        self.tickets: dict[int, Ticket[int]] = {}
        self.started: set[int] = set()
        self.raised: dict[int, Boom] = {}
        self.executed: dict[int, object] = {}
        # Requests whose handler must never run: ticket.cancel() while queued, or
        # an execute() caller cancelled before its request started.
        self.cancelled_queued: set[int] = set()
        self.abandoned_queued: set[int] = set()
        self.rejected = 0
        self.rejected_while_blocking = 0
        self.task_group: anyio.abc.TaskGroup | None = None
        # Handlers running now; requests started after shutdown(drain=False) began.
        self.running: set[int] = set()
        self.aborting = False
        self.started_while_aborting: list[int] = []
        self.shutdowns = 0
        self.samples = 0

    # -- the pool's side ------------------------------------------------------------

    async def handler(self, request: Request) -> int:
        self.started.add(request.n)
        if self.aborting:
            self.started_while_aborting.append(request.n)
        self.running.add(request.n)
        try:
            if request.behaviour == "hang":
                await anyio.sleep_forever()
            await anyio.sleep(request.seconds)
            if request.behaviour == "fail":
                error = self.raised[request.n] = Boom(request.n)
                raise error
            return request.n
        finally:
            self.running.discard(request.n)

    async def recording_submit(self, request: Request, **options: Any) -> Ticket[int]:
        ticket = await self._submit(request, **options)
        self.tickets[request.n] = ticket
        return ticket

    def submit_nowait(self, request: Request, **options: Any) -> Ticket[int]:
        ticket = self.pool.submit_nowait(request, **options)
        self.tickets[request.n] = ticket
        return ticket

    # -- trouble --------------------------------------------------------------------

    def new_request(self, rng: random.Random) -> tuple[Request, dict[str, Any]]:
        roll = rng.random()
        behaviour = "ok" if roll < 0.6 else "fail" if roll < 0.8 else "hang"
        seconds = rng.choice([0.0, 0.0, rng.uniform(0.001, 0.01)])
        request = Request(next(self.numbers), behaviour, seconds)
        options: dict[str, Any] = {"priority": rng.choice(LEVELS)}
        if behaviour == "hang" or rng.random() < 0.2:
            options["timeout"] = rng.uniform(0.005, 0.02)
        if rng.random() < 0.25:
            options["queue_timeout"] = rng.uniform(0.005, 0.02)
        return request, options

    def burst(self) -> None:
        """Overflow the queue with no checkpoint in between: the outcome is certain."""
        filled: list[Ticket[int]] = []
        for _ in range(self.workers + self.max_queue_size + 1):
            request = Request(next(self.numbers), "ok", 0.0)
            try:
                filled.append(self.submit_nowait(request, priority=Priority.LOW))
            except QueueFull:
                self.rejected += 1
                break
        else:
            pytest.fail("a burst larger than workers + queue never hit QueueFull")
        if self.mode is Backpressure.SHED:
            newest = filled[-1]
            request = Request(next(self.numbers), "ok", 0.0)
            filled.append(self.submit_nowait(request, priority=0))
            assert TicketState.SHED is newest.state
        queued = next(t for t in reversed(filled) if t.state is TicketState.QUEUED)
        self.cancel(queued)

    def cancel(self, ticket: Ticket[int]) -> None:
        was_done = ticket.done()
        was_queued = ticket.state is TicketState.QUEUED
        before = ticket.state
        assert (not was_done) == ticket.cancel()
        if was_queued:
            # A queued request leaves the queue at once and will never run.
            assert TicketState.CANCELLED is ticket.state
            assert ticket.position is None
            self.cancelled_queued.add(request_of(ticket).n)
        elif was_done:
            assert before is ticket.state

    def cancel_one(self, rng: random.Random) -> None:
        if not self.tickets:
            return
        live = [ticket for ticket in self.tickets.values() if not ticket.done()]
        if live and rng.random() < 0.9:
            self.cancel(rng.choice(live))
        else:
            self.cancel(self.tickets[rng.choice(list(self.tickets))])

    async def submit(self, rng: random.Random, *, wait: bool) -> bool:
        """Submit one random request; return False once the pool refuses work."""
        request, options = self.new_request(rng)
        try:
            if wait:
                await self.pool.submit(request, **options)
            else:
                self.submit_nowait(request, **options)
        except QueueFull:
            self.rejected += 1
            if wait and self.mode is Backpressure.BLOCK:
                self.rejected_while_blocking += 1
        except PoolClosed:
            return False
        return True

    async def cancel_after(self, scope: anyio.CancelScope, checkpoints: int) -> None:
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        scope.cancel()

    async def abandon(self, rng: random.Random) -> None:
        """Call execute() and cancel the caller at a random moment."""
        assert self.task_group is not None
        request, options = self.new_request(rng)
        n = request.n
        with anyio.CancelScope() as scope:
            if rng.random() < 0.5:
                scope.deadline = anyio.current_time() + rng.uniform(0, 0.02)
            else:
                self.task_group.start_soon(self.cancel_after, scope, rng.randrange(5))
            try:
                self.executed[n] = await self.pool.execute(request, **options)
            except QueueFull:
                self.rejected += 1
                if self.mode is Backpressure.BLOCK:
                    self.rejected_while_blocking += 1
            except PoolClosed:
                pass
            except (QueueKeeperError, Boom) as exc:
                self.executed[n] = exc
        ticket = self.tickets.get(n)
        if scope.cancelled_caught and ticket is not None and ticket.started_at is None:
            # execute() took it out of the queue (or it had already ended unrun).
            assert ticket.done()
            self.abandoned_queued.add(n)

    async def produce(self, rng: random.Random, steps: int) -> None:
        assert self.task_group is not None
        for _ in range(steps):
            roll = rng.random()
            accepting = True
            if roll < 0.3:
                accepting = await self.submit(rng, wait=True)
            elif roll < 0.55:
                accepting = await self.submit(rng, wait=False)
                if accepting and rng.random() < 0.02:
                    # Shut down at the worst instant: in the same loop turn as a
                    # submit that may have handed its request to an idle worker.
                    await self.shutdown(rng, 0)
                    accepting = False
            elif roll < 0.7:
                child = random.Random(rng.getrandbits(32))
                self.task_group.start_soon(self.abandon, child)
            elif roll < 0.85:
                self.cancel_one(rng)
            else:
                await anyio.sleep(rng.uniform(0, 0.01))
            if not accepting:
                return
            await anyio.lowlevel.checkpoint()

    async def shutdown(self, rng: random.Random, delay: float) -> None:
        if delay:
            await anyio.sleep(delay)
        how = rng.randrange(3)
        if how == 0:
            await self.pool.shutdown()
        elif how == 1:
            await self.pool.shutdown(timeout=rng.uniform(0.005, 0.03))
        else:
            self.aborting = True
            await self.pool.shutdown(drain=False)
        self.shutdowns += 1
        # No handler ignores cancellation here: every one that shutdown cancelled
        # has stopped by the time it returns.
        assert set() == self.running

    def sample(self) -> None:
        """Check what status() and the metrics say mid-flight."""
        status = self.pool.status()
        in_flight = status.queue_size + status.active_workers
        assert status.submitted == settled(status) + in_flight
        assert 0 <= status.active_workers <= self.workers
        # Requests handed to idle workers count as queued until they start.
        assert status.queue_size <= self.max_queue_size + self.workers
        observer = self.observer
        assert status.submitted == observer.submits
        assert settled(status) == sum(observer.outcomes.values())
        name = self.pool.name
        assert (status.submitted, settled(status)) == (
            observer.sample("queuekeeper_queue_requests_total", pool=name),
            observer.sample("queuekeeper_requests_completed_total", pool=name),
        )
        gauges = observer.sample("queuekeeper_queue_size", pool=name, priority="all")
        active = observer.sample("queuekeeper_queue_active_workers", pool=name)
        assert (status.queue_size, status.active_workers) == (gauges, active)
        self.samples += 1

    async def sampler(self) -> None:
        while self.pool.status().state != "closed":
            self.sample()
            await anyio.lowlevel.checkpoint()

    async def run(self) -> None:
        rng = self.rng
        concurrent_shutdown = rng.random() < 0.5
        async with anyio.create_task_group() as outer:
            await outer.start(self.pool.run)
            outer.start_soon(self.sampler)
            self.burst()
            async with anyio.create_task_group() as self.task_group:
                for _ in range(3):
                    child = random.Random(rng.getrandbits(32))
                    self.task_group.start_soon(self.produce, child, 40)
                if concurrent_shutdown:
                    self.task_group.start_soon(self.shutdown, rng, rng.uniform(0, 0.05))
            if not concurrent_shutdown:
                await self.shutdown(rng, 0)
            assert [] == pool_task_names(self.pool)  # shutdown left no worker
        assert [] == pool_task_names(self.pool)

    # -- the verdict ----------------------------------------------------------------

    async def check(self) -> None:
        pool = self.pool
        status = pool.status()
        assert ("closed", 0, 0) == (
            status.state,
            status.active_workers,
            status.queue_size,
        )
        queue = pool._queue.statistics()
        assert (0, 0, 0) == (
            queue.current_size,
            queue.tasks_waiting_send,
            queue.tasks_waiting_receive,
        )

        # Counters: everything accepted settled once; rejections counted apart.
        assert len(self.tickets) == status.submitted == settled(status)
        states = Counter(ticket.state for ticket in self.tickets.values())
        assert (
            states[TicketState.SUCCEEDED],
            states[TicketState.FAILED],
            states[TicketState.CANCELLED],
            states[TicketState.TIMED_OUT],
            states[TicketState.SHED],
        ) == (
            status.completed,
            status.failed,
            status.cancelled,
            status.timed_out,
            status.shed,
        )
        observer = self.observer
        assert states == observer.outcomes  # one final event per ticket
        assert status.submitted == observer.submits
        assert self.rejected == status.rejected == observer.rejections >= 1
        assert 0 == self.rejected_while_blocking  # BLOCK waits, it never rejects
        if self.mode is not Backpressure.SHED:
            assert 0 == status.shed
        else:
            assert status.shed >= 1

        # Each ticket: one final state, and result() agrees with it.
        for n, ticket in self.tickets.items():
            assert ticket.done()
            assert ticket.state in FINAL
            assert ticket.position is None
            assert ticket.finished_at is not None
            assert not ticket.cancel()
            ran = ticket.started_at is not None
            assert ran == (n in self.started)
            outcome: object
            try:
                outcome = await ticket.result()
            except Exception as exc:
                outcome = exc
            self.check_outcome(ticket, outcome, ran=ran)
            if n in self.executed:
                executed = self.executed[n]
                if isinstance(executed, BaseException):
                    assert executed is outcome
                else:
                    assert executed == outcome

        # The handler never ran for a request cancelled while queued, nor for
        # one shutdown(drain=False) found queued or handed over.
        assert self.cancelled_queued
        assert not self.cancelled_queued & self.started
        assert not self.abandoned_queued & self.started
        assert [] == self.started_while_aborting
        assert self.shutdowns >= 1
        assert self.samples > 0
        self.sample()

    def check_outcome(self, ticket: Ticket[int], outcome: object, *, ran: bool) -> None:
        n = request_of(ticket).n
        state = ticket.state
        if state is TicketState.SUCCEEDED:
            assert ran
            assert n == outcome
        elif state is TicketState.FAILED:
            assert ran
            assert self.raised[n] is outcome  # the handler's own exception
        elif state is TicketState.CANCELLED:
            assert isinstance(outcome, RequestCancelled)
        elif state is TicketState.SHED:
            assert not ran
            assert isinstance(outcome, RequestShed)
        else:
            assert TicketState.TIMED_OUT is state
            assert isinstance(outcome, (QueueTimeout, RequestTimeout))
            if ran or ticket._queue_deadline == math.inf:
                assert isinstance(outcome, RequestTimeout)
            if ticket.deadline is None:
                assert isinstance(outcome, QueueTimeout)


@pytest.mark.parametrize("seed", range(30))
async def test_random_trouble_keeps_every_invariant(seed: int) -> None:
    """Failures, hangs, timeouts, cancels, backpressure: every invariant holds."""
    chaos = Chaos(seed)
    with anyio.fail_after(30):  # a hang guard, not a timing assertion
        await chaos.run()
    await chaos.check()


# -- memory -------------------------------------------------------------------------


async def noop(request: object) -> None:
    """Do nothing."""


def traced_snapshot() -> tracemalloc.Snapshot:
    """A snapshot of what is traced after a full collection, minus tracemalloc's own."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    return snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])


@pytest.mark.parametrize("timeout", [None, 3600.0], ids=["plain", "with-deadlines"])
async def test_memory_stays_flat_over_100k_requests(timeout: float | None) -> None:
    """100,000 no-op requests after a warm-up grow traced memory by under 5 MiB."""
    batch = 500
    pool = WorkerPool(noop, workers=4, max_queue_size=batch, name="memory")

    async def run(count: int) -> None:
        for _ in range(count // batch):
            for i in range(batch):
                last = pool.submit_nowait(i, timeout=timeout)
            await last.result()
        await anyio.wait_all_tasks_blocked()

    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        async with pool:
            await run(10_000)
            before = traced_snapshot()
            await run(100_000)
            after = traced_snapshot()
    finally:
        if not tracing:
            tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    growth = sum(stat.size_diff for stat in stats)
    assert growth < 5 * 1024 * 1024, stats[:5]
    status = pool.status()
    assert (110_000, 110_000, 0) == (
        status.submitted,
        status.completed,
        status.rejected,
    )


# -- a handler that ignores cancellation ----------------------------------------------


@pytest.mark.parametrize("style", ["shield", "swallow"])
async def test_shutdown_gives_up_on_a_handler_ignoring_cancellation_after_grace(
    style: str,
) -> None:
    """Drain timeout, then cancel_grace: shutdown returns; the worker reports hung."""
    entered = anyio.Event()
    release = anyio.Event()

    async def shielded(request: str) -> str:
        entered.set()
        with anyio.CancelScope(shield=True):
            await release.wait()
        return request

    async def swallowing(request: str) -> str:
        entered.set()
        while not release.is_set():
            with contextlib.suppress(anyio.get_cancelled_exc_class()):
                await release.wait()
        return request

    drain, grace = 0.02, 0.05
    pool = WorkerPool(
        shielded if style == "shield" else swallowing,
        workers=1,
        name=f"stubborn-{style}",
        cancel_grace=grace,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        try:
            stubborn = await pool.submit("stubborn")
            queued = await pool.submit("queued")
            with anyio.fail_after(10):  # hang guards, not timing assertions
                await entered.wait()
                begun = anyio.current_time()
                await pool.shutdown(drain=True, timeout=drain)
            # It waited out the drain timeout, then the grace, on the backend's clock.
            assert anyio.current_time() - begun >= drain + grace - 1e-3
            assert (TicketState.CANCELLED, TicketState.CANCELLED) == (
                stubborn.state,
                queued.state,
            )
            with pytest.raises(RequestCancelled, match="ignores it"):
                await stubborn.result()
            status = pool.status()
            assert ("closed", 2, 2) == (
                status.state,
                status.submitted,
                status.cancelled,
            )
            (health,) = pool.worker_health()
            assert (False, stubborn.id) == (health.is_healthy, health.current_request)
            assert health.busy_since is not None
            # Structured concurrency: the worker still runs until the handler returns.
            assert [f"{pool.name}-worker-0"] == worker_names(pool)
        finally:
            release.set()  # even on failure: a shielded handler would hang the test
    assert [] == pool_task_names(pool)
    # The handler's late return changes nothing: shutdown settled the ticket.
    assert TicketState.CANCELLED is stubborn.state
    status = pool.status()
    assert (2, 0, 2) == (status.submitted, status.completed, status.cancelled)
    assert None is pool.worker_health()[0].current_request


@pytest.mark.parametrize("late", ["returns", "raises"])
async def test_shutdown_gives_up_only_on_the_worker_whose_handler_ignores_it(
    late: str,
) -> None:
    """The idle worker is left alone; what the handler does later changes nothing."""
    entered = anyio.Event()
    release = anyio.Event()

    async def stubborn(request: str) -> str:
        entered.set()
        with anyio.CancelScope(shield=True):
            await release.wait()
        if late == "raises":
            raise Boom(request)
        return request

    pool = WorkerPool(
        stubborn, workers=2, name=f"one-stubborn-{late}", cancel_grace=0.01
    )
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        try:
            ticket = await pool.submit("stubborn")
            with anyio.fail_after(10):  # a hang guard, not a timing assertion
                await entered.wait()
                await pool.shutdown(drain=False)
            busy, idle = sorted(
                pool.worker_health(), key=lambda h: h.current_request is None
            )
            assert (ticket.id, None) == (busy.current_request, idle.current_request)
            assert idle.is_healthy
        finally:
            release.set()
    assert TicketState.CANCELLED is ticket.state
    with pytest.raises(RequestCancelled, match="ignores it"):
        await ticket.result()
    status = pool.status()
    assert (1, 0, 0, 1) == (
        status.submitted,
        status.completed,
        status.failed,
        status.cancelled,
    )


# -- handlers raising BaseException, or swallowing their cancellation ---------------


async def make_error(kind: str) -> BaseException:
    """The exception a handler raises, by kind."""
    if kind == "Exception":
        return Boom("plain")
    if kind == "ExceptionGroup":
        return ExceptionGroup("handler's group", [Boom("a"), KeyError("b")])
    if kind == "stray cancellation":
        return await stray_cancellation()
    if kind == "stray cancellation in a group":
        return BaseExceptionGroup("wrapped", [await stray_cancellation()])
    assert "errors and a stray cancellation" == kind
    return BaseExceptionGroup("mixed", [Boom("c"), await stray_cancellation()])


@pytest.mark.parametrize(
    "kind",
    [
        "Exception",
        "ExceptionGroup",
        "stray cancellation",
        "stray cancellation in a group",
        "errors and a stray cancellation",
    ],
)
async def test_every_exception_short_of_an_interrupt_fails_only_its_request(
    kind: str,
) -> None:
    """The request fails; the worker and the pool serve on; no cancellation leaks."""
    raised: list[BaseException] = []

    async def handler(request: str) -> str:
        await anyio.lowlevel.checkpoint()
        if request == "raise":
            raised.append(await make_error(kind))
            raise raised[-1]
        return request

    async with WorkerPool(handler, workers=1, name="kinds") as pool:
        ticket = await pool.submit("raise")
        with pytest.raises(BaseException) as caught:  # noqa: PT011 - inspected below
            await ticket.result()
        assert TicketState.FAILED is ticket.state
        error = caught.value
        cancelled = anyio.get_cancelled_exc_class()
        if kind in {"Exception", "ExceptionGroup"}:
            assert raised[0] is error  # the handler's own, unchanged
        elif kind == "errors and a stray cancellation":
            assert isinstance(error, ExceptionGroup)
            assert ["c"] == [str(leaf) for leaf in error.exceptions]
        else:
            assert isinstance(error, RequestCancelled)
            assert error.__cause__ is raised[0]
        assert not isinstance(error, cancelled)
        if isinstance(error, BaseExceptionGroup):
            assert error.subgroup(cancelled) is None
        assert "after" == await pool.execute("after")
        assert ["kinds-worker-0"] == worker_names(pool)
        health = pool.worker_health()[0]
        assert (2, 1) == (health.total_processed, health.total_errors)


@pytest.mark.parametrize("grouped", [False, True], ids=["bare", "in-a-group"])
async def test_handler_raising_a_base_exception_ends_the_pool(grouped: bool) -> None:
    """A BaseException from a handler fails its ticket, then propagates.

    Unlike an Exception it does not stay in the worker: the pool's task group
    crashes, the rest of its work is cancelled, and the error leaves
    ``async with`` inside an exception group. So does a group that holds one.
    """
    leaf = Fatal("handler gave up")
    fatal: BaseException = leaf
    if grouped:
        fatal = BaseExceptionGroup("handler's group", [Boom("too"), leaf])
    go = anyio.Event()

    async def handler(request: str) -> str:
        if request == "fatal":
            await go.wait()
            raise fatal
        await anyio.sleep_forever()
        return request  # pragma: no cover

    with anyio.fail_after(10), pytest.raises(BaseExceptionGroup) as caught:  # noqa: PT012 - the body is the subject
        async with WorkerPool(handler, workers=2, name="fatal") as pool:
            other = await pool.submit("other")
            doomed = await pool.submit("fatal")
            queued = await pool.submit("queued")
            await anyio.wait_all_tasks_blocked()
            assert (TicketState.RUNNING, TicketState.QUEUED) == (
                doomed.state,
                queued.state,
            )
            go.set()
            await anyio.sleep_forever()
    # Trio's nursery rebuilds the groups it splits: look for the leaf.
    assert caught.value.subgroup(lambda exc: exc is leaf) is not None
    assert TicketState.FAILED is doomed.state
    with pytest.raises(type(fatal)) as raised:
        await doomed.result()
    assert fatal is raised.value
    assert (TicketState.CANCELLED, TicketState.CANCELLED) == (other.state, queued.state)
    status = pool.status()
    assert ("closed", 3, 1, 2) == (
        status.state,
        settled(status),
        status.failed,
        status.cancelled,
    )
    assert 1 == sum(worker.total_errors for worker in status.workers)
    assert repr(fatal) in {worker.last_error for worker in status.workers}
    assert [] == pool_task_names(pool)


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_handler_raising_keyboard_interrupt_fails_its_ticket_and_escapes(
    backend: str, error_type: type[BaseException]
) -> None:
    """KeyboardInterrupt/SystemExit from a handler fail its ticket, then escape.

    On trio they leave the pool like any BaseException (in an exception group).
    asyncio re-raises them out of the event loop itself, so ``anyio.run`` raises
    the bare exception there. Either way no ticket is left pending.
    """
    error = error_type("from the handler")
    tickets: list[Ticket[str]] = []
    escaped: list[BaseException] = []

    async def handler(request: str) -> str:
        await anyio.lowlevel.checkpoint()
        if request == "interrupt":
            raise error
        await anyio.sleep_forever()
        return request  # pragma: no cover

    async def main() -> None:
        try:
            async with WorkerPool(handler, workers=2, name="interrupt") as pool:
                tickets.extend([await pool.submit(r) for r in ("other", "interrupt")])
                tickets.append(await pool.submit("queued"))
                await anyio.sleep_forever()
        except BaseExceptionGroup as group:
            escaped.append(group)

    if backend == "asyncio":
        with pytest.raises(error_type) as caught:
            anyio.run(main, backend=backend)
        assert error is caught.value
    else:
        anyio.run(main, backend=backend)
        (group,) = escaped
        assert isinstance(group, BaseExceptionGroup)
        assert group.subgroup(lambda exc: exc is error) is not None
    other, interrupted, queued = tickets
    assert (TicketState.FAILED, error) == (interrupted.state, interrupted._error)
    assert all(ticket.done() for ticket in tickets)
    assert (TicketState.CANCELLED, TicketState.CANCELLED) == (other.state, queued.state)


@pytest.mark.parametrize("trigger", ["cancel", "shutdown"])
async def test_handler_that_swallows_cancellation_decides_the_outcome(
    trigger: str,
) -> None:
    """Ticket.cancel documents it: a handler ignoring cancellation decides itself.

    Returning normally succeeds with its value; raising fails with that error.
    """
    error = ValueError("raised after the cancellation")

    async def handler(request: str) -> str:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            if request == "raise":
                raise error from None
            return f"{request} anyway"
        return request  # pragma: no cover

    pool = WorkerPool(handler, workers=2, name=f"swallow-{trigger}")
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        returns = await pool.submit("returns")
        raises = await pool.submit("raise")
        await anyio.wait_all_tasks_blocked()
        if trigger == "cancel":
            assert returns.cancel()
            assert raises.cancel()
        else:
            await pool.shutdown(drain=False)
        with anyio.fail_after(10):
            assert "returns anyway" == await returns.result()
            with pytest.raises(ValueError, match="after the cancellation") as caught:
                await raises.result()
        assert error is caught.value
        assert (TicketState.SUCCEEDED, TicketState.FAILED) == (
            returns.state,
            raises.state,
        )
        await pool.shutdown()
    status = pool.status()
    assert (2, 1, 1, 0) == (
        status.submitted,
        status.completed,
        status.failed,
        status.cancelled,
    )
    assert [] == pool_task_names(pool)
