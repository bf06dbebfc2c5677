"""The queuekeeper command: run, its summary and JSON, metrics, Ctrl-C, bad flags."""

from __future__ import annotations

import argparse
import io
import json
import math
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from rich.console import Console
from rich.text import Text

import queuekeeper
from helpers import run_on_virtual_time
from queuekeeper import WorkerPool
from queuekeeper.cli._app import (
    _PIPED_WIDTH,
    INTERRUPTED,
    USAGE_ERROR,
    _arrivals_row,
    _live_view,
    _print_summary,
    _Sample,
    _sample,
    _show,
    build_parser,
    main,
)
from queuekeeper.cli._workload import Arrival, RunReport, Workload

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Upper bound on any one subprocess or wait: a hang fails instead of blocking.
TIMEOUT = 60.0

#: A short run whose counts are exact: 40 arrivals, no limit on the queue, no failures.
QUICK = (
    *("--requests", "40", "--rate", "400", "--duration", "30"),
    *("--max-queue-size", "0", "--latency", "const:1", "--fail-rate", "0"),
)

#: A run that goes on until it is interrupted.
LONG = ("--duration", "inf", "--rate", "50")

LEVELS = {"critical": 1, "high": 2, "normal": 3, "low": 4}
COUNTS: tuple[str, ...] = ("offered", "submitted", "rejected", "completed", "failed")
COUNTS += ("cancelled", "timed_out", "shed")
TIMES = ("wait_ms_p50", "wait_ms_p95", "wait_ms_p99", "run_ms_p50", "run_ms_p99")
RATES = ("completed_per_s",)
OUTCOMES = ("completed", "failed", "cancelled", "timed_out", "shed")
HEADER = ["priority", "offered", "rejected", "submitted", "completed", "failed"]
HEADER += ["shed", "timed out", "cancelled", "completed/s"]
HEADER += ["wait p50", "p95", "p99", "run p50", "p99"]

STATUS_LINE = re.compile(r"^t=\s*[0-9.]+s (\w+)\s+submitted=(\d+) ")
NOTICE_LINE = re.compile(r"^Ctrl-C")
METRICS_LINE = re.compile(r"^metrics: http://127\.0\.0\.1:(\d+)/metrics$")

needs_signals = pytest.mark.skipif(
    sys.platform == "win32", reason="sends SIGINT to a child process"
)


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output goes to a pipe: no forced terminal or colours, UTF-8 in children."""
    for name in ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8")


# -- helpers ------------------------------------------------------------------------


def table_rows(out: str) -> dict[str, list[str]]:
    """The summary table's cells by priority, with the header under "priority"."""
    rows = {}
    for line in out.splitlines():
        if line.startswith(("│", "┃")):
            cells = [cell.strip() for cell in line.strip("│┃").split(line[0])]
            rows[cells[0]] = cells[1:]
    return rows


def check_summary_table(out: str, backend: str) -> dict[str, dict[str, str]]:
    """Check the printed table has its title, columns and rows; return the rows."""
    assert re.search(rf"per-priority summary \({backend}, [0-9.]+ s\)", out)
    assert "completed/s over the whole run; times in milliseconds" in out
    rows = table_rows(out)
    assert HEADER[1:] == rows.pop("priority")
    assert [*LEVELS, "all"] == list(rows)
    return {
        label: dict(zip(HEADER[1:], cells, strict=True))
        for label, cells in rows.items()
    }


def check_summary_json(summary: dict[str, Any], backend: str) -> dict[str, Any]:
    """Check the JSON summary's schema and that its counts add up; return totals."""
    assert {
        "backend",
        "elapsed_s",
        "interrupted",
        "config",
        "priorities",
        "totals",
        "pool",
    } == set(summary)
    assert backend == summary["backend"]
    assert isinstance(summary["elapsed_s"], float)
    assert summary["elapsed_s"] > 0
    assert summary["interrupted"] in {None, "drained", "cancelled"}

    config = summary["config"]
    assert {
        "workers",
        "max_queue_size",
        "backpressure",
        "rate",
        "duration",
        "requests",
        "mix",
        "latency",
        "fail_rate",
        "timeout",
        "queue_timeout",
        "seed",
    } == set(config)
    assert list(LEVELS) == list(config["mix"])
    assert 1 == pytest.approx(sum(config["mix"].values()))

    rows = summary["priorities"]
    assert list(LEVELS) == list(rows)
    for label, row in rows.items():
        assert {"priority", *COUNTS, *RATES, *TIMES} == set(row)
        assert LEVELS[label] == row["priority"]
        for key in COUNTS:
            assert type(row[key]) is int
            assert row[key] >= 0
        for key in (*RATES, *TIMES):
            assert row[key] is None or isinstance(row[key], float)
        throughput = row["completed"] / summary["elapsed_s"]  # requests a second
        assert pytest.approx(throughput, rel=0.01, abs=0.1) == row["completed_per_s"]
        for times in (TIMES[:3], TIMES[3:]):  # percentiles rise, or none at all
            figures = [row[key] for key in times]
            assert [None] * len(times) == figures or sorted(figures) == figures
        assert row["offered"] == row["submitted"] + row["rejected"]
        assert row["submitted"] == sum(row[key] for key in OUTCOMES)

    totals: dict[str, Any] = summary["totals"]
    assert {*COUNTS, *RATES, *TIMES} == set(totals)
    for key in COUNTS:
        assert sum(row[key] for row in rows.values()) == totals[key]

    pool = summary["pool"]
    assert {
        "submitted",
        "completed",
        "failed",
        "rejected",
        "timed_out",
        "cancelled",
        "shed",
        "state",
    } == set(pool)
    assert "closed" == pool["state"]
    assert {key: totals[key] for key in set(pool) - {"state"}} == {
        key: value for key, value in pool.items() if key != "state"
    }
    return totals


def check_one_line_error(err: str, fragment: str) -> None:
    """A usage error: exactly one line on stderr, naming the problem, no traceback."""
    assert err.endswith("\n")
    assert 1 == err.count("\n"), err
    assert err.startswith("queuekeeper")
    assert ": error: " in err
    assert fragment in err
    assert "Traceback" not in err


def command(*args: str) -> list[str]:
    """The command line of ``python -m queuekeeper ARGS``."""
    return [sys.executable, "-m", "queuekeeper", *args]


class Child:
    """A queuekeeper subprocess whose stdout lines can be awaited one by one."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.err.extend(self.process.stderr)

    def wait_for_line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """Return the match of the next stdout line matching *pattern*."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern.pattern!r} in {TIMEOUT} s")
            if line is None:
                pytest.fail(
                    f"exited before printing {pattern.pattern!r}: "
                    f"{''.join(self.out)}{''.join(self.err)}"
                )
            match = pattern.search(line.rstrip("\n"))
            if match is not None:
                return match

    def interrupt(self) -> None:
        """Send SIGINT, as Ctrl-C does."""
        self.process.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, str, str]:
        """Wait for the exit; return the status and all of stdout and stderr."""
        status = self.process.wait(timeout=TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=TIMEOUT)
        return status, "".join(self.out), "".join(self.err)

    def close(self) -> None:
        """Kill the process if it still runs and release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=TIMEOUT)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def child() -> Iterator[type[Child]]:
    """Start queuekeeper subprocesses; none outlives the test."""
    started: list[Child] = []

    class Tracked(Child):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for process in started:
        process.close()


# -- run, in process ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_prints_the_per_priority_summary(
    capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """run drives the workload, prints a table per priority plus "all", exits 0."""
    assert 0 == main(["run", *QUICK, "--backend", backend])
    out, err = capsys.readouterr()
    assert "" == err
    assert "summary written" not in out
    rows = check_summary_table(out, backend)
    assert ("40", "40", "40") == (
        rows["all"]["offered"],
        rows["all"]["submitted"],
        rows["all"]["completed"],
    )
    assert 40 == sum(int(rows[label]["offered"]) for label in LEVELS)
    assert "interrupted" not in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_writes_a_json_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """--json PATH writes the summary: config, rows per priority, totals, pool."""
    path = tmp_path / "summary.json"
    argv = ["run", *QUICK, "--fail-rate", "0.25", "--seed", "7", "--workers", "3"]
    assert 0 == main([*argv, "--backend", backend, "--json", str(path)])
    out, err = capsys.readouterr()
    assert "" == err
    assert f"summary written to {path}" in out
    rows = check_summary_table(out, backend)
    summary = json.loads(path.read_text(encoding="utf-8"))
    totals = check_summary_json(summary, backend)
    assert None is summary["interrupted"]
    assert {
        "workers": 3,
        "max_queue_size": None,
        "backpressure": "shed",
        "rate": 400.0,
        "duration": 30.0,
        "requests": 40,
        "latency": "const:1ms",
        "fail_rate": 0.25,
        "timeout": None,
        "queue_timeout": None,
        "seed": 7,
    } == {key: value for key, value in summary["config"].items() if key != "mix"}
    assert (40, 40, 0) == (totals["offered"], totals["submitted"], totals["rejected"])
    assert 40 == totals["completed"] + totals["failed"]
    assert totals["failed"] > 0  # a quarter of 40, seeded
    assert str(totals["failed"]) == rows["all"]["failed"]
    for label in LEVELS:
        assert str(summary["priorities"][label]["offered"]) == rows[label]["offered"]


@pytest.mark.parametrize("backpressure", ["reject", "shed", "block"])
def test_run_with_a_small_queue_accounts_for_every_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backpressure: str
) -> None:
    """A queue far too small: each backpressure mode's counts still add up."""
    path = tmp_path / "summary.json"
    argv = ["run", "--workers", "1", "--max-queue-size", "2", "--rate", "5000"]
    argv += ["--requests", "20", "--latency", "const:20", "--fail-rate", "0"]
    assert 0 == main([*argv, "--backpressure", backpressure, "--json", str(path)])
    capsys.readouterr()
    summary = json.loads(path.read_text(encoding="utf-8"))
    totals = check_summary_json(summary, "asyncio")
    assert (20, 2) == (totals["offered"], summary["config"]["max_queue_size"])
    if backpressure == "block":
        assert (20, 0, 0) == (totals["completed"], totals["rejected"], totals["shed"])
    elif backpressure == "reject":
        assert 0 == totals["shed"]
        assert totals["rejected"] > 0
    else:
        assert totals["shed"] + totals["rejected"] > 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_metrics_port_zero_serves_on_a_free_port_for_the_run_only(
    capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """--metrics-port 0 prints the URL it picked; the server ends with the run."""
    assert 0 == main(["run", *QUICK, "--metrics-port", "0", "--backend", backend])
    out, err = capsys.readouterr()
    assert "" == err
    match = METRICS_LINE.match(out.splitlines()[0])
    assert match is not None, out
    check_summary_table(out, backend)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(match.group(0).removeprefix("metrics: "), timeout=10)  # noqa: S310 (a local http URL)


def test_metrics_port_in_use_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A port that is taken: one line, exit 2, and no run."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert USAGE_ERROR == main(["run", *QUICK, "--metrics-port", str(port)])
    out, err = capsys.readouterr()
    assert "" == out
    check_one_line_error(err, f"--metrics-port {port}: ")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_json_write_failure_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """A --json file that cannot be written: the summary, then a one-line error."""
    argv = ["run", *QUICK, "--json", "/dev/full", "--backend", backend]
    assert USAGE_ERROR == main(argv)
    out, err = capsys.readouterr()
    check_summary_table(out, backend)
    check_one_line_error(err, "--json: '/dev/full': ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert 0 == caught.value.code
    assert f"{queuekeeper.__version__}\n" == capsys.readouterr().out


def test_no_arguments_print_the_usage_and_both_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``queuekeeper`` alone: the usage and the two commands, exit 0, no run."""
    assert 0 == main([])
    out, err = capsys.readouterr()
    assert "" == err
    assert out.startswith("usage: queuekeeper ")
    commands = re.findall(r"^ {4}(\w+) +(\S.*)$", out, re.MULTILINE)
    assert ["run", "bench"] == [name for name, _ in commands]
    assert all(description for _, description in commands)


def subcommand_options(name: str) -> list[argparse.Action]:
    """The options of subcommand *name*, but --help."""
    (commands,) = (
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return [
        action
        for action in commands.choices[name]._actions
        if not isinstance(action, argparse._HelpAction)
    ]


@pytest.mark.parametrize("name", ["run", "bench"])
def test_every_option_says_what_it_does_and_its_default(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """--help: each option has a help text that ends with its default."""
    options = subcommand_options(name)
    assert len(options) > 4
    with pytest.raises(SystemExit) as caught:
        main([name, "--help"])
    assert 0 == caught.value.code
    out = " ".join(capsys.readouterr().out.split())  # lines joined
    for action in options:
        assert action.help, action.option_strings
        assert re.search(r"\(default: .+\)$", action.help), action.help
    assert len(options) == out.count("(default: ")  # each shown, none unfilled
    assert "%(" not in out


def test_run_help_shows_the_defaults_themselves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The defaults shown are the values a run without flags uses."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "workers in the pool (default: 4)",
        "0 = unlimited (default: 100)",
        "(default: shed)",
        "mean arrivals per second (default: 200)",
        "until --requests or Ctrl-C (default: 8)",
        "(default: critical=5,high=15,normal=60,low=20)",
        "(default: exp:25ms)",
        "raises (default: 0.02)",
        "same requests (default: 1)",
        "(default: asyncio)",
    ):
        assert text in out, text


def offered_by_priority(path: Path) -> dict[str, int]:
    """The requests offered at each priority, from a run's JSON summary."""
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {label: row["offered"] for label, row in summary["priorities"].items()}


def test_a_seed_offers_the_same_requests_run_after_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--seed 42 twice: the same per-priority counts, however the runs went."""
    # Short latencies at a high rate: each run's timing (what is queued, shed or
    # served when) differs from the other's, the requests offered must not.
    argv = ["run", "--requests", "300", "--rate", "3000", "--latency", "exp:2"]
    argv += ["--max-queue-size", "10", "--workers", "2", "--fail-rate", "0.3"]
    for seed, name in (("42", "a"), ("42", "b"), ("43", "c")):
        assert 0 == main([*argv, "--seed", seed, "--json", str(tmp_path / name)])
    capsys.readouterr()
    first, again, other = (offered_by_priority(tmp_path / name) for name in "abc")
    assert 300 == sum(first.values())
    assert first == again
    assert first != other


def test_duration_inf_runs_until_the_request_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--duration inf: arrivals end at --requests; the JSON says null, not Infinity."""
    path = tmp_path / "summary.json"
    assert 0 == main(["run", *QUICK, "--duration", "inf", "--json", str(path)])
    capsys.readouterr()
    summary = json.loads(path.read_text(encoding="utf-8"))
    totals = check_summary_json(summary, "asyncio")
    assert (None, 40) == (summary["config"]["duration"], totals["offered"])


def test_plot_draws_the_run_over_time(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--plot PATH: queue depth per priority and wait percentiles, into a PNG."""
    import matplotlib.axes  # noqa: PLC0415 (the plot extra)

    stacked: list[tuple[Any, ...]] = []
    stackplot = matplotlib.axes.Axes.stackplot

    def recording_stackplot(self: Any, x: Any, *ys: Any, **kwargs: Any) -> Any:
        stacked.append((x, ys, kwargs["labels"]))
        return stackplot(self, x, *ys, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "stackplot", recording_stackplot)
    path = tmp_path / "run.png"
    argv = ["run", *QUICK, "--max-queue-size", "8", "--plot", str(path)]
    assert 0 == main([*argv, "--backend", "trio"])
    out, err = capsys.readouterr()
    assert "" == err
    assert f"plot written to {path}" in out
    assert path.read_bytes().startswith(b"\x89PNG")
    ((times, depths, labels),) = stacked
    assert list(LEVELS) == labels
    assert 0 == times[0]
    assert max(sum(depth) for depth in zip(*depths, strict=True)) <= 8
    assert max(max(depth) for depth in depths) > 0


def test_plot_of_a_run_cut_short_with_an_unbounded_queue(tmp_path: Path) -> None:
    """No capacity line without a limit; no "arrivals end" if they never started."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 (the plot extra)

    from queuekeeper.cli._app import _plot_run, _pyplot  # noqa: PLC0415
    from queuekeeper.cli._workload import Timeline  # noqa: PLC0415

    config: dict[str, object] = {"max_queue_size": None, "workers": 2}
    config["backpressure"] = "block"
    config |= {"rate": 10.0, "latency": "const:5ms", "seed": 1}
    line = Timeline(
        elapsed=0.5,
        arrivals_ended=None,
        times=(0.0, 0.5),
        depth={3: (0, 0)},
        window_times=(0.25,),
        wait_ms_p50={3: (None,)},
        wait_ms_p99={3: (None,)},
    )
    path = tmp_path / "run.svg"
    _plot_run(_pyplot(), {"backend": "trio", "config": config}, line, path)
    svg = path.read_text(encoding="utf-8")
    assert "unbounded queue (block)" in svg
    assert "arrivals end" not in svg
    assert "capacity" not in svg
    assert not plt.get_fignums()  # the figure was closed


def test_plot_without_matplotlib_is_a_one_line_error_before_the_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--plot without the plot extra: one line naming the extra, exit 2, no run."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    path = tmp_path / "run.png"
    assert USAGE_ERROR == main(["run", *QUICK, "--plot", str(path)])
    out, err = capsys.readouterr()
    assert "" == out
    check_one_line_error(
        err,
        "--plot: matplotlib is not installed (pip install 'queuekeeper[plot]')",
    )
    assert not path.exists()


def test_plot_of_an_unknown_image_type_is_a_usage_error_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot run.xyz: one line naming the types matplotlib draws; nothing run."""
    assert USAGE_ERROR == main(["run", *QUICK, "--plot", str(tmp_path / "run.xyz")])
    out, err = capsys.readouterr()
    assert "" == out
    check_one_line_error(err, "matplotlib draws no 'xyz' files (use one of ")
    assert ", png, " in err


def test_plot_write_failure_is_one_line_not_a_traceback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A --plot file that cannot be written: the summary, then a one-line error."""
    import matplotlib.figure  # noqa: PLC0415 (the plot extra)

    def refuse(self: object, path: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", refuse)
    path = tmp_path / "run.svg"
    assert USAGE_ERROR == main(
        ["run", *QUICK, "--plot", str(path), "--backend", "trio"]
    )
    out, err = capsys.readouterr()
    check_summary_table(out, "trio")
    check_one_line_error(err, f"--plot: {str(path)!r}: Permission denied")


# -- bad flags ----------------------------------------------------------------------

BAD_FLAGS = [
    pytest.param(["run", "--bogus"], "unrecognized arguments: --bogus", id="unknown"),
    pytest.param(["nope"], "invalid choice: 'nope'", id="bad-command"),
    pytest.param(["run", "--workers", "0"], "--workers: '0' must be >= 1", id="w0"),
    pytest.param(["run", "--workers", "abc"], "'abc' is not an integer", id="wabc"),
    pytest.param(
        ["run", "--workers", "1000001"],
        "--workers: '1000001' must be from 1 to 1,000,000",
        id="w-max",
    ),
    pytest.param(
        ["run", "--mix", "garbage"], "--mix: bad mix entry 'garbage'", id="mix"
    ),
    pytest.param(["run", "--mix", "normal=0"], "weights add up to 0", id="mix0"),
    pytest.param(
        ["run", "--latency", "garbage"], "--latency: bad latency 'garbage'", id="lat"
    ),
    pytest.param(
        ["run", "--latency", "uniform:5:1"], "minimum is above the maximum", id="lat2"
    ),
    pytest.param(
        ["run", "--fail-rate", "2"], "'2' must be between 0 and 1", id="fail-rate"
    ),
    pytest.param(
        ["run", "--backend", "nope"], "--backend: invalid choice: 'nope'", id="backend"
    ),
    pytest.param(
        ["run", "--backpressure", "drop"], "invalid choice: 'drop'", id="backpressure"
    ),
    pytest.param(["run", "--rate", "0"], "--rate: '0' must be a finite", id="rate"),
    pytest.param(["run", "--rate", "inf"], "--rate: 'inf' must be a finite", id="inf"),
    pytest.param(
        ["run", "--duration=-inf"], "'-inf' must be a number > 0, or inf", id="dur"
    ),
    pytest.param(["run", "--duration", "nan"], "'nan' must be a number > 0", id="nan2"),
    pytest.param(["run", "--duration", "x"], "'x' is not a number", id="durx"),
    pytest.param(["run", "--plot", "{tmp}"], "--plot: '", id="plot-dir"),
    pytest.param(
        ["run", "--plot", "{tmp}/missing/run.png"], "--plot: no directory", id="plot"
    ),
    pytest.param(["run", "--timeout", "nan"], "'nan' must be a finite", id="nan"),
    pytest.param(["run", "--max-queue-size", "-1"], "'-1' must be >= 0", id="mqs"),
    pytest.param(
        ["run", "--metrics-port", "65536"], "'65536' is not a TCP port", id="port"
    ),
    pytest.param(["run", "--seed", "x"], "invalid int value: 'x'", id="seed"),
    pytest.param(
        ["run", "--json", "{tmp}/missing/out.json"], "--json: no directory", id="json"
    ),
    pytest.param(["run", "--json", "{tmp}"], "is a directory", id="json-dir"),
    pytest.param(["run", "--max-queue-size", "x"], "'x' is not an integer", id="mqsx"),
    pytest.param(["run", "--rate", "fast"], "'fast' is not a number", id="ratex"),
    pytest.param(["run", "--fail-rate", "x"], "'x' is not a number", id="failx"),
    pytest.param(["run", "--mix", "=1"], "bad mix entry '=1'", id="mix-noname"),
    pytest.param(["run", "--mix", "urgent=1"], "bad mix level 'urgent'", id="mixlvl"),
    pytest.param(
        ["run", "--mix", "high=x"], "bad mix weight 'x' for 'high'", id="mixw"
    ),
    pytest.param(
        ["run", "--mix", "high=-1"], "'-1' for 'high': must be >= 0", id="mixn"
    ),
    pytest.param(["run", "--latency", "exp:abc"], "'abc' is not a number", id="latx"),
    pytest.param(["run", "--latency", "const:-5"], "'-5' must be a finite", id="latn"),
    pytest.param(
        ["run", "--latency", "lognormal:20:x"], "sigma 'x' must be", id="sigma"
    ),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD_FLAGS)
def test_bad_flags_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragment: str,
) -> None:
    """A bad flag or value: exit status 2, one line on stderr, nothing run."""
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert USAGE_ERROR == main(argv)
    out, err = capsys.readouterr()
    assert "" == out
    check_one_line_error(err, fragment)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        param
        for param in BAD_FLAGS
        if param.id
        in {"unknown", "w0", "wabc", "mix", "lat", "fail-rate", "backend", "json"}
    ],
)
def test_bad_flags_in_a_subprocess(
    tmp_path: Path, argv: list[str], fragment: str
) -> None:
    """The installed command: exit status 2, exactly one stderr line, no traceback."""
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command(*argv),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )
    assert USAGE_ERROR == done.returncode
    assert "" == done.stdout
    check_one_line_error(done.stderr, fragment)


# -- run, as a subprocess -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_subprocess_exits_0_with_summary_and_json(
    tmp_path: Path, backend: str
) -> None:
    """python -m queuekeeper run: exit 0, the table on stdout, the JSON file."""
    path = tmp_path / "summary.json"
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command("run", *QUICK, "--backend", backend, "--json", str(path)),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )
    assert (0, "") == (done.returncode, done.stderr)
    rows = check_summary_table(done.stdout, backend)
    assert "40" == rows["all"]["completed"]
    totals = check_summary_json(json.loads(path.read_text(encoding="utf-8")), backend)
    assert 40 == totals["completed"]


@needs_signals
def test_metrics_are_scraped_during_a_run(child: type[Child]) -> None:
    """--metrics-port 0: the printed URL serves queuekeeper metrics while it runs."""
    run = child("run", *LONG, "--metrics-port", "0")
    url = run.wait_for_line(METRICS_LINE).group(0).removeprefix("metrics: ")
    status = run.wait_for_line(STATUS_LINE)  # requests have been submitted
    assert int(status.group(2)) > 0
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a local http URL)
        assert 200 == response.status
        text = response.read().decode()
    assert "# TYPE queuekeeper_queue_requests_total counter" in text
    assert re.search(
        r'^queuekeeper_queue_requests_total\{pool="run",priority="\w+"\} [1-9]',
        text,
        re.MULTILINE,
    )
    assert re.search(
        r'^queuekeeper_queue_size\{pool="run",priority="all"\} ', text, re.MULTILINE
    )
    assert 'queuekeeper_queue_active_workers{pool="run"}' in text
    run.interrupt()
    status_code, out, err = run.finish()
    assert (INTERRUPTED, "") == (status_code, err)
    check_summary_table(out, "asyncio")


@needs_signals
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_one_sigint_drains_prints_the_summary_and_exits_130(
    child: type[Child], tmp_path: Path, backend: str
) -> None:
    """First Ctrl-C: arrivals stop, queued work finishes, summary, exit 130."""
    path = tmp_path / "summary.json"
    run = child("run", *LONG, "--backend", backend, "--json", str(path))
    assert "running" == run.wait_for_line(STATUS_LINE).group(1)
    run.interrupt()
    status, out, err = run.finish()
    assert (INTERRUPTED, "") == (status, err)
    check_summary_table(out, backend)
    assert "interrupted: drained" in out
    summary = json.loads(path.read_text(encoding="utf-8"))
    totals = check_summary_json(summary, backend)
    assert "drained" == summary["interrupted"]
    assert totals["submitted"] > 0
    assert 0 == totals["cancelled"]  # drained: everything queued was served


@needs_signals
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_second_sigint_cancels_and_still_prints_the_summary(
    child: type[Child], tmp_path: Path, backend: str
) -> None:
    """Second Ctrl-C while draining: the work is cancelled, summary, exit 130."""
    path = tmp_path / "summary.json"
    slow = ("--latency", "const:60000", "--workers", "2")
    run = child("run", *LONG, *slow, "--backend", backend, "--json", str(path))
    assert "running" == run.wait_for_line(STATUS_LINE).group(1)
    run.interrupt()
    notice = run.wait_for_line(NOTICE_LINE).string
    assert (
        "Ctrl-C: no more arrivals, the queue drains. Ctrl-C again cancels it." == notice
    )
    while "draining" != run.wait_for_line(STATUS_LINE).group(1):
        pass
    run.interrupt()
    status, out, err = run.finish()
    assert (INTERRUPTED, "") == (status, err)
    check_summary_table(out, backend)
    assert "\nCtrl-C again: every queued and running request cancelled.\n" in out
    assert "interrupted: cancelled" in out
    summary = json.loads(path.read_text(encoding="utf-8"))
    totals = check_summary_json(summary, backend)
    assert "cancelled" == summary["interrupted"]
    assert 0 == totals["completed"]
    assert totals["submitted"] == totals["cancelled"] > 0


def test_a_reader_that_goes_away_ends_nothing_badly() -> None:
    """``queuekeeper run | head -1``: the run finishes quietly, no traceback."""
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        command("run", *QUICK, "--requests", "400", "--rate", "200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        assert STATUS_LINE.match(process.stdout.readline())
        process.stdout.close()  # the reader is gone; later writes hit a broken pipe
        err = process.stderr.read()
        status = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)
        process.stderr.close()
    assert (0, "") == (status, err)


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--requests", "30"), "30 of 30 requests, ended"),  # progress counts requests
        (("--duration", "0.3", "--mix", "high=1,7=1"), "0.3 s of 0.3 s, ended"),
    ],
)
def test_live_view_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, width: int, extra: tuple[str, ...], expected: str
) -> None:
    """On a terminal: a live view, then a summary; no line too wide, no cell cut."""
    from rich.console import Console  # noqa: PLC0415 (rich is the CLI's own)

    import queuekeeper.cli._app as cli  # noqa: PLC0415

    screen = io.StringIO()

    def terminal(**kwargs: object) -> Console:
        del kwargs
        return Console(file=screen, force_terminal=True, width=width, color_system=None)

    monkeypatch.setattr(cli, "_Console", terminal)
    argv = ["run", "--rate", "200", "--max-queue-size", "0", "--fail-rate", "0"]
    argv += ["--latency", "const:5", *extra]
    assert 0 == main(argv)
    # The live view's last frame, as it stays on the screen (no cursor moves).
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).replace("\r", "")
    last = out[out.rindex("queuekeeper run  ") :]
    assert "queuekeeper run  closed  " in last
    assert "workers 0/4 busy" in last
    assert expected in last
    assert "finished " in last
    assert "per-priority summary" in last
    assert "…" not in last
    assert max(len(line) for line in last.splitlines()) <= width


def test_piped_summary_keeps_every_header_whole_with_wide_figures() -> None:
    """Seven-digit counts and times still leave the headers unwrapped and uncut."""
    wide = dict.fromkeys(COUNTS, 9999999) | dict.fromkeys(RATES + TIMES, 9_999_999.9)
    summary = {
        "backend": "asyncio",
        "priorities": dict.fromkeys(LEVELS, wide),
        "totals": wide,
    }
    out = io.StringIO()
    console = Console(file=out, width=_PIPED_WIDTH, highlight=False)
    _print_summary(console, summary, RunReport({}, elapsed=1.0))
    text = out.getvalue()
    assert "…" not in text
    rows = table_rows(text)
    assert HEADER[1:] == rows.pop("priority")
    assert {"9999999", "9999999.9"} <= set(rows["all"])


@pytest.mark.parametrize("width", [60, 80, 120])
def test_summary_on_a_narrow_terminal_splits_rather_than_cuts(width: int) -> None:
    """Tables that fit the terminal, each column whole, in order, priorities in each."""
    wide = dict.fromkeys(COUNTS, 9999999) | dict.fromkeys(RATES + TIMES, 9_999_999.9)
    summary = {
        "backend": "asyncio",
        "priorities": dict.fromkeys(LEVELS, wide),
        "totals": wide,
    }
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False, force_terminal=True)
    _print_summary(console, summary, RunReport({}, elapsed=1.0))
    text = Text.from_ansi(out.getvalue()).plain
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    headers = [
        line.strip("┃").split("┃") for line in text.splitlines() if line[:1] == "┃"
    ]
    assert len(headers) > 1  # split: the whole table needs more than 120 columns
    assert all(cells[0].strip() == "priority" for cells in headers)
    assert HEADER[1:] == [cell.strip() for cells in headers for cell in cells[1:]]
    assert 1 == text.count("per-priority summary (asyncio, 1.0 s)")
    rows = [line.strip("│").split("│") for line in text.splitlines() if line[:1] == "│"]
    assert 5 * len(headers) == len(rows)  # four levels and "all" in each table
    for cells in rows:  # every figure whole
        assert {"9999999", "9999999.9"} >= {cell.strip() for cell in cells[1:]}


def test_summary_on_a_very_narrow_terminal_gives_each_column_a_table() -> None:
    """Where no even split of the counts fits, one count a table, every one in order."""
    summary = {
        "backend": "asyncio",
        "priorities": dict.fromkeys(LEVELS, dict.fromkeys(COUNTS + RATES + TIMES, 1)),
        "totals": dict.fromkeys(COUNTS + RATES + TIMES, 4),
    }
    out = io.StringIO()
    console = Console(file=out, width=30, highlight=False)
    _print_summary(console, summary, RunReport({}, elapsed=1.0))
    headers = [
        [cell.strip() for cell in line.strip("┃").split("┃")][1:]
        for line in out.getvalue().splitlines()
        if line[:1] == "┃"
    ]
    assert HEADER[1:] == [heading for cells in headers for heading in cells]
    assert [1] * 8 == [len(cells) for cells in headers[:8]]  # the counts, one each


# -- the live view and the status lines, on virtual time ----------------------------


def _status_pool() -> WorkerPool[Arrival, None]:
    """A pool that is never run: what the views read is its status."""

    async def handler(request: Arrival) -> None:
        await anyio.lowlevel.checkpoint()

    return WorkerPool(handler, workers=3, max_queue_size=50, name="run")


def render(renderable: object, width: int) -> str:
    """*renderable* as a terminal *width* columns wide shows it, without colours."""
    screen = io.StringIO()
    console = Console(file=screen, width=width, color_system=None)
    console.print(renderable)
    return screen.getvalue()


@pytest.mark.parametrize(
    ("workload", "offered", "times", "interrupted", "bar", "figure"),
    [
        (Workload(requests=40), 12, (2.0, None), None, (40, 12), "12 of 40 requests"),
        (Workload(requests=40), 0, (0.0, None), None, (40, 0), "0 of 40 requests"),
        (Workload(requests=40), 12, (3.0, 3.0), None, (40, 12), "12 of 40 requests"),
        (Workload(), 0, (2.0, None), None, (8, 2), "2.0 s of 8 s"),
        (Workload(), 0, (9.5, None), None, (8, 8), "8.0 s of 8 s"),  # never past 8
        (Workload(), 0, (9.5, 7.96), None, (8, 7.96), "8.0 s of 8 s"),
        (Workload(), 0, (3.5, 3.2), "drained", (8, 3.2), "3.2 s of 8 s"),
        (Workload(duration=math.inf), 0, (4.0, None), None, (None, 1), "4.0 s"),
        (Workload(duration=math.inf), 0, (4.0, 3.9), "drained", (1, 1), "3.9 s"),
    ],
)
def test_the_arrivals_bar_says_what_it_counts_and_how_far(
    workload: Workload,
    offered: int,
    times: tuple[float, float | None],
    interrupted: str | None,
    bar: tuple[float | None, float],
    figure: str,
) -> None:
    """Toward --requests, else time toward --duration, else a pulse until Ctrl-C."""
    elapsed, ended = times
    # Offered: submitted and rejected, both.
    status = attrs.evolve(
        _status_pool().status(), submitted=offered - offered // 6, rejected=offered // 6
    )
    drawn, text = _arrivals_row(workload, status, elapsed, ended, interrupted)
    assert bar == (drawn.total, drawn.completed)
    if ended is not None:
        end = ", stopped by Ctrl-C" if interrupted else ", ended"
    elif math.isinf(workload.duration):
        end = ", until Ctrl-C"
    elif workload.requests is None:
        end = f", {workload.duration - min(elapsed, workload.duration):.1f} s left"
    else:  # at the pace so far, or the rate before the first arrival
        pace = elapsed / offered if offered else 1 / workload.rate
        end = f", {(workload.requests - offered) * pace:.1f} s left"
    assert figure + end == text


@pytest.mark.parametrize("width", [80, 120])
def test_live_view_shows_every_level_labelled_and_whole(width: int) -> None:
    """Every priority has its own line and bar, and no line is wider than the screen."""
    status = attrs.evolve(
        _status_pool().status(),
        queue_size=45,
        queue_size_by_priority={3: 40, 4: 5},
        submitted=1_234_567,
        rejected=12,
        completed=1_200_000,
        wait_time_ms_p50=84.0,
        wait_time_ms_p99=5_343.2,
    )
    text = render(_live_view(Workload(), status, 3.2), width)
    lines = [line.rstrip() for line in text.splitlines()]
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    labels = ["arrivals", "queue", *LEVELS]
    bars = [line for line in lines if line.split()[0] in labels]
    assert labels == [line.split()[0] for line in bars]
    assert all(line.startswith(f"{line.split()[0]:>8} ━") for line in bars[:2])
    assert bars[0].endswith("  3.2 s of 8 s, 4.8 s left")
    assert bars[1].endswith("  45 of 50 queued")
    # Each level's count under the queue's, with a bar (blank at 0, no colours).
    assert [" 0", " 0", "40", " 5"] == [line[50:] for line in bars[2:]]
    assert bars[4].startswith("  normal ━")
    assert "offered 1234579 = submitted 1234567 + rejected 12" in text
    assert "finished 1200000 = completed 1200000 + failed 0 + shed 0" in text
    assert "Ctrl-C" not in text
    assert "sample request: none queued" in text
    sample = _Sample("run-7", "low", 1.25, 12, 2.25)
    with_sample = render(_live_view(Workload(), status, 3.2, sample=sample), width)
    assert (
        "sample request run-7 (low, queued 1.2 s): position 12, starts in ~2.2 s"
        in " ".join(with_sample.split())
    )
    unknown = render(
        _live_view(
            Workload(), status, 3.2, sample=sample._replace(position=0, eta=None)
        ),
        width,
    )
    assert "position 0, start unknown" in " ".join(unknown.split())


@pytest.mark.anyio
async def test_the_live_view_follows_a_queued_sample_request() -> None:
    """The sample is the latest request while queued; its position and ETA show."""
    report = RunReport({})
    assert _sample(report) is None
    gate = anyio.Event()

    async def hold(request: int) -> None:
        await gate.wait()

    async with WorkerPool(hold, workers=1) as pool:
        await pool.submit(0)
        report.sample = await pool.submit(1)
        await anyio.wait_all_tasks_blocked()
        sample = _sample(report)
        assert sample is not None
        assert (report.sample.id, "normal", 0, None) == (
            sample.id,
            sample.level,
            sample.position,
            sample.eta,
        )
        assert 0 <= sample.waited
        gate.set()
    assert _sample(report) is None


@pytest.mark.parametrize(
    ("state", "interrupted", "notice"),
    [
        ("draining", "drained", "Ctrl-C again cancels it."),
        ("closed", "drained", "Ctrl-C: arrivals stopped, and the queue drained."),
        ("closed", "cancelled", "every queued and running request cancelled."),
    ],
)
def test_live_view_after_ctrl_c_says_what_a_second_one_does(
    state: str, interrupted: str, notice: str
) -> None:
    """After the first Ctrl-C the view says that a second one cancels."""
    status = attrs.evolve(_status_pool().status(), state=state)
    text = render(
        _live_view(Workload(), status, 3.5, ended=3.2, interrupted=interrupted), 80
    )
    assert "3.2 s of 8 s, stopped by Ctrl-C" in text
    assert notice in " ".join(text.split())


def test_live_view_of_an_unbounded_queue_has_no_capacity_bar() -> None:
    """--max-queue-size 0: the queue row is a count, the levels share the total."""
    status = attrs.evolve(
        _status_pool().status(),
        max_queue_size=None,
        queue_size=120,
        queue_size_by_priority={1: 20, 4: 100},
    )
    lines = [
        line.rstrip()
        for line in render(_live_view(Workload(), status, 1.0), 80).splitlines()
    ]
    assert "   queue" + " " * 42 + "120 queued, no limit" in lines
    assert lines[3].startswith("critical ━")
    assert lines[3].endswith(" 20")
    assert lines[6].startswith("     low ━")
    assert lines[6].endswith(" 100")


def test_piped_status_lines_start_once_the_pool_exists() -> None:
    """Piped: a status line a second, none while the run has no pool yet."""
    out = io.StringIO()
    console = Console(file=out, width=_PIPED_WIDTH, highlight=False)
    report = RunReport({})

    async def scenario() -> str:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_show, Workload(), report, console)
            await anyio.sleep(1.5)  # the tick at 1 s finds no pool
            before = out.getvalue()
            report.pool = _status_pool()
            await anyio.sleep(1)  # the tick at 2 s finds it
            task_group.cancel_scope.cancel()
        return before

    assert "" == run_on_virtual_time(scenario)
    (line,) = out.getvalue().splitlines()
    match = STATUS_LINE.match(line)
    assert match is not None, line
    assert ("created", "0") == match.groups()
    assert line.startswith("t=   2.0s ")
    assert " rejected=0 finished=0 (completed=0 failed=0 shed=0 " in line
    assert " active=0/3 " in line


def test_piped_output_says_what_each_ctrl_c_did() -> None:
    """Piped: a line at the tick after the first Ctrl-C, and one as the run ends."""
    out = io.StringIO()
    console = Console(file=out, width=_PIPED_WIDTH, highlight=False)
    report = RunReport({}, pool=_status_pool())

    async def scenario() -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_show, Workload(), report, console)
            await anyio.sleep(1.5)
            report.interrupted = "drained"
            await anyio.sleep(1)  # the tick at 2 s tells
            report.interrupted = "cancelled"  # told as the view ends
            task_group.cancel_scope.cancel()

    run_on_virtual_time(scenario)
    lines = out.getvalue().splitlines()
    assert [STATUS_LINE, NOTICE_LINE, STATUS_LINE, NOTICE_LINE] == [
        STATUS_LINE if STATUS_LINE.match(line) else NOTICE_LINE for line in lines
    ]
    assert lines[1].startswith("Ctrl-C: no more arrivals")
    assert lines[3].startswith("Ctrl-C again: ")


@pytest.mark.parametrize("width", [40, 80, 120])
def test_live_view_lines_break_between_phrases_only(width: int) -> None:
    """A narrow terminal wraps the header and counts, never inside "p99 … ms"."""
    status = attrs.evolve(
        _status_pool().status(),
        submitted=1_234_567,
        completed=1_234_000,
        wait_time_ms_p50=84.0,
        wait_time_ms_p99=5_343.2,
    )
    lines = render(_live_view(Workload(requests=2_000_000), status, 6.6), width)
    assert max(len(line) for line in lines.splitlines()) <= width
    for phrase in (
        "queuekeeper run  created  6.6 s",
        "workers 0/3 busy",
        "p50 84.0 ms",
        "p99 5343.2 ms",
        "= submitted 1234567",
        "= completed 1234000",
        "+ timed out 0",
        "0 of 50 queued",
    ):
        assert phrase in lines, (phrase, lines)
    if width >= 80:  # the bars leave it room, narrowing as far as they may
        assert "1,234,567 of 2,000,000 requests, 1.4 s left" in lines  # --duration 8


def test_live_view_starts_once_the_pool_exists() -> None:
    """On a terminal: nothing drawn while the run has no pool, then the view."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    report = RunReport({})

    async def scenario() -> str:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_show, Workload(requests=40), report, console)
            await anyio.sleep(0.6)  # the ticks at 0, 0.25 and 0.5 s find no pool
            before = screen.getvalue()
            report.pool = _status_pool()
            await anyio.sleep(0.25)  # the tick at 0.75 s finds it
            task_group.cancel_scope.cancel()
        return before

    before = run_on_virtual_time(scenario)
    assert "queuekeeper run" not in before
    after = screen.getvalue()[len(before) :]
    assert "queuekeeper run  created  0.8 s  workers 0/3 busy" in after
    assert " 0 of 50 queued" in after


# -- the entry points ---------------------------------------------------------------


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter."""
    return subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )


def test_importing_the_main_module_runs_no_command() -> None:
    """``import queuekeeper.__main__`` (a doc build, pydoc) neither runs nor exits."""
    done = python(
        "import queuekeeper.__main__ as entry, queuekeeper.cli as cli\n"
        "print(entry.main is cli.main)\n"
    )
    assert (0, "True\n", "") == (done.returncode, done.stdout, done.stderr)


def test_a_missing_module_other_than_rich_is_not_blamed_on_the_extra() -> None:
    """Only rich missing means the cli extra is; any other import error propagates."""
    done = python(
        "import sys\n"
        "from queuekeeper.cli import main\n"
        "sys.modules['attrs'] = None  # as if a broken install had lost it\n"
        "try:\n"
        "    main(['--version'])\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name)\n"
    )
    assert (0, "attrs\n", "") == (done.returncode, done.stdout, done.stderr)
