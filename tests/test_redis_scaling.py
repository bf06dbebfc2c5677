"""Reserved workers, resize() and autoscale on a RedisQueue, against a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

from helpers import Gate, queued_on_server, until
from queuekeeper import Autoscale, Priority, WorkerPool
from queuekeeper._util import process_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from queuekeeper.redis import RedisQueue


pytestmark = pytest.mark.anyio


class Picky(Gate):
    """A gate that lets CRITICAL requests (named "crit...") through at once."""

    async def __call__(self, request: object) -> object:
        if isinstance(request, str) and request.startswith("crit"):
            self.started.append(request)
            return request
        return await super().__call__(request)


async def test_a_reserved_worker_takes_only_urgent_requests_from_the_shared_queue(
    queue: Callable[..., RedisQueue],
) -> None:
    """The pool takes no LOW request for its reserved worker; a CRITICAL one runs."""
    gate = Picky()
    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0, name="front") as front,
        WorkerPool(
            gate, queue=queue(), workers=3, reserved={Priority.CRITICAL: 1}, name="back"
        ) as back,
    ):
        lows = [await front.submit(f"low{i}", priority=Priority.LOW) for i in range(5)]
        await until(lambda: 2 == len(gate.started))
        # The reserved worker's share stays on the server, for other processes.
        await anyio.sleep(0.3)  # more than a feeder needs to take one
        assert 3 == await queued_on_server(queue())
        with anyio.fail_after(10):
            assert "crit" == await front.execute("crit", priority=Priority.CRITICAL)
        assert 3 == await queued_on_server(queue())
        assert {1, None} == {h.reserved_for for h in back.worker_health()}
        gate.open.set()
        for ticket in lows:
            assert ticket.request == await ticket.result()


async def test_resize_on_redis_takes_more_and_tells_the_server(
    queue: Callable[..., RedisQueue],
) -> None:
    """Grown, the pool takes as many requests as workers; its heartbeat says so."""
    gate = Gate()
    here = process_name()
    async with WorkerPool(gate, queue=queue(), workers=1, name="elastic") as pool:
        tickets = [await pool.submit(i) for i in range(5)]
        await until(lambda: 1 == len(gate.started))
        await until(lambda: {here: 1} == dict(pool.status().workers_alive))
        pool.resize(3)
        assert 3 == pool.status().max_workers
        await until(lambda: 3 == len(gate.started))
        assert 2 == await queued_on_server(queue())
        await until(lambda: {here: 3} == dict(pool.status().workers_alive))
        assert 3 == pool.status().active_workers
        pool.resize(1)
        gate.open.set()
        for ticket in tickets:
            assert ticket.request == await ticket.result()
        await until(lambda: {here: 1} == dict(pool.status().workers_alive))
        await until(lambda: 1 == len(pool.worker_health()))
    assert 5 == pool.status().completed


async def test_a_redis_pool_may_be_resized_to_zero_and_back(
    queue: Callable[..., RedisQueue],
) -> None:
    """At 0 workers it only submits; grown again, it serves what waited."""
    async with (
        WorkerPool(Gate(), queue=queue(), workers=1, name="zero") as pool,
        WorkerPool[Any, Any](None, queue=queue(), workers=0, name="front") as front,
    ):
        pool.resize(0)
        await anyio.wait_all_tasks_blocked()
        ticket = await front.submit("x")
        await anyio.sleep(0.3)  # a feeder would have taken it by now
        assert 1 == await queued_on_server(queue())
        assert 0 == pool.status().max_workers
        gate = pool._workers.handler
        assert isinstance(gate, Gate)
        gate.open.set()
        pool.resize(2)
        with anyio.fail_after(10):
            assert "x" == await ticket.result()
        with pytest.raises(TypeError, match=r"^WorkerPool 'front' has no handler"):
            front.resize(1)
        with pytest.raises(ValueError, match=r"^workers must be an int from 0 to "):
            pool.resize(-1)


async def test_a_pool_without_workers_but_with_a_handler_grows_into_one(
    queue: Callable[..., RedisQueue],
) -> None:
    """workers=0 with a handler: resize() starts workers and the feeder serves them."""
    async with WorkerPool(Gate(), queue=queue(), workers=0, name="late") as pool:
        ticket = await pool.submit("y")
        assert 1 == await queued_on_server(queue())
        gate = pool._workers.handler
        assert isinstance(gate, Gate)
        gate.open.set()
        pool.resize(1)
        with anyio.fail_after(10):
            assert "y" == await ticket.result()


async def test_reserved_workers_need_an_unreserved_one_on_redis(
    queue: Callable[..., RedisQueue],
) -> None:
    """A submit-only pool has no worker to reserve."""
    with pytest.raises(
        ValueError, match=r"^reserved=\{1: 1\} keeps 1 of the pool's workers=0"
    ):
        WorkerPool(echo_handler, queue=queue(), workers=0, reserved={1: 1})


async def echo_handler(request: object) -> object:
    """Return the request."""
    return request


async def test_autoscale_on_redis_grows_under_a_burst_and_shrinks_after_it(
    queue: Callable[..., RedisQueue],
) -> None:
    """A burst of slow requests grows the pool; idle afterwards, it shrinks back."""
    sizes: list[int] = []

    async def slow(request: int) -> int:
        await anyio.sleep(0.1)
        return request

    settings = Autoscale(4, target_wait=0.05, cooldown=0.3)
    async with WorkerPool(slow, queue=queue(), workers=1, autoscale=settings) as pool:
        tickets = [await pool.submit(i) for i in range(30)]
        while not all(ticket.done() for ticket in tickets):
            sizes.append(pool.status().max_workers)
            await anyio.sleep(0.02)
        assert list(range(30)) == [await ticket.result() for ticket in tickets]
        assert max(sizes) > 1
        await until(lambda: 1 == pool.status().max_workers)
        await until(lambda: 1 == len(pool.worker_health()))


class Waiting:
    """Stands for a ticket taken for a worker that has not started it."""

    def __init__(self, level: int) -> None:
        from queuekeeper import TicketState  # noqa: PLC0415

        self._level = level
        self._state = TicketState.QUEUED


async def test_the_link_takes_only_what_its_idle_workers_may_run(
    queue: Callable[..., RedisQueue],
) -> None:
    """How many requests the feeder asks for, and up to which level, by idle worker."""
    reserved = {Priority.CRITICAL: 1, Priority.HIGH: 1}
    pool = WorkerPool(echo_handler, queue=queue(), workers=3, reserved=reserved)
    link: Any = pool._link
    # Any level: one at a time (a LOW one would take the unreserved worker).
    assert (1, None) == link._wanted(3)
    link.held = {"a": Waiting(4)}
    assert (1, 2) == link._wanted(2)  # a LOW one waits: HIGH or above only
    link.held = {"a": Waiting(4), "b": Waiting(4)}
    assert (1, 1) == link._wanted(1)  # only the CRITICAL worker is left
    link.held = {"a": Waiting(4), "b": Waiting(2)}
    assert (1, 1) == link._wanted(1)
    link.held = {"a": Waiting(4), "b": Waiting(1)}
    assert (1, 2) == link._wanted(1)  # the HIGH worker may take a HIGH one
    link.held = {"a": Waiting(4), "b": Waiting(4), "c": Waiting(4)}
    assert (0, None) == link._wanted(0)
