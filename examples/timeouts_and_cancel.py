"""queue_timeout, timeout and ticket.cancel(): work that is abandoned does not run."""

from __future__ import annotations

import argparse
import contextlib

import anyio

from queuekeeper import (
    QueueTimeout,
    RequestCancelled,
    RequestTimeout,
    TicketState,
    WorkerPool,
)


async def main() -> None:
    ran: list[str] = []
    release = anyio.Event()

    async def handler(name: str) -> str:
        ran.append(name)
        if name == "slow":
            await anyio.sleep_forever()  # cut by its timeout
        if name == "blocker":
            await release.wait()
        return name

    async with WorkerPool(handler, workers=1) as pool:
        blocker = await pool.submit("blocker")
        await anyio.wait_all_tasks_blocked()

        # Waits in the queue longer than its queue_timeout: dropped without running.
        impatient = await pool.submit("impatient", queue_timeout=0.05)
        # Cancelled while queued: leaves the queue at once.
        unwanted = await pool.submit("unwanted")
        print(
            "unwanted at position", unwanted.position, "-> cancel():", unwanted.cancel()
        )

        try:
            await impatient.result()
        except QueueTimeout as exc:
            print("impatient:", type(exc).__name__, "-", exc)
        release.set()
        await blocker.result()

        # A running handler is cancelled through its cancel scope at the deadline.
        slow = await pool.submit("slow", timeout=0.05)
        try:
            await slow.result()
        except RequestTimeout as exc:
            print("slow:", type(exc).__name__, "-", exc)

        # Cancelling the caller of execute() cancels the request too.
        with anyio.move_on_after(0.05):
            await pool.execute("slow")
        await anyio.wait_all_tasks_blocked()

    with contextlib.suppress(RequestCancelled):
        await unwanted.result()
    assert impatient.state is TicketState.TIMED_OUT
    assert unwanted.state is TicketState.CANCELLED
    assert slow.state is TicketState.TIMED_OUT
    assert isinstance(RequestTimeout("x"), TimeoutError)
    print("handler ran for:", ran)
    assert ran == ["blocker", "slow", "slow"], ran  # never 'impatient' nor 'unwanted'
    status = pool.status()
    print(f"timed out {status.timed_out}, cancelled {status.cancelled}")
    assert (status.timed_out, status.cancelled) == (2, 2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
