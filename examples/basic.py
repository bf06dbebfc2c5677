"""A pool with a handler: execute() waits for a result, submit() hands back a ticket."""

from __future__ import annotations

import argparse
import sys

import anyio

from queuekeeper import Priority, TicketState, WorkerPool


async def shout(text: str) -> str:
    """The handler: any async callable taking one request."""
    await anyio.sleep(0.01)  # stands in for a model call, a query, an API request
    return text.upper()


async def main() -> None:
    async with WorkerPool(shout, workers=2, max_queue_size=10) as pool:
        # execute(): submit and wait for the handler's result.
        answer = await pool.execute("hello")
        print("execute ->", answer)
        assert answer == "HELLO"

        # submit(): queue it and get a ticket; collect the result later.
        tickets = [
            await pool.submit(word, priority=Priority.HIGH) for word in ("a", "b")
        ]
        results = [await ticket.result() for ticket in tickets]
        print("submit  ->", results, [ticket.state.value for ticket in tickets])
        assert results == ["A", "B"]
        assert all(ticket.state is TicketState.SUCCEEDED for ticket in tickets)

        status = pool.status()
        print(f"completed {status.completed} of {status.submitted} submitted")
        assert status.completed == status.submitted == 3


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
    sys.exit(0)
