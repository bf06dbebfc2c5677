"""The ``queuekeeper`` command: ``run`` (a synthetic workload) and ``bench``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .._pool._checks import MAX_WORKERS
from .._priority import priority_label
from .._states import Backpressure
from .._version import __version__
from ._workload import (
    DEFAULT_MIX,
    PriorityStats,
    RunReport,
    Workload,
    parse_latency,
    parse_mix,
    run_workload,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from rich.console import ConsoleOptions

    from .._prometheus import PrometheusMetrics
    from .._status import PoolStatus

__all__ = ["main"]

#: Exit status for bad flags or values, as argparse uses.
USAGE_ERROR: Final = 2
#: Exit status after an interrupted run (128 + SIGINT).
INTERRUPTED: Final = 130

_REFRESH_TTY: Final = 0.25
_REFRESH_PLAIN: Final = 1.0


class _Console(Console):
    """A rich Console that goes quiet when its reader goes away (``| head``)."""

    def on_broken_pipe(self) -> None:
        # Rich's default raises SystemExit from whichever task printed. The run
        # carries on to its normal end instead, its output discarded, as Python's
        # documentation advises for a closed pipe.
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _UsageError(Exception):
    """A bad flag or value: reported as one line, exit status 2."""


def _require(module: str, extra: str, what: str) -> None:
    """Raise a one-line :class:`_UsageError` if *module* is not installed."""
    if importlib.util.find_spec(module) is None:
        msg = f"queuekeeper: {what} needs {module}: pip install 'queuekeeper[{extra}]'"
        raise _UsageError(msg)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and never a traceback."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not an integer"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"{text!r} must be >= 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def _worker_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_WORKERS:
        msg = f"{text!r} must be from 1 to {MAX_WORKERS:,}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not an integer"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"{text!r} must be >= 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"{text!r} is not a number"
        raise argparse.ArgumentTypeError(msg) from None
    if not (0 < value < math.inf):
        msg = f"{text!r} must be a finite number > 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"{text!r} is not a number"
        raise argparse.ArgumentTypeError(msg) from None
    if not (0 <= value <= 1):
        msg = f"{text!r} must be between 0 and 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn a parser's ValueError into argparse's one-line error."""

    def wrapper(text: str) -> Any:  # noqa: ANN401
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapper.__name__ = parse.__name__
    return wrapper


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:  # noqa: PLR2004
        msg = f"{text!r} is not a TCP port (0-65535)"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``queuekeeper`` command and its subcommands."""
    parser = _Parser(
        prog="queuekeeper",
        description="Priority request queuing for async Python.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )

    run = commands.add_parser(
        "run",
        help="drive a synthetic workload through a WorkerPool and report per priority",
        description=(
            "Drive a synthetic workload (Poisson arrivals at four priorities, random "
            "handler latency, optional failures) through a WorkerPool, with a live "
            "view, then print a per-priority summary. Ctrl-C drains; a second "
            "Ctrl-C cancels."
        ),
    )
    defaults = Workload()
    run.add_argument("--workers", type=_worker_count, default=defaults.workers)
    run.add_argument(
        "--max-queue-size",
        type=_non_negative_int,
        default=defaults.max_queue_size,
        help="queue capacity; 0 = unlimited (default: %(default)s)",
    )
    run.add_argument(
        "--backpressure",
        choices=[mode.value for mode in Backpressure],
        default=defaults.backpressure.value,
        help="what a full queue does (default: %(default)s)",
    )
    run.add_argument(
        "--rate",
        type=_positive_float,
        default=defaults.rate,
        help="mean arrivals per second (default: %(default)s)",
    )
    run.add_argument(
        "--duration",
        type=_positive_float,
        default=defaults.duration,
        help="seconds of arrivals (default: %(default)s)",
    )
    run.add_argument(
        "--requests",
        type=_positive_int,
        default=None,
        help="stop after this many arrivals (default: no limit)",
    )
    run.add_argument(
        "--mix",
        type=_checked(parse_mix),
        default=parse_mix(DEFAULT_MIX),
        help=f"share per priority (default: {DEFAULT_MIX})",
    )
    run.add_argument(
        "--latency",
        type=_checked(parse_latency),
        default=defaults.latency,
        help=(
            "handler latency: const:MS, uniform:MIN:MAX, exp:MEAN or "
            "lognormal:MEDIAN:SIGMA (default: %(default)s)"
        ),
    )
    run.add_argument(
        "--fail-rate",
        type=_fraction,
        default=defaults.fail_rate,
        help="share of requests whose handler raises (default: %(default)s)",
    )
    run.add_argument(
        "--timeout", type=_positive_float, default=None, help="per-request timeout (s)"
    )
    run.add_argument(
        "--queue-timeout",
        type=_positive_float,
        default=None,
        help="queue-wait timeout (s)",
    )
    run.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    run.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    run.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve /metrics on 127.0.0.1:PORT for the run (0 = any free port)",
    )
    run.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the summary as JSON",
    )

    bench = commands.add_parser(
        "bench",
        help="compare priority-queue implementations, queuekeeper among them",
        description="Compare Python priority-queue implementations with queuekeeper's.",
    )
    bench.add_argument(
        "--tasks",
        type=_positive_int,
        default=None,
        help="items per pass (default 10,000; 20,000 requests with --redis)",
    )
    bench.add_argument("--repeat", type=_positive_int, default=5)
    bench.add_argument("--only", nargs="+", default=(), metavar="NAME")
    bench.add_argument("--json", type=Path, default=None, metavar="PATH")
    bench.add_argument("--plot", type=Path, default=None, metavar="PATH")
    bench.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="measure the Redis queue and pool on this server instead "
        "(redis://HOST:PORT; needs queuekeeper[redis])",
    )
    bench.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop of the --redis measurements",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``queuekeeper`` command; return its exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "bench":
            return _bench(args)
        return _run(args)
    except _UsageError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return USAGE_ERROR


# -- run ---------------------------------------------------------------------------


def _workload(args: argparse.Namespace) -> Workload:
    return Workload(
        workers=args.workers,
        max_queue_size=args.max_queue_size or None,
        backpressure=Backpressure(args.backpressure),
        rate=args.rate,
        duration=args.duration,
        requests=args.requests,
        mix=args.mix,
        latency=args.latency,
        fail_rate=args.fail_rate,
        timeout=args.timeout,
        queue_timeout=args.queue_timeout,
        seed=args.seed,
    )


def _run(args: argparse.Namespace) -> int:
    if args.backend == "trio":
        _require("trio", "trio", "--backend trio")
    if args.metrics_port is not None:
        _require("prometheus_client", "prometheus", "--metrics-port")
    workload = _workload(args)
    if args.json is not None and not args.json.parent.is_dir():
        msg = f"queuekeeper run: error: --json: no directory {str(args.json.parent)!r}"
        raise _UsageError(msg)
    if args.json is not None and args.json.is_dir():
        msg = f"queuekeeper run: error: --json: {str(args.json)!r} is a directory"
        raise _UsageError(msg)
    console = _Console(
        highlight=False, width=None if sys.stdout.isatty() else _PIPED_WIDTH
    )
    report = RunReport({})
    metrics, server = _serve_metrics(args.metrics_port, console)
    try:
        anyio.run(_drive, workload, report, metrics, console, backend=args.backend)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    summary = _summary(workload, report, args.backend)
    _print_summary(console, summary, report)
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            where = str(args.json)
            msg = f"queuekeeper run: error: --json: {where!r}: {exc.strerror or exc}"
            raise _UsageError(msg) from None
        console.print(f"summary written to {args.json}")
    return INTERRUPTED if report.interrupted else 0


def _serve_metrics(
    port: int | None, console: Console
) -> tuple[PrometheusMetrics | None, Any]:
    if port is None:
        return None, None
    from .._prometheus import serve_metrics  # noqa: PLC0415 (only with --metrics-port)

    try:
        metrics, server = serve_metrics(port)
    except OSError as exc:
        msg = f"queuekeeper run: error: --metrics-port {port}: {exc.strerror or exc}"
        raise _UsageError(msg) from None
    console.print(
        f"metrics: http://127.0.0.1:{server.server_port}/metrics", soft_wrap=True
    )
    console.file.flush()
    return metrics, server


async def _drive(
    workload: Workload,
    report: RunReport,
    metrics: PrometheusMetrics | None,
    console: Console,
) -> None:
    stop = anyio.Event()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_watch_signals, stop, task_group.cancel_scope, report)
        task_group.start_soon(_show, workload, report, console)
        try:
            await run_workload(workload, metrics=metrics, report=report, stop=stop)
        finally:
            task_group.cancel_scope.cancel()


async def _watch_signals(
    stop: anyio.Event, scope: anyio.CancelScope, report: RunReport
) -> None:
    """First Ctrl-C: stop arrivals and drain. Second: cancel the run."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if not stop.is_set():
                report.interrupted = "drained"
                stop.set()
            else:
                report.interrupted = "cancelled"
                scope.cancel()


async def _show(workload: Workload, report: RunReport, console: Console) -> None:
    started = anyio.current_time()
    if console.is_terminal:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            try:
                while True:
                    pool = report.pool
                    if pool is not None:
                        live.update(
                            _live_view(
                                workload, pool.status(), anyio.current_time() - started
                            )
                        )
                        live.refresh()
                    await anyio.sleep(_REFRESH_TTY)
            finally:
                pool = report.pool
                if pool is not None:
                    live.update(
                        _live_view(
                            workload, pool.status(), anyio.current_time() - started
                        )
                    )
                    live.refresh()
    else:
        while True:
            await anyio.sleep(_REFRESH_PLAIN)
            pool = report.pool
            if pool is not None:
                console.print(
                    _plain_line(pool.status(), anyio.current_time() - started),
                    soft_wrap=True,
                )


def _depths(status: PoolStatus) -> str:
    return " ".join(
        f"{priority_label(level)}={count}"
        for level, count in status.queue_size_by_priority.items()
    )


def _plain_line(status: PoolStatus, elapsed: float) -> str:
    done = (
        status.completed
        + status.failed
        + status.cancelled
        + status.timed_out
        + status.shed
    )
    return (
        f"t={elapsed:6.1f}s {status.state:<8} submitted={status.submitted} done={done} "
        f"queued={status.queue_size} ({_depths(status) or '-'}) "
        f"active={status.active_workers}/{status.max_workers} "
        f"wait p50={status.wait_time_ms_p50:.1f}ms p99={status.wait_time_ms_p99:.1f}ms "
        f"rejected={status.rejected} shed={status.shed} failed={status.failed} "
        f"timed_out={status.timed_out}"
    )


class _Phrases:
    """Phrases two spaces apart, wrapped between phrases, never inside one.

    (Rich wraps at any space: "p99 5343.2" at the end of one line, "ms" at the
    start of the next.)
    """

    def __init__(self, *phrases: Text) -> None:
        self.phrases = phrases

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[Text]:
        line = Text()
        for phrase in self.phrases:
            if line and line.cell_len + 2 + phrase.cell_len > options.max_width:
                yield line
                line = Text()
            if line:
                line.append("  ")
            line.append_text(phrase)
        yield line


def _live_view(workload: Workload, status: PoolStatus, elapsed: float) -> Group:
    if workload.requests is not None:
        total, progress = (
            float(workload.requests),
            float(status.submitted + status.rejected),
        )
    else:
        total, progress = workload.duration, min(elapsed, workload.duration)
    header = _Phrases(
        Text.assemble(("queuekeeper run", "bold"), f" {status.state}  {elapsed:5.1f}s"),
        Text(f"workers {status.active_workers}/{status.max_workers} busy"),
        Text(f"wait p50 {status.wait_time_ms_p50:.1f} ms"),
        Text(f"p99 {status.wait_time_ms_p99:.1f} ms"),
    )
    depth = Table.grid(padding=(0, 1))
    depth.add_column(justify="right")
    depth.add_column(width=40)
    depth.add_column(justify="right")
    capacity = status.max_queue_size or max(1, status.queue_size)
    for level, _ in sorted(workload.mix):
        count = status.queue_size_by_priority.get(level, 0)
        depth.add_row(
            priority_label(level),
            ProgressBar(total=capacity, completed=count, width=40),
            str(count),
        )
    queued = f"queued {status.queue_size}"
    if status.max_queue_size:
        queued += f"/{status.max_queue_size}"
    counts = _Phrases(
        *(
            Text(phrase)
            for phrase in (
                f"submitted {status.submitted}",
                f"completed {status.completed}",
                f"failed {status.failed}",
                f"rejected {status.rejected}",
                f"shed {status.shed}",
                f"timed out {status.timed_out}",
                queued,
            )
        )
    )
    return Group(
        header,
        ProgressBar(total=total, completed=progress),
        depth,
        counts,
    )


#: Columns of piped output (80 by default): room for the summary table with
#: seven-digit counts and times, its headers neither wrapped nor cut.
_PIPED_WIDTH: Final = 160

_COLUMNS: Final = (
    ("offered", "offered"),
    ("submitted", "submitted"),
    ("completed", "done"),
    ("failed", "failed"),
    ("rejected", "rejected"),
    ("shed", "shed"),
    ("timed_out", "timeout"),
    ("cancelled", "cancel"),
    ("wait_ms_p50", "wait p50"),
    ("wait_ms_p95", "p95"),
    ("wait_ms_p99", "p99"),
    ("run_ms_p50", "run p50"),
    ("run_ms_p99", "p99"),
)
#: The leading columns of _COLUMNS that count requests (the rest are times).
_COUNT_COLUMNS: Final = 8
#: Wide enough for any summary table: what it is measured against.
_UNBOUNDED_WIDTH: Final = 1_000


def _summary(workload: Workload, report: RunReport, backend: str) -> dict[str, Any]:
    ordered = sorted(report.levels.items())
    levels = {priority_label(level): stats.as_dict() for level, stats in ordered}
    everything = PriorityStats(0)
    for _, stats in ordered:
        everything.merge(stats)
    totals = everything.as_dict()
    del totals["priority"]
    status = report.pool.status() if report.pool is not None else None
    return {
        "backend": backend,
        "elapsed_s": round(report.elapsed, 3),
        "interrupted": report.interrupted,
        "config": {
            "workers": workload.workers,
            "max_queue_size": workload.max_queue_size,
            "backpressure": workload.backpressure.value,
            "rate": workload.rate,
            "duration": workload.duration,
            "requests": workload.requests,
            "mix": {priority_label(level): weight for level, weight in workload.mix},
            "latency": str(workload.latency),
            "fail_rate": workload.fail_rate,
            "timeout": workload.timeout,
            "queue_timeout": workload.queue_timeout,
            "seed": workload.seed,
        },
        "priorities": levels,
        "totals": totals,
        "pool": None
        if status is None
        else {
            "submitted": status.submitted,
            "completed": status.completed,
            "failed": status.failed,
            "rejected": status.rejected,
            "timed_out": status.timed_out,
            "cancelled": status.cancelled,
            "shed": status.shed,
            "state": status.state,
        },
    }


def _print_summary(
    console: Console, summary: dict[str, Any], report: RunReport
) -> None:
    title = f"per-priority summary ({summary['backend']}, {report.elapsed:.1f} s)"
    caption = "wait and run times in milliseconds"
    # As many tables as the terminal's width needs (at 80 columns, one table cut
    # every cell short): one if it fits, else the counts apart from the times,
    # each cut into as few even parts as fit whole.
    unbounded = console.options.update(max_width=_UNBOUNDED_WIDTH)

    def fits(columns: Sequence[tuple[str, str]]) -> bool:
        table = _summary_table(summary, columns, title, caption)
        return Measurement.get(console, unbounded, table).maximum <= console.width

    parts: list[Sequence[tuple[str, str]]] = []
    if fits(_COLUMNS):
        parts.append(_COLUMNS)
    else:
        for section in (_COLUMNS[:_COUNT_COLUMNS], _COLUMNS[_COUNT_COLUMNS:]):
            parts.extend(_even_parts(section, fits))
    for index, columns in enumerate(parts):
        console.print(
            _summary_table(
                summary,
                columns,
                title if index == 0 else None,
                caption if index == len(parts) - 1 else None,
            )
        )
    if report.interrupted:
        console.print(f"interrupted: {report.interrupted}")


def _even_parts(
    columns: Sequence[tuple[str, str]],
    fits: Callable[[Sequence[tuple[str, str]]], bool],
) -> list[Sequence[tuple[str, str]]]:
    """*columns* in as few parts of even size as each *fits* (one column at least)."""
    for count in range(1, len(columns)):
        size = -(-len(columns) // count)  # ceiling division
        parts = [
            columns[start : start + size] for start in range(0, len(columns), size)
        ]
        if all(fits(part) for part in parts):
            return parts
    return [columns[index : index + 1] for index in range(len(columns))]


def _summary_table(
    summary: dict[str, Any],
    columns: Sequence[tuple[str, str]],
    title: str | None,
    caption: str | None,
) -> Table:
    table = Table(caption=caption, title=title)
    table.add_column("priority")
    for _, heading in columns:
        table.add_column(heading, justify="right")
    for label, figures in summary["priorities"].items():
        table.add_row(label, *(_cell(figures[key]) for key, _ in columns))
    totals = summary["totals"]
    table.add_row("all", *(_cell(totals.get(key)) for key, _ in columns), style="bold")
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


# -- bench -------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    if args.redis is not None:
        return _bench_redis(args)
    _require("trio", "cli", "queuekeeper bench")
    from ._bench import BenchConfig, implementation_names, run_bench  # noqa: PLC0415

    known = implementation_names()
    unknown = [name for name in args.only if name not in known]
    if unknown:
        msg = (
            f"queuekeeper bench: error: --only: unknown name {unknown[0]!r} "
            f"(choose from {', '.join(known)})"
        )
        raise _UsageError(msg)
    for option in ("json", "plot"):
        path = getattr(args, option)
        if path is not None and not path.parent.is_dir():
            where = str(path.parent)
            msg = f"queuekeeper bench: error: --{option}: no directory {where!r}"
            raise _UsageError(msg)
    config = BenchConfig(
        tasks=args.tasks or 10_000, repeat=args.repeat, only=tuple(args.only)
    )
    results = run_bench(config, sys.stdout)
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            where = str(args.json)
            msg = f"queuekeeper bench: error: --json: {where!r}: {exc.strerror or exc}"
            raise _UsageError(msg) from None
        print(f"results written to {args.json}")  # noqa: T201
    if args.plot is not None:
        from ._bench import plot  # noqa: PLC0415

        try:
            plot(results, args.plot)
        except RuntimeError as exc:
            msg = f"queuekeeper bench: error: --plot: {exc}"
            raise _UsageError(msg) from None
        except OSError as exc:
            where = str(args.plot)
            msg = f"queuekeeper bench: error: --plot: {where!r}: {exc.strerror or exc}"
            raise _UsageError(msg) from None
    return 0


def _bench_redis(args: argparse.Namespace) -> int:
    _require("coredis", "redis", "queuekeeper bench --redis")
    if args.backend == "trio":
        _require("trio", "trio", "queuekeeper bench --backend trio")
    from ._redis_bench import run_redis_bench  # noqa: PLC0415

    try:
        results = run_redis_bench(
            args.redis, sys.stdout, requests=args.tasks or 20_000, backend=args.backend
        )
    except ValueError as exc:
        msg = f"queuekeeper bench: error: {exc}"
        raise _UsageError(msg) from None
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0
