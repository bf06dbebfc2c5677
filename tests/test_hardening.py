"""The pool against hostile and careless use: stray cancellations, races, leaks.

Each section is one defect that once took a pool down, lost a wake-up or told an
untruth; its tests failed before the fix. They run on asyncio and on Trio unless a
scenario only exists on one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import re
import sys
import traceback
import weakref
from typing import TYPE_CHECKING, Any, NoReturn, cast

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry

from helpers import (
    Boom,
    Gate,
    echo,
    metric_total,
    settled,
    stray_cancellation,
    worker_names,
)
from queuekeeper import (
    Backpressure,
    Priority,
    PrometheusMetrics,
    QueueFull,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    TicketState,
    WorkerPool,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

pytestmark = pytest.mark.anyio


# -- 1. a cancellation the pool did not issue ------------------------------------------


async def stray_from_a_finished_scope() -> NoReturn:
    """Raise a cancellation caught inside an inner scope that has since exited.

    On Trio that is a ``trio.Cancelled``; on asyncio an anyio-flavoured
    ``CancelledError``. No scope around the caller is cancelled.
    """
    raise await stray_cancellation()


async def stray_from_a_cancelled_future() -> NoReturn:
    """Await a future someone else cancelled: a bare asyncio ``CancelledError``."""
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future
    raise AssertionError  # pragma: no cover


async def stray_in_a_group() -> NoReturn:
    """Raise a stray cancellation wrapped in an exception group."""
    try:
        await stray_from_a_finished_scope()
    except BaseException as exc:
        raise BaseExceptionGroup("wrapped", [exc]) from None


STRAYS = {
    "finished-scope": stray_from_a_finished_scope,
    "in-a-group": stray_in_a_group,
}
ASYNCIO_STRAYS = {"cancelled-future": stray_from_a_cancelled_future}


@pytest.mark.parametrize(
    ("anyio_backend", "how"),
    [
        *((backend, how) for backend in ("asyncio", "trio") for how in STRAYS),
        *(("asyncio", how) for how in ASYNCIO_STRAYS),
    ],
)
async def test_stray_cancellation_fails_its_request_and_the_pool_serves_on(
    how: str,
) -> None:
    """A handler raising a cancellation of its own fails that request only."""
    stray = {**STRAYS, **ASYNCIO_STRAYS}[how]

    async def handler(request: str) -> str:
        if request == "stray":
            await stray()
        await anyio.lowlevel.checkpoint()
        return request

    with anyio.fail_after(10):  # a hang guard, not a timing assertion
        async with WorkerPool(handler, workers=2, name="stray") as pool:
            ticket = await pool.submit("stray")
            with pytest.raises(RequestCancelled, match="did not issue") as caught:
                await ticket.result()
            assert TicketState.FAILED is ticket.state
            cause = caught.value.__cause__
            cancelled = anyio.get_cancelled_exc_class()
            assert isinstance(cause, (cancelled, BaseExceptionGroup))
            assert "after" == await pool.execute("after")
            status = pool.status()
            assert ("running", 2, 1, 1) == (
                status.state,
                status.submitted,
                status.failed,
                status.completed,
            )
            assert 2 == len(worker_names(pool))
            assert 1 == sum(worker.total_errors for worker in status.workers)
    assert "closed" == pool.status().state


async def test_stray_cancellation_in_a_pool_run_in_the_callers_task_group() -> None:
    """The same holds in ``task_group.start(pool.run)``: the caller's group lives."""

    async def handler(request: str) -> str:
        if request == "stray":
            await stray_from_a_finished_scope()
        return request

    pool = WorkerPool(handler, workers=1, name="stray-run")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            for _ in range(3):  # one worker: each stray would have ended it
                with pytest.raises(RequestCancelled):
                    await pool.execute("stray")
            assert "ok" == await pool.execute("ok")
            assert ["stray-run-worker-0"] == worker_names(pool)
            await pool.shutdown()
    assert (3, 1) == (pool.status().failed, pool.status().completed)


# -- 3. a handler whose task group fails while the pool cancels it ---------------------


def group_handler(*, child_raises: bool) -> Any:
    """A handler with a task group whose child raises when it is cancelled."""

    async def handler(request: str) -> str:
        if request != "group":
            await anyio.lowlevel.checkpoint()
            return request
        async with anyio.create_task_group() as tg:

            async def child() -> None:
                try:
                    await anyio.sleep_forever()
                except anyio.get_cancelled_exc_class():
                    if child_raises:
                        raise ValueError("child failed while cancelled") from None
                    raise

            tg.start_soon(child)
            await anyio.sleep_forever()
        return request  # pragma: no cover

    return handler


def assert_no_cancellation_inside(error: BaseException) -> None:
    """No cancellation exception, bare or in a group, may reach ``result()``."""
    cancelled = anyio.get_cancelled_exc_class()
    assert not isinstance(error, cancelled)
    if isinstance(error, BaseExceptionGroup):
        assert error.subgroup(cancelled) is None


@pytest.mark.parametrize("trigger", ["timeout", "cancel", "shutdown"])
@pytest.mark.parametrize("child_raises", [True, False], ids=["child-raises", "quiet"])
async def test_handler_task_group_cut_by_the_pool_ends_the_same_on_both_backends(
    trigger: str, child_raises: bool
) -> None:
    """FAILED with the handler's own errors, or TIMED_OUT/CANCELLED; never a crash."""
    handler = group_handler(child_raises=child_raises)
    with anyio.fail_after(10):
        async with WorkerPool(handler, workers=1, name="group") as pool:
            timeout = 0.01 if trigger == "timeout" else None
            ticket = await pool.submit("group", timeout=timeout)
            await anyio.wait_all_tasks_blocked()
            if trigger == "cancel":
                assert ticket.cancel()
            elif trigger == "shutdown":
                await pool.shutdown(drain=False)
            try:
                await ticket.result()
            except BaseException as exc:
                error: BaseException = exc
            else:  # pragma: no cover - the handler never returns
                pytest.fail("the handler returned")
            assert_no_cancellation_inside(error)
            if child_raises:
                assert TicketState.FAILED is ticket.state
                assert isinstance(error, ExceptionGroup)
                leaves = error.exceptions
                assert ["child failed while cancelled"] == [str(e) for e in leaves]
            elif trigger == "timeout":
                assert TicketState.TIMED_OUT is ticket.state
                assert isinstance(error, RequestTimeout)
            else:
                assert TicketState.CANCELLED is ticket.state
                assert isinstance(error, RequestCancelled)
            if trigger != "shutdown":
                assert "after" == await pool.execute("after")
                assert ["group-worker-0"] == worker_names(pool)
    assert "closed" == pool.status().state


# -- 2. a request handed straight to an idle worker ------------------------------------


@pytest.mark.parametrize(
    ("backpressure", "nowait"),
    [
        (Backpressure.REJECT, True),
        (Backpressure.REJECT, False),
        (Backpressure.BLOCK, False),
        (Backpressure.SHED, True),
    ],
)
async def test_shutdown_without_drain_cancels_a_request_handed_to_an_idle_worker(
    backpressure: Backpressure, nowait: bool
) -> None:
    """The request never starts, fails with RequestCancelled, and no grace is waited."""
    handler = Gate()
    pool = WorkerPool(
        handler,
        workers=1,
        max_queue_size=1,
        backpressure=backpressure,
        name="handover",
        cancel_grace=3600,
    )
    with anyio.fail_after(10):  # the old code waited out cancel_grace here
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            await anyio.wait_all_tasks_blocked()  # the worker waits in receive()
            # Handed straight to it; submit() returns after its checkpoint, so the
            # worker has not resumed in either case.
            if nowait:
                ticket = pool.submit_nowait("handed")
            else:
                ticket = await pool.submit("handed")
            status = pool.status()
            assert (1, 1, 0) == (
                status.submitted,
                status.queue_size,
                status.active_workers,
            )
            await pool.shutdown(drain=False)
            assert TicketState.CANCELLED is ticket.state
            assert [] == handler.started
            with pytest.raises(RequestCancelled):
                await ticket.result()
    assert [] == handler.started
    status = pool.status()
    assert (1, 1, 0) == (status.submitted, status.cancelled, status.queue_size)
    assert all(worker.is_healthy for worker in status.workers)


async def test_body_error_cancels_a_request_handed_to_an_idle_worker() -> None:
    """Leaving ``async with`` by an exception never starts a handed-over request."""
    handler = Gate()
    with anyio.fail_after(10), pytest.raises(KeyError):  # noqa: PT012
        async with WorkerPool(handler, workers=2, name="handover-body") as pool:
            await anyio.wait_all_tasks_blocked()
            tickets = [pool.submit_nowait(n) for n in range(2)]
            raise KeyError("body")
    assert [] == handler.started
    assert [TicketState.CANCELLED] * 2 == [ticket.state for ticket in tickets]


async def test_a_handed_over_request_cancelled_or_expired_never_starts() -> None:
    """ticket.cancel() and a deadline reach a request its worker has not started."""
    handler = Gate()
    handler.open.set()
    async with WorkerPool(handler, workers=1, name="handover-cancel") as pool:
        await anyio.wait_all_tasks_blocked()
        cancelled = pool.submit_nowait("cancelled")
        assert 0 == cancelled.position
        assert cancelled.cancel()
        assert 0 == pool.status().queue_size
        await anyio.wait_all_tasks_blocked()
        assert "ran" == await pool.execute("ran")
    assert ["ran"] == handler.started
    status = pool.status()
    assert (2, 1, 1) == (status.submitted, status.cancelled, status.completed)


# -- 10. counted at the moment it enters the queue -------------------------------------


async def test_block_counts_a_request_when_it_moves_into_the_queue() -> None:
    """A blocked submitter's request may run before the submitter resumes: it counts."""
    registry = CollectorRegistry()
    seen: list[tuple[int, int, int, int, float, float]] = []
    release = anyio.Event()

    async def handler(request: str) -> str:
        if request == "first":
            await release.wait()
        elif request == "blocked":
            # Runs in the same loop turn that moved it in: its submitter still
            # waits inside submit().
            status = pool.status()
            seen.append(
                (
                    status.submitted,
                    settled(status),
                    status.queue_size,
                    status.active_workers,
                    metric_total(registry, "queuekeeper_queue_requests_total"),
                    metric_total(registry, "queuekeeper_requests_completed_total"),
                )
            )
        return request  # no await: the worker takes the next request at once

    pool = WorkerPool(
        handler,
        workers=1,
        max_queue_size=1,
        backpressure=Backpressure.BLOCK,
        name="block-count",
        metrics=PrometheusMetrics(registry),
    )
    async with pool, anyio.create_task_group() as tg:
        await pool.submit("first")
        await pool.submit("queued")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(pool.execute, "blocked")
        await anyio.wait_all_tasks_blocked()
        assert 2 == pool.status().submitted  # still blocked: not in the queue
        release.set()
    # submitted == settled + queued + running, and the counter ran ahead of
    # nothing: 3 submitted, 2 completed when "blocked" ran.
    assert [(3, 2, 0, 1, 3.0, 2.0)] == seen
    status = pool.status()
    assert (3, 3) == (status.submitted, settled(status))


# -- 5. a finished request is released when it finishes --------------------------------


class Payload:
    """An object that can be weakly referenced: a request, a result or an error."""


class PayloadError(Exception):
    """A handler's error that can be weakly referenced (every exception can)."""


@pytest.mark.parametrize("timeout", [3600.0, None], ids=["with-deadlines", "plain"])
async def test_finished_requests_results_and_errors_are_released(
    timeout: float | None,
) -> None:
    """10,000 requests that finished and were dropped: none of them stays alive."""
    refs: list[weakref.ref[object]] = []

    async def handler(request: Payload) -> Payload:
        await anyio.lowlevel.checkpoint()
        if len(refs) % 3 == 0:
            error = PayloadError()
            refs.append(weakref.ref(error))
            raise error
        result = Payload()
        refs.append(weakref.ref(result))
        return result

    async with WorkerPool(handler, workers=4, name="release") as pool:
        tickets = []
        for _ in range(10_000):
            request = Payload()
            refs.append(weakref.ref(request))
            tickets.append(pool.submit_nowait(request, timeout=timeout))
        for ticket in tickets:
            with contextlib.suppress(PayloadError):
                await ticket.result()
        del ticket, tickets, request
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
        assert (20_000, 0) == (len(refs), alive)
        assert 10_000 == pool.status().submitted


# -- 6. result() leaves the handler's exception as the handler raised it ---------------


def frames(error: BaseException) -> list[str]:
    """The function names in *error*'s traceback, outermost first."""
    return [entry.name for entry in traceback.extract_tb(error.__traceback__)]


async def test_result_reraises_the_same_exception_with_its_own_traceback() -> None:
    """1,000 awaits: each sees the handler's traceback; nothing grows or changes."""

    async def handler(request: str) -> str:
        await anyio.lowlevel.checkpoint()
        try:
            raise ValueError(request)  # noqa: TRY301 - the context is the subject
        except ValueError:
            raise Boom(request)  # noqa: B904 - the context is part of the test

    async with WorkerPool(handler, name="reraise") as pool:
        ticket = await pool.submit("boom")
        with pytest.raises(Boom) as first:
            await ticket.result()
        error = first.value
        context = error.__context__
        assert isinstance(context, ValueError)
        seen = frames(error)
        assert "handler" == seen[-1]
        for _ in range(1_000):
            try:
                raise KeyError("the awaiter's own")  # noqa: TRY301
            except KeyError:
                with pytest.raises(Boom) as again:
                    await ticket.result()
            assert error is again.value  # the handler's own exception, unwrapped
            assert context is error.__context__  # not the awaiter's KeyError
            assert seen == frames(error)


# -- 8. handler validation: refuse what is certainly synchronous, accept the rest ------


async def double(request: int) -> int:
    """An ordinary async handler."""
    await anyio.lowlevel.checkpoint()
    return 2 * request


def logged(function: Any) -> Any:
    """A synchronous decorator, written with functools.wraps, as decorators are."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


class AsyncCallable:
    """An object whose ``__call__`` is ``async def``."""

    async def __call__(self, request: int) -> int:
        return await double(request)


def sync_double(request: int) -> int:
    """A synchronous function: its body would run on the event loop."""
    return 2 * request


def sync_generator(request: int) -> Any:
    """A generator function: calling it returns a generator, never an awaitable."""
    yield request


async def async_generator(request: int) -> Any:
    """An async generator function: not awaitable either."""
    yield request


class SyncCallable:
    """An object whose ``__call__`` is a plain method."""

    def __call__(self, request: int) -> int:
        return 2 * request


class Doubling:
    """A class as a handler: calling it makes an awaitable object, no coroutine."""

    def __init__(self, request: int) -> None:
        self.request = request

    def __await__(self) -> Generator[Any, None, int]:
        return double(self.request).__await__()


def wrapped_in_itself(request: int) -> int:
    """A plain function whose ``__wrapped__`` is itself: a loop to look through."""
    return 2 * request


wrapped_in_itself.__wrapped__ = wrapped_in_itself  # type: ignore[attr-defined]


VALID_HANDLERS = {
    "async def": double,
    "lambda returning a coroutine": lambda request: double(request),  # noqa: PLW0108
    "wraps-decorated async def": logged(double),
    "partial of async def": functools.partial(double),
    "partial of a wraps-decorated async def": functools.partial(logged(double)),
    "async __call__": AsyncCallable(),
    "bound async method": AsyncCallable().__call__,
    "class of awaitable objects": Doubling,
}

INVALID_HANDLERS = {
    "plain function": (sync_double, "a plain function"),
    "partial of a plain function": (functools.partial(sync_double), "a plain function"),
    "partial of a partial": (
        functools.partial(functools.partial(sync_double)),
        "a plain function",
    ),
    "wraps-decorated plain function": (logged(sync_double), "a plain function"),
    "generator function": (sync_generator, "a generator function"),
    "async generator function": (async_generator, "an async generator function"),
    "built-in": (abs, "a built-in function"),
    "plain __call__": (SyncCallable(), "a plain function"),
    "bound plain method": (SyncCallable().__call__, "a plain function"),
    "__wrapped__ loop": (wrapped_in_itself, "a plain function"),
}


@pytest.mark.parametrize("kind", sorted(VALID_HANDLERS))
async def test_handlers_that_return_an_awaitable_are_accepted_and_run(
    kind: str,
) -> None:
    """Lambdas, wraps-decorated and partial async functions all serve requests."""
    async with WorkerPool(VALID_HANDLERS[kind], name="valid") as pool:
        assert 42 == await pool.execute(21)


@pytest.mark.parametrize("kind", sorted(INVALID_HANDLERS))
def test_certainly_synchronous_handlers_are_refused_at_construction(kind: str) -> None:
    """What can never return an awaitable is a TypeError naming it, up front."""
    handler, why = INVALID_HANDLERS[kind]
    pattern = rf"^handler must be an async callable .*; {re.escape(repr(handler))} is"
    with pytest.raises(TypeError, match=pattern) as caught:
        WorkerPool(handler)
    assert why in str(caught.value)


async def test_a_handler_returning_no_awaitable_fails_that_request() -> None:
    """A lambda may return anything: a plain value fails its request, clearly."""
    # Deliberately not an async callable: the cast lets it through to the pool.
    handler = cast("Callable[[int], Awaitable[int]]", lambda request: request)
    async with WorkerPool(handler, name="lambda") as pool:
        with pytest.raises(TypeError, match="returned 5, which is not awaitable"):
            await pool.execute(5)
        health = pool.worker_health()
        assert 1 == sum(worker.total_errors for worker in health)
        assert ("running", 5) == (pool.status().state, len(health))
        assert 5 == len(worker_names(pool))


# -- 9. durations too large for a float ------------------------------------------------


HUGE = 10**400


@pytest.mark.parametrize("option", ["drain_timeout", "hung_after", "cancel_grace"])
def test_huge_durations_at_construction_are_value_errors(option: str) -> None:
    """A ValueError naming the option and the value, not an OverflowError."""
    options: dict[str, Any] = {option: HUGE}
    with pytest.raises(ValueError, match=rf"^{option} must be .* \(too large\)$"):
        WorkerPool(echo, **options)


def test_a_huge_worker_count_is_a_value_error() -> None:
    """Far more workers than a process can hold is refused, not attempted."""
    with pytest.raises(ValueError, match=r"^workers must be an int from 1 to"):
        WorkerPool(echo, workers=HUGE)


@pytest.mark.parametrize("option", ["timeout", "queue_timeout"])
async def test_huge_request_timeouts_are_value_errors_that_lose_nothing(
    option: str,
) -> None:
    """submit, submit_nowait and execute refuse them; the queue is untouched."""
    handler = Gate()
    async with WorkerPool(handler, workers=1, name="huge") as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        queued = await pool.submit("queued")
        pattern = rf"^{option} must be .* not an int of 401 digits \(too large\)$"
        with pytest.raises(ValueError, match=pattern):
            await pool.submit("bad", **{option: HUGE})
        with pytest.raises(ValueError, match=pattern):
            pool.submit_nowait("bad", **{option: HUGE})
        with pytest.raises(ValueError, match=pattern):
            await pool.execute("bad", **{option: HUGE})
        with pytest.raises(ValueError, match=r"^timeout must be .* \(too large\)$"):
            await pool.shutdown(timeout=HUGE)
        assert (0, 2) == (queued.position, pool.status().submitted)
        handler.open.set()
    assert ["running", "queued"] == handler.started


def test_values_too_long_to_print_are_named_by_their_length() -> None:
    """An int past Python's 4,300-digit str limit still gets a readable message."""
    with pytest.raises(ValueError, match=r"not a negative int of 5001 digits$"):
        WorkerPool(echo, max_queue_size=-(10**5000))
    with pytest.raises(ValueError, match=r"not an int of 5001 digits \(too large\)$"):
        WorkerPool(echo, drain_timeout=10**5000)
    with pytest.raises(ValueError, match=r"not an int of 5001 digits$"):
        WorkerPool(echo, workers=10**5000)
    # All nines: one digit fewer than its bit length suggests.
    with pytest.raises(ValueError, match=r"not an int of 5000 digits$"):
        WorkerPool(echo, workers=10**5000 - 1)


# -- 12. a pool that has not started says so -------------------------------------------


async def test_a_pool_not_started_is_created_and_serves_what_waited_once_started() -> (
    None
):
    """Requests submitted before the workers start wait in the queue, then run."""
    pool = WorkerPool(echo, workers=1, max_queue_size=2, name="early")
    assert "created" == pool.status().state
    assert "created" in repr(pool)
    first = pool.submit_nowait("first")
    second = await pool.submit("second")
    status = pool.status()
    assert ("created", 2, 2, 0) == (
        status.state,
        status.submitted,
        status.queue_size,
        status.active_workers,
    )
    assert (0, 1) == (first.position, second.position)
    async with pool:
        assert "running" == pool.status().state
        assert ["first", "second"] == [await t.result() for t in (first, second)]
    assert "closed" == pool.status().state


async def test_a_blocked_submit_before_start_moves_in_once_the_pool_runs() -> None:
    """BLOCK waits for room even before the start; the workers make it."""
    pool = WorkerPool(
        echo, workers=1, max_queue_size=1, backpressure=Backpressure.BLOCK, name="b"
    )
    pool.submit_nowait("fills the queue")
    results: list[object] = []
    async with anyio.create_task_group() as tg:

        async def blocked() -> None:
            results.append(await pool.execute("waited for room"))

        tg.start_soon(blocked)
        await anyio.wait_all_tasks_blocked()
        assert ("created", 1) == (pool.status().state, pool.status().submitted)
        await tg.start(pool.run)
        with anyio.fail_after(10):
            while not results:
                await anyio.wait_all_tasks_blocked()
        await pool.shutdown()
    assert ["waited for room"] == results


@pytest.mark.parametrize("how", ["async with", "shut down unstarted"])
async def test_entering_a_pool_again_is_a_plain_runtime_error(how: str) -> None:
    """Not an exception group wrapping one: a pool runs once."""
    pool = WorkerPool(echo, name="once")
    if how == "async with":
        async with pool:
            pass
    else:
        await pool.shutdown()
    with pytest.raises(RuntimeError, match="already started; a pool runs once"):
        async with pool:
            pytest.fail("entered twice")  # pragma: no cover
    with pytest.raises(RuntimeError, match="already started; a pool runs once"):
        await pool.run()
    assert "closed" == pool.status().state


# -- 13. the names users read, in every message ----------------------------------------


async def test_messages_and_str_use_the_names_users_read() -> None:
    """QueueFull and RequestShed say LOW, not <Priority.LOW: 4>; states say queued."""
    handler = Gate()
    pool = WorkerPool(
        handler,
        workers=1,
        max_queue_size=1,
        backpressure=Backpressure.SHED,
        name="names",
    )
    async with pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        low = await pool.submit("low", priority=Priority.LOW)
        assert "queued" == str(low.state) == f"{low.state}"
        assert "priority=LOW state=queued" in repr(low)
        await pool.submit("critical", priority=Priority.CRITICAL)
        with pytest.raises(RequestShed) as shed:
            await low.result()
        assert str(shed.value).endswith("for a request at priority CRITICAL")
        with pytest.raises(QueueFull) as full:
            await pool.submit("custom", priority=7)
        message = str(full.value)
        assert message.endswith("request at priority 7 rejected")
        assert (7, 1) == (full.value.priority, full.value.max_size)
        handler.open.set()
    assert "queue is full (1 request waiting); request at priority LOW rejected" == str(
        QueueFull(1, Priority.LOW)
    )
    assert "<" not in str(QueueFull(5, Priority.HIGH))
    assert ["shed", "reject", "succeeded"] == [
        str(Backpressure.SHED),
        f"{Backpressure.REJECT}",
        str(TicketState.SUCCEEDED),
    ]


async def test_cancelling_the_pool_from_outside_cancels_a_handed_over_request() -> None:
    """Cancelling ``pool.run`` in the instant of a hand-over: RequestCancelled.

    The worker resumes with the request before its cancellation is raised, so the
    handler may run up to its first checkpoint (``shutdown(drain=False)`` knows
    its hand-overs and never starts them); it never runs past it.
    """
    finished: list[object] = []

    async def handler(request: object) -> object:
        await anyio.lowlevel.checkpoint()
        finished.append(request)
        return request

    pool = WorkerPool(handler, workers=1, name="outer-handover")
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await anyio.wait_all_tasks_blocked()  # the worker waits for work
        ticket = pool.submit_nowait("handed")  # handed straight to it
        tg.cancel_scope.cancel()  # the same loop turn
    assert [] == finished
    assert TicketState.CANCELLED is ticket.state
    with pytest.raises(RequestCancelled):
        await ticket.result()
    status = pool.status()
    assert ("closed", 1, 1) == (status.state, status.submitted, status.cancelled)


async def test_priorities_too_long_to_print_cannot_break_messages_or_metrics() -> None:
    """A 5,000-digit custom level queues, runs, is refused and measured cleanly."""
    huge = 10**5000
    handler = Gate()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with WorkerPool(
        handler, workers=1, max_queue_size=1, name="huge-level", metrics=metrics
    ) as pool:
        await pool.submit("running", priority=huge)
        await anyio.wait_all_tasks_blocked()
        queued = await pool.submit("queued", priority=huge)
        assert "priority=an int of 5001 digits" in repr(queued)
        with pytest.raises(QueueFull, match="priority an int of 5001 digits rejected"):
            await pool.submit("refused", priority=huge)
        handler.open.set()
    assert ["running", "queued"] == handler.started
    assert 2 == metric_total(registry, "queuekeeper_requests_completed_total")
