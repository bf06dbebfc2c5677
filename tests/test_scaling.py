"""Reserved workers, resize() and autoscale, in-process."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from helpers import Gate, echo, metric_total, worker_names
from queuekeeper import (
    Autoscale,
    Backpressure,
    PoolClosed,
    Priority,
    PrometheusMetrics,
    TicketState,
    WorkerPool,
)
from queuekeeper._pool._checks import MAX_WORKERS
from queuekeeper._pool._scaling import Autoscaler
from queuekeeper._util import process_name

pytestmark = pytest.mark.anyio


class Picky(Gate):
    """A gate that lets CRITICAL requests (named "crit...") through at once."""

    async def __call__(self, request: object) -> object:
        if isinstance(request, str) and request.startswith("crit"):
            self.started.append(request)
            self.finished.append(request)
            return request
        return await super().__call__(request)


class Held:
    """A handler whose requests each wait until the test releases them by name."""

    def __init__(self) -> None:
        self.started: list[object] = []
        self.events: dict[object, anyio.Event] = {}

    def release(self, *requests: object) -> None:
        """Let these requests finish (now, or as soon as they start)."""
        for request in requests:
            self.events.setdefault(request, anyio.Event()).set()

    async def __call__(self, request: object) -> object:
        self.started.append(request)
        await self.events.setdefault(request, anyio.Event()).wait()
        return request


def alive(pool: WorkerPool[Any, Any]) -> int:
    """The pool's workers alive in this process, as its status says."""
    return pool.status().workers_alive[process_name()]


# -- reserved workers ------------------------------------------------------------------


async def test_a_reserved_worker_starts_a_critical_request_among_slow_low_ones() -> (
    None
):
    """Slow LOW requests fill every other worker; a CRITICAL one starts at once."""
    gate = Picky()
    async with WorkerPool(gate, workers=3, reserved={Priority.CRITICAL: 1}) as pool:
        lows = [await pool.submit(f"low{i}", priority=Priority.LOW) for i in range(6)]
        await anyio.wait_all_tasks_blocked()
        assert ["low0", "low1"] == gate.started  # the reserved worker took none
        assert 4 == pool.status().queue_size
        with anyio.fail_after(5):
            assert "crit" == await pool.execute("crit", priority=Priority.CRITICAL)
        assert not gate.finished[:-1]  # the LOW requests still run
        health = {h.worker_id: h for h in pool.worker_health()}
        assert (1, 1) == (health[0].reserved_for, health[0].total_processed)
        assert [None, None] == [health[1].reserved_for, health[2].reserved_for]
        gate.open.set()
        for ticket in lows:
            assert ticket.request == await ticket.result()


async def test_reserved_workers_take_their_level_and_above_only() -> None:
    """Reserved for HIGH: takes CRITICAL and HIGH, never NORMAL, fewest levels first."""
    gate = Gate()
    reserved = {Priority.CRITICAL: 1, Priority.HIGH: 1}
    async with WorkerPool(gate, workers=3, reserved=reserved) as pool:
        await pool.submit("normal0", priority=Priority.NORMAL)
        await pool.submit("normal1", priority=Priority.NORMAL)
        await anyio.wait_all_tasks_blocked()
        assert ["normal0"] == gate.started
        await pool.submit("high", priority=Priority.HIGH)
        await anyio.wait_all_tasks_blocked()
        assert ["normal0", "high"] == gate.started
        await pool.submit("crit", priority=Priority.CRITICAL)
        await anyio.wait_all_tasks_blocked()
        assert ["normal0", "high", "crit"] == gate.started
        by_request = {h.current_request: h.reserved_for for h in pool.worker_health()}
        assert {1, 2, None} == set(by_request.values())
        assert 1 == pool.status().queue_size
        gate.open.set()
        await anyio.wait_all_tasks_blocked()  # both reserved workers wait again
    assert 4 == pool.status().completed


async def test_an_idle_reserved_worker_is_handed_a_critical_request_first() -> None:
    """With both idle, the reserved worker gets the CRITICAL request; LOW still runs."""
    gate = Gate()
    async with WorkerPool(gate, workers=2, reserved={Priority.CRITICAL: 1}) as pool:
        await anyio.wait_all_tasks_blocked()
        await pool.submit("crit", priority=Priority.CRITICAL)
        await pool.submit("low", priority=Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        assert ["crit", "low"] == gate.started
        gate.open.set()


async def test_a_full_queue_of_low_requests_does_not_refuse_a_critical_one() -> None:
    """REJECT: an idle reserved worker takes a CRITICAL request a full queue refuses."""
    gate = Picky()
    async with WorkerPool(
        gate, workers=2, max_queue_size=1, reserved={Priority.CRITICAL: 1}
    ) as pool:
        await pool.submit("low0", priority=Priority.LOW)
        await pool.submit("low1", priority=Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            assert "crit" == await pool.execute("crit", priority=Priority.CRITICAL)
        assert 0 == pool.status().rejected
        gate.open.set()


async def test_a_reserved_worker_takes_a_blocked_critical_request_first() -> None:
    """BLOCK: a CRITICAL submitter waiting for room is served by the reserved worker."""
    held = Held()
    async with WorkerPool(
        held,
        workers=2,
        max_queue_size=1,
        backpressure=Backpressure.BLOCK,
        reserved={Priority.CRITICAL: 1},
    ) as pool:
        await anyio.wait_all_tasks_blocked()  # every worker waits for work
        await pool.submit("crit0", priority=Priority.CRITICAL)
        await pool.submit("low0", priority=Priority.LOW)
        low1 = await pool.submit("low1", priority=Priority.LOW)  # fills the queue
        await anyio.wait_all_tasks_blocked()
        assert ["crit0", "low0"] == held.started
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(
                functools.partial(pool.submit, "low2", priority=Priority.LOW)
            )
            await anyio.wait_all_tasks_blocked()
            task_group.start_soon(
                functools.partial(pool.submit, "crit1", priority=Priority.CRITICAL)
            )
            await anyio.wait_all_tasks_blocked()
            assert ["crit0", "low0"] == held.started  # crit1 waits for room
            held.release("crit0")
            await anyio.wait_all_tasks_blocked()
            # The reserved worker took crit1 past low1 and low2, which still wait.
            assert ["crit0", "low0", "crit1"] == held.started
            assert (TicketState.QUEUED, 0) == (low1.state, low1.position)
            held.release("crit1", "low0", "low1", "low2")
    assert (0, 5) == (pool.status().rejected, pool.status().completed)


@pytest.mark.parametrize(
    ("reserved", "error", "message"),
    [
        ({1: 3}, ValueError, r"^reserved=\{1: 3\} keeps 3 of the pool's workers=3: "),
        ({1: 2, 2: 1}, ValueError, r"^reserved=\{1: 2, 2: 1\} keeps 3 "),
        ({1: 0}, ValueError, r"^reserved\[1\] must be an int >= 1, not 0$"),
        ({1: -1}, ValueError, r"^reserved\[1\] must be an int >= 1, not -1$"),
        (
            {1: 1.5},
            TypeError,
            r"^reserved\[1\] must be an int >= 1 .* not 1\.5 \(float\)$",
        ),
        ({1: True}, TypeError, r"^reserved\[1\] must be an int >= 1 .*\(bool\)$"),
        ({"high": 1}, TypeError, r"^reserved's keys must be priorities .* not 'high'"),
        ({True: 1}, TypeError, r"^reserved's keys must be priorities .*\(bool\)$"),
        ({1.0: 1}, TypeError, r"^reserved's keys must be priorities .*\(float\)$"),
        ([(1, 1)], TypeError, r"^reserved must be None or a mapping .*\(list\)$"),
    ],
)
def test_invalid_reserved_maps_are_refused_at_construction(
    reserved: Any, error: type[Exception], message: str
) -> None:
    """Reserving every worker or more, bad levels, bad counts: a clear error."""
    with pytest.raises(error, match=message):
        WorkerPool(echo, workers=3, reserved=reserved)


def test_an_empty_reserved_map_reserves_nothing() -> None:
    """{} is the same as None: no worker is reserved."""
    pool = WorkerPool(echo, workers=2, reserved={})
    assert [None, None] == [h.reserved_for for h in pool.worker_health()]


# -- resize --------------------------------------------------------------------------


async def test_resize_grows_at_once_in_the_pools_task_group() -> None:
    """New workers start queued requests at once; status and health follow."""
    gate = Gate()
    async with WorkerPool(gate, workers=1, name="grow") as pool:
        for i in range(4):
            await pool.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert [0] == gate.started
        pool.resize(3)
        assert 3 == pool.max_workers == pool.status().max_workers
        await anyio.wait_all_tasks_blocked()
        assert [0, 1, 2] == gate.started
        assert 3 == alive(pool) == len(pool.worker_health())
        assert [0, 1, 2] == [h.worker_id for h in pool.worker_health()]
        assert ["grow-worker-0", "grow-worker-1", "grow-worker-2"] == worker_names(pool)
        assert 3 == pool.status().active_workers
        gate.open.set()
    assert 4 == pool.status().completed


async def test_resize_shrinks_by_retiring_workers_after_their_request() -> None:
    """Busy workers finish their request (none cancelled), then retire."""
    gate = Gate()
    async with WorkerPool(gate, workers=4, name="shrink") as pool:
        tickets = [await pool.submit(i) for i in range(6)]
        await anyio.wait_all_tasks_blocked()
        pool.resize(1)
        assert 1 == pool.max_workers == pool.status().max_workers
        await anyio.wait_all_tasks_blocked()
        # Still running their requests, so still listed.
        assert 4 == alive(pool) == len(pool.worker_health())
        assert 4 == pool.status().active_workers
        gate.open.set()
        for ticket in tickets:
            assert ticket.request == await ticket.result()
        await anyio.wait_all_tasks_blocked()
        assert 1 == alive(pool) == len(pool.worker_health()) == len(worker_names(pool))
        # One worker from now on: one request at a time.
        gate.open = anyio.Event()
        more = [await pool.submit(i) for i in range(6, 9)]
        await anyio.wait_all_tasks_blocked()
        assert 1 == pool.status().active_workers
        gate.open.set()
        for ticket in more:
            await ticket.result()
    status = pool.status()
    assert (9, 9, 0) == (status.submitted, status.completed, status.cancelled)


async def test_idle_workers_retire_at_once() -> None:
    """Shrinking an idle pool: the extra workers' tasks end without a request."""
    async with WorkerPool(echo, workers=5, name="idle") as pool:
        await anyio.wait_all_tasks_blocked()
        pool.resize(2)
        await anyio.wait_all_tasks_blocked()
        assert 2 == alive(pool) == len(pool.worker_health()) == len(worker_names(pool))
        assert 0 == pool.status().queue_size
        assert 7 == await pool.execute(7)
        pool.resize(4)
        await anyio.wait_all_tasks_blocked()
        assert 4 == alive(pool) == len(worker_names(pool))
        # New workers have new ids.
        assert [5, 6] == [h.worker_id for h in pool.worker_health()][2:]


async def test_growing_again_keeps_the_workers_that_were_to_retire() -> None:
    """resize(1) then resize(3) while busy: no new worker, none retires."""
    gate = Gate()
    async with WorkerPool(gate, workers=3) as pool:
        for i in range(3):
            await pool.submit(i)
        await anyio.wait_all_tasks_blocked()
        pool.resize(1)
        pool.resize(3)
        gate.open.set()
        await anyio.wait_all_tasks_blocked()
        assert [0, 1, 2] == [h.worker_id for h in pool.worker_health()]
        assert 3 == alive(pool)


async def test_the_reserved_workers_stay_when_the_pool_shrinks() -> None:
    """A shrink retires unreserved workers only; reserved ones keep serving."""
    gate = Picky()
    async with WorkerPool(gate, workers=4, reserved={Priority.CRITICAL: 1}) as pool:
        await anyio.wait_all_tasks_blocked()
        pool.resize(2)
        await anyio.wait_all_tasks_blocked()
        assert [1, None] == [h.reserved_for for h in pool.worker_health()]
        await pool.submit("low", priority=Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            assert "crit" == await pool.execute("crit", priority=Priority.CRITICAL)
        with pytest.raises(
            ValueError, match=r"^workers=1 must be more than the pool's 1 reserved"
        ):
            pool.resize(1)
        gate.open.set()


async def test_resize_before_the_pool_starts_sets_its_workers() -> None:
    """Before it runs, resize() changes how many workers it will start."""
    pool = WorkerPool(echo, workers=2)
    pool.resize(4)
    assert 4 == pool.max_workers == len(pool.worker_health())
    pool.resize(3)
    assert [0, 1, 2] == [h.worker_id for h in pool.worker_health()]
    async with pool:
        await anyio.wait_all_tasks_blocked()
        assert 3 == alive(pool) == len(worker_names(pool))
    with pytest.raises(
        PoolClosed, match=r"^WorkerPool 'default' is shut down; it cannot be resized$"
    ):
        pool.resize(5)


async def test_resize_after_shutdown_began_raises_pool_closed() -> None:
    """While draining, resize() raises PoolClosed too."""
    gate = Gate()
    async with WorkerPool(gate, workers=1) as pool:
        await pool.submit(1)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            assert "draining" == pool.status().state
            with pytest.raises(PoolClosed):
                pool.resize(2)
            gate.open.set()


@pytest.mark.parametrize(
    ("workers", "error", "message"),
    [
        ("2", TypeError, r"^workers must be an int >= 1, not '2' \(str\)$"),
        (True, TypeError, r"^workers must be an int >= 1, not True \(bool\)$"),
        (2.0, TypeError, r"^workers must be an int >= 1, not 2\.0 \(float\)$"),
        (0, ValueError, r"^workers must be an int from 1 to 1,000,000, not 0$"),
        (-3, ValueError, r"^workers must be an int from 1 to 1,000,000, not -3$"),
        (MAX_WORKERS + 1, ValueError, r"^workers must be an int from 1 to 1,000,000, "),
    ],
)
def test_resize_refuses_bad_values(
    workers: Any, error: type[Exception], message: str
) -> None:
    """resize() raises TypeError/ValueError naming the value, and changes nothing."""
    pool = WorkerPool(echo, workers=2)
    with pytest.raises(error, match=message):
        pool.resize(workers)
    assert 2 == pool.max_workers


async def test_metrics_follow_resize() -> None:
    """The workers, workers-alive and active-workers gauges follow every change."""
    registry = CollectorRegistry()
    gate = Gate()
    async with WorkerPool(
        gate, workers=1, name="gauged", metrics=PrometheusMetrics(registry)
    ) as pool:

        def gauge(name: str) -> float:
            return metric_total(registry, f"queuekeeper_{name}", pool="gauged")

        for i in range(3):
            await pool.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert (1, 1, 1) == (
            gauge("workers"),
            gauge("queue_workers_alive"),
            gauge("queue_active_workers"),
        )
        pool.resize(3)
        await anyio.wait_all_tasks_blocked()
        assert (3, 3, 3) == (
            gauge("workers"),
            gauge("queue_workers_alive"),
            gauge("queue_active_workers"),
        )
        pool.resize(2)
        assert 2 == gauge("workers")
        gate.open.set()
        await anyio.wait_all_tasks_blocked()
        assert (2, 2, 0) == (
            gauge("workers"),
            gauge("queue_workers_alive"),
            gauge("queue_active_workers"),
        )


# -- autoscale -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0,), {}, ValueError, r"^Autoscale max_workers must be an int >= 1, not 0$"),
        (("4",), {}, TypeError, r"^Autoscale max_workers must be an int >= 1, not '4'"),
        ((4,), {"target_wait": 0}, ValueError, r"^Autoscale target_wait must be "),
        ((4,), {"target_wait": "1"}, TypeError, r"^Autoscale target_wait must be "),
        ((4,), {"cooldown": -1.0}, ValueError, r"^Autoscale cooldown must be "),
        (
            (4,),
            {"cooldown": None},
            ValueError,
            r"^Autoscale cooldown must be a finite ",
        ),
    ],
)
def test_autoscale_refuses_bad_values(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Autoscale(...) validates what it is given, naming it."""
    with pytest.raises(error, match=message):
        Autoscale(*args, **kwargs)


def test_autoscale_is_checked_against_the_pool() -> None:
    """A pool refuses a non-Autoscale and a max_workers below its workers."""
    with pytest.raises(
        TypeError,
        match=r"^autoscale must be None or a queuekeeper\.Autoscale, not 4 \(int\)$",
    ):
        WorkerPool(echo, workers=2, autoscale=4)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"^autoscale max_workers=2 must be at least the pool's workers=3$",
    ):
        WorkerPool(echo, workers=3, autoscale=Autoscale(2))
    pool = WorkerPool(
        echo, workers=2, autoscale=Autoscale(4, target_wait=1, cooldown=2)
    )
    assert Autoscale(4, target_wait=1.0, cooldown=2.0) == pool.autoscale
    with pytest.raises(
        ValueError,
        match=r"^workers=5 must be at most the pool's autoscale max_workers=4$",
    ):
        pool.resize(5)
    pool.resize(3)
    assert 3 == pool.max_workers


@pytest.mark.trio
async def test_autoscale_grows_under_a_burst_and_shrinks_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """From 1 worker up to max_workers while requests wait, back to 1 when idle."""
    sizes: list[int] = []

    async def slow(request: int) -> int:
        await trio.sleep(1)
        return request

    settings = Autoscale(4, target_wait=0.5, cooldown=5)
    async with WorkerPool(slow, workers=1, autoscale=settings, name="auto") as pool:
        tickets = [await pool.submit(i) for i in range(20)]
        while not all(ticket.done() for ticket in tickets):
            sizes.append(pool.status().max_workers)
            await trio.sleep(0.1)
        assert list(range(20)) == [await ticket.result() for ticket in tickets]
        assert 4 == max(sizes)
        assert 4 == pool.status().max_workers  # not idle for long yet
        await trio.sleep(settings.cooldown + 1)
        assert 1 == pool.status().max_workers
        await trio.lowlevel.checkpoint()
        assert 1 == alive(pool) == len(pool.worker_health())
        status = pool.status()
        assert (20, 20) == (status.submitted, status.completed)
        # A manual resize sets the floor; the autoscaler keeps it.
        pool.resize(2)
        await trio.sleep(settings.cooldown * 2)
        assert 2 == pool.status().max_workers


@pytest.mark.trio
async def test_autoscale_does_not_grow_while_requests_wait_briefly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Requests that start within target_wait never make the pool grow."""

    async def quick(request: int) -> int:
        await trio.sleep(0.1)
        return request

    async with WorkerPool(
        quick, workers=2, autoscale=Autoscale(8, target_wait=1)
    ) as pool:
        for _ in range(20):
            await pool.execute(1)
            assert 2 == pool.max_workers
        await pool.submit(1)
        await pool.submit(2)
        await pool.submit(3)
        await trio.sleep(2)
        assert 2 == pool.max_workers


async def test_a_reserved_worker_takes_from_the_queue_as_it_frees_up() -> None:
    """A CRITICAL request queued while every worker is busy goes to the reserved one."""
    held = Held()
    async with WorkerPool(
        held,
        workers=2,
        max_queue_size=2,
        backpressure=Backpressure.BLOCK,
        reserved={Priority.CRITICAL: 1},
    ) as pool:
        await anyio.wait_all_tasks_blocked()  # every worker waits for work
        await pool.submit("crit0", priority=Priority.CRITICAL)
        await pool.submit("low0", priority=Priority.LOW)
        await pool.submit("low1", priority=Priority.LOW)
        await pool.submit("crit1", priority=Priority.CRITICAL)  # queued: all busy
        async with anyio.create_task_group() as task_group:
            # Blocked for room: a LOW request first, then a CRITICAL one.
            task_group.start_soon(
                functools.partial(pool.submit, "low2", priority=Priority.LOW)
            )
            await anyio.wait_all_tasks_blocked()
            task_group.start_soon(
                functools.partial(pool.submit, "crit2", priority=Priority.CRITICAL)
            )
            await anyio.wait_all_tasks_blocked()
            held.release("crit0")
            await anyio.wait_all_tasks_blocked()
            assert ["crit0", "low0", "crit1"] == held.started
            held.release("crit1")
            await anyio.wait_all_tasks_blocked()
        # Past the blocked LOW request.
        assert ["crit0", "low0", "crit1", "crit2"] == held.started
        held.release("crit2", "low0", "low1", "low2")
    assert 6 == pool.status().completed


class Awaitable:
    """An awaitable that is not a coroutine."""

    def __await__(self) -> Any:
        return anyio.lowlevel.checkpoint().__await__()


async def test_reserved_workers_settle_every_outcome() -> None:
    """Failures, timeouts, awaitables and cancels: a reserved worker goes on."""
    gate = Gate()

    async def fail() -> None:
        raise ValueError("boom")

    async def hang() -> None:
        await anyio.sleep_forever()

    async def refuse() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise ValueError("refused") from None

    async def quick() -> str:
        await anyio.lowlevel.checkpoint()
        return "quick"

    actions = {"fail": fail, "hang": hang, "refuse": refuse, "quick": quick}

    def dispatch(request: str) -> Any:
        if request == "low":
            return gate(request)
        if request == "awaitable":
            return Awaitable()  # not a coroutine
        return actions[request]()

    crit = Priority.CRITICAL
    async with WorkerPool[str, Any](
        lambda request: dispatch(request),  # noqa: PLW0108 (a def would be refused)
        workers=2,
        reserved={crit: 1},
    ) as pool:
        await pool.submit("low", priority=Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ValueError, match=r"^boom$"):
            await pool.execute("fail", priority=crit)
        with pytest.raises(TimeoutError):
            await pool.execute("hang", priority=crit, timeout=0.01)
        assert None is await pool.execute("awaitable", priority=crit)
        assert "quick" == await pool.execute("quick", priority=crit, timeout=60)
        # Cancelled while running, its handler raising instead.
        ticket = await pool.submit("refuse", priority=crit)
        await anyio.wait_all_tasks_blocked()
        assert ticket.cancel()
        with pytest.raises(ValueError, match=r"^refused$"):
            await ticket.result()
        # Handed to the idle reserved worker, cancelled before it starts.
        ticket = await pool.submit("quick", priority=crit)
        assert ticket.cancel()
        assert "quick" == await pool.execute("quick", priority=crit)
        health = pool.worker_health()[0]
        assert (1, 6, 3) == (
            health.reserved_for,
            health.total_processed,
            health.total_errors,
        )
        gate.open.set()


async def test_cancelling_the_pool_ends_its_idle_reserved_workers() -> None:
    """Cancelled from outside, a reserved worker waiting for work ends with the pool."""
    async with anyio.create_task_group() as task_group:
        pool = WorkerPool(echo, workers=2, reserved={Priority.CRITICAL: 1})
        await task_group.start(pool.run)
        await anyio.wait_all_tasks_blocked()
        task_group.cancel_scope.cancel()
    assert "closed" == pool.status().state
    assert 0 == alive(pool)


async def test_resize_to_the_same_size_changes_nothing() -> None:
    """resize(n) with n workers already: no worker starts or retires."""
    async with WorkerPool(echo, workers=2) as pool:
        await anyio.wait_all_tasks_blocked()
        pool.resize(2)
        await anyio.wait_all_tasks_blocked()
        assert [0, 1] == [h.worker_id for h in pool.worker_health()]


def test_autoscale_needs_workers_to_start_from() -> None:
    """A pool with no workers (on Redis) cannot autoscale."""
    with pytest.raises(ValueError, match=r"^autoscale needs a pool with workers >= 1"):
        WorkerPool(echo, workers=0, autoscale=Autoscale(2), queue=FakeShared())


class FakeShared:
    """Passes for a shared queue at construction (the check comes first)."""

    def _link(self, **options: Any) -> Any:
        raise AssertionError("not reached")


async def test_workers_to_retire_serve_on_once_shutdown_begins() -> None:
    """Shrunk, then shut down before they finish: the extra workers drain too."""
    gate = Gate()
    async with WorkerPool(gate, workers=2) as pool:
        tickets = [await pool.submit(i) for i in range(4)]
        await anyio.wait_all_tasks_blocked()
        pool.resize(1)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            gate.open.set()
        assert [0, 1, 2, 3] == [await ticket.result() for ticket in tickets]
        # Both served to the end: neither retired.
        assert 2 == len(pool.worker_health())


async def test_the_autoscaler_acts_on_nothing_once_the_pool_stopped() -> None:
    """A pool that stops while its autoscaler sleeps ends the autoscaler's loop.

    Whether a pool's end finds its autoscaler asleep (cancelled there) or about to
    look again depends on timing; this drives both of its checks directly.
    """
    stops = iter([False, True, True])  # before the sleep, after it, at the top

    def nothing_to_see(*_: object) -> Any:
        pytest.fail("a stopped pool's autoscaler looked at it")

    scaler = Autoscaler(
        Autoscale(2, target_wait=0.01, cooldown=0.04),
        size=nothing_to_see,
        floor=nothing_to_see,
        idle=nothing_to_see,
        queued=nothing_to_see,
        recent=nothing_to_see,
        resize=nothing_to_see,
        stopped=lambda: next(stops),
        clock=anyio.current_time,
    )
    with anyio.fail_after(10):
        await scaler.run()
    assert [] == list(stops)
