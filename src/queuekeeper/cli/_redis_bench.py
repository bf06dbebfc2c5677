"""``queuekeeper bench --redis URL``: the Redis queue, measured on one server.

Every figure comes from the same server in one run, each measured in processes
of its own (this module, run as ``python -m queuekeeper.cli._redis_bench ROLE``):

- references: ``redis-benchmark``'s ZADD (50 clients), and an EVALSHA of a
  script that queues and takes one member (50 clients);
- the channel: send + receive, from 1 process and from 4;
- the pool end to end: one submitter process, and 1 or 2 worker processes,
  no-op requests;
- when installed (``queuekeeper[bench]``), streaQ and SAQ doing the same
  end-to-end workload: one submitter process, one worker process.

Each child prints one JSON line: what it measured.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

__all__ = ["run_redis_bench"]

#: Concurrent tasks in a process that sends, receives or submits.
CONCURRENCY: Final = 256
#: Workers in each worker process.
WORKERS: Final = 128
#: Clients of redis-benchmark (its figures are for 50 unless told).
CLIENTS: Final = 50
_SCRIPT: Final = (
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1]) "
    "return redis.call('ZPOPMIN', KEYS[1])"
)


def _child(role: str, url: str, *args: object, backend: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 (this interpreter, this module)
        [
            sys.executable,
            "-m",
            "queuekeeper.cli._redis_bench",
            role,
            url,
            backend,
            *map(str, args),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=600)
    # A child that crashed printed its traceback on stderr.
    if process.returncode != 0:  # pragma: no cover
        msg = f"a benchmark process failed (exit status {process.returncode})"
        raise RuntimeError(msg)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None  # noqa: S101 (a pipe was asked for)
    line = process.stdout.readline()
    if line.strip() != "ready":  # pragma: no cover (as above)
        msg = f"a benchmark process did not start: {line!r}"
        raise RuntimeError(msg)


def _host_port(url: str) -> tuple[str, int]:
    match = re.fullmatch(r"redis://([^:/]+)(?::(\d+))?/?\d*", url)
    if match is None:
        msg = f"--redis must look like redis://HOST:PORT, not {url!r}"
        raise ValueError(msg)
    return match[1], int(match[2] or 6379)


def _check_reachable(url: str) -> None:
    host, port = _host_port(url)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        msg = f"--redis {url}: cannot connect ({exc.strerror or exc})"
        raise ValueError(msg) from None


def _redis_benchmark(url: str, requests: int, *command: str) -> float | None:
    """Requests per second that redis-benchmark reports, or None without it."""
    executable = shutil.which("redis-benchmark")
    if executable is None:
        return None
    host, port = _host_port(url)
    done = subprocess.run(  # noqa: S603 (redis-benchmark from PATH)
        [
            executable,
            "-h",
            host,
            "-p",
            str(port),
            "-c",
            str(CLIENTS),
            "-n",
            str(requests),
            "-r",
            "1000000",
            "-q",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    found = re.findall(r"([\d.]+) requests per second", done.stdout)
    return float(found[-1]) if found else None


def _pool(url: str, backend: str, requests: int, worker_processes: int) -> float:
    name = f"bench-pool-{uuid.uuid4().hex[:8]}"
    workers = [
        _child("serve", url, name, WORKERS, backend=backend)
        for _ in range(worker_processes)
    ]
    try:
        for worker in workers:
            _ready(worker)
        result = _result(_child("submit", url, name, requests, backend=backend))
    finally:
        for worker in workers:
            worker.terminate()  # the pool drains and ends
            worker.communicate(timeout=60)
    return float(result["per_second"])


def _channel(url: str, backend: str, items: int, processes: int) -> float:
    """Items a second through one queue, from the first start to the last end.

    Each process sends its share and receives as many (not necessarily its own).
    """
    name = f"bench-channel-{uuid.uuid4().hex[:8]}"
    children = [
        _child("channel", url, name, items // processes, backend=backend)
        for _ in range(processes)
    ]
    for child in children:
        _ready(child)
    for child in children:  # all set up: go
        child.send_signal(signal.SIGUSR1)
    results = [_result(child) for child in children]
    start = min(result["start"] for result in results)
    end = max(result["end"] for result in results)
    return float((items // processes) * processes / (end - start))


def _reference(url: str, backend: str, requests: int, library: str) -> float | None:
    """The figure of streaQ or SAQ on the pool's workload; None if not installed."""
    if importlib.util.find_spec(library) is None:
        return None
    # SAQ runs on asyncio only.
    backend = "asyncio" if library == "saq" else backend
    name = f"bench-{library}-{uuid.uuid4().hex[:8]}"
    worker = _child(f"{library}-serve", url, name, WORKERS, backend=backend)
    try:
        _ready(worker)
        result = _result(
            _child(f"{library}-submit", url, name, requests, backend=backend)
        )
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    return float(result["per_second"])


def run_redis_bench(
    url: str, out: TextIO, *, requests: int = 20_000, backend: str = "asyncio"
) -> dict[str, Any]:
    """Measure the Redis queue on the server at *url*; report to *out*."""
    _check_reachable(url)

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    say(f"queuekeeper bench --redis {url} ({backend}, {requests:,} requests)")
    figures: dict[str, float | None] = {}
    sha = _load_script(url)
    figures["redis-benchmark ZADD (50 clients)"] = _redis_benchmark(
        url, 10 * requests, "zadd", "bench:{zadd}", "__rand_int__", "__rand_int__"
    )
    figures["redis-benchmark EVALSHA put+take (50 clients)"] = (
        None
        if sha is None
        else _redis_benchmark(
            url, 5 * requests, "evalsha", sha, "1", "bench:{evalsha}", "__rand_int__"
        )
    )
    figures["channel send+receive, 1 process"] = _channel(url, backend, requests, 1)
    figures["channel send+receive, 4 processes"] = _channel(url, backend, requests, 4)
    figures["pool, 1 submitter + 1 worker process"] = _pool(url, backend, requests, 1)
    figures["pool, 1 submitter + 2 worker processes"] = _pool(url, backend, requests, 2)
    figures["streaQ, 1 submitter + 1 worker process"] = _reference(
        url, backend, requests, "streaq"
    )
    figures["SAQ, 1 submitter + 1 worker process"] = _reference(
        url, backend, requests, "saq"
    )
    width = max(map(len, figures))
    for what, figure in figures.items():
        if figure is not None:
            shown = f"{figure:>10,.0f} /s"
        elif what.startswith("redis-benchmark"):
            shown = "not measured (no redis-benchmark)"
        else:
            shown = "not installed (pip install 'queuekeeper[bench]')"
        say(f"  {what:<{width}}  {shown}")
    ratios = _ratios(figures)
    if ratios:
        say()
        for what, ratio in ratios.items():
            say(f"  {what:<{width}}  {ratio:>10.2f}x")
    return {"url": url, "backend": backend, "per_second": figures, "ratios": ratios}


def _ratios(figures: dict[str, float | None]) -> dict[str, float]:
    zadd = figures["redis-benchmark ZADD (50 clients)"]
    pool = figures["pool, 1 submitter + 1 worker process"]
    assert pool is not None  # noqa: S101 (always measured)
    ratios: dict[str, float] = {}
    if zadd:
        channel = figures["channel send+receive, 1 process"]
        assert channel is not None  # noqa: S101 (always measured)
        ratios["channel (1 process) / ZADD"] = channel / zadd
    for library in ("streaQ", "SAQ"):
        figure = figures[f"{library}, 1 submitter + 1 worker process"]
        if figure:
            ratios[f"pool (1 + 1 processes) / {library}"] = pool / figure
    return ratios


def _load_script(url: str) -> str | None:
    executable = shutil.which("redis-cli")
    if executable is None:
        return None
    host, port = _host_port(url)
    done = subprocess.run(  # noqa: S603 (redis-cli from PATH)
        [executable, "-h", host, "-p", str(port), "script", "load", _SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip() or None


# -- the children -------------------------------------------------------------------


async def _noop(request: object) -> object:
    return request


async def _serve(url: str, name: str, workers: str) -> None:
    import anyio  # noqa: PLC0415
    import coredis  # noqa: PLC0415

    from .._pool import WorkerPool  # noqa: PLC0415
    from .._pool._redis import RedisQueue  # noqa: PLC0415

    async with coredis.Redis.from_url(url) as client:
        queue = RedisQueue(client, name)
        async with WorkerPool(_noop, queue=queue, workers=int(workers), name="bench"):
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                print("ready", flush=True)  # noqa: T201 (read by the parent)
                async for _ in signals:  # pragma: no branch (one is enough)
                    break


async def _submit(url: str, name: str, count: str) -> None:
    import anyio  # noqa: PLC0415
    import coredis  # noqa: PLC0415

    from .._pool import WorkerPool  # noqa: PLC0415
    from .._pool._redis import RedisQueue  # noqa: PLC0415

    total = int(count)
    async with coredis.Redis.from_url(url) as client:
        queue = RedisQueue(client, name)
        async with WorkerPool[int, int](None, queue=queue, workers=0) as pool:
            await pool.execute(-1)  # warm up: the library loaded, connections open
            start = time.perf_counter()

            async def submitter(first: int) -> None:
                for n in range(first, total, CONCURRENCY):
                    await pool.execute(n)

            async with anyio.create_task_group() as task_group:
                for first in range(CONCURRENCY):
                    task_group.start_soon(submitter, first)
            elapsed = time.perf_counter() - start
    print(json.dumps({"per_second": total / elapsed}))  # noqa: T201


async def _channel_child(url: str, name: str, count: str) -> None:
    import anyio  # noqa: PLC0415
    import coredis  # noqa: PLC0415

    from .._redis._channel import create_redis_priority_channel  # noqa: PLC0415

    total = int(count)
    async with coredis.Redis.from_url(url) as client:
        send, receive = create_redis_priority_channel(client, name)
        await send.fetch_statistics()  # the library loaded, a connection open
        with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
            print("ready", flush=True)  # noqa: T201 (read by the parent)
            async for _ in signals:  # pragma: no branch (the parent's "go")
                break
        start = time.time()
        received = 0

        async def sender(first: int) -> None:
            for n in range(first, total, CONCURRENCY // 2):
                await send.send(n, n % 4 + 1)

        async def receiver(share: int) -> None:
            nonlocal received
            for _ in range(share):
                await receive.receive()
                received += 1

        shares = [total // (CONCURRENCY // 2)] * (CONCURRENCY // 2)
        for i in range(total % (CONCURRENCY // 2)):
            shares[i] += 1
        async with anyio.create_task_group() as task_group:
            for first in range(CONCURRENCY // 2):
                task_group.start_soon(sender, first)
                task_group.start_soon(receiver, shares[first])
        end = time.time()
    print(json.dumps({"start": start, "end": end}))  # noqa: T201


def _streaq_worker(url: str, name: str, concurrency: int) -> tuple[Any, Any]:
    from streaq import Worker  # noqa: PLC0415

    worker = Worker(
        redis_url=url,
        # Each task waiting for its result holds a connection.
        redis_kwargs={"max_connections": 2 * CONCURRENCY},
        queue_name=name,
        concurrency=concurrency,
        handle_signals=False,
        anyio_backend=_backend(),
    )

    async def noop(request: int) -> int:
        return request

    return worker, worker.task(noop)


def _backend() -> Any:  # noqa: ANN401 (a literal streaQ checks)
    import sniffio  # noqa: PLC0415

    return sniffio.current_async_library()


async def _streaq_serve(url: str, name: str, workers: str) -> None:
    import anyio  # noqa: PLC0415

    worker, _ = _streaq_worker(url, name, int(workers))
    async with anyio.create_task_group() as task_group:
        await task_group.start(worker.run_async)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            print("ready", flush=True)  # noqa: T201 (read by the parent)
            async for _ in signals:  # pragma: no branch (one is enough)
                break
        task_group.cancel_scope.cancel()


async def _streaq_submit(url: str, name: str, count: str) -> None:
    import anyio  # noqa: PLC0415

    total = int(count)
    worker, noop = _streaq_worker(url, name, 1)
    async with worker:
        task = await noop.enqueue(-1)
        await task.result(timeout=60)  # warm up
        start = time.perf_counter()

        async def submitter(first: int) -> None:
            for n in range(first, total, CONCURRENCY):
                task = await noop.enqueue(n)
                await task.result(timeout=600)

        async with anyio.create_task_group() as task_group:
            for first in range(CONCURRENCY):
                task_group.start_soon(submitter, first)
        elapsed = time.perf_counter() - start
    print(json.dumps({"per_second": total / elapsed}))  # noqa: T201


async def _saq_noop(ctx: Any, *, request: int) -> int:  # noqa: ANN401, ARG001
    return request


async def _saq_serve(url: str, name: str, workers: str) -> None:
    import anyio  # noqa: PLC0415
    from saq import Queue, Worker  # noqa: PLC0415

    queue = Queue.from_url(url, name=name)
    worker = Worker(queue, functions=[("noop", _saq_noop)], concurrency=int(workers))
    async with anyio.create_task_group() as task_group:
        # Until SIGTERM, which SAQ handles itself.
        task_group.start_soon(worker.start)
        # Ready once its first upkeep ran: a job queued earlier may be swept.
        while not worker.tasks:  # noqa: ASYNC110 (SAQ offers no event for it)
            await anyio.sleep(0.01)
        print("ready", flush=True)  # noqa: T201 (read by the parent)


async def _saq_submit(url: str, name: str, count: str) -> None:
    import anyio  # noqa: PLC0415
    from saq import Queue  # noqa: PLC0415

    total = int(count)
    queue = Queue.from_url(url, name=name)
    await queue.connect()
    await queue.apply("noop", timeout=60, request=-1)  # warm up
    start = time.perf_counter()

    async def submitter(first: int) -> None:
        for n in range(first, total, CONCURRENCY):
            # A 10 ms poll for the result: SAQ's fastest (its default is 0.5 s).
            await queue.apply("noop", timeout=600, poll_interval=0.01, request=n)

    async with anyio.create_task_group() as task_group:
        for first in range(CONCURRENCY):
            task_group.start_soon(submitter, first)
    elapsed = time.perf_counter() - start
    await queue.disconnect()
    print(json.dumps({"per_second": total / elapsed}))  # noqa: T201


def _main(argv: Sequence[str]) -> None:
    import anyio  # noqa: PLC0415

    role, url, backend, name, number = argv
    run = {
        "serve": _serve,
        "submit": _submit,
        "channel": _channel_child,
        "streaq-serve": _streaq_serve,
        "streaq-submit": _streaq_submit,
        "saq-serve": _saq_serve,
        "saq-submit": _saq_submit,
    }[role]
    anyio.run(run, url, name, number, backend=backend)


if __name__ == "__main__":
    _main(sys.argv[1:])
