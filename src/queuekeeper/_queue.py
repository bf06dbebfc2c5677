"""The queue interface: the only way a :class:`WorkerPool` reaches its requests.

A pool puts requests in, takes them out for its workers, and manages the ones
still waiting (cancel, position, evict, sizes) through :class:`RequestQueue`, and
through nothing else. The in-memory bucket queue implements it
(:class:`queuekeeper._memory.MemoryQueue`); a queue that lives in another process
(on Redis, say) is a second implementation, and the pool does not change.

Written with such a queue in mind:

- Taking a request is not the end of it: the pool calls :meth:`RequestQueue.settled`
  once the request reached its final state, so that a remote queue can release
  the lease under which it handed the request out (and hand it to another worker
  if the first one died). :attr:`RequestQueue.acknowledges` says whether a queue
  wants that call at all: the in-memory one does not, and the pool skips it.
- The waiting operations (:meth:`put`, :meth:`take`) are coroutines and must be
  cancel-safe: a cancelled :meth:`put` queued nothing; a cancelled :meth:`take`
  took nothing.
- The synchronous operations are what the in-memory queue does without waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._policies import Retry
    from ._status import ChannelStatistics

__all__ = ["RequestQueue", "SharedQueue"]

T = TypeVar("T")


class RequestQueue(Protocol[T]):
    """A bounded priority queue of requests (never ``None``), as a pool uses it.

    Requests are taken lowest priority value first, first in first out within a
    level. A request that a :meth:`take` is waiting for is handed to it directly.
    """

    #: Called with a request at the moment a waiting :meth:`put` moves it in, which
    #: may be before that :meth:`put` returns (a pool counts a request in then).
    on_admit: Callable[[T], object] | None

    #: Whether :meth:`settled` must be called for each request taken.
    acknowledges: bool

    # -- in -----------------------------------------------------------------------

    def put_nowait(self, request: T, priority: int) -> bool:
        """Queue *request* if there is room, without waiting.

        Returns whether it was handed straight to a :meth:`take` waiting for one
        (it then takes no room, and is neither queued nor taken until that taker
        resumes).

        Raises:
            anyio.WouldBlock: The queue is full; nothing was queued.
        """
        ...

    async def put(self, request: T, priority: int) -> bool:
        """Queue *request*, waiting for room first; waiting puts go in arrival order.

        Returns whether it was handed straight to a waiting :meth:`take` (only
        when there was room at once).

        Cancel-safe: if cancelled, nothing was queued, unless the request moved in
        at the instant the cancellation arrived: then it returns normally (for a
        cancellation that is raised again at the next checkpoint), or raises and
        takes the request back out if nothing took it yet.

        Raises:
            anyio.ClosedResourceError: :meth:`close` was called while it waited.
        """
        ...

    def evict(self, above: int) -> tuple[T, int] | None:
        """Take out the newest request of the lowest level, if lower than *above*.

        Returns it and its level, or ``None`` (nothing queued below *above*).
        """
        ...

    # -- out ----------------------------------------------------------------------

    def take_nowait(self) -> T | None:
        """Take the next request, or return ``None`` if none is ready.

        A :meth:`put` waiting for room moves in first.
        """
        ...

    async def take(self) -> T:
        """Take the next request, waiting for one; always a checkpoint.

        Cancel-safe: a cancelled take took nothing.

        Raises:
            anyio.EndOfStream: The queue is closed and empty.
        """
        ...

    def settled(self, request: T) -> None:
        """*request*, taken earlier, reached its final state (see ``acknowledges``)."""
        ...

    # -- requests waiting ---------------------------------------------------------

    def remove(self, request: T, priority: int) -> bool:
        """Take *request* out of the queue; return whether it was there."""
        ...

    def position(self, request: T, priority: int) -> int | None:
        """Return how many queued requests come before *request*, or ``None``."""
        ...

    def sizes(self) -> tuple[int, Mapping[int, int]]:
        """Return the number of queued requests, in all and by non-empty level.

        Safe to call from another thread (a metrics scrape).
        """
        ...

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the queue; safe to call from another thread."""
        ...

    # -- the end ------------------------------------------------------------------

    def close(self) -> None:
        """Take no more requests: waiting puts raise, takes end once it is empty."""
        ...

    def drain(self) -> list[T]:
        """Take out and return every queued request (waiting puts move in first)."""
        ...

    # -- scaling the workers ------------------------------------------------------

    def retire_waiting(self, count: int) -> int:
        """Wake up to *count* idle workers waiting in :meth:`take`, to retire.

        Each such :meth:`take` returns ``queuekeeper._memory.RETIRE``, which is
        no request. Returns how many were woken.
        """
        ...

    def reserve(self, limits: list[int]) -> None:
        """Serve reserved workers at these levels too (see :meth:`take_within`).

        A request goes first to a reserved worker waiting for its level.
        """
        ...

    async def take_within(self, limit: int) -> T:
        """Take the next request at *limit* or above (lower value), waiting for one.

        Always a checkpoint; cancel-safe as :meth:`take`.

        Raises:
            anyio.EndOfStream: The queue is closed, with nothing at those levels.
        """
        ...


class SharedQueue(Protocol):
    """A queue that lives outside the process (on Redis, say), for a pool's ``queue=``.

    The pool asks it for a link of its own: a :class:`RequestQueue` of the requests
    its workers run, which also carries the pool's requests in and their outcomes
    back (see ``queuekeeper._pool._redis.PoolLink``).
    """

    def _link(
        self,
        *,
        pool: str,
        workers: int,
        mode: Any,  # noqa: ANN401
        accounting: Any,  # noqa: ANN401
        deadlines: Any,  # noqa: ANN401
        new_ticket: Callable[..., Any],
        aging: float | None = None,
        rate_limits: Any = None,  # noqa: ANN401
        scheduling: Any = None,  # noqa: ANN401
        retry: Retry | None = None,
        dead_letter_size: int | None = None,
    ) -> Any:  # noqa: ANN401
        """A link for the pool named *pool*."""
        ...
