"""A per-level rate limit, in numbers this script checks itself.

    pip install 'queuekeeper[redis]'   # the Redis part only
    python examples/rate_limits.py [--backend asyncio|trio] [--redis redis://HOST:PORT]

``rate_limits={Priority.LOW: RateLimit(20, per=1.0, burst=5)}`` on a pool of four
workers: 40 LOW requests queued at once start 5 at once (the burst) and then one
every 50 ms, so no second holds more than 20 + 5 of them; meanwhile CRITICAL
requests submitted while LOW waits for its tokens start at once, and
``status()`` shows idle workers and the LOW requests waiting for a token (a
request waiting for a token holds no worker).

Then the same on a RedisQueue shared by two worker pools of four (as two
processes would share it): the token bucket is on the server, so the two
together still start no more than 20 + 5 LOW requests in any second. The server
is a throwaway redis-server from PATH on 127.0.0.1 (the part is skipped, saying
so, when there is none), or the one given with --redis. A failed check raises,
exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import uuid
from typing import Any

import anyio
from _redis_server import add_arguments, run_with_redis

from queuekeeper import Priority, RateLimit, WorkerPool

RATE, BURST = 20, 5


LIMITS = {Priority.LOW: RateLimit(RATE, per=1.0, burst=BURST)}


async def scenario(where: str, open_pools: Any, heard: str = "") -> None:  # noqa: ANN401
    """40 LOW requests, then 5 CRITICAL ones while LOW waits for its tokens.

    *open_pools(handler)* is an async context manager that gives the pool to
    submit to and a pool whose workers run *handler* (the same pool in-process).
    On Redis a pool's status shows the server's rate-limit figures as of its
    last heartbeat (once a second).
    """
    starts: list[float] = []
    critical_waits: list[float] = []
    lows_left_after_critical: list[int] = []

    async def handler(request: tuple[int, float]) -> None:
        level, submitted = request
        now = anyio.current_time()
        if level == Priority.LOW:
            starts.append(now)
        else:
            critical_waits.append(now - submitted)
        await anyio.sleep(0.001)

    async with open_pools(handler) as (pool, workers):
        began = anyio.current_time()
        lows = [
            await pool.submit((int(Priority.LOW), began), priority=Priority.LOW)
            for _ in range(40)
        ]
        await anyio.sleep(1.125)  # between two tokens, after a heartbeat
        status = workers.status()
        print(
            f"{where}: after 1.125 s, {len(starts)} LOW started; {status.queue_size} "
            f"queued ({status.rate_limited_now} without a token){heard}"
        )
        # Waiting for tokens, not for workers.
        assert status.rate_limited > 0
        assert status.queue_size > 0
        for _ in range(5):
            now = anyio.current_time()
            await pool.execute(
                (int(Priority.CRITICAL), now), priority=Priority.CRITICAL
            )
        lows_left_after_critical.append(40 - len(starts))
        for ticket in lows:
            await ticket.result()
        await anyio.sleep(1.0)  # on Redis, until the figures of the end come
        status = workers.status()
    took = starts[-1] - starts[0]
    print(
        f"{where}: 40 LOW requests started over {took:.2f} s (at least {35 / RATE:.2f} s)"
    )
    print(f"{where}: requests that waited for a token: {status.rate_limited}")
    print(
        f"{where}: 5 CRITICAL requests ran while {lows_left_after_critical[0]} LOW still "
        f"waited for tokens (longest CRITICAL wait {max(critical_waits) * 1000:.1f} ms)"
    )
    assert took >= (40 - BURST) / RATE - 0.01
    for index, start in enumerate(starts):
        in_a_second = sum(1 for later in starts[index:] if later - start <= 1.0)
        assert in_a_second <= RATE + BURST, in_a_second
    # CRITICAL never waited for the LOW backlog: it ran while most LOW still waited.
    assert lows_left_after_critical[0] > 5, lows_left_after_critical


@contextlib.asynccontextmanager
async def in_process(handler: Any) -> Any:  # noqa: ANN401
    """One pool of four workers, with the limit."""
    async with WorkerPool(handler, workers=4, rate_limits=LIMITS) as pool:
        yield pool, pool


def on_redis(url: str) -> Any:  # noqa: ANN401
    """A submit-only pool and two worker pools of four on one RedisQueue."""
    import coredis  # noqa: PLC0415 (the redis extra: only for this part)

    from queuekeeper.redis import RedisQueue  # noqa: PLC0415

    @contextlib.asynccontextmanager
    async def pools(handler: Any) -> Any:  # noqa: ANN401
        name = f"rate-limits-example-{uuid.uuid4().hex[:12]}"
        async with (
            coredis.Redis.from_url(url) as client,
            WorkerPool[Any, None](
                None, queue=RedisQueue(client, name), workers=0
            ) as front,
            WorkerPool(
                handler, queue=RedisQueue(client, name), workers=4, rate_limits=LIMITS
            ) as workers,
            WorkerPool(
                handler, queue=RedisQueue(client, name), workers=4, rate_limits=LIMITS
            ),
        ):
            yield front, workers

    return pools


async def main(redis_url: str | None, redis_note: str | None) -> None:
    await scenario("in-process", in_process)
    if redis_url is None:
        print(f"Redis: skipped ({redis_note})")
    else:
        await scenario(
            "RedisQueue, two pools",
            on_redis(redis_url),
            " as of the last heartbeat",
        )
    print("all checks passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run_with_redis(main, parser.parse_args())
