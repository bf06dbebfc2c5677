"""Weighted fair sharing against strict priority, in numbers this script checks.

    python examples/weighted_fair.py [--backend asyncio|trio]

Two workers and a backlog of 400 requests at each of the four levels. With
strict priority (the default) every CRITICAL request runs before any LOW one;
with ``scheduling=WeightedFair({CRITICAL: 8, HIGH: 4, NORMAL: 2, LOW: 1})`` the
first 300 starts split 8:4:2:1 (160, 80, 40, 20), and once CRITICAL and HIGH
have run dry NORMAL and LOW share the workers 2:1 (an idle level's share goes to
the others). A failed check raises, exit status 1.
"""

from __future__ import annotations

import argparse
from collections import Counter

import anyio
import anyio.lowlevel

from queuekeeper import Priority, WeightedFair, WorkerPool

LEVELS = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)
WEIGHTS = WeightedFair(
    {
        Priority.CRITICAL: 8,
        Priority.HIGH: 4,
        Priority.NORMAL: 2,
        Priority.LOW: 1,
    }
)
PER_LEVEL = 400


async def run(scheduling: WeightedFair | None) -> list[int]:
    """The levels of the requests in the order they started."""
    started: list[int] = []

    async def handler(level: int) -> None:
        started.append(level)
        await anyio.lowlevel.checkpoint()

    async with WorkerPool(handler, workers=2, scheduling=scheduling) as pool:
        for level in LEVELS:
            for _ in range(PER_LEVEL):
                pool.submit_nowait(int(level), priority=level)
    return started


async def main() -> None:
    strict = await run(None)
    first = Counter(strict[:300])
    print(f"strict priority, first 300 starts: {dict(sorted(first.items()))}")
    assert first == {1: 300}, first

    fair = await run(WEIGHTS)
    first = Counter(fair[:300])
    print(f"WeightedFair 8:4:2:1, first 300 starts: {dict(sorted(first.items()))}")
    for level in LEVELS:
        share = WEIGHTS.weight(level) / 15
        assert abs(first[level] / 300 - share) <= 0.05 * share, first
    # CRITICAL runs dry after 750 starts, HIGH after 1,000 (its share grows once
    # CRITICAL's is free); from then on NORMAL and LOW split 2:1.
    last = max(index for index, level in enumerate(fair) if level == Priority.HIGH)
    tail = Counter(fair[last + 1 : last + 301])
    print(f"once HIGH ran dry, the next 300 starts: {dict(sorted(tail.items()))}")
    assert set(tail) <= {3, 4}, tail
    assert abs(tail[3] - 2 * tail[4]) <= 3, tail
    print("all checks passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
