"""``queuekeeper bench --redis URL``, against the tests' redis-server."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import socket
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

from queuekeeper.cli import main
from queuekeeper.cli._redis_bench import run_redis_bench

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_every_figure_is_measured_on_one_server(redis_port: int, backend: str) -> None:
    """References, the channel from 1 and 4 processes, the pool with 1 and 2."""
    out = io.StringIO()
    results = run_redis_bench(
        f"redis://127.0.0.1:{redis_port}", out, requests=400, backend=backend
    )
    figures = results["per_second"]
    assert [
        "redis-benchmark ZADD (50 clients)",
        "redis-benchmark EVALSHA put+take (50 clients)",
        "channel send+receive, 1 process",
        "channel send+receive, 4 processes",
        "pool, 1 submitter + 1 worker process",
        "pool, 1 submitter + 2 worker processes",
        "streaQ, 1 submitter + 1 worker process",
        "SAQ, 1 submitter + 1 worker process",
    ] == list(figures)
    references = {"streaQ": "streaq", "SAQ": "saq"}
    for what, figure in figures.items():
        library = references.get(what.partition(",")[0])
        if library is None or importlib.util.find_spec(library) is not None:
            assert figure > 0, what
        else:  # pragma: no cover (the nox sessions install them)
            assert figure is None, what
    expected = ["channel (1 process) / ZADD"]
    expected += [
        f"pool (1 + 1 processes) / {name}"
        for name, library in references.items()
        if importlib.util.find_spec(library) is not None
    ]
    assert expected == list(results["ratios"])
    text = out.getvalue()
    for what in figures:
        assert what in text
    print(text)  # noqa: T201 (the figures, for the record)


def test_the_command_writes_json(redis_port: int, tmp_path: Path) -> None:
    """--redis URL --json PATH: the figures as JSON."""
    where = tmp_path / "redis.json"
    url = f"redis://127.0.0.1:{redis_port}"
    assert 0 == main(["bench", "--redis", url, "--tasks", "200", "--json", str(where)])
    assert url == json.loads(where.read_text(encoding="utf-8"))["url"]


def test_without_the_references_installed_they_are_not_measured(
    redis_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No redis-benchmark, redis-cli, streaQ or SAQ: said so; the rest is measured."""
    monkeypatch.setattr(shutil, "which", lambda _: None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name in {"streaq", "saq"} else real_find_spec(name),
    )
    url = f"redis://127.0.0.1:{redis_port}"
    assert 0 == main(["bench", "--redis", url, "--tasks", "200", "--backend", "trio"])
    out = capsys.readouterr().out
    assert 2 == out.count("not measured (no redis-benchmark)")
    assert 2 == out.count("not installed (pip install 'queuekeeper[bench]')")
    assert "/ ZADD" not in out
    assert "/ streaQ" not in out


def test_a_server_that_cannot_be_reached_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing listens there: one line, exit status 2, before any process starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        assert 2 == main(["bench", "--redis", f"redis://127.0.0.1:{port}"])
    assert "cannot connect" in capsys.readouterr().err


def test_a_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """One line naming the URL; exit status 2."""
    assert 2 == main(["bench", "--redis", "http://nowhere"])
    err = capsys.readouterr().err
    assert "--redis must look like redis://HOST:PORT, not 'http://nowhere'" in err
