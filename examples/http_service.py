"""An HTTP service that puts every request through a WorkerPool.

A bare ASGI app served by hypercorn on 127.0.0.1 (on asyncio or on Trio):

- ``GET /work`` runs through the pool at the priority of the ``X-Priority`` header
  (``critical``, ``high``, ``normal``, ``low`` or an integer; default normal);
- a full queue answers ``503 Service Unavailable`` with ``Retry-After``, whether the
  request was refused (``QueueFull``) or evicted for a more urgent one
  (``RequestShed``); a bad header answers ``400``;
- ``GET /metrics`` serves the pool's Prometheus metrics.

The script drives itself: a burst of low-priority requests fills the pool, two
critical ones push queued low ones out, and the status codes are checked. It
exits non-zero if any outcome differs. Needs ``pip install 'hypercorn[trio]' httpx``.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
from hypercorn.asyncio import serve as serve_asyncio
from hypercorn.config import Config
from hypercorn.trio import serve as serve_trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from queuekeeper import (
    Backpressure,
    PoolStatus,
    Priority,
    PrometheusMetrics,
    QueueFull,
    RequestShed,
    WorkerPool,
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RETRY_AFTER = "1"  # seconds; a real service would derive it from the queue's wait


def parse_priority(header: str | None) -> int:
    """The X-Priority header as a priority: a level name or an integer."""
    if header is None:
        return Priority.NORMAL
    try:
        return Priority[header.strip().upper()]
    except KeyError:
        try:
            return int(header)
        except ValueError:
            msg = f"X-Priority must be critical, high, normal, low or an int, not {header!r}"
            raise ValueError(msg) from None


class App:
    """The ASGI application: /work through the pool, /metrics for Prometheus."""

    def __init__(self, pool: WorkerPool[str, str], registry: CollectorRegistry) -> None:
        self.pool = pool
        self.registry = registry

    async def __call__(
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/metrics":
            status, body, extra = 200, generate_latest(self.registry), {}
            content_type = CONTENT_TYPE_LATEST
        elif scope["path"] == "/work":
            status, payload, extra = await self.work(headers)
            body, content_type = json.dumps(payload).encode(), "application/json"
        else:
            status, body, extra = 404, b'{"error": "not found"}', {}
            content_type = "application/json"
        response_headers = [(b"content-type", content_type.encode())]
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": response_headers,
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def work(self, headers: dict[str, str]) -> tuple[int, object, dict[str, str]]:
        try:
            priority = parse_priority(headers.get("x-priority"))
        except ValueError as exc:
            return 400, {"error": str(exc)}, {}
        try:
            result = await self.pool.execute(
                headers.get("x-name", "?"), priority=priority
            )
        except (QueueFull, RequestShed) as exc:
            return 503, {"error": str(exc)}, {"retry-after": RETRY_AFTER}
        return 200, {"result": result}, {}


class Burst:
    """The client side: a burst, then two critical requests, then a bad one."""

    def __init__(self, pool: WorkerPool[str, str], url: str) -> None:
        self.pool = pool
        self.url = url
        self.codes: dict[str, list[int]] = {"low": [], "critical": []}
        self.retry_after: list[str | None] = []

    async def call(self, client: httpx.AsyncClient, name: str, priority: str) -> None:
        response = await client.get(
            f"{self.url}/work", headers={"X-Priority": priority, "X-Name": name}
        )
        self.codes[priority].append(response.status_code)
        if response.status_code == 503:
            self.retry_after.append(response.headers.get("retry-after"))

    async def until(self, predicate: Callable[[PoolStatus], bool]) -> None:
        """Wait until the pool's own counters show what comes next."""
        with anyio.fail_after(30):
            while not predicate(self.pool.status()):  # noqa: ASYNC110 (polls status)
                await anyio.sleep(0.005)

    async def run(self, release: anyio.Event) -> tuple[httpx.Response, str]:
        async with httpx.AsyncClient(timeout=30) as client:
            async with anyio.create_task_group() as burst:
                for n in range(12):  # 2 run, 4 wait, 6 are refused
                    burst.start_soon(self.call, client, f"low-{n}", "low")
                await self.until(lambda s: s.submitted + s.rejected == 12)
                for n in range(2):  # each pushes out the newest queued low request
                    burst.start_soon(self.call, client, f"critical-{n}", "critical")
                await self.until(lambda s: s.submitted + s.rejected == 14)
                release.set()
            bad = await client.get(f"{self.url}/work", headers={"X-Priority": "urgent"})
            metrics = (await client.get(f"{self.url}/metrics")).text
        return bad, metrics


async def main(backend: str) -> None:
    release = anyio.Event()

    async def handler(name: str) -> str:
        await release.wait()  # stands in for the real work (a model call, a query)
        return f"done {name}"

    registry = CollectorRegistry()
    pool = WorkerPool(
        handler,
        workers=2,
        max_queue_size=4,
        backpressure=Backpressure.SHED,
        name="http",
        metrics=PrometheusMetrics(registry),
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the socket now
    config.accesslog = None
    config.errorlog = None
    serve = serve_trio if backend == "trio" else serve_asyncio
    stop = anyio.Event()
    burst = Burst(pool, url)
    async with pool, anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: serve(App(pool, registry), config, shutdown_trigger=stop.wait)
        )
        bad, metrics = await burst.run(release)
        stop.set()

    low, critical = Counter(burst.codes["low"]), Counter(burst.codes["critical"])
    print(f"backend={backend} low: {dict(low)} critical: {dict(critical)}")
    print(f"bad priority: {bad.status_code} {bad.json()['error']}")
    rejected = next(
        line
        for line in metrics.splitlines()
        if line.startswith("queuekeeper_queue_requests_rejected_total{")
    )
    print(f"metrics: {rejected}")
    assert low == {200: 4, 503: 8}, low
    assert critical == {200: 2}, critical
    assert burst.retry_after == ["1"] * 8, burst.retry_after
    assert bad.status_code == 400
    assert (
        'queuekeeper_queue_requests_total{pool="http",priority="critical"} 2.0'
        in metrics
    )
    assert rejected.endswith(" 6.0"), rejected


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    backend = parser.parse_args().backend
    anyio.run(main, backend, backend=backend)
