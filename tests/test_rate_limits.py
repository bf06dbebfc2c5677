"""Per-level rate limits (``rate_limits={level: RateLimit(...)}``), in-process.

Time matters here, so the limit itself is proven on Trio's ``MockClock``: no
window ever holds more starts than ``rate * window + burst``, while requests of
other levels start at once and no worker waits on a token.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from helpers import run_on_virtual_time
from queuekeeper import (
    Backpressure,
    Priority,
    RateLimit,
    TicketState,
    WeightedFair,
    WorkerPool,
)
from queuekeeper._fair import FairStore, Waiter
from queuekeeper._memory import RETIRE, MemoryQueue

pytestmark = pytest.mark.anyio


async def idle(request: object) -> None:
    """A handler that does nothing."""
    await anyio.lowlevel.checkpoint()


LOW = int(Priority.LOW)


def _max_in_window(times: list[float], window: float) -> int:
    """The most of *times* (sorted) within any closed window of *window* seconds."""
    most = 0
    start = 0
    for end, when in enumerate(times):
        while when - times[start] > window + 1e-9:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_the_limit_holds_other_levels_start_at_once_and_no_worker_waits() -> None:
    """The limit holds other levels start at once and no worker waits."""
    rate, per, burst = 5, 1.0, 3
    starts: dict[int, list[float]] = {1: [], LOW: []}
    critical_waits: list[float] = []

    async def scenario() -> None:
        async def handler(request: tuple[int, float]) -> None:
            level, submitted = request
            now = anyio.current_time()
            starts[level].append(now)
            if level == 1:
                critical_waits.append(now - submitted)
            await anyio.sleep(0.01)

        async with WorkerPool(
            handler, workers=3, rate_limits={LOW: RateLimit(rate, per=per, burst=burst)}
        ) as pool:
            lows = [
                pool.submit_nowait((LOW, anyio.current_time()), priority=LOW)
                for _ in range(40)
            ]
            await anyio.sleep(2.1)  # between two tokens: LOW waits for one
            status = pool.status()
            assert status.active_workers == 0  # nobody holds a worker
            assert status.rate_limited_now == status.queue_size > 0
            assert status.rate_limited_now_by_priority == {LOW: status.queue_size}
            for _ in range(10):
                now = anyio.current_time()
                pool.submit_nowait((1, now), priority=Priority.CRITICAL)
                await anyio.sleep(0.13)
            for ticket in lows:
                await ticket.result()
            status = pool.status()
        assert status.rate_limited == 40 - burst
        assert status.rate_limited_by_priority == {LOW: 40 - burst}
        assert status.rate_limited_now == 0
        assert status.rate_limited_now_by_priority == {LOW: 0}

    run_on_virtual_time(scenario)
    times = sorted(starts[LOW])
    assert len(times) == 40
    for window in (0.0, 0.1, 0.5, 1.0, 2.0, 5.0):
        assert _max_in_window(times, window) <= rate * window / per + burst
    # Without the limit all 40 would start within 0.2 s: it held them back.
    assert times[-1] - times[0] >= (40 - burst) * per / rate - 1e-9
    assert critical_waits == [0.0] * 10


async def test_a_take_waiting_for_a_token_is_cancel_safe() -> None:
    """A take waiting for a token is cancel safe."""
    queue = MemoryQueue[str](math.inf, rate_limits={LOW: RateLimit(1, per=10.0)})
    queue.put_nowait("a", LOW)
    queue.put_nowait("b", LOW)
    assert await queue.take() == "a"
    with anyio.move_on_after(0.01) as scope:
        await queue.take()  # no token for 10 s
    assert scope.cancelled_caught
    assert queue.sizes() == (1, {LOW: 1})
    assert queue.take_nowait() is None
    # Another level is not held up meanwhile.
    queue.put_nowait("c", 1)
    assert await queue.take() == "c"
    assert queue.drain() == ["b"]  # a drain takes everything, tokens or not
    assert queue.take_nowait() is None


async def test_a_woken_taker_cancelled_hands_its_look_on() -> None:
    """A woken taker cancelled hands its look on."""
    queue = MemoryQueue[str](math.inf, rate_limits={LOW: RateLimit(1)})
    got: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def first() -> None:
            with scope:
                got.append(await queue.take())

        async def second() -> None:
            got.append(await queue.take())

        tg.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the first taker is being cancelled...
        queue.put_nowait("x", 1)  # ...as a put wakes it: it hands its look on
    assert got == ["x"]
    assert queue.sizes()[0] == 0


async def test_a_put_wakes_a_waiting_taker_and_close_ends_it() -> None:
    """A put wakes a waiting taker and close ends it."""
    queue = MemoryQueue[str](math.inf, rate_limits={LOW: RateLimit(1, burst=2)})
    got: list[str] = []

    async def take() -> None:
        try:
            got.append(await queue.take())
        except anyio.EndOfStream:
            got.append("end")

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        queue.put_nowait("a", LOW)
        queue.put_nowait("b", LOW)
        await anyio.wait_all_tasks_blocked()
        assert sorted(got) == ["a", "b"]
        queue.close()
    assert sorted(got) == ["a", "b", "end", "end"]
    assert queue.rate_limited() == ({LOW: 0}, {LOW: 0})
    assert MemoryQueue[str](math.inf).rate_limited() == ({}, {})


async def test_reserved_workers_obey_the_limits_too() -> None:
    """Reserved workers obey the limits too."""
    starts: list[tuple[str, float]] = []

    async def handler(request: str) -> None:
        starts.append((request, anyio.current_time()))
        await anyio.lowlevel.checkpoint()

    async with WorkerPool(
        handler,
        workers=2,
        reserved={Priority.HIGH: 1},
        rate_limits={Priority.HIGH: RateLimit(1, per=0.05)},
    ) as pool:
        await anyio.wait_all_tasks_blocked()
        tickets = [
            pool.submit_nowait(f"h{i}", priority=Priority.HIGH) for i in range(3)
        ]
        tickets.append(pool.submit_nowait("n", priority=Priority.NORMAL))
        for ticket in tickets:
            await ticket.result()
    highs = [when for request, when in starts if request.startswith("h")]
    assert len(highs) == 3
    assert highs[2] - highs[0] >= 0.1 - 0.01


async def test_workers_waiting_for_tokens_retire_on_a_shrink() -> None:
    """Workers waiting for tokens retire on a shrink."""

    async def handler(request: int) -> int:
        await anyio.lowlevel.checkpoint()
        return request

    async with WorkerPool(
        handler, workers=3, rate_limits={LOW: RateLimit(100)}
    ) as pool:
        await anyio.wait_all_tasks_blocked()
        pool.resize(1)
        await anyio.wait_all_tasks_blocked()
        assert len(pool.worker_health()) == 1
        assert await pool.execute(7, priority=LOW) == 7


async def test_blocked_submits_move_in_as_requests_leave() -> None:
    """Blocked submits move in as requests leave."""
    order: list[int] = []

    async def handler(request: int) -> None:
        order.append(request)
        await anyio.lowlevel.checkpoint()

    async with (
        WorkerPool(
            handler,
            workers=1,
            max_queue_size=2,
            backpressure=Backpressure.BLOCK,
            rate_limits={LOW: RateLimit(1, per=0.01, burst=1)},
            scheduling=WeightedFair({1: 1, LOW: 1}),
        ) as pool,
        anyio.create_task_group() as tg,
    ):
        for index in range(8):
            level = 1 if index % 2 else LOW
            tg.start_soon(partial(pool.execute, index, priority=level))
    assert sorted(order) == list(range(8))


async def test_a_blocked_submit_is_taken_straight_when_it_may_start() -> None:
    """A blocked submit is taken straight when it may start."""
    queue = MemoryQueue[str](2, rate_limits={LOW: RateLimit(1, per=10.0)})
    queue.on_admit = lambda _: None
    queue.put_nowait("l1", LOW)
    queue.put_nowait("l2", LOW)
    assert queue.take_nowait() == "l1"
    queue.put_nowait("l3", LOW)

    async def refused_put() -> None:
        with pytest.raises(anyio.ClosedResourceError):
            await queue.put("l4", LOW)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refused_put)
        tg.start_soon(queue.put, "c", 1)
        await anyio.wait_all_tasks_blocked()
        # Full of LOW without a token: the CRITICAL submit is taken from its
        # submitter; the blocked LOW one stays blocked.
        assert queue.take_within_nowait(LOW) == "c"
        assert queue.take_nowait() is None
        queue.close()
    assert queue.drain() == ["l2", "l3"]


async def test_bad_rate_limits_are_refused() -> None:
    """Bad rate limits are refused."""
    with pytest.raises(TypeError, match=r"^rate_limits must be None or a mapping"):
        WorkerPool(idle, rate_limits=[RateLimit(1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^rate_limits\[4\] must be a queuekeeper"):
        WorkerPool(idle, rate_limits={4: 10})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^RateLimit rate must be a finite number"):
        RateLimit(0)


async def test_a_shutdown_drains_at_the_rate_or_cancels_what_waits() -> None:
    """A shutdown drains at the rate or cancels what waits."""
    seen: list[Any] = []

    async def handler(request: int) -> None:
        seen.append(request)
        await anyio.lowlevel.checkpoint()

    pool = WorkerPool(handler, workers=2, rate_limits={LOW: RateLimit(1, per=3600)})
    async with pool:
        tickets = [pool.submit_nowait(index, priority=LOW) for index in range(3)]
        await anyio.wait_all_tasks_blocked()
        await pool.shutdown(drain=False)
    assert [ticket.state for ticket in tickets] == [
        TicketState.SUCCEEDED,
        TicketState.CANCELLED,
        TicketState.CANCELLED,
    ]
    assert seen == [0]
    assert RETIRE is not None


async def test_the_store_with_limits_directly() -> None:
    """The store with limits directly."""
    store = FairStore[str](None, {LOW: RateLimit(1, per=1.0, burst=2)})
    now = [100.0]
    store.clock = lambda: now[0]
    store.wake_one()  # nobody waits: nothing happens
    reserved = Waiter(1, anyio.Event())
    store.waiters.append(reserved)
    store.push("l1", LOW)  # the reserved taker may not take it: still waits
    assert store.waiters == [reserved]
    assert not reserved.woken
    assert store.next_token(1) == math.inf  # nothing at its levels
    assert store.next_token(LOW) < now[0]  # a token now
    assert store.limited_now() == {}  # LOW has tokens
    assert store.spend(LOW)
    assert store.spend(LOW)
    assert not store.spend(LOW)  # the burst is spent
    assert store.spend(1)  # no limit there
    assert store.limited_now() == {LOW: 1}
    assert store.next_token(LOW) == 101.0
    store.push("c", 1)  # wakes the reserved taker
    assert reserved not in store.waiters
    assert store.next_token(LOW) == -math.inf  # CRITICAL may start now
    # Positions in strict order; watchers woken by every change.
    event = store.watching(LOW)
    assert store.watching(LOW) is event
    assert store.rank("l1", LOW) == (1, math.inf)
    assert store.remove("c", 1)
    assert event.is_set()
    store.unwatch(LOW)
    assert store.watch
    store.unwatch(LOW)
    assert not store.watch
    assert store.pop(None) is None  # no token until 101
    now[0] = 101.0
    assert store.pop(None) == "l1"


async def test_a_taker_told_to_retire_as_it_is_cancelled_leaves_quietly() -> None:
    """A taker told to retire as it is cancelled leaves quietly."""
    queue = MemoryQueue[str](math.inf, rate_limits={LOW: RateLimit(1)})
    outcome: list[object] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def take() -> None:
            with scope:
                outcome.append(await queue.take())

        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        assert queue.retire_waiting(2) == 1
    assert outcome in ([], [RETIRE])  # cancelled, or told to retire first
    assert queue.retire_waiting(1) == 0
    queue.put_nowait("a", LOW)
    assert await queue.take() == "a"


async def test_metrics_count_the_rate_limited_waits() -> None:
    """Metrics count the rate limited waits."""
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 (an extra)

    from queuekeeper import PrometheusMetrics  # noqa: PLC0415

    registry = CollectorRegistry()
    gate = anyio.Event()

    async def handler(request: int) -> None:
        await gate.wait()

    async with WorkerPool(
        handler,
        workers=3,
        name="r",
        metrics=PrometheusMetrics(registry),
        rate_limits={LOW: RateLimit(1, per=3600)},
    ) as pool:
        for index in range(3):
            pool.submit_nowait(index, priority=LOW)
        await anyio.wait_all_tasks_blocked()
        labels = {"pool": "r", "priority": "low"}
        assert registry.get_sample_value("queuekeeper_rate_limited_total", labels) == 1
        assert registry.get_sample_value("queuekeeper_queue_rate_limited", labels) == 2
        gate.set()
        await pool.shutdown(drain=False)
