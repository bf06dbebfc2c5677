"""PrometheusMetrics plus prometheus_client's HTTP server on 127.0.0.1."""

from __future__ import annotations

import argparse
import urllib.request

import anyio
from prometheus_client import CollectorRegistry, start_http_server

from queuekeeper import Priority, PrometheusMetrics, WorkerPool


async def main() -> None:
    registry = CollectorRegistry()
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    print("serving", url)
    try:

        async def handler(n: int) -> int:
            await anyio.sleep(0.001)
            return n

        metrics = PrometheusMetrics(registry)
        async with WorkerPool(handler, workers=2, name="api", metrics=metrics) as pool:
            for n in range(20):
                await pool.execute(n, priority=Priority.HIGH if n % 2 else Priority.LOW)
            body = await anyio.to_thread.run_sync(
                lambda: urllib.request.urlopen(url, timeout=10).read().decode()
            )
    finally:
        server.shutdown()
        server.server_close()
    lines = [line for line in body.splitlines() if line.startswith("queuekeeper_")]
    print("\n".join(line for line in lines if "_bucket" not in line))
    assert 'queuekeeper_queue_requests_total{pool="api",priority="high"} 10.0' in lines
    assert (
        'queuekeeper_requests_completed_total{outcome="succeeded",pool="api",priority="low"} 10.0'
        in lines
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
