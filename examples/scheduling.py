"""Each scheduling option's effect, in numbers this script checks itself.

    pip install 'queuekeeper[redis]'   # the Redis part only
    python examples/scheduling.py [--backend asyncio|trio] [--redis redis://HOST:PORT]

One section per option of WorkerPool, each run with and without it:

  aging=seconds       one worker, a flood of HIGH requests and one LOW request:
                      how many HIGH ones run before it
  reserved={...}      slow LOW requests fill the workers: does a CRITICAL one
                      start while they run, or wait for one to finish?
  resize(n)           grow under load, shrink as requests end; nothing is lost
  autoscale=...       a burst grows the pool, which shrinks back once idle
  submit(key=...)     identical submits while the first runs (on Redis, from two
                      pools, as from two processes): one handler run
  positions(), eta()  the last of ten queued requests watches its turn come

The sections run on the in-process queue, then on a RedisQueue: a throwaway
redis-server from PATH on 127.0.0.1 (the Redis part is skipped, saying so, when
there is none), or the server given with --redis (the example leaves a few small
keys there: give it a scratch database). A failed check raises, exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from _redis_server import add_arguments, run_with_redis

from queuekeeper import Autoscale, Priority, WorkerPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from queuekeeper import Ticket
    from queuekeeper.redis import RedisQueue

T = TypeVar("T")

#: Upper bound on any one wait for something that must happen: a hang fails.
WAIT = 30.0


@dataclass(frozen=True)
class Queues:
    """Where a section's pools keep their requests."""

    #: A new queue for each pool: None for the in-process one.
    make: Callable[[], RedisQueue | None]
    #: Whether it is a RedisQueue (slower, polled in places).
    remote: bool


def show(option: str, text: str) -> None:
    print(f"  {option + ':':<12} {text}")


async def until(condition: Callable[[], bool]) -> None:
    """Wait until *condition* holds (it reads a pool's status), at most WAIT s."""
    with anyio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 (figures the pool keeps)
            await anyio.sleep(0.01)


async def results(tickets: list[Ticket[Any]]) -> list[Any]:
    return [await ticket.result() for ticket in tickets]


async def side_by_side(
    with_it: Callable[[], Awaitable[T]], without: Callable[[], Awaitable[T]]
) -> tuple[T, T]:
    """Run a scenario with and without an option at once (each has its queue)."""
    outcomes: dict[str, T] = {}

    async def run(name: str, scenario: Callable[[], Awaitable[T]]) -> None:
        outcomes[name] = await scenario()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, "with", with_it)
        tasks.start_soon(run, "without", without)
    return outcomes["with"], outcomes["without"]


# -- aging ---------------------------------------------------------------------------

FLOOD = 40  # HIGH requests in all
AHEAD = 5  # HIGH requests queued before the LOW one; the flood keeps it so
SERVICE = 0.003  # seconds a request runs (at least)
AGING = 0.02  # seconds per level


async def high_before_low(queues: Queues, aging: float | None) -> int:
    """One worker, a flood of HIGH requests: how many ran before the LOW one."""
    order: list[str] = []
    tickets: list[Ticket[str]] = []
    names = (f"high-{n}" for n in range(FLOOD))
    flood_done = anyio.Event()

    async def handle(request: str) -> str:
        order.append(request)
        if request.startswith("high"):
            # The flood: each HIGH request queues the next one, so that HIGH
            # requests keep waiting until FLOOD of them were submitted.
            next_one = next(names, None)
            if next_one is not None:
                tickets.append(await pool.submit(next_one, priority=Priority.HIGH))
        await anyio.sleep(SERVICE)
        if sum(name.startswith("high") for name in order) == FLOOD:
            flood_done.set()
        return request

    pool = WorkerPool(handle, workers=1, queue=queues.make(), aging=aging)
    async with pool:
        ahead = itertools.islice(names, AHEAD)
        tickets += [await pool.submit(n, priority=Priority.HIGH) for n in ahead]
        low = await pool.submit("low", priority=Priority.LOW)
        with anyio.fail_after(WAIT):
            await flood_done.wait()
            await low.result()
            await results(tickets)
    return order.index("low")


async def aging_section(queues: Queues) -> None:
    aged, strict = await side_by_side(
        partial(high_before_low, queues, AGING), partial(high_before_low, queues, None)
    )
    # With aging the LOW request is at CRITICAL after 3 periods at most, and
    # then only the request running and those older than it go first: at most
    # 3 * AGING / SERVICE requests start meanwhile, plus the AHEAD ones.
    bound = round(3 * AGING / SERVICE) + AHEAD + 1
    show(
        "aging",
        f"LOW started after {strict} of {FLOOD} HIGH requests without aging; "
        f"after {aged} with aging={AGING} s (at most {bound} expected)",
    )
    assert strict == FLOOD, strict  # strict priority: the whole flood first
    assert aged <= bound, (aged, bound)


# -- reserved workers ----------------------------------------------------------------


@dataclass(frozen=True)
class CriticalStart:
    position: int | None  # where the CRITICAL request waited, if it did
    running: int  # LOW requests running when it started
    finished: int  # LOW requests finished when it started


async def critical_start(queues: Queues, *, reserve: bool) -> CriticalStart:
    """Three workers, four slow LOW requests, then a CRITICAL one."""
    release = {f"low-{n}": anyio.Event() for n in range(4)}
    running: set[str] = set()
    finished: list[str] = []
    busy = anyio.Event()  # every worker that may run a LOW request runs one
    started = anyio.Event()
    seen: list[tuple[int, int]] = []
    reserved = {Priority.CRITICAL: 1} if reserve else None
    unreserved = 2 if reserve else 3

    async def handle(request: str) -> str:
        if request == "critical":
            seen.append((len(running), len(finished)))
            started.set()
            return request
        running.add(request)
        if len(running) == unreserved:
            busy.set()
        await release[request].wait()  # slow: until the example says
        running.discard(request)
        finished.append(request)
        return request

    position = None
    async with WorkerPool(
        handle, workers=3, queue=queues.make(), reserved=reserved
    ) as pool:
        lows = [await pool.submit(name, priority=Priority.LOW) for name in release]
        with anyio.fail_after(WAIT):
            await busy.wait()
        critical = await pool.submit("critical", priority=Priority.CRITICAL)
        if not reserve:
            # Every worker runs a LOW request: it waits, first in line.
            position = await critical.fetch_position()
            release["low-0"].set()
        with anyio.fail_after(WAIT):
            await started.wait()
        for event in release.values():
            event.set()
        await results([critical, *lows])
    return CriticalStart(position, *seen[0])


async def reserved_section(queues: Queues) -> None:
    kept, plain = await side_by_side(
        partial(critical_start, queues, reserve=True),
        partial(critical_start, queues, reserve=False),
    )
    show(
        "reserved",
        "3 workers, 4 slow LOW requests: with reserved={CRITICAL: 1} a CRITICAL "
        f"request started while {kept.running} LOW ran and {kept.finished} had "
        f"finished; without, it waited at position {plain.position} until "
        f"{plain.finished} LOW finished",
    )
    assert (kept.running, kept.finished) == (2, 0), kept  # at once
    assert (plain.position, plain.running, plain.finished) == (0, 2, 1), plain


# -- resize() and autoscale ----------------------------------------------------------


async def resize_section(queues: Queues) -> None:
    gate = anyio.Event()
    started: list[int] = []
    three = anyio.Event()

    async def handle(request: int) -> int:
        started.append(request)
        if len(started) == 3:
            three.set()
        await gate.wait()
        return request

    async with WorkerPool(handle, workers=1, queue=queues.make()) as pool:
        tickets = [await pool.submit(n) for n in range(6)]
        await until(lambda: len(started) == 1)
        pool.resize(3)
        grown = pool.status().max_workers
        with anyio.fail_after(WAIT):
            await three.wait()  # the new workers took queued requests at once
        running = len(started)
        pool.resize(1)
        shrunk = pool.status().max_workers
        listed = len(pool.worker_health())  # busy ones retire when they finish
        gate.set()
        served = await results(tickets)
        await until(lambda: len(pool.worker_health()) == 1)
        completed = pool.status().completed
    show(
        "resize",
        f"1 worker ran 1 of 6 requests; resize(3): {grown} workers ran {running}; "
        f"resize(1): {shrunk} at once, {listed} still busy, then 1 once they "
        f"finished; {completed} of 6 completed",
    )
    assert (grown, running, shrunk, listed) == (3, 3, 1, 3)
    assert served == list(range(6))
    assert completed == 6, completed


WORK = 0.04  # seconds a request of the burst runs


async def autoscale_section(queues: Queues) -> None:
    settings = Autoscale(4, target_wait=0.05, cooldown=0.25)
    # On Redis the autoscaler learns how many requests wait from the figures the
    # pool's heartbeat fetches every second: a burst that lasts longer at one
    # worker lets it see them.
    burst = 60 if queues.remote else 20
    running = 0
    most = 0

    async def slow(request: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(WORK)
        running -= 1
        return request

    sizes: list[int] = []
    async with WorkerPool(
        slow, workers=1, queue=queues.make(), autoscale=settings
    ) as pool:
        tickets = [await pool.submit(n) for n in range(burst)]
        with anyio.fail_after(WAIT):
            while not all(ticket.done() for ticket in tickets):
                sizes.append(pool.status().max_workers)
                await anyio.sleep(0.01)
        served = await results(tickets)
        idle_since = anyio.current_time()
        await until(
            lambda: pool.status().max_workers == 1 and len(pool.worker_health()) == 1
        )
        back = anyio.current_time() - idle_since
        completed = pool.status().completed
    peak = max(sizes)
    show(
        "autoscale",
        f"{settings!r}, a burst of {burst}: "
        f"1 -> {peak} workers (status().max_workers), {most} requests ran at "
        f"once; back to 1 worker {back:.1f} s after it; {completed} of {burst} "
        "completed",
    )
    assert 1 < peak <= 4, sizes
    assert most <= peak, (most, peak)
    assert served == list(range(burst))
    assert completed == burst, completed


# -- coalescing ----------------------------------------------------------------------

SUBMITS = 10


async def coalescing_section(queues: Queues) -> None:
    runs = 0
    first_runs = anyio.Event()
    gate = anyio.Event()

    async def handle(request: str) -> str:
        nonlocal runs
        runs += 1
        first_runs.set()
        await gate.wait()
        return f"{request} #{runs}"

    queue = queues.make()
    async with (
        WorkerPool(handle, workers=2, queue=queue) as pool,
        # On Redis, half the submits come from another process's pool (one
        # that only submits); in-process, from the same pool.
        contextlib.AsyncExitStack() as stack,
    ):
        other = pool
        if queues.remote:
            other = await stack.enter_async_context(
                WorkerPool[str, str](None, workers=0, queue=queue)
            )
        first = await pool.submit("report", key="report")
        with anyio.fail_after(WAIT):
            await first_runs.wait()
        # Another worker is idle: these would run at once without the key.
        others = [
            await (pool if n % 2 else other).submit("report", key="report")
            for n in range(SUBMITS - 1)
        ]
        coalesced = pool.status().coalesced
        if other is not pool:
            coalesced += other.status().coalesced
        gate.set()
        answers = await results([first, *others])
    show(
        "coalescing",
        f"{SUBMITS} submits with key='report' while the first ran"
        f"{' (from two pools on one queue)' if queues.remote else ''}: "
        f"{runs} handler run, status().coalesced == {coalesced}, "
        f"{len({t.id for t in [first, *others]})} tickets all got {answers[0]!r}",
    )
    assert runs == 1, runs
    assert coalesced == SUBMITS - 1, coalesced
    assert answers == [answers[0]] * SUBMITS, answers


# -- positions() and eta() -----------------------------------------------------------

QUEUED = 10


async def positions_section(queues: Queues) -> None:
    # On Redis positions() asks the server every quarter of a second: slower
    # requests let it see a few of them go.
    service = 0.06 if queues.remote else 0.01
    gate = anyio.Event()
    blocker_runs = anyio.Event()

    async def handle(request: int) -> int:
        if request < 0:
            blocker_runs.set()
            await gate.wait()
        await anyio.sleep(service)
        return request

    seen: list[tuple[int, float | None]] = []
    watching = anyio.Event()
    async with WorkerPool(handle, workers=1, queue=queues.make()) as pool:
        for n in range(3):  # finished requests give eta() a rate
            await pool.execute(100 + n)
        blocker = await pool.submit(-1)
        with anyio.fail_after(WAIT):
            await blocker_runs.wait()
        tickets = [await pool.submit(n) for n in range(QUEUED)]
        last = tickets[-1]

        async def watch() -> None:
            async for position in last.positions():
                seen.append((position, last.eta()))
                watching.set()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                await watching.wait()
                gate.set()
            # positions() ended: the request left the queue (on Redis the
            # ticket may not know yet that it runs; the server does).
            left = await last.fetch_position() is None
            await results([blocker, *tickets])
    positions = [position for position, _ in seen]
    etas = [(eta, position) for position, eta in seen if eta is not None]
    first_eta = f"{etas[0][0]:.2f} s at position {etas[0][1]}" if etas else "none given"
    show(
        "positions",
        f"the last of {QUEUED} queued requests watched "
        f"{' '.join(map(str, positions))}; first eta {first_eta}",
    )
    assert positions[0] == QUEUED - 1, positions
    assert all(a > b for a, b in itertools.pairwise(positions)), positions
    assert left
    assert etas, seen
    assert all(eta > 0 for eta, _ in etas), etas


# -- running the sections ------------------------------------------------------------

SECTIONS: list[Callable[[Queues], Awaitable[None]]] = [
    aging_section,
    reserved_section,
    resize_section,
    autoscale_section,
    coalescing_section,
    positions_section,
]


async def run_sections(queues: Queues) -> None:
    for section in SECTIONS:
        await section(queues)


async def main(redis_url: str | None, redis_note: str | None) -> None:
    print("in-process queue:")
    await run_sections(Queues(lambda: None, remote=False))
    if redis_url is None:
        print(f"Redis: skipped ({redis_note})")
        return
    import coredis  # noqa: PLC0415 (the redis extra: only for this part)

    from queuekeeper.redis import RedisQueue  # noqa: PLC0415

    print(f"RedisQueue on {redis_url}:")
    async with coredis.Redis.from_url(redis_url) as client:

        def make() -> RedisQueue:
            return RedisQueue(client, f"scheduling-example-{uuid.uuid4().hex[:12]}")

        await run_sections(Queues(make, remote=True))


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run_with_redis(main, parser.parse_args())


if __name__ == "__main__":
    cli()
