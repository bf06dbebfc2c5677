"""Dead letters: a record of each request that failed for good, for the user to read.

An outcome policy (see ``WorkerPool(dead_letter_size=...)``): Accounting hands
every request that settles ``FAILED`` (its handler raised, and no retry was
left) to :meth:`DeadLetterStream.record`, which never waits: the records go into
a bounded buffer, the oldest dropped (and counted) when it is full. The user
reads them from ``pool.dead_letters``, an anyio ``ObjectReceiveStream``.
"""

from __future__ import annotations

import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, final

from anyio import ClosedResourceError, EndOfStream, Event, WouldBlock
from anyio.abc import ObjectReceiveStream
from anyio.lowlevel import checkpoint

from .._policies import DeadLetter
from .._util import ki_protected

if TYPE_CHECKING:
    from ._ticket import Ticket

__all__ = ["DeadLetterStream", "describe_error"]

Req = TypeVar("Req")


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """*error*'s type name, message and formatted traceback, for a dead letter."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return DeadLetter.type_name(error), str(error), text


@final
class DeadLetterStream(ObjectReceiveStream[DeadLetter[Req]], Generic[Req]):
    """The receive side of a pool's dead letters: a bounded buffer, never waited on.

    Holds at most *size* records; a record made while it is full drops the
    oldest one held (counted in ``dropped``). :meth:`receive` waits for the next
    record; once the pool has closed and every record is read, it raises
    :exc:`anyio.EndOfStream` (so ``async for letter in pool.dead_letters``
    ends). Closing the stream discards what it holds and every later record
    (all counted as dropped).
    """

    def __init__(self, size: int) -> None:
        self._records: deque[DeadLetter[Req]] = deque(maxlen=size)
        #: Records made, and those dropped unread.
        self.made = 0
        self.dropped = 0
        # Set (and forgotten) when a record arrives or the stream ends; made
        # only while someone waits.
        self._event: Event | None = None
        self._ended = False
        self._closed = False

    # -- the pool's side ----------------------------------------------------------

    @ki_protected
    def record(
        self,
        ticket: Ticket[Any],
        error: BaseException,
        now: float,
        attempts: int,
        *,
        ticket_id: str | None = None,
    ) -> None:
        """Keep a record of *ticket*, failed for good by *error* at *now*.

        *ticket_id* names it instead of ``ticket.id`` (on Redis: the request's
        id on the queue).
        """
        self.made += 1
        records = self._records
        if self._closed:
            self.dropped += 1
            return
        if len(records) == records.maxlen:
            self.dropped += 1  # the append below drops the oldest
        error_type, message, text = describe_error(error)
        records.append(
            DeadLetter(
                ticket_id=ticket.id if ticket_id is None else ticket_id,
                request=cast("Req", ticket.request),
                priority=ticket.priority,
                attempts=attempts,
                error=error,
                error_type=error_type,
                error_message=message,
                traceback=text,
                submitted_at=ticket.submitted_at,
                finished_at=now,
            )
        )
        self._wake()

    @ki_protected
    def end(self) -> None:
        """The pool closed: no record comes any more."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    # -- the user's side ----------------------------------------------------------

    def receive_nowait(self) -> DeadLetter[Req]:
        """Take the oldest record held, without waiting.

        Raises:
            anyio.WouldBlock: None is held, and the pool has not closed.
            anyio.EndOfStream: None is held, and the pool has closed.
            anyio.ClosedResourceError: The stream was closed.
        """
        if self._closed:
            raise ClosedResourceError
        if self._records:
            return self._records.popleft()
        if self._ended:
            raise EndOfStream
        raise WouldBlock

    async def receive(self) -> DeadLetter[Req]:
        """Take the oldest record held, waiting for one; always a checkpoint.

        Cancellation: safe at any point; a cancelled wait takes no record.

        Raises:
            anyio.EndOfStream: The pool has closed and every record was read.
            anyio.ClosedResourceError: The stream was closed.
        """
        await checkpoint()
        while True:
            try:
                return self.receive_nowait()
            except WouldBlock:
                pass
            event = self._event
            if event is None:
                event = self._event = Event()
            await event.wait()

    def close(self) -> None:
        """Stop keeping records: discard those held and any made later."""
        if not self._closed:
            self._closed = True
            self.dropped += len(self._records)
            self._records.clear()
            self._wake()

    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()
