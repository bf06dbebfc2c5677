"""A per-level rate limit, in numbers this script checks itself.

    python examples/rate_limits.py [--backend asyncio|trio]

``rate_limits={Priority.LOW: RateLimit(20, per=1.0, burst=5)}`` on a pool of four
workers: 40 LOW requests queued at once start 5 at once (the burst) and then one
every 50 ms, so no second holds more than 20 + 5 of them; meanwhile CRITICAL
requests submitted while LOW waits for its tokens start at once, and
``status()`` shows idle workers and the LOW requests waiting for a token (a
request waiting for a token holds no worker). A failed check raises, exit
status 1.
"""

from __future__ import annotations

import argparse

import anyio

from queuekeeper import Priority, RateLimit, WorkerPool

RATE, BURST = 20, 5


async def main() -> None:
    starts: list[float] = []
    critical_waits: list[float] = []

    async def handler(request: tuple[Priority, float]) -> None:
        level, submitted = request
        now = anyio.current_time()
        if level is Priority.LOW:
            starts.append(now)
        else:
            critical_waits.append(now - submitted)
        await anyio.sleep(0.001)

    limits = {Priority.LOW: RateLimit(RATE, per=1.0, burst=BURST)}
    async with WorkerPool(handler, workers=4, rate_limits=limits) as pool:
        began = anyio.current_time()
        lows = [
            pool.submit_nowait((Priority.LOW, began), priority=Priority.LOW)
            for _ in range(40)
        ]
        await anyio.sleep(0.525)  # between two tokens
        status = pool.status()
        print(
            f"after 0.525 s: {len(starts)} LOW started, {status.queue_size} queued "
            f"({status.rate_limited_now} without a token now), "
            f"{status.active_workers} of 4 workers busy"
        )
        # Waiting for tokens, not for workers.
        assert status.rate_limited > 0
        assert status.queue_size > 0
        for _ in range(5):
            now = anyio.current_time()
            await pool.execute((Priority.CRITICAL, now), priority=Priority.CRITICAL)
        for ticket in lows:
            await ticket.result()
        status = pool.status()
    took = starts[-1] - starts[0]
    print(f"40 LOW requests started over {took:.2f} s (at least {35 / RATE:.2f} s)")
    print(f"requests that waited for a token: {status.rate_limited}")
    print(f"CRITICAL waits meanwhile: max {max(critical_waits) * 1000:.1f} ms")
    assert took >= (40 - BURST) / RATE - 0.01
    for index, start in enumerate(starts):
        in_a_second = sum(1 for later in starts[index:] if later - start <= 1.0)
        assert in_a_second <= RATE + BURST, in_a_second
    assert max(critical_waits) < 0.045
    print("all checks passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
