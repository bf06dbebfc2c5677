"""The ordered store: a bucket queue that knows each item's place and age.

The channel's plain bucket queue (one deque per level) is the fastest way to move
items by priority, and it is what a channel uses by default. Two things need more
than a deque can tell, and switch a channel to this store instead:

- **Aging** (``aging=seconds``): a queued item gains one level for every *aging*
  seconds it has waited, never past :attr:`Priority.CRITICAL` (a level below 1 is
  never changed); items are taken by (effective level, order of arrival). Within a
  level the oldest item is the first, and its effective level only improves with
  age, so a take compares the heads of the non-empty levels: O(levels) a take,
  nothing a queued item.
- **Positions that many watch**: an item's position (how many are taken before
  it) in O(levels * log n), rather than a scan of its level, and a wake-up for
  the watchers whose position may have changed.

Each level keeps three parallel lists, in arrival order: the items, their
sequence numbers (one counter for the store, so levels compare) and the times
they arrived (made non-decreasing within the level). A take advances the level's
``start``; a removal in the middle leaves a hole (a dead entry, listed in
``holes``); the lists are compacted when half of them is behind ``start``. So the
items ahead of a given one in another level form a prefix of that level (arrival
times and sequence numbers both grow along it), found by binary search.

A channel made with ``aging=`` needs neither positions nor watchers (only a pool's
queue has those), and uses :class:`AgingBuckets` instead: the same order from one
deque per level, at a fraction of the cost.
"""

from __future__ import annotations

import asyncio
import math
import time
from bisect import bisect_left, insort
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from anyio import Event, current_time

from ._util import Backend, describe

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "GONE",
    "AgingBuckets",
    "LevelWatchers",
    "OrderedStore",
    "aged_level",
    "aging_clock",
    "ahead_of",
    "check_aging",
]

T = TypeVar("T")

#: What a removed entry's item becomes.
GONE: Final[Any] = object()
#: Entries behind ``start`` kept before a level's lists are compacted.
_COMPACT_AFTER: Final = 32
#: Emptied levels whose deques an :class:`AgingBuckets` keeps for reuse (as the
#: channel's buckets do); beyond that an emptied level's deque is dropped.
_KEEP_IDLE_LEVELS: Final = 8
#: A watcher's next wake-up is at least this far ahead (seconds), so that a
#: boundary the clock's rounding puts a hair late is never a busy loop.
_NUDGE: Final = 1e-6


def check_aging(value: object, name: str = "aging") -> float | None:
    """Validate an aging period: ``None`` (off) or a finite number of seconds > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = (
            f"{name} must be None or a number of seconds > 0, "
            f"not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if not (0 < value < math.inf):
        msg = (
            f"{name} must be None or a finite number of seconds > 0, "
            f"not {describe(value)}"
        )
        raise ValueError(msg)
    try:
        return float(value)
    except OverflowError:
        msg = f"{name} must be None or a finite number of seconds > 0, not too large"
        raise ValueError(msg) from None


def ahead_of(seq: float) -> float:
    """The sequence number of an item given back just ahead of one numbered *seq*.

    Halfway from *seq* down to the whole number below the one *seq* was given
    as (``2`` gives ``1.5``, then ``1.25``, ``1.125``...): never down to it, so
    an item given back, however often, ties with no item of another level,
    whose numbers are whole and unique.
    """
    below = math.ceil(seq) - 1
    return (seq + below) / 2


def aged_level(level: int, waited: float, aging: float | None) -> int:
    """The level of an item queued at *level* that has waited *waited* seconds.

    One level better for every *aging* seconds, never past 1 (``CRITICAL``); a
    level of 1 or below never changes, nor does any without aging.
    """
    if aging is None or level <= 1:
        return level
    aged = level - int(waited // aging)
    return max(1, aged)


@final
class _Level:
    """One level's entries, in arrival order (see the module)."""

    __slots__ = ("borns", "holes", "items", "live", "seqs", "start")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.seqs: list[float] = []
        self.borns: list[float] = []
        self.start = 0
        # Indices of dead entries (sorted); those below start no longer count.
        self.holes: list[int] = []
        self.live = 0

    def between(self, low: int, high: int) -> int:
        """Live entries at indices low (``start`` or more) to high, excluded."""
        holes = self.holes
        if not holes:
            return high - low
        return high - low - (bisect_left(holes, high) - bisect_left(holes, low))

    def advance(self) -> None:
        """Move ``start`` past dead entries; compact once enough lies behind it."""
        items = self.items
        start = self.start
        end = len(items)
        while start < end and items[start] is GONE:
            start += 1
        self.start = start
        if start >= _COMPACT_AFTER and 2 * start >= end:
            del items[:start], self.seqs[:start], self.borns[:start]
            self.holes = [hole - start for hole in self.holes if hole >= start]
            self.start = 0

    def index(self, seq: float) -> int:
        """The index of the entry numbered *seq* (it is there)."""
        return bisect_left(self.seqs, seq, self.start)


class LevelWatchers:
    """Watchers of queued items' positions, by the level of the item they watch.

    For a store that a pool's ``positions()`` watches: it declares ``watch``
    (``{level: [event, count]}``) and ``new_event`` (the backend's event class)
    in its slots, and wakes the watchers whose positions a change may move.
    """

    __slots__ = ()

    watch: dict[int, list[Any]]
    new_event: Callable[[], Any]

    def watching(self, level: int) -> Any:  # noqa: ANN401 (the backend's event)
        """Register a watcher of an item at *level*; the event that wakes it."""
        slot = self.watch.get(level)
        if slot is None:
            slot = self.watch[level] = [self.new_event(), 0]
        slot[1] += 1
        return slot[0]

    def event(self, level: int) -> Any:  # noqa: ANN401 (the backend's event)
        """The event that wakes the watchers of *level* next (one is registered)."""
        return self.watch[level][0]

    def unwatch(self, level: int) -> None:
        """A watcher of *level* is gone."""
        slot = self.watch[level]
        slot[1] -= 1
        if not slot[1]:
            del self.watch[level]

    def wake_all(self) -> None:
        """Wake every watcher."""
        if self.watch:
            self._wake(-math.inf)

    def _wake(self, lowest: float) -> None:
        """Wake the watchers of items at *lowest* and above."""
        for level, slot in self.watch.items():
            if level >= lowest:
                slot[0].set()
                slot[0] = self.new_event()


@final
class OrderedStore(LevelWatchers, Generic[T]):
    """Items by (effective level, arrival), with positions and watchers.

    Args:
        aging: Seconds per level gained, or ``None`` (strict priority).
        track: Keep an index from each item to its entry (items must then be
            hashable and distinct, as a pool's tickets are), for :meth:`remove`,
            :meth:`rank` and :meth:`effective` by item.
        born: What an item's arrival time is (default: the clock, as it arrives).
    """

    __slots__ = (
        "aging",
        "born",
        "calm",
        "clock",
        "index",
        "levels",
        "new_event",
        "order",
        "seq",
        "size",
        "watch",
    )

    def __init__(
        self,
        aging: float | None,
        *,
        track: bool = False,
        born: Callable[[T], float] | None = None,
    ) -> None:
        self.aging: float | None = aging
        self.born: Callable[[T], float] | None = born
        #: The backend's clock, found at its first use (see :meth:`_first_clock`).
        self.clock: Callable[[], float] = self._first_clock
        self.new_event: Callable[[], Any] = Event
        self.levels: dict[int, _Level] = {}
        #: The non-empty levels, ascending.
        self.order: list[int] = []
        self.seq: int = 0
        self.size: int = 0
        # Until when no queued item has aged past its own level (a head's
        # arrival plus one period, the earliest over the levels above 1): until
        # then the order is strict priority, and a take needs no comparison.
        # Only lowered as heads arrive; the takes that compare raise it again.
        self.calm: float = math.inf
        self.index: dict[T, tuple[int, float]] | None = {} if track else None
        #: Watchers by the level of the item they watch: [event, count].
        self.watch: dict[int, list[Any]] = {}

    def _first_clock(self) -> float:
        backend = Backend()
        try:
            backend.bind()
        except RuntimeError:  # pragma: no cover (another anyio backend)
            return current_time()
        self.clock = backend.clock
        self.new_event = backend.event
        return self.clock()

    # -- in -----------------------------------------------------------------------

    def push(self, item: T, level: int, *, front: bool = False) -> None:
        """Queue *item* at *level*: behind its level's items, or ahead if *front*."""
        entries = self.levels.get(level)
        if entries is None:
            entries = self.levels[level] = _Level()
        born = self.clock() if self.born is None else self.born(item)
        if not entries.live:
            insort(self.order, level)
            front = False
            if self.aging is not None and level > 1 and born + self.aging < self.calm:
                self.calm = born + self.aging
        if front:
            # Given back by a receiver: first in line again, as old as the head.
            start = entries.start
            seq = ahead_of(entries.seqs[start])
            born = entries.borns[start]
            if start:
                start -= 1
                entries.items[start] = item
                entries.seqs[start] = seq
                entries.borns[start] = born
                entries.start = start
            else:
                entries.items.insert(0, item)
                entries.seqs.insert(0, seq)
                entries.borns.insert(0, born)
                entries.holes = [hole + 1 for hole in entries.holes]
        else:
            self.seq += 1
            seq = self.seq
            borns = entries.borns
            if borns and borns[-1] > born:
                born = borns[-1]  # arrival times never go back within a level
            entries.items.append(item)
            entries.seqs.append(seq)
            borns.append(born)
        entries.live += 1
        self.size += 1
        if self.index is not None:
            self.index[item] = (level, seq)
        if self.watch:
            if front:
                self._wake(level)
            else:
                # Ahead of the watchers of the levels above the one it competes
                # at: its own, unless it arrived already aged (born earlier).
                now = self.clock() if self.born is not None else born
                self._wake(aged_level(level, now - born, self.aging) + 1)

    # -- out ----------------------------------------------------------------------

    def pop(self, nothing: object) -> object:
        """Take the next item, best (effective level, arrival) first; or *nothing*."""
        order = self.order
        if not order:
            return nothing
        levels = self.levels
        level = order[0]
        aging = self.aging
        if aging is not None and len(order) > 1:
            now = self.clock()
            if now >= self.calm:
                level = self._best(now, aging)
        entries = levels[level]
        start = entries.start
        items = entries.items
        item = items[start]
        items[start] = GONE
        start += 1
        entries.start = start
        live = entries.live = entries.live - 1
        self.size -= 1
        if self.index is not None:
            self.index.pop(item, None)
        if not live:
            order.remove(level)
            del levels[level]
        elif items[start] is GONE or start >= _COMPACT_AFTER:
            entries.advance()
        if self.watch:
            self._wake(level if aging is None else -math.inf)
        return item

    def _best(self, now: float, aging: float) -> int:
        """The level whose head goes next by (aged level, arrival); resets ``calm``."""
        levels = self.levels
        best: tuple[int, float] | None = None
        level = calm = math.inf
        for each in self.order:
            entries = levels[each]
            start = entries.start
            born = entries.borns[start]
            key = (aged_level(each, now - born, aging), entries.seqs[start])
            if best is None or key < best:
                best, level = key, each
            if each > 1 and born + aging < calm:
                calm = born + aging
        self.calm = calm
        return int(level)

    def pop_within(self, limit: int, nothing: object) -> object:
        """Take the next item whose effective level is *limit* or better; or *nothing*.

        By (effective level, arrival), as :meth:`pop`, among those items only:
        a level's head is its oldest, so comparing the heads is enough.
        """
        order = self.order
        levels = self.levels
        aging = self.aging
        level: int | None = None
        if aging is None:
            if order and order[0] <= limit:
                level = order[0]
        else:
            now = self.clock()
            best: tuple[int, float] | None = None
            for each in order:
                entries = levels[each]
                start = entries.start
                rank = aged_level(each, now - entries.borns[start], aging)
                key = (rank, entries.seqs[start])
                if rank <= limit and (best is None or key < best):
                    best, level = key, each
        if level is None:
            return nothing
        entries = levels[level]
        item = entries.items[entries.start]
        self._kill(entries, level, entries.start, item)
        return item

    def reaches(self, limit: int) -> float:
        """When some queued item's effective level first reaches *limit* by aging.

        :data:`math.inf` if none will (no aging, *limit* below 1, or no item
        above it); never less than a hair ahead of now.
        """
        aging = self.aging
        if aging is None or limit < 1:
            return math.inf
        levels = self.levels
        when = math.inf
        for each in self.order:
            if each > limit:
                entries = levels[each]
                when = min(when, entries.borns[entries.start] + (each - limit) * aging)
        return max(when, self.clock() + _NUDGE) if when != math.inf else when

    def heads(self) -> list[T]:
        """The first (oldest) item of each non-empty level."""
        levels = self.levels
        return [levels[level].items[levels[level].start] for level in self.order]

    def pop_newest(self, above: int) -> tuple[T, int] | None:
        """Take the newest item of the highest level, if that level is above *above*."""
        order = self.order
        if not order or order[-1] <= above:
            return None
        level = order[-1]
        entries = self.levels[level]
        items = entries.items
        while items[-1] is GONE:  # removed at the end: a hole, dropped now
            items.pop()
            entries.seqs.pop()
            entries.borns.pop()
        item = items.pop()
        entries.seqs.pop()
        entries.borns.pop()
        holes = entries.holes
        while holes and holes[-1] >= len(items):
            holes.pop()
        self._gone(entries, level, item)
        return item, level

    def remove(self, item: T, level: int) -> bool:
        """Take *item* (tracked) out; return whether it was queued."""
        assert self.index is not None  # noqa: S101 (only a tracking store's)
        where = self.index.get(item)
        if where is None or where[0] != level:
            return False
        entries = self.levels[level]
        self._kill(entries, level, entries.index(where[1]), item)
        return True

    def remove_identity(self, item: object, level: int) -> bool:
        """Take out this very object (most likely near the end); ``False`` if gone."""
        entries = self.levels.get(level)
        if entries is None or not entries.live:
            return False
        items = entries.items
        for index in range(len(items) - 1, entries.start - 1, -1):
            if items[index] is item:
                self._kill(entries, level, index, item)
                return True
        return False

    def _kill(self, entries: _Level, level: int, index: int, item: object) -> None:
        entries.items[index] = GONE
        if index == entries.start:
            entries.start += 1
        else:
            insort(entries.holes, index)
        self._gone(entries, level, item)

    def _gone(self, entries: _Level, level: int, item: object) -> None:
        """*item* left *level*: count it out, tidy the level, wake watchers."""
        entries.live -= 1
        self.size -= 1
        if self.index is not None:
            self.index.pop(item, None)  # type: ignore[arg-type]
        if entries.live:
            entries.advance()
        else:
            self.order.remove(level)
            del self.levels[level]
        if self.watch:
            self._wake(level if self.aging is None else -math.inf)

    def clear(self) -> list[tuple[T, int]]:
        """Take out every item, with its level, level by level in arrival order."""
        levels = self.levels
        out = [
            (item, level)
            for level in self.order
            for item in levels[level].items[levels[level].start :]
            if item is not GONE
        ]
        levels.clear()
        self.order.clear()
        self.size = 0
        if self.index is not None:
            self.index.clear()
        return out

    # -- looking --------------------------------------------------------------------

    def sizes(self) -> dict[int, int]:
        """Queued items by non-empty level, ascending."""
        levels = self.levels
        sizes = {}
        for level in tuple(self.order):  # one step: safe from a scrape thread
            entries = levels.get(level)
            # None only if a take emptied the level as another thread read it.
            if entries is not None:  # pragma: no branch
                sizes[level] = entries.live
        return sizes

    def effective(self, item: T, level: int) -> int | None:
        """*item*'s (tracked) effective level now; ``None`` if it is not queued."""
        assert self.index is not None  # noqa: S101 (only a tracking store's)
        where = self.index.get(item)
        if where is None or where[0] != level:
            return None
        entries = self.levels[level]
        born = entries.borns[entries.index(where[1])]
        return aged_level(level, self.clock() - born, self.aging)

    def rank(self, item: T, level: int) -> tuple[int, float] | None:
        """*item*'s position, and when it may next change by aging alone.

        The position counts the items taken before *item* (tracked); the time is
        :data:`math.inf` without aging. ``None`` if *item* is not queued.
        O(levels * log n).
        """
        assert self.index is not None  # noqa: S101 (only a tracking store's)
        where = self.index.get(item)
        if where is None or where[0] != level:
            return None
        seq = where[1]
        levels = self.levels
        mine = levels[level]
        at = mine.index(seq)
        count = mine.between(mine.start, at)
        aging = self.aging
        if aging is None:
            # Its own level is listed, so the loop always breaks.
            for each in self.order:  # pragma: no branch
                if each >= level:
                    break
                count += levels[each].live
            return count, math.inf
        now = self.clock()
        born = mine.borns[at]
        rank = aged_level(level, now - born, aging)
        key = (rank, seq)
        # Its own next step up, then the first item behind it in each level.
        wake = born + (level - rank + 1) * aging if rank > 1 else math.inf
        for each in self.order:
            if each == level:
                continue
            entries = levels[each]
            start = entries.start
            if each < rank:
                count += entries.live  # better than its level however young: ahead
                continue
            borns, seqs = entries.borns, entries.seqs
            ahead = bisect_left(
                range(start, len(seqs)),
                key,
                key=lambda i: (aged_level(each, now - borns[i], aging), seqs[i]),
            )
            count += entries.between(start, start + ahead)
            behind = start + ahead
            if behind < len(seqs) and each > 1:
                first = aged_level(each, now - borns[behind], aging)
                if first > 1:
                    wake = min(wake, borns[behind] + (each - first + 1) * aging)
        return count, max(wake, now + _NUDGE) if wake != math.inf else wake


def _plain_clock(clock: Callable[[], float]) -> Callable[[], float]:
    """A C function that measures the same intervals as *clock*, else *clock*.

    An aging store only compares its own readings, so a clock that differs from
    the backend's by a constant serves as well and saves a Python-level call on
    every send and receive: asyncio's ``loop.time()`` is ``time.monotonic()``,
    and Trio's ``SystemClock.current_time()`` is a fixed offset plus
    ``time.perf_counter()``. Any other clock (a loop's own, Trio's
    ``MockClock``) is used as it is.
    """
    method = getattr(clock, "__func__", None)
    if method is asyncio.BaseEventLoop.time:
        return time.monotonic
    owner = type(getattr(clock, "__self__", None))
    if owner.__module__.startswith("trio.") and owner.__name__ == "SystemClock":
        return time.perf_counter
    return clock


def aging_clock() -> Callable[[], float]:
    """The clock an aging channel reads on the running backend.

    The backend's own, or a C function that measures the same intervals (see
    :func:`_plain_clock`); anyio's ``current_time()`` outside the backends
    :class:`Backend` knows.
    """
    backend = Backend()
    backend.bind()
    return _plain_clock(backend.clock)


@final
class AgingBuckets(Generic[T]):
    """A channel's items by (aged level, arrival): the light store behind ``aging=``.

    The same order as an :class:`OrderedStore` with *aging* and no tracking (an
    item gains one level per *aging* seconds waited, never past 1; taken by
    (aged level, arrival), FIFO within a level; an item given back to the front
    of its level is as old as that level's head and just ahead of it), for what
    a channel needs and nothing more: no positions, no watchers, no removal by
    item. Each level is one :class:`collections.deque` of ``(born, seq, item)``
    entries; ``order`` lists the non-empty levels, ascending.

    A take reads the clock only when two or more levels hold items, and compares
    the heads only once the clock has reached ``calm``: the earliest time some
    head above level 1 has waited a whole period. Before that no queued item has
    aged (a level's head is its oldest), so the order is strict priority and a
    take pops the first level's head. ``calm`` is lowered as a level gets a new
    head by a push; taking or removing a head only makes it early, and the takes
    that compare recompute it.

    The clock is the backend's, or one that measures the same intervals (see
    :func:`_plain_clock`); it never goes back, so arrival times grow along a
    level, as an :class:`OrderedStore` makes them.

    The channel's ``send_nowait()`` and ``receive_nowait()`` inline the two
    common steps, a push onto a level that holds items and a take of ``first``'s
    head before ``calm`` (or while only one level holds items), to save a call on
    each side; they rely on the layout above, and ``tests/test_aging.py`` checks
    both this class and the channel against an :class:`OrderedStore`.
    """

    __slots__ = ("aging", "buckets", "calm", "clock", "first", "mixed", "order", "seq")

    def __init__(self, aging: float) -> None:
        self.aging: float = aging
        #: The backend's clock, found at its first use (see :meth:`_first_clock`).
        self.clock: Callable[[], float] = self._first_clock
        self.buckets: dict[int, deque[tuple[float, float, T]]] = {}
        self.order: list[int] = []
        #: The deque of ``order[0]``; ``None`` while no level holds items.
        self.first: deque[tuple[float, float, T]] | None = None
        #: Whether two or more levels hold items (``len(order) > 1``).
        self.mixed: bool = False
        self.seq: int = 0
        self.calm: float = math.inf

    def _first_clock(self) -> float:
        self.clock = clock = aging_clock()
        return clock()

    def push(self, item: T, level: int, *, front: bool = False) -> None:
        """Queue *item* at *level*: behind its level's items, or ahead if *front*."""
        born = self.clock()
        bucket = self.buckets.get(level)
        if bucket is None:
            bucket = self.buckets[level] = deque()
        if not bucket:
            order = self.order
            if not order:
                order.append(level)
                self.first = bucket
            else:
                self.mixed = True
                if order[-1] < level:
                    order.append(level)
                else:
                    insort(order, level)
                    if order[0] == level:
                        self.first = bucket
            if level > 1 and born + self.aging < self.calm:
                self.calm = born + self.aging
        elif front:
            # Given back by a receiver: first in line again, as old as the head.
            head_born, head_seq, _ = bucket[0]
            bucket.appendleft((head_born, ahead_of(head_seq), item))
            return
        seq = self.seq = self.seq + 1
        bucket.append((born, seq, item))

    def pop(self, nothing: object) -> object:
        """Take the next item, best (aged level, arrival) first; or *nothing*."""
        order = self.order
        if not order:
            return nothing
        level = order[0]
        if self.mixed:
            now = self.clock()
            if now >= self.calm:
                level = self._best(now)
        bucket = self.buckets[level]
        item = bucket.popleft()[2]
        if not bucket:
            self.drop(level)
        return item

    def _best(self, now: float) -> int:
        """The level whose head goes next by (aged level, arrival); resets ``calm``."""
        buckets = self.buckets
        aging = self.aging
        best: tuple[int, float] | None = None
        level = 0
        calm = math.inf
        for each in self.order:
            born, seq, _ = buckets[each][0]
            key = (aged_level(each, now - born, aging), seq)
            if best is None or key < best:
                best, level = key, each
            if each > 1 and born + aging < calm:
                calm = born + aging
        self.calm = calm
        return level

    def drop(self, level: int) -> None:
        """Forget *level*, whose deque is empty."""
        order = self.order
        order.remove(level)
        buckets = self.buckets
        self.first = buckets[order[0]] if order else None
        self.mixed = len(order) > 1
        if len(buckets) > _KEEP_IDLE_LEVELS:
            del buckets[level]

    def remove_identity(self, item: object, level: int) -> bool:
        """Take out this very object (most likely near the end); ``False`` if gone."""
        bucket = self.buckets.get(level)
        if not bucket:
            return False
        for index in range(len(bucket) - 1, -1, -1):
            if bucket[index][2] is item:
                del bucket[index]
                if not bucket:
                    self.drop(level)
                return True
        return False

    def clear(self) -> list[tuple[T, int]]:
        """Take out every item, with its level, level by level in arrival order."""
        buckets = self.buckets
        out = [(entry[2], level) for level in self.order for entry in buckets[level]]
        buckets.clear()
        self.order.clear()
        self.first = None
        self.mixed = False
        self.calm = math.inf
        return out

    def heads(self) -> list[T]:
        """The first (oldest) item of each non-empty level."""
        buckets = self.buckets
        return [buckets[level][0][2] for level in self.order]

    def sizes(self) -> dict[int, int]:
        """Queued items by non-empty level, ascending."""
        buckets = self.buckets
        sizes = {}
        for level in tuple(self.order):  # one step: safe from a scrape thread
            bucket = buckets.get(level)
            # Empty only if a take emptied the level as another thread read it.
            if bucket:  # pragma: no branch
                sizes[level] = len(bucket)
        return sizes
