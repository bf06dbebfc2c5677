"""Aging (``aging=``), live positions (``Ticket.positions()``) and ``Ticket.eta()``.

The starvation bound is a property test on Trio's ``MockClock``: under a
continuous flood of HIGH requests a LOW request starts within ``2 * aging`` plus
the service time of what is ahead of it, and without aging it never does.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_on_virtual_time
from queuekeeper import (
    Backpressure,
    Priority,
    TicketState,
    WorkerPool,
    create_priority_channel,
)
from queuekeeper._memory import MemoryQueue
from queuekeeper._order import GONE, AgingBuckets, OrderedStore, aged_level, ahead_of

if TYPE_CHECKING:
    from queuekeeper import Ticket

pytestmark = pytest.mark.anyio


async def idle(request: object) -> object:
    """A handler that returns its request."""
    await anyio.lowlevel.checkpoint()
    return request


# -- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (
            "1",
            TypeError,
            r"^aging must be None or a number of seconds > 0, not '1' \(str\)$",
        ),
        (
            True,
            TypeError,
            r"^aging must be None or a number of seconds > 0, not True \(bool\)$",
        ),
        (
            0,
            ValueError,
            r"^aging must be None or a finite number of seconds > 0, not 0$",
        ),
        (
            -1.5,
            ValueError,
            r"^aging must be None or a finite number of seconds > 0, not -1\.5$",
        ),
        (
            math.inf,
            ValueError,
            r"^aging must be None or a finite number of seconds > 0, not inf$",
        ),
        (
            10**400,
            ValueError,
            r"^aging must be None or a finite number of seconds > 0, not too large$",
        ),
    ],
)
def test_bad_aging_is_refused_at_construction(
    value: object, error: type[Exception], message: str
) -> None:
    """The pool and the channel name a bad aging period."""
    with pytest.raises(error, match=message):
        WorkerPool(idle, aging=value)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        create_priority_channel(aging=value)  # type: ignore[arg-type]


def test_aged_level_gains_a_level_per_period_and_stops_at_critical() -> None:
    """One level per period; never past 1; a level of 1 or below never moves."""
    assert [4, 4, 3, 2, 1, 1] == [aged_level(4, w, 2.0) for w in (0, 1.9, 2, 4, 6, 60)]
    assert [1, 0, -3] == [aged_level(level, 100.0, 1.0) for level in (1, 0, -3)]
    assert 10 == aged_level(10, 100.0, None)


# -- the channel --------------------------------------------------------------------


async def test_an_aged_item_goes_ahead_of_younger_items_of_its_new_level() -> None:
    """LOW items that waited two periods are received before HIGH ones sent later."""
    send, receive = create_priority_channel[str](aging=10.0)
    with send, receive:
        send.send_nowait("low-1", Priority.LOW)
        send.send_nowait("low-2", Priority.LOW)
        store = send._state.store
        assert isinstance(store, AgingBuckets)
        bucket = store.buckets[Priority.LOW]
        for index, (born, seq, item) in enumerate(bucket):
            bucket[index] = (born - 20.0, seq, item)  # as if sent 20 s ago
        store.calm = -math.inf  # (what the store knew of their age)
        send.send_nowait("high", Priority.HIGH)
        send.send_nowait("critical", Priority.CRITICAL)
        await send.send("normal", Priority.NORMAL)
        got = [await receive.receive() for _ in range(5)]
    assert ["critical", "low-1", "low-2", "high", "normal"] == got


async def test_without_age_the_aging_channel_keeps_strict_priority() -> None:
    """Young items go by level, then FIFO; statistics count them by level."""
    send, receive = create_priority_channel[int](5, aging=3600.0)
    for n, level in enumerate([4, 2, 4, 0, 2]):
        send.send_nowait(n, level)
    assert {0: 1, 2: 2, 4: 2} == dict(send.statistics().size_by_priority)
    assert [3, 1, 4, 0, 2] == [receive.receive_nowait() for _ in range(5)]
    send.close()
    assert [] == [item async for item in receive]


# -- the store against a model --------------------------------------------------------


def test_items_given_back_twice_tie_with_no_other_level() -> None:
    """Two items given back ahead of a level's head, then aged level with another.

    Each goes just ahead of the head it was given back before, and after every
    item submitted before that head (a tie here once ranked it first).
    """
    assert [1.5, 1.25, 1.125] == [ahead_of(2), ahead_of(1.5), ahead_of(1.25)]
    stores: list[OrderedStore[str] | AgingBuckets[str]] = [
        OrderedStore[str](1.0, track=True),
        AgingBuckets[str](1.0),
    ]
    for store in stores:
        now = [0.0]

        def clock(now: list[float] = now) -> float:
            return now[0]

        store.clock = clock
        store.push("first", 1)
        store.push("second", 5)
        store.push("given back", 5, front=True)
        store.push("given back again", 5, front=True)
        now[0] = 4.0  # every level has aged to 1
        if isinstance(store, OrderedStore):
            order = ["first", "given back again", "given back", "second"]
            ranks = [store.rank(item, 1 if item == "first" else 5) for item in order]
            assert [0, 1, 2, 3] == [rank and rank[0] for rank in ranks]
        got = [store.pop(None) for _ in range(4)]
        assert ["first", "given back again", "given back", "second"] == got


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["push", "front", "pop", "remove", "evict", "tick"]),
            st.integers(0, 5),
            st.integers(0, 10**6),
        ),
        max_size=120,
    ),
    aging=st.sampled_from([None, 1.0, 2.5]),
)
def test_the_store_agrees_with_a_sorted_model(
    ops: list[tuple[str, int, int]], aging: float | None
) -> None:
    """Pops, ranks, removals, evictions and effective levels match a brute force."""
    now = [0.0]
    store: OrderedStore[int] = OrderedStore(aging, track=True)
    store.clock = lambda: now[0]
    # model: item -> [level, seq, born]
    model: dict[int, list[float]] = {}
    names = iter(range(10**9))

    def key(item: int) -> tuple[int, float]:
        level, seq, born = model[item]
        return aged_level(int(level), now[0] - born, aging), seq

    for op, level, pick in ops:
        ordered = sorted(model, key=key)
        if op == "push" or (op == "front" and not ordered):
            item = next(names)
            store.push(item, level)
            model[item] = [level, store.seq, now[0]]
        elif op == "front":
            item = next(names)
            store.push(item, level, front=True)
            same = [m for m in model if model[m][0] == level]
            if same:
                head = min(same, key=lambda m: model[m][1])
                model[item] = [level, ahead_of(model[head][1]), model[head][2]]
            else:
                model[item] = [level, store.seq, now[0]]
        elif op == "pop":
            expected = ordered[0] if ordered else None
            assert expected == store.pop(None)
            model.pop(expected, None)  # type: ignore[arg-type]
        elif op == "remove" and ordered:
            item = ordered[pick % len(ordered)]
            assert store.remove(item, int(model[item][0]))
            assert not store.remove(item, int(model[item][0]))
            del model[item]
        elif op == "evict":
            top = max((model[m][0] for m in model), default=None)
            got = store.pop_newest(level)
            if top is None or top <= level:
                assert got is None
            else:
                newest = max(
                    (m for m in model if model[m][0] == top), key=lambda m: model[m][1]
                )
                assert (newest, int(top)) == got
                del model[newest]
        else:
            now[0] += pick / 10**5
        assert len(model) == store.size
        ordered = sorted(model, key=key)
        for position, item in enumerate(ordered):
            level_of = int(model[item][0])
            found = store.rank(item, level_of)
            assert found is not None
            assert position == found[0]
            assert found[1] > now[0]
            assert key(item)[0] == store.effective(item, level_of)
    assert sorted(model, key=key) == [item for item, _ in _drain(store)]


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["push", "front", "pop", "remove", "tick"]),
            st.integers(0, 11),
            st.integers(0, 10**6),
        ),
        max_size=150,
    ),
    aging=st.sampled_from([1.0, 2.5]),
)
def test_the_aging_buckets_agree_with_the_ordered_store(
    ops: list[tuple[str, int, int]], aging: float
) -> None:
    """A channel's light store takes, removes and counts as an OrderedStore does.

    On a fake clock that moves in steps of a quarter second, so that items tie
    on arrival time and heads reach a period's boundary exactly.
    """
    now = [0.0]
    light: AgingBuckets[int] = AgingBuckets(aging)
    light.clock = lambda: now[0]
    ordered: OrderedStore[int] = OrderedStore(aging)
    ordered.clock = lambda: now[0]
    queued: list[tuple[int, int]] = []
    names = iter(range(10**9))
    for op, level, pick in ops:
        if op in {"push", "front"}:
            item = next(names)
            light.push(item, level, front=op == "front")
            ordered.push(item, level, front=op == "front")
            queued.append((item, level))
        elif op == "pop":
            got = ordered.pop(None)
            assert got == light.pop(None)
            queued = [entry for entry in queued if entry[0] != got]
        elif op == "remove" and queued:
            item, at = queued.pop(pick % len(queued))
            assert not light.remove_identity(item, at + 1)
            assert light.remove_identity(item, at)
            assert ordered.remove_identity(item, at)
            assert not light.remove_identity(item, at)
        else:
            now[0] += (pick % 7) * 0.25
        assert ordered.sizes() == light.sizes()
        assert ordered.heads() == light.heads()
        # What the channel's inlined receive reads instead of ``order``.
        assert light.first is (light.buckets[light.order[0]] if light.order else None)
        assert light.mixed == (len(light.order) > 1)
    assert ordered.clear() == light.clear()
    assert light.pop(None) is None
    assert {} == light.sizes()


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["send", "receive", "give_back", "take_back", "tick"]),
            st.integers(0, 5),
            st.integers(0, 10**6),
        ),
        max_size=150,
    ),
    aging=st.sampled_from([1.0, 2.5]),
)
def test_an_aging_channel_takes_as_the_ordered_store_does(
    ops: list[tuple[str, int, int]], aging: float
) -> None:
    """The channel's inlined steps keep the order of an OrderedStore."""
    now = [0.0]
    send, receive = create_priority_channel[int](aging=aging)
    state = send._state
    assert state.store is not None
    state.store.clock = lambda: now[0]
    ordered: OrderedStore[int] = OrderedStore(aging)
    ordered.clock = lambda: now[0]
    queued: list[tuple[int, int]] = []
    names = iter(range(10**9))
    for op, level, pick in ops:
        if op in {"send", "give_back"}:
            item = next(names)
            if op == "send":
                send.send_nowait(item, level)
            else:
                state.give_back(item, level)
            ordered.push(item, level, front=op == "give_back")
            queued.append((item, level))
        elif op == "receive":
            expected = ordered.pop(None)
            if expected is None:
                with pytest.raises(anyio.WouldBlock):
                    receive.receive_nowait()
            else:
                assert expected == receive.receive_nowait()
                queued = [entry for entry in queued if entry[0] != expected]
        elif op == "take_back" and queued:
            item, at = queued.pop(pick % len(queued))
            assert state.take_back(item, at)
            assert ordered.remove_identity(item, at)
        else:
            now[0] += (pick % 7) * 0.25
        assert ordered.sizes() == dict(send.statistics().size_by_priority)
        assert len(queued) == send.statistics().current_size
        light = state.aged
        assert light is not None
        assert light.first is (light.buckets[light.order[0]] if light.order else None)
        assert light.mixed == (len(light.order) > 1)


def test_removing_what_is_not_queued_finds_nothing() -> None:
    """remove_identity() is False for an absent level, item, or emptied level."""
    stores: list[AgingBuckets[int] | OrderedStore[int]] = [
        AgingBuckets(1.0),
        OrderedStore(1.0),
    ]
    for store in stores:
        store.clock = lambda: 0.0
        assert not store.remove_identity(1, 3)  # no such level
        store.push(1, 3)
        assert not store.remove_identity(2, 3)  # not in its level
        assert store.remove_identity(1, 3)
        assert not store.remove_identity(1, 3)  # its level emptied


def test_the_aging_buckets_drop_idle_levels_beyond_a_few() -> None:
    """Emptied levels keep their deques up to a point, not for every level seen."""
    store: AgingBuckets[int] = AgingBuckets(1.0)
    store.clock = lambda: 0.0
    for level in range(12):
        store.push(level, level)
    assert list(range(12)) == [store.pop(None) for _ in range(12)]
    assert len(store.buckets) <= 8
    assert store.pop(None) is None


async def test_the_aging_buckets_read_the_running_backends_clock(
    anyio_backend_name: str,
) -> None:
    """The first clock read binds a clock that runs as the backend's does."""
    store: AgingBuckets[str] = AgingBuckets(1.0)
    store.push("a", 3)
    plain = time.monotonic if anyio_backend_name == "asyncio" else time.perf_counter
    assert plain is store.clock
    assert ["a"] == store.heads()


def test_the_aging_buckets_keep_a_virtual_clock() -> None:
    """A clock that is not the system's (Trio's MockClock) is read as it is."""

    async def scenario() -> tuple[float, float]:
        store: AgingBuckets[str] = AgingBuckets(1.0)
        store.push("a", 3)
        await anyio.sleep(5.0)
        return store.clock(), anyio.current_time()

    ours, theirs = run_on_virtual_time(scenario)
    assert ours == theirs


def _drain(store: OrderedStore[int]) -> list[tuple[int, int]]:
    out = []
    while store.size:
        item = store.pop(GONE)
        out.append((item, 0))
    return out  # type: ignore[return-value]


def test_a_long_lived_level_is_compacted_and_keeps_its_holes_right() -> None:
    """Takes and removals far along one level keep positions exact."""
    store: OrderedStore[int] = OrderedStore(None, track=True)
    store.clock = lambda: 0.0
    for n in range(1000):
        store.push(n, 3)
    for n in range(0, 1000, 7):
        store.remove(n, 3)
    for _ in range(600):
        store.pop(None)
    alive = [n for n in range(1000) if n % 7][600:]
    assert [store.rank(n, 3) for n in alive[:3]] == [
        (0, math.inf),
        (1, math.inf),
        (2, math.inf),
    ]
    assert len(store.levels[3].items) < 1000  # compacted


# -- the pool -----------------------------------------------------------------------


def test_effective_priority_shows_the_level_the_request_competes_at() -> None:
    """priority stays as submitted; effective_priority ages, also once it ran."""

    async def scenario() -> None:
        gate = anyio.Event()

        async def hold(request: int) -> int:
            await gate.wait()
            return request

        async with WorkerPool(hold, workers=1, aging=1.0) as pool:
            blocker = await pool.submit(0)
            low = await pool.submit(1, priority=Priority.LOW)
            custom = await pool.submit(2, priority=0)
            assert (Priority.LOW, Priority.LOW) == (
                low.priority,
                low.effective_priority,
            )
            await anyio.sleep(2.5)
            assert (Priority.LOW, Priority.HIGH) == (
                low.priority,
                low.effective_priority,
            )
            await anyio.sleep(10)
            assert Priority.CRITICAL == low.effective_priority
            assert 0 == custom.effective_priority
            assert Priority.NORMAL == blocker.effective_priority  # ran at once
            gate.set()
            await low.result()
        assert Priority.CRITICAL == low.effective_priority  # the level it ran at

    run_on_virtual_time(scenario)


async def test_without_aging_effective_priority_is_the_priority() -> None:
    """No aging: the two are the same, queued or not."""
    async with WorkerPool(idle, workers=1) as pool:
        ticket = await pool.submit(1, priority=Priority.LOW)
        assert Priority.LOW == ticket.effective_priority
        await ticket.result()
        assert Priority.LOW == ticket.effective_priority


def _flood(
    aging: float | None,
    service: float,
    workers: int,
    *,
    producers: int = 0,
    warmup: int = 4,
    horizon: float,
) -> tuple[float | None, int]:
    """Flood a pool with HIGH requests; submit one LOW; when did it start?

    With *producers*, each keeps one HIGH request in the pool (submitting the
    next when the last finished): a flood the workers keep up with, whose
    requests each wait less than ``aging``. Without, HIGH requests come at
    twice the rate the workers serve them: an overload, whose waits grow.

    Returns how long after its submission the LOW request started (``None`` if
    it had not within *horizon* seconds of flood), and the HIGH requests queued
    ahead of it when it was submitted.
    """
    result: list[Any] = []

    async def scenario() -> None:
        async def serve(request: str) -> str:
            await anyio.sleep(service)
            return request

        pool = WorkerPool(serve, workers=workers, aging=aging)
        async with pool:
            async with anyio.create_task_group() as tasks:

                async def produce() -> None:
                    while True:
                        await pool.execute("high", priority=Priority.HIGH)

                async def overload() -> None:
                    while True:
                        await pool.submit("high", priority=Priority.HIGH)
                        await anyio.sleep(service / (2 * workers))

                for _ in range(producers):
                    tasks.start_soon(produce)
                if not producers:
                    tasks.start_soon(overload)
                await anyio.sleep(warmup * service + service / 3)
                backlog = pool.status().queue_size
                low = await pool.submit("low", priority=Priority.LOW)
                with anyio.move_on_after(horizon):
                    async for _ in low.positions():  # ends as it starts
                        pass
                if low.started_at is not None:
                    result.append(low.started_at - low.submitted_at)
                else:
                    result.append(None)
                result.append(backlog)
                tasks.cancel_scope.cancel()
            await pool.shutdown(drain=False)

    run_on_virtual_time(scenario)
    return result[0], result[1]


def _ahead(backlog: int, workers: int, service: float) -> float:
    """The service time of *backlog* requests ahead, and of those running."""
    return (math.ceil(backlog / workers) + 1) * service


@settings(max_examples=25, deadline=None)
@given(
    factor=st.sampled_from([8, 12, 40]),
    service=st.sampled_from([0.01, 0.25, 1.0]),
    workers=st.integers(1, 4),
    extra=st.integers(0, 2),
)
def test_under_a_flood_of_high_a_low_request_starts_within_two_periods(
    factor: int, service: float, workers: int, extra: int
) -> None:
    """HIGH never runs out, each waits < aging: LOW starts within 2 * aging + ahead."""
    aging = factor * service
    producers = 2 * workers + 1 + extra  # the queue is never empty at a take
    started, backlog = _flood(
        aging, service, workers, producers=producers, horizon=4 * aging
    )
    assert backlog > 0
    assert started is not None
    assert started <= 2 * aging + _ahead(backlog, workers, service)
    starved, _ = _flood(None, service, workers, producers=producers, horizon=8 * aging)
    assert starved is None


@settings(max_examples=25, deadline=None)
@given(
    aging=st.sampled_from([0.5, 1.0, 3.0]),
    service=st.sampled_from([0.01, 0.1, 0.25]),
    workers=st.integers(1, 4),
    warmup=st.integers(2, 8),
)
def test_under_an_overload_of_high_a_low_request_starts_within_three_periods(
    aging: float, service: float, workers: int, warmup: int
) -> None:
    """HIGH waits grow past aging (they age too): 3 * aging + what was ahead."""
    started, backlog = _flood(
        aging, service, workers, warmup=warmup, horizon=4 * aging + 10
    )
    assert started is not None
    assert started <= 3 * aging + _ahead(backlog, workers, service)
    starved, _ = _flood(None, service, workers, warmup=warmup, horizon=8 * aging)
    assert starved is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_on_a_real_clock_the_low_request_starts_under_the_flood() -> None:
    """asyncio, real time: the LOW request runs while HIGH requests keep coming."""
    aging, service = 0.05, 0.002
    order: list[str] = []

    async def serve(request: str) -> str:
        order.append(request)
        await anyio.sleep(service)
        return request

    async with WorkerPool(serve, workers=2, aging=aging) as pool:
        async with anyio.create_task_group() as tasks:

            async def flood() -> None:
                while True:
                    for _ in range(4):
                        await pool.submit("high", priority=Priority.HIGH)
                    await anyio.sleep(service)

            tasks.start_soon(flood)
            while pool.status().queue_size < 8:  # noqa: ASYNC110 (a hang guard below)
                await anyio.sleep(service)
            low = await pool.submit("low", priority=Priority.LOW)
            with anyio.fail_after(60):  # a hang guard, not a timing assertion
                await low.result()
            assert pool.status().queue_size > 0  # the flood still stood
            assert Priority.HIGH >= low.effective_priority
            tasks.cancel_scope.cancel()
        await pool.shutdown(drain=False)
    assert "low" in order


# -- positions and eta ----------------------------------------------------------------


async def test_positions_yields_every_change_until_the_request_starts() -> None:
    """Current value first, then each change (queued ahead, taken); ends at start."""
    gate = anyio.Event()
    seen: list[int] = []

    async def hold(request: int) -> int:
        await gate.wait()
        return request

    async with WorkerPool(hold, workers=1) as pool:
        await pool.submit(0)
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit(1)
        watched = await pool.submit(2, priority=Priority.LOW)
        async with anyio.create_task_group() as tasks:

            async def watch() -> None:
                async for p in watched.positions():
                    seen.append(p)  # noqa: PERF401 (seen as they come)

            tasks.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            assert [1] == seen
            await pool.submit(3, priority=Priority.HIGH)
            await anyio.wait_all_tasks_blocked()
            assert [1, 2] == seen
            await pool.submit(4, priority=Priority.LOW)  # behind: no change
            await anyio.wait_all_tasks_blocked()
            assert [1, 2] == seen
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            assert [1, 2, 1] == seen
            gate.set()
        assert TicketState.SUCCEEDED == (await watched.result(), watched.state)[1]
    # It started before the watcher saw it next (on asyncio), or once it was next.
    assert seen in ([1, 2, 1], [1, 2, 1, 0])
    assert pool._queue._state.store is None  # type: ignore[attr-defined]  # buckets again


async def test_positions_of_a_request_handed_to_a_worker_ends_when_it_starts() -> None:
    """Handed straight to an idle worker: position 0, then the iterator ends."""
    async with WorkerPool(idle, workers=1) as pool:
        await anyio.wait_all_tasks_blocked()
        ticket = pool.submit_nowait(1)
        assert [0] == [p async for p in ticket.positions()]
        assert [] == [p async for p in ticket.positions()]  # not queued: nothing


async def test_positions_ends_when_a_handed_over_request_is_cancelled() -> None:
    """Cancelled (or dropped at shutdown) before its worker resumed: it ends."""
    async with WorkerPool(idle, workers=2) as pool:
        await anyio.wait_all_tasks_blocked()
        cancelled, dropped = pool.submit_nowait(1), pool.submit_nowait(2)
        watching = [cancelled.positions(), dropped.positions()]
        assert [0, 0] == [await each.__anext__() for each in watching]
        cancelled.cancel()
        await pool.shutdown(drain=False)
        for each in watching:
            with pytest.raises(StopAsyncIteration):
                await each.__anext__()
    assert TicketState.CANCELLED == cancelled.state == dropped.state


def test_with_aging_positions_change_as_requests_are_overtaken() -> None:
    """No queue operation at all: promotion alone moves the position."""

    async def scenario() -> list[tuple[int, float]]:
        gate = anyio.Event()
        seen: list[tuple[int, float]] = []

        async def hold(request: int) -> int:
            await gate.wait()
            return request

        async with WorkerPool(hold, workers=1, aging=1.0) as pool:
            await pool.submit(0)
            await anyio.wait_all_tasks_blocked()
            start = anyio.current_time()
            await pool.submit(1, priority=Priority.LOW)
            await anyio.sleep(0.5)
            high = await pool.submit(2, priority=Priority.HIGH)
            async with anyio.create_task_group() as tasks:

                async def watch() -> None:
                    async for p in high.positions():
                        seen.append((p, anyio.current_time() - start))  # noqa: PERF401

                tasks.start_soon(watch)
                await anyio.sleep(5)
                tasks.cancel_scope.cancel()
            gate.set()
        return seen

    # HIGH is CRITICAL from +1.5 s; LOW, older, catches up at +3 s.
    assert [(0, 0.5), (1, 3.0)] == run_on_virtual_time(scenario)


def test_eta_estimates_from_the_recent_rate() -> None:
    """None until something finished, then (position + 1) / rate; None once out."""

    async def scenario() -> None:
        async def second(request: int) -> int:
            await anyio.sleep(1)
            return request

        async with WorkerPool(second, workers=2) as pool:
            tickets = [await pool.submit(n) for n in range(10)]
            last = tickets[-1]
            assert last.eta() is None  # nothing finished yet
            await anyio.sleep(2.5)  # 4 finished in 2.5 s: 1.6 a second
            assert 3 == last.position
            eta = last.eta()
            assert eta is not None
            assert math.isclose(4 / 1.6, eta)
            await last.result()
            assert last.eta() is None

    run_on_virtual_time(scenario)


async def test_many_watchers_each_see_their_position_fall_to_zero() -> None:
    """1,000 watched tickets: each sees its position fall to 0, never rise."""
    count = 1000
    gate = anyio.Event()
    seen: dict[int, list[int]] = {n: [] for n in range(count)}

    async def hold(request: int) -> int:
        if request < 0:
            await gate.wait()
        return request

    async with WorkerPool(hold, workers=1) as pool:
        await pool.submit(-1)
        await anyio.wait_all_tasks_blocked()
        tickets = [await pool.submit(n) for n in range(count)]
        async with anyio.create_task_group() as tasks:
            for n, ticket in enumerate(tickets):

                async def watch(n: int = n, ticket: Ticket[int] = ticket) -> None:
                    async for p in ticket.positions():
                        seen[n].append(p)
                        await anyio.lowlevel.checkpoint()

                tasks.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    for n in random.Random(15).sample(range(count), 20):
        # Changes that come while a watcher waits its turn are seen together.
        assert n == seen[n][0]
        assert sorted(set(seen[n]), reverse=True) == seen[n]


def test_shed_and_block_work_with_aging() -> None:
    """SHED evicts the newest of the lowest level; BLOCK admits in order."""

    async def scenario() -> None:
        gate = anyio.Event()

        async def hold(request: int) -> int:
            await gate.wait()
            return request

        async with WorkerPool(
            hold, workers=1, max_queue_size=2, backpressure=Backpressure.SHED, aging=5.0
        ) as pool:
            await pool.submit(0)
            await anyio.wait_all_tasks_blocked()
            old = await pool.submit(1, priority=Priority.LOW)
            young = await pool.submit(2, priority=Priority.LOW)
            await pool.submit(3, priority=Priority.HIGH)
            assert TicketState.SHED == young.state
            assert 1 == old.position
            gate.set()

    run_on_virtual_time(scenario)


def test_a_memory_queue_with_aging_removes_and_ranks_by_ticket() -> None:
    """remove() and position() of an aging queue go by the ticket."""
    queue: MemoryQueue[str] = MemoryQueue(math.inf, aging=1.0, born=lambda _: 0.0)
    store = queue._state.store
    assert store is not None
    store.clock = lambda: 0.0
    for name, level in [("a", 4), ("b", 2), ("c", 4)]:
        queue.put_nowait(name, level)
    assert [1, 2, 0] == [
        queue.position(n, lv) for n, lv in [("a", 4), ("c", 4), ("b", 2)]
    ]
    assert queue.remove("a", 4)
    assert not queue.remove("a", 4)
    assert queue.position("a", 4) is None
    assert ("c", 4) == queue.evict(3)
    assert queue.evict(3) is None
    assert ["b"] == queue.drain()


# -- the rest of the ordered store's ways -------------------------------------------


async def test_an_aging_channel_blocks_hands_over_and_closes_as_a_plain_one() -> None:
    """Blocked senders move in on receive; waiting receivers are handed items."""
    send, receive = create_priority_channel[str](1, aging=60.0)
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()
    async with anyio.create_task_group() as tasks:
        got: list[str] = []

        async def take() -> None:
            got.append(await receive.receive())

        tasks.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        send.send_nowait("handed", Priority.LOW)
    send.send_nowait("first", Priority.LOW)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send.send, "blocked", Priority.HIGH)
        await anyio.wait_all_tasks_blocked()
        assert 1 == send.statistics().tasks_waiting_send
        got.append(receive.receive_nowait())  # the blocked one moves in first
    got.append(receive.receive_nowait())
    assert ["handed", "blocked", "first"] == got
    state = send._state
    send.send_nowait("kept", Priority.NORMAL)
    item = "back"
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send.send, item, Priority.NORMAL)
        await anyio.wait_all_tasks_blocked()
        assert not state.take_back("absent", Priority.NORMAL)
        assert not state.take_back("absent", 9)
        assert state.take_back("kept", Priority.NORMAL)  # admits the blocked one
    assert state.take_back(item, Priority.NORMAL)
    send.send_nowait("dropped", Priority.LOW)
    receive.close()
    assert 0 == send.statistics().current_size
    send.close()


def test_a_given_back_item_is_first_in_line_again() -> None:
    """give_back() puts an item ahead of its level, as old as the head."""
    send, receive = create_priority_channel[str](aging=60.0)
    state = send._state
    store = state.store
    assert store is not None
    store.clock = lambda: 0.0
    send.send_nowait("a", Priority.LOW)
    send.send_nowait("b", Priority.LOW)
    assert "a" == receive.receive_nowait()
    state.give_back("a", Priority.LOW)  # where the taken head was
    state.give_back("z", Priority.LOW)  # and one more, at the list's start
    assert ["z", "a", "b"] == [receive.receive_nowait() for _ in range(3)]


def test_a_memory_queue_answers_for_what_it_does_not_hold() -> None:
    """Wrong levels and unknown requests: False or None; no aging: the priority."""
    queue: MemoryQueue[str] = MemoryQueue(math.inf, aging=1.0)
    store = queue._state.store
    assert store is not None
    store.clock = lambda: 0.0
    queue.put_nowait("a", 4)
    assert not queue.remove("a", 3)
    assert queue.effective("b", 4) is None
    assert queue.position("a", 3) is None
    plain: MemoryQueue[str] = MemoryQueue(math.inf)
    assert 4 == plain.effective("a", 4)
    plain.wake_watchers()  # no watcher: nothing to do


def test_store_watchers_are_counted_by_level() -> None:
    """Two watchers of a level share an event; it goes when the last one does."""
    store: OrderedStore[int] = OrderedStore(None, track=True)
    store.new_event = threading.Event
    store.clock = lambda: 0.0
    store.wake_all()  # none yet
    first = store.watching(3)
    assert first is store.watching(3)
    store.unwatch(3)
    assert 3 in store.watch
    store.push(1, 2)  # ahead of level 3: wakes it
    assert first.is_set()
    store.unwatch(3)
    assert {} == store.watch
    assert [(1, 2)] == store.clear()


def test_eta_is_unknown_before_the_pool_runs() -> None:
    """No rate before the pool starts."""

    async def scenario() -> None:
        pool = WorkerPool(idle, aging=1.0)
        ticket = pool.submit_nowait(1, priority=Priority.LOW)
        assert ticket.eta() is None
        await anyio.sleep(1)
        assert Priority.NORMAL == ticket.effective_priority
        ticket.cancel()
        await anyio.sleep(10)
        assert Priority.NORMAL == ticket.effective_priority  # when it left
        await pool.shutdown()

    run_on_virtual_time(scenario)


def test_eta_looks_back_ten_seconds() -> None:
    """The rate is that of the last 10 seconds: it follows a slower pace."""

    async def scenario() -> None:
        pace = [0.1]

        async def work(request: int) -> int:
            await anyio.sleep(pace[0])
            return request

        async with WorkerPool(work, workers=1) as pool:
            tickets = [await pool.submit(n) for n in range(1000)]
            await anyio.sleep(15)  # 150 done at 10 a second
            for _ in range(30):
                assert tickets[-1].eta() is not None
                await anyio.sleep(1)
            pace[0] = 1.0  # from now on 1 a second
            for _ in range(30):
                tickets[-1].eta()
                await anyio.sleep(1)
            eta = tickets[-1].eta()
            assert eta is not None
            position = tickets[-1].position
            assert position is not None
            assert math.isclose((position + 1) / 1.0, eta, rel_tol=0.15)
            await pool.shutdown(drain=False)

    run_on_virtual_time(scenario)


def test_a_handed_over_request_ages_by_its_own_clock() -> None:
    """Handed to a worker, not yet started: its level by the time it waited."""

    async def scenario() -> None:
        async with WorkerPool(idle, workers=1, aging=1.0) as pool:
            await anyio.wait_all_tasks_blocked()
            ticket = pool.submit_nowait(1, priority=Priority.LOW)
            assert Priority.LOW == ticket.effective_priority
            await ticket.result()

    run_on_virtual_time(scenario)


def test_arrival_times_never_go_back_within_a_level() -> None:
    """A request submitted earlier that arrives later ages from its level's last."""
    born = {"a": 5.0, "b": 3.0}
    store: OrderedStore[str] = OrderedStore(1.0, track=True, born=born.__getitem__)
    store.clock = lambda: 6.0
    store.push("a", 4)
    store.push("b", 4)
    assert (3, 3) == (store.effective("a", 4), store.effective("b", 4))


def test_an_item_put_back_in_front_wakes_its_levels_watchers() -> None:
    """front=True is ahead of its own level's items: their watchers wake."""
    store: OrderedStore[int] = OrderedStore(None, track=True)
    store.new_event = threading.Event
    store.clock = lambda: 0.0
    store.push(1, 3)
    event = store.watching(3)
    store.push(2, 3, front=True)
    assert event.is_set()
    assert (1, math.inf) == store.rank(1, 3)


def test_evicting_drops_the_holes_at_the_end_of_a_level() -> None:
    """Removed entries at a level's end go before the newest live one is evicted."""
    store: OrderedStore[int] = OrderedStore(None, track=True)
    store.clock = lambda: 0.0
    for n in (1, 2, 3):
        store.push(n, 4)
    assert store.remove(3, 4)
    assert (2, 4) == store.pop_newest(0)
    assert [] == store.levels[4].holes
    assert (0, math.inf) == store.rank(1, 4)
