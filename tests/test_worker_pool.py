"""WorkerPool: lifecycle, backpressure, tickets, timeouts, shutdown, health, status."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import anyio
import pytest

from helpers import Gate, echo, hang, pool_task_names, settled
from queuekeeper import (
    Backpressure,
    PoolClosed,
    Priority,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    Ticket,
    TicketState,
    WorkerHealth,
    WorkerPool,
)

pytestmark = pytest.mark.anyio


def state_of(ticket: Ticket[Any]) -> TicketState:
    """Read *ticket*'s state afresh: mypy keeps ``ticket.state`` narrowed by a check."""
    return ticket.state


# -- lifecycle ----------------------------------------------------------------------


async def test_async_with_runs_requests_and_drains_on_exit() -> None:
    """Leaving async with waits for queued and running requests to finish."""
    gate = Gate()
    async with WorkerPool(gate, workers=2) as pool:
        tickets = [await pool.submit(i) for i in range(5)]
        await anyio.wait_all_tasks_blocked()
        assert [0, 1] == gate.started
        gate.open.set()
    assert [0, 1, 2, 3, 4] == [ticket._result for ticket in tickets]
    assert all(ticket.state is TicketState.SUCCEEDED for ticket in tickets)
    assert "closed" == pool.status().state


async def test_task_group_start_form_runs_until_shutdown() -> None:
    """await tg.start(pool.run) starts the workers; run returns after shutdown."""
    pool = WorkerPool(echo, workers=3)
    returned = []
    async with anyio.create_task_group() as tg:

        async def run_pool(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            await pool.run(task_status=task_status)
            returned.append("run returned")

        await tg.start(run_pool)
        assert "x" == await pool.execute("x")
        assert [] == returned
        await pool.shutdown()
    assert ["run returned"] == returned


async def test_exception_in_body_cancels_work_and_propagates_unchanged() -> None:
    """An error in the async with body cancels the pool's work, no drain."""
    gate = Gate()
    error = KeyError("body")
    with pytest.raises(KeyError) as caught:  # noqa: PT012 - the body is the subject
        async with WorkerPool(gate, workers=1) as pool:
            running = await pool.submit("running")
            queued = await pool.submit("queued")
            await anyio.wait_all_tasks_blocked()
            raise error
    assert error is caught.value
    assert (TicketState.CANCELLED, TicketState.CANCELLED) == (
        running.state,
        queued.state,
    )
    assert ["running"] == gate.started
    with pytest.raises(RequestCancelled):
        await queued.result()


async def test_run_twice_is_an_error() -> None:
    """A pool runs once."""
    async with WorkerPool(echo) as pool:
        with pytest.raises(RuntimeError, match="already started"):
            await pool.run()


async def test_only_workers_and_one_timekeeper_run() -> None:
    """The pool's task group holds its workers and its timekeeper, nothing else."""
    async with WorkerPool(echo, workers=4, name="p") as pool:
        await anyio.wait_all_tasks_blocked()
        names = pool_task_names(pool)
        assert sorted([*(f"p-worker-{i}" for i in range(4)), "p-timekeeper"]) == names


def test_properties_report_what_the_pool_was_built_with() -> None:
    """name, backpressure, max_workers and max_queue_size, as given."""
    pool = WorkerPool(
        echo, workers=3, max_queue_size=7, backpressure=Backpressure.SHED, name="p"
    )
    assert ("p", Backpressure.SHED, 3, 7) == (
        pool.name,
        pool.backpressure,
        pool.max_workers,
        pool.max_queue_size,
    )
    unbounded = WorkerPool(echo, max_queue_size=None)
    assert (Backpressure.REJECT, None) == (
        unbounded.backpressure,
        unbounded.max_queue_size,
    )


async def test_aexit_without_aenter_is_a_runtime_error() -> None:
    """Exiting a pool never entered says so, and leaves the pool usable."""
    pool = WorkerPool(echo, name="never-entered")
    with pytest.raises(RuntimeError, match="without __aenter__"):
        await pool.__aexit__(None, None, None)
    async with pool:
        assert 1 == await pool.execute(1)


async def test_entering_in_a_cancelled_scope_starts_nothing_and_closes() -> None:
    """The cancellation propagates from __aenter__; no task is left behind."""
    pool = WorkerPool(echo, name="cancelled-entry")
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with pool:
            pytest.fail("the body ran in a cancelled scope")
    assert scope.cancelled_caught
    assert ("closed", []) == (pool.status().state, pool_task_names(pool))
    with pytest.raises(PoolClosed):
        pool.submit_nowait("late")


async def test_cancelled_while_exiting_cancels_the_drain_and_its_requests() -> None:
    """A cancellation of the caller during __aexit__'s drain stops the pool at once."""
    gate = Gate()
    states: list[str] = []
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as outer:
            async with WorkerPool(gate, workers=1, name="exit-cancelled") as pool:
                running = await pool.submit("running")
                queued = await pool.submit("queued")

                async def cancel_the_drain() -> None:
                    await anyio.wait_all_tasks_blocked()  # __aexit__ is draining
                    states.append(pool.status().state)
                    outer.cancel()

                tg.start_soon(cancel_the_drain)
    assert outer.cancelled_caught
    assert ["draining"] == states
    assert (TicketState.CANCELLED, TicketState.CANCELLED) == (
        running.state,
        queued.state,
    )
    assert (["running"], []) == (gate.started, gate.finished)
    assert ("closed", []) == (pool.status().state, pool_task_names(pool))


# -- backpressure -------------------------------------------------------------------


async def test_reject_raises_queue_full_at_once() -> None:
    """REJECT: a full queue raises QueueFull carrying max_size and priority."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, max_queue_size=2) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("a")
        pool.submit_nowait("b")
        with pytest.raises(QueueFull) as caught:
            await pool.submit("c", priority=Priority.CRITICAL)
        assert (2, Priority.CRITICAL) == (caught.value.max_size, caught.value.priority)
        with pytest.raises(QueueFull):
            pool.submit_nowait("d")
        assert 2 == pool.status().rejected
        gate.open.set()


async def test_block_waits_for_room_in_arrival_order() -> None:
    """BLOCK: submitters wait for room and enter the queue first come, first served."""
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, max_queue_size=1, backpressure=Backpressure.BLOCK
    ) as pool:
        await pool.submit("running")
        await pool.submit("queued")
        await anyio.wait_all_tasks_blocked()
        entered: list[str] = []
        async with anyio.create_task_group() as tg:
            for name in ("first", "second"):

                async def submit(name: str = name) -> None:
                    await pool.submit(name)
                    entered.append(name)

                tg.start_soon(submit)
                await anyio.wait_all_tasks_blocked()
            assert [] == entered
            with pytest.raises(QueueFull):
                pool.submit_nowait("nowait never blocks")
            gate.open.set()
        assert ["first", "second"] == entered
    assert ["running", "queued", "first", "second"] == gate.finished


async def test_cancelled_blocked_submitter_enqueues_nothing() -> None:
    """A BLOCK submitter cancelled while waiting for room queues nothing."""
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, max_queue_size=1, backpressure=Backpressure.BLOCK
    ) as pool:
        await pool.submit("running")
        await pool.submit("queued")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.submit("cancelled")
        assert 2 == pool.status().submitted
        gate.open.set()
    assert ["running", "queued"] == gate.finished


async def test_shed_evicts_newest_of_the_lowest_level_if_strictly_lower() -> None:
    """SHED: the newest lowest-priority request makes room for a higher one."""
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, max_queue_size=3, backpressure=Backpressure.SHED
    ) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        low_old = await pool.submit("low-old", priority=Priority.LOW)
        low_new = await pool.submit("low-new", priority=Priority.LOW)
        normal = await pool.submit("normal", priority=Priority.NORMAL)
        with pytest.raises(QueueFull):
            await pool.submit("low-again", priority=Priority.LOW)  # not strictly lower
        high = pool.submit_nowait("high", priority=Priority.HIGH)
        assert TicketState.SHED == low_new.state
        with pytest.raises(RequestShed):
            await low_new.result()
        assert [2, 1, 0] == [low_old.position, normal.position, high.position]
        status = pool.status()
        assert (1, 1) == (status.shed, status.rejected)
        gate.open.set()
    assert ["running", "high", "normal", "low-old"] == gate.finished


async def test_execute_returns_the_result_or_raises_the_handlers_own_error() -> None:
    """execute gives the return value, or re-raises the very exception object."""
    error = ValueError("boom")

    async def handler(request: object) -> object:
        await anyio.lowlevel.checkpoint()
        if request == "fail":
            raise error
        return request

    async with WorkerPool(handler) as pool:
        assert 42 == await pool.execute(42)
        with pytest.raises(ValueError, match="boom") as caught:
            await pool.execute("fail")
        assert error is caught.value


# -- tickets ------------------------------------------------------------------------


async def test_priority_order_with_one_worker_and_a_prefilled_queue() -> None:
    """With one worker, queued requests run by priority, FIFO within a level."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("blocker")
        await anyio.wait_all_tasks_blocked()
        order = [
            ("low-1", Priority.LOW),
            ("normal-1", Priority.NORMAL),
            ("custom-10", 10),
            ("critical", Priority.CRITICAL),
            ("normal-2", Priority.NORMAL),
            ("zero", 0),
            ("high", Priority.HIGH),
            ("low-2", Priority.LOW),
        ]
        for name, level in order:
            await pool.submit(name, priority=level)
        gate.open.set()
    expected = ["blocker", "zero", "critical", "high", "normal-1", "normal-2"]
    assert [*expected, "low-1", "low-2", "custom-10"] == gate.finished


async def test_positions_are_live_across_priorities_and_as_the_queue_drains() -> None:
    """position counts the queued requests served first; None once it left."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        running = await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        low = await pool.submit("low", priority=Priority.LOW)
        normal = await pool.submit("normal")
        high = await pool.submit("high", priority=Priority.HIGH)
        normal2 = await pool.submit("normal2")
        assert None is running.position
        assert [3, 1, 0, 2] == [t.position for t in (low, normal, high, normal2)]
        assert normal.cancel()
        assert [2, None, 0, 1] == [t.position for t in (low, normal, high, normal2)]
        gate.open.set()
        await low.result()
        assert [None, None, None] == [t.position for t in (low, high, normal2)]


async def test_ticket_fields_ids_and_repr() -> None:
    """Tickets carry a unique id, priority, submitted_at and state."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, name="api") as pool:
        before = anyio.current_time()
        tickets = [await pool.submit(i, priority=p) for i, p in enumerate([2, 7])]
        after = anyio.current_time()
        await anyio.wait_all_tasks_blocked()
        assert 2 == len({t.id for t in tickets})
        assert all(t.id.startswith("api-") for t in tickets)
        assert Priority.HIGH is tickets[0].priority
        assert 7 == tickets[1].priority
        assert all(before <= t.submitted_at <= after for t in tickets)
        assert repr(tickets[0]).endswith("state=running>")
        assert repr(tickets[1]).endswith("priority=7 state=queued>")
        gate.open.set()
        for ticket in tickets:
            await ticket.result()
        expected = f"<queuekeeper.Ticket {tickets[0].id} priority=HIGH"
        assert f"{expected} state=succeeded>" == repr(tickets[0])
    with pytest.raises(TypeError, match="no public constructor"):
        Ticket(pool, 1, 3, 0.0, math.inf, math.inf)


async def test_result_is_awaited_by_many_tasks_and_after_completion() -> None:
    """Every waiter gets the result; later calls get it too."""
    gate = Gate()
    async with WorkerPool(gate) as pool:
        ticket = await pool.submit("shared")
        results = []
        async with anyio.create_task_group() as tg:
            for _ in range(3):

                async def wait() -> None:
                    results.append(await ticket.result())

                tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not ticket.done()
            gate.open.set()
        assert ["shared"] * 3 == results
        assert ticket.done()
        assert "shared" == await ticket.result()


async def test_cancel_a_queued_request_removes_it_and_it_never_runs() -> None:
    """cancel() on a queued ticket: it leaves the queue at once."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        ticket = await pool.submit("doomed")
        assert ticket.cancel()
        assert TicketState.CANCELLED == ticket.state
        assert ticket.done()
        assert 0 == pool.status().queue_size
        assert not ticket.cancel()  # already finished
        gate.open.set()
    with pytest.raises(RequestCancelled):
        await ticket.result()
    assert ["running"] == gate.started


async def test_cancel_a_running_request_cancels_its_handler() -> None:
    """cancel() on a running ticket cancels the handler through its cancel scope."""
    async with WorkerPool(hang, workers=1) as pool:
        ticket = await pool.submit("x")
        await anyio.wait_all_tasks_blocked()
        assert TicketState.RUNNING == ticket.state
        assert ticket.cancel()
        with pytest.raises(RequestCancelled):
            await ticket.result()
        assert TicketState.CANCELLED == state_of(ticket)
        again = await pool.submit("y")  # the worker lives on and takes the next one
        await anyio.wait_all_tasks_blocked()
        assert TicketState.RUNNING == again.state
        assert again.cancel()


# -- timeouts -----------------------------------------------------------------------


async def test_queue_timeout_drops_the_request_without_running_it() -> None:
    """A request that waits past queue_timeout fails with QueueTimeout, unrun."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        behind = await pool.submit("behind", priority=Priority.LOW)
        impatient = await pool.submit("impatient", queue_timeout=0.01)
        assert 1 == behind.position
        with pytest.raises(QueueTimeout):
            await impatient.result()
        assert 0 == behind.position  # it left the queue: positions shifted
        assert isinstance(QueueTimeout(), TimeoutError)
        gate.open.set()
    assert ["running", "behind"] == gate.started
    assert 1 == pool.status().timed_out


async def test_timeout_cancels_a_running_handler() -> None:
    """A running request past its timeout is cancelled and fails with RequestTimeout."""
    async with WorkerPool(hang, workers=1) as pool:
        ticket = await pool.submit("slow", timeout=0.01)
        with pytest.raises(RequestTimeout):
            await ticket.result()
        assert TicketState.TIMED_OUT == ticket.state
        health = pool.worker_health()[0]
        assert (1, 1) == (health.total_processed, health.total_errors)


async def test_timeout_covers_waiting_too() -> None:
    """A request still queued at its deadline fails then, without running."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        ticket = await pool.submit("late", timeout=0.01)
        with pytest.raises(RequestTimeout):
            await ticket.result()
        gate.open.set()
    assert ["running"] == gate.started


async def test_cancelled_execute_caller_removes_its_queued_request() -> None:
    """A caller cancelled while its request is queued: the request never runs."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:

            async def cancel_soon() -> None:
                await anyio.wait_all_tasks_blocked()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_soon)
                await pool.execute("abandoned")
        status = pool.status()
        assert (0, 1) == (status.queue_size, status.cancelled)
        gate.open.set()
    assert ["running"] == gate.started


async def test_cancelled_execute_caller_cancels_its_running_handler() -> None:
    """A caller cancelled while its request runs: the handler is cancelled."""
    cancelled = anyio.Event()

    async def handler(request: object) -> object:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return request  # pragma: no cover

    async with WorkerPool(handler, workers=1) as pool:
        with anyio.move_on_after(0.01):
            await pool.execute("abandoned")
        with anyio.fail_after(5):
            await cancelled.wait()
        assert 1 == pool.status().cancelled


# -- shutdown -----------------------------------------------------------------------


async def test_shutdown_drains_then_cancels_at_the_deadline() -> None:
    """Draining finishes what it can by the deadline and cancels the rest."""

    async def handler(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    pool = WorkerPool(handler, workers=1)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        quick = await pool.submit(0)
        slow = await pool.submit(60)
        queued = await pool.submit(0)
        await pool.shutdown(timeout=0.05)
        assert "closed" == pool.status().state
    assert [TicketState.SUCCEEDED, TicketState.CANCELLED, TicketState.CANCELLED] == [
        quick.state,
        slow.state,
        queued.state,
    ]


async def test_shutdown_without_drain_cancels_at_once() -> None:
    """drain=False cancels queued and running requests immediately."""
    gate = Gate()
    pool = WorkerPool(gate, workers=1)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        tickets = [await pool.submit(i) for i in range(3)]
        await anyio.wait_all_tasks_blocked()
        await pool.shutdown(drain=False)
    assert [TicketState.CANCELLED] * 3 == [t.state for t in tickets]
    assert [0] == gate.started


async def test_state_is_draining_while_shutdown_waits() -> None:
    """status().state goes running, draining, closed."""
    gate = Gate()
    pool = WorkerPool(gate, workers=1)
    states = []
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await pool.submit("work")
        states.append(pool.status().state)
        tg.start_soon(pool.shutdown)
        await anyio.wait_all_tasks_blocked()
        states.append(pool.status().state)
        gate.open.set()
    states.append(pool.status().state)
    assert ["running", "draining", "closed"] == states


async def test_late_and_blocked_submitters_get_pool_closed() -> None:
    """After shutdown starts, submit raises PoolClosed, blocked submitters included."""
    gate = Gate()
    pool = WorkerPool(
        gate, workers=1, max_queue_size=1, backpressure=Backpressure.BLOCK
    )
    outcomes = []
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await pool.submit("running")
        await pool.submit("queued")
        await anyio.wait_all_tasks_blocked()

        async def blocked() -> None:
            try:
                await pool.submit("blocked")
            except PoolClosed:
                outcomes.append("blocked: closed")

        tg.start_soon(blocked)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(pool.shutdown)
        await anyio.wait_all_tasks_blocked()
        for submit in (pool.submit, pool.execute):
            with pytest.raises(PoolClosed, match="shut down"):
                await submit("late")
        with pytest.raises(PoolClosed):
            pool.submit_nowait("late")
        gate.open.set()
    assert ["blocked: closed"] == outcomes
    assert ["running", "queued"] == gate.finished


async def test_nothing_pending_and_no_worker_alive_after_shutdown() -> None:
    """When shutdown returns every ticket is final and every worker has exited."""
    pool = WorkerPool(hang, workers=3, name="gone")
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        tickets = [pool.submit_nowait(i) for i in range(10)]
        await anyio.wait_all_tasks_blocked()
        await pool.shutdown(timeout=0.01)
        assert all(ticket.done() for ticket in tickets)
        assert [] == pool_task_names(pool)
        status = pool.status()
        assert (10, 10, 0) == (status.submitted, settled(status), status.active_workers)


async def test_shutdown_of_a_pool_that_never_ran_cancels_its_queue() -> None:
    """Requests queued before the pool started are cancelled by shutdown."""
    pool = WorkerPool(echo)
    ticket = pool.submit_nowait("early")
    await pool.shutdown()
    assert TicketState.CANCELLED == ticket.state
    with pytest.raises(RuntimeError, match="already started"):
        await pool.run()


# -- health and status --------------------------------------------------------------


async def test_handler_errors_never_kill_a_worker() -> None:
    """A worker whose handler raises goes on serving."""

    async def flaky(n: int) -> int:
        await anyio.lowlevel.checkpoint()
        if n % 2:
            raise ValueError(n)
        return n

    async with WorkerPool(flaky, workers=1) as pool:
        tickets = [await pool.submit(n) for n in range(6)]
        for ticket in tickets:
            with contextlib.suppress(ValueError):
                await ticket.result()
    health = pool.worker_health()[0]
    assert (6, 3, "ValueError(5)") == (
        health.total_processed,
        health.total_errors,
        health.last_error,
    )
    assert [TicketState.SUCCEEDED, TicketState.FAILED] * 3 == [t.state for t in tickets]


async def test_worker_health_reports_the_current_request() -> None:
    """worker_health shows what each worker is busy with, and since when."""
    gate = Gate()
    async with WorkerPool(gate, workers=2) as pool:
        ticket = await pool.submit("busy")
        await anyio.wait_all_tasks_blocked()
        health = pool.worker_health()
        assert [0, 1] == [worker.worker_id for worker in health]
        busy, idle = sorted(health, key=lambda worker: worker.current_request is None)
        assert isinstance(busy, WorkerHealth)
        assert (ticket.id, True) == (busy.current_request, busy.is_healthy)
        assert busy.busy_since is not None
        assert (None, None, 0) == (
            idle.current_request,
            idle.busy_since,
            idle.total_processed,
        )
        gate.open.set()


async def test_worker_is_unhealthy_after_consecutive_failures() -> None:
    """unhealthy_after failures in a row flag the worker; a success clears it."""

    async def handler(fail: bool) -> None:
        await anyio.lowlevel.checkpoint()
        if fail:
            raise RuntimeError("down")

    async with WorkerPool(handler, workers=1, unhealthy_after=2) as pool:
        for fail, healthy in [(True, True), (True, False), (False, True)]:
            with contextlib.suppress(RuntimeError):
                await pool.execute(fail)
            assert healthy == pool.worker_health()[0].is_healthy


async def test_worker_is_unhealthy_when_hung() -> None:
    """A worker busy on one request longer than hung_after reports unhealthy."""
    async with WorkerPool(hang, workers=1, hung_after=0.01) as pool:
        ticket = await pool.submit("stuck")
        await anyio.sleep(0.05)
        assert not pool.worker_health()[0].is_healthy
        ticket.cancel()


async def test_status_counts_add_up_and_report_waits() -> None:
    """Counters add up; wait percentiles are 0.0 with no data and ordered after."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, max_queue_size=2, name="s") as pool:
        empty = pool.status()
        assert (0.0, 0.0, 0.0, 0.0) == (
            empty.average_wait_time_ms,
            empty.wait_time_ms_p50,
            empty.wait_time_ms_p95,
            empty.wait_time_ms_p99,
        )
        await pool.submit("a")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("b", priority=Priority.HIGH)
        cancelled = await pool.submit("c", priority=Priority.LOW)
        with pytest.raises(QueueFull):
            await pool.submit("d")
        status = pool.status()
        assert ("s", "running", 1, 1, 2) == (
            status.name,
            status.state,
            status.max_workers,
            status.active_workers,
            status.queue_size,
        )
        assert {2: 1, 4: 1} == dict(status.queue_size_by_priority)
        assert (2, 3, 1) == (status.max_queue_size, status.submitted, status.rejected)
        cancelled.cancel()
        gate.open.set()
    status = pool.status()
    assert (3, 2, 1) == (status.submitted, status.completed, status.cancelled)
    assert status.submitted == settled(status)
    assert (
        0
        <= status.wait_time_ms_p50
        <= status.wait_time_ms_p95
        <= status.wait_time_ms_p99
    )
    assert len(status.workers) == 1


# -- bad input ----------------------------------------------------------------------


def plain(request: object) -> object:
    """A synchronous function: not a valid handler."""
    return request


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"workers": 0}, ValueError, r"^workers must be an int >= 1, not 0$"),
        ({"workers": -1}, ValueError, r"not -1$"),
        ({"workers": 1.5}, TypeError, r"not 1.5 \(float\)$"),
        ({"workers": True}, TypeError, r"not True \(bool\)$"),
        ({"max_queue_size": 0}, ValueError, r"^max_queue_size must be .* not 0$"),
        ({"max_queue_size": -1}, ValueError, r"not -1$"),
        ({"max_queue_size": 1.5}, TypeError, r"not 1.5 \(float\)$"),
        ({"max_queue_size": "3"}, TypeError, r"not '3' \(str\)$"),
        ({"max_queue_size": True}, TypeError, r"not True \(bool\)$"),
        ({"backpressure": "reject"}, TypeError, r"not 'reject' \(str\)$"),
        ({"drain_timeout": 0}, ValueError, r"^drain_timeout must be .* not 0$"),
        ({"drain_timeout": math.nan}, ValueError, r"not nan$"),
        ({"drain_timeout": math.inf}, ValueError, r"not inf$"),
        ({"drain_timeout": "1"}, TypeError, r"not '1' \(str\)$"),
        ({"name": ""}, ValueError, r"^name must be a non-empty str"),
        ({"name": 3}, TypeError, r"^name must be a str, not 3 \(int\)$"),
        ({"hung_after": -1}, ValueError, r"^hung_after must be .* not -1$"),
        ({"unhealthy_after": 0}, ValueError, r"^unhealthy_after must be an int >= 1"),
        ({"cancel_grace": True}, TypeError, r"^cancel_grace must be .* not True"),
    ],
)
def test_bad_construction_arguments_name_the_value(
    kwargs: dict[str, object], error: type[Exception], pattern: str
) -> None:
    """Every bad option raises TypeError/ValueError naming it and its value."""
    with pytest.raises(error, match=pattern):
        WorkerPool(echo, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("handler", [None, 42, "handler", plain])
def test_handler_must_be_an_async_callable(handler: object) -> None:
    """A missing or synchronous handler is refused at construction."""
    with pytest.raises(TypeError, match="handler must be an async callable"):
        WorkerPool(handler)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"priority": None}, TypeError, r"not None \(NoneType\)$"),
        ({"priority": 1.0}, TypeError, r"not 1.0 \(float\)$"),
        ({"priority": "HIGH"}, TypeError, r"not 'HIGH' \(str\)$"),
        ({"priority": True}, TypeError, r"not True \(bool\)$"),
        ({"timeout": 0}, ValueError, r"^timeout must be .* not 0$"),
        ({"timeout": -1}, ValueError, r"not -1$"),
        ({"timeout": math.nan}, ValueError, r"not nan$"),
        ({"timeout": math.inf}, ValueError, r"not inf$"),
        ({"timeout": "1"}, TypeError, r"not '1' \(str\)$"),
        ({"queue_timeout": 0.0}, ValueError, r"^queue_timeout must be .* not 0.0$"),
        ({"queue_timeout": True}, TypeError, r"not True \(bool\)$"),
    ],
)
async def test_bad_submit_arguments_name_the_value_and_lose_nothing(
    kwargs: dict[str, object], error: type[Exception], pattern: str
) -> None:
    """Bad submit arguments raise; queued work is untouched and the pool serves on."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        queued = await pool.submit("queued")
        with pytest.raises(error, match=pattern):
            await pool.submit("bad", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(error, match=pattern):
            pool.submit_nowait("bad", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(error, match=pattern):
            await pool.execute("bad", **kwargs)  # type: ignore[arg-type]
        assert (0, 2) == (queued.position, pool.status().submitted)
        gate.open.set()
        assert "after" == await pool.execute("after")
    assert ["running", "queued", "after"] == gate.finished


async def test_bad_shutdown_timeout_is_rejected() -> None:
    """shutdown(timeout=...) is validated like the other durations."""
    async with WorkerPool(echo) as pool:
        with pytest.raises(ValueError, match=r"^timeout must be .* not -2$"):
            await pool.shutdown(timeout=-2)
        assert "still serving" == await pool.execute("still serving")
