"""The priority channel on Redis, against a real redis-server, on both backends."""

from __future__ import annotations

import asyncio
import itertools
import math
import pickle
import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

import coredis

from queuekeeper import ChannelStatistics, Priority
from queuekeeper.redis import (
    Delivery,
    RedisPriorityReceiveChannel,
    RedisPrioritySendChannel,
    create_redis_priority_channel,
)

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

_names = itertools.count()

Channel = tuple[RedisPrioritySendChannel[Any], RedisPriorityReceiveChannel[Any]]


@pytest.fixture
def name() -> str:
    """A queue name of the test's own."""
    return f"channel-{next(_names)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def opener(client: coredis.Redis[Any], name: str) -> Callable[..., Channel]:
    """Open the test's queue: each call is another process's view of it."""

    def open_channel(**options: Any) -> Channel:
        return create_redis_priority_channel(client, name, **options)

    return open_channel


async def waiting(
    endpoint: RedisPrioritySendChannel[Any] | RedisPriorityReceiveChannel[Any],
    *,
    senders: int = 0,
    receivers: int = 0,
) -> None:
    """Return once the channel's tasks wait for room and for items as many as said.

    (Not ``wait_all_tasks_blocked()``: a task in a server call counts as blocked.)
    """
    while True:
        statistics = await endpoint.fetch_statistics()
        if (statistics.tasks_waiting_send, statistics.tasks_waiting_receive) == (
            senders,
            receivers,
        ):
            return


async def test_items_come_out_by_priority_then_arrival(
    opener: Callable[..., Channel],
) -> None:
    """Lowest priority value first, first come first within a level; JSON items."""
    send, receive = opener()
    items = [
        ({"n": 1}, Priority.LOW),
        ([2, "two"], Priority.HIGH),
        ("three", 0),
        (4.5, Priority.HIGH),
        (None, 255),
    ]
    for item, priority in items:
        await send.send(item, priority)
    await send.send("normal")  # the default priority
    got = [await receive.receive() for _ in range(len(items) + 1)]
    assert ["three", [2, "two"], 4.5, "normal", {"n": 1}, None] == got


async def test_two_processes_share_one_queue(opener: Callable[..., Channel]) -> None:
    """What one channel sends on a name, another channel on that name receives."""
    send, _ = opener()
    _, receive = opener()
    await send.send("across", Priority.CRITICAL)
    assert "across" == await receive.receive()


async def test_a_waiting_receiver_wakes_when_an_item_arrives(
    opener: Callable[..., Channel],
) -> None:
    """Several receivers wait (one reads the server, the others its answer)."""
    send, receive = opener()
    got: list[str] = []

    async def take() -> None:
        got.append(await receive.receive())

    with anyio.fail_after(10):  # a hang guard
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(take)
            await waiting(send, receivers=3)  # one on the server, two for it
            for item in ("a", "b", "c"):
                await send.send(item)
    assert ["a", "b", "c"] == sorted(got)


async def test_a_full_queue_makes_senders_wait_until_room_appears(
    opener: Callable[..., Channel],
) -> None:
    """max_size holds across senders; each waiting send goes in once there is room."""
    send, receive = opener(max_size=2)
    await send.send("first")
    await send.send("second")
    sent: list[str] = []

    async def send_late(item: str) -> None:
        await send.send(item)
        sent.append(item)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_late, "third")
            await waiting(send, senders=1)
            statistics = await send.fetch_statistics()
            assert (2, 1, []) == (
                statistics.current_size,
                statistics.tasks_waiting_send,
                sent,
            )
            assert "first" == await receive.receive()
    assert ["third"] == sent
    assert ["second", "third"] == [await receive.receive() for _ in range(2)]


async def test_leaving_a_lease_normally_acknowledges_the_item(
    opener: Callable[..., Channel], client: coredis.Redis[Any]
) -> None:
    """The delivery says what it is; afterwards nothing is queued or in flight."""
    send, receive = opener()
    await send.send({"job": 1}, Priority.HIGH)
    async with receive.lease() as delivery:
        assert Delivery({"job": 1}, Priority.HIGH, 1, delivery.id) == delivery
    statistics = await send.fetch_statistics()
    assert 0 == statistics.current_size
    assert 0 == await client.zcard(receive._shared.server.keys[3])


async def leave_a_lease(
    receive: RedisPriorityReceiveChannel[Any], scope: anyio.CancelScope | None
) -> None:
    """Take "first" under a lease, then leave by an error, or by cancelling *scope*."""
    async with receive.lease() as delivery:
        assert ("first", 1) == (delivery.item, delivery.deliveries)
        if scope is None:
            raise LookupError(delivery.item)
        scope.cancel()
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("how", ["error", "cancellation"])
async def test_leaving_a_lease_by_an_error_or_a_cancellation_puts_it_back(
    opener: Callable[..., Channel], how: str
) -> None:
    """Back where it was: before later items of its level, its delivery counted."""
    send, receive = opener()
    for item in ("first", "second"):
        await send.send(item)
    if how == "error":
        with pytest.raises(LookupError, match="first"):
            await leave_a_lease(receive, None)
    else:
        with anyio.CancelScope() as scope:
            await leave_a_lease(receive, scope)
        assert scope.cancelled_caught
    async with receive.lease() as again:
        assert ("first", 2) == (again.item, again.deliveries)
    assert "second" == await receive.receive()


async def test_a_lease_is_renewed_while_its_block_runs(
    opener: Callable[..., Channel],
) -> None:
    """Held for more than three leases: no other receiver can take it meanwhile."""
    send, receive = opener(lease=0.3)
    _, other = opener(lease=0.3)
    await send.send("long")
    async with receive.lease() as delivery:
        await anyio.sleep(1.0)  # the time that passes is the point of the test
        with anyio.move_on_after(0.5) as waited:
            await other.receive()
        assert waited.cancelled_caught, "the item was handed out again while held"
        assert 1 == delivery.deliveries
    assert 0 == (await send.fetch_statistics()).current_size


async def test_items_that_json_cannot_encode_are_refused_naming_them(
    opener: Callable[..., Channel],
) -> None:
    """A TypeError (or ValueError) naming the item; nothing is queued."""
    send, _ = opener()
    with pytest.raises(
        TypeError, match=r"^cannot serialize <object object at .*JSONSerializer"
    ):
        await send.send(object())
    with pytest.raises(ValueError, match=r"^cannot serialize nan with JSONSerializer"):
        await send.send(math.nan)
    assert 0 == (await send.fetch_statistics()).current_size


class Pickled:
    """A serializer that pickles: for trusted servers only."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 (this test's own data)


async def test_a_serializer_of_ones_own(opener: Callable[..., Channel]) -> None:
    """Anything with dumps and loads carries the items."""
    send, receive = opener(serializer=Pickled())
    await send.send({1, 2, 3})
    assert {1, 2, 3} == await receive.receive()


async def test_an_item_that_cannot_be_read_back_is_reported(
    opener: Callable[..., Channel],
) -> None:
    """receive() says so (the item is gone); lease() puts it back first."""
    send, _ = opener(serializer=Pickled())
    _, receive = opener()  # reads JSON: cannot read pickles
    await send.send("a pickle")
    await send.send("another")
    with pytest.raises(
        ValueError, match=r"^cannot deserialize request \w+ \(\d+ bytes"
    ):
        async with receive.lease():
            pytest.fail("the block ran with no item")  # pragma: no cover
    assert 2 == (await send.fetch_statistics()).current_size
    with pytest.raises(ValueError, match="cannot deserialize"):
        await receive.receive()
    assert 1 == (await send.fetch_statistics()).current_size


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"name": ""}, ValueError, r"^name must be a non-empty str, not ''$"),
        ({"name": 3}, TypeError, r"^name must be a str, not 3 \(int\)$"),
        ({"max_size": 0}, ValueError, r"^max_size must be .* not 0"),
        ({"lease": 0}, ValueError, r"^lease must be .* >= 0.001, not 0$"),
        ({"lease": "1"}, TypeError, r"^lease must be .* not '1' \(str\)$"),
        ({"serializer": object()}, TypeError, r"^serializer must have"),
        ({"client": "redis://"}, TypeError, r"^client must be a coredis.Redis client"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    options: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    """Every argument checked up front, the message naming the value."""
    arguments: dict[str, Any] = {
        "client": coredis.Redis(host="127.0.0.1"),  # never connects
        "name": "bad-arguments",
    } | options
    client, name = arguments.pop("client"), arguments.pop("name")
    with pytest.raises(error, match=pattern):
        create_redis_priority_channel(client, name, **arguments)


@pytest.mark.parametrize(
    ("priority", "error", "shown"),
    [(256, ValueError, "256"), (-1, ValueError, "-1"), ("HIGH", TypeError, "'HIGH'")],
)
async def test_bad_priorities_are_refused_naming_them(
    opener: Callable[..., Channel], priority: object, error: type[Exception], shown: str
) -> None:
    """Priorities are ints from 0 to 255 on Redis."""
    send, _ = opener()
    with pytest.raises(error, match=rf"priority .*not {shown}"):
        await send.send("x", priority)  # type: ignore[arg-type]
    assert 0 == (await send.fetch_statistics()).current_size


async def test_statistics_come_from_the_server(opener: Callable[..., Channel]) -> None:
    """Sizes by level and the peak from the server; endpoints from this channel."""
    send, receive = opener(max_size=10)
    clone = send.clone()
    for priority in (1, 4, 4):
        await clone.send("x", priority)
    await receive.receive()
    assert (
        ChannelStatistics(
            current_size=2,
            max_size=10,
            peak_size=3,
            size_by_priority={4: 2},
            open_send_channels=2,
            open_receive_channels=1,
            tasks_waiting_send=0,
            tasks_waiting_receive=0,
        )
        == await receive.fetch_statistics()
    )


async def test_closed_endpoints_raise_and_the_queue_stays(
    opener: Callable[..., Channel],
) -> None:
    """ClosedResourceError from a closed endpoint; the server keeps the items."""
    send, receive = opener()
    async with send:
        await send.send("kept")
        assert "open>" in repr(send)
    assert "closed>" in repr(send)
    send.close()  # idempotent
    await receive.aclose()
    receive.close()  # idempotent
    for call in (send.clone, receive.clone):
        with pytest.raises(anyio.ClosedResourceError):
            call()
    with pytest.raises(anyio.ClosedResourceError):
        await send.send("no")
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()
    _, other = opener()
    assert "kept" == await other.receive()


async def test_closing_a_sender_ends_its_tasks_waiting_for_room(
    opener: Callable[..., Channel],
) -> None:
    """Within a round of waiting on the server: ClosedResourceError, nothing sent."""
    send, _ = opener(max_size=1)
    await send.send("fills it")
    clone = send.clone()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def wait_for_room() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await clone.send("never")

            tg.start_soon(wait_for_room)
            await waiting(send, senders=1)
            clone.close()
    statistics = await send.fetch_statistics()
    assert (1, 1) == (statistics.current_size, statistics.open_send_channels)


async def test_closing_a_receiver_ends_its_waiting_tasks(
    opener: Callable[..., Channel],
) -> None:
    """Within a round of waiting on the server: ClosedResourceError."""
    _, receive = opener()
    clone = receive.clone()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def wait_for_one() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await clone.receive()

            tg.start_soon(wait_for_one)
            await waiting(receive, receivers=1)
            clone.close()
    assert "open>" in repr(receive)


async def test_random_cancellation_loses_and_duplicates_nothing(
    opener: Callable[..., Channel],
) -> None:
    """Senders and receivers cancelled at random moments: every item counted once."""
    rng = random.Random(7)
    send, receive = opener(max_size=5)
    sent: list[int] = []
    received: list[int] = []

    async def produce(first: int) -> None:
        for item in range(first, first + 40):
            with anyio.move_on_after(rng.choice([0, 0.0005, 0.002, 1])):
                await send.send(item, rng.randrange(4))
                sent.append(item)

    async def consume() -> None:
        for _ in range(60):
            with anyio.move_on_after(rng.choice([0, 0.0005, 0.002, 0.05])):
                if rng.random() < 0.5:
                    received.append(await receive.receive())
                else:
                    async with receive.lease() as delivery:
                        await anyio.sleep(rng.choice([0, 0.001]))
                        received.append(delivery.item)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(produce, 1000 * n)
            for _ in range(3):
                tg.start_soon(consume)
    while (await send.fetch_statistics()).current_size:
        received.append(await receive.receive())
    assert not [item for item, count in Counter(received).items() if count > 1]
    assert sorted(sent) == sorted(received)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "coredis 6.9 loses a connection-pool slot for each blocking command "
        "cancelled in flight; once the pool is used up, every command waits forever"
    ),
)
async def test_upstream_coredis_survives_cancelled_blocking_commands(
    redis_port: int,
) -> None:
    """The client-library bug the channel works around: when it is fixed, this passes.

    queuekeeper never cancels a command in flight (see the next test).
    """
    small: coredis.Redis[Any] = coredis.Redis(
        host="127.0.0.1", port=redis_port, max_connections=2
    )
    async with small:
        for _ in range(3):
            with anyio.move_on_after(0.05):
                await small.blpop([f"nothing-{uuid.uuid4().hex}"], timeout=1)
        with anyio.fail_after(5):  # the 1 s server timeout has long passed by then
            assert b"PONG" == await small.ping()


async def test_cancelled_waits_never_use_up_the_connection_pool(
    redis_port: int, name: str
) -> None:
    """Waiters cancelled on a client of two connections: the channel still works.

    Each receiver is cancelled while it waits on the server, many times over.
    """
    # A starved pool raises after pool_timeout, rather than hang in a shielded call.
    small: coredis.Redis[Any] = coredis.Redis(
        host="127.0.0.1", port=redis_port, max_connections=2, pool_timeout=5
    )
    async with small:
        send, receive = create_redis_priority_channel(small, name)
        for _ in range(6):
            with anyio.move_on_after(0.05):
                await receive.receive()
            with anyio.move_on_after(0.05):
                async with receive.lease():
                    pytest.fail("nothing was sent")  # pragma: no cover
        with anyio.fail_after(10):
            await send.send("still works")
            assert "still works" == await receive.receive()


def test_the_public_names_live_in_queuekeeper_redis() -> None:
    """What tracebacks and reprs show, and what the module exports."""
    import queuekeeper.redis  # noqa: PLC0415

    assert sorted(queuekeeper.redis.__all__) == [
        "Delivery",
        "JSONSerializer",
        "RedisPriorityReceiveChannel",
        "RedisPrioritySendChannel",
        "RedisQueue",
        "RemoteError",
        "Serializer",
        "create_redis_priority_channel",
    ]
    for name in queuekeeper.redis.__all__:
        assert "queuekeeper.redis" == getattr(queuekeeper.redis, name).__module__
    with pytest.raises(TypeError, match="has no public constructor"):
        RedisPrioritySendChannel()  # type: ignore[call-arg]


# -- several processes -------------------------------------------------------------


PROCESS = Path(__file__).with_name("redis_process.py")


def spawn(backend: str, port: int, name: str, *args: str) -> subprocess.Popen[str]:
    """Start tests/redis_process.py: another process on the same queue."""
    return subprocess.Popen(  # noqa: S603 (our interpreter and script)
        [sys.executable, str(PROCESS), backend, str(port), name, *args],
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_four_producer_processes_never_exceed_the_size_limit(
    opener: Callable[..., Channel], redis_port: int, name: str, anyio_backend: str
) -> None:
    """200 items through a queue of 20: the server's peak never passes 20."""
    _, receive = opener()
    producers = [
        spawn(anyio_backend, redis_port, name, "produce", str(1000 * n), "50", "20")
        for n in range(4)
    ]
    try:
        received: list[int] = []
        with anyio.fail_after(60):  # a hang guard
            while len(received) < 200:
                received.append(await receive.receive())
                await anyio.sleep(0.001)  # slower than the producers: they wait
        statistics = await receive.fetch_statistics()
        assert (0, 20) == (statistics.current_size, statistics.peak_size)
        expected = [1000 * n + i for n in range(4) for i in range(50)]
        assert sorted(expected) == sorted(received)
        for producer in producers:
            out, _ = await anyio.to_thread.run_sync(producer.communicate)
            assert (0, "sent\n") == (producer.returncode, out)
    finally:
        for producer in producers:
            producer.kill()  # a no-op for one that ended
            if producer.stdout is not None and not producer.stdout.closed:
                producer.communicate()  # reaps it, and closes its pipe


async def test_an_item_held_by_a_killed_process_comes_back_exactly_once(
    opener: Callable[..., Channel], redis_port: int, name: str, anyio_backend: str
) -> None:
    """SIGKILL mid-lease: once the lease runs out the item is delivered again, once."""
    send, receive = opener()
    await send.send("precious")
    holder = spawn(anyio_backend, redis_port, name, "lease", "0.5")
    try:
        assert holder.stdout is not None
        line = await anyio.to_thread.run_sync(holder.stdout.readline)
        assert "leased precious 1\n" == line
    finally:
        holder.kill()  # SIGKILL: no acknowledgement, no release
        holder.communicate()
    with anyio.fail_after(30):  # a hang guard: the lease is half a second
        async with receive.lease() as delivery:
            assert ("precious", 2) == (delivery.item, delivery.deliveries)
    statistics = await receive.fetch_statistics()
    assert 0 == statistics.current_size
    with anyio.move_on_after(1.0) as nothing_more:  # 2 leases: nothing comes back
        await receive.receive()
    assert nothing_more.cancelled_caught


# -- native asyncio cancellation ----------------------------------------------------


def test_native_asyncio_cancellation_loses_and_duplicates_nothing(
    redis_port: int, name: str
) -> None:
    """task.cancel() at random moments of send, receive and lease, under plain asyncio.

    A native cancellation is delivered once: the call raises it and undoes what it
    did (an item sent comes out again, one taken goes back first in line). Every
    item is counted once, and the client's two connections are never used up.
    """
    rng = random.Random(11)

    async def main() -> None:
        client: coredis.Redis[Any] = coredis.Redis(
            host="127.0.0.1", port=redis_port, max_connections=2, pool_timeout=5
        )
        async with client:
            send, receive = create_redis_priority_channel(client, name, max_size=3)
            loop = asyncio.get_running_loop()
            sent: list[int] = []
            received: list[int] = []

            async def send_one(item: int) -> None:
                await send.send(item, item % 4)
                sent.append(item)

            async def receive_one() -> None:
                if rng.random() < 0.5:
                    received.append(await receive.receive())
                else:
                    async with receive.lease() as delivery:
                        received.append(delivery.item)

            for item in range(120):
                task = loop.create_task(send_one(item) if item % 2 else receive_one())
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.wait([task])
            while (await send.fetch_statistics()).current_size:
                received.append(await receive.receive())
            assert not [i for i, count in Counter(received).items() if count > 1]
            assert sorted(sent) == sorted(received)
            assert b"PONG" == await client.ping()

    asyncio.run(asyncio.wait_for(main(), 60))  # wait_for: a hang guard


@pytest.mark.parametrize("call", ["send", "receive", "lease", "send-when-full", "wait"])
def test_native_cancellation_at_each_step_of_a_call_undoes_it(
    redis_port: int, name: str, call: str
) -> None:
    """task.cancel() after 0, 1, 2... loop turns: the call happened, or left no trace.

    A call that raises CancelledError left the queue as it was: an item sent came
    out again, one taken went back first in line, a send refused for room sent
    nothing, a receiver waiting on the server took nothing.
    """

    async def main() -> None:
        client: coredis.Redis[Any] = coredis.Redis(
            host="127.0.0.1", port=redis_port, max_connections=2, pool_timeout=5
        )
        async with client:
            send, receive = create_redis_priority_channel(client, name, max_size=2)
            loop = asyncio.get_running_loop()
            outcomes: Counter[str] = Counter()
            for turns in range(12):
                queued = 0 if call in {"send", "wait"} else 1
                if call == "send-when-full":
                    queued = 2
                for item in range(queued):
                    await send.send(f"before-{item}", Priority.HIGH)
                if call not in {"send-when-full", "wait"}:
                    await send.send("later", Priority.LOW)
                before = (await send.fetch_statistics()).current_size

                async def run() -> object:
                    if call in {"send", "send-when-full"}:
                        await send.send("new", Priority.CRITICAL)
                        return "sent"
                    if call in {"receive", "wait"}:
                        return await receive.receive()
                    async with receive.lease() as delivery:
                        return delivery.item

                task = loop.create_task(run())
                if call == "wait":  # once it waits on the server, or soon after
                    await waiting(receive, receivers=1)
                for _ in range(turns):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.wait([task])
                statistics = await send.fetch_statistics()
                if task.cancelled():
                    outcomes["cancelled"] += 1
                    assert before == statistics.current_size
                else:
                    outcomes["done"] += 1
                left = []
                while (await send.fetch_statistics()).current_size:
                    left.append(await receive.receive())
                if task.cancelled() and call in {"receive", "lease"}:
                    assert ["before-0", "later"] == left  # first in line again
                if call == "wait":
                    assert (True, []) == (task.cancelled(), left)  # it took nothing
            assert outcomes["cancelled"], outcomes  # some cancellations landed
            assert b"PONG" == await client.ping()

    asyncio.run(asyncio.wait_for(main(), 60))  # wait_for: a hang guard


async def test_a_failed_server_call_fails_every_send_of_its_batch(
    opener: Callable[..., Channel], client: coredis.Redis[Any], name: str
) -> None:
    """Sends batched into one call that fails (a key of the wrong type) all raise."""
    send, _ = opener()
    await client.set(f"qk:{{{name}}}:queue", "not a sorted set")
    failures: list[BaseException] = []

    async def send_one(item: int) -> None:
        try:
            await send.send(item)
        except coredis.exceptions.ResponseError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as task_group:
        for item in range(5):
            task_group.start_soon(send_one, item)
    assert 5 == len(failures)
    assert all("wrong kind of value" in str(exc) for exc in failures)
    await client.delete([f"qk:{{{name}}}:queue"])


def test_native_cancellation_of_a_failing_send_raises_the_cancellation(
    redis_port: int, name: str
) -> None:
    """task.cancel() at each loop turn of a send whose call fails: either is raised.

    While the call is in flight the cancellation wins (there is nothing to undo);
    once it is done, its error.
    """

    async def main() -> set[str]:
        client: coredis.Redis[Any] = coredis.Redis(host="127.0.0.1", port=redis_port)
        raised: set[str] = set()
        async with client:
            await client.set(f"qk:{{{name}}}:queue", "not a sorted set")
            send, _ = create_redis_priority_channel(client, name)
            loop = asyncio.get_running_loop()
            for turns in range(40):
                task = loop.create_task(send.send(turns))
                for _ in range(turns):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.wait([task])
                try:
                    task.result()
                except asyncio.CancelledError:
                    raised.add("cancelled")
                except coredis.exceptions.ResponseError:
                    raised.add("failed")
            assert b"PONG" == await client.ping()
        return raised

    raised = asyncio.run(asyncio.wait_for(main(), 60))
    assert {"cancelled", "failed"} == raised
