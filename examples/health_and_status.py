"""Polling status() and worker_health() while work runs."""

from __future__ import annotations

import argparse

import anyio

from queuekeeper import Priority, WorkerPool


async def main() -> None:
    async def handler(n: int) -> int:
        await anyio.sleep(0.002 * (n % 5))
        if n % 7 == 0:
            raise ValueError(f"request {n} is unlucky")
        return n

    async with WorkerPool(handler, workers=3, max_queue_size=50, name="demo") as pool:
        tickets = [
            pool.submit_nowait(
                n, priority=Priority.HIGH if n % 4 == 0 else Priority.LOW
            )
            for n in range(40)
        ]
        while not all(ticket.done() for ticket in tickets):
            status = pool.status()
            depth = {
                Priority(p).name: c for p, c in status.queue_size_by_priority.items()
            }
            print(
                f"{status.state:<8} active {status.active_workers}/{status.max_workers} "
                f"queued {status.queue_size:>2} {depth} "
                f"wait p50 {status.wait_time_ms_p50:6.2f} ms"
            )
            await anyio.sleep(0.01)

        for health in pool.worker_health():
            print(
                f"worker {health.worker_id}: healthy={health.is_healthy} "
                f"processed={health.total_processed} errors={health.total_errors} "
                f"last_error={health.last_error}"
            )
        status = pool.status()

    settled = (
        status.completed
        + status.failed
        + status.cancelled
        + status.timed_out
        + status.shed
    )
    print(
        f"submitted {status.submitted} = settled {settled} "
        f"(completed {status.completed}, failed {status.failed})"
    )
    assert status.submitted == settled == 40
    assert status.failed == len([n for n in range(40) if n % 7 == 0])
    assert sum(h.total_processed for h in status.workers) == 40


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
