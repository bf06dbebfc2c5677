"""Drain with a deadline: what finishes in time succeeds, the rest is cancelled."""

from __future__ import annotations

import argparse

import anyio

from queuekeeper import PoolClosed, TicketState, WorkerPool


async def main() -> None:
    async def handler(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    # Two workers; two quick requests, then two that outlast the drain deadline.
    pool = WorkerPool(handler, workers=2, drain_timeout=0.5)
    async with anyio.create_task_group() as task_group:
        await task_group.start(pool.run)
        tickets = [pool.submit_nowait(s) for s in (0.01, 0.02, 30.0, 30.0)]
        await anyio.sleep(0.05)  # let the quick ones finish
        print("state before shutdown:", pool.status().state)
        await pool.shutdown()  # drains for up to drain_timeout, then cancels
        print("state after shutdown: ", pool.status().state)
        try:
            await pool.submit(1.0)
        except PoolClosed as exc:
            print("late submit:", exc)

    states = [ticket.state for ticket in tickets]
    print("outcomes:", [state.value for state in states])
    assert states == [TicketState.SUCCEEDED] * 2 + [TicketState.CANCELLED] * 2
    assert all(ticket.done() for ticket in tickets)  # nothing is left pending
    assert pool.status().state == "closed"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
