"""The Redis queue's server side (the Lua library) against a real redis-server."""

from __future__ import annotations

import itertools
import random
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

import coredis
import coredis.exceptions

from queuekeeper._redis._server import DIGEST, MAX_PRIORITY, ServerQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

_names = itertools.count()


@pytest.fixture
async def client(redis_port: int) -> AsyncIterator[coredis.Redis[Any]]:
    """A coredis client on the test server, in the test's event loop."""
    redis: coredis.Redis[Any] = coredis.Redis(host="127.0.0.1", port=redis_port)
    async with redis:
        yield redis


@pytest.fixture
def queue(client: coredis.Redis[Any]) -> ServerQueue:
    """A queue of its own for each test."""
    return ServerQueue(client, f"test-{next(_names)}-{uuid.uuid4().hex[:8]}")


def new_id() -> str:
    """A request id, as a pool makes them."""
    return uuid.uuid4().hex


async def put(
    queue: ServerQueue, *priorities: int, max_size: int | None = None
) -> list[str]:
    """Queue one request per priority, in order; their ids."""
    ids = [new_id() for _ in priorities]
    statuses, _ = await queue.put(
        [(i, p, i.encode()) for i, p in zip(ids, priorities, strict=True)], max_size
    )
    assert None not in statuses
    return ids


async def test_order_is_priority_then_arrival_over_100_000_requests_at_256_levels(
    queue: ServerQueue,
) -> None:
    """Taken in batches: lowest priority value first, first come first within one."""
    rng = random.Random(12)
    sent = [(new_id(), rng.randrange(MAX_PRIORITY + 1)) for _ in range(100_000)]
    for start in range(0, len(sent), 1_000):
        batch = sent[start : start + 1_000]
        await queue.put([(i, p, i.encode()) for i, p in batch], None)
    expected = [i for i, _ in sorted(sent, key=lambda pair: pair[1])]  # stable: FIFO
    taken: list[str] = []
    while batch_taken := (await queue.take(1_000, 60.0, "t"))[0]:
        taken += [t.id for t in batch_taken]
        assert all(t.payload == t.id.encode() for t in batch_taken)
        await queue.ack("t", [t.id for t in batch_taken])
    assert expected == taken
    assert (0, 0, 100_000, {}) == await queue.sizes()


async def test_scores_stay_exact_integers_at_the_edge_of_the_packing(
    queue: ServerQueue, client: coredis.Redis[Any]
) -> None:
    """Priority 255 with a sequence near 2**40: the score is stored exactly."""
    await client.hset(queue.keys[2], {"seq": str(2**40 - 3)})
    low, high = await put(queue, MAX_PRIORITY, 0)
    score = await client.zscore(queue.keys[0], low)
    assert MAX_PRIORITY * 2**40 + 2**40 - 2 == score
    # Printed by Lua's tostring, it would have lost digits: 2.8147497671066e+14.
    assert MAX_PRIORITY * 2**40 + 2**40 - 2 == int(score)
    assert [high, low] == [t.id for t in (await queue.take(2, 60.0, "t"))[0]]


async def test_the_size_limit_holds_under_concurrent_producers(
    queue: ServerQueue,
) -> None:
    """Eight producers racing for 100 places: exactly 100 queued, never more."""
    accepted: list[int] = []

    async def produce() -> None:
        for _ in range(40):
            (status,), _ = await queue.put([(new_id(), 3, b"x")], 100)
            accepted.append(status is not None)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(produce)
    assert 100 == sum(accepted)
    assert (100, 0, 100, {3: 100}) == await queue.sizes()


async def test_a_batch_refused_for_room_refuses_the_rest_of_it(
    queue: ServerQueue,
) -> None:
    """Room for two of four: the first two are queued, never the last."""
    ids = [new_id() for _ in range(4)]
    statuses, _ = await queue.put(
        [(i, p, b"") for i, p in zip(ids, [4, 4, 0, 0], strict=True)], 2
    )
    assert [1, 2, None, None] == statuses
    assert (2, 0, 2, {4: 2}) == await queue.sizes()


async def lease_ran_out(queue: ServerQueue, request_id: str) -> None:
    """Return once the server's clock has passed the lease of *request_id*."""
    client = queue.client
    deadline = await client.zscore(queue.keys[3], request_id)
    assert deadline is not None
    with anyio.fail_after(10):  # a hang guard; the wait is on the server's clock
        while True:
            if (await client.time()).timestamp() * 1000 > deadline:
                return
            await anyio.lowlevel.checkpoint()


async def test_a_lease_that_runs_out_puts_the_request_back_where_it_was(
    queue: ServerQueue,
) -> None:
    """Redelivered before later requests of its level, counted, stale acks refused."""
    first, second = await put(queue, 2, 2)
    (taken,) = (await queue.take(1, 0.001, "dead-worker"))[0]
    assert (first, 1) == (taken.id, taken.deliveries)
    later = (await put(queue, 2))[0]
    await lease_ran_out(queue, first)
    (again,) = (await queue.take(1, 60.0, "live-worker"))[0]
    assert (first, 2) == (again.id, again.deliveries)
    assert 0 == await queue.ack("dead-worker", [first])  # its lease is gone
    assert 0 == await queue.renew(60.0, "dead-worker", [first])
    assert 1 == await queue.renew(60.0, "live-worker", [first])
    assert 1 == await queue.ack("live-worker", [first])
    assert [second, later] == [t.id for t in (await queue.take(2, 60.0, "t"))[0]]


async def test_release_puts_a_taken_request_back_first_in_its_level(
    queue: ServerQueue,
) -> None:
    """Its place and its delivery count are kept; only its holder may release it."""
    first, second = await put(queue, 1, 1)
    assert [first] == [t.id for t in (await queue.take(1, 60.0, "a"))[0]]
    assert not await queue.release("b", first)
    assert await queue.release("a", first)
    assert not await queue.release("a", first)  # no longer held
    again = (await queue.take(2, 60.0, "c"))[0]
    assert [(first, 2), (second, 1)] == [(t.id, t.deliveries) for t in again]


async def test_remove_position_evict_and_sizes(queue: ServerQueue) -> None:
    """What a pool asks of requests still queued."""
    critical, normal, low_1, low_2 = await put(queue, 1, 3, 4, 4)
    assert [0, 1, 2, 3] == [
        await queue.position(i) for i in (critical, normal, low_1, low_2)
    ]
    assert (4, 0, 4, {1: 1, 3: 1, 4: 2}) == await queue.sizes()
    evicted = await queue.evict(3)
    assert evicted is not None
    assert (low_2, 4, 0) == (evicted.id, evicted.priority, evicted.deliveries)
    assert await queue.evict(4) is None  # nothing lower than 4 left
    assert await queue.remove(normal)
    assert not await queue.remove(normal)
    assert await queue.position(normal) is None
    assert [0, 1] == [await queue.position(i) for i in (critical, low_1)]
    assert (2, 0, 4, {1: 1, 4: 1}) == await queue.sizes()
    (taken,) = (await queue.take(1, 60.0, "t"))[0]
    assert (2 - 1, 1) == (await queue.sizes())[:2]
    assert not await queue.remove(taken.id)  # taken: not queued any more


async def test_a_reused_id_is_refused(queue: ServerQueue) -> None:
    """An id queued or taken is never overwritten."""
    (request_id,) = await put(queue, 1)
    with pytest.raises(ValueError, match=rf"request id '{request_id}' is in the queue"):
        await queue.put([(request_id, 1, b"again")], None)
    (await queue.take(1, 60.0, "t"))[0]
    with pytest.raises(ValueError, match="is in the queue already"):
        await queue.put([(request_id, 1, b"again")], None)


async def test_a_reused_id_is_refused_with_a_key_too(queue: ServerQueue) -> None:
    """share() refuses an id in use as put() does; a key is compared as bytes."""
    (request_id,) = await put(queue, 1)
    with pytest.raises(ValueError, match=rf"request id '{request_id}' is in the queue"):
        await queue.share([(request_id, 1, b"again", b"k")], None)
    assert ([2, -2, 3, 4], None) == await queue.share(
        [
            ("a:1", 1, b"a", b"k"),
            ("b:1", 1, b"b", b"k"),  # joins a:1
            ("c:1", 1, b"c", b"K"),  # another key
            ("d:1", 1, b"d", None),  # no key
        ],
        None,
    )
    (taken,), _ = await queue.take(1, 60.0, "t")
    assert request_id == taken.id
    assert ([None, -2, -2, None], "0-0") == await queue.share(
        [
            ("e:1", 1, b"e", b"x"),  # no room: refused, as h:1 is after it
            ("f:1", 1, b"f", b"K"),  # joins c:1, needing no room
            ("g:1", 1, b"g", b"k"),
            ("h:1", 1, b"h", None),
        ],
        3,
    )
    (taken,), _ = await queue.take(1, 60.0, "t")
    assert "a:1" == taken.id
    assert ([-3], None) == await queue.share([("i:1", 1, b"i", b"k")], None)


@pytest.mark.parametrize("priority", [-1, 256, 2**64])
async def test_priorities_outside_0_to_255_are_refused_naming_them(
    queue: ServerQueue, priority: int
) -> None:
    """A TypeError or ValueError naming the value; nothing is queued."""
    with pytest.raises(
        ValueError,
        match=rf"^priority must be an int from 0 to 255 on Redis, not {priority}$",
    ):
        await queue.put([(new_id(), priority, b"")], None)
    with pytest.raises(TypeError, match=r"not True \(bool\)$"):
        await queue.put([(new_id(), True, b"")], None)
    assert (0, 0, 0, {}) == await queue.sizes()


async def test_the_library_loads_itself_on_a_server_without_it(
    queue: ServerQueue, client: coredis.Redis[Any]
) -> None:
    """After FUNCTION FLUSH the next call loads it; loading twice is harmless."""
    await client.function_flush()
    await put(queue, 1)
    await queue.load()  # already there
    assert (1, 0, 1, {1: 1}) == await queue.sizes()


async def test_a_cancelled_caller_still_gets_what_it_took(queue: ServerQueue) -> None:
    """Calls are shielded: the take completes, and the cancellation comes after."""
    (request_id,) = await put(queue, 1)
    got = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        got += (await queue.take(1, 60.0, "t"))[0]
        await anyio.lowlevel.checkpoint()
        pytest.fail("the cancellation was not delivered")  # pragma: no cover
    assert [request_id] == [t.id for t in got]
    assert (0, 1) == (await queue.sizes())[:2]


async def test_the_bell_rings_when_the_queue_goes_from_empty_to_non_empty(
    queue: ServerQueue, client: coredis.Redis[Any]
) -> None:
    """Once per empty-to-non-empty change: waiters wake, and no more often."""
    await put(queue, 1)
    await put(queue, 2)
    assert 1 == await client.xlen(queue.bell)
    assert 2 == len((await queue.take(2, 60.0, "t"))[0])  # empty again
    await put(queue, 3)
    assert 2 == await client.xlen(queue.bell)


async def test_a_ring_between_finding_nothing_and_waiting_is_not_missed(
    queue: ServerQueue,
) -> None:
    """take() says which ring it saw; a wait after it returns at the next one."""
    taken, seen = await queue.take(1, 60.0, "t")
    assert ([], True) == (taken, seen is not None)
    assert seen is not None
    assert not await queue.wait(queue.bell, seen, 0.001)  # nothing rang: times out
    await put(queue, 1)  # rings, before anyone waits
    with anyio.fail_after(10):  # a hang guard: the ring is already there
        assert await queue.wait(queue.bell, seen, 60.0)
    taken, seen = await queue.take(1, 60.0, "t")
    assert (1, None) == (len(taken), seen)


async def test_room_rings_when_a_full_queue_loses_a_request(queue: ServerQueue) -> None:
    """A put refused for room says which ring it saw; a take, remove or evict rings."""
    (first,) = await put(queue, 4, max_size=1)
    statuses, seen = await queue.put([(new_id(), 1, b"")], 1)
    assert ([None], True) == (statuses, seen is not None)
    assert seen is not None
    assert not await queue.wait(queue.room, seen, 0.001)
    assert await queue.remove(first)  # room now
    with anyio.fail_after(10):
        assert await queue.wait(queue.room, seen, 60.0)
    statuses, seen = await queue.put([(new_id(), 1, b"")], 1)
    assert (1, None) == (len([s for s in statuses if s]), seen)
    _, room = await queue.put([(new_id(), 2, b"")], 1)
    assert room is not None
    await queue.take(1, 60.0, "t")
    with anyio.fail_after(10):
        assert await queue.wait(queue.room, room, 60.0)
    await put(queue, 4, max_size=1)
    _, room = await queue.put([(new_id(), 0, b"")], 1)
    assert room is not None
    assert await queue.evict(0) is not None
    with anyio.fail_after(10):
        assert await queue.wait(queue.room, room, 60.0)


async def test_server_errors_other_than_a_missing_library_are_raised(
    queue: ServerQueue, client: coredis.Redis[Any]
) -> None:
    """A key of the wrong type, or a foreign library holding a function's name."""
    await client.set(queue.keys[0], "not a sorted set")
    with pytest.raises(coredis.exceptions.ResponseError, match="wrong kind of value"):
        await queue.sizes()
    await client.function_flush()
    foreign = (
        "#!lua name=foreign\n"
        f"redis.register_function('qk_{DIGEST}_put', function() end)"
    )
    await client.function_load(foreign)
    try:
        with pytest.raises(coredis.exceptions.ResponseError, match=f"qk_{DIGEST}_put"):
            await queue.load()
    finally:
        await client.function_flush()


def test_a_queue_needs_a_name() -> None:
    """An empty name is refused, naming it."""
    client: coredis.Redis[Any] = coredis.Redis(host="127.0.0.1")  # never connects
    with pytest.raises(ValueError, match=r"^name must be a non-empty str, not ''$"):
        ServerQueue(client, "")


async def test_a_lease_of_zero_takes_for_good(queue: ServerQueue) -> None:
    """At most once: nothing held, nothing to acknowledge or to come back."""
    (request_id,) = await put(queue, 1)
    (taken,), _ = await queue.take(1, 0.0, "t")
    assert (request_id, 1) == (taken.id, taken.deliveries)
    assert (0, 0, 1, {}) == await queue.sizes()
    assert 0 == await queue.ack("t", [request_id])


async def test_a_server_holding_another_version_of_the_library_is_served(
    queue: ServerQueue, client: coredis.Redis[Any]
) -> None:
    """An older library's functions stay; this version's load beside them."""
    await client.function_flush()
    older = (
        "#!lua name=queuekeeper_0123456789abcdef\n"
        "redis.register_function('qk_0123456789abcdef_put', function() return 0 end)"
    )
    await client.function_load(older)
    try:
        assert [1] == (await queue.put([(new_id(), 1, b"")], None))[0]
        libraries = set(await client.function_list())
        assert {b"queuekeeper_0123456789abcdef", f"queuekeeper_{DIGEST}".encode()} == (
            libraries
        )
    finally:
        await client.function_flush()
