"""The policy store: weighted fair sharing and per-level rate limits.

A channel's (or a pool's queue's) items, one deque per level as in the bucket
queue, taken in the order a policy says instead of strict priority:

- **Weighted fair sharing** (:class:`WeightedFair`) is stride scheduling: each
  level has a *pass*, and a take serves the non-empty level with the lowest pass
  (ties to the better level), then adds ``1 / weight`` to it. Over any stretch in
  which several levels stay non-empty, each is served in proportion to its
  weight, to within one request. A level that was empty starts again at the pass
  of the last level served (``vtime``), so it neither lost its turn nor saved up
  credit while idle: an idle level's share goes to the others (the store never
  refuses a take while it holds an item). With one level non-empty a take pops it
  at once (the fast path).
- **Rate limits** (:class:`RateLimit`) are a token bucket per level, kept as its
  *theoretical arrival time* (GCRA): a level may start a request when ``tat -
  now <= (burst - 1) * interval``, and each start adds ``interval`` to
  ``max(tat, now)``. A take skips a level without a token; what the waiting side
  needs to know, when the next token comes (:meth:`FairStore.next_token`), and
  which waiting taker a new item wakes (:attr:`FairStore.waiters`), is here too.

A channel's store (``batching``) also takes in *batches*: the stride order
repeats (with weights 8:4:2:1, every 15 takes while the four levels hold items),
so a take that finds levels queued computes one cycle of it and moves as many
whole cycles as every level can fill into :attr:`FairStore.batch`, in C
(``map(deque.popleft, ...)``), for the channel's receive fast path to pop from
(see ``_ChannelState.take_slow``). The passes are set as if those takes were
done. A batch only reorders nothing while the levels it drew on stay as they
were: a push to an empty level (which joins the order) or to the front of one,
a removal, and a clear first put the batch back (:meth:`FairStore.unbatch`),
and the passes with it, as if only the items already received were taken.

Order within a level is always arrival order. A request's position
(:meth:`FairStore.rank`) is counted in the policy's own order, as if nothing else
arrived and every level had tokens: with weights, the *k*-th item of a level is
served at pass ``pass + k / weight``, so the items ahead of it in another level
are a prefix of that level, found in O(1).
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from itertools import cycle, islice
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from anyio import Event, current_time

from ._order import LevelWatchers
from ._util import Backend

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._policies import RateLimit, WeightedFair

__all__ = ["FairStore", "Waiter"]

T = TypeVar("T")

#: Tolerance of a token check: a deadline the clock's rounding puts a hair early
#: still finds its token.
_EPSILON: Final = 1e-9
#: Emptied levels whose deques are kept for reuse (as the channel's buckets do).
_KEEP_IDLE_LEVELS: Final = 8
#: The longest stretch of the order simulated to find its cycle, and the most
#: items a batch holds (what putting one back may cost).
_LONGEST_CYCLE: Final = 256
_LARGEST_BATCH: Final = 4096


@final
class Waiter:
    """A taker waiting for an item at *limit* or above (``math.inf``: any level)."""

    __slots__ = ("event", "item", "limit", "woken")

    def __init__(self, limit: float, event: Any) -> None:  # noqa: ANN401 (a backend's Event)
        self.limit: float = limit
        self.event: Any = event
        #: What it was handed instead of an item (a retiring worker's RETIRE).
        self.item: Any = None
        #: Set by a push that wakes it: it owes the next look at the store.
        self.woken: bool = False


@final
class _Bucket:
    """One level's token bucket (GCRA: see the module)."""

    __slots__ = ("interval", "slack", "tat")

    def __init__(self, limit: RateLimit) -> None:
        self.interval: float = limit.interval
        self.slack: float = (limit.burst - 1) * limit.interval
        self.tat: float = -math.inf

    def ready_at(self) -> float:
        """When this level may next start a request (the past if it may now)."""
        return self.tat - self.slack


@final
class FairStore(LevelWatchers, Generic[T]):
    """Items by a policy: weighted fair shares, rate limits, or both.

    Args:
        scheduling: The weights, or ``None`` for strict priority.
        rate_limits: A token bucket per level (empty: none).
    """

    __slots__ = (
        "aging",
        "batch",
        "batch_cycle",
        "batch_delta",
        "batch_passes",
        "batch_size",
        "batch_vtime",
        "batching",
        "buckets",
        "clock",
        "counted",
        "limits",
        "new_event",
        "order",
        "passes",
        "rate_limited",
        "strides",
        "unlimited",
        "vtime",
        "waiters",
        "watch",
        "weights",
    )

    def __init__(
        self,
        scheduling: WeightedFair | None,
        rate_limits: Mapping[int, RateLimit] | None = None,
    ) -> None:
        #: Never aged (what a pool's queue asks of a store).
        self.aging: None = None
        self.weights: WeightedFair | None = scheduling
        self.buckets: dict[int, deque[T]] = {}
        #: The non-empty levels, ascending.
        self.order: list[int] = []
        self.passes: dict[int, float] = {}
        self.strides: dict[int, float] = {}
        self.vtime: float = 0.0
        self.limits: dict[int, _Bucket] = {
            level: _Bucket(limit) for level, limit in (rate_limits or {}).items()
        }
        #: Taking ignores the rate limits while set (a drain takes everything).
        self.unlimited: bool = False
        #: The head last counted as waiting for a token, by level.
        self.counted: dict[int, object] = {}
        #: Requests that waited for a token, by level (counted once each).
        self.rate_limited: dict[int, int] = {}
        #: Takers waiting for a token or an item (rate limits only).
        self.waiters: list[Waiter] = []
        #: Watchers by level: [event, count] (a pool's ``positions()``).
        self.watch: dict[int, list[Any]] = {}
        self.clock: Callable[[], float] = self._first_clock
        self.new_event: Callable[[], Any] = Event
        #: Whether takes fill :attr:`batch` (a channel's store, weights only).
        self.batching: bool = False
        #: The next items, in order, taken ahead (see the module); always the
        #: same deque, so a channel's fast path may keep a reference to it.
        self.batch: deque[T] = deque()
        #: The batch's cycle of levels, how many items it held, and the passes,
        #: vtime and per-cycle pass steps it started from (for unbatch()).
        self.batch_cycle: list[int] = []
        self.batch_size: int = 0
        self.batch_passes: dict[int, float] = {}
        self.batch_vtime: float = 0.0
        self.batch_delta: dict[int, float] = {}

    def _first_clock(self) -> float:
        backend = Backend()
        try:
            backend.bind()
        except RuntimeError:  # pragma: no cover (another anyio backend)
            return current_time()
        self.clock = backend.clock
        self.new_event = backend.event
        return self.clock()

    def _stride(self, level: int) -> float:
        stride = self.strides.get(level)
        if stride is None:
            weights = self.weights
            stride = 1.0 if weights is None else 1.0 / weights.weight(level)
            self.strides[level] = stride
        return stride

    # -- in -----------------------------------------------------------------------

    def push(self, item: T, level: int, *, front: bool = False) -> None:
        """Queue *item* at *level*: behind its level's items, or ahead if *front*."""
        bucket = self.buckets.get(level)
        if self.batch and (front or not bucket):
            # It joins the order, or goes ahead of items taken ahead: the
            # batch no longer holds what comes next.
            self.unbatch()
            bucket = self.buckets.get(level)
        if bucket is None:
            bucket = self.buckets[level] = deque()
        if not bucket:
            insort(self.order, level)
            if self.weights is not None:
                # Back from idle: no credit saved, no turn lost.
                self.passes[level] = max(self.passes.get(level, 0.0), self.vtime)
                self._stride(level)
        if front:
            bucket.appendleft(item)
        else:
            bucket.append(item)
        if self.waiters:
            self._wake_for(level)
        if self.watch:
            self.wake_all()

    def activate(self, level: int) -> None:
        """A channel's send is about to put an item in *level*'s empty deque.

        What :meth:`push` does for a level that joins the order, for a send
        that appends to the deque itself (the channel's buckets are this
        store's): a batch taken ahead goes back first (it may refill the deque,
        which is then listed already).
        """
        if self.batch:
            self.unbatch()
            if self.buckets[level]:
                return
        insort(self.order, level)
        self.passes[level] = max(self.passes.get(level, 0.0), self.vtime)
        self._stride(level)

    def _wake_for(self, level: int) -> None:
        """Wake the first waiting taker that may take an item at *level*."""
        waiters = self.waiters
        for waiter in waiters:
            if waiter.limit >= level:
                waiters.remove(waiter)
                waiter.woken = True
                waiter.event.set()
                return

    def wake_one(self) -> None:
        """Wake the first waiting taker (the store may hold what it can take)."""
        if self.waiters:
            waiter = self.waiters.pop(0)
            waiter.woken = True
            waiter.event.set()

    # -- out ----------------------------------------------------------------------

    def pop(self, nothing: object) -> object:
        """Take the next item by the policy; *nothing* if none may start now."""
        batch = self.batch
        if batch:
            return batch.popleft()
        order = self.order
        if not order:
            return nothing
        if self.batching and self.fill():
            return batch.popleft()
        if len(order) == 1 and not self.limits:
            level = order[0]  # the fast path: one level, no tokens to mind
        elif self.weights is not None and not self.limits:
            # Weights alone: the lowest pass, ties to the better level, in one
            # pass over the few non-empty levels (what _choose does, inlined).
            passes = self.passes
            level = order[0]
            best = passes[level]
            for each in order:
                if passes[each] < best:
                    level, best = each, passes[each]
        else:
            found = self._choose(math.inf)
            if found is None:
                return nothing
            level = found
        return self._take(level)

    def pop_within(self, limit: int, nothing: object) -> object:
        """Take the next item at *limit* or above (lower value), by the policy."""
        found = self._choose(limit) if self.order else None
        if found is None:
            return nothing
        return self._take(found)

    def _choose(self, limit: float) -> int | None:
        """The level a take serves among those at *limit* or above; spends a token."""
        order = self.order
        if self.weights is None:
            candidates = [level for level in order if level <= limit]
        else:
            passes = self.passes
            candidates = sorted(
                (level for level in order if level <= limit),
                key=lambda level: (passes[level], level),
            )
        limits = self.limits
        if not limits or self.unlimited:
            return candidates[0] if candidates else None
        now = self.clock()
        for level in candidates:
            bucket = limits.get(level)
            if bucket is None:
                return level
            if bucket.ready_at() <= now + _EPSILON:
                bucket.tat = max(bucket.tat, now) + bucket.interval
                return level
            # A free taker found its head and no token: it waits for one.
            head = self.buckets[level][0]
            if self.counted.get(level) is not head:
                self.counted[level] = head
                self.rate_limited[level] = self.rate_limited.get(level, 0) + 1
        return None

    def spend(self, level: int) -> bool:
        """Spend a token of *level* now, if it has one (or no limit)."""
        bucket = self.limits.get(level)
        if bucket is None or self.unlimited:
            return True
        now = self.clock()
        if bucket.ready_at() > now + _EPSILON:
            return False
        bucket.tat = max(bucket.tat, now) + bucket.interval
        return True

    def _take(self, level: int) -> T:
        bucket = self.buckets[level]
        item = bucket.popleft()
        if self.weights is not None:
            start = self.passes[level]
            self.vtime = start
            self.passes[level] = start + self.strides[level]
        if not bucket:
            self._drop(level)
        if self.watch:
            self.wake_all()
        return item

    def _drop(self, level: int) -> None:
        self.order.remove(level)
        if len(self.buckets) > _KEEP_IDLE_LEVELS:
            del self.buckets[level]

    # -- batches ------------------------------------------------------------------

    def fill(self) -> bool:
        """Take whole cycles of the order ahead into :attr:`batch`; whether any.

        A channel's store only (weights, no rate limits). As many cycles as every
        level queued can fill (so none runs out within the batch, which keeps
        the cycle what the order is); ``False`` if not even one.
        """
        order = self.order
        start = self.passes
        ring, passes, counts, vtime, periodic = self._cycle(order)
        buckets = self.buckets
        cycles = min(
            len(buckets[level]) // counts[level] for level in order if counts[level]
        )
        if not periodic:
            cycles = min(cycles, 1)
        cycles = min(cycles, _LARGEST_BATCH // len(ring))
        if not cycles:
            return False
        self.batch_passes = {level: start[level] for level in order}
        self.batch_vtime = self.vtime
        self.batch_delta = {level: passes[level] - start[level] for level in order}
        self.batch_cycle = ring
        total = self.batch_size = cycles * len(ring)
        self.batch.extend(
            map(deque.popleft, islice(cycle([buckets[level] for level in ring]), total))
        )
        if cycles == 1:
            start.update(passes)
            self.vtime = vtime
        else:
            for level in order:
                start[level] += cycles * self.batch_delta[level]
            # The last take's pass; each cycle moves every pass by the same step.
            self.vtime = vtime + (cycles - 1) * self.batch_delta[ring[-1]]
        for level in tuple(order):
            if not buckets[level]:
                self._drop(level)
        return True

    def _cycle(
        self, order: list[int]
    ) -> tuple[list[int], dict[int, float], dict[int, int], float, bool]:
        """The order's next takes from the passes now, until it repeats.

        Returns the levels taken, in order; the passes after them; how many
        takes each level had; the pass of the last take; and whether every pass
        moved by the same step (then those takes repeat as they are, forever,
        while the levels stay queued). At most ``_LONGEST_CYCLE`` takes.
        """
        start = self.passes
        passes = {level: start[level] for level in order}
        strides = {level: self._stride(level) for level in order}
        counts = dict.fromkeys(order, 0)
        ring: list[int] = []
        vtime = self.vtime
        while len(ring) < _LONGEST_CYCLE:
            level = order[0]
            best = passes[level]
            for each in order:
                if passes[each] < best:
                    level, best = each, passes[each]
            vtime = best
            passes[level] = best + strides[level]
            counts[level] += 1
            ring.append(level)
            steps = [passes[each] - start[each] for each in order]
            if max(steps) - min(steps) <= _EPSILON * max(1.0, abs(vtime)):
                return ring, passes, counts, vtime, True
        return ring, passes, counts, vtime, False

    def unbatch(self) -> None:
        """Put the batch's items back, and the passes as if only the rest were taken."""
        batch = self.batch
        if not batch:
            return
        ring, size = self.batch_cycle, self.batch_size
        taken = size - len(batch)
        rounds, steps = divmod(taken, len(ring))
        if rounds and not steps:
            rounds, steps = rounds - 1, len(ring)  # replay the last cycle's takes
        passes, delta = self.passes, self.batch_delta
        for level, start in self.batch_passes.items():
            passes[level] = start + rounds * delta[level]
        vtime = self.batch_vtime
        for index in range(steps):
            level = ring[index % len(ring)]
            vtime = passes[level]
            passes[level] = vtime + self.strides[level]
        self.vtime = vtime
        buckets, order = self.buckets, self.order
        for index in range(size - 1, taken - 1, -1):
            level = ring[index % len(ring)]
            bucket = buckets.get(level)
            if bucket is None:
                bucket = buckets[level] = deque()
            if not bucket:
                insort(order, level)
            bucket.appendleft(batch.pop())

    def next_token(self, limit: float) -> float:
        """When a level at *limit* or above that holds items next gets a token.

        :data:`math.inf` if no such level holds items; the past if one may start
        now.
        """
        when = math.inf
        limits = self.limits
        for level in self.order:
            if level > limit:
                break
            bucket = limits.get(level)
            if bucket is None:
                return -math.inf
            when = min(when, bucket.ready_at())
        return when

    def reaches(self, limit: int) -> float:
        """When a queued item ages to *limit*: never (no aging here)."""
        del limit
        return math.inf

    def limited_now(self) -> dict[int, int]:
        """Queued items of the levels that have no token now, by level."""
        if not self.limits:
            return {}
        now = self.clock()
        limits = self.limits
        waiting = {}
        for level in tuple(self.order):  # one step: safe from a scrape thread
            bucket = limits.get(level)
            queued = self.buckets.get(level)
            if bucket is not None and queued and bucket.ready_at() > now + _EPSILON:
                waiting[level] = len(queued)
        return waiting

    # -- taking out ---------------------------------------------------------------

    def pop_newest(self, above: int) -> tuple[T, int] | None:
        """Take the newest item of the lowest level, if that level is above *above*."""
        order = self.order
        if not order or order[-1] <= above:
            return None
        level = order[-1]
        bucket = self.buckets[level]
        item = bucket.pop()
        self._gone(bucket, level)
        return item, level

    def remove(self, item: T, level: int) -> bool:
        """Take *item* (compared with ``==``) out of *level*; whether it was there."""
        bucket = self.buckets.get(level)
        if not bucket:
            return False
        try:
            bucket.remove(item)
        except ValueError:
            return False
        self._gone(bucket, level)
        return True

    def remove_identity(self, item: object, level: int) -> bool:
        """Take out this very object (most likely near the end); ``False`` if gone."""
        self.unbatch()
        bucket = self.buckets.get(level)
        if not bucket:
            return False
        for index in range(len(bucket) - 1, -1, -1):
            if bucket[index] is item:
                del bucket[index]
                self._gone(bucket, level)
                return True
        return False

    def _gone(self, bucket: deque[T], level: int) -> None:
        if not bucket:
            self._drop(level)
        if self.watch:
            self.wake_all()

    def clear(self) -> list[tuple[T, int]]:
        """Take out every item, with its level, level by level in arrival order."""
        self.unbatch()
        buckets = self.buckets
        out = [(item, level) for level in self.order for item in buckets[level]]
        buckets.clear()
        self.order.clear()
        return out

    # -- looking ------------------------------------------------------------------

    def heads(self) -> list[T]:
        """The first (oldest) item of each non-empty level."""
        buckets = self.buckets
        return [buckets[level][0] for level in self.order]

    def sizes(self) -> dict[int, int]:
        """Queued items by non-empty level, ascending (those in the batch too)."""
        buckets = self.buckets
        sizes = {}
        for level in tuple(self.order):  # one step: safe from a scrape thread
            bucket = buckets.get(level)
            if bucket:  # pragma: no branch (empty only mid-take, from a thread)
                sizes[level] = len(bucket)
        waiting = len(self.batch)
        if waiting:
            # The levels of the batch's last *waiting* items: its cycle's, from
            # where the receives reached.
            ring = self.batch_cycle
            start = self.batch_size - waiting
            for index in range(start, start + waiting):
                level = ring[index % len(ring)]
                sizes[level] = sizes.get(level, 0) + 1
            sizes = dict(sorted(sizes.items()))
        return sizes

    def rank(self, item: T, level: int) -> tuple[int, float] | None:
        """*item*'s position in the policy's order, and ``math.inf`` (no aging).

        Counted as if nothing else arrived and every level had tokens: strict
        priority counts the better levels and those ahead in its own; weighted
        fair counts, in each other level, the items whose pass comes first.
        ``None`` if *item* is not queued.
        """
        bucket = self.buckets.get(level)
        if not bucket:
            return None
        try:
            index = bucket.index(item)
        except ValueError:
            return None
        count = index
        buckets = self.buckets
        if self.weights is None:
            for each in self.order:  # pragma: no branch (its own level is listed)
                if each >= level:
                    break
                count += len(buckets[each])
            return count, math.inf
        passes = self.passes
        key = passes[level] + index * self._stride(level)
        for each in self.order:
            if each == level:
                continue
            # Items j of *each* go first while passes[each] + j * stride < key
            # (or == key at a better level).
            stride = self._stride(each)
            span = (key - passes[each]) / stride
            ahead = math.floor(span) + 1 if each < level else math.ceil(span)
            count += min(len(buckets[each]), max(0, ahead))
        return count, math.inf
