"""The in-memory :class:`RequestQueue`: the priority channel's bucket queue."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

from anyio import EndOfStream, WouldBlock, move_on_at

from ._channel import _SENT, _redelivered, _SendWaiter, create_priority_channel
from ._fair import FairStore, Waiter
from ._order import OrderedStore, aged_level
from ._util import Backend, ki_protected

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._policies import RateLimit, WeightedFair
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

    __slots__ = ("deadline", "event", "item", "limit", "priority")

    def __init__(self, limit: int, event: Any) -> None:  # noqa: ANN401 (a backend's Event)
        self.limit = limit
        self.event = event
        self.item: Any = None
        self.priority = 0
        # With aging: when a queued request reaches *limit* (it looks again then);
        # -inf once woken early to look again (a request that gets there sooner
        # was queued).
        self.deadline = math.inf


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
        "_limited",
        "_policy",
        "_receive",
        "_send",
        "_state",
        "_takers",
        "acknowledges",
        "put_nowait",
    )

    def __init__(
        self,
        max_size: float,
        *,
        aging: float | None = None,
        born: Callable[[T], float] | None = None,
        scheduling: WeightedFair | None = None,
        rate_limits: Mapping[int, RateLimit] | None = None,
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
        # Reserved workers waiting for a request at their level or above, fewest
        # levels first (see reserve()); None in a pool without reserved workers.
        self._takers: list[_Taker] | None = None
        # Weighted fair sharing and rate limits (see queuekeeper._fair): the
        # store that takes by the policy, or None; and itself again if it has
        # rate limits (takes then wait for tokens: see _wait_limited).
        self._policy: FairStore[T] | None = None
        self._limited: FairStore[T] | None = None
        if scheduling is not None or rate_limits:
            policy = self._policy = FairStore(scheduling, rate_limits)
            self._state.use_store(policy)
            if rate_limits:
                self._limited = policy

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
    def put_over(self, request: T, priority: int) -> bool:
        """Queue *request* even when full; ``True`` if handed to a taker.

        A retried request's way back (see ``WorkerPool(retry=...)``): it was
        admitted once, so it is never refused, nor made to wait, for want of
        room. It goes behind the requests of its level, and the queue may hold
        that many more than ``max_size`` until takes bring it back under (new
        requests find it full meanwhile).
        """
        try:
            return self.put_nowait(request, priority)
        except WouldBlock:
            pass
        state = self._state
        state.push(request, priority)
        state.peak_size = max(state.peak_size, state.size)
        if self._takers and self._aging is not None:
            self._look_again(request, priority)
        return False

    @ki_protected
    def evict(self, above: int) -> tuple[T, int] | None:
        """Take out the newest request of the lowest level, if lower than *above*."""
        state = self._state
        if state.store is not None:
            evicted = cast("OrderedStore[T]", state.store).pop_newest(above)
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
        if self._limited is not None:
            return await self._wait_limited(math.inf, backend)
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
            if self._limited is not None:
                return self._take_limited(math.inf)
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
        handed = 0
        if self._limited is not None:
            waiters = self._limited.waiters
            for waiter in [w for w in waiters if w.limit == math.inf][:count]:
                waiters.remove(waiter)
                waiter.item = RETIRE
                waiter.event.set()
                handed += 1
            return handed
        receivers = state.waiting_receivers
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
        if self._limited is not None:
            return  # reserved workers wait for tokens too: see _wait_limited
        self._takers = []
        self.put_nowait = self._put_reserved

    @ki_protected
    def _put_reserved(self, request: T, priority: int) -> bool:
        """``put_nowait`` of a queue with reserved workers (see :meth:`reserve`)."""
        if self._aging is None:
            if self._takers and self._hand_reserved(request, priority):
                return True
            return self._state.put(request, priority)
        if self._takers and self._hand_reserved(request, self._aged(request, priority)):
            return True
        handed = self._state.put(request, priority)
        if not handed and self._takers:
            self._look_again(request, priority)
        return handed

    def _look_again(self, request: T, priority: int) -> None:
        """Wake the reserved workers *request* queued at *priority* reaches first.

        With aging: it reaches a worker's level sooner than what it waits for.
        """
        store = cast("OrderedStore[T]", self._state.store)
        aging = cast("float", self._aging)
        born = store.clock() if self._born is None else self._born(request)
        takers = cast("list[_Taker]", self._takers)
        for taker in takers:
            limit = taker.limit
            if (
                1 <= limit < priority
                and born + (priority - limit) * aging < taker.deadline
            ):
                taker.deadline = -math.inf  # (it takes itself off the list)
                taker.event.set()

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

        With aging, by the level a request has aged to (see queuekeeper._order).
        A request whose submitter waits for room at such a level is taken
        straight from it, ahead of blocked ones at lower levels (it never
        occupies room, so ``max_size`` holds).
        """
        if self._limited is not None:
            return self._take_limited(limit)
        state = self._state
        store = cast("OrderedStore[T] | None", state.store)
        if store is not None:
            # By effective level, with aging (see queuekeeper._order).
            item = store.pop_within(limit, None)
            if item is not None:
                state.size -= 1
                if state.waiting_senders:
                    state.admit_sender()
                return item  # type: ignore[return-value]
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
        if self._limited is not None:
            return await self._wait_limited(limit, backend)
        while True:
            request = self.take_within_nowait(limit)
            if request is not None:
                return request
            if not self._state.open_send:
                raise EndOfStream
            request = await self._wait_within(limit, backend)
            if request is not None:
                return request

    async def _wait_within(self, limit: int, backend: Backend) -> T | None:
        """:meth:`take_within` when nothing at *limit* or above is queued.

        ``None`` when a queued request has aged into these levels meanwhile.
        """
        takers = self._takers
        assert takers is not None  # noqa: S101 (reserve() was called)
        taker = _Taker(limit, backend.event())
        # Fewest levels first, in arrival order within a limit.
        index = len(takers)
        while index and takers[index - 1].limit > limit:
            index -= 1
        takers.insert(index, taker)
        store = cast("OrderedStore[T] | None", self._state.store)
        deadline = math.inf if store is None else store.reaches(limit)
        taker.deadline = deadline
        try:
            if deadline == math.inf:
                await taker.event.wait()
            else:
                # A queued request ages into these levels then: look again.
                with move_on_at(deadline):
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
            if taker in (self._takers or ()):
                # With aging: the deadline passed, or a request was queued that
                # gets here sooner (see _look_again). Look again.
                takers.remove(taker)
                return None
            # Closed: anything at these levels would have been handed over.
            raise EndOfStream
        return taker.item  # type: ignore[no-any-return]

    # -- rate limits (see queuekeeper._fair) ----------------------------------------

    def _take_limited(self, limit: float) -> T | None:
        """Take the next request at *limit* or above whose level has a token.

        A blocked put moves in only as a request leaves (so ``max_size`` holds);
        one at these levels whose level has a token is taken straight from its
        submitter when nothing queued may start.
        """
        state = self._state
        store = cast("FairStore[T]", self._limited)
        item = (
            store.pop(None) if limit == math.inf else store.pop_within(int(limit), None)
        )
        if item is not None:
            state.size -= 1
            if state.waiting_senders:
                state.admit_sender()
            return item  # type: ignore[return-value]
        for waiter in state.waiting_senders:
            if waiter.priority <= limit and store.spend(waiter.priority):
                return self._take_sender(waiter)
        return None

    async def _wait_limited(self, limit: float, backend: Backend) -> T:
        """Take a request at *limit* or above, waiting for one or for a token.

        Holds nothing while it waits: a request waiting for a token stays queued
        (others may take requests of other levels meanwhile). It waits on an
        event set by the next put it may take, with a deadline at the earliest
        token of the levels it may take; then looks again. Cancel-safe: a
        cancelled wait took nothing; one woken by a put hands its look on to the
        next waiting taker.

        Raises:
            anyio.EndOfStream: The queue is closed and holds nothing at these
                levels.
        """
        state = self._state
        store = cast("FairStore[T]", self._limited)
        while True:
            request = self._take_limited(limit)
            if request is not None:
                if store.waiters and state.size:
                    store.wake_one()  # there may be more it could start
                return request
            deadline = store.next_token(limit)
            if deadline == math.inf and not state.open_send:
                raise EndOfStream
            waiter = Waiter(limit, backend.event())
            store.waiters.append(waiter)
            try:
                with move_on_at(deadline):
                    await waiter.event.wait()
            except BaseException:
                if waiter.woken:
                    store.wake_one()
                elif waiter in store.waiters:
                    store.waiters.remove(waiter)
                raise
            if waiter.item is RETIRE:
                return cast("T", RETIRE)
            if not waiter.woken and waiter in store.waiters:
                store.waiters.remove(waiter)  # its deadline passed

    def rate_limited(self) -> tuple[dict[int, int], dict[int, int]]:
        """Requests that waited for a token, and those queued without one now.

        Both by rate-limited level (every one listed); safe to call from
        another thread.
        """
        store = self._limited
        if store is None:
            return {}, {}
        waited = store.rate_limited
        waiting = store.limited_now()
        return (
            {level: waited.get(level, 0) for level in sorted(store.limits)},
            {level: waiting.get(level, 0) for level in sorted(store.limits)},
        )

    # -- requests waiting ---------------------------------------------------------

    @ki_protected
    def remove(self, request: T, priority: int) -> bool:
        """Take *request* out of the queue; return whether it was there.

        Requests compare with ``==`` (identity, for a ticket). Costs a scan of its
        level (O(log n) while the queue holds its requests in order: see
        :meth:`watch`). Room that appears admits a blocked :meth:`put`.
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
        if state.store is not None:
            if not cast("OrderedStore[T]", state.store).remove(request, priority):
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
        return True

    @ki_protected
    def move(self, request: T, priority: int, to: int) -> bool:
        """Move the queued *request* to the end of level *to*; whether it was there.

        Costs a scan of its level (O(log n) while the queue holds its requests in
        order). The queue's size does not change, so no blocked :meth:`put` moves
        in; but a reserved worker waiting for level *to* (see :meth:`reserve`) is
        handed the request at once, as a put would (with aging, compared by the
        level the request has aged to at *to*).
        """
        if not self._take_out(request, priority):
            return False
        aging = self._aging
        takers = self._takers
        if takers and self._hand_reserved(
            request, to if aging is None else self._aged(request, to)
        ):
            return True
        state = self._state
        state.push(request, to)
        if takers and aging is not None:
            self._look_again(request, to)
        return True

    def _aged(self, request: T, level: int) -> int:
        """The level *request* competes at if queued at *level* now (aging)."""
        store = cast("OrderedStore[T]", self._state.store)
        born = self._born
        waited = 0.0 if born is None else store.clock() - born(request)
        return aged_level(level, waited, self._aging)

    def position(self, request: T, priority: int) -> int | None:
        """Return how many queued requests are taken before *request*, or ``None``.

        A scan of its level, or O(levels * log n) while the queue holds its
        requests in order (with aging, or while positions are watched).
        """
        state = self._state
        if state.store is not None:
            found = cast("OrderedStore[T]", state.store).rank(request, priority)
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
        store = cast("OrderedStore[T] | None", self._state.store)
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
        store = cast("OrderedStore[T] | None", state.store)
        assert store is not None  # noqa: S101 (a watcher keeps it)
        store.unwatch(priority)
        if not store.watch and store.aging is None and self._policy is None:
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
        store = cast("OrderedStore[T] | None", self._state.store)
        assert store is not None  # noqa: S101 (a watcher keeps it)
        found = store.rank(request, priority)
        event = store.event(priority)
        if found is None:
            return None, math.inf, event
        return found[0], found[1], event

    def wake_watchers(self) -> None:
        """Wake every watcher (a request left the queue some other way)."""
        store = cast("OrderedStore[T] | None", self._state.store)
        if store is not None:
            store.wake_all()

    def firsts(self) -> list[T]:
        """The first request of each level, and those waiting for room."""
        state = self._state
        if state.store is not None:
            firsts = state.store.heads()
        else:
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
        if self._limited is not None:
            # They take what they may, then wait for tokens or end.
            while self._limited.waiters:
                self._limited.wake_one()
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
        limited = self._limited
        if limited is not None:
            limited.unlimited = True  # everything goes, tokens or not
        try:
            while (request := take()) is not None:
                drained.append(request)
        finally:
            if limited is not None:
                limited.unlimited = False
        return drained


if TYPE_CHECKING:  # checked by mypy: MemoryQueue implements the protocol

    def _implements(queue: MemoryQueue[int]) -> RequestQueue[int]:
        return queue
