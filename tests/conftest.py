"""Shared fixtures: every anyio test runs on asyncio and on trio; a Redis server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


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


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    """A real redis-server from PATH on 127.0.0.1, no persistence, for the session."""
    server = shutil.which("redis-server")
    if server is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get(REQUIRE_REDIS):
            pytest.fail(f"{reason}, and {REQUIRE_REDIS} is set")
        pytest.skip(reason)
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 (redis-server from PATH, fixed flags)
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10  # a start-up guard, not a timing assertion
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.01)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
