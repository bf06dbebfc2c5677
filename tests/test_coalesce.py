"""Coalescing: submits with an equal key share one request's outcome."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from helpers import CountingObserver, Gate, echo, hang, metric_total, settled
from queuekeeper import (
    Backpressure,
    PoolClosed,
    Priority,
    PrometheusMetrics,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    Ticket,
    TicketState,
    WorkerPool,
)

pytestmark = pytest.mark.anyio


def state_of(ticket: Ticket[Any]) -> TicketState:
    """Read *ticket*'s state afresh (mypy keeps ``ticket.state`` narrowed)."""
    return ticket.state


def balanced(pool: WorkerPool[Any, Any]) -> bool:
    """Whether the pool's counters satisfy the settled invariant."""
    status = pool.status()
    return status.submitted == settled(status)


async def test_equal_keys_share_one_run_and_its_result() -> None:
    """A second submit of a queued key runs nothing more and gets the same result."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("a", key="k")
        second = await pool.submit("a again", key="k")
        assert first.id != second.id
        assert TicketState.QUEUED == second.state
        assert (0, 0) == (first.position, second.position)
        gate.open.set()
        assert "a" == await first.result()
        assert "a" == await second.result()
    assert ["busy", "a"] == gate.started
    assert TicketState.SUCCEEDED == state_of(second)
    assert second.started_at == first.started_at is not None
    status = pool.status()
    assert (2, 1, 2) == (status.submitted, status.coalesced, status.completed)
    assert balanced(pool)


async def test_a_running_request_is_shared_and_so_is_its_exception() -> None:
    """A submit while the keyed request runs shares it; the handler's error too."""
    gate = Gate()
    error = ValueError("boom")
    async with WorkerPool(gate, workers=1) as pool:
        first = await pool.submit(error, key=1)
        await anyio.wait_all_tasks_blocked()
        second = await pool.submit(error, key=1)
        assert TicketState.RUNNING == second.state
        assert second.started_at is not None
        assert second.position is None
        gate.open.set()
        for ticket in (first, second):
            with pytest.raises(ValueError, match=r"^boom$") as caught:
                await ticket.result()
            assert error is caught.value
    assert 1 == len(gate.started)
    assert (1, 1) == (pool.status().failed, pool.status().coalesced)


async def test_other_keys_and_no_key_queue_their_own_requests() -> None:
    """Only an equal key coalesces; after the request ends the key queues anew."""
    async with WorkerPool(echo, workers=1) as pool:
        tickets = [
            await pool.submit(1, key="a"),
            await pool.submit(2, key="b"),
            await pool.submit(3),
            await pool.submit(4),
        ]
        assert [1, 2, 3, 4] == [await ticket.result() for ticket in tickets]
        again = await pool.submit(5, key="a")
        assert 5 == await again.result()
    assert (5, 0) == (pool.status().submitted, pool.status().coalesced)


async def test_submit_nowait_and_execute_take_a_key() -> None:
    """submit_nowait and execute coalesce like submit."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        first = pool.submit_nowait("x", key=("t", 1))
        second = pool.submit_nowait("y", key=("t", 1))
        results: list[object] = []

        async def execute() -> None:
            results.append(await pool.execute("z", key=("t", 1)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            await anyio.wait_all_tasks_blocked()
            gate.open.set()
        assert ["x", "x"] == [await first.result(), await second.result()]
    assert ["x"] == results
    assert ["x"] == gate.started
    assert 2 == pool.status().coalesced


async def test_an_unhashable_key_is_refused() -> None:
    """A key that cannot be hashed raises TypeError naming it; nothing is queued."""
    async with WorkerPool(echo) as pool:
        with pytest.raises(TypeError, match=r"^key must be hashable, not \[1\] \(list"):
            await pool.submit(1, key=[1])  # type: ignore[arg-type]
        with pytest.raises(
            TypeError, match=r"^key must be hashable, not \{\} \(dict\)$"
        ):
            pool.submit_nowait(1, key={})  # type: ignore[arg-type]
    assert 0 == pool.status().submitted


# -- promotion ----------------------------------------------------------------------


async def test_a_higher_priority_promotes_the_queued_request_to_its_level_end() -> None:
    """The queued request moves to the new level, behind those already there."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("normal")
        await pool.submit("high", priority=Priority.HIGH)
        low = await pool.submit("keyed", priority=Priority.LOW, key="k")
        await pool.submit("low", priority=Priority.LOW)
        assert 2 == low.position
        high = await pool.submit("keyed", priority=Priority.HIGH, key="k")
        assert (1, 1) == (low.position, high.position)
        assert (Priority.LOW, Priority.HIGH) == (low.priority, high.priority)
        lower = await pool.submit("keyed", priority=Priority.LOW, key="k")
        assert 1 == lower.position  # never demoted
        gate.open.set()
    assert ["busy", "high", "keyed", "normal", "low"] == gate.started
    assert "keyed" == await lower.result()


async def test_a_request_handed_to_a_worker_is_not_promoted() -> None:
    """A request already handed to an idle worker is next anyway: it stays as it is."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await anyio.wait_all_tasks_blocked()
        first = pool.submit_nowait("keyed", priority=Priority.LOW, key="k")
        pool.submit_nowait("keyed", priority=Priority.HIGH, key="k")
        pool.submit_nowait("other", priority=Priority.LOW)
        second = pool.submit_nowait("keyed", priority=Priority.CRITICAL, key="k")
        assert 0 == second.position
        assert {Priority.LOW: 2} == dict(pool.status().queue_size_by_priority)
        gate.open.set()
        assert "keyed" == await first.result()


async def test_a_promotion_hands_the_request_to_an_idle_reserved_worker() -> None:
    """Promoted to a level an idle reserved worker keeps: it starts at once.

    Its unreserved worker stays busy: without the hand-over the request would wait
    for that worker, though the reserved one was idle all along.
    """
    gate = Gate()
    started = anyio.Event()

    async def handle(request: str) -> str:
        if request == "keyed":
            started.set()
            return request
        return str(await gate(request))

    async with WorkerPool(handle, workers=2, reserved={Priority.CRITICAL: 1}) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        low = await pool.submit("keyed", priority=Priority.LOW, key="k")
        await anyio.wait_all_tasks_blocked()
        assert (TicketState.QUEUED, ["busy"]) == (low.state, gate.started)
        critical = await pool.submit("keyed", priority=Priority.CRITICAL, key="k")
        with anyio.fail_after(5):  # hang guard: it starts without "busy" ending
            await started.wait()
            assert "keyed" == await critical.result()
        assert ["busy"] == gate.started
        gate.open.set()
    assert "keyed" == await low.result()


# -- cancelling ---------------------------------------------------------------------


async def test_cancelling_one_sharer_leaves_the_request_to_the_others() -> None:
    """A cancelled sharer alone fails; the request runs for the one left."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("a", key="k", timeout=60)
        second = await pool.submit("a", key="k")
        assert first.cancel()
        assert not first.cancel()
        with pytest.raises(
            RequestCancelled, match=rf"^request {first.id} was cancelled$"
        ):
            await first.result()
        assert 0 == second.position
        gate.open.set()
        assert "a" == await second.result()
    assert ["busy", "a"] == gate.started
    assert (0, 2) == (pool.status().cancelled, pool.status().completed)


async def test_cancelling_the_last_sharer_removes_the_queued_request() -> None:
    """With no sharer left, the queued request leaves the queue and never runs."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("a", key="k")
        second = await pool.submit("a", key="k")
        assert second.cancel()
        assert first.cancel()
        assert 0 == pool.status().queue_size
        third = await pool.submit("b", key="k")  # the key queues anew
        gate.open.set()
        assert "b" == await third.result()
    assert ["busy", "b"] == gate.started
    assert 1 == pool.status().cancelled
    assert balanced(pool)


async def test_cancelling_the_last_sharer_cancels_the_running_handler() -> None:
    """With no sharer left, the running handler is cancelled."""
    async with WorkerPool(hang, workers=1) as pool:
        first = await pool.submit("a", key="k")
        second = await pool.submit("a", key="k")
        await anyio.wait_all_tasks_blocked()
        assert TicketState.RUNNING == first.state
        first.cancel()
        await anyio.wait_all_tasks_blocked()
        assert 1 == pool.status().active_workers
        second.cancel()
        with pytest.raises(RequestCancelled):
            await second.result()
    assert 1 == pool.status().cancelled
    assert balanced(pool)


async def test_a_cancelled_execute_leaves_the_request_to_other_sharers() -> None:
    """execute() cancelled while another ticket shares its request: only it ends."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        other = await pool.submit("a", key="k")
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.01):
            await pool.execute("a", key="k")
        gate.open.set()
        assert "a" == await other.result()
    status = pool.status()
    assert (1, 1, 1, 0) == (
        status.submitted,
        status.coalesced,
        status.completed,
        status.cancelled,
    )


# -- timeouts -----------------------------------------------------------------------


async def test_a_sharers_own_timeout_detaches_it_alone() -> None:
    """A sharer whose timeout passes fails; the request runs on for the other."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        patient = await pool.submit("a", key="k")
        await anyio.wait_all_tasks_blocked()
        hasty = await pool.submit("a", key="k", timeout=0.01)
        with pytest.raises(RequestTimeout, match=r"timed out while running$"):
            await hasty.result()
        assert TicketState.TIMED_OUT == hasty.state
        assert TicketState.RUNNING == state_of(patient)
        gate.open.set()
        assert "a" == await patient.result()
    assert (1, 0) == (pool.status().completed, pool.status().timed_out)


async def test_a_queued_sharers_queue_timeout_detaches_it_alone() -> None:
    """A queued sharer past its queue_timeout fails with QueueTimeout alone."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        hasty = await pool.submit("a", key="k", queue_timeout=0.01)
        patient = await pool.submit("a", key="k")
        with pytest.raises(QueueTimeout):
            await hasty.result()
        assert 0 == patient.position
        gate.open.set()
        assert "a" == await patient.result()
    assert ["busy", "a"] == gate.started


async def test_a_queue_timeout_stops_counting_once_the_request_runs() -> None:
    """A sharer's queue_timeout no longer applies once the shared request started."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        other = await pool.submit("a", key="k")
        await anyio.wait_all_tasks_blocked()
        late = await pool.submit("a", key="k", queue_timeout=0.01, timeout=60)
        await anyio.sleep(0.05)
        assert TicketState.RUNNING == late.state
        gate.open.set()
        assert "a" == await late.result()
        assert "a" == await other.result()


async def test_the_last_sharers_timeout_times_the_request_out() -> None:
    """A lone keyed request times out as one without a key: counted as timed out."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        queued = await pool.submit("q", key="q", timeout=0.01)
        with pytest.raises(RequestTimeout, match=r"timed out while queued$"):
            await queued.result()
        assert 0 == pool.status().queue_size
        gate.open.set()
    assert ["busy"] == gate.started
    assert (2, 1) == (pool.status().submitted, pool.status().timed_out)
    async with WorkerPool(hang, workers=1) as pool:
        running = await pool.submit("r", key="r", timeout=0.01)
        with pytest.raises(RequestTimeout, match=r"timed out while running$"):
            await running.result()
    assert (1, 1) == (pool.status().submitted, pool.status().timed_out)
    assert (1, 1) == (
        pool.worker_health()[0].total_processed,
        pool.worker_health()[0].total_errors,
    )


# -- backpressure and shutdown ------------------------------------------------------


async def test_a_coalesced_submit_takes_no_room() -> None:
    """A full queue does not refuse a submit that shares a queued request."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, max_queue_size=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("a", key="k")
        with pytest.raises(QueueFull):
            await pool.submit("b")
        with pytest.raises(QueueFull):
            await pool.submit("b", key="other")
        with pytest.raises(QueueFull):
            pool.submit_nowait("b", key="other")
        second = await pool.submit("a", key="k")
        gate.open.set()
        assert "a" == await second.result()
        assert "a" == await first.result()
    assert (2, 1, 3) == (
        pool.status().submitted,
        pool.status().coalesced,
        pool.status().rejected,
    )


async def test_a_keyed_submit_blocked_for_room_is_shared_once_queued() -> None:
    """BLOCK: the first keyed submit waits for room; later ones share it then."""
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, max_queue_size=1, backpressure=Backpressure.BLOCK
    ) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        filler = await pool.submit("filler")
        tickets: list[Ticket[Any]] = []

        async def submit() -> None:
            tickets.append(await pool.submit("a", key="k", timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit)
            await anyio.wait_all_tasks_blocked()
            assert filler.cancel()
        tickets.append(await pool.submit("a", key="k"))
        gate.open.set()
        assert ["a", "a"] == [await ticket.result() for ticket in tickets]
    assert ["busy", "a"] == gate.started


async def test_a_keyed_submit_that_times_out_waiting_for_room_fails() -> None:
    """BLOCK: the first sharer's timeout bounds its wait for room."""
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, max_queue_size=1, backpressure=Backpressure.BLOCK
    ) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("filler")
        ticket = await pool.submit("a", key="k", queue_timeout=0.01)
        with pytest.raises(QueueTimeout):
            await ticket.result()
        gate.open.set()
    assert ["busy", "filler"] == gate.started
    assert balanced(pool)


async def test_a_shed_request_fails_every_sharer() -> None:
    """SHED: evicting the shared request fails all its tickets with RequestShed."""
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, max_queue_size=1, backpressure=Backpressure.SHED
    ) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        first = await pool.submit("a", priority=Priority.LOW, key="k")
        second = await pool.submit("a", priority=Priority.LOW, key="k")
        await pool.submit("urgent", priority=Priority.CRITICAL)
        for ticket in (first, second):
            with pytest.raises(RequestShed):
                await ticket.result()
            assert TicketState.SHED == ticket.state
        gate.open.set()
    assert 1 == pool.status().shed


async def test_shutdown_cancels_every_sharer() -> None:
    """shutdown(drain=False) leaves no sharer pending."""
    async with WorkerPool(hang, workers=1) as pool:
        running = [await pool.submit("r", key="r") for _ in range(2)]
        queued = [await pool.submit("q", key="q") for _ in range(2)]
        await anyio.wait_all_tasks_blocked()
        await pool.shutdown(drain=False)
    for ticket in running + queued:
        assert TicketState.CANCELLED == ticket.state
    with pytest.raises(PoolClosed):
        await pool.submit("late", key="r")
    assert balanced(pool)


# -- observers ----------------------------------------------------------------------


class CoalescedObserver(CountingObserver):
    """An observer that also counts coalesced submits, by priority."""

    def __init__(self) -> None:
        super().__init__()
        self.coalesced_at: list[int] = []

    def coalesced(self, pool: str, priority: int) -> None:
        """Note a coalesced submit."""
        self.coalesced_at.append(priority)


async def test_observers_hear_of_coalesced_submits_if_they_listen() -> None:
    """coalesced() is called when an observer has it; an older one works without."""
    old, new = CountingObserver(), CoalescedObserver()
    for observer in (old, new):
        async with WorkerPool(echo, metrics=observer) as pool:
            first = pool.submit_nowait(1, key="k")
            pool.submit_nowait(1, priority=Priority.HIGH, key="k")
            await first.result()
    assert (1, 1) == (old.submits, new.submits)
    assert [Priority.HIGH] == new.coalesced_at


async def test_prometheus_counts_coalesced_submits() -> None:
    """queue_requests_coalesced_total counts coalesced submits by priority."""
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with WorkerPool(echo, metrics=metrics, name="p") as pool:
        first = pool.submit_nowait(1, key="k")
        pool.submit_nowait(1, key="k")
        pool.submit_nowait(1, priority=Priority.LOW, key="k")
        await first.result()
    name = "queuekeeper_queue_requests_coalesced_total"
    assert (1, 1, 0) == tuple(
        metric_total(registry, name, pool="p", priority=level)
        for level in ("normal", "low", "high")
    )
    assert 1 == metric_total(registry, "queuekeeper_queue_requests_total", pool="p")


async def test_a_sharer_reports_the_shared_requests_place_and_deliveries() -> None:
    """fetch_position() and deliveries of a sharer are the shared request's."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("ahead")
        first = await pool.submit("a", key="k")
        second = await pool.submit("a", key="k")
        assert 1 == await second.fetch_position()
        assert 0 == second.deliveries
        gate.open.set()
        await second.result()
        assert (1, 1) == (first.deliveries, second.deliveries)


async def test_a_keyed_submit_shut_out_at_its_checkpoint_queues_nothing() -> None:
    """Shut down while a keyed submit is at its checkpoint: PoolClosed, no request."""
    async with WorkerPool(echo) as pool:
        checkpoint = pool._checkpoint

        async def shut_at_checkpoint() -> object:
            pool._close_intake()
            return await checkpoint()

        pool._checkpoint = shut_at_checkpoint
        with pytest.raises(PoolClosed):
            await pool.submit(1, key="k")
    assert (0, 0) == (pool.status().submitted, pool.status().coalesced)
