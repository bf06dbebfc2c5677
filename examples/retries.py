"""Retries and dead letters, in numbers this script checks itself.

    pip install 'queuekeeper[redis]'   # the Redis part only
    python examples/retries.py [--backend asyncio|trio] [--redis redis://HOST:PORT]

A handler calls a flaky downstream service: a third of the requests fail with
ConnectionError once or twice before they go through, and a few "poison"
requests fail every time. Each section runs a pool of 4 workers on 300
requests:

  no retry            every transient failure fails its request
  retry=Retry(3)      the transient failures are retried (same ticket): every
                      request but the poison ones succeeds; the poison ones
                      fail after 3 attempts and arrive on pool.dead_letters
                      with their error, traceback and attempts
  dead_letter_size=3  nobody reads the dead letters: the workers never wait,
                      the oldest records are dropped and counted
  shutdown            requests waiting out a long backoff fail at once: the
                      shutdown does not wait for them
  on Redis            the retry section on a RedisQueue: two worker pools (as
                      two processes would) run the requests another pool
                      submitted; a retry waits on the server, and the dead
                      letters are read back from the queue's list

The Redis section runs on a throwaway redis-server from PATH on 127.0.0.1 (it is
skipped, saying so, when there is none), or the server given with --redis. A
failed check raises, exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections import Counter

import anyio
from _redis_server import add_arguments, run_with_redis

from queuekeeper import DeadLetter, Retry, TicketState, WorkerPool

REQUESTS = 300
WORKERS = 4
#: Every 50th request is poison: it never goes through.
POISON_EVERY = 50
#: Upper bound on any one section: a hang fails.
WAIT = 60.0


class Downstream:
    """A flaky service: request n fails its first ``n % 3`` calls (poison: every one)."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()

    async def __call__(self, request: int) -> str:
        self.calls[request] += 1
        await anyio.sleep(0.001)  # the call itself
        if request % POISON_EVERY == 0 or self.calls[request] <= request % 3:
            msg = f"request {request}: connection reset"
            raise ConnectionError(msg)
        return f"done {request}"


def show(option: str, text: str) -> None:
    print(f"  {option + ':':<20} {text}")


def check(condition: bool, what: str) -> None:  # noqa: FBT001 (a plain assertion)
    if not condition:
        raise SystemExit(f"check failed: {what}")


async def outcomes(pool: WorkerPool[int, str]) -> Counter[TicketState]:
    """Run every request through *pool*; count the final states."""
    tickets = [await pool.submit(n) for n in range(1, REQUESTS + 1)]
    for ticket in tickets:
        with anyio.fail_after(WAIT):
            with contextlib.suppress(ConnectionError):
                await ticket.result()
    return Counter(ticket.state for ticket in tickets)


async def without_retries() -> None:
    async with WorkerPool(Downstream(), workers=WORKERS) as pool:
        states = await outcomes(pool)
    failed = states[TicketState.FAILED]
    show("no retry", f"{failed} of {REQUESTS} failed")
    flaky = [n for n in range(1, REQUESTS + 1) if n % 3 or n % POISON_EVERY == 0]
    check(failed == len(flaky), "each request that fails once fails for good")


async def with_retries() -> None:
    # Only connection errors are worth another try; any other error is final.
    retry = Retry(3, backoff=0.01, on=(ConnectionError,))
    poison = REQUESTS // POISON_EVERY
    async with WorkerPool(
        Downstream(), workers=WORKERS, retry=retry, dead_letter_size=poison
    ) as pool:
        started = time.perf_counter()
        states = await outcomes(pool)
        elapsed = time.perf_counter() - started
        status = pool.status()
    letters: list[DeadLetter[int]] = [letter async for letter in pool.dead_letters]
    show(
        "retry=Retry(3)",
        f"{states[TicketState.SUCCEEDED]} succeeded, {status.failed} failed, "
        f"{status.retried} retries, in {elapsed:.2f} s",
    )
    first = letters[0]
    show(
        "dead letters",
        f"{len(letters)}: e.g. #{first.request} after {first.attempts} attempts, "
        f"{first.error_type}: {first.error_message}",
    )
    check(status.failed == poison, "only the poison requests fail")
    check(
        [n for n in range(1, REQUESTS + 1) if n % POISON_EVERY == 0]
        == [letter.request for letter in letters],
        "each poison request is a dead letter",
    )
    check(all(letter.attempts == 3 for letter in letters), "3 attempts each")
    check("Traceback" in first.traceback, "a dead letter has its traceback")
    transient = sum(n % 3 for n in range(1, REQUESTS + 1) if n % POISON_EVERY)
    check(status.retried == transient + 2 * poison, "one retry per failed attempt")


async def unread_dead_letters() -> None:
    async with WorkerPool(
        Downstream(), workers=WORKERS, retry=Retry(3, backoff=0), dead_letter_size=3
    ) as pool:
        await outcomes(pool)
        status = pool.status()
    show(
        "dead_letter_size=3",
        f"{status.dead_letters} dead letters, {status.dead_letters_dropped} "
        "dropped unread, no worker waited",
    )
    check(status.dead_letters - status.dead_letters_dropped == 3, "3 kept")


async def shutdown_in_a_backoff() -> None:
    retry = Retry(3, backoff=3600.0, max_backoff=3600.0)
    async with WorkerPool(Downstream(), workers=WORKERS, retry=retry) as pool:
        tickets = [await pool.submit(n) for n in range(1, 31)]
        with anyio.fail_after(WAIT):
            while pool.status().retrying < 20:  # noqa: ASYNC110 (figures the pool keeps)
                await anyio.sleep(0.01)
        started = time.perf_counter()
        await pool.shutdown()
        elapsed = time.perf_counter() - started
    failed = sum(ticket.state is TicketState.FAILED for ticket in tickets)
    show("shutdown", f"{failed} requests in a 1-hour backoff failed in {elapsed:.3f} s")
    check(failed == 20, "the requests in a backoff fail at shutdown")
    check(elapsed < WAIT, "shutdown does not wait out a backoff")


async def on_redis(url: str) -> None:
    import coredis  # noqa: PLC0415 (the redis extra: only for this part)

    from queuekeeper.redis import RedisQueue  # noqa: PLC0415

    retry = Retry(3, backoff=0.01, on=(ConnectionError,))
    poison = REQUESTS // POISON_EVERY
    downstream = Downstream()
    name = f"retries-example-{uuid.uuid4().hex[:12]}"
    async with coredis.Redis.from_url(url) as client:
        queue = RedisQueue(client, name)

        def workers() -> WorkerPool[int, str]:
            return WorkerPool(
                downstream,
                queue=RedisQueue(client, name),
                workers=WORKERS // 2,
                retry=retry,
                dead_letter_size=poison,
            )

        async with (
            WorkerPool[int, str](None, queue=queue, workers=0) as front,
            workers() as one,
            workers() as two,
        ):
            states = await outcomes(front)
            retried = one.status().retried + two.status().retried
        letters = await queue.dead_letters(limit=100)
    show(
        "on Redis",
        f"{states[TicketState.SUCCEEDED]} succeeded, {states[TicketState.FAILED]} "
        f"failed, {retried} retries by two pools; {len(letters)} dead letters in "
        "the queue's list",
    )
    check(states[TicketState.SUCCEEDED] == REQUESTS - poison, "all but poison succeed")
    check(
        [n for n in range(1, REQUESTS + 1) if n % POISON_EVERY == 0]
        == sorted(letter.request for letter in letters),
        "each poison request is in the queue's dead-letter list",
    )
    check(all(letter.attempts == 3 for letter in letters), "3 attempts each")
    transient = sum(n % 3 for n in range(1, REQUESTS + 1) if n % POISON_EVERY)
    check(retried == transient + 2 * poison, "one retry per failed attempt")


async def main(redis_url: str | None, redis_note: str | None) -> None:
    await without_retries()
    await with_retries()
    await unread_dead_letters()
    await shutdown_in_a_backoff()
    if redis_url is None:
        show("on Redis", f"skipped ({redis_note})")
    else:
        await on_redis(redis_url)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run_with_redis(main, parser.parse_args())


if __name__ == "__main__":
    cli()
