"""Chaos soak: push many requests through pools under every kind of trouble at once.

Run by ``nox -s soak`` (default 1,000,000 requests) and, with 20,000 requests, by the
test suite (``tests/test_soak.py``). Each segment of the run uses a fresh pool and ends
with a ``shutdown(drain=True, timeout=...)`` while producers are still submitting.
Within a segment, producers send bursts above capacity; handlers succeed, raise,
raise a cancellation no scope issued, fail in a task group (at once, or as their
timeout cuts them), hang until their timeout cuts them, or swallow one
cancellation; requests carry queue timeouts; tickets are cancelled; callers of
``execute`` are cancelled.

At the end it checks, and prints as one summary line:

- every ticket reached exactly one final state (an observer counts every final event,
  and every ticket held is done), and no ticket's error is or holds a cancellation;
- the pool's counters add up: submitted == completed + failed + cancelled + timed_out
  + shed, and agree with the observer;
- no worker was lost: the pool served until its shutdown (no submit refused with
  PoolClosed before it), and every worker exited;
- the channel's waiter counts are back to zero;
- traced memory grew by less than the stated bound from the first segment to the last.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import sys
import time
import tracemalloc
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import attrs

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from helpers import FINAL, LEVELS, CountingObserver, settled, stray_cancellation
from queuekeeper import (
    Backpressure,
    PoolClosed,
    QueueFull,
    QueueKeeperError,
    TicketState,
    WorkerPool,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from queuekeeper import Ticket

#: Traced memory may grow by at most this much between the first and last segment.
MEMORY_BOUND = 8 * 1024 * 1024


class Flaky(Exception):
    """What a failing handler raises."""


@attrs.define
class Totals:
    """What the whole soak did."""

    offered: int = 0
    submitted: int = 0
    rejected: int = 0
    closed: int = 0
    outcomes: dict[str, int] = attrs.field(factory=dict)
    segments: int = 0
    problems: list[str] = attrs.field(factory=list)
    memory_first: int = 0
    memory_last: int = 0

    def add_outcomes(self, counts: Mapping[TicketState, int]) -> None:
        """Add a segment's final-state counts."""
        for state, value in counts.items():
            self.outcomes[state.value] = self.outcomes.get(state.value, 0) + value


async def _handler(request: tuple[int, str]) -> int:
    n, behaviour = request
    if behaviour == "ok":
        await anyio.lowlevel.checkpoint()
        return n
    if behaviour == "fail":
        await anyio.lowlevel.checkpoint()
        msg = f"request {n} failed on purpose"
        raise Flaky(msg)
    if behaviour == "stray":
        # A cancellation caught in an inner scope that has exited: no pool's.
        raise await stray_cancellation()
    if behaviour in {"group", "group-cut"}:
        # A task group whose child fails: at once, or when the timeout cuts it.
        async with anyio.create_task_group() as tg:
            tg.start_soon(_child, behaviour == "group", n)
            await anyio.sleep_forever()
    if behaviour == "hang":
        await anyio.sleep_forever()
    # "stubborn": swallow the first cancellation, then give in at the next checkpoint.
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        pass
    await anyio.sleep_forever()
    return n  # pragma: no cover


async def _child(at_once: bool, n: int) -> None:
    if at_once:
        await anyio.lowlevel.checkpoint()
        msg = f"request {n}: a child task failed"
        raise Flaky(msg)
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        msg = f"request {n}: a child task failed as it was cancelled"
        raise Flaky(msg) from None


#: How often each handler behaviour comes up (the rest succeed).
BEHAVIOURS = (
    ("fail", 0.05),
    ("stray", 0.01),
    ("group", 0.01),
    ("group-cut", 0.01),
    ("hang", 0.025),
    ("stubborn", 0.005),
)
#: Behaviours that only end when their timeout cuts them.
TIMED = frozenset({"hang", "stubborn", "group-cut"})


def _behaviour(rng: random.Random) -> str:
    roll = rng.random()
    for behaviour, share in BEHAVIOURS:
        if roll < share:
            return behaviour
        roll -= share
    return "ok"


def _holds_a_cancellation(error: BaseException | None) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(cancelled) is not None
    return isinstance(error, cancelled)


async def _segment(size: int, seed: int, totals: Totals) -> None:
    """One pool: bursts, chaos, and a shutdown while producers still submit."""
    rng = random.Random(seed)
    observer = CountingObserver()
    workers = 8
    pool: WorkerPool[tuple[int, str], int] = WorkerPool(
        _handler,
        workers=workers,
        max_queue_size=64,
        backpressure=Backpressure.SHED,
        name=f"soak-{seed}",
        metrics=observer,
        drain_timeout=0.05,
    )
    held: list[Ticket[int]] = []
    offered = closed = rejected = 0
    shutdown_after = int(size * rng.uniform(0.85, 0.95))
    closing = False  # shutdown has been called
    closed_early = 0  # PoolClosed before that: the pool ended on its own

    async def cancel_caller(request: tuple[int, str], level: int) -> None:
        nonlocal closed
        with anyio.CancelScope() as scope:
            for _ in range(rng.randrange(3)):
                await anyio.lowlevel.checkpoint()
            scope.cancel()
            with contextlib.suppress(QueueKeeperError, Flaky):
                await pool.execute(request, priority=level, timeout=0.005)

    async def produce(count: int, producer_seed: int) -> None:
        nonlocal offered, closed, rejected, closing, closed_early
        local = random.Random(producer_seed)
        sent = 0
        while sent < count:
            burst = local.randrange(1, 150)  # bursts above capacity
            # Half the bursts arrive at once (submit_nowait, no checkpoint between
            # them): they overflow the queue. The other half interleave with the
            # workers, one checkpoint per submit.
            at_once = local.random() < 0.5
            for _ in range(min(burst, count - sent)):
                sent += 1
                offered += 1
                n = offered
                request = (n, _behaviour(local))
                level = local.choice(LEVELS)
                roll = local.random()
                timeout = 0.005 if request[1] in TIMED else None
                queue_timeout = 0.002 if roll < 0.05 else None
                try:
                    if roll < 0.02:
                        task_group.start_soon(cancel_caller, request, level)
                        continue
                    if at_once:
                        ticket = pool.submit_nowait(
                            request,
                            priority=level,
                            timeout=timeout,
                            queue_timeout=queue_timeout,
                        )
                    else:
                        ticket = await pool.submit(
                            request,
                            priority=level,
                            timeout=timeout,
                            queue_timeout=queue_timeout,
                        )
                except QueueFull:
                    rejected += 1
                    continue
                except PoolClosed:
                    closed += 1
                    closed_early += not closing
                    continue
                held.append(ticket)
                if local.random() < 0.03:
                    ticket.cancel()
                if offered == shutdown_after:
                    closing = True
                    task_group.start_soon(pool.shutdown)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as task_group:
        await task_group.start(pool.run)
        producers = 4
        async with anyio.create_task_group() as producing:
            for i in range(producers):
                share = size // producers + (1 if i < size % producers else 0)
                producing.start_soon(produce, share, seed * 1000 + i)
        await pool.shutdown()

    status = pool.status()
    problems = totals.problems
    if status.submitted != settled(status):
        problems.append(
            f"segment {seed}: submitted {status.submitted} != {settled(status)}"
        )
    if observer.submits != status.submitted:
        problems.append(f"segment {seed}: observer saw {observer.submits} submits")
    if sum(observer.outcomes.values()) != observer.submits:
        problems.append(
            f"segment {seed}: {sum(observer.outcomes.values())} final events "
            f"for {observer.submits} tickets"
        )
    if not (status.rejected == observer.rejections and rejected <= status.rejected):
        problems.append(f"segment {seed}: rejected counters disagree")
    pending = [t for t in held if not t.done() or t.state not in FINAL]
    if pending:
        problems.append(
            f"segment {seed}: {len(pending)} tickets not final: {pending[:3]}"
        )
    leaked = [t for t in held if _holds_a_cancellation(t._error)]
    if leaked:
        problems.append(
            f"segment {seed}: {len(leaked)} tickets fail with a cancellation: "
            f"{[t._error for t in leaked[:3]]}"
        )
    if status.state != "closed" or status.active_workers:
        problems.append(
            f"segment {seed}: pool {status.state}, {status.active_workers} busy"
        )
    if len(status.workers) != workers:
        problems.append(f"segment {seed}: {len(status.workers)} workers reported")
    if closed_early:
        problems.append(
            f"segment {seed}: the pool closed before shutdown: {closed_early} "
            "submits refused"
        )
    stats = pool._queue.statistics()
    if stats.tasks_waiting_send or stats.tasks_waiting_receive or stats.current_size:
        problems.append(f"segment {seed}: channel not empty/idle: {stats}")
    totals.offered += offered
    totals.submitted += status.submitted
    totals.rejected += status.rejected
    totals.closed += closed
    totals.add_outcomes(observer.outcomes)
    totals.segments += 1


def run_soak(
    requests: int, *, segment: int = 50_000, seed: int = 0, backend: str = "asyncio"
) -> tuple[Totals, str]:
    """Run the soak; return its totals and the one-line summary."""
    totals = Totals()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        done = 0
        index = 0
        while done < requests:
            size = min(segment, requests - done)
            anyio.run(_segment, size, seed + index, totals, backend=backend)
            gc.collect()
            current = tracemalloc.get_traced_memory()[0]
            if index == 0:
                totals.memory_first = current
            totals.memory_last = current
            done += size
            index += 1
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    growth = totals.memory_last - totals.memory_first
    if growth > MEMORY_BOUND:
        totals.problems.append(f"memory grew {growth} bytes (> {MEMORY_BOUND})")
    verdict = (
        "OK" if not totals.problems else f"FAILED ({len(totals.problems)} problems)"
    )
    outcomes = " ".join(f"{k}={v}" for k, v in sorted(totals.outcomes.items()))
    summary = (
        f"soak {verdict}: backend={backend} offered={totals.offered} "
        f"submitted={totals.submitted} rejected={totals.rejected} "
        f"refused_closed={totals.closed} {outcomes} segments={totals.segments} "
        f"memory_growth={growth / 1024:.0f}KiB (bound {MEMORY_BOUND // 1024}KiB) "
        f"time={elapsed:.1f}s"
    )
    return totals, summary


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python tests/soak.py --requests N --backend NAME``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--segment", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backend", choices=["asyncio", "trio", "both"], default="both"
    )
    args = parser.parse_args(argv)
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    failed = False
    for backend in backends:
        totals, summary = run_soak(
            args.requests, segment=args.segment, seed=args.seed, backend=backend
        )
        print(summary)  # noqa: T201
        for problem in totals.problems[:20]:
            print("  problem:", problem)  # noqa: T201
        failed = failed or bool(totals.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
