"""Shared fixtures: every anyio test runs on asyncio and on trio; a Redis server."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from queuekeeper.redis import RedisQueue


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ],
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``pytest.mark.anyio`` test on both backends, explicitly.

    Module-scoped, so that hypothesis ``@given`` tests can be ``async def``: the
    fixture is set up once per backend and module, not once per test (hypothesis
    refuses function-scoped fixtures, which its examples would share). A test that
    parametrizes ``anyio_backend`` directly still overrides it.
    """
    return str(request.param)


#: Set (as .ci/run does) to fail, rather than skip, the Redis tests without a server.
REQUIRE_REDIS = "QUEUEKEEPER_REQUIRE_REDIS"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server from PATH on 127.0.0.1, which a test may stop and start again."""

    def __init__(self, executable: str, *options: str) -> None:
        self.executable = executable
        self.options = options
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it, and return once it answers."""
        process = self.process = subprocess.Popen(  # noqa: S603 (fixed flags)
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10  # a start-up guard, not a timing assertion
        while not _answers(self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop it (SIGTERM: it writes its append-only file, if it has one)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def redis_server(*options: str) -> RedisServer:
    """A :class:`RedisServer`, or skip (fail under .ci/run) without redis-server."""
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get(REQUIRE_REDIS):
            pytest.fail(f"{reason}, and {REQUIRE_REDIS} is set")
        pytest.skip(reason)
    return RedisServer(executable, *options)


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    """A real redis-server from PATH on 127.0.0.1, no persistence, for the session."""
    server = redis_server("--save", "", "--appendonly", "no")
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own that keeps its data when restarted."""
    server = redis_server(
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(tmp_path),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["no FUNCTION, no FCALL", "no FUNCTION"])
def scripts_only_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server without Redis Functions, as before Redis 7.

    FUNCTION renamed away, and FCALL too (or not: a function is then never found,
    and cannot be loaded).
    """
    renamed = ["FUNCTION"]
    if "FCALL" in request.param:
        renamed += ["FCALL", "FCALL_RO"]
    options = [option for name in renamed for option in ("--rename-command", name, "")]
    server = redis_server("--save", "", "--appendonly", "no", *options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(redis_port: int) -> AsyncIterator[Any]:
    """A coredis client on the test server, in the test's event loop."""
    coredis = pytest.importorskip("coredis", reason="the redis extra is not installed")
    redis = coredis.Redis(host="127.0.0.1", port=redis_port)
    async with redis:
        yield redis


_queue_names = itertools.count()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A Redis queue name of the test's own (its module's name in it)."""
    module = request.module.__name__.removeprefix("test_")
    return f"{module}-{next(_queue_names)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def queue(client: Any, name: str) -> Callable[..., RedisQueue]:
    """Open the test's Redis queue: each call is another process's handle on it."""
    from queuekeeper.redis import RedisQueue  # noqa: PLC0415 (the redis extra)

    def open_queue(**options: Any) -> RedisQueue:
        return RedisQueue(client, name, **options)

    return open_queue
