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
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from anyio import Event, current_time

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
class FairStore(Generic[T]):
    """Items by a policy: weighted fair shares, rate limits, or both.

    Args:
        scheduling: The weights, or ``None`` for strict priority.
        rate_limits: A token bucket per level (empty: none).
    """

    __slots__ = (
        "aging",
        "buckets",
        "clock",
        "counted",
        "limits",
        "new_event",
        "order",
        "passes",
        "rate_limited",
        "size",
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
        self.size: int = 0
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
        self.size += 1
        if self.waiters:
            self._wake_for(level)
        if self.watch:
            self.wake_all()

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
        order = self.order
        if not order:
            return nothing
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
        self.size -= 1
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
        self.size -= 1
        if not bucket:
            self._drop(level)
        if self.watch:
            self.wake_all()

    def clear(self) -> list[tuple[T, int]]:
        """Take out every item, with its level, level by level in arrival order."""
        buckets = self.buckets
        out = [(item, level) for level in self.order for item in buckets[level]]
        buckets.clear()
        self.order.clear()
        self.size = 0
        return out

    # -- looking ------------------------------------------------------------------

    def heads(self) -> list[T]:
        """The first (oldest) item of each non-empty level."""
        buckets = self.buckets
        return [buckets[level][0] for level in self.order]

    def sizes(self) -> dict[int, int]:
        """Queued items by non-empty level, ascending."""
        buckets = self.buckets
        sizes = {}
        for level in tuple(self.order):  # one step: safe from a scrape thread
            bucket = buckets.get(level)
            if bucket:  # pragma: no branch (empty only mid-take, from a thread)
                sizes[level] = len(bucket)
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

    # -- watchers -------------------------------------------------------------------

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
        """Wake every watcher: any change may move any position."""
        for slot in self.watch.values():
            slot[0].set()
            slot[0] = self.new_event()
