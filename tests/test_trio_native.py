"""The pool and the channel inside plain Trio programs (pytest-trio, no anyio runner).

Timing tests run on ``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio's
``autojump_clock`` fixture): virtual time jumps straight to the next deadline, so
timeouts can be checked to fire at exact times.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import assert_checkpoints, assert_no_checkpoints

import queuekeeper._memory
from queuekeeper import (
    Backpressure,
    PoolClosed,
    Priority,
    PrioritySendChannel,
    QueueTimeout,
    RequestCancelled,
    RequestTimeout,
    TicketState,
    WorkerPool,
    create_priority_channel,
)


def task_names() -> list[str]:
    """Names of every task in this Trio run."""
    names: list[str] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None  # called from inside a Trio run
    pending = [root]
    while pending:
        task = pending.pop()
        names.append(task.name)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return names


def pool_task_names(pool: WorkerPool[Any, Any]) -> list[str]:
    """Names of the tasks that belong to *pool*."""
    return sorted(name for name in task_names() if name.startswith(f"{pool.name}-"))


async def echo(request: object) -> object:
    """Return the request after a checkpoint."""
    await trio.lowlevel.checkpoint()
    return request


async def hang(request: object) -> object:
    """Never return on its own."""
    await trio.sleep_forever()


async def sleep_for(seconds: float) -> float:
    """Sleep *seconds* (virtual time under the autojump clock); return them."""
    await trio.sleep(seconds)
    return seconds


# -- nursery.start(pool.run) ---------------------------------------------------------


@pytest.mark.trio
async def test_nursery_start_returns_with_workers_up_and_run_ends_at_shutdown() -> None:
    """nursery.start(pool.run) returns once the workers run; run ends after shutdown."""
    pool = WorkerPool(echo, workers=3, name="native")
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        assert "running" == pool.status().state
        expected = [*(f"native-worker-{i}" for i in range(3)), "native-timekeeper"]
        assert sorted(expected) == pool_task_names(pool)
        assert "x" == await pool.execute("x")
        assert 1 == len(nursery.child_tasks)  # pool.run is still running
        await pool.shutdown()
        assert [] == pool_task_names(pool)
        await trio.testing.wait_all_tasks_blocked()
        assert not nursery.child_tasks  # pool.run returned
    assert "closed" == pool.status().state


@pytest.mark.trio
async def test_cancelling_the_nursery_cancels_the_pools_work() -> None:
    """Cancelling pool.run acts like shutdown(drain=False)."""
    gate = trio.Event()
    started = []

    async def handler(request: str) -> str:
        started.append(request)
        await gate.wait()
        return request

    pool = WorkerPool(handler, workers=1, name="cancelled-run")
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        running = await pool.submit("running")
        queued = await pool.submit("queued")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert (TicketState.CANCELLED, TicketState.CANCELLED) == (
        running.state,
        queued.state,
    )
    for ticket in (running, queued):
        with pytest.raises(RequestCancelled):
            await ticket.result()
    assert ["running"] == started
    assert "closed" == pool.status().state
    assert [] == pool_task_names(pool)
    with pytest.raises(PoolClosed):
        await pool.submit("late")


# -- timeouts at exact virtual times -------------------------------------------------


@pytest.mark.trio
async def test_queue_timeout_fires_at_its_exact_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """queue_timeout fails a waiting request at submitted_at + queue_timeout, unrun."""
    async with trio.open_nursery() as nursery:
        pool = WorkerPool(sleep_for, workers=1, name="qt")
        await nursery.start(pool.run)
        busy = await pool.submit(100)
        start = trio.current_time()
        impatient = await pool.submit(1, queue_timeout=5)
        behind = await pool.submit(1, priority=Priority.LOW)
        assert 1 == behind.position
        with pytest.raises(QueueTimeout):
            await impatient.result()
        assert 5 == trio.current_time() - start
        assert 5 == impatient.finished_at - impatient.submitted_at  # type: ignore[operator]
        assert None is impatient.started_at
        assert 0 == behind.position  # it left the queue then, not when a worker freed
        assert 100 == await busy.result()
        assert 100 == trio.current_time() - start
        await pool.shutdown()
    assert TicketState.SUCCEEDED is behind.state


@pytest.mark.trio
async def test_timeout_covers_waiting_and_running_at_exact_virtual_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """timeout counts from submission: it cuts a handler that began late, exactly."""
    async with trio.open_nursery() as nursery:
        pool = WorkerPool(sleep_for, workers=1, name="to")
        await nursery.start(pool.run)
        start = trio.current_time()
        first = await pool.submit(2)
        late = await pool.submit(60, timeout=5)  # waits 2 s, runs 3 s, then cut
        never = await pool.submit(1, timeout=1, priority=Priority.LOW)
        with pytest.raises(RequestTimeout):
            await never.result()
        assert (1, None) == (trio.current_time() - start, never.started_at)
        with pytest.raises(RequestTimeout, match="while running"):
            await late.result()
        assert 5 == trio.current_time() - start
        assert 2 == late.started_at - start  # type: ignore[operator]
        assert 5 == late.finished_at - late.submitted_at  # type: ignore[operator]
        assert TicketState.SUCCEEDED is first.state
        await pool.shutdown()
    health = pool.worker_health()[0]
    assert (2, 1) == (health.total_processed, health.total_errors)


@pytest.mark.trio
async def test_handler_swallowing_its_deadline_succeeds_at_that_moment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A handler that catches its timeout's cancellation and returns succeeds."""

    async def handler(request: str) -> str:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            return f"{request} anyway"

    async with trio.open_nursery() as nursery:
        pool = WorkerPool(handler, workers=1, name="swallow")
        await nursery.start(pool.run)
        ticket = await pool.submit("late", timeout=3)
        assert "late anyway" == await ticket.result()
        assert TicketState.SUCCEEDED is ticket.state
        assert 3 == ticket.finished_at - ticket.submitted_at  # type: ignore[operator]
        await pool.shutdown()
    status = pool.status()
    assert (1, 0) == (status.completed, status.timed_out)


@pytest.mark.trio
async def test_hung_after_is_exact(autojump_clock: trio.testing.MockClock) -> None:
    """A worker turns unhealthy once busy for longer than hung_after, not before."""
    async with trio.open_nursery() as nursery:
        pool = WorkerPool(hang, workers=1, hung_after=10, name="hung")
        await nursery.start(pool.run)
        ticket = await pool.submit("stuck")
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(10)
        assert pool.worker_health()[0].is_healthy
        await trio.sleep(0.5)
        assert not pool.worker_health()[0].is_healthy
        ticket.cancel()
        await pool.shutdown()


@pytest.mark.trio
async def test_shutdown_gives_up_exactly_drain_timeout_plus_cancel_grace_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A shielded handler holds shutdown for the drain timeout plus cancel_grace."""
    release = trio.Event()

    async def stubborn(request: str) -> str:
        with trio.CancelScope(shield=True):
            await release.wait()
        return request

    async with trio.open_nursery() as nursery:
        pool = WorkerPool(stubborn, workers=1, cancel_grace=1, name="grace")
        await nursery.start(pool.run)
        ticket = await pool.submit("stubborn")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        try:
            await pool.shutdown(timeout=4)
            assert 5 == trio.current_time() - start
            assert TicketState.CANCELLED is ticket.state
            assert 5 == ticket.finished_at - start  # type: ignore[operator]
            # Unhealthy from the very moment shutdown gives up on it.
            (health,) = pool.worker_health()
            assert (False, ticket.id) == (health.is_healthy, health.current_request)
            assert ["grace-worker-0"] == [
                name for name in pool_task_names(pool) if "-worker-" in name
            ]
        finally:
            release.set()  # even on failure: a shielded handler would hang the test
    assert [] == pool_task_names(pool)
    assert TicketState.CANCELLED is ticket.state


# -- checkpoints ---------------------------------------------------------------------


@pytest.mark.trio
async def test_channel_async_fast_paths_checkpoint_and_nowait_ones_do_not() -> None:
    """send/receive checkpoint even when they need not wait; *_nowait never do."""
    send, receive = create_priority_channel[int](2)
    with assert_checkpoints():
        await send.send(1)
    with assert_no_checkpoints():
        send.send_nowait(2, Priority.HIGH)
    with assert_checkpoints():
        assert 2 == await receive.receive()
    with assert_no_checkpoints():
        assert 1 == receive.receive_nowait()
    send.send_nowait(3)
    with assert_checkpoints():
        await send.aclose()
    with assert_checkpoints():
        assert 3 == await receive.receive()
    with assert_checkpoints():
        await receive.aclose()


@pytest.mark.trio
async def test_channel_fast_paths_are_cancellation_points_that_lose_nothing() -> None:
    """In a cancelled scope, send enqueues nothing and receive takes nothing."""
    send, receive = create_priority_channel[str](1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send.send("never sent")
    assert scope.cancelled_caught
    assert 0 == send.statistics().current_size
    send.send_nowait("kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        await receive.receive()
    assert scope.cancelled_caught
    assert "kept" == receive.receive_nowait()


@pytest.mark.trio
async def test_pool_async_fast_paths_checkpoint() -> None:
    """submit (each backpressure mode), execute and result() of a done ticket."""
    for mode in Backpressure:
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(
                echo, workers=1, max_queue_size=4, backpressure=mode, name="cp"
            )
            await nursery.start(pool.run)
            with assert_checkpoints():
                ticket = await pool.submit("a")
            with assert_no_checkpoints():
                pool.submit_nowait("b")
            with assert_checkpoints():
                assert "c" == await pool.execute("c")
            assert "a" == await ticket.result()
            with assert_checkpoints():
                assert "a" == await ticket.result()  # already done: still a checkpoint
            await pool.shutdown()
    with assert_checkpoints():
        await WorkerPool(echo).shutdown()  # a pool that never ran


# -- async for -----------------------------------------------------------------------


@pytest.mark.trio
async def test_async_for_ends_when_every_cloned_sender_has_closed() -> None:
    """Producers on clones send concurrently; async for ends after the last closes."""
    send, receive = create_priority_channel[tuple[int, int]](2)
    levels = {0: Priority.HIGH, 1: Priority.NORMAL, 2: Priority.NORMAL}

    async def produce(
        producer: int, channel: PrioritySendChannel[tuple[int, int]]
    ) -> None:
        async with channel:
            for i in range(10):
                await channel.send((producer, i), levels[producer])

    async with trio.open_nursery() as nursery:
        for producer in levels:
            nursery.start_soon(produce, producer, send.clone())
        send.close()  # the clones keep the channel open
        received = [item async for item in receive]
    assert Counter((p, i) for p in levels for i in range(10)) == Counter(received)
    for producer in levels:
        assert list(range(10)) == [i for p, i in received if p == producer]
    stats = receive.statistics()
    assert (0, 0, 0) == (
        stats.open_send_channels,
        stats.current_size,
        stats.tasks_waiting_receive,
    )


@pytest.mark.trio
async def test_async_for_waiting_receiver_wakes_when_the_last_sender_closes() -> None:
    """A receiver blocked in async for stops once the last clone closes."""
    send, receive = create_priority_channel[int]()
    extra = send.clone()
    received: list[int] = []
    finished = trio.Event()

    async def consume() -> None:
        received.extend([item async for item in receive])
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await send.send(1)
        send.close()
        await trio.testing.wait_all_tasks_blocked()
        waiting = receive.statistics()
        assert (1, 0, 1) == (
            waiting.open_send_channels,
            waiting.current_size,
            waiting.tasks_waiting_receive,
        )
        await extra.send(2)
        await trio.testing.wait_all_tasks_blocked()
        assert (0, 1) == (
            receive.statistics().current_size,
            receive.statistics().tasks_waiting_receive,
        )
        assert not finished.is_set()
        extra.close()
    assert [1, 2] == received
    assert finished.is_set()


# -- KeyboardInterrupt inside a critical section -------------------------------------


class InterruptingTask:
    """Stands for a waiting worker's task: SIGINT arrives while the channel asks it.

    The channel asks a waiting taker whether it is being cancelled after taking it
    off the waiting list and before waking it: the worst moment for a
    KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.armed = False
        self.fired = 0

    def has_pending_cancellation(self) -> bool:
        if self.armed:
            self.armed = False
            self.fired += 1
            signal.raise_signal(signal.SIGINT)
        return False


def test_ctrl_c_inside_send_nowait_loses_no_wake_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interrupt waits for the channel's state to be whole; shutdown then drains."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    waiting = InterruptingTask()
    # What a worker waiting in the pool's queue is known by.
    monkeypatch.setattr(queuekeeper._memory, "_MINDS_NOTHING", waiting)
    interrupted: list[str] = []

    async def main() -> None:
        pool = WorkerPool(echo, workers=1, name="ctrl-c")
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            await trio.testing.wait_all_tasks_blocked()  # the worker waits for work
            waiting.armed = True
            try:
                ticket = pool.submit_nowait("x")  # SIGINT lands inside this call
                await trio.lowlevel.checkpoint()  # ...and is raised here
            except KeyboardInterrupt:
                interrupted.append("interrupted")
            with trio.fail_after(10):  # a hang guard: a lost wake-up hangs here
                await pool.shutdown()
            assert (1, TicketState.SUCCEEDED) == (waiting.fired, ticket.state)

    trio.run(main)
    assert ["interrupted"] == interrupted


@pytest.mark.trio
async def test_handlers_stay_interruptible_and_bookkeeping_is_protected() -> None:
    """Ctrl-C may cut a handler at any point, but never the pool's bookkeeping."""
    seen: dict[str, bool] = {}

    class Observer:
        def attach(self, pool: object) -> None:
            """Accept any pool."""

        def submitted(self, pool: str, priority: int) -> None:
            seen["submitted"] = trio.lowlevel.currently_ki_protected()

        def rejected(self, pool: str, priority: int) -> None:
            """Not reached."""

        def started(self, pool: str, priority: int, wait: float) -> None:
            seen["started"] = trio.lowlevel.currently_ki_protected()

        def finished(
            self, pool: str, priority: int, outcome: object, d: object
        ) -> None:
            seen["finished"] = trio.lowlevel.currently_ki_protected()

    async def handler(request: str) -> str:
        seen["handler"] = trio.lowlevel.currently_ki_protected()
        await trio.lowlevel.checkpoint()
        seen["handler after a checkpoint"] = trio.lowlevel.currently_ki_protected()
        return request

    async with WorkerPool(handler, name="ki", metrics=Observer()) as pool:
        assert "x" == await pool.execute("x")
    assert {
        "submitted": True,
        "started": True,
        "handler": False,
        "handler after a checkpoint": False,
        "finished": True,
    } == seen


# -- the wait-time window ------------------------------------------------------------


@pytest.mark.trio
async def test_wait_percentiles_cover_the_most_recent_1024_requests_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """status() reports the waits of the last 1,024 requests to start, alone.

    3,000 requests queued at once on one worker taking 1 s each: request n waits
    n seconds.
    """
    async with WorkerPool(sleep_for, workers=1, name="window") as pool:
        tickets = [pool.submit_nowait(1) for _ in range(3000)]
        await tickets[-1].result()
        status = pool.status()
    # The window holds the waits 1976 s ... 2999 s; all 3,000 would give 1499.5 s.
    assert (2487.5, 2487.0, 2948.0, 2989.0) == (
        status.average_wait_time_ms / 1000,
        status.wait_time_ms_p50 / 1000,
        status.wait_time_ms_p95 / 1000,
        status.wait_time_ms_p99 / 1000,
    )
