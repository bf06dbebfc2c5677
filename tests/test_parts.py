"""The pool's parts on their own: the memory queue, deadlines, accounting, admission.

Each part is built here without a WorkerPool, around a small owner that tickets
need (a name, and whatever a test wants to see called), so a part's contract is
tested apart from the wiring.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

from queuekeeper import (
    Backpressure,
    Priority,
    QueueFull,
    QueueTimeout,
    RequestShed,
    RequestTimeout,
    Ticket,
    TicketState,
)
from queuekeeper._memory import MemoryQueue
from queuekeeper._pool._accounting import Accounting
from queuekeeper._pool._admission import Admission
from queuekeeper._pool._deadlines import Deadlines
from queuekeeper._pool._workers import Workers
from queuekeeper._util import fixup_module_metadata

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from queuekeeper import ChannelStatistics

pytestmark = pytest.mark.anyio


class Owner:
    """What a ticket needs from its pool, recording what it is asked."""

    name = "parts"

    def __init__(self) -> None:
        self.cancelled: list[Ticket[Any]] = []

    def _position(self, ticket: Ticket[Any]) -> int:
        return 0

    def _cancel_ticket(self, ticket: Ticket[Any]) -> bool:
        self.cancelled.append(ticket)
        return True

    def _live_state(self, ticket: Ticket[Any]) -> TicketState:
        return ticket._state

    async def _checkpoint(self) -> None:
        await anyio.lowlevel.checkpoint()

    def _new_event(self) -> anyio.Event:
        return anyio.Event()


def ticket(
    request: object = None,
    level: int = Priority.NORMAL,
    *,
    now: float = 0.0,
    timeout: float = math.inf,
    queue_timeout: float = math.inf,
) -> Ticket[Any]:
    """A queued ticket, as a pool would make it."""
    made: Ticket[Any] = Ticket._create(
        Owner(), request, level, now, now + timeout, now + queue_timeout
    )
    return made


# -- the memory queue ------------------------------------------------------------------


def test_memory_queue_orders_by_level_then_arrival_and_answers_about_its_requests() -> (
    None
):
    """put, take, position, remove, evict, sizes and drain agree with one order."""
    queue = MemoryQueue[str](4)
    for request, level in [("low", 4), ("high", 2), ("high too", 2), ("custom", 0)]:
        assert not queue.put_nowait(request, level)  # nobody waits: none handed over
    with pytest.raises(anyio.WouldBlock):
        queue.put_nowait("no room", 1)
    assert [0, 1, 2, 3] == [
        queue.position(r, lv)
        for r, lv in [("custom", 0), ("high", 2), ("high too", 2), ("low", 4)]
    ]
    assert (4, {0: 1, 2: 2, 4: 1}) == (queue.sizes()[0], dict(queue.sizes()[1]))
    assert queue.evict(2) == ("low", 4)  # the newest of the lowest, below 2
    assert queue.evict(2) is None  # nothing queued below 2 any more
    assert queue.remove("high", 2)
    assert not queue.remove("high", 2)
    assert queue.position("gone", 2) is None
    assert "custom" == queue.take_nowait()
    assert ["high too"] == queue.drain()
    assert queue.take_nowait() is None
    assert (0, {}) == (queue.sizes()[0], dict(queue.sizes()[1]))


async def test_memory_queue_hands_a_put_to_a_waiting_take_and_ends_when_closed() -> (
    None
):
    """A waiting take gets the next put directly; close ends takes once empty."""
    queue = MemoryQueue[str](1)
    taken: list[str] = []
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            taken.append(await queue.take())

        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert queue.put_nowait("handed", 3)  # straight into the taker's hands
    assert ["handed"] == taken
    queue.put_nowait("last", 3)
    queue.close()
    assert "last" == await queue.take()
    with pytest.raises(anyio.EndOfStream):
        await queue.take()


async def test_memory_queue_admits_a_waiting_put_when_room_appears() -> None:
    """put() waits while full; on_admit hears of it the moment it moves in."""
    queue = MemoryQueue[str](1)
    admitted: list[str] = []
    queue.on_admit = admitted.append
    queue.put_nowait("first", 3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.put, "waiting", 3)
        await anyio.wait_all_tasks_blocked()
        assert [] == admitted
        assert "first" == queue.take_nowait()  # room: "waiting" moves in now
        assert ["waiting"] == admitted
    assert "waiting" == queue.take_nowait()
    assert (queue.acknowledges, queue.on_admit) == (False, admitted.append)


# -- deadlines -------------------------------------------------------------------------


def test_deadlines_forget_settled_tickets_and_prune_their_entries() -> None:
    """clear() releases a ticket at once; cleared entries never outnumber the rest."""
    deadlines = Deadlines()
    tickets = [ticket(n, now=0.0, timeout=3600.0) for n in range(1000)]
    for t in tickets:
        deadlines.add(3600.0, t)
    for t in tickets[:-10]:
        deadlines.clear(t)
        assert t._deadline_entry is None
    deadlines.clear(tickets[0])  # twice: a no-op
    live = [entry for entry in deadlines.heap if entry[2] is not None]
    assert 10 == len(live)
    assert deadlines.cleared == len(deadlines.heap) - len(live)
    assert len(deadlines.heap) <= 2 * len(live) + 2 * 32


@pytest.mark.trio
async def test_the_timekeeper_expires_each_queued_ticket_at_its_moment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """keep() calls expire(ticket, now) at each deadline, skipping cleared ones."""
    deadlines = Deadlines()
    expired: list[tuple[object, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            deadlines.keep,
            lambda t, now: expired.append((t.request, now)),
            trio.current_time,
        )
        start = trio.current_time()
        first, second, cleared = (ticket(n, now=start, timeout=n) for n in (2, 1, 3))
        for t in (first, second, cleared):
            deadlines.add(t._deadline, t)
        deadlines.clear(cleared)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [(1, start + 1), (2, start + 2)] == expired


# -- accounting and admission ----------------------------------------------------------


def parts(
    mode: Backpressure, capacity: int = 1
) -> tuple[MemoryQueue[Ticket[Any]], Accounting, Admission[Any]]:
    """A queue, its accounting and its admission, wired as a pool wires them."""
    queue = MemoryQueue[Ticket[Any]](capacity)
    deadlines = Deadlines()
    accounting = Accounting(
        "parts",
        1,
        None,
        deadlines,
        hung_after=60.0,
        unhealthy_after=5,
        cancel_grace=1.0,
    )
    accounting.clock = lambda: 0.0
    admission = Admission[Any](queue, mode, capacity, accounting, deadlines)
    admission.clock = accounting.clock
    return queue, accounting, admission


def counts(accounting: Accounting) -> tuple[int, ...]:
    """submitted, rejected, then the settled counters."""
    a = accounting
    settled = (a.completed, a.failed, a.cancelled, a.timed_out, a.shed)
    return (a.submitted, a.rejected, *settled)


def test_admission_rejects_or_sheds_when_full_and_counts_each_outcome() -> None:
    """REJECT refuses; SHED evicts a strictly lower request, else refuses."""
    queue, accounting, admission = parts(Backpressure.REJECT)
    admission.put_nowait(ticket("in"))
    with pytest.raises(QueueFull):
        admission.refuse_or_shed(ticket("refused"))
    assert (1, 1, 0, 0, 0, 0, 0) == counts(accounting)

    queue, accounting, admission = parts(Backpressure.SHED)
    low = ticket("low", Priority.LOW)
    admission.put_nowait(low)
    high = ticket("high", Priority.HIGH)
    admission.refuse_or_shed(high)  # evicts "low"
    assert (TicketState.SHED, TicketState.QUEUED) == (low.state, high.state)
    assert isinstance(low._error, RequestShed)
    with pytest.raises(QueueFull):
        admission.refuse_or_shed(ticket("not higher", Priority.HIGH))
    assert (2, 1, 0, 0, 0, 0, 1) == counts(accounting)
    assert [high] == queue.drain()


def test_admission_expires_a_queued_ticket_with_the_right_timeout_error() -> None:
    """expire() takes it out and fails it: RequestTimeout past its deadline."""
    queue, accounting, admission = parts(Backpressure.REJECT, capacity=2)
    whole = ticket("whole", timeout=1.0)
    waiting = ticket("waiting", queue_timeout=1.0)
    admission.put_nowait(whole)
    admission.put_nowait(waiting)
    admission.expire(whole, 1.0)
    admission.expire(waiting, 1.0)
    assert isinstance(whole._error, RequestTimeout)
    assert isinstance(waiting._error, QueueTimeout)
    assert ([], (2, 0, 0, 0, 0, 2, 0)) == (queue.drain(), counts(accounting))


def test_accounting_status_adds_up_at_every_step() -> None:
    """submitted == settled + queued + running, as requests move through."""
    queue, accounting, admission = parts(Backpressure.REJECT, capacity=3)
    tickets = [ticket(n) for n in range(3)]
    for t in tickets:
        admission.put_nowait(t)

    def check() -> None:
        size, by_level = queue.sizes()
        status = accounting.status("running", size, by_level, 3, 0, {})
        settled = status.completed + status.failed + status.cancelled
        settled += status.timed_out + status.shed
        assert status.submitted == settled + status.queue_size + status.active_workers

    check()
    accounting.settle(tickets[0], TicketState.CANCELLED, 0.0, error=ValueError())
    admission.withdraw(tickets[0])
    check()
    worker = accounting.workers[0]
    taken = queue.take_nowait()
    assert taken is tickets[1]
    taken._state = TicketState.RUNNING  # what the worker loop does
    taken.started_at = 0.0
    accounting.active += 1
    worker.current = taken
    check()
    accounting.succeeded(worker, taken, "done")
    check()
    assert ("done", 1, 1) == (taken._result, worker.processed, accounting.completed)


def test_evict_finds_nothing_when_only_a_just_emptied_level_is_listed() -> None:
    """The level the last take emptied stays listed until the next put: not a victim."""
    queue = MemoryQueue[str](1)
    queue.put_nowait("low", Priority.LOW)
    assert "low" == queue.take_nowait()
    assert queue.evict(Priority.HIGH) is None
    assert (0, {}) == (queue.sizes()[0], dict(queue.sizes()[1]))


# -- the workers over a queue that leases ----------------------------------------------


class LeasingQueue:
    """The memory queue, wanting to hear of every request taken once it is settled.

    What a queue in another process does: each request it hands out is under a
    lease until the pool acknowledges it.
    """

    def __init__(self, capacity: int) -> None:
        self.memory = MemoryQueue[Ticket[Any]](capacity)
        self.acknowledges = True
        self.leased: Counter[Ticket[Any]] = Counter()
        self.acknowledged: list[Ticket[Any]] = []

    @property
    def on_admit(self) -> Callable[[Ticket[Any]], object] | None:
        return self.memory.on_admit

    @on_admit.setter
    def on_admit(self, callback: Callable[[Ticket[Any]], object] | None) -> None:
        self.memory.on_admit = callback

    def put_nowait(self, request: Ticket[Any], priority: int) -> bool:
        return self.memory.put_nowait(request, priority)

    async def put(self, request: Ticket[Any], priority: int) -> bool:
        return await self.memory.put(request, priority)

    def evict(self, above: int) -> tuple[Ticket[Any], int] | None:
        return self.memory.evict(above)

    def take_nowait(self) -> Ticket[Any] | None:
        taken = self.memory.take_nowait()
        if taken is not None:
            self.leased[taken] += 1
        return taken

    async def take(self) -> Ticket[Any]:
        taken = await self.memory.take()
        self.leased[taken] += 1
        return taken

    def settled(self, request: Ticket[Any]) -> None:
        assert self.leased[request] == 1, "acknowledged without a lease"
        self.leased[request] -= 1
        self.acknowledged.append(request)

    def remove(self, request: Ticket[Any], priority: int) -> bool:
        return self.memory.remove(request, priority)

    def position(self, request: Ticket[Any], priority: int) -> int | None:
        return self.memory.position(request, priority)

    def sizes(self) -> tuple[int, Mapping[int, int]]:
        return self.memory.sizes()

    def statistics(self) -> ChannelStatistics:
        return self.memory.statistics()

    def close(self) -> None:
        self.memory.close()

    def drain(self) -> list[Ticket[Any]]:
        return self.memory.drain()

    def retire_waiting(self, count: int) -> int:
        return self.memory.retire_waiting(count)

    def reserve(self, limits: list[int]) -> None:
        self.memory.reserve(limits)

    async def take_within(self, limit: int) -> Ticket[Any]:
        taken = await self.memory.take_within(limit)
        self.leased[taken] += 1
        return taken


async def test_workers_acknowledge_every_request_they_take_once_it_is_settled() -> None:
    """Served, failed or found expired: each taken request is acknowledged once."""
    queue = LeasingQueue(4)
    deadlines = Deadlines()
    accounting = Accounting(
        "parts",
        1,
        None,
        deadlines,
        hung_after=60.0,
        unhealthy_after=5,
        cancel_grace=1.0,
    )
    accounting.clock = lambda: 0.0
    admission = Admission[Any](queue, Backpressure.REJECT, 4, accounting, deadlines)
    admission.clock = accounting.clock

    async def halve(request: int) -> float:
        await anyio.lowlevel.checkpoint()
        if request == 0:
            raise ZeroDivisionError(request)
        return 1 / request

    workers = Workers[int, float](halve, queue, admission, accounting)
    served, failed = ticket(2), ticket(0)
    late = ticket(3, now=-2.0, queue_timeout=1.0)  # its queue time ran out at -1.0
    for t in (served, late, failed):
        admission.put_nowait(t)
    queue.close()
    workers.live = 1  # what the pool does as it starts a worker
    await workers.work(accounting.workers[0])
    assert (TicketState.SUCCEEDED, TicketState.TIMED_OUT, TicketState.FAILED) == (
        served.state,
        late.state,
        failed.state,
    )
    assert isinstance(late._error, QueueTimeout)
    assert [served, late, failed] == queue.acknowledged
    assert 0 == sum(queue.leased.values())
    assert workers.all_done.is_set()


def test_module_metadata_points_only_the_package_own_names_at_the_package() -> None:
    """A re-exported name from elsewhere keeps the module it really lives in."""
    own = type("Own", (), {"__module__": "somepackage._private"})
    namespace: dict[str, Any] = {
        "__all__": ["Own", "WouldBlock"],
        "Own": own,
        "WouldBlock": anyio.WouldBlock,
    }
    fixup_module_metadata("somepackage", namespace)
    assert "somepackage" == own.__module__
    assert anyio.WouldBlock.__module__.startswith("anyio")
