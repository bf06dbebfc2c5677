"""The in-memory :class:`RequestQueue`: the priority channel's bucket queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

from anyio import EndOfStream, WouldBlock

from ._channel import _SENT, _redelivered, _SendWaiter, create_priority_channel
from ._util import Backend, ki_protected

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._queue import RequestQueue
    from ._status import ChannelStatistics

__all__ = ["RETIRE", "MemoryQueue"]

T = TypeVar("T")


@final
class _MindsNothing:
    """A taker that can always be handed a request, even as it is cancelled."""

    __slots__ = ()

    def has_pending_cancellation(self) -> bool:
        return False


_MINDS_NOTHING: Final = _MindsNothing()


@final
class _Retire:
    """What an idle worker is handed to tell it to retire (see ``retire_waiting``).

    Never queued as a request: its state is no ticket state, so a worker that
    gets it where a request is expected does not start it.
    """

    __slots__ = ()
    _state = None
    _level = 0


#: Handed to an idle worker that is to retire.
RETIRE: Final[Any] = _Retire()


@final
class _Taker:
    """A reserved worker waiting for a request at *limit* or above."""

    __slots__ = ("event", "item", "limit", "priority")

    def __init__(self, limit: int, event: Any) -> None:  # noqa: ANN401 (a backend's Event)
        self.limit = limit
        self.event = event
        self.item: Any = None
        self.priority = 0


@final
class MemoryQueue(Generic[T]):
    """A :class:`RequestQueue` in this process, on a priority channel's state.

    Works on the channel's shared state directly, one endpoint of each kind kept
    for the operations that wait. ``take`` is the receive endpoint's ``receive``.
    """

    __slots__ = (
        "_backend",
        "_receive",
        "_send",
        "_state",
        "_takers",
        "acknowledges",
        "put_nowait",
    )

    def __init__(self, max_size: float) -> None:
        send, receive = create_priority_channel[T](max_size)
        self._send = send
        self._receive = receive
        self._state = send._state
        #: A request taken is done with: there is no lease to release.
        self.acknowledges = False
        # The channel's own method, not a wrapper: a call fewer on every request.
        #: Queue a request, or hand it to a waiting taker (then ``True``).
        self.put_nowait: Callable[[T, int], bool] = self._state.put
        # The backend's checkpoint and event for take(), found at its first call:
        # a queue is used in one event loop, its pool's.
        self._backend: Backend | None = None
        # Reserved workers waiting for a request at their level or above, fewest
        # levels first (see reserve()); None in a pool without reserved workers.
        self._takers: list[_Taker] | None = None

    @property
    def on_admit(self) -> Callable[[T], object] | None:
        """Called with a request the moment a waiting :meth:`put` moves it in."""
        return self._state.on_admit

    @on_admit.setter
    def on_admit(self, callback: Callable[[T], object] | None) -> None:
        self._state.on_admit = callback

    # -- in -----------------------------------------------------------------------

    async def put(self, request: T, priority: int) -> bool:
        """Queue *request*, waiting for room first; ``True`` if handed to a taker."""
        try:
            return self.put_nowait(request, priority)
        except WouldBlock:
            pass
        await self._send._wait_to_send(request, priority)
        return False

    @ki_protected
    def evict(self, above: int) -> tuple[T, int] | None:
        """Take out the newest request of the lowest level, if lower than *above*."""
        state = self._state
        levels = state.levels
        if not levels or levels[-1] <= above:
            return None
        level = levels[-1]
        bucket = state.buckets[level]
        if not bucket:
            return None  # the level the last take emptied, listed alone
        request = bucket.pop()
        state.size -= 1
        if not bucket:
            state.drop_level(level)
        return request, level

    # -- out ----------------------------------------------------------------------

    @ki_protected
    async def take(self) -> T:
        """Take the next request, waiting for one; always a checkpoint.

        The receive endpoint's ``receive()``, with the backend's own checkpoint
        and event (see :class:`Backend`). Cancel-safe as it is.

        Raises:
            anyio.EndOfStream: The queue is closed and empty.
        """
        backend = self._backend
        if backend is None:
            backend = self._backend = Backend()
            backend.bind()
        await backend.checkpoint()
        state = self._state
        head = state.ready
        if head:
            state.size -= 1
            return head.popleft()
        request = state.take_slow(None)
        if request is not None:
            return request  # type: ignore[return-value]
        if not state.open_send:
            raise EndOfStream
        # The backend's own event, and no TaskInfo: a worker waiting here never
        # minds being handed a request as it is cancelled (it then starts and
        # cancels it), and these cost 1,000-1,500 instructions a wait on Trio.
        return await self._receive._wait_for_item(_MINDS_NOTHING, backend.event())

    def take_nowait(self) -> T | None:
        """Take the next request, or return ``None`` if none is ready."""
        state = self._state
        head = state.ready
        if head:
            state.size -= 1
            return head.popleft()
        if state.size or state.waiting_senders:
            return state.take_slow(None)  # type: ignore[return-value]
        return None  # empty (a level it emptied is dropped by the next put)

    def settled(self, request: T) -> None:
        """Nothing to release: a request taken from memory is the worker's."""

    @ki_protected
    def retire_waiting(self, count: int) -> int:
        """Hand :data:`RETIRE` to up to *count* idle workers waiting in :meth:`take`.

        Returns how many were handed one. Like a request handed to a waiting
        taker, it takes no room and is never queued.
        """
        state = self._state
        receivers = state.waiting_receivers
        handed = 0
        while receivers and handed < count:
            receiver, _ = receivers.popitem(last=False)
            receiver.item = RETIRE
            receiver.event.set()
            handed += 1
        state.gate()
        return handed

    # -- reserved workers ---------------------------------------------------------

    def reserve(self, limits: list[int]) -> None:  # noqa: ARG002 (as the protocol's)
        """Serve reserved workers too (:meth:`take_within`); call it once.

        From then on a request put in goes first to a reserved worker waiting for
        its level, if one waits, and only then to the other takers or the buffer.
        """
        self._takers = []
        self.put_nowait = self._put_reserved

    @ki_protected
    def _put_reserved(self, request: T, priority: int) -> bool:
        """``put_nowait`` of a queue with reserved workers (see :meth:`reserve`)."""
        if self._takers and self._hand_reserved(request, priority):
            return True
        return self._state.put(request, priority)

    def _hand_reserved(self, request: T, priority: int) -> bool:
        """Hand *request* to a reserved worker waiting for *priority*, if one is."""
        # (The queue's own receive side is never closed: a taker is always open.)
        takers = cast("list[_Taker]", self._takers)
        for taker in takers:  # fewest levels first: the best fit
            if taker.limit >= priority:
                takers.remove(taker)
                taker.item = request
                taker.priority = priority
                taker.event.set()
                return True
        return False

    @ki_protected
    def take_within_nowait(self, limit: int) -> T | None:
        """Take the next request at *limit* or above (lower value), or ``None``.

        A request whose submitter waits for room at such a level is taken
        straight from it, ahead of blocked ones at lower levels (it never
        occupies room, so ``max_size`` holds).
        """
        state = self._state
        buckets = state.buckets
        for level in state.levels:
            if level > limit:
                break
            if buckets[level]:  # (the first level may be one a take emptied)
                # The lowest level holding requests: take as a receive does.
                return state.take_slow(None)  # type: ignore[return-value]
        for waiter in state.waiting_senders:
            if waiter.priority <= limit:
                return self._take_sender(waiter)
        return None

    def _take_sender(self, waiter: _SendWaiter[T]) -> T:
        """Take *waiter*'s item, as if it moved in and was taken at once."""
        state = self._state
        del state.waiting_senders[waiter]
        state.ready_up()
        item = waiter.item
        # No branch: an item given back (front) waits only in the instant of a
        # native cancellation; a pool's queue, the only one with senders waiting,
        # has its on_admit.
        if not waiter.front:  # pragma: no branch
            waiter.outcome = _SENT
            waiter.event.set()
            if state.on_admit is not None:  # pragma: no branch
                state.on_admit(item)
        return item

    @ki_protected
    async def take_within(self, limit: int) -> T:
        """Take the next request at *limit* or above, waiting for one.

        Always a checkpoint. Cancel-safe as :meth:`take`: a cancelled wait took
        nothing, but a request handed over in the instant of a cancel scope's
        cancellation is returned (the cancellation then surfaces at the next
        checkpoint).

        Raises:
            anyio.EndOfStream: The queue is closed and holds nothing at *limit*
                or above.
        """
        backend = self._backend
        if backend is None:
            backend = self._backend = Backend()
            backend.bind()
        await backend.checkpoint()
        request = self.take_within_nowait(limit)
        if request is not None:
            return request
        if not self._state.open_send:
            raise EndOfStream
        return await self._wait_within(limit, backend)

    async def _wait_within(self, limit: int, backend: Backend) -> T:
        """:meth:`take_within` when nothing at *limit* or above is queued."""
        takers = self._takers
        assert takers is not None  # noqa: S101 (reserve() was called)
        taker = _Taker(limit, backend.event())
        # Fewest levels first, in arrival order within a limit.
        index = len(takers)
        while index and takers[index - 1].limit > limit:
            index -= 1
        takers.insert(index, taker)
        try:
            await taker.event.wait()
        except BaseException as exc:
            if taker.item is None:
                takers.remove(taker)  # (close() leaves it in the list it replaced)
                raise
            # Handed a request in the instant of a native asyncio cancellation
            # (or Ctrl-C): give it back, as _wait_for_item does. A cancel scope's
            # cancellation is raised again at the next checkpoint: keep it.
            if not _redelivered(exc):  # pragma: no cover (one loop turn wide)
                self._state.give_back(taker.item, taker.priority)
                raise
        if taker.item is None:
            # Closed: anything at these levels would have been handed over.
            raise EndOfStream
        return taker.item  # type: ignore[no-any-return]

    # -- requests waiting ---------------------------------------------------------

    @ki_protected
    def remove(self, request: T, priority: int) -> bool:
        """Take *request* out of the queue; return whether it was there.

        Requests compare with ``==`` (identity, for a ticket). Costs a scan of its
        level. Room that appears admits a blocked :meth:`put`.
        """
        if not self._take_out(request, priority):
            return False
        state = self._state
        if state.waiting_senders:
            state.admit_sender()
        return True

    def _take_out(self, request: T, priority: int) -> bool:
        """Take *request* out of its level's bucket; whether it was there."""
        state = self._state
        bucket = state.buckets.get(priority)
        if not bucket:
            return False
        try:
            bucket.remove(request)
        except ValueError:
            return False
        state.size -= 1
        if not bucket:
            state.drop_level(priority)
        return True

    @ki_protected
    def move(self, request: T, priority: int, to: int) -> bool:
        """Move the queued *request* to the end of level *to*; whether it was there.

        Costs a scan of its level. The queue's size does not change, so no
        blocked :meth:`put` moves in; but a reserved worker waiting for level *to*
        (see :meth:`reserve`) is handed the request at once, as a put would.
        """
        if not self._take_out(request, priority):
            return False
        if self._takers and self._hand_reserved(request, to):
            return True
        state = self._state
        state.push(request, to)
        return True

    def position(self, request: T, priority: int) -> int | None:
        """Return how many queued requests are taken before *request*, or ``None``."""
        state = self._state
        bucket = state.buckets.get(priority)
        if not bucket:
            return None
        try:
            index = bucket.index(request)
        except ValueError:
            return None
        buckets = state.buckets
        # The request's own level is listed, so the loop always breaks.
        for level in state.levels:  # pragma: no branch
            if level >= priority:
                break
            index += len(buckets[level])
        return index

    def firsts(self) -> list[T]:
        """The first request of each level, and those waiting for room."""
        state = self._state
        buckets = state.buckets
        firsts = [buckets[level][0] for level in state.levels if buckets[level]]
        firsts.extend(waiter.item for waiter in state.waiting_senders)
        return firsts

    def sizes(self) -> tuple[int, Mapping[int, int]]:
        """Return the number of queued requests, in all and by non-empty level."""
        stats = self._state.statistics()
        return stats.current_size, stats.size_by_priority

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the queue (see :class:`ChannelStatistics`)."""
        return self._state.statistics()

    # -- the end ------------------------------------------------------------------

    def close(self) -> None:
        """Take no more requests: waiting puts raise, takes end once it is empty."""
        self._send.close()
        takers = self._takers
        if takers:
            # Nothing more comes in: what they could take they take before waiting.
            self._takers = []
            for taker in takers:
                taker.event.set()

    @ki_protected
    def drain(self) -> list[T]:
        """Take out and return every queued request."""
        drained: list[T] = []
        take = self.take_nowait
        while (request := take()) is not None:
            drained.append(request)
        return drained


if TYPE_CHECKING:  # checked by mypy: MemoryQueue implements the protocol

    def _implements(queue: MemoryQueue[int]) -> RequestQueue[int]:
        return queue
