"""Retries and dead letters on a RedisQueue, against a real redis-server.

A retry waits on the server (the queue's delayed set), so it survives the process
that ran the failed attempt; a request that failed for good goes to the queue's
capped dead-letter list, which any process reads.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

import coredis

from helpers import until
from queuekeeper import DeadLetter, RequestTimeout, Retry, TicketState, WorkerPool
from queuekeeper._pool._graves import _rebuilt, read_dead_letters
from queuekeeper.redis import JSONSerializer, RedisQueue
from test_redis_pool import read_line, spawn, stop

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import RedisServer

pytestmark = pytest.mark.anyio


def flaky(client: Any) -> Callable[[Any], Any]:
    """``[key, n]``: the n-th run with *key* (counted on the server) returns n."""

    async def handle(request: Any) -> Any:
        key, succeeds_at = request
        count = await client.incr(key)
        if count < succeeds_at:
            msg = f"{key} down at run {count}"
            raise ConnectionError(msg)
        return count

    return handle


def key() -> str:
    """A counter's key of the test's own."""
    return f"retry-test-{uuid.uuid4().hex[:8]}"


async def delayed(client: Any, name: str) -> int:
    """Requests waiting out a backoff on the server."""
    return int(await client.zcard(f"qk:{{{name}}}:delayed"))


async def test_a_retry_succeeds_on_the_third_attempt_in_another_process(
    queue: Callable[..., RedisQueue], redis_port: int, name: str, anyio_backend: str
) -> None:
    """Submitted here, failed twice there, retried there: one ticket, 3 attempts."""
    worker = spawn(anyio_backend, redis_port, name, "retry", "3", "0.05")
    try:
        assert "serving\n" == await read_line(worker)
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            counter = key()
            ticket = await front.submit([counter, 3])
            with anyio.fail_after(30):
                assert 3 == await ticket.result()
            assert (3, TicketState.SUCCEEDED) == (ticket.attempts, ticket.state)
            runs = [await read_line(worker) for _ in range(3)]
            assert [f"run {counter} {n}\n" for n in (1, 2, 3)] == runs
    finally:
        stop(worker)


async def test_a_retry_survives_the_death_of_the_process_that_ran_the_attempt(
    queue: Callable[..., RedisQueue],
    client: Any,
    redis_port: int,
    name: str,
    anyio_backend: str,
) -> None:
    """SIGKILLed during the backoff: the retry waits on the server; another runs it."""
    worker = spawn(anyio_backend, redis_port, name, "retry", "3", "1.5")
    try:
        assert "serving\n" == await read_line(worker)
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            counter = key()
            ticket = await front.submit([counter, 2])
            assert f"run {counter} 1\n" == await read_line(worker)
            await until(lambda: ticket.attempts == 1)
            assert 1 == await delayed(client, name)
            stop(worker)
            # Waiting out its backoff: queued, no position.
            assert TicketState.QUEUED is ticket.state
            assert ticket.position is None
            async with WorkerPool(
                flaky(client), queue=queue(), workers=1, retry=Retry(3)
            ):
                with anyio.fail_after(30):
                    assert 2 == await ticket.result()
            assert 2 == ticket.attempts
            assert 0 == await delayed(client, name)
    finally:
        stop(worker)


async def test_exhausted_retries_fail_here_and_leave_a_dead_letter_for_anyone(
    queue: Callable[..., RedisQueue],
    client: Any,
    redis_port: int,
    name: str,
    anyio_backend: str,
) -> None:
    """FAILED with the handler's type and message; one record another process reads."""
    worker = spawn(anyio_backend, redis_port, name, "retry", "2", "0.05")
    try:
        assert "serving\n" == await read_line(worker)
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            counter = key()
            ticket = await front.submit([counter, 5], priority=3)
            with anyio.fail_after(30), pytest.raises(ConnectionError) as caught:
                await ticket.result()
            assert f"{counter} down at run 2" == str(caught.value)
            assert (2, TicketState.FAILED) == (ticket.attempts, ticket.state)
    finally:
        stop(worker)
    reader = spawn(anyio_backend, redis_port, name, "dead")
    try:
        record = json.loads(await read_line(reader))
        assert [
            "builtins.ConnectionError",
            f"{counter} down at run 2",
            2,
            [counter, 5],
        ] == record
        assert "end\n" == await read_line(reader)
    finally:
        stop(reader)
    (letter,) = await queue().dead_letters()
    assert isinstance(letter.error, ConnectionError)
    assert (3, 2) == (letter.priority, letter.attempts)
    assert "ConnectionError" in letter.traceback
    assert letter.ticket_id.endswith(f":{ticket._seq}")
    assert letter.submitted_at <= letter.finished_at
    assert (1, 0) == await queue().dead_letter_counts()


async def test_the_dead_letter_list_keeps_the_newest_and_counts_the_dropped(
    queue: Callable[..., RedisQueue], client: Any, name: str
) -> None:
    """A cap of 2: the oldest go, counted; the pool's own stream says the same."""

    async def fail(request: int) -> None:
        msg = f"bad {request}"
        raise KeyError(msg)

    async with WorkerPool(
        fail, queue=queue(), workers=1, dead_letter_size=2, name="cap"
    ) as pool:
        for n in range(3):
            with pytest.raises(KeyError):
                await pool.execute(n)
        await until(lambda: pool.status().dead_letters == 3)
        assert 1 == pool.status().dead_letters_dropped
        letters = pool.dead_letters
        got = [await letters.receive(), await letters.receive()]
        assert [1, 2] == [each.request for each in got]
        assert isinstance(got[0].error, KeyError)
    await until(lambda: pool.status().failed == 3)
    with pytest.raises(anyio.EndOfStream):
        await letters.receive()
    assert (3, 1) == await queue().dead_letter_counts()
    assert [1, 2] == [each.request for each in await queue().dead_letters(5)]
    assert [1] == [each.request for each in await queue().take_dead_letters(1)]
    assert [2] == [each.request for each in await queue().take_dead_letters(5)]
    assert [] == await queue().take_dead_letters()
    # KeyError's message is its repr'd argument: rebuilt as is.
    assert "'bad 0'" not in [str(each.error) for each in got]


async def test_status_counts_retries_and_backoffs(
    queue: Callable[..., RedisQueue], client: Any
) -> None:
    """retried, retrying (the server's) and failed, in one process's pool."""
    async with WorkerPool(
        flaky(client),
        queue=queue(),
        workers=2,
        retry=Retry(2, backoff=60.0, on=(ConnectionError,)),
    ) as pool:
        ticket = await pool.submit([key(), 5])
        await until(lambda: pool.status().retrying == 1)
        status = pool.status()
        assert (1, 0, 0) == (status.retried, status.failed, status.dead_letters)
        assert (TicketState.QUEUED, 1) == (ticket.state, ticket.attempts)
        # Not one of Retry.on: failed at once.
        with pytest.raises(ValueError, match="too many values"):
            await pool.execute(["not", "a", "pair"])
        assert 1 == pool.status().retried
        assert ticket.cancel()
        with pytest.raises(Exception, match="cancelled"):
            await ticket.result()
        assert TicketState.CANCELLED is ticket.state
        await until(lambda: pool.status().retrying == 0)


async def test_timeout_covers_every_attempt_and_takes_a_backoff_out(
    queue: Callable[..., RedisQueue], client: Any, name: str
) -> None:
    """A deadline that passes during a backoff times the request out at once."""
    async with WorkerPool(
        flaky(client), queue=queue(), workers=1, retry=Retry(3, backoff=60.0)
    ) as pool:
        ticket = await pool.submit([key(), 3], timeout=1.0, queue_timeout=0.5)
        with anyio.fail_after(30), pytest.raises(RequestTimeout):
            await ticket.result()
        assert (TicketState.TIMED_OUT, 1) == (ticket.state, ticket.attempts)
        assert 0 == await delayed(client, name)
        assert 0 == await client.hlen(f"qk:{{{name}}}:items")


async def test_a_retry_takes_the_end_of_its_level(
    queue: Callable[..., RedisQueue], client: Any, name: str
) -> None:
    """Due, a retry is queued behind what waits at its level, ahead of lower ones."""
    order: list[Any] = []
    counter = key()

    async def record(request: Any) -> Any:
        order.append(request)
        if request == "flaky" and await client.incr(counter) == 1:
            msg = "once"
            raise ConnectionError(msg)
        return request

    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        first = await front.submit("flaky", priority=1)
        async with WorkerPool(
            record, queue=queue(), workers=1, retry=Retry(2, backoff=0.5, jitter=False)
        ) as pool:
            await until(lambda: first.attempts == 1)
            await pool.shutdown()
        assert 1 == await delayed(client, name)
        rest = [
            await front.submit("low", priority=2),
            await front.submit("same", priority=1),
        ]

        async def due() -> bool:
            now = round((await client.time()).timestamp() * 1000)
            return bool(await client.zcount(f"qk:{{{name}}}:delayed", "-inf", now))

        await until(due)
        async with WorkerPool(record, queue=queue(), workers=1, retry=Retry(2)):
            for ticket in (first, *rest):
                with anyio.fail_after(30):
                    await ticket.result()
    assert ["flaky", "same", "flaky", "low"] == order


async def test_no_retry_for_a_cancelled_request_or_a_bad_backoff(
    queue: Callable[..., RedisQueue],
) -> None:
    """Cancelled by its submitter, a run that raised fails; so does a bad backoff."""
    started = anyio.Event()

    async def stubborn(request: str) -> None:
        if request == "bad backoff":
            raise ConnectionError(request)
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            raise ConnectionError(request)

    async with WorkerPool(
        stubborn,
        queue=queue(),
        workers=1,
        retry=Retry(3, backoff=lambda n: -1.0 * n),
        dead_letter_size=5,
    ) as pool:
        ticket = await pool.submit("cancelled")
        await started.wait()
        assert ticket.cancel()
        with anyio.fail_after(30), pytest.raises(ConnectionError):
            await ticket.result()
        with pytest.raises(ConnectionError):
            await pool.execute("bad backoff")
        assert (0, 1) == (pool.status().retried, pool.status().dead_letters)
        assert "bad backoff" == (await pool.dead_letters.receive()).request


async def test_retries_run_as_a_script_without_functions(
    scripts_only_redis: RedisServer,
) -> None:
    """The EVALSHA fallback has the new functions too."""
    redis: coredis.Redis[Any] = coredis.Redis(
        host="127.0.0.1", port=scripts_only_redis.port
    )
    async with redis:
        name = f"scripts-{uuid.uuid4().hex[:8]}"
        queue = RedisQueue(redis, name)
        async with WorkerPool(
            flaky(redis),
            queue=queue,
            workers=1,
            retry=Retry(2, backoff=0.0),
            dead_letter_size=1,
        ) as pool:
            assert 2 == await pool.execute([key(), 2])
            with pytest.raises(ConnectionError):
                await pool.execute([key(), 3])
        assert [2] == [each.attempts for each in await queue.dead_letters()]


async def test_bad_options_and_no_dead_letters(
    queue: Callable[..., RedisQueue],
) -> None:
    """Wrong types and values name themselves; no size, no dead letters."""
    with pytest.raises(TypeError, match=r"^retry must be None or a queuekeeper\.Retry"):
        WorkerPool(flaky(None), retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dead_letter_size must be an int >= 1"):
        WorkerPool(flaky(None), dead_letter_size=0)
    pool = WorkerPool(flaky(None), queue=queue())
    with pytest.raises(RuntimeError, match="keeps no dead letters"):
        _ = pool.dead_letters
    with pytest.raises(ValueError, match="limit must be an int >= 1"):
        await queue().dead_letters(0)


def test_records_from_the_list_rebuild_what_they_can() -> None:
    """Built-in exceptions come back; others, and odd ones, are None."""
    assert isinstance(_rebuilt("builtins", "OSError", "x"), OSError)
    assert _rebuilt("mymodule", "Oops", "x") is None
    assert _rebuilt("builtins", "print", "x") is None
    assert _rebuilt("builtins", "UnicodeDecodeError", "x") is None
    head = json.dumps(
        {
            "id": "t:1",
            "priority": 2,
            "attempts": 1,
            "module": "mymodule",
            "type": "Oops",
            "message": "m",
            "traceback": "tb",
        }
    ).encode()
    (letter,) = read_dead_letters(
        [head + b"\n1000 2000\n[null, null]\nnot json"], JSONSerializer()
    )
    assert isinstance(letter, DeadLetter)
    assert (b"not json", None, 1.0, 2.0) == (
        letter.request,
        letter.error,
        letter.submitted_at,
        letter.finished_at,
    )
