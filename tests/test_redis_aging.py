"""Aging, positions and eta on the Redis queue: the server ages and ranks requests."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

from queuekeeper import Priority, TicketState, WorkerPool
from queuekeeper._redis._server import ServerQueue

if TYPE_CHECKING:
    from collections.abc import Callable

    import coredis

    from queuekeeper.redis import RedisQueue

pytestmark = pytest.mark.anyio


async def test_the_server_serves_an_aged_request_before_younger_ones_of_its_level(
    queue: Callable[..., RedisQueue],
) -> None:
    """A LOW request that waited two periods runs before HIGH ones queued later."""
    order: list[str] = []

    async def record(request: str) -> str:
        order.append(request)
        await anyio.lowlevel.checkpoint()
        return request

    # Real time (the server's clock): two periods and a tenth, which leaves most of
    # a period for what follows before the LOW request ages past HIGH.
    aging = 1.0
    # The pools that take requests age them, on the server; a submitting pool's
    # aging shows in its tickets' effective_priority.
    async with WorkerPool[Any, Any](
        None, queue=queue(), workers=0, aging=aging
    ) as front:
        low = await front.submit("low", priority=Priority.LOW)
        await anyio.sleep(2.1 * aging)
        assert Priority.HIGH == low.effective_priority  # by the ticket's clock
        high = [
            await front.submit(f"high-{n}", priority=Priority.HIGH) for n in range(3)
        ]
        critical = await front.submit("critical", priority=Priority.CRITICAL)
        async with WorkerPool(record, queue=queue(), workers=1, aging=aging):
            for ticket in [low, *high, critical]:
                await ticket.result()
    assert "critical" == order[0]
    assert "low" == order[1]  # older than the HIGH ones, at their level by then
    assert Priority.LOW == low.priority


async def test_without_aging_the_server_keeps_strict_priority(
    queue: Callable[..., RedisQueue],
) -> None:
    """The same requests, no aging: the LOW one runs last."""
    order: list[str] = []

    async def record(request: str) -> str:
        order.append(request)
        await anyio.lowlevel.checkpoint()
        return request

    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        low = await front.submit("low", priority=Priority.LOW)
        await anyio.sleep(0.125)
        high = await front.submit("high", priority=Priority.HIGH)
        async with WorkerPool(record, queue=queue(), workers=1):
            await low.result()
            await high.result()
    assert ["high", "low"] == order


async def test_the_server_ranks_positions_by_aged_level(
    client: coredis.Redis[Any],
) -> None:
    """standing() answers as take() orders: by aged level, then arrival."""
    server = ServerQueue(client, f"standing-{uuid.uuid4().hex[:8]}")
    await server.put([("a", 4, b"a"), ("b", 3, b"b")], None)
    # Real time (the server's clock), with half a period to spare either side.
    await anyio.sleep(1.5)
    await server.put([("c", 2, b"c"), ("d", 4, b"d"), ("e", 0, b"e")], None)
    # aging 1 s: a is at 3, b at 2 (older than c, also at 2); e never moves.
    standings = [await server.standing(i, 1.0) for i in "abcde"]
    assert [3, 1, 2, 4, 0] == [position for position, _, _ in standings]
    strict = [(await server.standing(i, None))[0] for i in "abcde"]
    assert [3, 2, 1, 4, 0] == strict
    taken, _ = await server.take(5, 30.0, "t", aging=1.0)
    assert ["e", "b", "c", "a", "d"] == [each.id for each in taken]
    assert (None, 0) == (await server.standing("a", 1.0))[:2]
    assert 5 == await server.ack("t", [each.id for each in taken])
    assert 5 == (await server.standing("a", None))[1]


async def test_positions_and_eta_come_from_the_server(
    queue: Callable[..., RedisQueue],
) -> None:
    """positions() yields as requests ahead are taken; eta() once a rate is known."""
    release, started = anyio.Event(), anyio.Event()

    async def hold(request: int) -> int:
        if request == 0:
            started.set()
            await release.wait()
        await anyio.sleep(0.2)  # slow enough for the watcher to see a rate
        return request

    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        tickets = [await front.submit(n) for n in range(6)]
        last = tickets[-1]
        assert last.eta() is None
        seen: list[int] = []
        async with WorkerPool(hold, queue=queue(), workers=1):
            await started.wait()
            async with anyio.create_task_group() as tasks:

                async def watch() -> None:
                    async for position in last.positions():
                        seen.append(position)  # noqa: PERF401 (as they come)

                tasks.start_soon(watch)
                with anyio.fail_after(30):
                    while not seen:  # noqa: ASYNC110 (the server's answer)
                        await anyio.sleep(0.01)
                assert 4 == seen[0]  # request 0 is taken: 1 to 4 are ahead
                rates = front._link.rates
                with anyio.fail_after(30):
                    while len(rates) < 2:  # noqa: ASYNC110 (the watcher's polls)
                        await anyio.sleep(0.01)
                assert last.eta() is None  # nothing finished yet: no rate
                release.set()
                with anyio.fail_after(30):
                    while (eta := last.eta()) is None:  # noqa: ASYNC110 (server's)
                        await anyio.sleep(0.01)
                assert eta > 0
            await last.result()
        assert sorted(set(seen), reverse=True) == seen
        assert last.eta() is None  # no longer queued
        assert await last.fetch_position() is None


async def test_positions_end_when_the_server_hands_the_request_out(
    queue: Callable[..., RedisQueue],
) -> None:
    """Taken by a worker the submitter has not heard from yet: the watcher ends."""
    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        ticket = await front.submit(21)
        watching = ticket.positions()
        assert 0 == await watching.__anext__()
        server = front._link.server
        taken, _ = await server.take(1, 30.0, "elsewhere")
        assert [front._link.pending_ids[ticket]] == [each.id for each in taken]
        assert TicketState.QUEUED == ticket.state  # no word of it yet
        with pytest.raises(StopAsyncIteration):
            await watching.__anext__()
        reply = b"0" + json.dumps(42).encode()
        await server.finish("elsewhere", [(taken[0].id, 1, 0.0, reply)])
        assert 42 == await ticket.result()


async def test_the_take_script_compares_most_with_the_aged_level(
    client: coredis.Redis[Any],
) -> None:
    """A reserved worker's limit (most) lets in a request that aged into it."""
    server = ServerQueue(client, f"most-{uuid.uuid4().hex[:8]}")
    await server.put([("old", 4, b"old")], None)
    # Real time (the server's clock): aging 1 s, old is at 2 now, and young has a
    # whole period to spare before it would move ahead of normal.
    await anyio.sleep(2.5)
    await server.put([("young", 4, b"young"), ("normal", 3, b"normal")], None)
    assert [] == (await server.take(5, 30.0, "t", most=2))[0]  # no aging: none
    taken, _ = await server.take(5, 30.0, "t", aging=1.0, most=2)
    assert ["old"] == [each.id for each in taken]
    taken, seen = await server.take(5, 30.0, "t", aging=1.0, most=2)
    assert ([], True) == (taken, seen is not None)
    taken, _ = await server.take(5, 30.0, "t", aging=1.0)
    assert ["normal", "young"] == [each.id for each in taken]


async def test_a_reserved_worker_on_redis_runs_a_request_that_aged_into_its_level(
    queue: Callable[..., RedisQueue],
) -> None:
    """The link takes for its idle reserved worker what has aged to its level."""
    release, running = anyio.Event(), anyio.Event()
    started: list[str] = []

    async def handler(request: str) -> str:
        started.append(request)
        if request == "busy":
            running.set()
            await release.wait()
        return request

    aging = 0.05
    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0, name="front") as front,
        WorkerPool(
            handler,
            queue=queue(),
            workers=2,
            reserved={Priority.HIGH: 1},
            aging=aging,
            name="back",
        ),
    ):
        busy = await front.submit("busy", priority=Priority.NORMAL)
        with anyio.fail_after(10):
            await running.wait()
        low = await front.submit("low", priority=Priority.LOW)
        with anyio.fail_after(10):
            assert "low" == await low.result()
        assert ["busy", "low"] == started  # busy still runs: the reserved one ran it
        release.set()
        assert "busy" == await busy.result()
