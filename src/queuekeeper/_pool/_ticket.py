"""Tickets: what :meth:`WorkerPool.submit` hands back for each request."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, final

from .._priority import display_priority, priority_name
from .._states import TicketState
from .._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable
    from types import TracebackType

    from anyio import CancelScope

__all__ = ["Ticket", "TicketOwner"]

R = TypeVar("R")

# One counter for the process, so ticket ids are unique across pools.
_ids: Final = itertools.count(1)


_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING


class TicketOwner(Protocol):
    """What a ticket needs from the pool that queued its request, and no more."""

    @property
    def name(self) -> str:
        """The pool's name, the first part of the ticket's id."""
        ...

    def _position(self, ticket: Ticket[Any]) -> int | None:
        """How many queued requests come before *ticket*'s (it is queued)."""
        ...

    async def _fetch_position(self, ticket: Ticket[Any]) -> int | None:
        """The same, asked of the queue wherever it is."""
        ...

    def _deliveries(self, ticket: Ticket[Any]) -> int:
        """How many times *ticket*'s request was handed to a worker."""
        ...

    def _effective_level(self, ticket: Ticket[Any]) -> int:
        """The level *ticket*'s request competes at (with aging), or had."""
        ...

    def _positions(self, ticket: Ticket[Any]) -> AsyncIterator[int]:
        """*ticket*'s position now and at every change, while it is queued."""
        ...

    def _eta(self, ticket: Ticket[Any]) -> float | None:
        """Seconds until *ticket*'s request starts, estimated; ``None`` if unknown."""
        ...

    def _cancel_ticket(self, ticket: Ticket[Any]) -> bool:
        """Cancel *ticket*'s request; ``False`` if it had already finished."""
        ...

    def _live_state(self, ticket: Ticket[Any]) -> TicketState:
        """The state of *ticket*, which is queued as far as it knows itself."""
        ...

    def _checkpoint(self) -> Awaitable[object]:
        """A checkpoint of the backend the pool runs on (see ``result()``)."""
        ...

    def _new_event(self) -> Any:  # noqa: ANN401 (an anyio, trio or asyncio Event)
        """A new event of the backend the pool runs on."""
        ...

    def _attempts(self, ticket: Ticket[Any]) -> int:
        """How many times *ticket*'s request started running (with retries)."""
        ...


@final
class Ticket(Generic[R], metaclass=NoPublicConstructor):
    """A submitted request: its place in the queue, its state and its outcome.

    Returned by :meth:`WorkerPool.submit` and :meth:`WorkerPool.submit_nowait`;
    tickets have no public constructor.
    """

    __slots__ = (
        "__weakref__",
        "_cancelled_at",
        "_deadline",
        "_deadline_entry",
        "_error",
        "_error_context",
        "_error_traceback",
        "_event",
        "_level",
        "_owner",
        "_queue_deadline",
        "_result",
        "_scope",
        "_seq",
        "_state",
        "finished_at",
        "request",
        "started_at",
        "submitted_at",
    )

    # Set when the request fails: what result() restores before each re-raise.
    _error_traceback: TracebackType | None
    _error_context: BaseException | None

    def __init__(
        self,
        owner: TicketOwner,
        request: object,
        level: int,
        submitted_at: float,
        deadline: float,
        queue_deadline: float,
    ) -> None:
        self._owner = owner
        self._seq = next(_ids)
        #: The request, as passed to ``submit``.
        self.request: object = request
        self._level = level
        #: When the request entered the queue, on the backend's clock (seconds).
        self.submitted_at: float = submitted_at
        #: When a worker took it (``None`` until then, and if it never ran).
        self.started_at: float | None = None
        #: When it reached a final state (``None`` until then).
        self.finished_at: float | None = None
        self._deadline = deadline
        self._queue_deadline = queue_deadline
        # The pool's deadline-heap entry for this request, while it has one.
        self._deadline_entry: list[Any] | None = None
        self._state = _QUEUED
        self._result: R | None = None
        self._error: BaseException | None = None
        # Set when the request settles; made when someone waits before that.
        self._event: Any = None
        self._scope: CancelScope | None = None
        # When cancel() (or shutdown) cancelled the running handler; inf if never.
        self._cancelled_at = math.inf

    @property
    def id(self) -> str:
        """The ticket's unique id, the pool's name and a sequence number."""
        return f"{self._owner.name}-{self._seq}"

    @property
    def priority(self) -> int:
        """The request's priority, a :class:`Priority` for named levels, else an int."""
        return display_priority(self._level)

    @property
    def effective_priority(self) -> int:
        """The level the request competes at now, with the pool's ``aging``.

        While queued, :attr:`priority` improved by one level for every ``aging``
        seconds waited, never past :attr:`Priority.CRITICAL` (a custom level
        below 1 never changes); once it left the queue, the level it had then.
        Without aging, :attr:`priority`. On Redis, computed by the ticket's own
        clock (the server ages requests by its own).

        .. versionadded:: 0.2
        """
        return display_priority(self._owner._effective_level(self))

    def positions(self) -> AsyncIterator[int]:
        """Iterate over the request's :attr:`position`: now, then at every change.

        Yields the current position first, then each new one as requests are
        queued ahead of it, taken, removed or overtaken (with aging); ends when
        the request leaves the queue (it started, or settled without running).
        Any number of tickets may be watched at once: a change costs each
        watcher O(levels * log n), with no scan of the queue. On Redis the
        server is asked about every quarter of a second.

        Use it as ``async for position in ticket.positions():``; close it early
        with ``contextlib.aclosing`` (or by breaking out of the loop).

        Cancellation: safe at any point; it only watches.

        .. versionadded:: 0.2
        """
        return self._owner._positions(self)

    def eta(self) -> float | None:
        """Estimated seconds until the request starts; ``None`` if unknown.

        ``(position + 1) / rate``, where the rate is how many requests the
        pool's workers finished per second recently (the last 10 seconds, or
        since the pool started). ``None`` when the request is not queued, or
        when nothing has finished yet. On Redis, from the last position fetched
        and the rate at which the server saw requests finish.

        .. versionadded:: 0.2
        """
        return self._owner._eta(self)

    @property
    def state(self) -> TicketState:
        """The request's current :class:`TicketState`.

        A ticket that shares another request's outcome (see ``key`` in
        :meth:`WorkerPool.submit`) is running while that request runs.
        """
        state = self._state
        if state is _QUEUED:
            return self._owner._live_state(self)
        return state

    @property
    def deadline(self) -> float | None:
        """When the request's ``timeout`` expires (backend clock), or ``None``."""
        return None if self._deadline == math.inf else self._deadline

    @property
    def position(self) -> int | None:
        """How many queued requests will be served before this one (0 = next).

        ``None`` once the request has left the queue. Costs a scan of the queue up
        to the request. On a Redis-backed pool, the last position fetched
        (see :meth:`fetch_position`), ``None`` before the first.
        """
        if self._state is not _QUEUED:
            return None
        return self._owner._position(self)

    async def fetch_position(self) -> int | None:
        """Ask the queue for :attr:`position` afresh; ``None`` once not queued.

        On a pool with an in-process queue this returns at once (after a
        checkpoint); on Redis it asks the server (O(log n)), and
        :attr:`position` then gives the answer until the next fetch.

        Cancellation: safe at any point; it only reads.
        """
        if self._state is not _QUEUED:
            return None
        return await self._owner._fetch_position(self)

    @property
    def deliveries(self) -> int:
        """How many times the request was handed to a worker (0 until it starts).

        More than 1 on Redis when a worker died holding it and it ran again.
        """
        return self._owner._deliveries(self)

    @property
    def attempts(self) -> int:
        """How many times the request started running (0 while first queued).

        With the pool's ``retry``, a request whose handler failed runs again
        under the same ticket: each run counts. While it waits out a retry's
        backoff, its :attr:`state` is :attr:`TicketState.QUEUED` and its
        :attr:`position` ``None``. On Redis, as its submitter last heard: a run
        is heard of once it has run for a heartbeat (a quarter second), ends, or
        fails and is retried; a run cut short by its worker's death counts.

        .. versionadded:: 0.3
        """
        return self._owner._attempts(self)

    def done(self) -> bool:
        """Return whether the request reached a final state."""
        return self._state is not _QUEUED and self._state is not _RUNNING

    def cancel(self) -> bool:
        """Cancel the request; return ``False`` if it had already finished.

        A queued request leaves the queue at once and never runs. A running
        request's handler is cancelled through its cancel scope; the ticket
        reaches its final state when the handler has exited (normally
        :attr:`TicketState.CANCELLED`; a handler that ignores cancellation and
        returns or raises decides the outcome itself).
        """
        return self._owner._cancel_ticket(self)

    async def result(self) -> R:
        """Wait for the request to finish; return the handler's return value.

        Any number of tasks may wait, before or after completion. Always a
        checkpoint. Cancelling this wait leaves the request alone (compare
        :meth:`WorkerPool.execute`).

        Raises:
            QueueTimeout: The request waited longer than its ``queue_timeout``.
            RequestTimeout: The request exceeded its ``timeout``.
            RequestCancelled: The request was cancelled.
            RequestShed: The request was evicted for a higher-priority one.
            Exception: Whatever the handler raised, unchanged.
        """
        if self._state is _QUEUED or self._state is _RUNNING:
            event = self._event
            if event is None:
                event = self._event = self._owner._new_event()
            await event.wait()
        else:
            await self._owner._checkpoint()
        error = self._error
        if error is not None:
            # The same object for every awaiter, as the handler raised it: its
            # traceback restarts from the handler's each time (rather than grow
            # by each awaiter's frames), and the exception an awaiter happens to
            # be handling does not become its context.
            context = self._error_context
            try:
                raise error.with_traceback(self._error_traceback)
            finally:
                error.__context__ = context
        return self._result  # type: ignore[return-value]

    def _finish(
        self,
        state: TicketState,
        now: float,
        error: BaseException,
    ) -> None:
        """End in *state*, failed with *error* (success is Accounting.succeeded's)."""
        self._state = state
        self.finished_at = now
        self._error = error
        self._error_traceback = error.__traceback__
        self._error_context = error.__context__
        self._scope = None
        if self._event is not None:
            self._event.set()

    def __repr__(self) -> str:
        return (
            f"<queuekeeper.Ticket {self.id} priority={priority_name(self._level)} "
            f"state={self._state.value}>"
        )
