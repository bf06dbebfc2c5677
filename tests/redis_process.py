"""Another process on a Redis queue, for the tests that need several of them.

python tests/redis_process.py BACKEND PORT NAME produce FIRST COUNT MAX_SIZE
    sends FIRST .. FIRST+COUNT-1 (priority: the number mod 4), waiting for room
python tests/redis_process.py BACKEND PORT NAME lease LEASE
    takes one item under a lease of LEASE seconds, prints it, then holds it
    until killed
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import coredis

from queuekeeper.redis import create_redis_priority_channel


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
