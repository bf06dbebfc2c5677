"""What the examples' Redis parts share: a server to run on, or why there is none.

Not an example of its own: ``scheduling.py``, ``rate_limits.py`` and
``weighted_fair.py`` import it (run them from anywhere; Python puts their
folder first on the path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Iterator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every example with a Redis part takes."""
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--redis", help="a Redis URL (default: start redis-server)")


def run_with_redis(
    main: Callable[[str | None, str | None], Awaitable[None]],
    args: argparse.Namespace,
) -> None:
    """``main(url, None)`` with a server, or ``main(None, why)`` without one.

    The server is the one ``--redis`` names, else a throwaway ``redis-server``
    from PATH on 127.0.0.1 that saves nothing and stops afterwards.
    """
    executable = shutil.which("redis-server")
    if importlib.util.find_spec("coredis") is None:
        note = "coredis is not installed: pip install 'queuekeeper[redis]'"
        anyio.run(main, None, note, backend=args.backend)
    elif args.redis:
        anyio.run(main, args.redis, None, backend=args.backend)
    elif executable is None:
        note = "no redis-server on PATH; pass --redis URL to use a server"
        anyio.run(main, None, note, backend=args.backend)
    else:
        with throwaway_redis(executable) as url:
            anyio.run(main, url, None, backend=args.backend)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def throwaway_redis(executable: str) -> Iterator[str]:
    """Run a redis-server on a free port of 127.0.0.1, saving nothing; its URL."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 (redis-server from PATH, fixed flags)
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()
