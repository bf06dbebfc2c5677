"""Weighted fair sharing against strict priority, in numbers this script checks.

    pip install 'queuekeeper[redis]'   # the Redis part only
    python examples/weighted_fair.py [--backend asyncio|trio] [--redis redis://HOST:PORT]

Two workers and a backlog of 400 requests at each of the four levels. With
strict priority (the default) every CRITICAL request runs before any LOW one;
with ``scheduling=WeightedFair({CRITICAL: 8, HIGH: 4, NORMAL: 2, LOW: 1})`` the
first 300 starts split 8:4:2:1 (160, 80, 40, 20), and once CRITICAL and HIGH
have run dry NORMAL and LOW share the workers 2:1 (an idle level's share goes to
the others).

Then the same on a RedisQueue shared by two worker pools (as two processes would
share it): the server keeps the shares, so the starts of both together split
8:4:2:1. The server is a throwaway redis-server from PATH on 127.0.0.1 (the part
is skipped, saying so, when there is none), or the one given with --redis. A
failed check raises, exit status 1.
"""

from __future__ import annotations

import argparse
import uuid
from collections import Counter

import anyio
import anyio.lowlevel
from _redis_server import add_arguments, run_with_redis

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


async def run_on_redis(url: str) -> list[int]:
    """The levels in the order they started, from two pools sharing one queue."""
    import coredis  # noqa: PLC0415 (the redis extra: only for this part)

    from queuekeeper.redis import RedisQueue  # noqa: PLC0415

    started: list[int] = []

    async def handler(level: int) -> None:
        started.append(level)
        await anyio.lowlevel.checkpoint()

    name = f"weighted-fair-example-{uuid.uuid4().hex[:12]}"
    async with (
        coredis.Redis.from_url(url) as client,
        WorkerPool[int, None](None, queue=RedisQueue(client, name), workers=0) as front,
    ):
        # Queue the whole backlog first, then start the workers.
        tickets = [
            await front.submit(int(level), priority=level)
            for level in LEVELS
            for _ in range(PER_LEVEL)
        ]
        async with (
            WorkerPool(
                handler, queue=RedisQueue(client, name), workers=1, scheduling=WEIGHTS
            ),
            WorkerPool(
                handler, queue=RedisQueue(client, name), workers=1, scheduling=WEIGHTS
            ),
        ):
            for ticket in tickets:
                await ticket.result()
    return started


def check_shares(started: list[int], where: str) -> None:
    """The first 300 starts split by the weights, within 5 % of each share."""
    first = Counter(started[:300])
    print(
        f"{where}, WeightedFair 8:4:2:1, first 300 starts: {dict(sorted(first.items()))}"
    )
    for level in LEVELS:
        share = WEIGHTS.weight(level) / 15
        assert abs(first[level] / 300 - share) <= 0.05 * share, first


async def main(redis_url: str | None, redis_note: str | None) -> None:
    strict = await run(None)
    first = Counter(strict[:300])
    print(f"strict priority, first 300 starts: {dict(sorted(first.items()))}")
    assert first == {1: 300}, first

    fair = await run(WEIGHTS)
    check_shares(fair, "in-process")
    # CRITICAL runs dry after 750 starts, HIGH after 1,000 (its share grows once
    # CRITICAL's is free); from then on NORMAL and LOW split 2:1.
    last = max(index for index, level in enumerate(fair) if level == Priority.HIGH)
    tail = Counter(fair[last + 1 : last + 301])
    print(f"once HIGH ran dry, the next 300 starts: {dict(sorted(tail.items()))}")
    assert set(tail) <= {3, 4}, tail
    assert abs(tail[3] - 2 * tail[4]) <= 3, tail

    if redis_url is None:
        print(f"Redis: skipped ({redis_note})")
    else:
        check_shares(await run_on_redis(redis_url), "RedisQueue, two pools")
    print("all checks passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run_with_redis(main, parser.parse_args())
