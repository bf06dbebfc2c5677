"""The priority channel: a bounded bucket queue behind anyio object streams.

Each priority level has its own FIFO :class:`collections.deque`; the few levels that
hold items are kept sorted in a small list, so sending and receiving cost what a FIFO
costs whatever the queue's length. Blocked tasks wait on an :class:`anyio.Event` in
an ordered table; the state they share is one :class:`_ChannelState` behind every
clone of both endpoints.
"""

from __future__ import annotations

import math
import sys
from bisect import insort
from collections import OrderedDict, deque
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, final

from anyio import (
    BrokenResourceError,
    ClosedResourceError,
    EndOfStream,
    Event,
    WouldBlock,
    current_effective_deadline,
    current_time,
    get_cancelled_exc_class,
    get_current_task,
)
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.lowlevel import checkpoint

from ._fair import FairStore
from ._order import AgingBuckets, OrderedStore, check_aging
from ._policies import check_scheduling
from ._priority import Priority, check_priority
from ._status import ChannelStatistics
from ._util import (
    NoPublicConstructor,
    describe,
    enable_ki_protection,
    ki_protected,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Self

    from ._policies import StrictPriority, WeightedFair

__all__ = [
    "PriorityReceiveChannel",
    "PrioritySendChannel",
    "check_max_size",
    "create_priority_channel",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

# Empty levels whose deques are kept for reuse: the four named levels and a few
# custom ones. Beyond that an emptied level's deque is dropped, so a stream of
# ever-new custom priorities cannot grow the table without bound.
_KEEP_IDLE_LEVELS: Final = 8


def check_max_size(max_size: object, *, name: str = "max_size") -> float:
    """Validate a capacity: ``None`` or :data:`math.inf` (unbounded), or an int >= 1.

    Returns the capacity as a number, :data:`math.inf` when unbounded.
    """
    if max_size is None:
        return math.inf
    if isinstance(max_size, float) and max_size == math.inf:
        return math.inf
    if not isinstance(max_size, int) or isinstance(max_size, bool):
        msg = (
            f"{name} must be None, math.inf or an int >= 1, "
            f"not {describe(max_size)} ({type(max_size).__name__})"
        )
        raise TypeError(msg)
    if max_size < 1:
        msg = f"{name} must be None, math.inf or an int >= 1, not {describe(max_size)}"
        raise ValueError(msg)
    return int(max_size)


# What a blocked sender learns when it wakes.
_WAITING: Final = 0
_SENT: Final = 1
_CLOSED: Final = 2
_BROKEN: Final = 3

_NOTHING: Final = object()


@final
class _SendWaiter(Generic[T]):
    __slots__ = ("endpoint", "event", "front", "item", "outcome", "priority")

    def __init__(self, endpoint: object, item: T, priority: int) -> None:
        self.endpoint = endpoint
        self.item = item
        self.priority = priority
        self.event = Event()
        self.outcome = _WAITING
        # An item a receiver gave back while the channel was full: no task waits
        # for it, and it moves in at the front of its level (see give_back).
        self.front = False


@final
class _ReceiveWaiter(Generic[T]):
    __slots__ = ("endpoint", "event", "item", "priority", "task")

    def __init__(self, endpoint: object, task: _Cancellable, event: Any) -> None:  # noqa: ANN401 (any backend's Event)
        self.endpoint = endpoint
        # What can tell whether this receiver's wait is being cancelled.
        self.task = task
        self.event = event
        self.item: object = _NOTHING
        self.priority = 0


class _Cancellable(Protocol):
    def has_pending_cancellation(self) -> bool: ...


def _redelivered(exc: BaseException) -> bool:
    """Whether *exc* is a cancellation that the next checkpoint raises again.

    A cancel scope (anyio's on asyncio; every cancellation on Trio) keeps cancelling
    its tasks until it exits. A native asyncio ``task.cancel()``, ``asyncio.timeout()``
    or ``wait_for()`` cancels once, and ``KeyboardInterrupt`` is no cancellation.
    """
    return (
        isinstance(exc, get_cancelled_exc_class())
        and current_effective_deadline() <= current_time()
    )


@final
class _ChannelState(Generic[T]):
    """The state all endpoints of one channel share.

    Invariants: ``size`` is the number of buffered items and never exceeds
    ``max_size`` between two operations; ``levels`` lists, ascending, the
    priorities whose deque is non-empty, and may also start with the level a
    receive just emptied (``head``, dropped by the next receive or level added, so
    a receive's fast path pops without checking what it left behind); receivers
    wait only while the buffer is empty, and senders only while it is full.
    """

    __slots__ = (
        "aged",
        "aged_limit",
        "batched",
        "buckets",
        "capacity",
        "head",
        "levels",
        "limit",
        "max_size",
        "on_admit",
        "open_receive",
        "open_send",
        "peak_size",
        "ready",
        "size",
        "store",
        "waiting_receivers",
        "waiting_senders",
    )

    def __init__(self, max_size: float) -> None:
        self.max_size: float = max_size
        # max_size as an int (an int compares with an int faster than with inf).
        self.capacity: int = sys.maxsize if max_size == math.inf else int(max_size)
        # The gate of send_nowait's fast path: ``capacity`` while receivers are
        # open and none waits, else -1, so one comparison on every send covers
        # "full", "receivers waiting" and "no receivers left". gate() keeps it.
        self.limit: int = -1
        # The same gate for an aging channel's inlined send (``limit`` stays off
        # for it): ``capacity`` while receivers are open and none waits, else -1.
        self.aged_limit: int = -1
        self.buckets: dict[int, deque[T]] = {}
        self.levels: list[int] = []
        # The deque of the first level in ``levels`` (``None`` when there is
        # none), so a receive pops without looking its level up.
        self.head: deque[T] | None = None
        # The gate of receive_nowait's fast path: ``head`` while no sender waits,
        # else ``None`` (a waiting sender's item moves in first). ready_up()
        # keeps it.
        self.ready: deque[T] | None = None
        self.size: int = 0
        self.peak_size: int = 0
        self.open_send: int = 0
        self.open_receive: int = 0
        self.waiting_senders: OrderedDict[_SendWaiter[T], None] = OrderedDict()
        self.waiting_receivers: OrderedDict[_ReceiveWaiter[T], None] = OrderedDict()
        # Called with a blocked sender's item at the moment it moves in (a pool
        # counts its requests in then, not when their submitter resumes).
        self.on_admit: Callable[[T], object] | None = None
        # The store that holds the items instead of the buckets when the
        # channel ages its items (an AgingBuckets) or a pool's queue ages them or
        # has its positions watched (an OrderedStore; see queuekeeper._order);
        # None on the default path. While it is set, ``limit`` and ``ready``
        # stay off, so the fast paths never run.
        self.store: OrderedStore[T] | AgingBuckets[T] | FairStore[T] | None = None
        # The same store when it is an aging channel's AgingBuckets, whose
        # common steps the endpoints' send_nowait() and receive_nowait() inline;
        # None otherwise.
        self.aged: AgingBuckets[T] | None = None
        # The same store when it is a weighted channel's FairStore, which takes
        # in batches: take_slow() points ``ready`` at its batch, so the fast
        # path pops what it took ahead; ``buckets`` are then the store's and
        # ``limit`` stays on, so a send with room takes the default path (a level
        # that joins is listed by the store: see add_level()); None otherwise.
        self.batched: FairStore[T] | None = None

    @ki_protected
    def use_store(
        self, store: OrderedStore[T] | AgingBuckets[T] | FairStore[T]
    ) -> None:
        """Hold the items in *store* from now on (those buffered move in, in order)."""
        for level in self.levels:
            for item in self.buckets[level]:
                store.push(item, level)
        self.buckets.clear()
        self.levels.clear()
        self.head = self.ready = None
        self.store = store
        self.aged = store if isinstance(store, AgingBuckets) else None
        self.gate()

    @ki_protected
    def push(self, item: T, priority: int, *, front: bool = False) -> None:
        """Buffer *item* behind the items of its level, or ahead of them if *front*.

        Room is the caller's care.
        """
        if self.store is not None:
            self.store.push(item, priority, front=front)
            self.size += 1
            return
        bucket = self.buckets.get(priority)
        if bucket is None:
            bucket = self.buckets[priority] = deque()
        if not bucket and bucket is not self.head:
            self.add_level(priority, bucket)
        if front:
            bucket.appendleft(item)
        else:
            bucket.append(item)
        self.size += 1

    @ki_protected
    def gate(self) -> None:
        """Recompute ``limit`` after receivers opened, closed, began or ended waits."""
        self.limit = (
            self.capacity
            if self.open_receive
            and not self.waiting_receivers
            and (self.store is None or self.batched is not None)
            else -1
        )
        if self.aged is not None:  # an aging channel's gate (the pool's has none)
            self.aged_limit = (
                self.capacity
                if self.open_receive and not self.waiting_receivers
                else -1
            )

    @ki_protected
    def ready_up(self) -> None:
        """Recompute ``ready`` after ``head`` or the waiting senders changed."""
        self.ready = None if self.waiting_senders else self.head

    @ki_protected
    def add_level(self, level: int, bucket: deque[T]) -> None:
        """Note that *level* is about to hold items.

        Its deque, *bucket*, is empty and is not ``head`` (a head the last receive
        emptied gets its items back without being listed again).
        """
        if self.batched is not None:
            # A weighted channel: its buckets are the store's, which lists it.
            self.batched.activate(level)
            return
        levels = self.levels
        head = self.head
        if head is not None and not head:
            # The level the last receive emptied is still listed first: drop it
            # (as take_slow() does, and the head set once: with mixed
            # priorities this runs for most items, and the call costs 8-14%).
            buckets = self.buckets
            emptied = levels.pop(0)
            if len(buckets) > _KEEP_IDLE_LEVELS:
                del buckets[emptied]
            if levels and levels[0] < level:
                insort(levels, level)
                head = self.head = buckets[levels[0]]
                self.ready = None if self.waiting_senders else head
                return
        elif levels and levels[0] < level:
            insort(levels, level)
            return
        levels.insert(0, level)
        self.head = bucket
        self.ready = None if self.waiting_senders else bucket

    @ki_protected
    def drop_level(self, level: int) -> None:
        """Forget *level*, whose deque is empty."""
        levels = self.levels
        levels.remove(level)
        buckets = self.buckets
        self.head = buckets[levels[0]] if levels else None
        self.ready_up()
        if len(buckets) > _KEEP_IDLE_LEVELS:
            del buckets[level]

    @ki_protected
    def admit_sender(self) -> None:
        """Move the longest-waiting blocked sender's item into the buffer."""
        waiter, _ = self.waiting_senders.popitem(last=False)
        if waiter.front:  # given back by a receiver: first in line, as it was
            self.push(waiter.item, waiter.priority, front=True)
            self.ready_up()
            return
        self.push(waiter.item, waiter.priority)
        self.ready_up()
        waiter.outcome = _SENT
        waiter.event.set()
        if self.on_admit is not None:
            self.on_admit(waiter.item)

    @ki_protected
    def put(self, item: T, priority: int) -> bool:
        """Buffer *item* at *priority* (an int, checked), or hand it to a receiver.

        Returns whether a waiting receiver was handed it. The one implementation
        of a send that does not wait: the send endpoint and the pool's queue both
        call it.

        Raises:
            anyio.WouldBlock: The channel is full.
            anyio.BrokenResourceError: Every receive endpoint was closed.
        """
        if self.size >= self.limit:
            # Not the fast path: no receivers left, receivers waiting, or full.
            if not self.open_receive:
                raise BrokenResourceError
            if self.waiting_receivers and self.hand_over(item, priority):
                return True
            if self.size >= self.capacity:
                raise WouldBlock
            store = self.store
            if store is not None:
                store.push(item, priority)
                size = self.size = self.size + 1
                if size > self.peak_size:  # noqa: PLR1730 (cheaper than max())
                    self.peak_size = size
                return False
        # push() inlined: this is the hot path.
        try:
            bucket = self.buckets[priority]
        except KeyError:
            bucket = self.buckets[priority] = deque()
        if not bucket and bucket is not self.head:
            self.add_level(priority, bucket)
        bucket.append(item)
        size = self.size = self.size + 1
        if size > self.peak_size:  # noqa: PLR1730 (cheaper than max())
            self.peak_size = size
        return False

    @ki_protected
    def take_slow(self, nothing: object) -> object:
        """A non-waiting receive when ``ready`` is not set; *nothing* when empty.

        A blocked sender's item moves in first. The fast path (``ready`` holds
        items: pop from it) is the caller's.
        """
        store = self.store
        if store is not None:
            if self.waiting_senders:
                self.admit_sender()
            item = store.pop(nothing)
            if item is not nothing:
                self.size -= 1
                if store is self.batched and not self.waiting_senders:
                    # What it took ahead, for the fast path (see FairStore).
                    self.ready = store.batch
            return item
        head = self.head
        if head is not None and not head:
            # The level the last receive emptied is still listed: drop it.
            levels = self.levels
            buckets = self.buckets
            emptied = levels.pop(0)
            head = self.head = buckets[levels[0]] if levels else None
            self.ready = None if self.waiting_senders else head
            if len(buckets) > _KEEP_IDLE_LEVELS:
                del buckets[emptied]
        if self.waiting_senders:
            self.admit_sender()
        head = self.head
        if head is not None:
            self.size -= 1
            return head.popleft()
        return nothing

    @ki_protected
    def hand_over(self, item: T, priority: int) -> bool:
        """Hand *item* to the longest-waiting receiver; ``False`` if none can take it.

        Never to a receiver whose wait is being cancelled: it would take the item
        with it.
        """
        receivers = self.waiting_receivers
        try:
            while receivers:
                receiver, _ = receivers.popitem(last=False)
                if not receiver.task.has_pending_cancellation():
                    receiver.item = item
                    receiver.priority = priority
                    receiver.event.set()
                    return True
        finally:
            self.gate()
        return False

    @ki_protected
    def give_back(self, item: T, priority: int) -> None:
        """Take back *item*, which a receiver was handed but will not return.

        It goes to the next waiting receiver, else to the front of its level, where
        it was first in line. If the channel filled up meanwhile, it waits first
        among the blocked senders instead (and is counted with them), so
        ``max_size`` holds. Items given back by receivers cancelled in the same
        instant come back in the order the receivers handle their cancellation.
        """
        if not self.open_receive:
            return  # every receiver is closed: queued items are discarded
        if self.waiting_receivers and self.hand_over(item, priority):
            return
        if self.size < self.capacity:
            self.push(item, priority, front=True)
            self.peak_size = max(self.peak_size, self.size)
            return
        waiter = _SendWaiter(None, item, priority)
        waiter.front = True
        self.waiting_senders[waiter] = None
        self.waiting_senders.move_to_end(waiter, last=False)
        self.ready = None

    @ki_protected
    def take_back(self, item: T, priority: int) -> bool:
        """Take *item* (this very object) out of the buffer; ``False`` if gone.

        Room that appears admits a blocked sender.
        """
        if self.store is not None:
            if not self.store.remove_identity(item, priority):
                return False
            self.size -= 1
            if self.waiting_senders:
                self.admit_sender()
            return True
        bucket = self.buckets.get(priority)
        if not bucket:
            return False
        for index in range(len(bucket) - 1, -1, -1):  # most likely near the end
            if bucket[index] is item:
                del bucket[index]
                break
        else:
            return False
        self.size -= 1
        if not bucket:
            self.drop_level(priority)
        if self.waiting_senders:
            self.admit_sender()
        return True

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the channel's sizes, endpoints and waiting tasks.

        Safe to call from another thread (a metrics scrape): it copies the level
        list in one step and tolerates a level that empties meanwhile.
        """
        buckets = self.buckets
        sizes = {}
        store = self.store
        if store is not None:
            sizes = store.sizes()
        for level in tuple(self.levels):
            bucket = buckets.get(level)
            if bucket:
                sizes[int(level)] = len(bucket)
        return ChannelStatistics(
            current_size=self.size,
            max_size=self.max_size,
            peak_size=self.peak_size,
            size_by_priority=MappingProxyType(sizes),
            open_send_channels=self.open_send,
            open_receive_channels=self.open_receive,
            tasks_waiting_send=len(self.waiting_senders),
            tasks_waiting_receive=len(self.waiting_receivers),
        )


@final
class PrioritySendChannel(
    ObjectSendStream[T_contra], Generic[T_contra], metaclass=NoPublicConstructor
):
    """The sending end of a priority channel (see :func:`create_priority_channel`).

    An :class:`anyio.abc.ObjectSendStream`, so it fits wherever anyio object streams
    are accepted; :meth:`send` takes an extra, optional ``priority``.
    """

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _ChannelState[T_contra]) -> None:
        self._state = state
        self._closed = False
        state.open_send += 1

    @ki_protected
    def send_nowait(self, item: T_contra, priority: int = Priority.NORMAL) -> None:  # noqa: C901 (inlined steps)
        """Put *item* in the channel at *priority* if that needs no waiting.

        A task blocked in :meth:`PriorityReceiveChannel.receive` is handed the item
        directly (it then never occupies buffer space); otherwise the item is
        buffered behind the items of its level. A full channel never evicts.

        Raises:
            TypeError: *priority* is not an ``int`` (``bool`` included).
            anyio.WouldBlock: The channel is full.
            anyio.ClosedResourceError: This endpoint was closed.
            anyio.BrokenResourceError: Every receive endpoint was closed.
        """
        cls = priority.__class__
        if cls is not int and cls is not Priority:
            priority = check_priority(priority)
        if self._closed:
            raise ClosedResourceError
        state = self._state
        bucket: deque[Any] | None  # an aging channel's entries, or the level's items
        if state.size >= state.limit:
            aged = state.aged
            if aged is not None and state.size < state.aged_limit:
                # An aging channel with room and no receiver waiting. The common
                # step, a send to a level that holds items, is AgingBuckets.push()
                # inlined: without the call, a single-task pass costs a quarter
                # fewer instructions (see docs/benchmarks.md).
                # (It names no local of its own but ``aged``: each local costs
                # every call a little, the default path's too.)
                try:
                    bucket = aged.buckets[priority]
                except KeyError:
                    bucket = None
                if bucket:
                    aged.seq += 1
                    bucket.append((aged.clock(), aged.seq, item))
                else:
                    aged.push(item, priority)
                size = state.size = state.size + 1
                if size > state.peak_size:  # noqa: PLR1730 (cheaper than max())
                    state.peak_size = size
                return
            # Full, receivers waiting, or none left: _ChannelState.put decides.
            state.put(item, priority)
            return
        # _ChannelState.put's room path, inlined: a paired single-task bench put
        # the call at 1.14-1.19x the anyio stream's cost, against 0.97-1.02 with
        # it inlined.
        try:
            bucket = state.buckets[priority]
        except KeyError:
            bucket = state.buckets[priority] = deque()
        if not bucket and bucket is not state.head:
            state.add_level(priority, bucket)
        bucket.append(item)
        size = state.size = state.size + 1
        if size > state.peak_size:  # noqa: PLR1730 (cheaper than max())
            state.peak_size = size

    @ki_protected
    async def send(self, item: T_contra, priority: int = Priority.NORMAL) -> None:
        """Put *item* in the channel at *priority*, waiting while it is full.

        Always a checkpoint. Blocked senders are admitted in the order they started
        waiting: when a receive makes room, the longest-waiting sender's item moves
        into the channel at that moment.

        Cancellation: atomic. If the wait is cancelled, the item was not enqueued
        and the cancellation propagates. If the item moved in at the same instant
        the cancellation arrived, the send succeeded: it returns normally and the
        cancellation is seen at the caller's next checkpoint.

        Raises:
            TypeError: *priority* is not an ``int`` (``bool`` included).
            anyio.ClosedResourceError: This endpoint was closed, before or while
                waiting.
            anyio.BrokenResourceError: Every receive endpoint was closed, before or
                while waiting.
        """
        cls = priority.__class__
        if cls is not int and cls is not Priority:
            priority = check_priority(priority)
        await checkpoint()
        if self._closed:
            raise ClosedResourceError
        state = self._state
        if state.size < state.limit:
            bucket = state.buckets.get(priority)
            if bucket:
                # Room, and the level is listed: the fast path, inlined (see
                # receive() for what it is worth).
                bucket.append(item)
                size = state.size = state.size + 1
                if size > state.peak_size:  # noqa: PLR1730 (cheaper than max())
                    state.peak_size = size
                return
        try:
            state.put(item, priority)
        except WouldBlock:
            pass
        else:
            return
        # Outside the except block, so what the wait raises is not chained to
        # WouldBlock.
        await self._wait_to_send(item, priority)

    @ki_protected
    async def _wait_to_send(self, item: T_contra, priority: int) -> None:
        """:meth:`send` after its checkpoint, when the channel was full."""
        state = self._state
        waiter = _SendWaiter(self, item, priority)
        state.waiting_senders[waiter] = None
        state.ready = None
        try:
            await waiter.event.wait()
        except BaseException as exc:
            if waiter.outcome != _SENT:
                state.waiting_senders.pop(waiter, None)
                state.ready_up()
                raise
            if not _redelivered(exc):
                # Raised once, in the instant the item moved in (a native asyncio
                # cancellation, KeyboardInterrupt): take the item back out, unless
                # a receiver has it already, and raise.
                state.take_back(item, priority)
                raise
            # The item moved in before the cancellation took effect: the send
            # happened, and the cancellation is delivered at the next checkpoint.
        outcome = waiter.outcome
        if outcome == _CLOSED:
            raise ClosedResourceError
        if outcome == _BROKEN:
            raise BrokenResourceError

    @ki_protected
    def clone(self) -> PrioritySendChannel[T_contra]:
        """Return another send endpoint on the same channel.

        The receiving side sees the channel's senders gone only when every clone
        has been closed.

        Raises:
            anyio.ClosedResourceError: This endpoint was closed.
        """
        if self._closed:
            raise ClosedResourceError
        clone: PrioritySendChannel[T_contra] = PrioritySendChannel._create(self._state)
        return clone

    @ki_protected
    def close(self) -> None:
        """Close this endpoint; idempotent.

        Tasks blocked in :meth:`send` on this endpoint get
        :exc:`anyio.ClosedResourceError` (their items were not enqueued). When the
        last send endpoint closes, receivers get :exc:`anyio.EndOfStream` once the
        items already queued have been received.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.open_send -= 1
        if state.waiting_senders:
            mine = [w for w in state.waiting_senders if w.endpoint is self]
            for waiter in mine:
                del state.waiting_senders[waiter]
                waiter.outcome = _CLOSED
                waiter.event.set()
            state.ready_up()
        if not state.open_send:
            receivers = list(state.waiting_receivers)
            state.waiting_receivers.clear()
            state.gate()
            for receiver in receivers:
                receiver.event.set()

    async def aclose(self) -> None:
        """Close this endpoint (see :meth:`close`); a checkpoint."""
        self.close()
        await checkpoint()

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<queuekeeper.PrioritySendChannel at {id(self):#x}, {state}>"


@final
class PriorityReceiveChannel(
    ObjectReceiveStream[T_co], Generic[T_co], metaclass=NoPublicConstructor
):
    """The receiving end of a priority channel (see :func:`create_priority_channel`).

    An :class:`anyio.abc.ObjectReceiveStream`: ``async for item in channel`` runs
    until every send endpoint is closed and the queued items have been received.
    """

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _ChannelState[T_co]) -> None:
        self._state = state
        self._closed = False
        state.open_receive += 1
        state.gate()

    @ki_protected
    def receive_nowait(self) -> T_co:
        """Take the next item if that needs no waiting.

        The next item is the one with the lowest priority value, and within that
        level the one sent first. If blocked senders are waiting, the longest-waiting
        one's item moves into the channel first, so a ``receive_nowait()`` loop
        drains them too.

        Raises:
            anyio.WouldBlock: The channel is empty and senders remain.
            anyio.EndOfStream: The channel is empty and every send endpoint was
                closed.
            anyio.ClosedResourceError: This endpoint was closed.
        """
        if self._closed:
            raise ClosedResourceError
        state = self._state
        # The first level's items, or an aging channel's entries (see below).
        head: deque[Any] | None = state.ready
        if head:
            # The fast path: no sender waits and the first level holds items.
            state.size -= 1
            return head.popleft()  # type: ignore[no-any-return]
        item: Any
        aged = state.aged
        if (
            aged is not None
            and (head := aged.first)
            and not state.waiting_senders
            and (not aged.mixed or aged.clock() < aged.calm)
        ):
            # An aging channel before any queued item has aged (see AgingBuckets):
            # the first level's head goes next, and AgingBuckets.pop() is inlined.
            item = head.popleft()[2]
            if not head:
                aged.drop(aged.order[0])
            state.size -= 1
            return item  # type: ignore[no-any-return]
        item = state.take_slow(_NOTHING)
        if item is not _NOTHING:
            return item  # type: ignore[no-any-return]
        if not state.open_send:
            raise EndOfStream
        raise WouldBlock

    @ki_protected
    async def receive(self) -> T_co:
        """Take the next item (see :meth:`receive_nowait`), waiting while empty.

        Always a checkpoint. A waiting receiver is handed its item directly by the
        sender.

        Cancellation: atomic. A cancelled ``receive()`` never loses or duplicates an
        item: an item is never handed to a receiver whose wait is being cancelled,
        and if an item was handed over at the same instant the cancellation arrived,
        ``receive()`` returns it and the cancellation is seen at the caller's next
        checkpoint.

        Raises:
            anyio.EndOfStream: The channel is empty and every send endpoint was
                closed, before or while waiting.
            anyio.ClosedResourceError: This endpoint was closed, before or while
                waiting.
        """
        await checkpoint()
        state = self._state
        head = state.ready
        if head and not self._closed:
            # receive_nowait's fast path, inlined. The bench's 5+5 queue-latency
            # p99 target (every item at one level, no worse than anyio's stream)
            # was missed in 3 runs of 4 without the copies in send(), receive()
            # and __anext__, and in none of 3 with them (one session).
            state.size -= 1
            return head.popleft()
        if state.size or state.waiting_senders or not state.open_send or self._closed:
            return self.receive_nowait()
        # Empty: wait (rather than have receive_nowait raise WouldBlock, which
        # costs more than the four reads above).
        return await self._wait_for_item()

    async def __anext__(self) -> T_co:
        """Receive the next item (see :meth:`receive`), for ``async for``."""
        # receive()'s body rather than a call to it: one coroutine fewer per item
        # of an ``async for`` loop (see receive()).
        await checkpoint()
        state = self._state
        head = state.ready
        if head and not self._closed:
            state.size -= 1
            return head.popleft()
        try:
            if state.size or state.waiting_senders or not state.open_send:
                return self.receive_nowait()
            if self._closed:
                raise ClosedResourceError
            return await self._wait_for_item()
        except EndOfStream:
            raise StopAsyncIteration from None

    @ki_protected
    async def _wait_for_item(
        self,
        task: _Cancellable | None = None,
        event: Any = None,  # noqa: ANN401
    ) -> T_co:
        """:meth:`receive` when the channel is empty and senders remain.

        *task* and *event* are the waiting task's and a new event, anyio's by
        default; a caller that knows its backend may pass cheaper ones.
        """
        state = self._state
        waiter: _ReceiveWaiter[T_co] = _ReceiveWaiter(
            self,
            get_current_task() if task is None else task,
            Event() if event is None else event,
        )
        state.waiting_receivers[waiter] = None
        state.gate()
        try:
            await waiter.event.wait()
        except BaseException as exc:
            if waiter.item is _NOTHING:
                state.waiting_receivers.pop(waiter, None)
                state.gate()
                raise
            if not _redelivered(exc):
                # Raised once, in the instant the item was handed over (a native
                # asyncio cancellation, KeyboardInterrupt): give the item back to
                # the channel, as if it had never been taken, and raise.
                state.give_back(waiter.item, waiter.priority)  # type: ignore[arg-type]
                raise
            # Handed an item before the cancellation took effect: keep it, and let
            # the cancellation be delivered at the next checkpoint.
        item = waiter.item
        if item is not _NOTHING:
            return item  # type: ignore[return-value]
        if self._closed:
            raise ClosedResourceError
        raise EndOfStream

    @ki_protected
    def clone(self) -> PriorityReceiveChannel[T_co]:
        """Return another receive endpoint on the same channel.

        Receivers compete for items: each item goes to exactly one of them.

        Raises:
            anyio.ClosedResourceError: This endpoint was closed.
        """
        if self._closed:
            raise ClosedResourceError
        clone: PriorityReceiveChannel[T_co] = PriorityReceiveChannel._create(
            self._state
        )
        return clone

    @ki_protected
    def close(self) -> None:
        """Close this endpoint; idempotent.

        Tasks blocked in :meth:`receive` on this endpoint get
        :exc:`anyio.ClosedResourceError`. When the last receive endpoint closes, the
        queued items are discarded and senders, blocked or not, get
        :exc:`anyio.BrokenResourceError`.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.open_receive -= 1
        if state.waiting_receivers:
            mine = [w for w in state.waiting_receivers if w.endpoint is self]
            for waiter in mine:
                del state.waiting_receivers[waiter]
                waiter.event.set()
        state.gate()
        if not state.open_receive:
            state.buckets.clear()
            state.levels.clear()
            state.head = state.ready = None
            if state.store is not None:
                state.store.clear()
            state.size = 0
            senders = list(state.waiting_senders)
            state.waiting_senders.clear()
            for sender in senders:
                sender.outcome = _BROKEN
                sender.event.set()

    async def aclose(self) -> None:
        """Close this endpoint (see :meth:`close`); a checkpoint."""
        self.close()
        await checkpoint()

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<queuekeeper.PriorityReceiveChannel at {id(self):#x}, {state}>"


class create_priority_channel(  # noqa: N801 (a factory, spelled like a function)
    tuple[PrioritySendChannel[T], PriorityReceiveChannel[T]]
):
    """Create a priority channel; return ``(send_channel, receive_channel)``.

    Items are received lowest priority value first (:attr:`Priority.CRITICAL`
    before :attr:`Priority.LOW`), and first-in, first-out within a level. Write
    ``create_priority_channel[int](100)`` to fix the item type.

    Both endpoints are safe against cancellation: :meth:`PrioritySendChannel.send`
    and :meth:`PriorityReceiveChannel.receive` either happen completely or not at
    all, and a cancelled call never loses or duplicates an item.

    Args:
        max_size: How many items the channel holds; ``None`` (the default) or
            :data:`math.inf` for no limit, else an ``int >= 1``. Items handed
            directly to a waiting receiver take no room.
        aging: Seconds per level: a queued item gains one level for every
            *aging* seconds it has waited (on the backend's clock), never past
            :attr:`Priority.CRITICAL` (a level below 1 never changes); within
            a level, items are received in the order they were sent. ``None``
            (the default): strict priority. A channel that ages its items is
            used in one event loop (its clock is the first one it sees).
        scheduling: :class:`queuekeeper.WeightedFair` to share the receives
            between levels by weight instead of strict priority (see
            :class:`queuekeeper.WeightedFair`; FIFO within a level), or
            ``None``/:class:`queuekeeper.StrictPriority` (the default).

    Raises:
        TypeError: *max_size* is not ``None``, :data:`math.inf` or an ``int``
            (``bool`` and other floats included); *aging* is not ``None`` or a
            number; *scheduling* is not a scheduling policy.
        ValueError: *max_size* is an ``int`` below 1; *aging* is not a finite
            number > 0; *aging* is given with :class:`queuekeeper.WeightedFair`
            (both decide the order).

    .. versionchanged:: 0.2
       The *aging* keyword.
    .. versionchanged:: 0.3
       The *scheduling* keyword.
    """

    __slots__ = ()

    def __new__(  # type: ignore[misc]
        cls,
        max_size: float | None = None,
        *,
        aging: float | None = None,
        scheduling: StrictPriority | WeightedFair | None = None,
    ) -> tuple[PrioritySendChannel[T], PriorityReceiveChannel[T]]:
        enable_ki_protection()
        state: _ChannelState[T] = _ChannelState(check_max_size(max_size))
        seconds = check_aging(aging)
        fair = check_scheduling(scheduling)
        if fair is not None:
            if seconds is not None:
                msg = (
                    f"aging={aging!r} cannot be given with scheduling={fair!r}: "
                    "both decide the order (weighted sharing already bounds "
                    "every level's wait)"
                )
                raise ValueError(msg)
            store = FairStore[T](fair)
            store.batching = True
            state.use_store(store)
            # Sends with room take the default path, onto the store's deques
            # (add_level() lists a level for it); receives take in batches.
            state.batched = store
            state.buckets = store.buckets
            state.gate()
        if seconds is not None:
            state.use_store(AgingBuckets(seconds))
        send: PrioritySendChannel[T] = PrioritySendChannel._create(state)
        receive: PriorityReceiveChannel[T] = PriorityReceiveChannel._create(state)
        return (send, receive)
