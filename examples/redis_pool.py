"""One priority queue, two processes: this one submits, a worker process serves.

    pip install 'queuekeeper[redis]'
    python examples/redis_pool.py [--backend asyncio|trio] [--redis redis://HOST:PORT]

Without ``--redis`` it starts a throwaway ``redis-server`` from PATH on 127.0.0.1
(and says so and exits if there is none). The worker process is this script with
``--worker``; it serves until a "stop" request reaches it, then drains and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

import anyio
import coredis
from _redis_server import throwaway_redis
from anyio.streams.buffered import BufferedByteReceiveStream

from queuekeeper import Priority, WorkerPool
from queuekeeper.redis import RedisQueue

QUEUE = "example-jobs"
#: A request and a reply: what JSON carries.
Job = dict[str, Any]


async def worker(url: str) -> None:
    """Serve the queue with 4 workers until a stop request comes."""
    stop = anyio.Event()

    async def handle(request: Job) -> Job:
        if request["op"] == "stop":
            stop.set()
            return {"pid": os.getpid(), "answer": "stopping"}
        await anyio.sleep(0.01)  # the work
        return {"pid": os.getpid(), "answer": request["prompt"].upper()}

    async with coredis.Redis.from_url(url) as client:
        queue = RedisQueue(client, QUEUE, lease=10)
        async with WorkerPool(handle, queue=queue, workers=4, name="worker"):
            print("worker: serving", flush=True)
            await stop.wait()
        # Leaving the block drained the pool: every request it took is answered.
    print("worker: done", flush=True)


async def submitter(url: str, backend: str) -> None:
    """Start a worker process, submit requests by priority, print who ran them."""
    command = [sys.executable, __file__, "--worker", "--redis", url]
    async with await anyio.open_process([*command, "--backend", backend]) as child:
        assert child.stdout is not None
        lines = BufferedByteReceiveStream(child.stdout)
        print((await lines.receive_until(b"\n", 1000)).decode())  # "worker: serving"
        async with coredis.Redis.from_url(url) as client:
            queue = RedisQueue(client, QUEUE, max_size=100)
            # workers=0: this process only submits; its tickets resolve when the
            # worker process has run the requests.
            async with WorkerPool[Job, Job](
                None, queue=queue, workers=0, name="web"
            ) as pool:
                prompts = [("low", Priority.LOW), ("urgent", Priority.CRITICAL)]
                prompts += [(f"normal-{n}", Priority.NORMAL) for n in range(4)]
                tickets = [
                    await pool.submit({"op": "work", "prompt": p}, priority=level)
                    for p, level in prompts
                ]
                for (prompt, level), ticket in zip(prompts, tickets, strict=True):
                    reply = await ticket.result()
                    print(
                        f"{ticket.id:<6} {level.name:<8} {prompt:<9} -> "
                        f"{reply['answer']:<9} (run by pid {reply['pid']}, "
                        f"this is pid {os.getpid()})"
                    )
                await pool.execute({"op": "stop"}, priority=255)
        print((await lines.receive_until(b"\n", 1000)).decode())  # "worker: done"
        if await child.wait() != 0:
            raise SystemExit(f"the worker process exited with {child.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--redis", help="a Redis URL (default: start redis-server)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker, args.redis, backend=args.backend)
        return
    if args.redis:
        anyio.run(submitter, args.redis, args.backend, backend=args.backend)
        return
    executable = shutil.which("redis-server")
    if executable is None:
        print("redis-server is not installed: pass --redis URL, or install it")
        return
    with throwaway_redis(executable) as url:
        anyio.run(submitter, url, args.backend, backend=args.backend)


if __name__ == "__main__":
    main()
