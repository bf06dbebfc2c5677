"""A worker pool on Redis: :class:`RedisQueue`, and each pool's link to it.

A :class:`WorkerPool` given ``queue=RedisQueue(...)`` puts its requests into the
shared queue and its workers take them from it. The pool's side of that is a
:class:`PoolLink`, which the pool drives like any :class:`RequestQueue` (its
workers take requests from it and settle them) plus a few tasks in the pool's task
group:

- the **courier** sends what the pool's tasks ask of the server in batches, one
  call each: new requests (a ``submit`` waits for its batch), results, cancels;
- the **feeder** takes as many requests as the pool has idle workers (never more,
  so an urgent request never waits behind ones another process prefetched), and
  waits on the queue's bell when there are none;
- the **reader** reads the pool's reply stream: a request submitted here started,
  finished or was shed; a request running here was cancelled by its submitter;
- the **heartbeat** renews the leases of the requests this pool holds, and
  refreshes the queue's figures for :meth:`WorkerPool.status`.

Two tickets stand for a request that another process runs: the submitter's,
which learns the outcome from its reply stream, and the worker's own (an
*execution ticket*, which the handler's outcome settles, and which is then sent
back). A request submitted and run in one process has both too.

Every server call runs to its end (see ``_server.complete``): no task of the
pool cancels one in flight.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import json
import math
import uuid
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import attrs
from anyio import (
    CancelScope,
    Event,
    create_task_group,
    current_effective_deadline,
    current_time,
    get_cancelled_exc_class,
    move_on_after,
    sleep,
)
from anyio.lowlevel import checkpoint

from .._errors import (
    PoolClosed,
    QueueFull,
    QueueKeeperError,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
)
from .._memory import MemoryQueue
from .._order import aged_level
from .._priority import priority_name
from .._redis._channel import check_options, fetch_statistics
from .._redis._server import (
    JOINED,
    JOINED_RUNNING,
    MAX_PRIORITY,
    WAIT_BLOCK,
    Policy,
    RedisConnectionError,
    Rings,
    Taken,
    check_priority,
    complete,
)
from .._states import Backpressure, TicketState
from .._status import ChannelStatistics
from .._util import Backend, describe, ki_protected, process_name
from ._admission import expiry_error
from ._checks import check_count
from ._deadlines import wake_at
from ._graves import Graves, read_dead_letters

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    import coredis

    from .._policies import DeadLetter, RateLimit, Retry, WeightedFair
    from .._redis._channel import Serializer
    from ._accounting import Accounting
    from ._deadlines import Deadlines
    from ._ticket import Ticket

__all__ = ["PoolLink", "RedisQueue", "RemoteError"]

Res = TypeVar("Res")

_QUEUED: Final = TicketState.QUEUED
_RUNNING: Final = TicketState.RUNNING
_SUCCEEDED: Final = TicketState.SUCCEEDED
_FAILED: Final = TicketState.FAILED
_CANCELLED: Final = TicketState.CANCELLED
_TIMED_OUT: Final = TicketState.TIMED_OUT
_SHED: Final = TicketState.SHED
_STATES: Final = {state.value: state for state in TicketState}
#: queuekeeper's errors a failure reply may name (QueueFull never is one).
_OWN_ERRORS: Final[dict[str, type[Exception]]] = {
    cls.__qualname__: cls
    for cls in (
        QueueKeeperError,
        PoolClosed,
        RequestCancelled,
        RequestShed,
        QueueTimeout,
        RequestTimeout,
    )
}

#: Most requests (or results) sent in one call.
_BATCH: Final = 1000
#: Longest a reply stream read blocks on the server (it cannot be cancelled).
_READ_BLOCK_MS: Final = 250
#: Longest a running request's submitter is left unaware that it runs, in seconds.
_STARTED_EVERY: Final = 0.25
#: Longest the figures behind ``status()`` are left unrefreshed, in seconds.
_FIGURES_EVERY: Final = 1.0
#: A pool's process counts as alive (in ``status().workers_alive``) until it has
#: missed this many heartbeats.
_ALIVE_BEATS: Final = 3
#: How long a pool's end waits for its last results to reach the server.
_LAST_FLUSH: Final = 5.0
#: How often ``Ticket.positions()`` asks the server, in seconds.
_POSITIONS_EVERY: Final = 0.25
#: Backoff after a failed server call: first and longest wait, in seconds.
_BACKOFF: Final = (0.05, 2.0)


class RemoteError(Exception):
    """A handler in another process raised an exception that has no local twin.

    Exceptions of the ``builtins`` module and queuekeeper's own are raised again
    as themselves (with the message only); any other is raised as this.

    Attributes:
        type_name: The exception's class, as ``module.QualifiedName``.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


@final
class RedisQueue:
    """A handle on the priority queue *name* on a Redis (or Valkey) server.

    Pass it to a :class:`~queuekeeper.WorkerPool` as ``queue=``: every pool, in
    any process on any host, that opens the same *name* on the same server serves
    one queue, with the same priorities (0 to 255), order and size limit.

    Args:
        client: A ``coredis.Redis`` (or cluster) client.
        name: The queue's name (a non-empty str).
        max_size: How many requests may wait (running ones not counted);
            ``None`` for no limit.
        lease: Seconds a taken request stays reserved without a heartbeat
            before it is handed to another worker (a live worker renews it every
            third of that).
        serializer: How requests and results become bytes: JSON by default. A
            serializer using pickle runs code from whoever can write to the
            server when it loads.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).
    """

    __slots__ = ("_server", "lease", "max_size", "name", "serializer")

    def __init__(
        self,
        client: coredis.Redis[Any],
        name: str,
        *,
        max_size: int | None = None,
        lease: float = 30.0,
        serializer: Serializer | None = None,
    ) -> None:
        server, max_size, lease, serializer = check_options(
            client, name, max_size, lease, serializer
        )
        self._server = server
        #: The queue's name.
        self.name: str = name
        #: How many requests may wait; ``None`` for no limit.
        self.max_size: int | None = max_size
        #: Seconds a request stays reserved for its worker without a heartbeat.
        self.lease: float = lease
        #: How requests and results become bytes.
        self.serializer: Serializer = serializer

    async def fetch_statistics(self) -> ChannelStatistics:
        """The queue's figures, from the server (no endpoints, no waiters).

        Cancellation: safe at any point; it only reads.
        """
        return await fetch_statistics(self._server, self.max_size)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter[Any]]:
        """Up to *limit* records of the queue's dead-letter list, oldest first.

        The list is ``qk:{name}:dead`` on the server: the requests that failed
        for good in the pools given ``dead_letter_size``, whatever process they
        ran in, the newest kept. Reading leaves them there (see
        :meth:`take_dead_letters`). A record's ``ticket_id`` is the request's id
        on the queue (``"<pool tag>:<n>"``); its ``request`` is deserialized
        with the queue's ``serializer`` (the bytes if that fails); its ``error`` is
        rebuilt for a built-in exception type (``ValueError``...), else
        ``None``: ``error_type``, ``error_message`` and ``traceback`` always tell
        what was raised; its ``submitted_at`` and ``finished_at`` are Unix time
        on the server's clock.

        Cancellation: safe at any point; it only reads.

        Raises:
            TypeError, ValueError: *limit* is not an int >= 1.

        .. versionadded:: 0.3
        """
        _, _, entries = await self._server.dead(check_count(limit, "limit"), take=False)
        return read_dead_letters(entries, self.serializer)

    async def take_dead_letters(self, limit: int = 100) -> list[DeadLetter[Any]]:
        """Remove and return up to *limit* records of the list, oldest first.

        As :meth:`dead_letters`; each record goes to one taker only.

        Cancellation: the records are taken in one call, which runs to its end:
        a cancel scope's cancellation then returns them (and is raised at the
        next checkpoint); a native asyncio cancellation loses them.

        Raises:
            TypeError, ValueError: *limit* is not an int >= 1.

        .. versionadded:: 0.3
        """
        _, _, entries = await self._server.dead(check_count(limit, "limit"), take=True)
        return read_dead_letters(entries, self.serializer)

    async def dead_letter_counts(self) -> tuple[int, int]:
        """Dead letters the queue's list was given, and those its cap dropped.

        Every process's, since the queue's keys were made.

        Cancellation: safe at any point; it only reads.

        .. versionadded:: 0.3
        """
        made, dropped, _ = await self._server.dead(0, take=False)
        return made, dropped

    def _link(
        self,
        *,
        pool: str,
        workers: int,
        mode: Backpressure,
        accounting: Accounting,
        deadlines: Deadlines,
        new_ticket: Callable[[object, int, float, float, float], Ticket[Any]],
        aging: float | None = None,
        rate_limits: Mapping[int, RateLimit] | None = None,
        scheduling: WeightedFair | None = None,
        retry: Retry | None = None,
        dead_letter_size: int | None = None,
    ) -> PoolLink[Any]:
        """A pool's link to this queue (see :class:`PoolLink`).

        Raises:
            TypeError, ValueError: A level of *rate_limits* or *scheduling* is
                not a priority on Redis (0 to 255).
        """
        return PoolLink(
            self,
            pool=pool,
            workers=workers,
            mode=mode,
            accounting=accounting,
            deadlines=deadlines,
            new_ticket=new_ticket,
            aging=aging,
            policy=Policy.of(rate_limits or {}, scheduling),
            retry=retry,
            dead_letter_size=dead_letter_size,
        )

    def __repr__(self) -> str:
        return f"<queuekeeper.redis.RedisQueue {self.name!r}>"


@attrs.define(eq=False)
class _Put:
    """A request on its way into the queue, and what became of it."""

    ticket: Ticket[Any]
    id: str
    level: int
    payload: bytes
    #: Set when the server answered (or the call failed): an anyio, asyncio or
    #: trio event.
    done: Any
    #: Picked up by the courier: the call may be in flight.
    sent: bool = False
    #: Its sequence number if queued, 0 if refused for room.
    queued: int = 0
    #: The last ring of the room stream when it was refused.
    room: str = "0-0"
    error: BaseException | None = None
    #: Its coalescing key, serialized (see PoolLink.submit), or None.
    key: bytes | None = None
    #: Not queued: it waits for the outcome of a request queued under its key.
    joined: bool = False


_NO_TIMEOUTS: Final = b"[null, null]\n"


def _envelope(
    ticket: Ticket[Any], body: bytes, now: float, *, timeouts: bool = True
) -> bytes:
    """The request as queued: its timeouts (seconds left, or null) and its body."""
    if not timeouts or (
        ticket._deadline == math.inf and ticket._queue_deadline == math.inf
    ):
        return _NO_TIMEOUTS + body
    timeout = None if ticket._deadline == math.inf else ticket._deadline - now
    queue_timeout = (
        None if ticket._queue_deadline == math.inf else ticket._queue_deadline - now
    )
    return json.dumps([timeout, queue_timeout]).encode() + b"\n" + body


def _error_reply(state: TicketState, error: BaseException) -> bytes:
    cls = type(error)
    return b"1" + json.dumps(
        [state.value, cls.__module__, cls.__qualname__, str(error)]
    ).encode("utf-8", "backslashreplace")


def _error_from(reply: bytes) -> tuple[TicketState, BaseException]:
    """The final state and the error of a failure reply (see :func:`_error_reply`)."""
    state, module, qualname, message = json.loads(reply[1:])
    cls: object = None
    if module == "builtins":
        cls = getattr(builtins, qualname, None)
    elif module.startswith("queuekeeper"):
        cls = _OWN_ERRORS.get(qualname)
    error: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            error = cls(message)
        except Exception:  # noqa: BLE001 (a constructor that wants more)
            error = RemoteError(f"{module}.{qualname}", message)
    else:
        error = RemoteError(f"{module}.{qualname}", message)
    return _STATES[state], error


def _native_cancel() -> bool:
    """Whether the cancellation being handled is asyncio's own, not a scope's."""
    return current_effective_deadline() > current_time()


@final
class PoolLink(Generic[Res]):
    """A pool's side of a :class:`RedisQueue` (see the module).

    To the pool's workers it is a :class:`RequestQueue` of execution tickets; to
    the pool, the way its submitted requests go in and their outcomes come back.
    """

    def __init__(  # noqa: PLR0915 (one attribute at a time)
        self,
        queue: RedisQueue,
        *,
        pool: str,
        workers: int,
        mode: Backpressure,
        accounting: Accounting,
        deadlines: Deadlines,
        new_ticket: Callable[[object, int, float, float, float], Ticket[Any]],
        aging: float | None = None,
        policy: Policy | None = None,
        retry: Retry | None = None,
        dead_letter_size: int | None = None,
    ) -> None:
        self.server = server = queue._server
        #: Runs that failed and run again, and requests that failed for good
        #: (see _retries).
        self.graves = Graves(self, retry, dead_letter_size)
        if retry is not None:
            accounting.retries = self.graves
        #: Seconds per level the server ages requests by as this pool takes
        #: them, or None.
        self.aging = aging
        #: The rate limits and weights the server takes by for this pool, or
        #: None (strict priority, no limits).
        self.policy = policy
        #: Per rate-limited level, as of the last heartbeat: requests taken
        #: that had waited for a token, and requests queued waiting for one.
        self.limited: dict[int, tuple[int, int]] = {}
        #: (server time, requests finished) at the positions fetched: the rate
        #: behind eta().
        self.rates: deque[tuple[float, int]] = deque(maxlen=64)
        self.rings = Rings(server)
        self.serializer = queue.serializer
        self.lease = queue.lease
        self.max_size = queue.max_size
        self.pool = pool
        #: How many requests its workers may hold (see resize()).
        self.workers = workers
        #: Whether it ever had workers (then it tells the server when it leaves).
        self.served = workers > 0
        #: Whether its pool has a handler (then it feeds its workers, if any).
        self.serves = workers > 0
        #: Its reserved workers' levels, ascending (see reserve()).
        self.limits: list[int] = []
        self.mode = mode
        self.accounting = accounting
        self.deadlines = deadlines
        self.new_ticket = new_ticket
        self.clock: Callable[[], float] = current_time
        #: The backend's own event class once the pool runs (see Backend).
        self.new_event: Callable[[], Any] = Event
        #: Names this pool on the server: its requests' ids, its leases, and
        #: its reply stream.
        self.tag = uuid.uuid4().hex[:16]
        self.replies_key = server.keys[0][: -len("queue")] + "reply:" + self.tag
        # -- the RequestQueue side, for the workers
        self.on_admit: Callable[[Ticket[Any]], object] | None = None
        self.acknowledges = True
        #: Execution tickets handed to the workers, not yet started.
        #: With aging, they age here as on the server (from when they were
        #: first queued), so that a reserved worker takes one that aged into its
        #: levels (see _wanted).
        self.local: MemoryQueue[Ticket[Any]] = MemoryQueue(
            math.inf, aging=aging, born=_submitted_at if aging is not None else None
        )
        #: Requests this pool holds (handed to its workers and not settled).
        self.held: dict[str, Ticket[Any]] = {}
        self.held_ids: dict[Ticket[Any], str] = {}
        self.deliveries_of: dict[Ticket[Any], int] = {}
        #: Requests the submitter cancelled while this pool held them.
        self.cancelled_ids: set[str] = set()
        # -- the submitting side
        self.pending: dict[str, Ticket[Any]] = {}
        self.pending_ids: dict[Ticket[Any], str] = {}
        # Kept after the ticket settles, as long as the ticket lives.
        self.positions: weakref.WeakKeyDictionary[Ticket[Any], int | None] = (
            weakref.WeakKeyDictionary()
        )
        self.remote_deliveries: weakref.WeakKeyDictionary[Ticket[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        #: Requests submitted here that wait for the outcome of another
        #: process's request of the same key (see submit): counted as
        #: coalesced, not submitted, so their ends are not counted either.
        self.joined: set[Ticket[Any]] = set()
        #: Messages of the reply stream about keyed requests whose put is on its
        #: way, by id: acted on once its answer says whether it joined another.
        self.unanswered: dict[str, list[Mapping[Any, Any]]] = {}
        # -- the courier's work
        self.puts: list[_Put] = []
        self.promotions: list[tuple[str, int]] = []
        self.results: list[tuple[str, int, float, bytes]] = []
        #: Held requests whose submitter was told they are running.
        self.reported: set[str] = set()
        self.releases: list[str] = []
        self.cancels: list[Ticket[Any]] = []
        self.expired: list[Ticket[Any]] = []
        self.wake = Event()
        self.worker_free = Event()
        # -- lifecycle
        self.running = False
        self.feeding = True
        self.intake_closed = False
        self.aborted = False
        #: Set when the pool may end: intake closed, nothing submitted pending.
        self.ended = Event()
        #: The queue's figures, refreshed by the heartbeat: queued, in flight,
        #: queued by level, workers alive by process.
        self.figures: tuple[int, int, Mapping[int, int], Mapping[str, int]] = (
            0,
            0,
            {},
            {},
        )
        #: Requests waiting out a retry's backoff on the server, as of the
        #: last heartbeat.
        self.retrying = 0

    # -- submitting -----------------------------------------------------------------

    def encode(self, ticket: Ticket[Any], *, timeouts: bool = True) -> bytes:
        """The request of *ticket* as it is queued; errors name the request.

        Without *timeouts*, its worker enforces none of the ticket's.

        Raises:
            TypeError, ValueError: The serializer cannot encode the request.
        """
        serializer = self.serializer
        try:
            body = serializer.dumps(ticket.request)
        except (TypeError, ValueError) as exc:
            msg = (
                f"cannot serialize request {describe(ticket.request)} with "
                f"{serializer!r}: {exc}"
            )
            raise type(exc)(msg) from exc
        return _envelope(ticket, body, self.clock(), timeouts=timeouts)

    def encode_key(self, key: object) -> bytes:
        """A coalescing key as the server compares it: serialized.

        Raises:
            TypeError: The serializer cannot encode *key*.
        """
        serializer = self.serializer
        try:
            return serializer.dumps(key)
        except Exception as exc:
            msg = (
                f"key {describe(key)} cannot be a key on Redis: it cannot be "
                f"serialized with {serializer!r} ({exc})"
            )
            raise TypeError(msg) from exc

    async def submit(self, ticket: Ticket[Any], key: bytes | None = None) -> None:
        """Queue *ticket*'s request on the server, under the pool's backpressure.

        With *key* (see :meth:`encode_key`), the request coalesces across
        processes: while a request queued under an equal key is queued or
        running, *ticket* is not queued but waits for that one's outcome
        (:meth:`joined` tells which). Such a request is queued without its
        timeouts: its submitter's sharers keep their own (see ``_coalesce``).

        Cancellation as for :meth:`WorkerPool.submit`: nothing is queued, unless
        it was in the instant the cancellation arrived; then this returns (a cancel
        scope's cancellation is raised at the next checkpoint), or on a native
        asyncio cancellation the request is cancelled and the cancellation raised.

        Raises:
            TypeError, ValueError: The request cannot be serialized.
            QueueFull: The queue is full (``REJECT``, or ``SHED`` with nothing lower).
            PoolClosed: The pool shut down while the request waited for room.
        """
        level = check_priority(ticket._level)
        put = _Put(
            ticket,
            f"{self.tag}:{ticket._seq}",
            level,
            self.encode(ticket, timeouts=key is None),
            self.new_event(),
            key=key,
        )
        while True:
            await self._put(put)
            if put.queued:
                return
            if self.mode is not Backpressure.BLOCK:
                self.accounting.refused(level)
                raise QueueFull(self.max_size or 0, ticket.priority)
            # BLOCK: wait for a ring of the room stream, then try again.
            when = min(ticket._deadline, ticket._queue_deadline)
            with CancelScope(deadline=when) as scope:
                await self.rings.wait(self.server.room, put.room)
            if scope.cancelled_caught or self.clock() >= when:
                # Never entered the queue: it timed out waiting for room.
                self.accounting.queued(ticket)
                self.settle_expired(ticket, self.clock())
                return
            if self.intake_closed:
                msg = f"WorkerPool {self.pool!r} shut down while the request waited"
                raise PoolClosed(msg)
            put = _Put(ticket, put.id, level, put.payload, self.new_event(), key=key)

    async def _put(self, put: _Put) -> None:
        """Hand *put* to the courier (or, before the pool runs, to the server)."""
        ticket = put.ticket
        self.pending[put.id] = ticket
        self.pending_ids[ticket] = put.id
        if not self.running:
            put.sent = True
            try:
                statuses, room = await self._send([put])
            except Exception as exc:
                self._forget(ticket)
                raise self._unreachable(ticket, exc) from exc
            self._answered([put], statuses, room)
        else:
            self.puts.append(put)
            self.wake.set()
            try:
                await put.done.wait()
            except get_cancelled_exc_class():
                if not put.sent:
                    self.puts.remove(put)
                    self._forget(ticket)
                    raise
                with CancelScope(shield=True):
                    await put.done.wait()
                if put.queued:
                    self._admitted(put)
                    if _native_cancel():
                        # asyncio's own cancellation, delivered once: undo the put.
                        self.cancel(ticket)
                        raise
                    # A scope's cancellation: queued it is, and the scope raises
                    # at the caller's next checkpoint.
                    return
                raise
        if put.error is not None:
            raise self._unreachable(ticket, put.error) from put.error
        if put.queued:
            self._admitted(put)

    def _unreachable(self, ticket: Ticket[Any], exc: BaseException) -> BaseException:
        """What ``submit`` raises when the server failed to queue *ticket*."""
        if not isinstance(exc, (RedisConnectionError, OSError)):
            return exc
        return ConnectionError(
            f"request {ticket.id} was not queued: the Redis queue "
            f"{self.server.name!r} is unreachable ({exc})"
        )

    def _admitted(self, put: _Put) -> None:
        ticket = put.ticket
        if put.joined:
            self.accounting.shared(put.level)
        else:
            self.accounting.queued(ticket)
        if ticket._deadline != math.inf or ticket._queue_deadline != math.inf:
            self.deadlines.add(wake_at(ticket), ticket)

    def _answered(
        self, puts: list[_Put], statuses: list[int | None], room: str | None
    ) -> None:
        for put, status in zip(puts, statuses, strict=True):
            put.queued = status or 0
            put.room = room or "0-0"
            if not status:
                self._forget(put.ticket)
            elif status in (JOINED, JOINED_RUNNING):
                put.joined = True
                ticket = put.ticket
                self.joined.add(ticket)
                if status == JOINED_RUNNING:
                    # Its worker told the submitters when it started, if it has.
                    ticket._state = _RUNNING
                    ticket.started_at = self.clock()
            if put.key is not None:
                for fields in self.unanswered.pop(put.id, ()):
                    self._told(fields)
            put.done.set()

    def _forget(self, ticket: Ticket[Any]) -> None:
        self.joined.discard(ticket)
        request_id = self.pending_ids.pop(ticket, None)
        if request_id is not None:
            del self.pending[request_id]
        self.positions.pop(ticket, None)
        if self.intake_closed and not self.pending:
            self.ended.set()

    # -- tickets of requests submitted here ---------------------------------------

    @ki_protected
    def cancel(self, ticket: Ticket[Any]) -> bool:
        """Cancel a request submitted here; the courier tells the server.

        Returns ``False`` if it already finished. The ticket settles when the
        server answers: at once if the request was still queued, else when its
        worker has stopped it.
        """
        # (A ticket is pending until it settles: never done here.)
        self.cancels.append(ticket)
        self.wake.set()
        return True

    @ki_protected
    def promote(self, ticket: Ticket[Any], level: int) -> None:
        """Move a request submitted here up to *level*, if still queued there.

        (Coalescing: a sharer at *level* joined it.) The courier tells the server.
        """
        # Pending: its sharers' key is open only while it is.
        self.promotions.append((self.pending_ids[ticket], level))
        self.wake.set()

    @ki_protected
    def expire(self, ticket: Ticket[Any], now: float) -> None:  # noqa: ARG002
        """A deadline of a queued request submitted here passed: take it out.

        If it is no longer queued, it is running somewhere, and its worker
        enforces its ``timeout``.
        """
        self.expired.append(ticket)
        self.wake.set()

    def settle_expired(self, ticket: Ticket[Any], now: float) -> None:
        """Fail a request submitted here that expired while queued."""
        self._forget(ticket)
        self.accounting.settle(ticket, _TIMED_OUT, now, error=expiry_error(ticket, now))

    def position(self, request: Ticket[Any], priority: int = 0) -> int | None:  # noqa: ARG002
        """The position last fetched for *request* (``None`` if never)."""
        return self.positions.get(request)

    async def fetch_position(self, ticket: Ticket[Any]) -> int | None:
        """Ask the server how many queued requests come before *ticket*'s."""
        # Queued (the ticket asks only then), so pending.
        request_id = self.pending_ids[ticket]
        position, done, now = await self.server.standing(request_id, self.aging)
        self.rates.append((now, done))
        self.positions[ticket] = position
        return position

    async def watch(self, ticket: Ticket[Any]) -> AsyncIterator[int]:
        """*ticket*'s position now and whenever it changes, asking the server."""
        last = None
        while ticket._state is _QUEUED:
            position = await self.fetch_position(ticket)
            if position is None:
                return  # taken (or settled): it left the queue
            if position != last:
                last = position
                yield position
            await sleep(_POSITIONS_EVERY)

    def eta(self, ticket: Ticket[Any]) -> float | None:
        """Seconds until *ticket*'s request starts, from the server's figures."""
        position = self.positions.get(ticket)
        rates = self.rates
        if position is None or ticket._state is not _QUEUED or len(rates) < 2:  # noqa: PLR2004
            return None
        (since, before), (now, done) = rates[0], rates[-1]
        if done <= before:
            return None
        return (position + 1) * (now - since) / (done - before)

    def deliveries(self, ticket: Ticket[Any]) -> int:
        """How many times *ticket*'s request was handed to a worker, as last heard."""
        return self.remote_deliveries.get(ticket, self.deliveries_of.get(ticket, 0))

    # -- the RequestQueue side: execution tickets for the workers ------------------

    # The pool puts its requests in with submit(), and sheds on the server: the
    # protocol's three ways in are never taken.

    def put_nowait(
        self, _request: Ticket[Any], _level: int
    ) -> bool:  # pragma: no cover
        msg = "a Redis-backed pool takes requests with 'await pool.submit(...)'"
        raise TypeError(msg)

    async def put(self, request: Ticket[Any], level: int) -> bool:  # pragma: no cover
        return self.put_nowait(request, level)

    def evict(self, _above: int) -> tuple[Ticket[Any], int] | None:  # pragma: no cover
        return None

    def take_nowait(self) -> Ticket[Any] | None:
        return self.local.take_nowait()

    async def take(self) -> Ticket[Any]:
        return await self.local.take()

    @ki_protected
    def settled(self, request: Ticket[Any]) -> None:
        """A worker is done with *request* (an execution ticket): send it back."""
        request_id = self.held_ids.pop(request)
        del self.held[request_id]
        deliveries = self.deliveries_of.pop(request)
        self.reported.discard(request_id)
        self.worker_free.set()
        cancelled = request_id in self.cancelled_ids
        self.cancelled_ids.discard(request_id)
        if self.aborted and request._state is _CANCELLED and not cancelled:
            # This pool's shutdown stopped it: another worker may run it.
            self.releases.append(request_id)
        elif request._state is _FAILED and self.graves.bury(
            request, request_id, deliveries, cancelled=cancelled
        ):
            pass  # run again, or a dead letter (see Graves)
        else:
            started, finished = request.started_at, request.finished_at
            ran = 0.0 if started is None or finished is None else finished - started
            reply = self._result_reply(request)
            self.results.append((request_id, deliveries, ran, reply))
        self.wake.set()

    def _result_reply(self, ticket: Ticket[Any]) -> bytes:
        state = ticket._state
        if state is _SUCCEEDED:
            try:
                return b"0" + self.serializer.dumps(ticket._result)
            except Exception as exc:  # noqa: BLE001 (sent as the request's failure)
                unsendable = TypeError(
                    f"cannot serialize the result {describe(ticket._result)} with "
                    f"{self.serializer!r}: {exc}"
                )
                return _error_reply(_FAILED, unsendable)
        error = ticket._error
        assert error is not None  # noqa: S101 (a final state other than success)
        return _error_reply(state, error)

    def remove(self, request: Ticket[Any], priority: int) -> bool:
        return self.local.remove(request, priority)

    # -- scaling --------------------------------------------------------------------

    def resize(self, workers: int) -> None:
        """The pool now runs *workers* workers: take that many requests at most.

        The heartbeat tells the server the new count.
        """
        self.workers = workers
        if workers:
            self.served = True
        self.worker_free.set()

    def reserve(self, limits: list[int]) -> None:
        """The pool's workers include reserved ones at these levels (ascending)."""
        self.limits = limits
        self.local.reserve(limits)

    def retire_waiting(self, count: int) -> int:
        return self.local.retire_waiting(count)

    async def take_within(self, limit: int) -> Ticket[Any]:
        return await self.local.take_within(limit)

    def sizes(self) -> tuple[int, Mapping[int, int]]:
        queued, _, by_level, _ = self.figures
        return queued, by_level

    def spread(self) -> tuple[int, Mapping[str, int]]:
        """Requests taken and unfinished, and workers alive by process: the server's.

        As of the last heartbeat; a process counts while its pools' heartbeats
        keep coming (see :data:`_ALIVE_BEATS`).
        """
        _, in_flight, _, alive = self.figures
        return in_flight, alive

    def statistics(self) -> ChannelStatistics:  # pragma: no cover (status() suffices)
        queued, _, by_level, _ = self.figures
        return ChannelStatistics(
            current_size=queued,
            max_size=math.inf if self.max_size is None else self.max_size,
            peak_size=queued,
            size_by_priority=dict(by_level),
            open_send_channels=0,
            open_receive_channels=0,
            tasks_waiting_send=0,
            tasks_waiting_receive=0,
        )

    @ki_protected
    def close(self) -> None:
        """Take no more submissions; end once every request submitted here is done."""
        self.intake_closed = True
        if not self.pending:
            self.ended.set()
        self.worker_free.set()
        self.wake.set()

    @ki_protected
    def drain(self) -> list[Ticket[Any]]:
        """Put back the requests taken for the workers that have not started them.

        Another process may run them: they are not this pool's to cancel.
        Requests handed to a worker that has not resumed yet end here; it then
        settles them, which puts them back (see :meth:`settled`).
        """
        now = self.clock()
        for request_id, ticket in list(self.held.items()):
            # Only for a shutdown in the instant between a take and a start.
            if ticket._state is _QUEUED:  # pragma: no cover
                if self.local.remove(ticket, ticket._level):
                    del self.held[request_id]
                    del self.held_ids[ticket]
                    self.releases.append(request_id)
                else:
                    ticket._finish(_CANCELLED, now, RequestCancelled("pool shut down"))
        self.wake.set()
        return []

    @ki_protected
    def abort(self, now: float) -> None:
        """Shut down without waiting: cancel every request submitted here."""
        self.aborted = True
        self.close()
        for ticket in list(self.pending.values()):
            self.cancels.append(ticket)
            self._end(ticket, _CANCELLED, now, RequestCancelled("pool shut down"))
        self.ended.set()
        self.stop_feeding()
        self.wake.set()

    # -- the pool's tasks -----------------------------------------------------------

    async def serve(self, clock: Callable[[], float]) -> None:
        """The pool's tasks on the server (see the module); runs until cancelled."""
        self.clock = clock
        backend = Backend()
        backend.bind()
        self.new_event = backend.event
        self.running = True
        try:
            async with create_task_group() as task_group:
                task_group.start_soon(self._courier, name=f"{self.pool}-courier")
                task_group.start_soon(self._reader, name=f"{self.pool}-reader")
                task_group.start_soon(self._heartbeat, name=f"{self.pool}-heartbeat")
                if self.serves:
                    task_group.start_soon(self._feeder, name=f"{self.pool}-feeder")
        finally:
            self.running = False
            if self.graves.box is not None:
                self.graves.box.end()
            with CancelScope(shield=True), move_on_after(_LAST_FLUSH):
                try:
                    await self.flush()
                finally:
                    if self.served:
                        await self._leave()

    async def _leave(self) -> None:
        """Tell the server this pool's workers are gone (if it can be told)."""
        with contextlib.suppress(Exception):
            await self.server.beat(self.tag, 0, 0, process_name())

    def stopped_feeding(self) -> bool:
        """Whether :meth:`stop_feeding` was called."""
        return not self.feeding

    def stop_feeding(self) -> None:
        """Hand the workers nothing more (they end once they finished theirs)."""
        self.feeding = False
        self.local.close()
        self.worker_free.set()

    async def _courier(self) -> None:
        backoff = _BACKOFF[0]
        while True:
            await self.wake.wait()
            self.wake = Event()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 (the server is away: try again)
                await sleep(backoff)
                backoff = min(2 * backoff, _BACKOFF[1])
                self.wake.set()
            else:
                backoff = _BACKOFF[0]

    async def flush(self) -> None:
        """Send everything waiting for the server, in as few calls as it takes."""
        await self._send_puts()
        server = self.server
        while self.results:
            batch = self.results[:_BATCH]
            await server.finish(self.tag, batch)
            del self.results[: len(batch)]
        while self.releases:
            await server.release(self.tag, self.releases[0])
            del self.releases[0]
        await self.graves.flush()
        while self.expired:
            ticket = self.expired[0]
            request_id = self.pending_ids.get(ticket)
            if (
                request_id is not None
                and ticket._state is _QUEUED
                and await server.remove(request_id)
            ):
                self.settle_expired(ticket, self.clock())
            del self.expired[0]
        while self.cancels:
            await self._send_cancel(self.cancels[0])
            del self.cancels[0]
        while self.promotions:
            await server.promote(*self.promotions[0])
            del self.promotions[0]

    async def _send_puts(self) -> None:
        while self.puts:
            batch = self.puts[:_BATCH]
            del self.puts[:_BATCH]
            for put in batch:
                put.sent = True
            try:
                statuses, room = await self._send(batch)
            except Exception as exc:
                for put in batch:
                    put.error = exc
                    self._forget(put.ticket)
                    put.done.set()
                raise
            self._answered(batch, statuses, room)

    async def _send(self, batch: list[_Put]) -> tuple[list[int | None], str | None]:
        """Queue *batch* in one call (with a key or more, through ``share``)."""
        shed = self.mode is Backpressure.SHED
        if all(put.key is None for put in batch):
            requests = [(put.id, put.level, put.payload) for put in batch]
            return await self.server.put(requests, self.max_size, shed=shed)
        keyed = [(put.id, put.level, put.payload, put.key) for put in batch]
        for put in batch:
            if put.key is not None:
                # Messages about it wait until its answer is known (_answered).
                self.unanswered[put.id] = []
        try:
            return await self.server.share(keyed, self.max_size, shed=shed)
        except BaseException:
            for put in batch:
                self.unanswered.pop(put.id, None)
            raise

    async def _send_cancel(self, ticket: Ticket[Any]) -> None:
        # After an abort the ticket is settled and forgotten: its id is rebuilt.
        request_id = self.pending_ids.get(ticket, f"{self.tag}:{ticket._seq}")
        if await self.server.cancel(request_id) == 1 and not ticket.done():
            error = RequestCancelled(f"request {ticket.id} was cancelled")
            self._end(ticket, _CANCELLED, self.clock(), error)

    def _end(
        self, ticket: Ticket[Any], state: TicketState, now: float, error: BaseException
    ) -> None:
        """Settle a request submitted here that failed before an outcome came.

        Counted, unless it only waited for another's request (see ``joined``).
        """
        joined = ticket in self.joined
        self._forget(ticket)
        if joined:
            self._fail(ticket, state, now, error)
        else:
            self.accounting.settle(ticket, state, now, error=error)

    async def _feeder(self) -> None:
        server = self.server
        most: int | None = None
        while True:
            wanted = self.workers - len(self.held)
            if self.limits and wanted > 0:
                wanted, most = self._wanted(wanted)
            if not self.feeding:
                return
            if wanted <= 0:
                await self.worker_free.wait()
                self.worker_free = Event()
                continue
            try:
                taken, seen, wait = await self._take(wanted, most)
            except Exception:  # noqa: BLE001 (the server is away: try again)
                await sleep(_BACKOFF[1])
                continue
            if self.stopped_feeding():  # pragma: no cover (a shutdown mid-take)
                for each in taken:
                    self.releases.append(each.id)
                self.wake.set()
                return
            if taken:
                for each in self._keep(taken):
                    self._hand_out(each)
            else:
                # With a wait, only requests waiting for a token are queued: take
                # again when one comes, or sooner on a ring (see enqueue in the
                # library: every put rings while a level waits for a token).
                block = WAIT_BLOCK if wait is None else wait
                await self.rings.wait(server.bell, seen or "0-0", block)
            # Server calls cannot be cancelled in flight: a cancellation lands here.
            await checkpoint()

    def _keep(self, taken: list[Taken]) -> list[Taken]:
        """What a take brought that the workers the pool has now may run.

        A shrink while the take was in flight leaves some over: those (the last,
        the least urgent) go back to the server at once.
        """
        spare = len(self.held) + len(taken) - self.workers
        if spare > 0:  # pragma: no cover (a shrink mid-take: a race)
            for each in taken[-spare:]:
                self.releases.append(each.id)
            self.wake.set()
            return taken[:-spare]
        return taken

    async def _take(
        self, wanted: int, most: int | None
    ) -> tuple[list[Taken], str | None, float | None]:
        """Take up to *wanted* requests: those, the last ring seen, a token's wait."""
        if self.policy is None:
            taken, seen = await self.server.take(
                wanted, self.lease, self.tag, self.aging, most
            )
            return taken, seen, None
        return await self.server.take_by(
            wanted, self.lease, self.tag, self.policy, self.aging, most
        )

    def _wanted(self, free: int) -> tuple[int, int | None]:
        """With reserved workers: how many requests to take, and up to which level.

        *free* is how many more requests the pool may hold. What an idle worker
        may run decides the rest: a request at level *p* may run on an idle
        unreserved worker or on an idle one reserved for *p* or beyond, and the
        requests held but not started yet need such workers too. Returns the
        most requests of any level that fit, with ``None``; or, if none fits, the
        most that fit at the lowest priority that still does (its value, the
        second item); ``(0, None)`` when nothing fits.
        """
        idle_any = 0
        limits: list[int] = []
        for record in self.accounting.workers:
            if record.current is None and not record.retired:
                if record.limit is None:
                    idle_any += 1
                else:
                    limits.append(record.limit)
        limits.sort()
        if self.aging is None:
            waiting = sorted(
                ticket._level
                for ticket in self.held.values()
                if ticket._state is _QUEUED
            )
        else:
            # The level each competes at now: a reserved worker may take it.
            aging, now = self.aging, self.clock()
            waiting = sorted(
                aged_level(ticket._level, now - ticket.submitted_at, aging)
                for ticket in self.held.values()
                if ticket._state is _QUEUED
            )
        idle = idle_any + len(limits)
        room = min(free, idle - len(waiting))
        best: tuple[int, int | None] = (0, None)
        for level in sorted(set(limits)):
            if room > 0:
                # Requests up to this level fit as many times as room says.
                best = (room, max(-1, min(level, MAX_PRIORITY)))
            # Requests above it need the idle workers not reserved up to it.
            able = idle - bisect.bisect_right(limits, level)
            above = len(waiting) - bisect.bisect_right(waiting, level)
            room = min(room, able - above)
        if room > 0:
            return room, None
        return best

    def _hand_out(self, taken: Taken) -> None:
        """Make an execution ticket for a request taken, for an idle worker."""
        now = self.clock()
        try:
            header, _, body = taken.payload.partition(b"\n")
            timeout, queue_timeout = json.loads(header)
            request = self.serializer.loads(body)
        except Exception as exc:  # noqa: BLE001 (sent back as its failure)
            error = ValueError(
                f"cannot deserialize request {taken.id} ({len(taken.payload)} bytes) "
                f"with {self.serializer!r}: {exc}"
            )
            reply = _error_reply(_FAILED, error)
            self.results.append((taken.id, taken.deliveries, 0.0, reply))
            self.wake.set()
            return
        submitted_at = now - taken.age
        ticket = self.new_ticket(
            request,
            taken.priority,
            submitted_at,
            math.inf if timeout is None else submitted_at + timeout,
            math.inf if queue_timeout is None else submitted_at + queue_timeout,
        )
        self.held[taken.id] = ticket
        self.held_ids[ticket] = taken.id
        self.deliveries_of[ticket] = taken.deliveries
        self.local.put_nowait(ticket, taken.priority)

    async def _reader(self) -> None:
        from coredis.tokens import PureToken  # noqa: PLC0415 (after _server's check)

        client = self.server.client
        key = self.replies_key
        last = "0-0"

        async def read() -> Any:  # noqa: ANN401
            return await client.xread({key: last}, count=_BATCH, block=_READ_BLOCK_MS)

        async def trim() -> Any:  # noqa: ANN401
            return await client.xtrim(key, PureToken.MINID, last)  # type: ignore[arg-type]

        while True:
            try:
                reply = await complete(read)
            except Exception:  # noqa: BLE001 (the server is away: try again)
                await sleep(_BACKOFF[1])
                continue
            # The read could not be cancelled in flight: a cancellation lands here.
            await checkpoint()
            if not reply:
                continue
            for entry in next(iter(reply.values())):
                self._told(entry.field_values)
                last = entry.identifier.decode()
            with contextlib.suppress(Exception):  # trimmed next time
                await complete(trim)

    def _told(self, fields: Mapping[Any, Any]) -> None:  # noqa: C901 (one per kind)
        """Act on a message of the reply stream."""
        kind = fields[b"k"]
        request_id = fields[b"i"].decode()
        waiting = self.unanswered.get(request_id)
        if waiting is not None:
            waiting.append(fields)
            return
        now = self.clock()
        if kind == b"x":
            self._cancel_held(request_id, now)
            return
        ticket = self.pending.get(request_id)
        # A second outcome of a request run twice (delivery is at least once).
        if ticket is None:  # pragma: no cover
            return
        if kind == b"a":
            self.graves.again(ticket, int(fields[b"n"]))
            return
        if kind != b"s":
            # Started (its worker says how long ago) by its latest delivery.
            self.remote_deliveries[ticket] = int(fields[b"n"])
            ticket.started_at = now - int(fields[b"t"]) / 1000
        if kind == b"r":
            ticket._state = _RUNNING
            self.positions.pop(ticket, None)
        elif kind == b"d":
            self._forget(ticket)
            value = fields[b"v"]
            if value[:1] == b"0":
                try:
                    result = self.serializer.loads(value[1:])
                except Exception as exc:  # noqa: BLE001 (the request's failure)
                    self._fail(ticket, _FAILED, now, _unreadable(ticket, exc))
                else:
                    self._succeed(ticket, now, result)
            else:
                state, error = _error_from(value)
                self._fail(ticket, state, now, error)
        else:  # b"s"
            level = int(fields[b"p"])
            error = RequestShed(
                f"request {ticket.id} was shed for a request at priority "
                f"{priority_name(level)}"
            )
            self._end(ticket, _SHED, now, error)

    def _succeed(self, ticket: Ticket[Any], now: float, result: object) -> None:
        if ticket._deadline_entry is not None:
            self.deadlines.clear(ticket)
        ticket._state = _SUCCEEDED
        ticket.finished_at = now
        ticket._result = result
        if ticket._event is not None:
            ticket._event.set()

    def _fail(
        self, ticket: Ticket[Any], state: TicketState, now: float, error: BaseException
    ) -> None:
        if ticket._deadline_entry is not None:
            self.deadlines.clear(ticket)
        ticket._finish(state, now, error)

    def _cancel_held(self, request_id: str, now: float) -> None:
        """The submitter cancelled a request this pool holds: stop it."""
        ticket = self.held.get(request_id)
        if ticket is None:
            return
        self.cancelled_ids.add(request_id)
        # Taken for a worker that has not started it: only in the instant
        # between a take and a start.
        if ticket._state is _QUEUED:  # pragma: no cover
            removed = self.local.remove(ticket, ticket._level)
            error = RequestCancelled(f"request {request_id} was cancelled")
            self.accounting.settle(ticket, _CANCELLED, now, error=error)
            if removed:
                self.settled(ticket)  # else its worker settles it, seeing it done
        else:  # running: a running ticket has its scope
            ticket._cancelled_at = now
            cast("CancelScope", ticket._scope).cancel()

    async def _heartbeat(self) -> None:
        # Every tick: tell the submitters of requests that started since the last
        # one (a request done sooner goes without); every third of a lease (or
        # sooner): renew the leases; every second (or sooner): the figures.
        renew_every = min(self.lease / 3, _FIGURES_EVERY)
        process = process_name()
        last = -math.inf
        while True:
            try:
                await self._report_started()
                if self.clock() - last >= renew_every:
                    last = self.clock()
                    if self.held:
                        await self.server.renew(self.lease, self.tag, list(self.held))
                    # A pool without workers is not counted among the live ones.
                    alive = _ALIVE_BEATS * renew_every if self.workers else 0.0
                    (
                        queued,
                        inflight,
                        by_level,
                        processes,
                        self.retrying,
                    ) = await self.server.beat(self.tag, alive, self.workers, process)
                    self.figures = (
                        queued,
                        inflight,
                        dict(sorted(by_level.items())),
                        dict(sorted(processes.items())),
                    )
                    if self.policy is not None and self.policy.limits:
                        self.limited = await self.server.limited(self.policy)
            except Exception:  # noqa: BLE001, S110 (the server is away: next time)
                pass
            await sleep(min(_STARTED_EVERY, renew_every))

    async def _report_started(self) -> None:
        now = self.clock()
        running = [
            (request_id, self.deliveries_of[ticket], now - ticket.started_at)
            for request_id, ticket in self.held.items()
            if ticket.started_at is not None and request_id not in self.reported
        ]
        if running:
            await self.server.started(self.tag, running)
            self.reported.update(request_id for request_id, _, _ in running)


def _unreadable(ticket: Ticket[Any], exc: Exception) -> ValueError:
    error = ValueError(f"cannot deserialize the result of request {ticket.id}: {exc}")
    error.__cause__ = exc
    return error


if TYPE_CHECKING:  # checked by mypy: PoolLink implements the protocol
    from .._queue import RequestQueue

    def _implements(link: PoolLink[Any]) -> RequestQueue[Ticket[Any]]:
        return link


def _submitted_at(ticket: Ticket[Any]) -> float:
    """When *ticket*'s request was first queued: its arrival time for aging."""
    return ticket.submitted_at
