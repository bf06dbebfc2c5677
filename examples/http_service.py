"""An HTTP service that puts every request through a WorkerPool.

A bare ASGI app served by hypercorn (on asyncio or on Trio):

- GET /work runs through the pool at the priority of the X-Priority header
  (critical, high, normal, low or an integer; default normal);
- a full queue answers 503 Service Unavailable with Retry-After, whether the
  request was refused (QueueFull) or evicted for a more urgent one (RequestShed);
  so does a pool that is shutting down; a bad header answers 400;
- a client that hangs up (http.disconnect) has its ticket cancelled: a queued
  request never runs and a running one is cancelled (hypercorn does not cancel
  the app when its client leaves: the app has to do it);
- GET /metrics serves the pool's Prometheus metrics.

By default the script tests itself: a burst of low-priority requests fills the
pool, two critical ones push queued low ones out, a client hangs up while its
request waits, and the outcomes are checked. It exits non-zero if any differs.

With --serve it serves until SIGTERM or Ctrl-C, then drains: it stops accepting,
lets the requests it holds run for up to --drain-timeout seconds (those still
waiting then answer 503), and gives hypercorn a graceful timeout longer than
that, so that every response is written. A second signal stops at once. Try:

  python examples/http_service.py --serve --port 8000
  curl -i -H 'X-Priority: high' http://127.0.0.1:8000/work
  wrk -t2 -c50 -d10s http://127.0.0.1:8000/work

Needs pip install -r examples/requirements.txt (hypercorn, httpx).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from queuekeeper import (
    Backpressure,
    PoolClosed,
    PoolStatus,
    Priority,
    PrometheusMetrics,
    QueueFull,
    RequestCancelled,
    RequestShed,
    Ticket,
    WorkerPool,
)

if TYPE_CHECKING:
    import httpx

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RETRY_AFTER = "1"  # seconds; a real service would derive it from the queue's wait
#: How much longer than the pool's drain the server waits for responses to be
#: written. It must be longer: hypercorn's default graceful timeout, 3 s, cuts
#: the requests still in the pool then, and their clients get 500s.
GRACE = 5.0


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


async def cancel_on_hang_up(
    receive: Receive, ticket: Ticket[str], hung_up: anyio.Event
) -> None:
    """Cancel *ticket* when the client disconnects.

    The server does not cancel the app when its client leaves: it only sends
    http.disconnect on the receive channel.
    """
    while (await receive())["type"] != "http.disconnect":
        pass  # the request's body: /work reads none
    hung_up.set()
    ticket.cancel()


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
        extra: dict[str, str]
        if scope["path"] == "/metrics":
            status, body, extra = 200, generate_latest(self.registry), {}
            content_type = CONTENT_TYPE_LATEST
        elif scope["path"] == "/work":
            answer = await self.work(headers, receive)
            if answer is None:
                return  # the client hung up: there is nobody to answer
            status, payload, extra = answer
            body, content_type = json.dumps(payload).encode(), "application/json"
        else:
            status, body, extra = 404, b'{"error": "not found"}', {}
            content_type = "application/json"
        extra |= {"content-type": content_type, "content-length": str(len(body))}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def work(
        self, headers: dict[str, str], receive: Receive
    ) -> tuple[int, object, dict[str, str]] | None:
        """Status, payload and headers of the answer; None if the client left."""
        try:
            priority = parse_priority(headers.get("x-priority"))
        except ValueError as exc:
            return 400, {"error": str(exc)}, {}
        try:
            ticket = await self.pool.submit(
                headers.get("x-name", "?"), priority=priority
            )
        except (QueueFull, PoolClosed) as exc:
            return 503, {"error": str(exc)}, {"retry-after": RETRY_AFTER}
        hung_up = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_on_hang_up, receive, ticket, hung_up)
                with contextlib.suppress(Exception):
                    await ticket.result()  # its outcome is read below
                tg.cancel_scope.cancel()  # stop listening for the client
        finally:
            ticket.cancel()  # False once finished; else the server cancelled us
        try:
            result = await ticket.result()
        except (RequestShed, RequestCancelled) as exc:
            # Evicted for a more urgent request, or still waiting when the
            # pool's drain ended; or cancelled because the client hung up.
            if hung_up.is_set():
                return None
            return 503, {"error": str(exc)}, {"retry-after": RETRY_AFTER}
        return 200, {"result": result}, {}


def listen(host: str, port: int) -> socket.socket:
    """A listening socket for hypercorn: binding it first tells us the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def hypercorn_config(listener: socket.socket) -> Any:  # noqa: ANN401 (hypercorn's Config)
    from hypercorn.config import Config  # noqa: PLC0415 (only to serve)

    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the socket now
    config.accesslog = None
    return config


def hypercorn_serve(backend: str) -> Callable[..., Coroutine[Any, Any, None]]:
    if backend == "trio":
        from hypercorn.trio import serve as serve_trio  # noqa: PLC0415 (to serve)

        return serve_trio
    from hypercorn.asyncio import serve as serve_asyncio  # noqa: PLC0415 (to serve)

    return serve_asyncio


def url_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


# -- the self-test ----------------------------------------------------------------


class Burst:
    """The client side: a burst, two critical requests, one that hangs up, a bad one."""

    def __init__(self, pool: WorkerPool[str, str], url: str) -> None:
        self.pool = pool
        self.url = url
        self.codes: dict[str, list[int]] = {"low": [], "high": [], "critical": []}
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
        import httpx  # noqa: PLC0415 (the self-test's client)

        async with httpx.AsyncClient(timeout=30) as client:
            async with anyio.create_task_group() as burst:
                for n in range(12):  # 2 run, 4 wait, 6 are refused
                    burst.start_soon(self.call, client, f"low-{n}", "low")
                await self.until(lambda s: s.submitted + s.rejected == 12)
                for n in range(2):  # each pushes out the newest queued low request
                    burst.start_soon(self.call, client, f"critical-{n}", "critical")
                await self.until(lambda s: s.submitted + s.rejected == 14)
                async with anyio.create_task_group() as leaver:
                    # It pushes out a third low request, then its client gives up
                    # (httpx closes the connection): its ticket is cancelled.
                    leaver.start_soon(self.call, client, "leaver", "high")
                    await self.until(lambda s: s.submitted == 9)
                    leaver.cancel_scope.cancel()
                await self.until(lambda s: s.cancelled == 1)
                release.set()
            bad = await client.get(f"{self.url}/work", headers={"X-Priority": "urgent"})
            metrics = (await client.get(f"{self.url}/metrics")).text
        return bad, metrics


async def self_test(backend: str) -> None:
    release = anyio.Event()
    ran: list[str] = []

    async def handler(name: str) -> str:
        ran.append(name)
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
    listener = listen("127.0.0.1", 0)
    burst = Burst(pool, url_of(listener))
    config = hypercorn_config(listener)
    config.errorlog = None
    serve = hypercorn_serve(backend)
    stop = anyio.Event()
    async with pool, anyio.create_task_group() as tg:
        tg.start_soon(
            partial(serve, App(pool, registry), config, shutdown_trigger=stop.wait)
        )
        bad, metrics = await burst.run(release)
        stop.set()

    low, critical = Counter(burst.codes["low"]), Counter(burst.codes["critical"])
    print(f"backend={backend} low: {dict(low)} critical: {dict(critical)}")
    print(
        f"a client hung up while queued: cancelled {pool.status().cancelled}, "
        f"its handler ran: {'leaver' in ran}"
    )
    print(f"bad priority: {bad.status_code} {bad.json()['error']}")
    rejected = next(
        line
        for line in metrics.splitlines()
        if line.startswith("queuekeeper_queue_requests_rejected_total{")
    )
    print(f"metrics: {rejected}")
    assert low == {200: 3, 503: 9}, low
    assert critical == {200: 2}, critical
    assert burst.codes["high"] == [], burst.codes["high"]  # no answer: it left
    assert burst.retry_after == ["1"] * 9, burst.retry_after
    assert "leaver" not in ran, ran
    assert Counter(name.split("-")[0] for name in ran) == {"low": 3, "critical": 2}, ran
    assert bad.status_code == 400
    assert (
        'queuekeeper_queue_requests_total{pool="http",priority="critical"} 2.0'
        in metrics
    )
    assert (
        'queuekeeper_requests_completed_total{outcome="cancelled",pool="http",'
        'priority="high"} 1.0' in metrics
    )
    assert rejected.endswith(" 6.0"), rejected


# -- the serve mode -----------------------------------------------------------------


async def cut_short(
    signals: AsyncIterator[signal.Signals], drain: anyio.CancelScope
) -> None:
    """A second signal cancels what is left: those requests answer 503 at once."""
    signum = await anext(signals)
    print(f"{signum.name} again: cancelling what is left", flush=True)
    drain.cancel()


async def serve(options: argparse.Namespace, listener: socket.socket) -> None:
    async def handler(name: str) -> str:
        await anyio.sleep(options.work_time)  # stands in for the real work
        return f"done {name}"

    registry = CollectorRegistry()
    pool = WorkerPool(
        handler,
        workers=options.workers,
        max_queue_size=options.max_queue_size,
        backpressure=Backpressure.SHED,
        name="http",
        metrics=PrometheusMetrics(registry),
        drain_timeout=options.drain_timeout,
    )
    url = url_of(listener)
    config = hypercorn_config(listener)
    # Longer than the drain, so that every response is written before hypercorn
    # cuts the connections that are left.
    config.graceful_timeout = options.drain_timeout + GRACE
    server = hypercorn_serve(options.backend)
    stop = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(
                partial(server, App(pool, registry), config, shutdown_trigger=stop.wait)
            )
            print(
                f"serving {url}/work and {url}/metrics on {options.backend}, "
                f"workers={options.workers} max_queue_size={options.max_queue_size}; "
                "SIGTERM or Ctrl-C drains and stops",
                flush=True,
            )
            signum = await anext(signals)
            print(
                f"{signum.name}: draining for up to {options.drain_timeout:g} s "
                "(no new connections; requests still waiting then answer 503)",
                flush=True,
            )
            stop.set()  # hypercorn closes its socket and waits for its responses
            async with anyio.create_task_group() as drain:
                drain.start_soon(cut_short, signals, drain.cancel_scope)
                await pool.shutdown()  # up to drain_timeout, then cancels the rest
                drain.cancel_scope.cancel()
    s = pool.status()
    print(
        f"stopped: submitted {s.submitted}, completed {s.completed}, "
        f"shed {s.shed}, refused {s.rejected}, cancelled {s.cancelled}",
        flush=True,
    )


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        msg = f"expected a positive integer, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        msg = f"expected a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        msg = f"expected a port number from 0 to 65535, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


#: The serve mode's options and their defaults.
SERVE_DEFAULTS: dict[str, object] = {
    "host": "127.0.0.1",
    "port": 8000,
    "workers": 4,
    "max_queue_size": 100,
    "work_time": 0.05,
    "drain_timeout": 10.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    serving = parser.add_argument_group("serve mode")
    serving.add_argument(
        "--serve", action="store_true", help="serve until SIGTERM, not test itself"
    )
    serving.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serving.add_argument("--port", type=port, help="default 8000; 0: any free port")
    serving.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="handlers running at once (default 4)",
    )
    serving.add_argument(
        "--max-queue-size",
        type=positive_int,
        metavar="N",
        help="requests waiting (default 100)",
    )
    serving.add_argument(
        "--work-time",
        type=positive_float,
        metavar="SECONDS",
        help="how long the handler takes per request (default 0.05)",
    )
    serving.add_argument(
        "--drain-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="how long a drain may take (default 10)",
    )
    options = parser.parse_args()
    given = [k for k in SERVE_DEFAULTS if getattr(options, k) is not None]
    if not options.serve:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            parser.error(f"only with --serve: {flags}")
        anyio.run(self_test, options.backend, backend=options.backend)
        return
    for key, default in SERVE_DEFAULTS.items():
        if getattr(options, key) is None:
            setattr(options, key, default)
    try:
        listener = listen(options.host, options.port)
    except OSError as exc:
        parser.error(f"cannot listen on {options.host}:{options.port}: {exc.strerror}")
    try:
        anyio.run(serve, options, listener, backend=options.backend)
    except KeyboardInterrupt:  # a Ctrl-C before the signal receiver was set up
        sys.exit(130)


if __name__ == "__main__":
    main()
