"""Another process on a Redis queue, for the tests that need several of them.

python tests/redis_process.py BACKEND PORT NAME produce FIRST COUNT MAX_SIZE
    sends FIRST .. FIRST+COUNT-1 (priority: the number mod 4), waiting for room
python tests/redis_process.py BACKEND PORT NAME lease LEASE
    takes one item under a lease of LEASE seconds, prints it, then holds it
    until killed
python tests/redis_process.py BACKEND PORT NAME serve WORKERS LEASE
    runs a WorkerPool of WORKERS workers on the queue (see serve()) until killed
python tests/redis_process.py BACKEND PORT NAME policy WORKERS POLICY
    the same with the scheduling options of POLICY, a JSON object: "rate_limits"
    ({level: [rate, per, burst]}) and "weights" ({level: weight}); a request
    ["stamp", n] returns the server's clock as it started, in seconds
python tests/redis_process.py BACKEND PORT NAME retry ATTEMPTS BACKOFF
    runs a WorkerPool of flaky() with retry=Retry(ATTEMPTS, backoff=BACKOFF) and
    dead_letter_size=10 until killed
python tests/redis_process.py BACKEND PORT NAME dead
    prints the queue's dead letters (JSON, one a line), then "end"
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import coredis

from queuekeeper import RateLimit, Retry, WeightedFair, WorkerPool
from queuekeeper.redis import RedisQueue, create_redis_priority_channel


async def handle(request: Any) -> Any:
    """``["double", n]`` returns 2n; ``["hold", tag]`` prints it and never returns."""
    op, value = request
    if op == "hold":
        print("holding", value, flush=True)  # noqa: T201 (what the test reads)
        await anyio.sleep_forever()
    return 2 * value


async def serve(
    client: coredis.Redis[Any], name: str, workers: int, lease: float
) -> None:
    """Serve the queue with a pool until killed."""
    queue = RedisQueue(client, name, lease=lease)
    async with WorkerPool(handle, queue=queue, workers=workers, name="remote"):
        print("serving", flush=True)  # noqa: T201 (what the test reads)
        await anyio.sleep_forever()


async def serve_policy(
    client: coredis.Redis[Any], name: str, workers: int, policy: str
) -> None:
    """Serve the queue with a pool under rate limits and/or weights until killed."""
    options = json.loads(policy)
    limits = {
        int(level): RateLimit(rate, per=per, burst=burst)
        for level, (rate, per, burst) in options.get("rate_limits", {}).items()
    }
    weights = options.get("weights")
    scheduling = (
        None
        if weights is None
        else WeightedFair({int(level): weight for level, weight in weights.items()})
    )

    async def stamp(request: Any) -> Any:
        if request[0] == "stamp":
            return (await client.time()).timestamp()
        return await handle(request)

    queue = RedisQueue(client, name)
    async with WorkerPool(
        stamp,
        queue=queue,
        workers=workers,
        name="remote",
        rate_limits=limits,
        scheduling=scheduling,
    ):
        print("serving", flush=True)  # noqa: T201 (what the test reads)
        await anyio.sleep_forever()


def flaky(client: coredis.Redis[Any]) -> Any:
    """``[key, n]``: the n-th call with *key* (counted on the server) returns n.

    The calls before it raise ``ConnectionError``.
    """

    async def handle(request: Any) -> Any:
        key, succeeds_at = request
        count = await client.incr(key)
        print("run", key, count, flush=True)  # noqa: T201 (what the test reads)
        if count < succeeds_at:
            msg = f"{key} down at run {count}"
            raise ConnectionError(msg)
        return count

    return handle


async def main(port: int, name: str, command: str, *args: str) -> None:
    """Do *command* on the queue *name* of the server on *port*."""
    client: coredis.Redis[Any] = coredis.Redis(host="127.0.0.1", port=port)
    async with client:
        if command == "produce":
            first, count, max_size = (int(arg) for arg in args)
            send, _ = create_redis_priority_channel(client, name, max_size=max_size)
            for item in range(first, first + count):
                await send.send(item, item % 4)
            print("sent", flush=True)  # noqa: T201 (what the test reads)
        elif command == "serve":
            await serve(client, name, int(args[0]), float(args[1]))
        elif command == "policy":
            await serve_policy(client, name, int(args[0]), args[1])
        elif command == "retry":
            retry = Retry(int(args[0]), backoff=float(args[1]), jitter=False)
            async with WorkerPool(
                flaky(client),
                queue=RedisQueue(client, name, lease=30.0),
                workers=2,
                retry=retry,
                dead_letter_size=10,
            ):
                print("serving", flush=True)  # noqa: T201 (what the test reads)
                await anyio.sleep_forever()
        elif command == "dead":
            for letter in await RedisQueue(client, name).dead_letters(10):
                fields = [letter.error_type, letter.error_message, letter.attempts]
                print(json.dumps([*fields, letter.request]), flush=True)  # noqa: T201
            print("end", flush=True)  # noqa: T201 (what the test reads)
        else:
            _, receive = create_redis_priority_channel(
                client, name, lease=float(args[0])
            )
            async with receive.lease() as delivery:
                print("leased", delivery.item, delivery.deliveries, flush=True)  # noqa: T201
                await anyio.sleep_forever()


if __name__ == "__main__":
    backend, port, name, command, *rest = sys.argv[1:]
    anyio.run(main, int(port), name, command, *rest, backend=backend)
