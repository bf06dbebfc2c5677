"""Quality gates: ``nox`` runs them all; CI runs ``.ci/run``, which calls nox."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.sessions = ["tests", "lint", "typecheck", "examples", "docs", "changelog"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
TEST_DEPS = nox.project.dependency_groups(PYPROJECT, "test")
# A module whose name starts with "_" is what some examples import, not one.
EXAMPLES = sorted(
    p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_")
)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on asyncio and trio, with branch coverage (100 %)."""
    # The examples' requirements: tests/test_examples.py runs the HTTP example
    # under a real server (hypercorn) with a real client (httpx).
    session.install(
        ".[cli,trio,prometheus,plot,redis,bench]",
        "-r",
        "examples/requirements.txt",
        *TEST_DEPS,
    )
    session.env["COVERAGE_FILE"] = str(ROOT / ".coverage")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine")
    session.run("coverage", "report", "--fail-under=100")


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff==0.17.6")  # its formatter changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ and tests/; pyright checks the public API is fully typed.

    The tests are type-checked against what they import: the package with its own
    dependencies (anyio, trio, prometheus_client, rich, attrs, coredis) and the test
    group (pytest, hypothesis, ...). tests/typing/ holds typing tests of the public
    generics (assert_type and deliberate errors): mypy reads them with the other
    tests, and pyright checks them too, with tests/typing/pyrightconfig.json.
    """
    session.install(
        ".[cli,trio,prometheus,redis,bench]",
        *TEST_DEPS,
        "exceptiongroup",
        "typing_extensions",
        "tomli",  # what tests/test_changelog.py reads TOML with before Python 3.11
        "mypy>=1.10",
        "pyright[nodejs]>=1.1.380",
    )
    session.run("mypy", "--strict", "src", "tests")
    session.run("pyright", "--verifytypes", "queuekeeper", "--ignoreexternal")
    session.run("pyright", "-p", "tests/typing")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example on each backend it supports; any failure fails the session."""
    # redis_pool.py starts a redis-server from PATH (and says so if there is none).
    session.install(".[trio,prometheus,redis]", "-r", "examples/requirements.txt")
    for example in EXAMPLES:
        text = example.read_text(encoding="utf-8")
        if "--backend" in text:
            for backend in ("asyncio", "trio"):
                session.run("python", str(example), "--backend", backend)
        else:
            session.run("python", str(example))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs with warnings as errors, and run their doctests."""
    # The quickstart doctest runs on Trio too; the API page documents the Redis
    # module, which imports coredis.
    session.install(".[trio,redis]", "-r", "docs/requirements.txt")
    out = ROOT / "docs" / "_build"
    for builder in ("html", "doctest"):
        session.run(
            "sphinx-build",
            "-W",
            "-n",
            "--keep-going",
            "-b",
            builder,
            "docs",
            str(out / builder),
        )


@nox.session
def changelog(session: nox.Session) -> None:
    """Render the changelog fragments as the next release would (towncrier)."""
    session.install("towncrier>=24.7")
    session.run("towncrier", "build", "--draft", "--version", "next")


@nox.session
def soak(session: nox.Session) -> None:
    """The chaos soak: 1,000,000 requests per backend by default (pass -- --help)."""
    session.install(".[trio]", *TEST_DEPS)
    session.run("python", "tests/soak.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (``queuekeeper bench``); pass options after ``--``."""
    session.install(".[cli]")
    env = {"PYTHONHASHSEED": "0"} if "PYTHONHASHSEED" not in os.environ else {}
    session.run("queuekeeper", "bench", *session.posargs, env=env)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run this file with nox")
