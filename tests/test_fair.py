"""Weighted fair sharing (``scheduling=WeightedFair(...)``), in-process.

The shares are exact by construction (stride scheduling), so the 5 % test is
deterministic: one worker, 10,000 starts with all four levels saturated.
"""

from __future__ import annotations

import math
from collections import Counter

import anyio
import anyio.lowlevel
import pytest

from queuekeeper import (
    Backpressure,
    Priority,
    StrictPriority,
    TicketState,
    WeightedFair,
    WorkerPool,
    create_priority_channel,
)
from queuekeeper._fair import FairStore

pytestmark = pytest.mark.anyio


async def idle(request: object) -> None:
    """A handler that does nothing."""
    await anyio.lowlevel.checkpoint()


WEIGHTS = WeightedFair(
    {
        Priority.CRITICAL: 8,
        Priority.HIGH: 4,
        Priority.NORMAL: 2,
        Priority.LOW: 1,
    }
)
LEVELS = (1, 2, 3, 4)


async def test_shares_converge_to_the_weights_within_5_percent() -> None:
    """Shares converge to the weights within 5 percent."""
    total = 10_000
    started: list[int] = []

    async def handler(level: int) -> None:
        started.append(level)
        await anyio.lowlevel.checkpoint()

    async with WorkerPool(handler, workers=4, scheduling=WEIGHTS) as pool:
        # Enough of each level that every level stays queued for 10,000 starts.
        tickets = [
            pool.submit_nowait(level, priority=level)
            for level in LEVELS
            for _ in range(total * 8 // 15 + 100)
        ]
        while len(started) < total:
            await anyio.lowlevel.checkpoint()
        await pool.shutdown(drain=False)
    shares = Counter(started[:total])
    for level in LEVELS:
        expected = WEIGHTS.weight(level) / 15
        assert abs(shares[level] / total - expected) <= 0.05 * expected, shares
    assert {t.state for t in tickets} <= {TicketState.SUCCEEDED, TicketState.CANCELLED}


async def test_strict_priority_is_the_default_and_starves_the_low_levels() -> None:
    """Strict priority is the default and starves the low levels."""
    # What the 5 % test would see without WeightedFair (so it tests the feature).
    started: list[int] = []

    async def handler(level: int) -> None:
        started.append(level)
        await anyio.lowlevel.checkpoint()

    async with WorkerPool(handler, workers=1, scheduling=StrictPriority()) as pool:
        for level in LEVELS:
            for _ in range(50):
                pool.submit_nowait(level, priority=level)
    assert started == sorted(started)


async def test_an_idle_levels_share_goes_to_the_others() -> None:
    """An idle levels share goes to the others."""
    started: list[int] = []

    async def handler(level: int) -> None:
        started.append(level)
        await anyio.lowlevel.checkpoint()

    async with WorkerPool(handler, workers=1, scheduling=WEIGHTS) as pool:
        # No HIGH, no NORMAL: CRITICAL and LOW share 8:1 and never idle.
        for _ in range(1_000):
            pool.submit_nowait(1, priority=1)
            pool.submit_nowait(4, priority=4)
        while len(started) < 900:
            await anyio.lowlevel.checkpoint()
        await pool.shutdown(drain=False)
    assert Counter(started[:900]) == {1: 800, 4: 100}


async def test_a_level_back_from_idle_has_saved_no_credit() -> None:
    """A level back from idle has saved no credit."""
    send, receive = create_priority_channel[int](scheduling=WEIGHTS)
    for _ in range(100):
        send.send_nowait(1, priority=1)
    for _ in range(50):  # CRITICAL alone: it has every start
        assert receive.receive_nowait() == 1
    for _ in range(100):
        send.send_nowait(4, priority=4)
    # LOW comes back: 1 start in 9, from now on, not a burst of catching up.
    assert Counter(receive.receive_nowait() for _ in range(45)) == {1: 40, 4: 5}


async def test_a_channel_shares_by_weight_and_is_fifo_within_a_level() -> None:
    """A channel shares by weight and is fifo within a level."""
    send, receive = create_priority_channel[tuple[int, int]](10_000, scheduling=WEIGHTS)
    for index in range(200):
        for level in LEVELS:
            send.send_nowait((level, index), priority=level)
    got = [receive.receive_nowait() for _ in range(150)]
    assert Counter(level for level, _ in got) == {1: 80, 2: 40, 3: 20, 4: 10}
    for level in LEVELS:
        order = [index for each, index in got if each == level]
        assert order == sorted(order)
    async with anyio.create_task_group() as tg:
        # A receiver that waits gets the next item whatever its level.
        for _ in range(650):
            receive.receive_nowait()
        got.clear()

        async def receive_one() -> None:
            got.append(await receive.receive())

        tg.start_soon(receive_one)
        await anyio.wait_all_tasks_blocked()
        await send.send((4, 0), priority=4)
    assert got == [(4, 0)]


async def test_aging_with_weighted_fair_is_refused() -> None:
    """Aging with weighted fair is refused."""
    with pytest.raises(ValueError, match=r"^aging=1\.0 cannot be given with sched"):
        create_priority_channel(aging=1.0, scheduling=WEIGHTS)
    with pytest.raises(ValueError, match=r"^aging=2 cannot be given with sched"):
        WorkerPool(idle, aging=2, scheduling=WEIGHTS)
    with pytest.raises(TypeError, match=r"^scheduling must be queuekeeper\.Strict"):
        create_priority_channel(scheduling="fair")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^scheduling must be queuekeeper\.Strict"):
        WorkerPool(idle, scheduling={1: 2})  # type: ignore[arg-type]
    # StrictPriority with aging is the plain aging channel.
    create_priority_channel(aging=1.0, scheduling=StrictPriority())


async def test_positions_count_in_the_weighted_order() -> None:
    """Positions count in the weighted order."""
    started: list[int] = []
    gate = anyio.Event()

    async def handler(index: int) -> None:
        await gate.wait()
        started.append(index)

    async with WorkerPool(handler, workers=1, scheduling=WEIGHTS) as pool:
        blocker = pool.submit_nowait(-1)
        await anyio.wait_all_tasks_blocked()
        assert blocker.state is TicketState.RUNNING
        tickets = []
        for index in range(60):
            level = LEVELS[index % 4] if index < 40 else 4
            tickets.append(pool.submit_nowait(index, priority=level))
        positions = [ticket.position for ticket in tickets]
        gate.set()
    # Each request started after exactly as many as its position said.
    order = started[1:]
    assert [order.index(index) for index in range(60)] == positions


async def test_watched_positions_follow_the_weighted_order() -> None:
    """Watched positions follow the weighted order."""
    gate = anyio.Event()
    later = anyio.Event()

    async def handler(index: int) -> None:
        # The first request waits for gate, the others for later: the worker
        # stops after each step the watcher must see.
        await (gate if index == -1 else later).wait()

    seen: list[int] = []
    async with WorkerPool(handler, workers=1, scheduling=WEIGHTS) as pool:
        pool.submit_nowait(-1)
        await anyio.wait_all_tasks_blocked()
        low = pool.submit_nowait(0, priority=Priority.LOW)
        for index in range(8):
            pool.submit_nowait(index, priority=Priority.CRITICAL)

        async def watch() -> None:
            async for position in low.positions():
                seen.append(position)  # noqa: PERF401 (each as it comes)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            # LOW (pass 0) goes after the CRITICAL requests at pass 0 (a better
            # level): one of them first.
            assert [1] == seen
            # A CRITICAL request whose pass comes after LOW's: behind it.
            extra = pool.submit_nowait(99, priority=Priority.CRITICAL)
            assert extra.position == 9
            gate.set()
            await anyio.wait_all_tasks_blocked()
            # The worker runs that CRITICAL request: LOW is next.
            assert [1, 0] == seen
            later.set()
        assert low.eta() is None
        await extra.result()
    assert [1, 0] == seen


async def test_reserved_workers_take_by_the_weighted_order() -> None:
    """Reserved workers take by the weighted order."""
    started: list[tuple[str, int]] = []
    gate = anyio.Event()

    async def handler(request: tuple[str, int]) -> None:
        started.append(request)
        if request[0] == "slow":
            await gate.wait()
        await anyio.lowlevel.checkpoint()

    async with WorkerPool(
        handler, workers=2, reserved={Priority.HIGH: 1}, scheduling=WEIGHTS
    ) as pool:
        await anyio.wait_all_tasks_blocked()
        # The reserved worker waits: a HIGH request is handed to it at once.
        pool.submit_nowait(("slow", 4), priority=Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        for index in range(4):
            pool.submit_nowait(("low", index), priority=Priority.LOW)
            pool.submit_nowait(("high", index), priority=Priority.HIGH)
            pool.submit_nowait(("critical", index), priority=Priority.CRITICAL)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    # The reserved worker never ran LOW; everything ran.
    assert len(started) == 13
    assert started[0] == ("slow", 4)
    assert [kind for kind, _ in started[1:9]].count("low") <= 1


async def test_cancel_shed_and_coalesce_under_weighted_fair() -> None:
    """Cancel shed and coalesce under weighted fair."""
    gate = anyio.Event()

    async def handler(request: int) -> int:
        await gate.wait()
        return request

    async with WorkerPool(
        handler,
        workers=1,
        max_queue_size=3,
        backpressure=Backpressure.SHED,
        scheduling=WEIGHTS,
    ) as pool:
        pool.submit_nowait(0)
        await anyio.wait_all_tasks_blocked()
        low = pool.submit_nowait(1, priority=Priority.LOW)
        normal = pool.submit_nowait(2, priority=Priority.NORMAL)
        keyed = await pool.submit(3, priority=Priority.LOW, key="k")
        # Full: a CRITICAL request sheds the newest LOW one.
        critical = pool.submit_nowait(4, priority=Priority.CRITICAL)
        assert keyed.state is TicketState.SHED
        assert low.cancel()
        assert not low.cancel()
        again = await pool.submit(5, priority=Priority.LOW, key="j")
        promoted = await pool.submit(5, priority=Priority.HIGH, key="j")
        assert again.state is TicketState.QUEUED
        assert pool.status().queue_size_by_priority == {1: 1, 2: 1, 3: 1}
        gate.set()
        assert await promoted.result() == 5
        assert await critical.result() == 4
        assert await normal.result() == 2


async def test_the_store_directly() -> None:
    """The store directly."""
    store = FairStore[str](WEIGHTS)
    nothing = object()
    assert store.pop(nothing) is nothing
    assert store.pop_within(2, nothing) is nothing
    assert store.rank("a", 1) is None
    assert store.pop_newest(0) is None
    assert not store.remove("a", 1)
    assert not store.remove_identity("a", 1)
    for level in range(1, 12):  # more levels than are kept when idle
        store.push(f"x{level}", level)
    store.push("first", 3, front=True)
    assert store.heads()[2] == "first"
    assert store.rank("nowhere", 3) is None
    assert store.pop_newest(11) is None
    assert store.pop_newest(3) == ("x11", 11)
    assert not store.remove("x5", 6)
    assert not store.remove_identity("x5", 6)
    assert store.remove("x6", 6)
    assert store.remove_identity(store.buckets[7][0], 7)
    assert store.pop_within(0, nothing) is nothing
    assert store.pop_within(3, nothing) == "x1"
    assert store.sizes() == {2: 1, 3: 2, 4: 1, 5: 1, 8: 1, 9: 1, 10: 1}
    assert [item for item, _ in store.clear()][:3] == ["x2", "first", "x3"]
    assert not store.sizes()
    assert store.next_token(math.inf) == math.inf
    assert store.limited_now() == {}


# -- a channel's batches ---------------------------------------------------------------


def _reference_order(
    weights: WeightedFair, script: list[tuple[str, int]]
) -> list[object]:
    """What a store that takes one item at a time gives for *script*."""
    store: FairStore[tuple[int, int]] = FairStore(weights)
    out: list[object] = []
    serial = 0
    for op, value in script:
        if op == "send":
            store.push((value, serial), value)
            serial += 1
        else:
            for _ in range(value):
                item = store.pop(None)
                if item is None:
                    break
                out.append(item)
    while (item := store.pop(None)) is not None:
        out.append(item)
    return out


@pytest.mark.parametrize("seed", range(40))
async def test_a_channel_takes_in_batches_exactly_the_order_of_single_takes(
    seed: int,
) -> None:
    """Batches change no order: sends, receives and statistics at random.

    Against a store that takes one item at a time; the weights are powers of
    two, so both compute the same passes to the last bit.
    """
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    weights = WeightedFair({1: 8, 2: 4, 3: 2, 4: 1, 9: 0.5})
    send, receive = create_priority_channel[tuple[int, int]](scheduling=weights)
    script: list[tuple[str, int]] = []
    got: list[object] = []
    serial = 0
    with send, receive:
        for _ in range(rng.randint(20, 200)):
            roll = rng.random()
            if roll < 0.45:
                for _ in range(rng.randint(1, 60)):
                    level = rng.choice([1, 2, 3, 4, 4, 9])
                    send.send_nowait((level, serial), level)
                    script.append(("send", level))
                    serial += 1
            elif roll < 0.9:
                count = rng.randint(1, 80)
                script.append(("receive", count))
                for _ in range(count):
                    try:
                        got.append(receive.receive_nowait())
                    except anyio.WouldBlock:  # noqa: PERF203 (a test)
                        break
            else:
                # What the statistics count includes what was taken ahead.
                stats = receive.statistics()
                assert stats.current_size == sum(stats.size_by_priority.values())
                assert list(stats.size_by_priority) == sorted(stats.size_by_priority)
        while True:
            try:
                got.append(receive.receive_nowait())
            except anyio.WouldBlock:  # noqa: PERF203 (a test)
                break
    assert _reference_order(weights, script) == got


def test_a_batch_put_back_leaves_the_store_as_single_takes_would() -> None:
    """unbatch() after 0, some, a whole cycle's and all but one of the takes."""
    weights = WeightedFair({1: 2, 2: 1})
    for taken in (0, 1, 3, 5):
        store: FairStore[int] = FairStore(weights)
        store.batching = True
        reference: FairStore[int] = FairStore(weights)
        for item in range(12):
            store.push(item, 1 + item % 2)
            reference.push(item, 1 + item % 2)
        assert store.pop(None) == reference.pop(None)  # fills a batch
        for _ in range(taken):
            assert store.pop(None) == reference.pop(None)
        store.push(100, 3)  # a new level: the batch goes back
        reference.push(100, 3)
        assert not store.batch
        assert (store.passes, store.vtime) == (reference.passes, reference.vtime)
        assert store.sizes() == reference.sizes()
        left = sum(reference.sizes().values())
        rest = [store.pop(None) for _ in range(left)]
        assert rest == [reference.pop(None) for _ in range(left)]


def test_a_push_to_the_front_or_a_removal_puts_the_batch_back() -> None:
    """Both need the items taken ahead back in their levels first."""
    store: FairStore[int] = FairStore(WEIGHTS)
    store.batching = True
    reference: FairStore[int] = FairStore(WEIGHTS)
    for each in (store, reference):
        for item in range(30):
            each.push(item, 1 + item % 4)
    assert store.pop(None) == reference.pop(None)
    assert store.batch
    for each in (store, reference):
        each.push(-1, 1, front=True)  # a receive given back
    assert not store.batch
    assert store.pop(None) == reference.pop(None)
    assert store.batch
    assert store.remove_identity(29, 2)
    assert reference.remove_identity(29, 2)
    assert not store.batch
    assert store.clear() == reference.clear()


def test_batches_over_many_levels_and_weights_with_no_cycle() -> None:
    """Levels dropped while taken ahead come back; an order that never repeats.

    With more levels than the store keeps idle deques for, a level emptied by a
    batch loses its deque and gets a new one when the batch goes back. Weights
    whose passes never move alike take one stretch of the order at a time.
    """
    many = WeightedFair(dict.fromkeys(range(10), 1.0))
    store: FairStore[int] = FairStore(many)
    store.batching = True
    for level in range(10):
        store.push(level, level)
    assert 0 == store.pop(None)
    assert len(store.batch) == 9
    store.push(100, 0)  # level 0 is empty: the batch goes back
    assert list(range(1, 10)) == [store.pop(None) for _ in range(9)]

    odd = WeightedFair({1: math.pi, 2: 1.0})
    store = FairStore(odd)
    store.batching = True
    reference: FairStore[int] = FairStore(odd)
    for item in range(3000):
        store.push(item, 1 + (item % 5 == 0))
        reference.push(item, 1 + (item % 5 == 0))
    assert [store.pop(None) for _ in range(3000)] == [
        reference.pop(None) for _ in range(3000)
    ]


def test_a_batch_holds_at_most_so_many_items() -> None:
    """One level of 10,000: batches of at most 4,096, in order."""
    store: FairStore[int] = FairStore(WEIGHTS)
    store.batching = True
    for item in range(10_000):
        store.push(item, 4)
    assert 0 == store.pop(None)
    assert len(store.batch) < 4096
    assert list(range(1, 10_000)) == [store.pop(None) for _ in range(9_999)]
    assert store.pop(None) is None
