"""Retries and dead letters of a pool on Redis (see ``retry`` and ``dead_letter_size``).

A run that failed with one of ``Retry.on``, with attempts left, is not sent back
as a failure: the pool's courier calls the library's ``retry``, which releases the
lease and parks the request on the server, in the queue's delayed set, until its
backoff is over; the next take queues it again at its level. The retry therefore
lives on the server: the death of the worker's process changes nothing. Its
submitter is told ("a" on its reply stream): its ticket is queued again, and its
``attempts`` follows.

A request that failed for good, with ``dead_letter_size``, is sent back through
the library's ``bury``: its failure reaches its submitter as usual, and, in the
same atomic step, a record of it goes to the head of the queue's capped list
``qk:{name}:dead`` (see :func:`read_dead_letters`); the pool's own
:attr:`WorkerPool.dead_letters` gets it too, with the exception itself.
"""

from __future__ import annotations

import builtins
import json
import math
import random
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

from .._policies import DeadLetter
from .._priority import display_priority
from .._states import TicketState
from ._dead import DeadLetterStream, describe_error

if TYPE_CHECKING:
    from .._policies import Retry
    from .._redis._channel import Serializer
    from ._ticket import Ticket

__all__ = ["Graves", "read_dead_letters"]

T = TypeVar("T")

_QUEUED: Final = TicketState.QUEUED
_FAILED: Final = TicketState.FAILED
#: Most retries sent in one call.
_BATCH: Final = 1000


@final
class Graves:
    """A Redis pool's retries and dead letters (see the module)."""

    def __init__(
        self,
        link: Any,  # noqa: ANN401 (a PoolLink)
        retry: Retry | None,
        size: int | None,
    ) -> None:
        #: The pool's PoolLink (not imported: it imports this module).
        self.link = link
        self.retry = retry
        self.size = size
        self.box: DeadLetterStream[Any] | None = (
            None if size is None else DeadLetterStream[Any](size)
        )
        #: Retries sent, in all and by submitted level.
        self.retried = 0
        self.by_level: dict[int, int] = {}
        self.rng = random.Random()  # noqa: S311 (jitter, not secrets)
        #: Execution tickets whose run is to be retried, and their backoffs.
        self.delays: dict[Ticket[Any], float] = {}
        #: (request id, backoff) for the courier: the library's ``retry``.
        self.retries: list[tuple[str, float]] = []
        #: (reply as finish takes it, record) for the courier: ``bury``.
        self.burials: list[tuple[tuple[str, int, float, bytes], bytes]] = []

    # -- the worker's side ----------------------------------------------------------

    @property
    def retrying(self) -> int:
        """Requests waiting out a backoff on the server (as of the last heartbeat)."""
        return int(self.link.retrying)

    def after_run(
        self, ticket: Ticket[Any], state: TicketState, error: BaseException, now: float
    ) -> bool:
        """Accounting's question for a run that ended in *state*: does it run again?

        Only a ``FAILED`` run may (see :meth:`retries_run`).
        """
        if state is not _FAILED or not self.retries_run(ticket, error, now):
            return False
        self.retried += 1
        level = ticket._level
        self.by_level[level] = self.by_level.get(level, 0) + 1
        return True

    def counts(self) -> dict[str, Any]:
        """The status fields of this pool's retries and dead letters."""
        box = self.box
        return {
            "retried": self.retried,
            "retrying": self.retrying,
            "retried_by_priority": MappingProxyType(
                dict(sorted(self.by_level.items()))
            ),
            "dead_letters": 0 if box is None else box.made,
            "dead_letters_dropped": 0 if box is None else box.dropped,
        }

    def retries_run(
        self, ticket: Ticket[Any], error: BaseException, now: float
    ) -> bool:
        """Whether the failed run of *ticket* (an execution ticket) runs again.

        Called as its run fails (see ``Accounting.retries``): if so, the ticket
        ends here, uncounted, and :meth:`bury` sends it to be retried.
        """
        link, retry = self.link, self.retry
        assert retry is not None  # noqa: S101 (set only with a retry)
        if link.held_ids[ticket] in link.cancelled_ids:
            return False  # its submitter cancelled it, and it raised
        attempts = link.deliveries_of[ticket]
        if not retry.retries(error, attempts):
            return False
        try:
            delay = retry.delay(attempts, self.rng)
        except (TypeError, ValueError):
            return False  # a backoff callable that gave no delay: failed for good
        self.delays[ticket] = delay
        if ticket._deadline_entry is not None:  # pragma: no cover (never queued here)
            link.deadlines.clear(ticket)
        ticket._finish(_FAILED, now, error)
        return True

    def bury(
        self,
        ticket: Ticket[Any],
        request_id: str,
        deliveries: int,
        *,
        cancelled: bool,
    ) -> bool:
        """Send *ticket*, whose run failed, to be retried or buried.

        ``False`` if neither (it is sent back as a plain failure).
        """
        delay = self.delays.pop(ticket, None)
        if delay is not None:
            self.retries.append((request_id, delay))
            return True
        if self.box is None or cancelled:
            return False
        error = ticket._error
        assert error is not None  # noqa: S101 (failed)
        started, finished = ticket.started_at, ticket.finished_at
        ran = 0.0 if started is None or finished is None else finished - started
        kind = type(error)
        _, _, text = describe_error(error)
        self.box.record(
            ticket,
            error,
            ticket.submitted_at if finished is None else finished,
            deliveries,
            ticket_id=request_id,
        )
        head = json.dumps(
            {
                "id": request_id,
                "priority": ticket._level,
                "attempts": deliveries,
                "module": kind.__module__,
                "type": kind.__qualname__,
                "message": str(error),
                "traceback": text,
            }
        ).encode("utf-8", "backslashreplace")
        reply = (request_id, deliveries, ran, self.link._result_reply(ticket))
        self.burials.append((reply, head))
        return True

    async def flush(self) -> None:
        """Send the retries and burials waiting (the courier's part)."""
        link = self.link
        while self.retries:
            batch = self.retries[:_BATCH]
            await link.server.retry(link.tag, batch)
            del self.retries[: len(batch)]
        while self.burials:
            reply, head = self.burials[0]
            assert self.size is not None  # noqa: S101 (burials need a size)
            await link.server.bury(link.tag, self.size, reply, head)
            del self.burials[0]

    # -- the submitter's side -------------------------------------------------------

    def again(self, ticket: Ticket[Any], attempts: int) -> None:
        """A request submitted here failed a run and waits to run again.

        Queued again, its position unknown; only its ``timeout`` still holds
        (its ``queue_timeout`` limited its first wait), and its deadline
        takes it out of the server wherever it waits.
        """
        link = self.link
        link.remote_deliveries[ticket] = attempts
        link.positions.pop(ticket, None)
        ticket._state = _QUEUED
        ticket._queue_deadline = math.inf
        if ticket._deadline_entry is not None:
            link.deadlines.clear(ticket)
        if ticket._deadline != math.inf:
            link.deadlines.add(ticket._deadline, ticket)


def _rebuilt(module: str, qualname: str, message: str) -> BaseException | None:
    """The exception a dead letter names, if it is a built-in one; else ``None``."""
    if module != "builtins":
        return None
    cls = getattr(builtins, qualname, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 (a constructor that wants more)
        return None


def read_dead_letters(
    entries: list[bytes], serializer: Serializer
) -> list[DeadLetter[Any]]:
    """The records of the dead-letter list's *entries* (see ``bury``)."""
    letters: list[DeadLetter[Any]] = []
    for entry in entries:
        head, times, payload = entry.split(b"\n", 2)
        fields = json.loads(head)
        born, at = (int(each) / 1000 for each in times.split(b" "))
        body = payload.partition(b"\n")[2]
        try:
            request = serializer.loads(body)
        except Exception:  # noqa: BLE001 (kept as it is)
            request = body
        letters.append(
            DeadLetter(
                ticket_id=fields["id"],
                request=request,
                priority=display_priority(fields["priority"]),
                attempts=fields["attempts"],
                error=_rebuilt(fields["module"], fields["type"], fields["message"]),
                error_type=f"{fields['module']}.{fields['type']}",
                error_message=fields["message"],
                traceback=fields["traceback"],
                submitted_at=born,
                finished_at=at,
            )
        )
    return letters
