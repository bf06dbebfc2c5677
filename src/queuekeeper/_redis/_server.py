"""The queue's operations on the server: the Lua library in ``library.lua``.

:class:`ServerQueue` calls the library's functions for one queue, loading the
library the first time a server does not have it. No call is ever cancelled in
flight: coredis loses a connection-pool slot for each command cancelled in flight
(and then waits forever for a connection), and a cancelled caller could not tell
whether a take or a put happened. Each call therefore runs to its end (see
:func:`complete`), and a cancellation takes effect at the caller's next checkpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import re
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import attrs
from anyio import (
    CancelScope,
    Event,
    create_task_group,
    current_effective_deadline,
    current_time,
    get_cancelled_exc_class,
)

try:
    from coredis.exceptions import ConnectionError as RedisConnectionError
    from coredis.exceptions import NoScriptError, ResponseError
except ImportError as exc:
    msg = "the Redis queue needs coredis: pip install 'queuekeeper[redis]'"
    raise ImportError(msg) from exc

from .._util import describe

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    import coredis

    from .._policies import RateLimit, WeightedFair

__all__ = [
    "DIGEST",
    "JOINED",
    "JOINED_RUNNING",
    "MAX_PRIORITY",
    "WAIT_BLOCK",
    "Batcher",
    "Policy",
    "RedisConnectionError",
    "Rings",
    "ServerQueue",
    "Taken",
    "complete",
]

R = TypeVar("R")
A = TypeVar("A")

#: Priorities on Redis are 0 to 255: with a 40-bit sequence number, a score stays
#: an exact integer in a double.
MAX_PRIORITY: Final = 255
_TEMPLATE: Final = (
    importlib.resources.files(__package__).joinpath("library.lua").read_text("utf-8")
)
#: Names the library's text: the library and its functions are named after it, so
#: a changed library loads beside an older one already on the server (processes of
#: two releases can share a server), never mistaken for it.
DIGEST: Final = hashlib.sha256(_TEMPLATE.encode()).hexdigest()[:16]
_LIBRARY: Final = f"queuekeeper_{DIGEST}"
_PREFIX: Final = f"qk_{DIGEST}_"
_SOURCE: Final = _TEMPLATE.replace("QK_LIBRARY", _LIBRARY).replace(
    "'QK_", f"'{_PREFIX}"
)
#: What :meth:`ServerQueue.share` returns for a request that joined a queued one.
JOINED: Final = -2
#: ... and for one that joined a request already taken by a worker.
JOINED_RUNNING: Final = -3
#: Longest a wait for a ring blocks on the server, in seconds. The wait cannot be
#: cancelled in flight (see the module), so a cancelled or closed waiter ends
#: within this; each idle waiter costs a few commands a second.
WAIT_BLOCK: Final = 0.25
#: The same functions as one script, for servers without Redis Functions (before
#: Redis 7, or with FUNCTION and FCALL disabled): called with EVALSHA, the
#: function's name first among the arguments.
_SCRIPT: Final = (
    "local FUNCTIONS = {}\n"
    + re.sub(
        r"^redis\.register_function(?:\('QK_(\w+)', (\w+)\)|\{function_name = "
        r"'QK_(\w+)', callback = (\w+),.*\})$",
        lambda match: f"FUNCTIONS['{match[1] or match[3]}'] = {match[2] or match[4]}",
        _TEMPLATE.split("\n", 1)[1],
        flags=re.MULTILINE,
    )
    + "\nlocal name = table.remove(ARGV, 1)\nreturn FUNCTIONS[name](KEYS, ARGV)\n"
)
_SCRIPT_SHA: Final = hashlib.sha1(_SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis's)
_PARTS: Final = (
    "queue",
    "items",
    "meta",
    "inflight",
    "holds",
    "bell",
    "room",
    "born",
    "alive",
    "shares",
    "buckets",
    "fair",
    "delayed",
    "dead",
)


async def _to_the_end(
    call: Callable[[], Awaitable[R]],
) -> tuple[tuple[bool, Any], BaseException | None]:
    """Run *call* to its end, shielded; its outcome, and a native cancellation.

    The outcome is ``(True, value)`` or ``(False, exception)``. The second item is
    the native asyncio cancellation that arrived meanwhile (see :func:`complete`),
    for the caller to raise once it has dealt with the outcome.
    """
    outcome: list[tuple[bool, Any]] = []

    async def run() -> None:
        with CancelScope(shield=True):
            try:
                outcome.append((True, await call()))
            except BaseException as exc:  # noqa: BLE001 (raised in the caller)
                outcome.append((False, exc))

    if not _on_asyncio():
        await run()
        return outcome[0], None
    try:
        async with create_task_group() as task_group:
            task_group.start_soon(run)
    except get_cancelled_exc_class() as exc:
        if current_effective_deadline() > current_time():
            return outcome[0], exc
        # A cancel scope's: raised again at the next checkpoint.
    return outcome[0], None


async def complete(call: Callable[[], Awaitable[R]]) -> R:
    """Run *call* to its end whatever cancels the caller meanwhile; its outcome.

    A cancel scope is held off by a shield: the call returns, and the scope's
    cancellation is raised at the caller's next checkpoint. A native asyncio
    cancellation (``task.cancel()``, ``asyncio.timeout()``, ``wait_for()``) is
    delivered once and cannot wait for a checkpoint: on asyncio the call runs in
    a child task, which a task group waits for, and the cancellation is raised
    when it is done (what the call did stands: see :class:`Batcher` for calls
    that must be undone then).
    """
    (ok, value), native = await _to_the_end(call)
    if native is not None:
        raise native
    if ok:
        return cast("R", value)
    raise value


@final
class _Call(Generic[A, R]):
    """One caller's part of a batch: its argument, and then its outcome."""

    __slots__ = ("arg", "lead", "outcome", "sent", "wake")

    def __init__(self, arg: A) -> None:
        self.arg = arg
        #: Set when the outcome is in, or when this caller is to lead.
        self.wake = Event()
        #: Its batch's call is under way (or done).
        self.sent = False
        #: Handed the lead: it sends the next batch (its own included).
        self.lead = False
        self.outcome: tuple[bool, Any] | None = None


@final
class Batcher(Generic[A, R]):
    """Sends the calls of concurrent tasks to the server in batches of one call.

    A task that finds no batch under way sends one, with every call waiting then
    (its own among them), up to *limit*; the calls that arrive meanwhile wait, and
    the first of them sends the next batch when this one is done. No task runs in
    the background, and every caller gets its own outcome. *call* takes the
    arguments of a batch and returns one value for each; an error it raises is
    raised to every caller of the batch.

    Cancellation: as :func:`complete` for each caller. A call not yet sent is
    withdrawn; one under way runs to its end; then a cancel scope's cancellation
    takes effect at the caller's next checkpoint (the caller gets its outcome),
    and a native asyncio cancellation is raised after *undo* reversed the
    caller's part.
    """

    __slots__ = ("call", "leading", "limit", "undo", "waiting")

    def __init__(
        self,
        call: Callable[[list[A]], Awaitable[Sequence[R]]],
        undo: Callable[[A, R], Awaitable[object]],
        limit: int = 1000,
    ) -> None:
        self.call: Callable[[list[A]], Awaitable[Sequence[R]]] = call
        self.undo: Callable[[A, R], Awaitable[object]] = undo
        self.limit: int = limit
        self.waiting: list[_Call[A, R]] = []
        self.leading: bool = False

    async def __call__(self, arg: A) -> R:
        """Send *arg* in the next batch; its outcome."""
        entry: _Call[A, R] = _Call(arg)
        self.waiting.append(entry)
        if self.leading:
            try:
                await entry.wake.wait()
            except get_cancelled_exc_class() as exc:
                if not entry.sent:
                    self.waiting.remove(entry)
                    if entry.lead:
                        self._hand_on()
                    raise
                with CancelScope(shield=True):
                    await entry.wake.wait()
                native = exc if current_effective_deadline() > current_time() else None
                return await self._outcome(entry, native)
            if entry.outcome is not None:
                return await self._outcome(entry, None)
        # Ours to send: no batch is under way, or the last one handed us the lead.
        self.leading = True
        batch = self.waiting[: self.limit]
        del self.waiting[: len(batch)]
        for each in batch:
            each.sent = True
        try:
            (ok, values), native = await _to_the_end(
                lambda: self.call([each.arg for each in batch])
            )
        finally:
            self._hand_on()
        for index, each in enumerate(batch):
            each.outcome = (True, values[index]) if ok else (False, values)
            if each is not entry:
                each.wake.set()
        return await self._outcome(entry, native)

    def _hand_on(self) -> None:
        """The batch under way is done: the first caller waiting sends the next."""
        if self.waiting:
            first = self.waiting[0]
            first.lead = True
            first.wake.set()
        else:
            self.leading = False

    async def _outcome(self, entry: _Call[A, R], native: BaseException | None) -> R:
        assert entry.outcome is not None  # noqa: S101 (its batch is done)
        ok, value = entry.outcome
        if native is not None:
            if ok:
                await complete(lambda: self.undo(entry.arg, value))
            raise native
        if ok:
            return cast("R", value)
        raise value


def _taken(reply: list[Any]) -> list[Taken]:
    """The requests of a take's reply (after its first field)."""
    taken = []
    for i in range(1, len(reply), 5):
        score = int(reply[i + 2])
        taken.append(
            Taken(
                reply[i].decode(),
                reply[i + 1],
                score >> 40,
                int(reply[i + 3]),
                score,
                int(reply[i + 4]) / 1000,
            )
        )
    return taken


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def check_priority(priority: object) -> int:
    """Return *priority* (an int or a Priority) as an int from 0 to 255.

    Raises:
        TypeError: It is not an int (``bool`` is not either); the message names it.
        ValueError: It is outside 0 to 255; the message names it.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        msg = (
            f"priority must be an int from 0 to {MAX_PRIORITY} on Redis, "
            f"not {describe(priority)} ({type(priority).__name__})"
        )
        raise TypeError(msg)
    if not 0 <= priority <= MAX_PRIORITY:
        msg = (
            f"priority must be an int from 0 to {MAX_PRIORITY} on Redis, "
            f"not {describe(priority)}"
        )
        raise ValueError(msg)
    return int(priority)


@final
@attrs.frozen
class Policy:
    """Rate limits and weights as :meth:`ServerQueue.take_by` sends them."""

    #: ``"<level> <interval in us> <burst> ..."``: a token bucket per level.
    limits: str = ""
    #: ``"<default> <level> <weight> ..."``; ``""`` for strict priority.
    weights: str = ""

    @classmethod
    def of(
        cls, limits: Mapping[int, RateLimit], scheduling: WeightedFair | None
    ) -> Policy | None:
        """The policy of a pool's settings; ``None`` if it has neither.

        Raises:
            TypeError, ValueError: A level is not a priority on Redis (0 to 255).
        """
        if not limits and scheduling is None:
            return None
        spec = " ".join(
            f"{check_priority(level)} {limit.interval * 1e6!r} {limit.burst}"
            for level, limit in sorted(limits.items())
        )
        weights = ""
        if scheduling is not None:
            weights = " ".join(
                [repr(scheduling.default)]
                + [
                    f"{check_priority(level)} {weight!r}"
                    for level, weight in scheduling.weights.items()
                ]
            )
        return cls(spec, weights)


@final
@attrs.frozen
class Taken:
    """A request taken from the queue, under a lease."""

    id: str
    payload: bytes
    priority: int
    #: How many times it has been handed to a worker, this time included.
    deliveries: int
    #: Its place in the queue (priority * 2**40 + sequence number).
    score: int = 0
    #: Seconds since it was first queued, by the server's clock.
    age: float = 0.0


@final
class ServerQueue:
    """One queue's keys on one server, and the library's functions over them.

    All keys share the hash tag ``{name}``: one slot on Redis Cluster.
    """

    __slots__ = ("client", "keys", "name", "scripts")

    def __init__(self, client: coredis.Redis[Any], name: str) -> None:
        if not name:
            msg = f"name must be a non-empty str, not {name!r}"
            raise ValueError(msg)
        self.client: coredis.Redis[Any] = client
        self.name: str = name
        #: Whether the server lacks Redis Functions, found at the first call.
        self.scripts: bool = False
        tag = name.replace("{", "").replace("}", "")
        self.keys: tuple[str, ...] = tuple(f"qk:{{{tag}}}:{part}" for part in _PARTS)

    @property
    def bell(self) -> str:
        """The stream rung when a request is queued first (ahead of all others)."""
        return self.keys[5]

    @property
    def room(self) -> str:
        """The stream rung when the queue goes from full to not full."""
        return self.keys[6]

    async def _call(self, function: str, args: Sequence[object]) -> Any:  # noqa: ANN401
        values = [str(arg) if isinstance(arg, int) else arg for arg in args]
        script_args: list[Any] = [function, *values]

        async def call() -> Any:  # noqa: ANN401
            if not self.scripts:
                try:
                    return await self.client.fcall(
                        _PREFIX + function, self.keys, values
                    )
                except ResponseError as exc:
                    if "Function not found" in str(exc):
                        await self._load()
                    elif "unknown command" in str(exc).lower():
                        self.scripts = True  # no Redis Functions: EVALSHA it is
                    else:
                        raise
                if not self.scripts:
                    return await self.client.fcall(
                        _PREFIX + function, self.keys, values
                    )
            try:
                return await self.client.evalsha(_SCRIPT_SHA, self.keys, script_args)
            except NoScriptError:
                await self.client.script_load(_SCRIPT)
            return await self.client.evalsha(_SCRIPT_SHA, self.keys, script_args)

        return await complete(call)

    async def load(self) -> None:
        """Load the library on the server, unless it is there already."""
        await complete(self._load)

    async def _load(self) -> None:
        try:
            await self.client.function_load(_SOURCE)
        except ResponseError as exc:
            if "unknown command" in str(exc).lower():
                self.scripts = True  # FCALL without FUNCTION: EVALSHA it is
            elif f"'{_LIBRARY}' already exists" not in str(exc):
                raise

    async def put(
        self,
        requests: Sequence[tuple[str, int, bytes]],
        max_size: int | None,
        *,
        shed: bool = False,
    ) -> tuple[list[int | None], str | None]:
        """Queue *requests* (id, priority, payload) in order, in one call.

        With *shed*, a request that finds the queue full evicts the newest
        request of the lowest level below its own and takes its place (the
        victim's submitter, if a pool, is told).

        Returns, for each, its sequence number, or ``None`` if there was no room
        for it (nor then for any after it: a batch never jumps its own queue);
        and, if one found no room, the last ring of :attr:`room` (wait for a
        later one), else ``None``.

        Raises:
            ValueError: A request's id is queued or taken already (ids are
                made unique by the caller: this is a bug; the batch's other
                requests were queued or refused as usual).
        """
        args: list[object] = [-1 if max_size is None else max_size, int(shed)]
        for request_id, priority, payload in requests:
            args += (request_id, check_priority(priority), payload)

        reply = await self._call("put", args)
        statuses, rest = reply[: len(requests)], reply[len(requests) :]
        for (request_id, _, _), status in zip(requests, statuses, strict=True):
            if status == -1:
                msg = f"request id {request_id!r} is in the queue already"
                raise ValueError(msg)
        room = rest[0].decode() if rest else None
        return [int(status) or None for status in statuses], room

    async def share(
        self,
        requests: Sequence[tuple[str, int, bytes, bytes | None]],
        max_size: int | None,
        *,
        shed: bool = False,
    ) -> tuple[list[int | None], str | None]:
        """:meth:`put` for requests (id, priority, payload, key) some with a key.

        While a request queued under an equal *key* is queued or taken, one with
        that key is not queued: it waits for that request's outcome (its
        submitter is told of it under this one's id), and that request moves up
        to its priority if that is better. Its status is then :data:`JOINED`, or
        :data:`JOINED_RUNNING` if that request is taken; the others are as
        :meth:`put` returns them. A join takes no room.

        Raises:
            ValueError: A request's id is queued or taken already.
        """
        args: list[object] = [-1 if max_size is None else max_size, int(shed)]
        for request_id, priority, payload, key in requests:
            args += (request_id, check_priority(priority), payload, key or b"")
        reply = await self._call("share", args)
        statuses, rest = reply[: len(requests)], reply[len(requests) :]
        for request, status in zip(requests, statuses, strict=True):
            if status == -1:
                msg = f"request id {request[0]!r} is in the queue already"
                raise ValueError(msg)
        room = rest[0].decode() if rest else None
        return [int(status) or None for status in statuses], room

    async def promote(self, request_id: str, priority: int) -> bool:
        """Move a queued request (or the one it waits for) up to *priority*.

        To the end of that level, if that is better than its own; ``False`` if
        it is not queued, or not below *priority*.
        """
        return bool(await self._call("promote", [request_id, priority]))

    async def take(
        self,
        count: int,
        lease: float,
        token: str,
        aging: float | None = None,
        most: int | None = None,
    ) -> tuple[list[Taken], str | None]:
        """Take up to *count* requests, lowest priority value first, FIFO within one.

        Each is leased to *token* for *lease* seconds; requests whose lease ran out
        are first put back where they were. With nothing to take, also returns the
        last ring of :attr:`bell` (wait for a later one), else ``None``. With
        *aging* (seconds per level), a request competes one level better for
        every *aging* seconds since it was first queued (the server's clock),
        never past 1, and ties go to the one queued first. With *most*, only
        requests at that priority or above (a lower or equal value; with
        *aging*, the level a request has aged to).
        """
        args: list[object] = [count, round(lease * 1000), token]
        if aging is not None or most is not None:
            args.append(0 if aging is None else max(1, round(aging * 1000)))
        if most is not None:
            args.append(most)
        reply = await self._call("take", args)
        if len(reply) == 1:
            return [], reply[0].decode()
        return _taken(reply), None

    async def take_by(
        self,
        count: int,
        lease: float,
        token: str,
        policy: Policy,
        aging: float | None = None,
        most: int | None = None,
    ) -> tuple[list[Taken], str | None, float | None]:
        """:meth:`take` under rate limits and/or weighted sharing (*policy*).

        A level whose token bucket is empty is skipped (the others are taken
        as if it had nothing queued); with weights, the levels share what is
        taken by weight (see ``pop_policy`` in the library). Returns the
        requests taken; with none, the last ring of :attr:`bell` and, if a
        level waits for a token, the seconds until one comes (else ``None``).
        """
        args: list[object] = [count, round(lease * 1000), token]
        args += (
            0 if aging is None else max(1, round(aging * 1000)),
            "" if most is None else most,
            policy.limits,
            policy.weights,
        )
        reply = await self._call("take", args)
        if len(reply) > 2:  # noqa: PLR2004 (a ring and a wait at most)
            return _taken(reply), None, None
        wait = int(reply[1]) / 1000 if len(reply) == 2 else None  # noqa: PLR2004
        return [], reply[0].decode(), wait

    async def limited(self, policy: Policy) -> dict[int, tuple[int, int]]:
        """Rate-limit figures per rate-limited level of *policy*.

        For each: requests taken that had waited for a token, and requests
        queued that wait for one now (beyond the tokens its bucket holds).
        """
        reply = await self._call("limited", [policy.limits])
        return {
            int(reply[i]): (int(reply[i + 1]), int(reply[i + 2]))
            for i in range(0, len(reply), 3)
        }

    async def restore(self, taken: Taken) -> bool:
        """Queue a request taken for good again, at its place (``False``: id in use)."""
        args = [taken.id, taken.score, taken.payload, taken.deliveries]
        return bool(await self._call("restore", args))

    async def wait(self, stream: str, after: str, block: float) -> bool:
        """Wait up to *block* seconds for a ring of *stream* later than *after*.

        ``True`` if one came. The wait is shielded (see the module), so a
        cancellation takes effect when it ends: keep *block* short.
        """
        reply = await complete(
            lambda: self.client.xread(
                {stream: after}, count=1, block=max(1, round(block * 1000))
            )
        )
        return bool(reply)

    async def ack(self, token: str, ids: Sequence[str]) -> int:
        """Finish requests taken under *token*; how many were still held by it."""
        return int(await self._call("ack", [token, *ids]))

    async def finish(
        self, token: str, replies: Sequence[tuple[str, int, float, bytes]]
    ) -> int:
        """Finish requests taken under *token*, sending each submitter its reply.

        Each reply: the request's id, its delivery count, how long it ran (seconds)
        and the outcome. Returns how many were still held by *token* (a stale one
        changes nothing).
        """
        args: list[object] = [token]
        for request_id, deliveries, ran, reply in replies:
            args += (request_id, deliveries, round(ran * 1000), reply)
        return int(await self._call("finish", args))

    async def started(
        self, token: str, running: Sequence[tuple[str, int, float]]
    ) -> int:
        """Tell the submitters of requests held by *token* that they are running.

        Each: the request's id, its delivery count, how long it has run (seconds).
        """
        args: list[object] = [token]
        for request_id, deliveries, ran in running:
            args += (request_id, deliveries, round(ran * 1000))
        return int(await self._call("started", args))

    async def cancel(self, request_id: str) -> int:
        """Cancel a request; what it was: 1 queued (now gone), 2 taken, 0 neither.

        The holder of a taken request, if a pool, is told on its reply stream.
        """
        return int(await self._call("cancel", [request_id]))

    async def renew(self, lease: float, token: str, ids: Sequence[str]) -> int:
        """Extend the leases of requests held by *token*; how many were renewed."""
        return int(await self._call("renew", [round(lease * 1000), token, *ids]))

    async def release(self, token: str, request_id: str) -> bool:
        """Put a request held by *token* back where it was; ``False`` if not held."""
        return bool(await self._call("release", [token, request_id]))

    async def remove(self, request_id: str) -> bool:
        """Take a queued request out; ``False`` if it was not queued."""
        return bool(await self._call("remove", [request_id]))

    async def evict(self, above: int) -> Taken | None:
        """Remove the newest request of the lowest level, if that level is > *above*.

        Returned with ``deliveries`` 0: it never reached a worker.
        """
        reply = await self._call("evict", [above])
        if not reply:
            return None
        return Taken(reply[0].decode(), reply[1], int(reply[2]), 0)

    async def sizes(self) -> tuple[int, int, int, dict[int, int]]:
        """Queued, taken and unfinished, most ever queued, and queued by level."""
        reply = await self._call("sizes", [])
        by_level = {int(reply[i]): int(reply[i + 1]) for i in range(3, len(reply), 2)}
        return int(reply[0]), int(reply[1]), int(reply[2]), by_level

    async def retry(self, token: str, retries: Sequence[tuple[str, float]]) -> int:
        """Run requests held by *token* again, each after its delay (seconds).

        Each leaves its lease and waits on the server, which queues it again at
        its level (behind the requests queued there) at the first take after
        its delay; its submitter is told. Returns how many were still held.
        """
        args: list[object] = [token]
        for request_id, delay in retries:
            args += (request_id, max(0, round(delay * 1000)))
        return int(await self._call("retry", args))

    async def bury(
        self, token: str, cap: int, reply: tuple[str, int, float, bytes], record: bytes
    ) -> tuple[bool, int]:
        """:meth:`finish` one request held by *token*, and keep it as a dead letter.

        *record* heads its entry in the dead-letter list, which keeps the newest
        *cap*. Returns whether it was still held, and how many old records the
        cap dropped.
        """
        request_id, deliveries, ran, outcome = reply
        args = [token, cap, request_id, deliveries, round(ran * 1000), outcome, record]
        done, dropped = await self._call("bury", args)
        return bool(done), int(dropped)

    async def dead(self, count: int, *, take: bool) -> tuple[int, int, list[bytes]]:
        """Dead letters made and dropped so far, and up to *count* records.

        Oldest first; with *take*, the records returned leave the list.
        """
        reply = await self._call("dead", [count, int(take)])
        return int(reply[0]), int(reply[1]), list(reply[2:])

    async def beat(
        self, token: str, alive: float, workers: int, process: str
    ) -> tuple[int, int, dict[int, int], dict[str, int], int]:
        """A heartbeat of pool *token*, with *workers* workers in *process*.

        The pool counts as alive for *alive* seconds more (0: it left). Returns
        queued, taken and unfinished, queued by level, the workers of each
        process whose pools are alive (summed over its pools), and how many
        requests wait to be retried.
        """
        sizes, live, retries = await self._call(
            "beat", [token, round(alive * 1000), workers, process]
        )
        by_level = {int(sizes[i]): int(sizes[i + 1]) for i in range(3, len(sizes), 2)}
        processes: dict[str, int] = {}
        for i in range(0, len(live), 2):
            name = live[i].decode()
            processes[name] = processes.get(name, 0) + int(live[i + 1])
        return int(sizes[0]), int(sizes[1]), by_level, processes, int(retries[0])

    async def standing(
        self, request_id: str, aging: float | None
    ) -> tuple[int | None, int, float]:
        """Where *request_id* stands, as the server sees it, in one call.

        Returns its position (``None`` if it is not queued; with *aging*, by
        aged level as :meth:`take` orders them, O(levels * log n)), how many
        taken requests have been finished, and the server's clock (seconds).
        """
        aging_ms = 0 if aging is None else max(1, round(aging * 1000))
        reply = await self._call("position", [request_id, aging_ms])
        found = int(reply[0])
        return (None if found < 0 else found), int(reply[1]), int(reply[2]) / 1000

    async def position(self, request_id: str) -> int | None:
        """Queued requests ahead of *request_id*; ``None`` if it is not queued."""
        rank = await complete(lambda: self.client.zrank(self.keys[0], request_id))
        return None if rank is None else int(cast("int", rank))


@final
class Rings:
    """Waits for rings of a queue's streams: one reader a stream, the rest follow.

    One task reads a stream (XREAD BLOCK, at most :data:`WAIT_BLOCK`); the others
    waiting on it meanwhile wait for that read to end. Every waiter then tries
    again: spurious wake-ups are fine, missed ones are not (each waits for a ring
    after the last one its own failed attempt saw).
    """

    __slots__ = ("readers", "server")

    def __init__(self, server: ServerQueue) -> None:
        self.server: ServerQueue = server
        #: The read in progress on each stream: its end, set for the other waiters.
        self.readers: dict[str, Event] = {}

    async def wait(self, stream: str, seen: str, block: float = WAIT_BLOCK) -> None:
        """Wait for a ring of *stream* after *seen*, or at most about *block*.

        (*block* no longer than :data:`WAIT_BLOCK`.)
        """
        reading = self.readers.get(stream)
        if reading is not None:
            await reading.wait()
            return
        done = self.readers[stream] = Event()
        try:
            await self.server.wait(stream, seen, min(block, WAIT_BLOCK))
        finally:
            del self.readers[stream]
            done.set()
