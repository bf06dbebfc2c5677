"""REJECT, BLOCK and SHED side by side: a burst of 8 requests into a queue of 3."""

from __future__ import annotations

import argparse

import anyio

from queuekeeper import Backpressure, Priority, QueueFull, RequestShed, WorkerPool

BURST = [
    Priority.LOW,
    Priority.LOW,
    Priority.NORMAL,
    Priority.LOW,
    Priority.HIGH,
    Priority.CRITICAL,
    Priority.NORMAL,
    Priority.HIGH,
]


async def burst(mode: Backpressure) -> dict[str, int]:
    gate = anyio.Event()

    async def handler(n: int) -> int:
        await gate.wait()
        return n

    outcome = {"accepted": 0, "rejected": 0, "shed": 0, "succeeded": 0}
    async with WorkerPool(
        handler, workers=1, max_queue_size=3, backpressure=mode
    ) as pool:
        await pool.submit(-1)  # occupies the only worker
        await anyio.wait_all_tasks_blocked()
        tickets = []
        async with anyio.create_task_group() as task_group:
            for n, level in enumerate(BURST):
                if mode is Backpressure.BLOCK:
                    # Blocked submitters wait their turn; let them queue up.
                    async def submit(n: int = n, level: Priority = level) -> None:
                        tickets.append(await pool.submit(n, priority=level))

                    task_group.start_soon(submit)
                    continue
                try:
                    tickets.append(await pool.submit(n, priority=level))
                except QueueFull:
                    outcome["rejected"] += 1
            await anyio.wait_all_tasks_blocked()
            gate.set()
        for ticket in tickets:
            outcome["accepted"] += 1
            try:
                await ticket.result()
                outcome["succeeded"] += 1
            except RequestShed:
                outcome["shed"] += 1
    return outcome


async def main() -> None:
    results = {mode: await burst(mode) for mode in Backpressure}
    for mode, outcome in results.items():
        print(f"{mode.name:<6} {outcome}")
    assert results[Backpressure.REJECT] == {
        "accepted": 3,
        "rejected": 5,
        "shed": 0,
        "succeeded": 3,
    }
    assert results[Backpressure.BLOCK] == {
        "accepted": 8,
        "rejected": 0,
        "shed": 0,
        "succeeded": 8,
    }
    # SHED admits a higher-priority arrival by evicting the newest request of the
    # lowest queued level; an arrival no higher than that level is rejected.
    assert results[Backpressure.SHED] == {
        "accepted": 6,
        "rejected": 2,
        "shed": 3,
        "succeeded": 3,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
