"""Coalescing on Redis: submits with an equal key share one request across pools.

Each pool stands for a process, as in ``test_redis_pool.py``: pools on one queue
name share it exactly as processes do, each with its own reply stream. The server
keeps which request takes sharers under each key (``qk:{name}:shares``); every
test checks that nothing of it is left once the requests are done with.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

from helpers import Gate, hang, queued_on_server, until
from queuekeeper import (
    Backpressure,
    Priority,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    Ticket,
    TicketState,
    WorkerPool,
)
from queuekeeper._redis._server import ServerQueue

if TYPE_CHECKING:
    from collections.abc import Callable

    import coredis

    from queuekeeper.redis import RedisQueue

pytestmark = pytest.mark.anyio


def front(queue: RedisQueue, name: str) -> WorkerPool[Any, Any]:
    """A pool that only submits (a web process)."""
    return WorkerPool[Any, Any](None, queue=queue, workers=0, name=name)


def state_of(ticket: Ticket[Any]) -> TicketState:
    """Read *ticket*'s state afresh (mypy keeps ``ticket.state`` narrowed)."""
    return ticket.state


async def registry_of(client: coredis.Redis[Any], name: str) -> dict[bytes, bytes]:
    """What the server keeps for coalescing on the queue *name*."""
    return dict(await client.hgetall(f"qk:{{{name}}}:shares"))


async def is_empty(queue: RedisQueue) -> bool:
    """Whether the server has no request queued."""
    return 0 == await queued_on_server(queue)


async def test_equal_keys_share_one_run_across_pools(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A second process's submit of a key in use shares the first one's run."""
    gate = Gate()
    async with (
        front(queue(), "a") as a,
        front(queue(), "b") as b,
        WorkerPool(gate, queue=queue(), workers=2, name="back") as back,
    ):
        first = await a.submit("x", key="k")
        await until(lambda: gate.started == ["x"])
        second = await b.submit("y", key="k")
        third = await b.submit("z", key="k")  # shares within b, then across
        assert await registry_of(client, name)
        gate.open.set()
        assert ["x", "x", "x"] == [
            await first.result(),
            await second.result(),
            await third.result(),
        ]
        assert 3 == len({first.id, second.id, third.id})
        # The key is free again: the next submit queues anew.
        assert "w" == await b.execute("w", key="k")
    assert ["x", "w"] == gate.started
    assert (1, 0) == (a.status().submitted, a.status().coalesced)
    assert (1, 2) == (b.status().submitted, b.status().coalesced)
    assert 2 == back.status().completed
    assert {} == await registry_of(client, name)


async def test_a_shared_request_reports_running_to_every_process(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """The started message reaches the sharers in another process too."""
    gate = Gate()
    async with (
        front(queue(), "a") as a,
        front(queue(), "b") as b,
        WorkerPool(gate, queue=queue(), workers=1, name="back"),
    ):
        first = await a.submit("x", key=("k", 1))
        second = await b.submit("y", key=("k", 1))
        await until(lambda: state_of(second) is TicketState.RUNNING)
        await until(lambda: state_of(first) is TicketState.RUNNING)
        assert (None, None) == (await first.fetch_position(), second.position)
        gate.open.set()
        assert "x" == await second.result()
        assert second.started_at is not None
    assert {} == await registry_of(client, name)


async def test_a_higher_priority_promotes_the_shared_request(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A sharer at a better level moves the queued request to the end of that level."""
    gate = Gate()
    gate.open.set()
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        await a.submit("normal-1", priority=Priority.NORMAL)
        shared = await a.submit("shared", priority=Priority.LOW, key="k")
        await a.submit("high-1", priority=Priority.HIGH)
        await a.submit("normal-2", priority=Priority.NORMAL)
        assert 3 == await shared.fetch_position()
        joined = await b.submit("other", priority=Priority.HIGH, key="k")
        # Behind high-1, the HIGH request already there; and b sees its place.
        assert 1 == await joined.fetch_position()
        assert 1 == await shared.fetch_position()
        # Within a, a sharer at CRITICAL promotes it again (through the courier).
        local = await a.submit("again", priority=Priority.CRITICAL, key="k")

        async def first_in_line() -> bool:
            return 0 == await local.fetch_position()

        await until(first_in_line)
        async with WorkerPool(gate, queue=queue(), workers=1, name="back"):
            assert "shared" == await joined.result()
            await until(lambda: len(gate.finished) == 4)
    assert ["shared", "high-1", "normal-1", "normal-2"] == gate.started
    assert {} == await registry_of(client, name)


async def test_a_lower_priority_sharer_does_not_demote(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """Joining at a worse level leaves the request where it is."""
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        normal = await a.submit("normal", priority=Priority.NORMAL)
        shared = await a.submit("shared", priority=Priority.HIGH, key="k")
        joined = await b.submit("other", priority=Priority.LOW, key="k")
        assert (0, 0) == (await shared.fetch_position(), await joined.fetch_position())
        for ticket in (joined, shared, normal):
            assert ticket.cancel()
            with pytest.raises(RequestCancelled):
                await ticket.result()
    assert {} == await registry_of(client, name)


async def test_cancelling_one_process_leaves_the_request_to_the_other(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A sharer that leaves fails alone, wherever it is; the rest keep the request."""
    gate = Gate()
    gate.open.set()
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        first = await a.submit("x", key="k")
        second = await b.submit("y", key="k")
        first.cancel()  # the one that queued it leaves
        with pytest.raises(RequestCancelled, match=rf"^request {first.id} was"):
            await first.result()
        assert 1 == await queued_on_server(queue())
        async with WorkerPool(gate, queue=queue(), workers=1, name="back"):
            assert "x" == await second.result()
    assert ["x"] == gate.started
    assert (1, 1) == (a.status().submitted, a.status().cancelled)
    # b's request only shared a's: counted as coalesced, and not as settled.
    assert (0, 1, 0) == (
        b.status().submitted,
        b.status().coalesced,
        b.status().cancelled,
    )
    assert {} == await registry_of(client, name)


async def test_the_last_sharer_leaving_removes_the_queued_request(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """With no sharer left in any process, the request leaves the queue."""
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        first = await a.submit("x", key="k")
        second = await b.submit("y", key="k")
        second.cancel()
        with pytest.raises(RequestCancelled):
            await second.result()
        assert 1 == await queued_on_server(queue())
        first.cancel()
        with pytest.raises(RequestCancelled):
            await first.result()
        # The ticket settles at once; its pool then tells the server.
        await until(functools.partial(is_empty, queue()))
        # The key queues anew.
        third = await b.submit("z", key="k")
        assert 0 == await third.fetch_position()
        third.cancel()
        with pytest.raises(RequestCancelled):
            await third.result()
    # b counts only its third request: the first shared a's.
    assert (1, 1) == (b.status().cancelled, a.status().cancelled)
    assert (1, 1) == (b.status().submitted, b.status().coalesced)
    assert {} == await registry_of(client, name)


async def test_the_last_sharer_leaving_cancels_the_running_handler(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """With no sharer left, the handler running it (in a third pool) is cancelled."""
    cancelled = anyio.Event()

    async def handler(request: object) -> object:
        try:
            return await hang(request)
        finally:
            cancelled.set()

    async with (
        front(queue(), "a") as a,
        front(queue(), "b") as b,
        WorkerPool(handler, queue=queue(), workers=1, name="back") as back,
    ):
        first = await a.submit("x", key="k")
        await until(lambda: back.status().active_workers == 1)
        second = await b.submit("y", key="k")
        first.cancel()
        with pytest.raises(RequestCancelled):
            await first.result()
        assert not cancelled.is_set()
        # While it is being cancelled, the key takes no more sharers.
        second.cancel()
        third = await a.submit("z", key="k")
        with pytest.raises(RequestCancelled, match=rf"^request {second.id} was"):
            await second.result()
        await cancelled.wait()
        await until(lambda: state_of(third) is TicketState.RUNNING)
        third.cancel()
        with pytest.raises(RequestCancelled):
            await third.result()
    assert (2, 0) == (a.status().submitted, a.status().coalesced)
    assert 2 == back.status().cancelled
    assert {} == await registry_of(client, name)


async def test_a_sharers_queue_timeout_detaches_it_alone(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A joined sharer's own queue_timeout fails it; the request stays queued."""
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        first = await a.submit("x", key="k")
        second = await b.submit("y", key="k", queue_timeout=0.05)
        with pytest.raises(QueueTimeout):
            await second.result()
        assert TicketState.QUEUED == first.state
        assert 1 == await queued_on_server(queue())
        # The first submitter's own timeouts were never the request's: a worker
        # runs it for as long as it takes.
        async with WorkerPool(Gate(), queue=queue(), workers=1, name="back") as back:
            await until(lambda: back.status().active_workers == 1)
            first.cancel()
            with pytest.raises(RequestCancelled):
                await first.result()
    assert {} == await registry_of(client, name)


async def test_a_shed_request_fails_its_sharers_in_every_process(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """Shedding the shared request sheds every ticket that waits for it."""
    options = {"max_size": 1}
    async with (
        WorkerPool[Any, Any](
            None,
            queue=queue(**options),
            workers=0,
            name="a",
            backpressure=Backpressure.SHED,
        ) as a,
        front(queue(**options), "b") as b,
    ):
        first = await a.submit("x", priority=Priority.LOW, key="k")
        second = await b.submit("y", priority=Priority.LOW, key="k")  # takes no room
        urgent = await a.submit("urgent", priority=Priority.HIGH)
        for ticket in (first, second):
            with pytest.raises(RequestShed, match=r"at priority HIGH$"):
                await ticket.result()
        urgent.cancel()
        with pytest.raises(RequestCancelled):
            await urgent.result()
    assert (1, 0) == (a.status().shed, b.status().shed)
    assert {} == await registry_of(client, name)


async def test_a_key_must_serialize(queue: Callable[..., RedisQueue]) -> None:
    """On Redis a key is compared serialized: one that cannot be is refused."""
    async with front(queue(), "a") as a:
        with pytest.raises(
            TypeError, match=r"^key <object object at 0x\w+> cannot be a key on Redis"
        ):
            await a.submit(1, key=object())
        with pytest.raises(TypeError, match=r"^key must be hashable, not \[1\]"):
            await a.submit(1, key=[1])  # type: ignore[arg-type]
    assert (0, 0) == (a.status().submitted, a.status().coalesced)


async def test_a_key_in_use_takes_no_room_and_a_new_one_does(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A full queue refuses a new key's request but not a sharer of a queued one."""
    async with (
        front(queue(max_size=1), "a") as a,
        front(queue(max_size=1), "b") as b,
    ):
        first = await a.submit("x", key="k")
        with pytest.raises(QueueFull):
            await b.submit("y", key="other")
        second = await b.submit("y", key="k")
        for ticket in (first, second):
            ticket.cancel()
            with pytest.raises(RequestCancelled):
                await ticket.result()
    status = b.status()
    assert (0, 1, 1) == (status.submitted, status.coalesced, status.rejected)
    assert {} == await registry_of(client, name)


async def test_a_keyed_submit_blocked_for_room_queues_with_its_key(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """In BLOCK mode a keyed submit waits for room, then takes sharers."""
    gate = Gate()
    async with (
        WorkerPool[Any, Any](
            None,
            queue=queue(max_size=1),
            workers=0,
            name="a",
            backpressure=Backpressure.BLOCK,
        ) as a,
        front(queue(max_size=1), "b") as b,
    ):
        filler = await a.submit("filler")
        keyed: list[Ticket[Any]] = []

        async def submit_keyed() -> None:
            keyed.append(await a.submit("x", key="k"))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(submit_keyed)
            # Refused for room, it waits for the room stream to ring.
            room = f"qk:{{{name}}}:room"
            await until(lambda: room in a._link.rings.readers)
            filler.cancel()
        joined = await b.submit("y", key="k")
        async with WorkerPool(gate, queue=queue(), workers=1, name="back"):
            gate.open.set()
            assert ["x", "x"] == [await keyed[0].result(), await joined.result()]
    assert ["x"] == gate.started
    assert {} == await registry_of(client, name)


async def test_keyed_and_plain_submits_sent_together_keep_their_order(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """Submits the courier sends in one go enter the queue in the order made."""
    gate = Gate()
    gate.open.set()
    requests = ["p0", "p1", "k0", "p2", "k1", "k0-again", "p3"]
    keys = {"k0": "k0", "k0-again": "k0", "k1": "k1"}
    made: list[str] = []

    class Recorded(list[Any]):
        """The link's outbox, noting the order requests reach it."""

        def append(self, put: Any) -> None:
            made.append(put.ticket.request)
            super().append(put)

    async with front(queue(), "a") as a:
        a._link.puts = Recorded()
        tickets: dict[str, Ticket[Any]] = {}

        async def submit(request: str) -> None:
            tickets[request] = await a.submit(request, key=keys.get(request))

        async with anyio.create_task_group() as task_group:
            for request in requests:
                task_group.start_soon(submit, request)
        async with WorkerPool(gate, queue=queue(), workers=1, name="back"):
            results = {r: await ticket.result() for r, ticket in tickets.items()}
    # On Trio the tasks run in any order. Of k0 and k0-again, the first to reach
    # the link ran; the other joined it, here (never reaching the link) or on
    # the server.
    ran = next(request for request in made if request.startswith("k0"))
    assert [r for r in made if not r.startswith("k0") or r == ran] == gate.started
    assert ran == results["k0"] == results["k0-again"]
    assert (6, 1) == (a.status().submitted, a.status().coalesced)
    assert {} == await registry_of(client, name)


async def test_a_process_that_joins_a_running_request_sees_it_running(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """Joining a request a worker holds: RUNNING at once, no queue_timeout to pass."""
    gate = Gate()
    async with (
        front(queue(), "a") as a,
        front(queue(), "b") as b,
        WorkerPool(gate, queue=queue(), workers=1, name="back") as back,
    ):
        first = await a.submit("x", key="k")
        await until(lambda: back.status().active_workers == 1)
        second = await b.submit("y", key="k", queue_timeout=0.05)
        assert TicketState.RUNNING is second.state
        assert second.started_at is not None
        await anyio.sleep(0.2)  # past its queue_timeout, which no longer applies
        assert TicketState.RUNNING is state_of(second)
        gate.open.set()
        assert ["x", "x"] == [await first.result(), await second.result()]
    assert {} == await registry_of(client, name)


async def test_news_of_a_request_before_its_put_is_answered_waits_for_the_answer(
    queue: Callable[..., RedisQueue],
    client: coredis.Redis[Any],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An outcome read before the join's answer is acted on after it, as a sharer's."""
    gate = Gate()
    async with (
        front(queue(), "a") as a,
        front(queue(), "b") as b,
        WorkerPool(gate, queue=queue(), workers=1, name="back"),
    ):
        first = await a.submit("x", key="k")
        await until(lambda: gate.started == ["x"])
        link = b._link
        share = ServerQueue.share

        async def share_then_finish(
            self: ServerQueue, requests: Any, *args: Any, **kwargs: Any
        ) -> Any:
            answer = await share(self, requests, *args, **kwargs)
            gate.open.set()  # the request finishes before the answer is read
            await until(lambda: bool(link.unanswered[requests[0][0]]))
            return answer

        monkeypatch.setattr(ServerQueue, "share", share_then_finish)
        second = await b.submit("y", key="k")
        assert "x" == await second.result()
        assert "x" == await first.result()
        assert (set(), {}) == (link.joined, link.unanswered)
    assert (0, 1) == (b.status().submitted, b.status().coalesced)
    assert {} == await registry_of(client, name)


async def test_a_shed_read_before_the_joins_answer_is_not_counted_there(
    queue: Callable[..., RedisQueue],
    client: coredis.Redis[Any],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process whose request joined another's counts its shedding nowhere."""
    options = {"max_size": 1}
    async with (
        WorkerPool[Any, Any](
            None,
            queue=queue(**options),
            workers=0,
            name="a",
            backpressure=Backpressure.SHED,
        ) as a,
        front(queue(**options), "b") as b,
    ):
        first = await a.submit("x", priority=Priority.LOW, key="k")
        link = b._link
        share = ServerQueue.share
        urgent: list[Ticket[Any]] = []

        async def share_then_shed(
            self: ServerQueue, requests: Any, *args: Any, **kwargs: Any
        ) -> Any:
            answer = await share(self, requests, *args, **kwargs)
            if requests[0][0].startswith(link.tag):
                urgent.append(await a.submit("urgent", priority=Priority.HIGH))
                await until(lambda: bool(link.unanswered[requests[0][0]]))
            return answer

        monkeypatch.setattr(ServerQueue, "share", share_then_shed)
        second = await b.submit("y", priority=Priority.LOW, key="k")
        for ticket in (first, second):
            with pytest.raises(RequestShed):
                await ticket.result()
        urgent[0].cancel()
        with pytest.raises(RequestCancelled):
            await urgent[0].result()
    status = b.status()
    assert (0, 1, 0) == (status.submitted, status.coalesced, status.shed)
    assert {} == await registry_of(client, name)


async def test_a_promotion_holds_when_a_taken_request_goes_back(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A request promoted while a worker held it goes back at its new level."""
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        shared = await a.submit("shared", priority=Priority.LOW, key="k")
        server = a._link.server
        (taken,), _ = await server.take(1, 60.0, "gone")  # a worker that will leave
        normal = await a.submit("normal", priority=Priority.NORMAL)
        joined = await b.submit("other", priority=Priority.HIGH, key="k")
        assert TicketState.RUNNING is joined.state
        assert await server.release("gone", taken.id)  # back where it belongs
        # (b's ticket still thinks it runs: the worker left unannounced.)
        assert 0 == await shared.fetch_position()
        for ticket in (joined, shared, normal):
            ticket.cancel()
            with pytest.raises(RequestCancelled):
                await ticket.result()
    assert {} == await registry_of(client, name)


class CutShort:
    """A pool's server whose share() first runs *cut* (the submitter's cancel)."""

    def __init__(self, real: Any, cut: Callable[[], object]) -> None:
        self.real = real
        self.cut = cut

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def share(self, *args: Any, **kwargs: Any) -> Any:
        self.cut()  # while the keyed put is in flight
        return await self.real.share(*args, **kwargs)


async def test_a_keyed_submit_cancelled_while_its_put_is_in_flight(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """A scope cancelled during the call: joined or queued, submit returns.

    Refused for room, the cancellation is raised, not QueueFull.
    """
    async with (
        front(queue(max_size=1), "a") as a,
        front(queue(max_size=1), "b") as b,
    ):
        first = await a.submit("x", key="k")
        scopes: list[anyio.CancelScope] = []
        outcomes: list[object] = []
        # (A lambda: the scope is the one current when the put is sent.)
        b._link.server = CutShort(b._link.server, lambda: scopes[-1].cancel())  # noqa: PLW0108

        async def submit(key: str) -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                outcomes.append(await b.submit("y", key=key))
                outcomes.append("returned")
            outcomes.append(scope.cancelled_caught)

        await submit("k")  # joins a's request
        await submit("other")  # a new key, and no room for it
        assert ["returned", False, True] == outcomes[1:]
        joined = outcomes[0]
        assert isinstance(joined, Ticket)
        assert TicketState.QUEUED is joined.state
        for ticket in (joined, first):
            ticket.cancel()
            with pytest.raises(RequestCancelled):
                await ticket.result()
    assert (0, 1) == (b.status().submitted, b.status().coalesced)
    assert {} == await registry_of(client, name)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_native_cancel_of_a_joining_submit_undoes_the_join(
    queue: Callable[..., RedisQueue], client: coredis.Redis[Any], name: str
) -> None:
    """asyncio's task.cancel() during the call: raised, and the join is undone."""
    async with front(queue(), "a") as a, front(queue(), "b") as b:
        first = await a.submit("x", key="k")
        task = asyncio.current_task()
        assert task is not None
        b._link.server = CutShort(b._link.server, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await b.submit("y", key="k")
        if sys.version_info >= (3, 11):
            assert 0 == task.uncancel()

        async def left() -> bool:
            return not any(
                field.startswith(b"w:") for field in await registry_of(client, name)
            )

        await until(left)  # b no longer waits for a's request
        first.cancel()
        with pytest.raises(RequestCancelled):
            await first.result()
    assert {} == await registry_of(client, name)
