"""The priority channel on Redis: anyio object streams over a :class:`ServerQueue`.

Every process (and host) that opens the same queue name on the same server shares
one queue: same priorities, same order, one size limit. Waiting is done on the
queue's streams (XREAD BLOCK on a ring after the last one seen), by one task per
channel at a time; the others wait for its answer on a local event.
"""

from __future__ import annotations

import json
import math
import uuid
from contextlib import asynccontextmanager
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Protocol,
    TypeVar,
    cast,
    final,
    runtime_checkable,
)

import attrs
from anyio import ClosedResourceError, create_task_group, sleep
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.lowlevel import checkpoint

from .._channel import check_max_size
from .._priority import Priority
from .._status import ChannelStatistics
from .._util import NoPublicConstructor, describe
from ._server import Batcher, Rings, ServerQueue, Taken, check_priority

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import coredis

__all__ = [
    "Delivery",
    "JSONSerializer",
    "RedisPriorityReceiveChannel",
    "RedisPrioritySendChannel",
    "Serializer",
    "check_lease",
    "check_serializer",
    "create_redis_priority_channel",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

#: The shortest lease: the server counts them in milliseconds.
_MIN_LEASE: Final = 0.001


@runtime_checkable
class Serializer(Protocol):
    """How items become bytes on the server, and back."""

    def dumps(self, obj: Any) -> bytes:  # noqa: ANN401 (any item)
        """Encode *obj*; raise TypeError or ValueError if it cannot be."""
        ...

    def loads(self, data: bytes) -> Any:  # noqa: ANN401 (any item)
        """Decode what :meth:`dumps` made."""
        ...


@final
class JSONSerializer:
    """The default: compact JSON in UTF-8. No pickle, so no code runs on loads."""

    def dumps(self, obj: Any) -> bytes:  # noqa: ANN401 (any item)
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:  # noqa: ANN401 (any item)
        return json.loads(data)

    def __repr__(self) -> str:
        return "JSONSerializer()"


def check_serializer(serializer: object) -> Serializer:
    """``None`` for JSON, else an object with ``dumps`` and ``loads``."""
    if serializer is None:
        return JSONSerializer()
    if not isinstance(serializer, Serializer):
        msg = (
            "serializer must have dumps(obj) -> bytes and loads(bytes) methods, "
            f"not {serializer!r}"
        )
        raise TypeError(msg)
    return serializer


def check_lease(lease: object) -> float:
    """A lease: a finite number of seconds, at least a millisecond."""
    if isinstance(lease, bool) or not isinstance(lease, (int, float)):
        msg = (
            "lease must be a number of seconds >= 0.001, "
            f"not {describe(lease)} ({type(lease).__name__})"
        )
        raise TypeError(msg)
    if not _MIN_LEASE <= lease < math.inf:
        msg = (
            f"lease must be a finite number of seconds >= 0.001, not {describe(lease)}"
        )
        raise ValueError(msg)
    return float(lease)


@final
@attrs.frozen
class Delivery(Generic[T_co]):
    """An item taken under a lease, from :meth:`RedisPriorityReceiveChannel.lease`."""

    item: T_co
    priority: int
    #: How many times it was handed out, this time included (> 1: redelivered).
    deliveries: int
    #: Its id on the server.
    id: str


@final
class _Shared:
    """What every endpoint (and clone) of one channel shares."""

    __slots__ = (
        "lease",
        "max_size",
        "open_receive",
        "open_send",
        "put",
        "rings",
        "serializer",
        "server",
        "take_leased",
        "take_now",
        "token",
        "waiting_receive",
        "waiting_send",
    )

    def __init__(
        self,
        server: ServerQueue,
        max_size: int | None,
        lease: float,
        serializer: Serializer,
    ) -> None:
        self.server: ServerQueue = server
        self.max_size: int | None = max_size
        self.lease: float = lease
        self.serializer: Serializer = serializer
        #: Whose leases these are: this channel's, unique to it.
        self.token: str = uuid.uuid4().hex
        self.open_send: int = 1
        self.open_receive: int = 1
        self.waiting_send: int = 0
        self.waiting_receive: int = 0
        #: Waits for rings of the queue's streams, shared by its endpoints.
        self.rings: Rings = Rings(server)
        # Concurrent sends and receives of the channel's endpoints, each kind
        # sent to the server in batches of one call.
        self.put: Batcher[tuple[str, int, bytes], tuple[int | None, str | None]]
        self.put = Batcher(self._put_many, self._unput)
        self.take_now: Batcher[float, tuple[Taken | None, str | None]]
        self.take_now = Batcher(self._take_many, self._untake)
        self.take_leased: Batcher[float, tuple[Taken | None, str | None]]
        self.take_leased = Batcher(self._take_many, self._untake)

    async def _put_many(
        self, requests: list[tuple[str, int, bytes]]
    ) -> list[tuple[int | None, str | None]]:
        statuses, room = await self.server.put(requests, self.max_size)
        return [(status, room) for status in statuses]

    async def _unput(
        self, request: tuple[str, int, bytes], outcome: tuple[int | None, str | None]
    ) -> None:
        if outcome[0] is not None:
            await self.server.remove(request[0])

    async def _take_many(
        self, leases: list[float]
    ) -> list[tuple[Taken | None, str | None]]:
        taken, seen = await self.server.take(len(leases), leases[0], self.token)
        outcomes: list[tuple[Taken | None, str | None]] = [
            (each, None) for each in taken
        ]
        outcomes += [(None, seen)] * (len(leases) - len(taken))
        return outcomes

    async def _untake(
        self, lease: float, outcome: tuple[Taken | None, str | None]
    ) -> None:
        taken = outcome[0]
        if taken is None:
            return
        if lease > 0:
            await self.server.release(self.token, taken.id)
        else:
            await self.server.restore(taken)

    async def wait(self, stream: str, seen: str) -> None:
        """Wait for a ring of *stream* after *seen* (see :class:`Rings`)."""
        await self.rings.wait(stream, seen)


@final
class RedisPrioritySendChannel(
    ObjectSendStream[T_contra], Generic[T_contra], metaclass=NoPublicConstructor
):
    """The sending end of a Redis priority channel.

    Made by :func:`create_redis_priority_channel`.
    """

    __slots__ = ("_closed", "_shared")

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._closed = False

    async def send(self, item: T_contra, priority: int = Priority.NORMAL) -> None:
        """Put *item* into the shared queue at *priority* (0 to 255), waiting for room.

        Always a checkpoint. Cancellation: an item is queued exactly when ``send``
        returns, except that if it was queued in the instant a cancellation
        arrived, ``send`` returns and the cancellation is seen at the next
        checkpoint. A cancellation while waiting for room takes effect within
        about a quarter of a second.

        Raises:
            TypeError: *priority* is not an int, or *item* cannot be serialized
                (the message names it); nothing is queued.
            ValueError: *priority* is outside 0 to 255, or *item* cannot be
                serialized; nothing is queued.
            anyio.ClosedResourceError: This endpoint was closed.
        """
        await checkpoint()
        if self._closed:
            raise ClosedResourceError
        shared = self._shared
        level = check_priority(priority)
        try:
            payload = shared.serializer.dumps(item)
        except (TypeError, ValueError) as exc:
            msg = f"cannot serialize {describe(item)} with {shared.serializer!r}: {exc}"
            raise type(exc)(msg) from exc
        request = (uuid.uuid4().hex, level, payload)
        server = shared.server
        while True:
            queued, room = await shared.put(request)
            if queued is not None:
                return
            shared.waiting_send += 1
            try:
                await shared.wait(server.room, room or "0-0")
            finally:
                shared.waiting_send -= 1
            await checkpoint()  # the wait cannot be cancelled in flight: here it is
            if self._closed:
                raise ClosedResourceError

    async def fetch_statistics(self) -> ChannelStatistics:
        """The queue's figures from the server (endpoints, waiters: this channel's).

        Cancellation: safe at any point; it only reads.
        """
        shared = self._shared
        return await fetch_statistics(shared.server, shared.max_size, shared)

    def clone(self) -> RedisPrioritySendChannel[T_contra]:
        """Another send endpoint on the same channel.

        Raises:
            anyio.ClosedResourceError: This endpoint was closed.
        """
        if self._closed:
            raise ClosedResourceError
        self._shared.open_send += 1
        clone: RedisPrioritySendChannel[T_contra]
        clone = RedisPrioritySendChannel._create(self._shared)
        return clone

    def close(self) -> None:
        """Close this endpoint (idempotent). The queue on the server stays."""
        if not self._closed:
            self._closed = True
            self._shared.open_send -= 1

    async def aclose(self) -> None:
        """Close this endpoint (see :meth:`close`)."""
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        name = self._shared.server.name
        return f"<queuekeeper.redis.RedisPrioritySendChannel {name!r}, {state}>"


@final
class RedisPriorityReceiveChannel(
    ObjectReceiveStream[T_co], Generic[T_co], metaclass=NoPublicConstructor
):
    """The receiving end of a Redis priority channel.

    Made by :func:`create_redis_priority_channel`.
    """

    __slots__ = ("_closed", "_shared")

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._closed = False

    async def receive(self) -> T_co:
        """Take the next item for good (at most once), waiting while none is queued.

        The next item is the one with the lowest priority value, first come
        first within a level, across every process sharing the queue. Always a
        checkpoint. Cancellation: an item is taken exactly when ``receive``
        returns it, except that if it was taken in the instant a cancellation
        arrived, ``receive`` returns it and the cancellation is seen at the next
        checkpoint. A cancellation while waiting takes effect within about a
        quarter of a second. Other processes may send at any time, so closing
        this process's send endpoints never ends the stream.

        Raises:
            ValueError: The item taken could not be deserialized (it is gone).
            anyio.ClosedResourceError: This endpoint was closed.
        """
        await checkpoint()
        taken = await self._take(0.0)
        return self._load(taken)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Delivery[T_co]]:
        """Take the next item under a lease, for at-least-once processing.

        ``async with receive.lease() as delivery:`` holds ``delivery.item``
        while the block runs, renewing the lease in the background. Leaving the
        block normally acknowledges it; leaving it by an exception or a
        cancellation puts it back where it was, for any receiver to take again
        (``delivery.deliveries`` counts the times). If this process dies, the
        item is handed out again once its lease (``lease`` seconds) runs out.

        Raises:
            ValueError: The item could not be deserialized; it is put back.
            anyio.ClosedResourceError: This endpoint was closed.
        """
        await checkpoint()
        shared = self._shared
        server = shared.server
        taken = await self._take(shared.lease)
        try:
            delivery = Delivery(
                self._load(taken), taken.priority, taken.deliveries, taken.id
            )
        except BaseException:
            await server.release(shared.token, taken.id)
            raise
        failed: BaseException | None = None
        try:
            # The body's exception is kept out of the task group, which would
            # wrap it in an exception group.
            async with create_task_group() as heartbeat:
                heartbeat.start_soon(self._renew, taken.id)
                try:
                    yield delivery
                except BaseException as exc:  # noqa: BLE001 (raised again below)
                    failed = exc
                finally:
                    heartbeat.cancel_scope.cancel()
        finally:
            # Also when a cancellation ends the task group itself: the server
            # calls are shielded, so the item is always acknowledged or put back.
            if failed is None:
                await server.ack(shared.token, [taken.id])
            else:
                await server.release(shared.token, taken.id)
        if failed is not None:
            raise failed

    async def _renew(self, request_id: str) -> None:
        shared = self._shared
        while True:
            await sleep(shared.lease / 3)
            await shared.server.renew(shared.lease, shared.token, [request_id])

    async def _take(self, lease: float) -> Taken:
        shared = self._shared
        server = shared.server
        while True:
            if self._closed:
                raise ClosedResourceError
            batch = shared.take_leased if lease else shared.take_now
            taken, seen = await batch(lease)
            if taken is not None:
                return taken
            shared.waiting_receive += 1
            try:
                await shared.wait(server.bell, seen or "0-0")
            finally:
                shared.waiting_receive -= 1
            await checkpoint()  # the wait cannot be cancelled in flight: here it is

    def _load(self, taken: Taken) -> T_co:
        serializer = self._shared.serializer
        try:
            item: T_co = serializer.loads(taken.payload)
        except Exception as exc:
            msg = (
                f"cannot deserialize request {taken.id} ({len(taken.payload)} bytes) "
                f"with {serializer!r}: {exc}"
            )
            raise ValueError(msg) from exc
        return item

    async def fetch_statistics(self) -> ChannelStatistics:
        """The queue's figures from the server (see the send side's).

        Cancellation: safe at any point; it only reads.
        """
        shared = self._shared
        return await fetch_statistics(shared.server, shared.max_size, shared)

    def clone(self) -> RedisPriorityReceiveChannel[T_co]:
        """Another receive endpoint on the same channel.

        Raises:
            anyio.ClosedResourceError: This endpoint was closed.
        """
        if self._closed:
            raise ClosedResourceError
        self._shared.open_receive += 1
        clone: RedisPriorityReceiveChannel[T_co]
        clone = RedisPriorityReceiveChannel._create(self._shared)
        return clone

    def close(self) -> None:
        """Close this endpoint (idempotent); its waiting tasks end within 0.25 s."""
        if not self._closed:
            self._closed = True
            self._shared.open_receive -= 1

    async def aclose(self) -> None:
        """Close this endpoint (see :meth:`close`)."""
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        name = self._shared.server.name
        return f"<queuekeeper.redis.RedisPriorityReceiveChannel {name!r}, {state}>"


async def fetch_statistics(
    server: ServerQueue, max_size: int | None, shared: _Shared | None = None
) -> ChannelStatistics:
    """The queue's figures from *server*; endpoints and waiters: *shared*'s, or 0."""
    queued, _, peak, by_level = await server.sizes()
    return ChannelStatistics(
        current_size=queued,
        max_size=math.inf if max_size is None else max_size,
        peak_size=peak,
        size_by_priority=dict(sorted(by_level.items())),
        open_send_channels=0 if shared is None else shared.open_send,
        open_receive_channels=0 if shared is None else shared.open_receive,
        tasks_waiting_send=0 if shared is None else shared.waiting_send,
        tasks_waiting_receive=0 if shared is None else shared.waiting_receive,
    )


def check_options(
    client: object,
    name: object,
    max_size: object,
    lease: object,
    serializer: object,
) -> tuple[ServerQueue, int | None, float, Serializer]:
    """Check the arguments of a Redis queue: its server side, size, lease, serializer.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).
    """
    if not callable(getattr(client, "fcall", None)):
        msg = f"client must be a coredis.Redis client, not {client!r}"
        raise TypeError(msg)
    if not isinstance(name, str):
        msg = f"name must be a str, not {describe(name)} ({type(name).__name__})"
        raise TypeError(msg)
    capacity = check_max_size(max_size)
    return (
        ServerQueue(cast("coredis.Redis[Any]", client), name),
        None if capacity == math.inf else int(capacity),
        check_lease(lease),
        check_serializer(serializer),
    )


def create_redis_priority_channel(
    client: coredis.Redis[Any],
    name: str,
    *,
    max_size: int | None = None,
    lease: float = 30.0,
    serializer: Serializer | None = None,
) -> tuple[RedisPrioritySendChannel[Any], RedisPriorityReceiveChannel[Any]]:
    """Open the priority queue *name* on a Redis (or Valkey) server, as two streams.

    Every process that opens the same *name* on the same server shares the queue.

    Args:
        client: A ``coredis.Redis`` client.
        name: The queue's name (a non-empty str).
        max_size: How many items may wait (``None`` for no limit); the queue's
            limit is that of the last send that gave one.
        lease: Seconds an item taken with :meth:`~RedisPriorityReceiveChannel.lease`
            stays reserved without a renewal before another receiver may take it.
        serializer: How items become bytes: JSON by default. A serializer using
            pickle runs code from whoever can write to the server when it loads.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).
    """
    shared = _Shared(*check_options(client, name, max_size, lease, serializer))
    send: RedisPrioritySendChannel[Any] = RedisPrioritySendChannel._create(shared)
    receive: RedisPriorityReceiveChannel[Any] = RedisPriorityReceiveChannel._create(
        shared
    )
    return send, receive
