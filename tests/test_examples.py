"""The examples: the HTTP service cancels what a client left and drains; clean output.

The ASGI app of examples/http_service.py is driven two ways: with scripted receive
and send channels (no server needed), and under hypercorn with httpx, as its
serve mode runs it (skipped without ``pip install -r examples/requirements.txt``).
"""

from __future__ import annotations

import ast
import importlib.util
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from prometheus_client import CollectorRegistry

from queuekeeper import Priority, TicketState, WorkerPool

if TYPE_CHECKING:
    from types import ModuleType

    from anyio.abc import Process

EXAMPLES = Path(__file__).parent.parent / "examples"
#: The examples; a module whose name starts with ``_`` is what some of them import.
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))

#: Upper bound on any one subprocess or HTTP call: a hang fails instead of blocking.
TIMEOUT = 60.0
#: Upper bound on an in-process scenario, which needs no time of its own.
WAIT = 10.0


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (its ``__main__`` part does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


http_service = load_example("http_service.py")


def has(*modules: str) -> bool:
    """Whether every one of *modules* can be imported."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


needs_http = pytest.mark.skipif(
    not has("hypercorn", "httpx"),
    reason="needs pip install -r examples/requirements.txt (hypercorn, httpx)",
)


class Outcomes:
    """A pool observer that keeps each request's end, and signals the first ones."""

    def __init__(self) -> None:
        self.ends: list[tuple[TicketState, bool]] = []  # (outcome, ran)
        self.queued = 0
        self.two_submitted = anyio.Event()
        self.cancelled = anyio.Event()

    def attach(self, pool: object) -> None:
        pass

    def submitted(self, pool: str, priority: int) -> None:
        self.queued += 1
        if self.queued == 2:
            self.two_submitted.set()

    def rejected(self, pool: str, priority: int) -> None:
        pass

    def started(self, pool: str, priority: int, wait: float) -> None:
        pass

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        self.ends.append((outcome, duration is not None))
        if outcome is TicketState.CANCELLED:
            self.cancelled.set()


class Client:
    """One request's side of the ASGI channels: a GET that may hang up."""

    def __init__(self) -> None:
        self.listening = anyio.Event()  # the app waits for what the client does next
        self.hang_up = anyio.Event()
        self.sent: list[dict[str, Any]] = []
        self.body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.listening.set()
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        """The status the app answered, None if it answered nothing."""
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None

    @property
    def headers(self) -> dict[str, str]:
        """The app's response headers."""
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}


def scope(name: str, priority: str = "normal") -> dict[str, Any]:
    """The ASGI scope of ``GET /work`` for a request called *name*."""
    return {
        "type": "http",
        "method": "GET",
        "path": "/work",
        "headers": [(b"x-name", name.encode()), (b"x-priority", priority.encode())],
    }


class Handler:
    """A handler that records who ran and holds each request until released."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.running: dict[str, anyio.Event] = {}
        self.cancelled: list[str] = []
        self.release = anyio.Event()

    def started(self, name: str) -> anyio.Event:
        """The event set once *name*'s handler runs."""
        return self.running.setdefault(name, anyio.Event())

    async def __call__(self, name: str) -> str:
        self.ran.append(name)
        self.started(name).set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(name)
            raise
        return f"done {name}"


pytestmark = pytest.mark.anyio


# -- the ASGI app, driven through its channels ------------------------------------


async def test_hang_up_while_queued_cancels_the_ticket() -> None:
    """A client that disconnects while its request waits: it never runs."""
    handler, outcomes = Handler(), Outcomes()
    pool = WorkerPool(handler, workers=1, metrics=outcomes)
    app = http_service.App(pool, CollectorRegistry())
    busy, leaver = Client(), Client()
    with anyio.fail_after(WAIT):
        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(app, scope("busy"), busy.receive, busy.send)
            await handler.started("busy").wait()
            async with anyio.create_task_group() as request:
                request.start_soon(app, scope("leaver"), leaver.receive, leaver.send)
                await leaver.listening.wait()
                assert 1 == pool.status().queue_size  # it waits behind "busy"
                leaver.hang_up.set()
            # The app returned for the leaver: its ticket is cancelled, not queued.
            assert [(TicketState.CANCELLED, False)] == outcomes.ends
            assert 0 == pool.status().queue_size
            handler.release.set()
    assert [] == leaver.sent  # nobody is left to answer
    assert 200 == busy.status
    assert ["busy"] == handler.ran  # the handler never ran for the leaver
    assert 1 == pool.status().cancelled


async def test_hang_up_while_running_cancels_the_handler() -> None:
    """A client that disconnects while its request runs: the handler is cancelled."""
    handler, outcomes = Handler(), Outcomes()
    pool = WorkerPool(handler, workers=1, metrics=outcomes)
    app = http_service.App(pool, CollectorRegistry())
    leaver = Client()
    with anyio.fail_after(WAIT):
        async with pool:
            async with anyio.create_task_group() as request:
                request.start_soon(app, scope("leaver"), leaver.receive, leaver.send)
                await handler.started("leaver").wait()
                await leaver.listening.wait()
                leaver.hang_up.set()
            assert [(TicketState.CANCELLED, True)] == outcomes.ends
    assert ["leaver"] == handler.cancelled
    assert [] == leaver.sent


async def test_request_cancelled_by_the_server_leaves_the_queue() -> None:
    """A server that cancels the app (a graceful timeout) cancels its ticket too."""
    handler, outcomes = Handler(), Outcomes()
    pool = WorkerPool(handler, workers=1, metrics=outcomes)
    app = http_service.App(pool, CollectorRegistry())
    busy, cut = Client(), Client()
    with anyio.fail_after(WAIT):
        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(app, scope("busy"), busy.receive, busy.send)
            await handler.started("busy").wait()
            async with anyio.create_task_group() as server:
                server.start_soon(app, scope("cut"), cut.receive, cut.send)
                await cut.listening.wait()
                server.cancel_scope.cancel()  # as hypercorn does at its deadline
            assert [(TicketState.CANCELLED, False)] == outcomes.ends
            assert 0 == pool.status().queue_size
            handler.release.set()
    assert ["busy"] == handler.ran


async def test_requests_left_when_the_drain_ends_answer_503() -> None:
    """What a shutdown cancels is answered: 503 with Retry-After, not silence."""
    handler = Handler()
    pool = WorkerPool(handler, workers=1)
    app = http_service.App(pool, CollectorRegistry())
    running, queued, late = Client(), Client(), Client()
    with anyio.fail_after(WAIT):
        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(app, scope("running"), running.receive, running.send)
            await handler.started("running").wait()
            tg.start_soon(app, scope("queued"), queued.receive, queued.send)
            await queued.listening.wait()
            await pool.shutdown(drain=False)  # as a drain that reached its timeout
            await app(scope("late"), late.receive, late.send)
    answers = [(c.status, c.headers.get("retry-after")) for c in (running, queued)]
    assert [(503, "1"), (503, "1")] == answers
    assert (503, "1") == (late.status, late.headers.get("retry-after"))  # closed
    assert ["running"] == handler.ran


async def test_priority_and_metrics_routes() -> None:
    """A bad X-Priority answers 400; /metrics and unknown paths answer too."""
    pool = WorkerPool(Handler(), workers=1)
    app = http_service.App(pool, CollectorRegistry())
    bad, metrics, missing = Client(), Client(), Client()
    async with pool:
        await app(scope("bad", priority="urgent"), bad.receive, bad.send)
        await app({**scope("m"), "path": "/metrics"}, metrics.receive, metrics.send)
        await app({**scope("x"), "path": "/nowhere"}, missing.receive, missing.send)
    assert (400, 200, 404) == (bad.status, metrics.status, missing.status)
    assert Priority.HIGH == http_service.parse_priority(" High ")
    assert 7 == http_service.parse_priority("7")
    assert Priority.NORMAL == http_service.parse_priority(None)


# -- under hypercorn, with a real HTTP client --------------------------------------


@needs_http
async def test_hypercorn_client_hang_up_cancels_the_queued_ticket(
    anyio_backend: str,
) -> None:
    """httpx gives up on a queued request: hypercorn's disconnect cancels it."""
    httpx = pytest.importorskip("httpx")  # examples/requirements.txt; untyped here

    handler, outcomes = Handler(), Outcomes()
    pool = WorkerPool(handler, workers=1, metrics=outcomes)
    listener = http_service.listen("127.0.0.1", 0)
    url = http_service.url_of(listener) + "/work"
    config = http_service.hypercorn_config(listener)
    config.errorlog = None
    serve = http_service.hypercorn_serve(anyio_backend)
    app = http_service.App(pool, CollectorRegistry())
    stop = anyio.Event()
    answers: list[int] = []

    async def get(client: Any, name: str) -> None:
        answers.append((await client.get(url, headers={"X-Name": name})).status_code)

    with anyio.fail_after(TIMEOUT):
        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))
            async with (
                httpx.AsyncClient(timeout=TIMEOUT) as client,
                anyio.create_task_group() as calls,
            ):
                calls.start_soon(get, client, "busy")
                await handler.started("busy").wait()
                async with anyio.create_task_group() as leaver:
                    leaver.start_soon(get, client, "leaver")
                    await outcomes.two_submitted.wait()
                    leaver.cancel_scope.cancel()  # httpx closes the connection
                await outcomes.cancelled.wait()
                handler.release.set()
            stop.set()
    assert [200] == answers
    assert ["busy"] == handler.ran
    assert (TicketState.CANCELLED, False) in outcomes.ends


class Server:
    """``http_service.py --serve`` in a subprocess, on a free port."""

    def __init__(
        self, process: Process, stdout: BufferedByteReceiveStream, url: str
    ) -> None:
        self.process = process
        self.stdout = stdout
        self.url = url

    @classmethod
    async def start(cls, backend: str, *options: str) -> Server:
        """Start it, and return once it says where it serves."""
        command = [sys.executable, str(EXAMPLES / "http_service.py"), "--serve"]
        command += ["--port", "0", "--backend", backend, *options]
        process = await anyio.open_process(command)
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        first = (await stdout.receive_until(b"\n", 4096)).decode()
        assert first.startswith("serving http://127.0.0.1:"), first
        return cls(process, stdout, first.split()[1].removesuffix("/work"))

    async def in_pool(self, client: Any, count: int) -> None:
        """Wait until *count* requests are in the pool, as its metrics say."""
        while True:
            text = (await client.get(f"{self.url}/metrics")).text
            submitted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("queuekeeper_queue_requests_total{")
            )
            if submitted >= count:
                return
            await anyio.sleep(0.01)  # the server is another process: poll it

    async def end(self) -> tuple[int | None, str]:
        """Its exit status, and what it printed after its first line."""
        await self.process.wait()
        printed = b""
        async for chunk in self.stdout:
            printed += chunk
        return self.process.returncode, printed.decode()


async def load(server: Server, count: int) -> list[tuple[int, str | None]]:
    """*count* requests at once; SIGTERM once all are in the pool; their answers."""
    httpx = pytest.importorskip("httpx")  # examples/requirements.txt; untyped here

    answers: list[tuple[int, str | None]] = []

    async def get(client: Any, n: int) -> None:
        response = await client.get(f"{server.url}/work", headers={"X-Name": f"{n}"})
        answers.append((response.status_code, response.headers.get("retry-after")))

    limits = httpx.Limits(max_connections=count + 1)
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client,
        anyio.create_task_group() as tg,
    ):
        for n in range(count):
            tg.start_soon(get, client, n)
        await server.in_pool(client, count)
        server.process.send_signal(signal.SIGTERM)
    return answers


@needs_http
async def test_serve_mode_answers_every_request_in_flight_at_sigterm(
    anyio_backend: str,
) -> None:
    """SIGTERM mid-load: the requests in the pool still run and get their 200."""
    with anyio.fail_after(TIMEOUT):
        server = await Server.start(
            anyio_backend, "--workers", "2", "--work-time", "0.2"
        )
        async with server.process:
            answers = await load(server, 6)
            returncode, printed = await server.end()
    assert [(200, None)] * 6 == answers
    assert 0 == returncode
    assert "SIGTERM: draining" in printed
    assert "stopped: submitted 6, completed 6," in printed


@needs_http
async def test_serve_mode_outlasts_a_drain_longer_than_hypercorns_default(
    anyio_backend: str,
) -> None:
    """A drain of 3.5 s, past hypercorn's default 3 s: cut requests answer 503."""
    with anyio.fail_after(TIMEOUT):
        server = await Server.start(
            anyio_backend,
            "--workers",
            "1",
            "--work-time",
            "60",
            "--drain-timeout",
            "3.5",
        )
        async with server.process:
            answers = await load(server, 3)
            returncode, printed = await server.end()
    assert [(503, "1")] * 3 == answers  # not 500s, not dropped connections
    assert 0 == returncode
    assert (
        "stopped: submitted 3, completed 0, shed 0, refused 0, cancelled 3" in printed
    )


# -- every example, from the command line ------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with piped output."""
    return subprocess.run(  # noqa: S603 (our own interpreter and examples)
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_help_keeps_the_docstrings_paragraphs(script: Path) -> None:
    """``--help`` shows the docstring line for line, without trailing spaces."""
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    assert docstring is not None
    done = run(str(script), "--help")
    assert (0, "") == (done.returncode, done.stderr)
    assert docstring in done.stdout
    assert [] == [line for line in done.stdout.splitlines() if line.endswith(" ")]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_piped_output_has_no_trailing_spaces(script: Path) -> None:
    """Each example succeeds with its output piped, and no line ends in a space."""
    if script.name == "http_service.py" and not has("hypercorn", "httpx"):
        pytest.skip("needs pip install -r examples/requirements.txt")
    done = run(str(script))
    assert 0 == done.returncode, done.stderr
    assert done.stdout
    output = done.stdout + done.stderr
    assert [] == [line for line in output.splitlines() if line.endswith(" ")]


def test_trio_nursery_refuses_a_backend_option() -> None:
    """trio_nursery.py runs on Trio only: a backend option is refused, not ignored."""
    done = run(str(EXAMPLES / "trio_nursery.py"), "--backend", "asyncio")
    assert 2 == done.returncode
    assert done.stderr.endswith(
        "error: it runs on Trio only and takes no options (got --backend asyncio)\n"
    )
    assert "" == done.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--port", "8000"], "only with --serve: --port"),
        (["--serve", "--workers", "0"], "expected a positive integer, not '0'"),
        (["--serve", "--port", "70000"], "expected a port number from 0 to 65535"),
        (
            ["--serve", "--drain-timeout", "inf"],
            "expected a positive number of seconds, not 'inf'",
        ),
    ],
)
def test_http_service_refuses_bad_options(args: list[str], error: str) -> None:
    """Bad serve options: a one-line error naming the value, exit status 2."""
    done = run(str(EXAMPLES / "http_service.py"), *args)
    assert 2 == done.returncode
    assert error in done.stderr.splitlines()[-1]
