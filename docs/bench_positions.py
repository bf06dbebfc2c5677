"""What watching positions costs: n queued tickets, each iterating ``positions()``.

One worker drains the queue; every take moves every watcher's position. The figure
is the time per position change seen by a watcher (changes coalesce while a watcher
waits its turn, so the count of changes is what the watchers saw), and how many
positions the queue computed per change seen. It stays flat as n grows: no scan of
the queue per change (a scan would make it grow with n).

Run: ``python docs/bench_positions.py [--backend trio] [n ...]`` (default 1,000,
10,000 and 20,000).
"""

from __future__ import annotations

import argparse
import time

import anyio

from queuekeeper import WorkerPool
from queuekeeper._order import OrderedStore


async def measure(count: int) -> tuple[float, int, int]:
    """Seconds, position changes seen, and positions computed, for *count* tickets."""
    gate = anyio.Event()
    seen = 0

    async def handler(request: int) -> int:
        if request < 0:
            await gate.wait()
        return request

    ranks = 0
    rank = OrderedStore.rank

    def counted(self: OrderedStore[object], item: object, level: int) -> object:
        nonlocal ranks
        ranks += 1
        return rank(self, item, level)

    OrderedStore.rank = counted  # type: ignore[assignment,method-assign]
    try:
        async with WorkerPool(handler, workers=1) as pool:
            await pool.submit(-1)
            await anyio.wait_all_tasks_blocked()
            tickets = [await pool.submit(n) for n in range(count)]
            async with anyio.create_task_group() as tasks:

                async def watch(ticket: object) -> None:
                    nonlocal seen
                    async for _ in ticket.positions():  # type: ignore[attr-defined]
                        seen += 1

                for ticket in tickets:
                    tasks.start_soon(watch, ticket)
                await anyio.wait_all_tasks_blocked()
                ranks = 0
                seen = 0
                start = time.perf_counter()
                gate.set()
            elapsed = time.perf_counter() - start
    finally:
        OrderedStore.rank = rank  # type: ignore[method-assign]
    return elapsed, seen, ranks


def main() -> None:
    """Print the figures for each n."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("counts", nargs="*", type=int, default=[1_000, 10_000, 20_000])
    args = parser.parse_args()
    heading = f"{'tickets':>8} {'changes seen':>13} {'us/change':>10}"
    print(heading + f" {'ranks/change':>13}")  # noqa: T201 (a script that reports)
    for count in args.counts:
        elapsed, seen, ranks = anyio.run(measure, count, backend=args.backend)
        print(  # noqa: T201
            f"{count:>8,} {seen:>13,} {1e6 * elapsed / seen:>10.2f}"
            f" {ranks / seen:>13.2f}"
        )


if __name__ == "__main__":
    main()
