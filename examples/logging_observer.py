"""Your own observer: log each request's way through a pool (PoolObserver).

Anything with the five methods of queuekeeper.PoolObserver can be passed as
WorkerPool(metrics=...): this one logs every event and keeps a tally. Use the same
shape for OpenTelemetry, StatsD or anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

import anyio

from queuekeeper import PoolObserver, Priority, TicketState, WorkerPool

log = logging.getLogger("pool")


class LoggingObserver:
    """Logs every event a pool reports, and counts the outcomes."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.pool_name = ""

    def attach(self, pool: object) -> None:
        # The pool (its name, its status()) is yours to keep: a scrape would read
        # pool.status() later. Raise here to refuse a pool.
        self.pool_name = pool.name  # type: ignore[attr-defined]

    def submitted(self, pool: str, priority: int) -> None:
        log.info("%s: queued a request at priority %d", pool, priority)

    def rejected(self, pool: str, priority: int) -> None:
        log.warning("%s: refused a request at priority %d", pool, priority)

    def started(self, pool: str, priority: int, wait: float) -> None:
        log.info("%s: started a request at %d that waited %.3f s", pool, priority, wait)

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        self.outcomes[str(outcome)] += 1
        ran = "never ran" if duration is None else f"ran {duration:.3f} s"
        log.info("%s: a request at %d ended %s (%s)", pool, priority, outcome, ran)


async def work(request: int) -> int:
    await anyio.sleep(0.001)
    if request % 4 == 0:
        raise ValueError(request)
    return request


async def main() -> None:
    observer = LoggingObserver()
    assert isinstance(observer, PoolObserver)  # five methods: that is all it takes
    async with WorkerPool(work, workers=2, name="logged", metrics=observer) as pool:
        for n in range(1, 9):
            await pool.submit(n, priority=Priority.HIGH)
        # Leaving the block drains the pool: every request reaches its outcome.
    print(dict(observer.outcomes))
    assert observer.pool_name == "logged"
    assert observer.outcomes == {"succeeded": 6, "failed": 2}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    anyio.run(main, backend=parser.parse_args().backend)
    sys.exit(0)
