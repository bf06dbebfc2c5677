"""Retries and dead letters in-process: WorkerPool(retry=..., dead_letter_size=...)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from helpers import Boom, metric_total, settled, until
from queuekeeper import (
    Backpressure,
    DeadLetter,
    Priority,
    PrometheusMetrics,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestTimeout,
    Retry,
    TicketState,
    WorkerPool,
)

if TYPE_CHECKING:
    from collections.abc import Hashable

pytestmark = pytest.mark.anyio

#: A backoff no test waits out: the request stays in it until the test acts.
FOREVER = 1e6
#: Two runs, with a backoff of FOREVER between them.
SLOW_RETRY = Retry(2, backoff=FOREVER, max_backoff=FOREVER)


class Flaky:
    """A handler that fails each request its first *failures* runs, then echoes it.

    Each run is recorded (request, the clock's time); ``failed`` is set after a
    failure, so a test can wait for a request to go into its backoff.
    """

    def __init__(
        self, failures: int, error: type[Exception] = Boom, spare: str = ""
    ) -> None:
        self.failures = failures
        #: A request that never fails.
        self.spare = spare
        self.error = error
        self.runs: list[tuple[object, float]] = []
        self.counts: Counter[object] = Counter()
        self.failed = anyio.Event()

    async def __call__(self, request: Hashable) -> object:
        self.runs.append((request, anyio.current_time()))
        self.counts[request] += 1
        run = self.counts[request]
        await anyio.lowlevel.checkpoint()
        if run <= self.failures and request != self.spare:
            self.failed.set()
            msg = f"{request} failed on run {run}"
            raise self.error(msg)
        return request


def invariant(pool: WorkerPool[Any, Any]) -> None:
    """Submitted requests are settled, queued, running or waiting out a backoff."""
    status = pool.status()
    assert status.submitted == (
        settled(status) + status.queue_size + status.active_workers + status.retrying
    )


# -- retries ------------------------------------------------------------------------


async def test_a_retry_succeeds_on_the_third_attempt() -> None:
    """Two failures, then success: one ticket, three runs, two retries counted."""
    flaky = Flaky(2)
    retry = Retry(3, backoff=0.001, jitter=False, on=(Boom,))
    async with WorkerPool(flaky, workers=2, retry=retry) as pool:
        assert retry is pool.retry
        ticket = await pool.submit("a", priority=Priority.HIGH)
        assert 0 == ticket.attempts
        assert "a" == await ticket.result()
        assert TicketState.SUCCEEDED == ticket.state
        assert 3 == ticket.attempts
        status = pool.status()
        assert (1, 1, 0) == (status.submitted, status.completed, status.failed)
        assert (2, 0) == (status.retried, status.retrying)
        assert {Priority.HIGH: 2} == status.retried_by_priority
        assert ["a", "a", "a"] == [request for request, _ in flaky.runs]
        invariant(pool)


async def test_a_pool_without_retries_counts_one_attempt() -> None:
    """Ticket.attempts is 0 while queued, 1 once run; a failure is final."""
    flaky = Flaky(1)
    async with WorkerPool(flaky, workers=1) as pool:
        assert pool.retry is None
        ticket = pool.submit_nowait("a")
        assert 0 == ticket.attempts
        with pytest.raises(Boom):
            await ticket.result()
        assert 1 == ticket.attempts
        assert (0, 0) == (pool.status().retried, pool.status().retrying)


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}))],
)
async def test_backoffs_double_and_hold_no_worker() -> None:
    """Without jitter the backoffs are 1 s then 2 s; the one worker serves meanwhile."""
    flaky = Flaky(2)
    retry = Retry(3, backoff=1.0, jitter=False, on=Boom)
    async with WorkerPool(flaky, workers=1, retry=retry) as pool:
        start = trio.current_time()
        ticket = await pool.submit("a")
        await flaky.failed.wait()
        await anyio.wait_all_tasks_blocked()
        assert TicketState.QUEUED == ticket.state
        assert ticket.position is None
        assert ticket.eta() is None
        assert [] == [p async for p in ticket.positions()]
        assert (1, 0) == (pool.status().retrying, pool.status().queue_size)
        invariant(pool)
        # The worker is free during the backoff.
        assert "b" == await pool.execute("b")
        assert "a" == await ticket.result()
        times = [when - start for request, when in flaky.runs if request == "a"]
        assert [0.0, 1.0, 3.0] == times


async def test_exhausted_retries_fail_with_the_last_error_and_one_dead_letter() -> None:
    """After its last attempt the request fails with that run's error: a dead letter."""
    flaky = Flaky(5)
    retry = Retry(3, backoff=0, on=(Boom,))
    async with WorkerPool(
        flaky, workers=1, retry=retry, dead_letter_size=4, name="dl"
    ) as pool:
        ticket = await pool.submit(("id", 7), priority=Priority.LOW)
        with pytest.raises(Boom, match=r"on run 3$"):
            await ticket.result()
        assert TicketState.FAILED == ticket.state
        assert 3 == ticket.attempts
        status = pool.status()
        assert (1, 2, 0) == (status.failed, status.retried, status.retrying)
        assert (1, 0) == (status.dead_letters, status.dead_letters_dropped)
        letter = await pool.dead_letters.receive()
    assert isinstance(letter, DeadLetter)
    assert ticket.id == letter.ticket_id
    assert ("id", 7) == letter.request
    assert Priority.LOW == letter.priority
    assert 3 == letter.attempts
    assert isinstance(letter.error, Boom)
    assert "helpers.Boom" == letter.error_type
    assert "('id', 7) failed on run 3" == letter.error_message
    assert letter.traceback.startswith("Traceback (most recent call last):")
    assert "in __call__" in letter.traceback
    assert letter.traceback.endswith("helpers.Boom: ('id', 7) failed on run 3\n")
    assert ticket.submitted_at == letter.submitted_at
    assert ticket.finished_at == letter.finished_at
    with pytest.raises(anyio.EndOfStream):
        await pool.dead_letters.receive()


async def test_only_the_exceptions_named_in_on_are_retried() -> None:
    """With on=(ConnectionError,) a ValueError fails at once, a ConnectionError not."""
    retry = Retry(2, backoff=0, on=(ConnectionError,))
    wrong = Flaky(1, ValueError)
    async with WorkerPool(wrong, workers=1, retry=retry, dead_letter_size=1) as pool:
        ticket = await pool.submit("v")
        with pytest.raises(ValueError, match=r"^v failed on run 1$"):
            await ticket.result()
        assert (1, 0) == (ticket.attempts, pool.status().retried)
        assert 1 == (await pool.dead_letters.receive()).attempts
    right = Flaky(1, ConnectionResetError)
    async with WorkerPool(right, workers=1, retry=retry) as pool:
        assert "c" == await pool.execute("c")
        assert 1 == pool.status().retried


async def test_cancellations_are_never_retried() -> None:
    """ticket.cancel() while running ends the request, even if its handler raises."""
    started = anyio.Event()

    async def stubborn(request: str) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            if request == "raise":
                raise Boom(request)
        return request  # pragma: no cover

    retry = Retry(5, backoff=0)
    async with WorkerPool(stubborn, workers=1, retry=retry, dead_letter_size=2) as pool:
        for request, error in (("plain", RequestCancelled), ("raise", Boom)):
            started = anyio.Event()
            ticket = await pool.submit(request)
            await started.wait()
            assert ticket.cancel()
            with pytest.raises(error):
                await ticket.result()
            assert 1 == ticket.attempts
        status = pool.status()
        assert (0, 1, 1) == (status.retried, status.cancelled, status.failed)


async def test_a_callable_backoff_that_fails_fails_the_request() -> None:
    """A backoff callable that gives no number of seconds: the request fails with it."""

    def backoff(retry: int) -> float:
        return -retry

    async with WorkerPool(
        Flaky(1), workers=1, retry=Retry(3, backoff=backoff), dead_letter_size=1
    ) as pool:
        ticket = await pool.submit("a")
        with pytest.raises(ValueError, match=r"^Retry backoff\(1\) must be") as caught:
            await ticket.result()
        assert isinstance(caught.value.__cause__, Boom)
        assert (0, 1) == (pool.status().retried, pool.status().failed)
        letter = await pool.dead_letters.receive()
        assert "builtins.ValueError" == letter.error_type


# -- timeouts, cancellation and shutdown during a backoff ---------------------------


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}))],
)
async def test_the_timeout_covers_every_attempt() -> None:
    """A run cut short by the deadline after a retry, and a deadline in a backoff."""

    async def slow_failure(request: str) -> str:
        await trio.sleep(1)
        raise Boom(request)

    retry = Retry(10, backoff=1.0, jitter=False)
    async with WorkerPool(slow_failure, workers=2, retry=retry) as pool:
        start = trio.current_time()
        # Runs 0-1, backs off 1-2, runs 2-2.5: its timeout cuts the second run.
        running = await pool.submit("running", timeout=2.5)
        # Runs 0-1, backs off from 1: its timeout passes at 1.5, in the backoff.
        waiting = await pool.submit("waiting", timeout=1.5)
        with pytest.raises(RequestTimeout, match=r"timed out waiting out a retry's"):
            await waiting.result()
        assert 1.5 == waiting.finished_at - start  # type: ignore[operator]
        with pytest.raises(RequestTimeout, match=r"timed out while running$") as caught:
            await running.result()
        assert 2.5 == running.finished_at - start  # type: ignore[operator]
        assert (2, 1) == (running.attempts, waiting.attempts)
        status = pool.status()
        assert (2, 0, 2) == (status.timed_out, status.retrying, status.retried)
    assert caught.value is not None


async def test_a_deadline_during_a_backoff_fails_the_request_then() -> None:
    """Its timeout passes while it waits out a long backoff: RequestTimeout, at once."""
    flaky = Flaky(1)
    async with WorkerPool(
        flaky, workers=1, retry=SLOW_RETRY, dead_letter_size=1
    ) as pool:
        ticket = await pool.submit("a", timeout=0.05)
        with pytest.raises(RequestTimeout) as caught:
            await ticket.result()
        assert isinstance(caught.value.__cause__, Boom)
        status = pool.status()
        assert (1, 0, 0) == (status.timed_out, status.retrying, status.dead_letters)


async def test_cancel_during_a_backoff() -> None:
    """ticket.cancel() while it waits out a backoff: cancelled at once, no letter."""
    flaky = Flaky(1, spare="b")
    async with WorkerPool(
        flaky, workers=1, retry=SLOW_RETRY, dead_letter_size=1
    ) as pool:
        ticket = await pool.submit("a", timeout=FOREVER)
        await flaky.failed.wait()
        await anyio.wait_all_tasks_blocked()
        assert (TicketState.QUEUED, 1) == (ticket.state, ticket.attempts)
        assert 1 == pool.status().retrying
        invariant(pool)
        assert ticket.cancel()
        assert TicketState.CANCELLED == ticket.state
        with pytest.raises(RequestCancelled):
            await ticket.result()
        status = pool.status()
        assert (0, 1, 0) == (status.retrying, status.cancelled, status.dead_letters)
        invariant(pool)
        # Its entry on the timekeeper's heap is gone with it: the pool goes on.
        assert "b" == await pool.execute("b", timeout=FOREVER)


async def test_shutdown_never_waits_on_a_backoff() -> None:
    """Requests in a backoff fail at once with their last error, as dead letters."""
    flaky = Flaky(1)
    pool = WorkerPool(flaky, workers=1, retry=SLOW_RETRY, dead_letter_size=2)
    async with pool:
        ticket = await pool.submit("a")
        await flaky.failed.wait()
        await anyio.wait_all_tasks_blocked()
        assert 1 == pool.status().retrying
        with anyio.fail_after(5):
            await pool.shutdown()
    assert TicketState.FAILED == ticket.state
    with pytest.raises(Boom, match=r"^a failed on run 1$"):
        await ticket.result()
    status = pool.status()
    assert (1, 0, 1) == (status.failed, status.retrying, status.dead_letters)
    invariant(pool)
    letters = [letter async for letter in pool.dead_letters]
    assert [("a", 1)] == [(letter.request, letter.attempts) for letter in letters]


async def test_a_failure_during_a_drain_is_not_retried() -> None:
    """Once shutdown began, a handler's error fails its request at once."""
    release = anyio.Event()

    async def late_failure(request: str) -> str:
        await release.wait()
        raise Boom(request)

    async with WorkerPool(late_failure, workers=1, retry=Retry(3, backoff=0)) as pool:
        ticket = await pool.submit("a")
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            release.set()
    with pytest.raises(Boom):
        await ticket.result()
    assert (1, 0) == (ticket.attempts, pool.status().retried)


# -- where a retried request goes back --------------------------------------------


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}))],
)
@pytest.mark.parametrize("aging", [None, 100.0])
async def test_a_retried_request_goes_behind_its_level_even_when_full(
    aging: float | None,
) -> None:
    """Queued again after what waits at its priority, past max_queue_size."""
    order: list[str] = []
    gate = anyio.Event()
    failed = set[str]()

    async def handler(request: str) -> str:
        order.append(request)
        if request == "hold":
            await gate.wait()
        if request == "retried" and request not in failed:
            failed.add(request)
            raise Boom(request)
        return request

    async with WorkerPool(
        handler,
        workers=1,
        max_queue_size=1,
        retry=Retry(2, backoff=1.0, jitter=False),
        aging=aging,
    ) as pool:
        retried = await pool.submit("retried")  # fails at once: backs off to t=1
        await anyio.wait_all_tasks_blocked()
        hold = await pool.submit("hold")
        await anyio.wait_all_tasks_blocked()
        waiting = await pool.submit("waiting")  # the queue is full
        await trio.sleep(1.5)  # the backoff ended: queued again, over max size
        status = pool.status()
        assert (2, 0) == (status.queue_size, status.retrying)
        assert 1 == retried.position
        watching = retried.positions()
        assert 1 == await watching.__anext__()
        with pytest.raises(QueueFull):
            pool.submit_nowait("refused")
        gate.set()
        assert ["hold", "waiting", "retried"] == [
            await ticket.result() for ticket in (hold, waiting, retried)
        ]
        assert [] == [position async for position in watching]  # it started
    assert ["retried", "hold", "waiting", "retried"] == order


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}))],
)
async def test_a_retried_request_goes_back_past_reserved_workers_when_full() -> None:
    """With reserved workers and aging, a full queue still takes a retried request."""
    gate = anyio.Event()
    order: list[str] = []

    async def handler(request: str) -> str:
        order.append(request)
        if request == "hold":
            await gate.wait()
        if order.count(request) == 1 and request == "low":
            raise Boom(request)
        return request

    async with WorkerPool(
        handler,
        workers=2,
        max_queue_size=1,
        reserved={Priority.CRITICAL: 1},
        aging=100.0,
        retry=Retry(2, backoff=1.0, jitter=False),
    ) as pool:
        low = await pool.submit("low", priority=Priority.LOW)  # fails: backs off
        await anyio.wait_all_tasks_blocked()
        hold = await pool.submit("hold")
        await anyio.wait_all_tasks_blocked()
        waiting = await pool.submit("waiting")  # the queue is full
        await trio.sleep(1.5)
        # Not a level the idle reserved worker takes: queued, over max size.
        assert (2, 0) == (pool.status().queue_size, pool.status().retrying)
        crit = await pool.submit("crit", priority=Priority.CRITICAL)
        assert "crit" == await crit.result()  # the reserved worker is free
        gate.set()
        assert ["hold", "waiting", "low"] == [
            await ticket.result() for ticket in (hold, waiting, low)
        ]
    assert ["low", "hold", "crit", "waiting", "low"] == order


async def test_a_coalesced_request_is_retried_for_every_sharer() -> None:
    """Sharers of a key see the work's attempts and its final outcome."""
    flaky = Flaky(1)
    async with WorkerPool(flaky, workers=1, retry=Retry(2, backoff=0)) as pool:
        first = await pool.submit("k", key="k")
        second = await pool.submit("k", key="k")
        assert ["k", "k"] == [await first.result(), await second.result()]
        assert (2, 2) == (first.attempts, second.attempts)
        assert (1, 1) == (pool.status().submitted, pool.status().coalesced)


# -- dead letters -------------------------------------------------------------------


async def test_dead_letters_drop_the_oldest_when_full() -> None:
    """Five failures, room for two: the last two are kept, three dropped and counted."""
    async with WorkerPool(Flaky(1), workers=1, dead_letter_size=2) as pool:
        tickets = [await pool.submit(i) for i in range(5)]
        for ticket in tickets:
            with pytest.raises(Boom):
                await ticket.result()
        status = pool.status()
        assert (5, 3) == (status.dead_letters, status.dead_letters_dropped)
        kept = [(await pool.dead_letters.receive()).request for _ in range(2)]
        assert [3, 4] == kept
        with anyio.move_on_after(0.01) as scope:
            await pool.dead_letters.receive()  # none left: it waits
        assert scope.cancelled_caught


async def test_a_worker_never_waits_on_dead_letters() -> None:
    """Nobody reads them: a thousand failures still settle, the workers go on."""
    async with WorkerPool(Flaky(1), workers=1, dead_letter_size=1) as pool:
        tickets = [pool.submit_nowait(i) for i in range(1000)]
        with anyio.fail_after(30):
            for ticket in tickets:
                with pytest.raises(Boom):
                    await ticket.result()
        status = pool.status()
        assert (1000, 0) == (status.failed, status.active_workers)
        assert (1000, 999) == (status.dead_letters, status.dead_letters_dropped)
        assert 999 == (await pool.dead_letters.receive()).request


async def test_only_failed_requests_become_dead_letters() -> None:
    """Cancelled, timed-out and shed requests are no dead letters; the stream ends."""
    gate = anyio.Event()

    async def handler(request: str) -> str:
        if request == "hold":
            await gate.wait()
        if request == "slow":
            await anyio.sleep_forever()
        return request

    async with WorkerPool(
        handler,
        workers=1,
        max_queue_size=1,
        backpressure=Backpressure.SHED,
        dead_letter_size=5,
    ) as pool:
        with pytest.raises(RequestTimeout):
            await pool.execute("slow", timeout=0.01)
        hold = await pool.submit("hold")
        await anyio.wait_all_tasks_blocked()
        shed = await pool.submit("shed", priority=Priority.LOW)
        cancelled = await pool.submit("cancelled", priority=Priority.HIGH)  # sheds
        cancelled.cancel()
        late = await pool.submit("late", queue_timeout=0.01)
        with pytest.raises(QueueTimeout):
            await late.result()
        gate.set()
        assert "hold" == await hold.result()
        assert (TicketState.SHED, TicketState.CANCELLED) == (
            shed.state,
            cancelled.state,
        )
    assert (0, 0) == (pool.status().dead_letters, pool.status().failed)
    assert [] == [letter async for letter in pool.dead_letters]


async def test_receiving_a_dead_letter_waits_and_is_cancel_safe() -> None:
    """A cancelled receive takes nothing; the next one gets the record; close()."""
    failing = Flaky(1)
    async with WorkerPool(failing, workers=1, dead_letter_size=3) as pool:
        letters = pool.dead_letters
        assert letters is pool.dead_letters
        with anyio.move_on_after(0.01):
            await letters.receive()
        async with anyio.create_task_group() as task_group:
            received: list[object] = []

            async def reader() -> None:
                received.append((await letters.receive()).request)

            task_group.start_soon(reader)
            task_group.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await pool.submit("a")
            await pool.submit("b")
        assert ["a", "b"] == sorted(received)  # type: ignore[type-var]
        await pool.submit("c")
        await until(lambda: pool.status().dead_letters == 3)
        async with anyio.create_task_group() as task_group:

            async def closed_reader() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await letters.receive()

            await letters.aclose()  # discards "c"
            task_group.start_soon(closed_reader)
        await pool.submit("d")  # discarded too
        await until(lambda: pool.status().dead_letters == 4)
        await letters.aclose()
        status = pool.status()
        assert (4, 2) == (status.dead_letters, status.dead_letters_dropped)


async def test_the_dead_letter_stream_wakes_a_waiting_reader_at_the_end() -> None:
    """A reader waiting as the pool closes gets EndOfStream."""
    pool: WorkerPool[Any, Any] = WorkerPool(Flaky(0), workers=1, dead_letter_size=1)
    async with anyio.create_task_group() as task_group:

        async def reader() -> None:
            with pytest.raises(anyio.EndOfStream):
                await pool.dead_letters.receive()

        await task_group.start(pool.run)
        task_group.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await pool.shutdown()


async def test_a_pool_that_never_ran_ends_its_dead_letters() -> None:
    """shutdown() of a pool never started: the stream ends."""
    pool: WorkerPool[Any, Any] = WorkerPool(Flaky(0), dead_letter_size=1)
    await pool.shutdown()
    with pytest.raises(anyio.EndOfStream):
        await pool.dead_letters.receive()


# -- the status invariant, metrics and arguments ------------------------------------


async def test_the_status_invariant_holds_with_backoffs() -> None:
    """At every step: settled + queued + running + retrying == submitted."""
    gate = anyio.Event()

    async def handler(request: int) -> int:
        if request % 3 == 0:
            await gate.wait()
        await anyio.lowlevel.checkpoint()
        if request % 2:
            raise Boom(request)
        return request

    retry = Retry(2, backoff=lambda n: FOREVER if n == 1 else 0)
    async with WorkerPool(handler, workers=2, retry=retry, dead_letter_size=8) as pool:
        tickets = [await pool.submit(i) for i in range(12)]
        await anyio.wait_all_tasks_blocked()
        invariant(pool)
        # A queued request's own deadline still expires it, retries or not.
        with pytest.raises(QueueTimeout):
            await pool.execute(12, queue_timeout=0.01)
        invariant(pool)
        status = pool.status()
        # 0 and 3 wait at the gate, 1 failed (2 ran), 4-11 are queued.
        assert (2, 1, 8) == (status.active_workers, status.retrying, status.queue_size)
        tickets[1].cancel()
        invariant(pool)
        gate.set()
        await anyio.wait_all_tasks_blocked()
        invariant(pool)
        status = pool.status()
        # The odd ones left wait out their first backoff.
        assert (0, 5, 0) == (status.active_workers, status.retrying, status.queue_size)
    invariant(pool)
    status = pool.status()
    assert (0, 0, 0) == (status.retrying, status.queue_size, status.active_workers)
    assert 13 == settled(status)


async def test_metrics_count_retries_and_dead_letters() -> None:
    """requests_retried_total by priority, dead_letters_total, *_dropped_total."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with WorkerPool(
        Flaky(2),
        workers=1,
        retry=Retry(2, backoff=0),
        dead_letter_size=1,
        metrics=metrics,
        name="m",
    ) as pool:
        for request in ("a", "b"):
            with pytest.raises(Boom):
                await pool.execute(request, priority=Priority.HIGH)
    total = metric_total
    assert 2 == total(
        registry, "queuekeeper_requests_retried_total", pool="m", priority="high"
    )
    assert 2 == total(registry, "queuekeeper_dead_letters_total", pool="m")
    assert 1 == total(registry, "queuekeeper_dead_letters_dropped_total", pool="m")
    assert {"queuekeeper_requests_retried", "queuekeeper_dead_letters"} <= {
        family.name for family in registry.collect()
    }


def test_bad_retry_and_dead_letter_arguments() -> None:
    """Wrong types and values are refused at construction, naming them."""
    with pytest.raises(
        TypeError, match=r"^retry must be None or a queuekeeper.Retry, not 3 \(int\)$"
    ):
        WorkerPool(Flaky(0), retry=3)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^dead_letter_size must be an int >= 1, not 0$"
    ):
        WorkerPool(Flaky(0), dead_letter_size=0)
    with pytest.raises(TypeError, match=r"^dead_letter_size must be an int >= 1, not"):
        WorkerPool(Flaky(0), dead_letter_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^dead_letter_size must be an int >= 1, not"):
        WorkerPool(Flaky(0), dead_letter_size=True)
    pool: WorkerPool[Any, Any] = WorkerPool(Flaky(0), name="plain")
    with pytest.raises(
        RuntimeError,
        match=r"^WorkerPool 'plain' keeps no dead letters: pass dead_letter_size=n",
    ):
        _ = pool.dead_letters
