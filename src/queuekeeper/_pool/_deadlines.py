"""Deadlines of queued requests: a heap, and the timekeeper task that sleeps on it."""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, Final, NoReturn, final

from anyio import CancelScope, sleep_forever

from .._states import TicketState
from .._util import ki_protected

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._ticket import Ticket

__all__ = ["Deadlines", "wake_at"]

_QUEUED: Final = TicketState.QUEUED
#: Cleared entries the heap may hold before they can outnumber the rest.
_MIN_PRUNE: Final = 32


def wake_at(ticket: Ticket[Any]) -> float:
    """When a queued *ticket* expires: the earlier of its two deadlines."""
    deadline, queue_deadline = ticket._deadline, ticket._queue_deadline
    return deadline if deadline < queue_deadline else queue_deadline  # noqa: FURB136 (min() costs a call)


@final
class Deadlines:
    """When queued requests expire, and one task that fails them at that moment.

    One sleeping task serves any number of deadlines: :meth:`keep` sleeps until the
    earliest. Entries are ``[when, ticket sequence number, ticket]`` lists; a
    ticket that settles before its entry comes up clears it (:meth:`clear`, which
    sets the ticket to ``None``), so the heap keeps no settled request alive, and
    cleared entries are dropped once they outnumber the rest. Invariant:
    ``cleared`` is the number of cleared entries in ``heap``.
    """

    __slots__ = ("cleared", "heap", "scope")

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []
        self.cleared = 0
        # The timekeeper's sleep, moved earlier when an earlier deadline arrives.
        self.scope: CancelScope | None = None

    @ki_protected
    def add(self, when: float, ticket: Ticket[Any]) -> None:
        """Let *ticket* expire at *when* (backend clock), unless it settles first."""
        entry = [when, ticket._seq, ticket]
        ticket._deadline_entry = entry
        heapq.heappush(self.heap, entry)
        scope = self.scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    @ki_protected
    def add_unique(self, when: float, order: int, ticket: Ticket[Any]) -> None:
        """:meth:`add`, the entry ranked by *order* (unique) instead of the ticket's.

        For a ticket that comes back to the heap (a retried request): a cleared
        entry of its own may still be there, and two entries that tie must
        never compare their tickets.
        """
        entry = [when, order, ticket]
        ticket._deadline_entry = entry
        heapq.heappush(self.heap, entry)
        scope = self.scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    @ki_protected
    def clear(self, ticket: Ticket[Any]) -> None:
        """Forget *ticket*, which settled before its deadline came up."""
        entry = ticket._deadline_entry
        if entry is None:
            return
        ticket._deadline_entry = None
        entry[2] = None
        cleared = self.cleared = self.cleared + 1
        heap = self.heap
        if cleared > _MIN_PRUNE and 2 * cleared > len(heap):
            # Most entries are cleared: drop them, so memory follows the number of
            # requests in the pool, not the traffic.
            heap[:] = [entry for entry in heap if entry[2] is not None]
            heapq.heapify(heap)
            self.cleared = 0

    @ki_protected
    async def keep(
        self,
        expire: Callable[[Ticket[Any], float], object],
        clock: Callable[[], float],
    ) -> NoReturn:
        """Call ``expire(ticket, now)`` for each queued ticket whose deadline passed.

        Runs until cancelled: the pool's timekeeper task.
        """
        heap = self.heap
        while True:
            now = clock()
            while heap and heap[0][0] <= now:
                ticket = heapq.heappop(heap)[2]
                if ticket is None:
                    self.cleared -= 1
                    continue
                ticket._deadline_entry = None
                if ticket._state is _QUEUED:
                    expire(ticket, now)
            with CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self.scope = scope
                await sleep_forever()
