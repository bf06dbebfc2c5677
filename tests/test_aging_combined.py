"""Aging and watched positions together with reserved workers, autoscale and coalescing.

With aging, or while positions are watched, the pool's queue holds its requests in
the ordered store instead of its per-level buckets: every way of taking or moving a
request must look there too.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

from helpers import Gate
from queuekeeper import Autoscale, Priority, WorkerPool
from queuekeeper._memory import MemoryQueue
from queuekeeper._order import OrderedStore

pytestmark = pytest.mark.anyio


class Named(Gate):
    """A gate that lets the requests named in *passing* through at once."""

    def __init__(self, *passing: str) -> None:
        super().__init__()
        self.passing = passing

    async def __call__(self, request: object) -> object:
        if request in self.passing:
            self.started.append(request)
            self.finished.append(request)
            return request
        return await super().__call__(request)


# -- aging and reserved workers -------------------------------------------------------


@pytest.mark.trio
async def test_a_waiting_reserved_worker_takes_a_request_that_aged_into_its_level(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A LOW request queued while the reserved worker waits runs once aged to HIGH."""
    gate = Named("low")
    async with WorkerPool(
        gate, workers=2, reserved={Priority.HIGH: 1}, aging=1.0
    ) as pool:
        await pool.submit("busy", priority=Priority.NORMAL)  # the unreserved worker
        await trio.testing.wait_all_tasks_blocked()
        low = await pool.submit("low", priority=Priority.LOW)
        await trio.testing.wait_all_tasks_blocked()
        assert ["busy"] == gate.started
        with trio.fail_after(10):
            assert "low" == await low.result()
        assert low.started_at is not None
        assert 1.9 < low.started_at - low.submitted_at < 2.1  # two levels: 2 s
        reserved = [h for h in pool.worker_health() if h.reserved_for is not None]
        assert 1 == reserved[0].total_processed
        gate.open.set()


@pytest.mark.trio
async def test_a_reserved_worker_that_frees_up_takes_the_best_aged_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """By effective level: the aged LOW request, not the younger NORMAL one."""
    release = trio.Event()
    started: list[str] = []

    async def handler(request: str) -> str:
        started.append(request)
        if request == "busy":
            await trio.sleep_forever()
        if request == "high":
            await release.wait()
        return request

    async with WorkerPool(
        handler, workers=2, reserved={Priority.HIGH: 1}, aging=1.0
    ) as pool:
        await trio.testing.wait_all_tasks_blocked()  # both workers wait
        await pool.submit("high", priority=Priority.HIGH)  # the reserved worker
        await pool.submit("busy", priority=Priority.NORMAL)  # the unreserved one
        low = await pool.submit("low", priority=Priority.LOW)
        await trio.sleep(1.5)
        normal = await pool.submit("normal", priority=Priority.NORMAL)
        await trio.sleep(0.7)  # low is at HIGH now, normal still at NORMAL
        assert (Priority.HIGH, Priority.NORMAL) == (
            low.effective_priority,
            normal.effective_priority,
        )
        assert ["high", "busy"] == started
        release.set()  # the reserved worker frees up; busy never does
        with trio.fail_after(10):
            assert "low" == await low.result()
        assert ["high", "busy", "low"] == started[:3]
        reserved = [h for h in pool.worker_health() if h.reserved_for is not None]
        assert reserved[0].total_processed >= 2  # high, then low
        # normal runs on the reserved worker too, once it has aged to HIGH.
        with trio.fail_after(10):
            assert "normal" == await normal.result()
        assert normal.started_at is not None
        assert normal.started_at - normal.submitted_at >= 1
        await pool.shutdown(drain=False)


async def test_take_within_nowait_keeps_the_limit_in_an_aging_queue() -> None:
    """take_within_nowait on the ordered store: the limit holds, and so does order."""
    queue: MemoryQueue[str] = MemoryQueue(10, aging=60.0)
    queue.reserve([Priority.HIGH])
    for request, level in [("low", 4), ("normal", 3), ("high", 2), ("crit", 1)]:
        queue.put_nowait(request, level)
    assert ["crit", "high", "normal", "low"] == queue.firsts()
    assert "crit" == queue.take_within_nowait(Priority.HIGH)
    assert "high" == queue.take_within_nowait(Priority.HIGH)
    assert queue.take_within_nowait(Priority.HIGH) is None
    assert queue.take_within_nowait(0) is None
    assert ["normal", "low"] == queue.firsts()


# -- aging or watched positions, and coalescing ---------------------------------------


async def test_a_coalesced_request_is_promoted_in_an_aging_queue() -> None:
    """A submit of the key at HIGH moves the queued LOW request ahead of NORMAL."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, aging=3600) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("k", priority=Priority.LOW, key="k")
        normal = await pool.submit("normal", priority=Priority.NORMAL)
        assert (1, 0) == (first.position, normal.position)
        second = await pool.submit("k", priority=Priority.HIGH, key="k")
        assert (0, 0, 1) == (first.position, second.position, normal.position)
        assert Priority.HIGH == second.effective_priority == first.effective_priority
        gate.open.set()
        assert "k" == await first.result() == await second.result()
        await normal.result()
        assert ["busy", "k", "normal"] == gate.started


async def test_watchers_follow_a_coalesced_request_promoted_while_watched() -> None:
    """Both the promoted request's watcher and the one it overtook see it move."""
    gate = Gate()
    seen: dict[str, list[int]] = {"k": [], "normal": []}
    async with WorkerPool(gate, workers=1) as pool, anyio.create_task_group() as tg:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("high", priority=Priority.HIGH)
        first = await pool.submit("k", priority=Priority.LOW, key="k")
        normal = await pool.submit("normal", priority=Priority.NORMAL)

        async def watch(name: str, ticket: Any) -> None:
            async for position in ticket.positions():
                seen[name].append(position)

        tg.start_soon(watch, "k", first)
        tg.start_soon(watch, "normal", normal)
        await anyio.wait_all_tasks_blocked()
        assert {"k": [2], "normal": [1]} == seen
        second = await pool.submit("k", priority=Priority.HIGH, key="k")
        await anyio.wait_all_tasks_blocked()
        assert {"k": [2, 1], "normal": [1, 2]} == seen
        assert 1 == first.position == second.position
        gate.open.set()
    assert ["busy", "high", "k", "normal"] == gate.started


async def test_a_sharer_sees_the_shared_requests_effective_priority() -> None:
    """effective_priority, positions() and eta() of a waiting sharer: the work's."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, aging=3600) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("high", priority=Priority.HIGH)
        first = await pool.submit("k", priority=Priority.NORMAL, key="k")
        second = await pool.submit("k", priority=Priority.LOW, key="k")
        assert Priority.NORMAL == second.effective_priority
        assert Priority.LOW == second.priority
        assert second.eta() is None  # nothing finished yet
        seen: list[int] = []

        async def watch() -> None:
            async for position in second.positions():
                seen.append(position)  # noqa: PERF401 (as they come)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            assert [1] == seen
            gate.open.set()
        assert 1 == seen[0]  # then it ends as the request starts
        assert "k" == await second.result()
        assert Priority.LOW == second.effective_priority  # settled: its own
        assert first.done()


async def test_an_idle_reserved_worker_starts_a_promoted_aging_request() -> None:
    """As without aging: promoted to its level, the request goes to it at once."""
    gate = Named("k")
    async with WorkerPool(
        gate, workers=2, reserved={Priority.HIGH: 1}, aging=3600
    ) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("k", priority=Priority.LOW, key="k")
        await anyio.wait_all_tasks_blocked()
        assert ["busy"] == gate.started
        second = await pool.submit("k", priority=Priority.HIGH, key="k")
        with anyio.fail_after(5):
            assert "k" == await first.result() == await second.result()
        gate.open.set()


# -- watched positions, resize and autoscale ------------------------------------------


async def test_a_watcher_follows_its_request_as_the_pool_grows() -> None:
    """resize() adds workers that take from the ordered store; the watcher sees it."""
    gate = Gate()
    seen: list[int] = []
    async with WorkerPool(gate, workers=1) as pool, anyio.create_task_group() as tg:
        tickets = [await pool.submit(i) for i in range(4)]

        async def watch() -> None:
            async for position in tickets[3].positions():
                seen.append(position)  # noqa: PERF401 (as they come)

        tg.start_soon(watch)
        await anyio.wait_all_tasks_blocked()
        assert [2] == seen
        pool.resize(3)
        await anyio.wait_all_tasks_blocked()
        assert 0 == seen[-1]
        assert [0, 1, 2] == gate.started
        pool.resize(4)
        await anyio.wait_all_tasks_blocked()
        assert [0, 1, 2, 3] == gate.started
        gate.open.set()
    assert 2 == seen[0]
    assert [0] == seen[-1:]


@pytest.mark.trio
async def test_autoscale_grows_while_requests_wait_in_an_aging_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The autoscaler sees how long the oldest request waited in the ordered store."""

    async def slow(request: int) -> int:
        await trio.sleep(1)
        return request

    sizes: list[int] = []
    settings = Autoscale(4, target_wait=0.5, cooldown=5)
    async with WorkerPool(slow, workers=1, autoscale=settings, aging=10.0) as pool:
        tickets = [await pool.submit(i) for i in range(20)]
        while not all(ticket.done() for ticket in tickets):
            sizes.append(pool.status().max_workers)
            await trio.sleep(0.1)
    assert 4 == max(sizes)


# -- the queue's own ways -------------------------------------------------------


async def test_reserved_takes_and_moves_on_the_ordered_store() -> None:
    """Watched (no aging) and aging queues: limits, blocked puts, moves, wake-ups."""
    watched: MemoryQueue[str] = MemoryQueue(1)
    watched.reserve([Priority.HIGH])
    watched.watch(Priority.LOW)  # the ordered store, without aging
    watched.put_nowait("low", Priority.LOW)
    assert watched.take_within_nowait(Priority.HIGH) is None
    async with anyio.create_task_group() as tg:
        tg.start_soon(watched.put, "high", Priority.HIGH)  # waits for room
        await anyio.wait_all_tasks_blocked()
        assert "high" == watched.take_within_nowait(Priority.HIGH)  # straight from it
        assert not watched.move("gone", Priority.LOW, Priority.HIGH)
        assert watched.move("low", Priority.LOW, Priority.HIGH)
        assert "low" == watched.take_within_nowait(Priority.HIGH)

    aging: MemoryQueue[str] = MemoryQueue(1, aging=60.0)
    aging.reserve([Priority.HIGH])
    aging.put_nowait("normal", Priority.NORMAL)
    async with anyio.create_task_group() as tg:
        tg.start_soon(aging.put, "crit", Priority.CRITICAL)  # waits for room
        await anyio.wait_all_tasks_blocked()
        assert "normal" == aging.take_within_nowait(Priority.NORMAL)  # admits crit
        assert ["crit"] == aging.firsts()
        assert "crit" == aging.take_within_nowait(Priority.CRITICAL)

    roomy: MemoryQueue[str] = MemoryQueue(10, aging=60.0)
    roomy.reserve([Priority.HIGH])
    taken: list[str] = []

    async def reserved() -> None:
        taken.append(await roomy.take_within(Priority.HIGH))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserved)
        await anyio.wait_all_tasks_blocked()
        roomy.put_nowait("low", Priority.LOW)  # reaches HIGH first: a look again
        await anyio.wait_all_tasks_blocked()
        roomy.put_nowait("later", Priority.LOW)  # reaches it later: no wake-up
        assert not roomy.move("gone", Priority.LOW, Priority.NORMAL)
        assert roomy.move("later", Priority.LOW, Priority.NORMAL)  # still queued
        assert roomy.move("low", Priority.LOW, Priority.HIGH)  # handed over
        await anyio.wait_all_tasks_blocked()
    assert ["low"] == taken
    assert ["later"] == roomy.firsts()


def test_when_a_request_ages_into_a_limit() -> None:
    """reaches(): never without aging or below 1; only levels beyond the limit."""
    strict: OrderedStore[str] = OrderedStore(None)
    strict.clock = lambda: 0.0
    strict.push("a", 4)
    assert math.inf == strict.reaches(2)
    store: OrderedStore[str] = OrderedStore(1.0)
    store.clock = lambda: 0.0
    assert math.inf == store.reaches(2)
    store.push("crit", 1)
    store.push("low", 4)
    assert 2.0 == store.reaches(2)
    assert math.inf == store.reaches(0)
