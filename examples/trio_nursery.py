"""A Trio-native program: nursery.start(pool.run), and the channel with async for.

It calls Trio itself (trio.run, trio.open_nursery), so it runs on Trio only and
takes no options. The other examples run on asyncio or on Trio, as you choose.
"""

from __future__ import annotations

import argparse

import trio

from queuekeeper import (
    Priority,
    PrioritySendChannel,
    WorkerPool,
    create_priority_channel,
)

Item = tuple[int, str]


async def main() -> None:
    # The channel: producers in a nursery, one consumer reading with async for.
    send, receive = create_priority_channel[Item](max_size=4)
    received: list[Item] = []

    async def produce(
        name: str, level: Priority, count: int, send: PrioritySendChannel[Item]
    ) -> None:
        async with send:
            for i in range(count):
                await send.send((i, name), level)

    async with trio.open_nursery() as nursery:
        async with send:
            nursery.start_soon(produce, "low", Priority.LOW, 5, send.clone())
            nursery.start_soon(produce, "high", Priority.HIGH, 5, send.clone())
        async with receive:
            received.extend([item async for item in receive])
    print("received:", received)
    for name in ("low", "high"):
        assert [i for i, n in received if n == name] == list(range(5))  # FIFO per level

    # The pool, started in the caller's nursery.
    async def handler(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * x

    pool = WorkerPool(handler, workers=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        squares = [await pool.execute(x) for x in range(5)]
        await pool.shutdown()
    print("squares:", squares)
    assert squares == [0, 1, 4, 9, 16]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _, extra = parser.parse_known_args()
    if extra:  # refused rather than ignored: this runs on Trio whatever you ask
        parser.error(
            f"it runs on Trio only and takes no options (got {' '.join(extra)})"
        )
    trio.run(main)
