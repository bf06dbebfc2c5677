"""The four levels, custom ints and FIFO within a level, in the order served."""

from __future__ import annotations

import argparse

import anyio

from queuekeeper import Priority, WorkerPool


async def main() -> None:
    served: list[str] = []
    gate = anyio.Event()

    async def record(name: str) -> None:
        await gate.wait()  # hold the single worker until everything is queued
        served.append(name)

    async with WorkerPool(record, workers=1) as pool:
        blocker = await pool.submit("first (already running)")
        await anyio.wait_all_tasks_blocked()
        requests = [
            ("low-1", Priority.LOW),
            ("normal-1", Priority.NORMAL),
            ("critical-1", Priority.CRITICAL),
            ("background", 10),  # a custom level behind LOW
            ("high-1", Priority.HIGH),
            ("normal-2", Priority.NORMAL),
            ("emergency", 0),  # a custom level ahead of CRITICAL
            ("low-2", Priority.LOW),
        ]
        tickets = [await pool.submit(name, priority=level) for name, level in requests]
        for ticket in tickets:
            print(
                f"queued {ticket.request:<12} priority={ticket.priority!r:<22} "
                f"position={ticket.position}"
            )
        gate.set()
        await blocker.result()

    print("served:", ", ".join(served))
    expected = [
        "first (already running)",
        "emergency",
        "critical-1",
        "high-1",
        "normal-1",
        "normal-2",
        "low-1",
        "low-2",
        "background",
    ]
    assert served == expected, served


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
