"""WorkerPool on a RedisQueue, against a real redis-server: one queue, many pools.

Each pool stands for a process (several pools on one queue name share it exactly
as processes do); the tests that need a real other process spawn
``tests/redis_process.py``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

import coredis
from prometheus_client import CollectorRegistry

from helpers import Gate, queued_on_server, until
from queuekeeper import (
    Backpressure,
    PoolClosed,
    Priority,
    PrometheusMetrics,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    TicketState,
    WorkerPool,
)
from queuekeeper._util import process_name
from queuekeeper.redis import RedisQueue, RemoteError, create_redis_priority_channel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import RedisServer

pytestmark = pytest.mark.anyio

PROCESS = Path(__file__).with_name("redis_process.py")


async def double(request: int) -> int:
    """The handler of most tests."""
    await anyio.lowlevel.checkpoint()
    return 2 * request


# -- the basics -------------------------------------------------------------------


async def test_a_request_submitted_in_one_pool_runs_in_another(
    queue: Callable[..., RedisQueue],
) -> None:
    """A submit-only pool's ticket resolves when a pool elsewhere ran the request."""
    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0, name="front") as front,
        WorkerPool(double, queue=queue(), workers=2, name="back") as back,
    ):
        ticket = await front.submit(21, priority=Priority.HIGH, timeout=60)
        assert 42 == await ticket.result()
        assert (TicketState.SUCCEEDED, 1) == (ticket.state, ticket.deliveries)
        assert ticket.started_at is not None
        assert 12 == await front.execute(6)
        with pytest.raises(TypeError, match=r"use 'await pool\.submit"):
            front.submit_nowait(1)
    assert 2 == back.status().completed
    assert (2, 0) == (front.status().submitted, front.status().completed)


async def test_requests_run_by_priority_then_arrival_across_pools(
    queue: Callable[..., RedisQueue],
) -> None:
    """Queued from one pool, served by another's single worker in queue order."""
    order: list[int] = []

    async def record(request: int) -> int:
        order.append(request)
        await anyio.lowlevel.checkpoint()
        return request

    levels = [Priority.LOW, Priority.NORMAL, Priority.CRITICAL, 200, Priority.HIGH, 0]
    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        tickets = [
            await front.submit(n, priority=levels[n % len(levels)]) for n in range(30)
        ]
        async with WorkerPool(record, queue=queue(), workers=1):
            for ticket in tickets:
                await ticket.result()
    expected = sorted(range(30), key=lambda n: (int(levels[n % len(levels)]), n))
    assert expected == order


async def test_an_idle_pool_takes_no_more_than_its_idle_workers(
    queue: Callable[..., RedisQueue],
) -> None:
    """A busy one-worker pool prefetches nothing.

    A CRITICAL request submitted after five LOW ones runs next.
    """
    order: list[str] = []
    release = anyio.Event()

    async def handler(request: str) -> str:
        order.append(request)
        if request == "first":
            await release.wait()
        await anyio.lowlevel.checkpoint()
        return request

    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0) as front,
        WorkerPool(handler, queue=queue(), workers=1) as back,
    ):
        first = await front.submit("first")
        await until(lambda: _is(first, "running"))
        tickets = [
            await front.submit(f"low-{n}", priority=Priority.LOW) for n in range(5)
        ]
        urgent = await front.submit("urgent", priority=Priority.CRITICAL)
        assert 6 == await queued_on_server(queue())
        release.set()
        for ticket in [first, urgent, *tickets]:
            await ticket.result()
        assert 1 == back.max_workers
    assert ["first", "urgent", *(f"low-{n}" for n in range(5))] == order


async def _is(ticket: Any, state: str) -> bool:
    return bool(ticket.state.value == state)


async def test_errors_come_back_as_the_handler_raised_them_where_they_can(
    queue: Callable[..., RedisQueue],
) -> None:
    """Built-in and queuekeeper exceptions keep their class; others are RemoteError."""

    class Custom(Exception):
        pass

    async def fail(request: str) -> None:
        await anyio.lowlevel.checkpoint()
        if request == "value":
            raise ValueError("bad value 7")
        if request == "custom":
            raise Custom("its own")
        if request == "decode":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        raise KeyError("k")

    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0) as front,
        WorkerPool(fail, queue=queue(), workers=1) as back,
    ):
        with pytest.raises(ValueError, match="bad value 7"):
            await front.execute("value")
        with pytest.raises(RemoteError, match=r"\.Custom: its own") as info:
            await front.execute("custom")
        assert info.value.type_name.endswith("Custom")
        with pytest.raises(RemoteError, match=r"builtins\.UnicodeDecodeError: 'utf-8'"):
            await front.execute("decode")  # its class wants more than a message
        ticket = await front.submit("key", timeout=60)
        with pytest.raises(KeyError):
            await ticket.result()
        assert TicketState.FAILED is ticket.state
    assert 4 == back.status().failed


async def test_what_cannot_be_serialized_is_named_and_not_queued(
    queue: Callable[..., RedisQueue],
) -> None:
    """A request that JSON refuses raises at submit; a result, at result()."""

    async def unsendable(request: int) -> object:
        await anyio.lowlevel.checkpoint()
        return {1, 2} if request else request

    handle = queue()
    async with (
        WorkerPool[Any, Any](None, queue=handle, workers=0) as front,
        WorkerPool(unsendable, queue=queue(), workers=1),
    ):
        with pytest.raises(TypeError, match=r"cannot serialize request <object"):
            await front.submit(object())
        assert 0 == await queued_on_server(handle)
        with pytest.raises(TypeError, match=r"cannot serialize the result \{1, 2\}"):
            await front.execute(1)
        assert 0 == await front.execute(0)


async def test_bad_arguments_are_named(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any]
) -> None:
    """workers=0 only with a shared queue; max_queue_size belongs to the queue."""
    with pytest.raises(ValueError, match="workers must be an int >= 1, not 0"):
        WorkerPool(double, workers=0)
    with pytest.raises(TypeError, match="handler"):
        WorkerPool(print, queue=queue(), workers=0)  # type: ignore[arg-type]
    assert 0 == WorkerPool(double, queue=queue(), workers=0).max_workers
    with pytest.raises(TypeError, match="handler"):
        WorkerPool[Any, Any](None, queue=queue(), workers=1)
    with pytest.raises(ValueError, match="max_queue_size=5 cannot be given"):
        WorkerPool(double, queue=queue(), max_queue_size=5)
    with pytest.raises(TypeError, match="queue must be a shared queue"):
        WorkerPool(double, queue="redis://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"client must be a coredis\.Redis client"):
        RedisQueue("redis://", "q")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str, not 5"):
        RedisQueue(client, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        RedisQueue(client, "")
    with pytest.raises(ValueError, match="lease must be"):
        RedisQueue(client, "q", lease=0)
    with pytest.raises(TypeError, match="serializer must have"):
        RedisQueue(client, "q", serializer=5)  # type: ignore[arg-type]
    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        with pytest.raises(ValueError, match="priority must be an int from 0 to 255"):
            await front.submit(1, priority=256)
    assert "RedisQueue" in repr(queue())


# -- backpressure across pools ----------------------------------------------------


async def test_reject_counts_the_queue_on_the_server(
    queue: Callable[..., RedisQueue],
) -> None:
    """max_size is the server's: two pools' requests share it."""
    async with (
        WorkerPool[Any, Any](None, queue=queue(max_size=2), workers=0) as one,
        WorkerPool[Any, Any](None, queue=queue(max_size=2), workers=0) as two,
    ):
        await one.submit(1)
        await two.submit(2)
        with pytest.raises(QueueFull, match="queue is full"):
            await one.submit(3)
        assert 1 == one.status().rejected
        await one.shutdown(drain=False)
        await two.shutdown(drain=False)
    assert 0 == await queued_on_server(queue())


async def test_shed_fails_the_victims_ticket_in_its_own_pool(
    queue: Callable[..., RedisQueue],
) -> None:
    """A HIGH request from one pool sheds the newest LOW one, submitted by another."""
    async with (
        WorkerPool[Any, Any](None, queue=queue(max_size=2), workers=0) as one,
        WorkerPool[Any, Any](
            None, queue=queue(max_size=2), workers=0, backpressure=Backpressure.SHED
        ) as two,
    ):
        older = await one.submit("older", priority=Priority.LOW)
        newer = await one.submit("newer", priority=Priority.LOW)
        await two.submit("urgent", priority=Priority.HIGH)
        with anyio.fail_after(30), pytest.raises(RequestShed, match="priority HIGH"):
            await newer.result()
        assert (TicketState.SHED, 1) == (newer.state, one.status().shed)
        assert TicketState.QUEUED is older.state
        with pytest.raises(QueueFull):
            await two.submit("low", priority=Priority.LOW)
        await one.shutdown(drain=False)
        await two.shutdown(drain=False)


async def test_block_waits_for_room_made_by_any_pool(
    queue: Callable[..., RedisQueue],
) -> None:
    """A blocked submit enters once a worker in another pool takes a request."""
    async with WorkerPool[Any, Any](
        None, queue=queue(max_size=1), workers=0, backpressure=Backpressure.BLOCK
    ) as front:
        first = await front.submit(1)
        entered = anyio.Event()
        second: list[Any] = []

        async def blocked() -> None:
            second.append(await front.submit(2))
            entered.set()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(blocked)
            for _ in range(20):
                await anyio.sleep(0.01)
            assert not entered.is_set()
            async with WorkerPool(double, queue=queue(), workers=1):
                await entered.wait()
                assert [2, 4] == [await first.result(), await second[0].result()]


async def test_block_ends_in_a_timeout_or_shutdown(
    queue: Callable[..., RedisQueue],
) -> None:
    """Waiting for room is waiting in the queue: the request's timeouts bound it."""
    async with WorkerPool[Any, Any](
        None, queue=queue(max_size=1), workers=0, backpressure=Backpressure.BLOCK
    ) as front:
        await front.submit(1)
        ticket = await front.submit(2, queue_timeout=0.05)
        with pytest.raises(QueueTimeout):
            await ticket.result()

        async def blocked() -> None:
            with pytest.raises(PoolClosed, match="shut down while the request waited"):
                await front.submit(3)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(blocked)
            await anyio.sleep(0.05)
            await front.shutdown(drain=False)


# -- timeouts and cancellation ----------------------------------------------------


async def test_queue_timeout_takes_a_request_off_the_server(
    queue: Callable[..., RedisQueue],
) -> None:
    """With no worker anywhere, queue_timeout and timeout fail the request queued."""
    handle = queue()
    async with WorkerPool[Any, Any](None, queue=handle, workers=0) as front:
        waits = await front.submit(1, queue_timeout=0.05)
        late = await front.submit(2, timeout=0.05)
        with pytest.raises(QueueTimeout):
            await waits.result()
        with pytest.raises(RequestTimeout, match="timed out while queued"):
            await late.result()
        assert 0 == await queued_on_server(handle)
        assert 2 == front.status().timed_out


async def test_timeout_cuts_a_request_short_in_the_pool_that_runs_it(
    queue: Callable[..., RedisQueue],
) -> None:
    """The worker enforces timeout, counted from when the request was queued."""
    cancelled = anyio.Event()

    async def hang(request: int) -> int:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return request  # pragma: no cover (never returns)

    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0) as front,
        WorkerPool(hang, queue=queue(), workers=1) as back,
    ):
        ticket = await front.submit(1, timeout=0.2)
        with anyio.fail_after(30), pytest.raises(RequestTimeout, match="while running"):
            await ticket.result()
        assert cancelled.is_set()
    assert 1 == back.status().timed_out


async def test_cancel_a_queued_request(queue: Callable[..., RedisQueue]) -> None:
    """cancel() returns at once; the ticket settles when the server took it out."""
    handle = queue()
    async with WorkerPool[Any, Any](None, queue=handle, workers=0) as front:
        ticket = await front.submit(1)
        assert ticket.cancel()
        with pytest.raises(RequestCancelled, match="was cancelled"):
            await ticket.result()
        assert not ticket.cancel()
        assert 0 == await queued_on_server(handle)


async def test_cancel_a_request_running_in_another_pool(
    queue: Callable[..., RedisQueue],
) -> None:
    """The worker holding it learns of it at once, and cancels its handler."""
    started = anyio.Event()

    async def hang(request: int) -> int:
        started.set()
        await anyio.sleep_forever()
        return request  # pragma: no cover (never returns)

    async with (
        WorkerPool[Any, Any](None, queue=queue(), workers=0) as front,
        WorkerPool(hang, queue=queue(), workers=1) as back,
    ):
        ticket = await front.submit(1)
        await started.wait()
        await until(lambda: _is(ticket, "running"))
        assert ticket.cancel()
        with anyio.fail_after(30), pytest.raises(RequestCancelled):
            await ticket.result()
        assert TicketState.CANCELLED is ticket.state
    assert 1 == back.status().cancelled


async def test_execute_cancelled_cancels_the_request(
    queue: Callable[..., RedisQueue],
) -> None:
    """Abandoned work does not run: the caller's cancellation cancels the request."""
    handle = queue()
    async with WorkerPool[Any, Any](None, queue=handle, workers=0) as front:
        with anyio.move_on_after(0.05):
            await front.execute(1)
        await until(lambda: _queued_is(handle, 0))


async def _queued_is(queue: RedisQueue, size: int) -> bool:
    return await queued_on_server(queue) == size


async def test_positions_come_from_the_server(
    queue: Callable[..., RedisQueue],
) -> None:
    """fetch_position() asks; position is then the last answer."""
    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        tickets = [await front.submit(n, priority=Priority.LOW) for n in range(3)]
        urgent = await front.submit(9, priority=Priority.HIGH)
        assert [None] == [tickets[2].position]  # never asked
        assert 3 == await tickets[2].fetch_position()
        assert 3 == tickets[2].position
        assert 0 == await urgent.fetch_position()
        await front.shutdown(drain=False)
        assert await tickets[0].fetch_position() is None
    in_process = WorkerPool(double, workers=1)
    ticket = await in_process.submit(1)
    assert 0 == await ticket.fetch_position()
    assert 0 == ticket.deliveries
    await in_process.shutdown(drain=False)


async def test_status_comes_from_the_server(queue: Callable[..., RedisQueue]) -> None:
    """queue_size and its levels are the server's, whoever queued them."""
    async with (
        WorkerPool[Any, Any](None, queue=queue(max_size=10), workers=0) as one,
        WorkerPool[Any, Any](None, queue=queue(), workers=0) as two,
    ):
        await one.submit(1, priority=Priority.HIGH)
        await one.submit(2)
        await two.submit(3)

        async def seen() -> bool:
            status = two.status()
            return status.queue_size == 3

        await until(seen)
        status = two.status()
        assert {Priority.HIGH: 1, Priority.NORMAL: 2} == dict(
            status.queue_size_by_priority
        )
        assert (10, None) == (one.status().max_queue_size, status.max_queue_size)
        assert 3 == (await queue().fetch_statistics()).current_size
        await one.shutdown(drain=False)
        await two.shutdown(drain=False)


# -- shutdown -----------------------------------------------------------------------


async def test_a_draining_pool_waits_for_its_requests_wherever_they_run(
    queue: Callable[..., RedisQueue],
) -> None:
    """Leaving ``async with`` of a submit-only pool waits for its tickets."""
    async with WorkerPool(double, queue=queue(), workers=1):
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            tickets = [await front.submit(n) for n in range(20)]
        assert all(ticket.done() for ticket in tickets)
        assert [2 * n for n in range(20)] == [await t.result() for t in tickets]


async def test_a_pool_shut_down_mid_request_hands_it_to_another(
    queue: Callable[..., RedisQueue],
) -> None:
    """shutdown(drain=False) of the worker's pool puts its request back."""
    started = anyio.Event()

    async def first_hangs(request: int) -> int:
        started.set()
        await anyio.sleep_forever()
        return request  # pragma: no cover (never returns)

    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        ticket = await front.submit(5)
        quitter = WorkerPool(first_hangs, queue=queue(), workers=1)
        async with anyio.create_task_group() as task_group:
            await task_group.start(quitter.run)
            await started.wait()
            await quitter.shutdown(drain=False)
        async with WorkerPool(double, queue=queue(), workers=1):
            assert 10 == await ticket.result()
        assert 2 == ticket.deliveries


async def test_shutdown_without_drain_cancels_what_the_pool_submitted(
    queue: Callable[..., RedisQueue],
) -> None:
    """Its queued requests leave the server; running ones elsewhere are cancelled."""
    handle = queue()
    front = WorkerPool[Any, Any](None, queue=handle, workers=0)
    early = await front.submit(0)  # before the pool runs: straight to the server
    async with anyio.create_task_group() as task_group:
        await task_group.start(front.run)
        tickets = [await front.submit(n) for n in range(5)]
        await front.shutdown(drain=False)
    for ticket in [early, *tickets]:
        with pytest.raises(RequestCancelled, match="pool shut down"):
            await ticket.result()
    assert 0 == await queued_on_server(handle)
    never = WorkerPool[Any, Any](None, queue=handle, workers=0)
    lost = await never.submit(1)
    await never.shutdown()
    with pytest.raises(RequestCancelled):
        await lost.result()


# -- processes ----------------------------------------------------------------------


def spawn(backend: str, port: int, name: str, *args: str) -> subprocess.Popen[str]:
    """Start tests/redis_process.py: another process on the same queue."""
    return subprocess.Popen(  # noqa: S603 (our interpreter and script)
        [sys.executable, str(PROCESS), backend, str(port), name, *args],
        stdout=subprocess.PIPE,
        text=True,
    )


async def read_line(process: subprocess.Popen[str]) -> str:
    """The next line *process* prints (hang guard around it)."""
    assert process.stdout is not None
    with anyio.fail_after(60):
        return await anyio.to_thread.run_sync(process.stdout.readline)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGKILL *process* (a no-op once it ended) and reap it."""
    process.kill()
    if process.stdout is not None and not process.stdout.closed:
        process.communicate()


async def test_a_worker_process_serves_this_one(
    queue: Callable[..., RedisQueue], redis_port: int, name: str, anyio_backend: str
) -> None:
    """Submitted here, run in another process; errors and results come back."""
    worker = spawn(anyio_backend, redis_port, name, "serve", "4", "30")
    try:
        assert "serving\n" == await read_line(worker)
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            tickets = [await front.submit(["double", n]) for n in range(200)]
            assert [2 * n for n in range(200)] == [await t.result() for t in tickets]
            with pytest.raises(ValueError, match="not enough values to unpack"):
                await front.execute([1])
    finally:
        stop(worker)


async def test_a_killed_worker_process_s_request_runs_again_once(
    queue: Callable[..., RedisQueue], redis_port: int, name: str, anyio_backend: str
) -> None:
    """SIGKILL mid-request: redelivered once after the lease, to a live pool."""
    worker = spawn(anyio_backend, redis_port, name, "serve", "1", "0.5")
    runs: list[Any] = []

    async def record(request: Any) -> Any:
        runs.append(request)
        await anyio.lowlevel.checkpoint()
        return request[1]

    try:
        assert "serving\n" == await read_line(worker)
        async with WorkerPool[Any, Any](
            None, queue=queue(lease=0.5), workers=0
        ) as front:
            ticket = await front.submit(["hold", "precious"])
            assert "holding precious\n" == await read_line(worker)
            stop(worker)
            async with WorkerPool(record, queue=queue(lease=0.5), workers=1):
                with anyio.fail_after(30):
                    assert "precious" == await ticket.result()
                await anyio.sleep(1.0)  # two leases: nothing comes back
            assert ([["hold", "precious"]], 2) == (runs, ticket.deliveries)
    finally:
        stop(worker)


async def test_in_flight_and_workers_alive_come_from_the_server(
    queue: Callable[..., RedisQueue], redis_port: int, name: str, anyio_backend: str
) -> None:
    """Every process serving the queue is listed with its workers until it dies.

    The figures are the server's, in status() and in the gauges alike: requests
    running in any process, and the workers of each live process.
    """
    worker = spawn(anyio_backend, redis_port, name, "serve", "4", "0.6")
    here, there = process_name(), f"{socket.gethostname()}:{worker.pid}"
    registry = CollectorRegistry()
    gate = Gate()

    def figures(pool: WorkerPool[Any, Any]) -> tuple[int, dict[str, int]]:
        status = pool.status()
        return status.in_flight, dict(status.workers_alive)

    def seen(
        pool: WorkerPool[Any, Any], in_flight: int | None, alive: dict[str, int]
    ) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            now = figures(pool)
            return (in_flight is None or in_flight == now[0]) and alive == now[1]

        return check

    try:
        assert "serving\n" == await read_line(worker)
        async with WorkerPool[Any, Any](
            None,
            queue=queue(lease=0.6),
            workers=0,
            name="front",
            metrics=PrometheusMetrics(registry),
        ) as front:
            async with WorkerPool(gate, queue=queue(lease=0.6), workers=2):
                await until(seen(front, 0, {here: 2, there: 4}))
                tickets = [await front.submit(["hold", n]) for n in range(3)]
                await until(seen(front, 3, {here: 2, there: 4}))
                labels = {"pool": "front"}
                assert 3 == registry.get_sample_value(
                    "queuekeeper_queue_in_flight", labels
                )
                alive = "queuekeeper_queue_workers_alive"
                assert [2, 4] == [
                    registry.get_sample_value(alive, {**labels, "process": process})
                    for process in (here, there)
                ]
                stop(worker)
                await until(seen(front, None, {here: 2}))
                gate.open.set()  # and the killed process's requests come here
                assert [["hold", n] for n in range(3)] == [
                    await ticket.result() for ticket in tickets
                ]
            await until(seen(front, 0, {here: 0}))
    finally:
        stop(worker)


async def test_a_long_request_is_never_redelivered_while_alive(
    queue: Callable[..., RedisQueue],
) -> None:
    """A request running for 4 leases: its heartbeat keeps it from idle pools."""
    runs: list[int] = []

    async def slow(request: int) -> int:
        runs.append(request)
        await anyio.sleep(1.2)
        return request

    async def fast(request: int) -> int:  # pragma: no cover (must never run)
        runs.append(-request)
        return request

    async with (
        WorkerPool[Any, Any](None, queue=queue(lease=0.3), workers=0) as front,
        WorkerPool(slow, queue=queue(lease=0.3), workers=1),
    ):
        ticket = await front.submit(7)
        await until(lambda: _is(ticket, "running"))
        async with WorkerPool(fast, queue=queue(lease=0.3), workers=4):
            assert 7 == await ticket.result()
    assert ([7], 1) == (runs, ticket.deliveries)


# -- cancellation at random ---------------------------------------------------------


async def test_random_cancellation_of_submitters_loses_nothing(
    queue: Callable[..., RedisQueue],
) -> None:
    """Submitters cut short at random: what was queued runs once.

    Each submit that returned a ticket ran once; none that raised ever ran.
    """
    rng = random.Random(5)
    runs: list[int] = []

    async def record(request: int) -> int:
        runs.append(request)
        await anyio.lowlevel.checkpoint()
        return request

    submitted: dict[int, Any] = {}
    async with (
        WorkerPool(record, queue=queue(), workers=3),
        WorkerPool[Any, Any](None, queue=queue(), workers=0) as front,
    ):

        async def submit(n: int) -> None:
            with anyio.CancelScope() as scope:
                # One in ten has no deadline and one in ten is cut short before
                # it starts, so both outcomes occur however slow the machine.
                if n % 10 == 1:
                    scope.cancel()
                elif n % 10:
                    scope.deadline = anyio.current_time() + rng.random() * 0.004
                submitted[n] = await front.submit(n)

        async with anyio.create_task_group() as task_group:
            for n in range(300):
                task_group.start_soon(submit, n)
                if n % 10 == 0:
                    await anyio.sleep(0.001)
        for ticket in submitted.values():
            await ticket.result()
    assert sorted(runs) == sorted(set(runs))
    assert sorted(submitted) == sorted(runs)
    assert {n for n in range(300) if n % 10 == 0} <= set(runs)
    assert not {n for n in range(300) if n % 10 == 1} & set(runs)


def test_native_asyncio_cancellation_of_submit_leaves_nothing_behind(
    redis_port: int, name: str
) -> None:
    """task.cancel() at each loop turn of a submit in turn, under plain asyncio.

    Delivered once, it cannot wait for the put in flight: submit raises it and
    cancels the request (taken back out of the queue, or cancelled where it runs;
    being in another process, it may have started by then). Nothing runs twice,
    every ticket returned resolves, and nothing is left queued. The turns go on
    until a submit has returned before its cancel, however long a put takes.
    """
    runs: list[int] = []
    submitted: dict[int, Any] = {}

    async def record(request: int) -> int:
        runs.append(request)
        await asyncio.sleep(0)
        return request

    async def main() -> None:
        redis: coredis.Redis[Any] = coredis.Redis(host="127.0.0.1", port=redis_port)
        async with redis:
            handle = RedisQueue(redis, name)
            async with (
                WorkerPool(record, queue=RedisQueue(redis, name), workers=2),
                WorkerPool[Any, Any](None, queue=handle, workers=0) as front,
            ):
                loop = asyncio.get_running_loop()

                async def submit(n: int) -> None:
                    submitted[n] = await front.submit(n)

                n = 0
                while n < 60 or not submitted:
                    assert n < 100_000, "no submit ever returned"
                    task = loop.create_task(submit(n))
                    for _ in range(n):
                        await asyncio.sleep(0)
                    task.cancel()
                    await asyncio.wait([task])
                    n += 1
                for ticket in submitted.values():
                    await ticket.result()
            assert sorted(runs) == sorted(set(runs))
            assert set(submitted) <= set(runs)
            # The first, cancelled before it ever ran, cannot have submitted.
            assert 0 not in submitted
            assert 0 == (await handle.fetch_statistics()).current_size

    asyncio.run(asyncio.wait_for(main(), 60))


# -- faults ---------------------------------------------------------------------------


# coredis 6.9 drops the connections of a server that went away without closing
# their anyio memory streams, which warn when collected (an upstream defect).
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*MemoryObject:pytest.PytestUnraisableExceptionWarning"
)
async def test_a_restarted_server_loses_nothing_and_pools_resume(
    durable_redis: RedisServer,
) -> None:
    """Redis stops mid-run: submit says so; workers wait, and resume once it is back.

    The server keeps an append-only file: what it acknowledged survives.
    """
    runs: list[int] = []

    async def record(request: int) -> int:
        runs.append(request)
        await anyio.lowlevel.checkpoint()
        return 2 * request

    redis: coredis.Redis[Any] = coredis.Redis(
        host="127.0.0.1", port=durable_redis.port, stream_timeout=5, connect_timeout=1
    )
    async with redis:
        name = f"faults-{uuid.uuid4().hex[:8]}"
        async with WorkerPool[Any, Any](
            None, queue=RedisQueue(redis, name), workers=0
        ) as front:
            async with WorkerPool(record, queue=RedisQueue(redis, name), workers=2):
                assert [0, 2] == [await front.execute(n) for n in range(2)]
            queued = [await front.submit(n) for n in range(2, 6)]
            durable_redis.stop()
            idle = WorkerPool[Any, Any](None, queue=RedisQueue(redis, name), workers=0)
            with pytest.raises(ConnectionError, match="is unreachable"):
                await idle.submit(98)  # a pool not running puts at once
            await idle.shutdown()
            with pytest.raises(
                ConnectionError, match=r"Redis queue 'faults-.*' is unreachable"
            ):
                await front.submit(99)
            with pytest.raises(ConnectionError, match="is unreachable"):
                await front.submit(97, key="k")  # the same with a key
            assert {} == front._link.unanswered
            async with WorkerPool(
                record, queue=RedisQueue(redis, name), workers=2
            ) as back:
                await anyio.sleep(0.3)  # its tasks find no server, and back off
                durable_redis.start()
                with anyio.fail_after(60):
                    assert [4, 6, 8, 10] == [await t.result() for t in queued]
                assert 12 == await front.execute(6)
            assert 5 == back.status().completed
    assert [0, 1, 2, 3, 4, 5, 6] == sorted(runs)
    gc.collect()  # those streams: collected here, under this test's filter


async def test_submit_cancelled_while_its_put_is_in_flight(
    queue: Callable[..., RedisQueue],
) -> None:
    """A cancel scope cancelled during the server call: the call ends first.

    Queued, submit returns (the scope's cancellation comes at the next
    checkpoint); refused, the cancellation is raised, not QueueFull.
    """
    async with WorkerPool[Any, Any](
        None, queue=queue(max_size=1), workers=0, name="inflight"
    ) as front:
        scopes: list[anyio.CancelScope] = []
        outcomes: list[object] = []

        class CutShort:
            """The pool's server, but a put cancels its submitter as it starts."""

            def __init__(self, real: Any) -> None:
                self.real = real

            def __getattr__(self, name: str) -> Any:
                return getattr(self.real, name)

            async def put(self, *args: Any, **kwargs: Any) -> Any:
                scopes[-1].cancel()  # the submitter's, while its put is in flight
                return await self.real.put(*args, **kwargs)

        link = front._link  # (private: to cut in as the put is sent)
        link.server = CutShort(link.server)

        async def submit(n: int) -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                outcomes.append(await front.submit(n))
                outcomes.append("returned")
            outcomes.append(scope.cancelled_caught)

        for n in range(2):
            await submit(n)
        # The first: queued, returned (no checkpoint after it in the scope);
        # the second: refused for room, so the cancellation is what it raised.
        assert ["returned", False, True] == outcomes[1:]
        assert TicketState.QUEUED is getattr(outcomes[0], "state", None)
        assert 1 == await queued_on_server(queue())
        await front.shutdown(drain=False)


async def test_timeouts_hold_while_the_submitter_is_away(
    queue: Callable[..., RedisQueue],
) -> None:
    """The worker enforces both timeouts itself, by the server's clock.

    Requests queued by a pool that is not running yet (so has no timer): one waits
    past its queue_timeout before a worker takes it, one runs past its timeout.
    Their submitter learns how they ended once it runs.
    """
    started = anyio.Event()

    async def hang(request: int) -> int:
        started.set()
        await anyio.sleep_forever()
        return request  # pragma: no cover (never returns)

    handle = queue()
    front = WorkerPool[Any, Any](None, queue=handle, workers=0, name="away")
    waited = await front.submit(1, queue_timeout=0.05, priority=Priority.HIGH)
    ran = await front.submit(2, timeout=0.3)
    await anyio.sleep(0.1)  # past the first one's queue_timeout, on any clock
    async with WorkerPool(hang, queue=queue(), workers=1) as back:
        await started.wait()
        await until(lambda: _queued_is(handle, 0))
        async with front:
            with anyio.fail_after(30), pytest.raises(QueueTimeout):
                await waited.result()
            with anyio.fail_after(30), pytest.raises(RequestTimeout, match="running"):
                await ran.result()
    assert 2 == back.status().timed_out


async def test_a_request_taken_from_under_the_pool_has_no_position(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """Taken by a channel receiver on the same name: the server no longer has it."""
    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        ticket = await front.submit(1)
        assert 0 == await ticket.fetch_position()
        _, receive = create_redis_priority_channel(client, name)
        with pytest.raises(ValueError, match="cannot deserialize request"):
            await receive.receive()  # taken for good: a pool's envelope is no JSON
        assert await ticket.fetch_position() is None
        assert ticket.position is None
        await front.shutdown(drain=False)


async def test_garbage_on_the_queue_fails_alone(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """An item that is no pool request is taken, failed and dropped; work goes on."""

    class Raw:
        def dumps(self, obj: Any) -> bytes:
            return bytes(obj)

        def loads(self, data: bytes) -> Any:  # pragma: no cover (never received)
            return data

    send, _ = create_redis_priority_channel(client, name, serializer=Raw())
    await send.send(b"no envelope", Priority.CRITICAL)
    handle = queue()
    async with (
        WorkerPool[Any, Any](None, queue=handle, workers=0) as front,
        WorkerPool(double, queue=queue(), workers=1),
    ):
        assert 8 == await front.execute(4)
        assert 0 == await queued_on_server(handle)
        statistics = await send.fetch_statistics()
        assert 0 == statistics.current_size


async def test_a_result_the_submitter_cannot_read_fails_its_ticket(
    client: coredis.Redis[Any], name: str
) -> None:
    """Submitter and worker disagree on the serializer: the ticket says so."""

    class Strict:
        def dumps(self, obj: Any) -> bytes:
            return json.dumps(obj).encode()

        def loads(self, data: bytes) -> Any:
            value = json.loads(data)
            if value == 6:
                raise ValueError("six is not allowed here")
            return value

    async with (
        WorkerPool[Any, Any](
            None, queue=RedisQueue(client, name, serializer=Strict()), workers=0
        ) as front,
        WorkerPool(double, queue=RedisQueue(client, name), workers=1),
    ):
        ticket = await front.submit(3)
        with pytest.raises(ValueError, match="cannot deserialize the result"):
            await ticket.result()
        assert TicketState.FAILED is ticket.state


async def test_an_observer_counts_what_a_redis_pool_submits(
    queue: Callable[..., RedisQueue],
) -> None:
    """Metrics see submissions, as in-process."""

    class Counting:
        def __init__(self) -> None:
            self.counted = 0

        def attach(self, pool: Any) -> None:
            pass

        def submitted(self, pool: str, priority: int) -> None:
            self.counted += 1

        def rejected(self, pool: str, priority: int) -> None:  # pragma: no cover
            pass

        def started(
            self, pool: str, priority: int, wait: float
        ) -> None:  # pragma: no cover
            pass

        def finished(self, *args: object) -> None:
            pass

    observer = Counting()
    async with WorkerPool[Any, Any](
        None, queue=queue(), workers=0, metrics=observer
    ) as front:
        await front.submit(1)
        await front.shutdown(drain=False)
    assert 1 == observer.counted


async def test_a_server_error_is_raised_as_it_is_and_queues_nothing(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A queue key of the wrong type (someone else's data): the server's error."""
    await client.set(f"qk:{{{name}}}:queue", "not a sorted set")
    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        with pytest.raises(
            coredis.exceptions.ResponseError, match="wrong kind of value"
        ):
            await front.submit(1)
        await front.shutdown(drain=False)
    await client.delete([f"qk:{{{name}}}:queue"])


async def test_a_server_without_functions_runs_the_same_code_as_a_script(
    scripts_only_redis: RedisServer,
) -> None:
    """No FUNCTION or FCALL (Redis 6, or disabled): EVALSHA of the same library."""
    redis: coredis.Redis[Any] = coredis.Redis(
        host="127.0.0.1", port=scripts_only_redis.port
    )
    async with redis:
        name = f"scripts-{uuid.uuid4().hex[:8]}"
        async with (
            WorkerPool[Any, Any](
                None, queue=RedisQueue(redis, name), workers=0
            ) as front,
            WorkerPool(double, queue=RedisQueue(redis, name), workers=2),
        ):
            tickets = [
                await front.submit(n, priority=Priority.LOW if n % 2 else 0)
                for n in range(10)
            ]
            assert [2 * n for n in range(10)] == [await t.result() for t in tickets]
        await redis.script_flush()  # gone: loaded again on the next call
        send, receive = create_redis_priority_channel(redis, name)
        await send.send("after a flush")
        assert "after a flush" == await receive.receive()
