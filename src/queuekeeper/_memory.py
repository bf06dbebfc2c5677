"""The in-memory :class:`RequestQueue`: the priority channel's bucket queue."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from anyio import EndOfStream, WouldBlock

from ._channel import create_priority_channel
from ._order import OrderedStore
from ._util import Backend, ki_protected

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._queue import RequestQueue
    from ._status import ChannelStatistics

__all__ = ["MemoryQueue"]

T = TypeVar("T")


@final
class _MindsNothing:
    """A taker that can always be handed a request, even as it is cancelled."""

    __slots__ = ()

    def has_pending_cancellation(self) -> bool:
        return False


_MINDS_NOTHING: Final = _MindsNothing()


@final
class MemoryQueue(Generic[T]):
    """A :class:`RequestQueue` in this process, on a priority channel's state.

    Works on the channel's shared state directly, one endpoint of each kind kept
    for the operations that wait. ``take`` is the receive endpoint's ``receive``.
    """

    __slots__ = (
        "_aging",
        "_backend",
        "_born",
        "_receive",
        "_send",
        "_state",
        "acknowledges",
        "put_nowait",
    )

    def __init__(
        self,
        max_size: float,
        *,
        aging: float | None = None,
        born: Callable[[T], float] | None = None,
    ) -> None:
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
        # Aging (seconds per level, or None), and what a request's arrival time
        # is (default: when it arrives): see queuekeeper._order.
        self._aging = aging
        self._born = born
        if aging is not None:
            self._state.use_store(OrderedStore(aging, track=True, born=born))

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
            return self._state.put(request, priority)
        except WouldBlock:
            pass
        await self._send._wait_to_send(request, priority)
        return False

    @ki_protected
    def evict(self, above: int) -> tuple[T, int] | None:
        """Take out the newest request of the lowest level, if lower than *above*."""
        state = self._state
        if state.store is not None:
            evicted = state.store.pop_newest(above)
            if evicted is not None:
                state.size -= 1
            return evicted
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

    # -- requests waiting ---------------------------------------------------------

    @ki_protected
    def remove(self, request: T, priority: int) -> bool:
        """Take *request* out of the queue; return whether it was there.

        Requests compare with ``==`` (identity, for a ticket). Costs a scan of its
        level (O(log n) while the queue holds its requests in order: see
        :meth:`watch`). Room that appears admits a blocked :meth:`put`.
        """
        state = self._state
        if state.store is not None:
            if not state.store.remove(request, priority):
                return False
        else:
            bucket = state.buckets.get(priority)
            if not bucket:
                return False
            try:
                bucket.remove(request)
            except ValueError:
                return False
            if not bucket:
                state.drop_level(priority)
        state.size -= 1
        if state.waiting_senders:
            state.admit_sender()
        return True

    def position(self, request: T, priority: int) -> int | None:
        """Return how many queued requests are taken before *request*, or ``None``.

        A scan of its level, or O(levels * log n) while the queue holds its
        requests in order (with aging, or while positions are watched).
        """
        state = self._state
        if state.store is not None:
            found = state.store.rank(request, priority)
            return None if found is None else found[0]
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

    # -- aging and watched positions --------------------------------------------

    def effective(self, request: T, priority: int) -> int | None:
        """The level a queued *request* competes at now; ``None`` if not queued.

        Without aging, *priority* (whether queued or not).
        """
        store = self._state.store
        if store is None or store.aging is None:
            return priority
        return store.effective(request, priority)

    @ki_protected
    def watch(self, priority: int) -> None:
        """Register a watcher of a request at *priority* (see :meth:`rank`).

        The first one makes the queue hold its requests in order (a move of
        every queued request, once), so that positions cost O(levels * log n).
        """
        state = self._state
        if state.store is None:
            state.use_store(OrderedStore(None, track=True, born=self._born))
        state.store.watching(priority)  # type: ignore[union-attr]

    @ki_protected
    def unwatch(self, priority: int) -> None:
        """A watcher registered with :meth:`watch` is gone."""
        state = self._state
        store = state.store
        assert store is not None  # noqa: S101 (a watcher keeps it)
        store.unwatch(priority)
        if not store.watch and store.aging is None:
            # Back to the bucket queue and its fast paths.
            buffered = store.clear()
            state.store = None
            state.gate()
            for request, level in buffered:
                state.push(request, level)
            state.ready_up()

    def rank(self, request: T, priority: int) -> tuple[int | None, float, Any]:
        """A watched *request*'s position, when it may next change, and the event.

        The position is ``None`` if it is not queued; the time is when aging
        alone may change it (:data:`math.inf` if never); the event is set at the
        next change of the queue that may move it. Only while a watcher of
        *priority* is registered (see :meth:`watch`).
        """
        store = self._state.store
        assert store is not None  # noqa: S101 (a watcher keeps it)
        found = store.rank(request, priority)
        event = store.event(priority)
        if found is None:
            return None, math.inf, event
        return found[0], found[1], event

    def wake_watchers(self) -> None:
        """Wake every watcher (a request left the queue some other way)."""
        store = self._state.store
        if store is not None:
            store.wake_all()

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
