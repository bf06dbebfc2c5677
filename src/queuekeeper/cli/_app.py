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
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn

import anyio
from rich.cells import cell_len
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
    timeline,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from rich.console import ConsoleOptions, RenderableType

    from .._pool import WorkerPool
    from .._prometheus import PrometheusMetrics
    from .._status import PoolStatus
    from ._workload import Arrival, Timeline

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


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"{text!r} is not a number"
        raise argparse.ArgumentTypeError(msg) from None
    if not (0 < value <= math.inf):
        msg = f"{text!r} must be a number > 0, or inf"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``queuekeeper`` command and its subcommands.

    Every option of ``run`` and ``bench`` says what it does and its default.
    """
    parser = _Parser(
        prog="queuekeeper",
        description="Priority request queuing for async Python.",
        epilog="Run 'queuekeeper COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=_Parser
    )

    run = commands.add_parser(
        "run",
        help="drive a synthetic workload through a WorkerPool and report per priority",
        description=(
            "Drive a synthetic workload (Poisson arrivals at four priorities, random "
            "handler latency, optional failures) through a WorkerPool, with a live "
            "view, then print a per-priority summary. Ctrl-C stops the arrivals and "
            "drains the queue; a second Ctrl-C cancels what is left."
        ),
    )
    defaults = Workload()
    run.add_argument(
        "--workers",
        type=_worker_count,
        default=defaults.workers,
        metavar="N",
        help="workers in the pool (default: %(default)s)",
    )
    run.add_argument(
        "--max-queue-size",
        type=_non_negative_int,
        default=defaults.max_queue_size,
        metavar="N",
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
        metavar="R",
        help="mean arrivals per second (default: %(default)g)",
    )
    run.add_argument(
        "--duration",
        type=_duration,
        default=defaults.duration,
        metavar="S",
        help="seconds of arrivals; inf: until --requests or Ctrl-C "
        "(default: %(default)g)",
    )
    run.add_argument(
        "--requests",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after this many arrivals (default: no limit)",
    )
    run.add_argument(
        "--mix",
        type=_checked(parse_mix),
        default=parse_mix(DEFAULT_MIX),
        metavar="SPEC",
        help=f"share per priority, names or ints (default: {DEFAULT_MIX})",
    )
    run.add_argument(
        "--latency",
        type=_checked(parse_latency),
        default=defaults.latency,
        metavar="SPEC",
        help=(
            "handler latency: const:MS, uniform:MIN:MAX, exp:MEAN or "
            "lognormal:MEDIAN:SIGMA (default: %(default)s)"
        ),
    )
    run.add_argument(
        "--fail-rate",
        type=_fraction,
        default=defaults.fail_rate,
        metavar="F",
        help="share of requests whose handler raises (default: %(default)s)",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="seconds a request may take, queued and running (default: none)",
    )
    run.add_argument(
        "--queue-timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="seconds a request may wait in the queue (default: none)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        metavar="N",
        help="seed of the arrivals, priorities, latencies and failures: the same "
        "seed offers the same requests (default: %(default)s)",
    )
    run.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="the event loop to run on (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics on 127.0.0.1:PORT during the run; "
        "0 = any free port (default: off)",
    )
    run.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the summary as JSON (default: none)",
    )
    run.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH",
        help="draw queue depth per priority and wait percentiles over time into "
        "a PNG or SVG; needs queuekeeper[plot] (default: none)",
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
        metavar="N",
        help="items per pass (default: 10,000; 20,000 requests with --redis)",
    )
    bench.add_argument(
        "--repeat",
        type=_positive_int,
        default=5,
        metavar="N",
        help="samples per implementation; each figure is their median "
        "(default: %(default)s)",
    )
    bench.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="NAME",
        help="run only these implementations; heapq always runs (default: all)",
    )
    bench.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write every sample, the medians and the targets as JSON (default: none)",
    )
    bench.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH",
        help="draw throughput and cost bars into a PNG or SVG; needs "
        "queuekeeper[plot] (default: none)",
    )
    bench.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="measure the Redis queue and pool on the server at URL "
        "(redis://HOST:PORT) instead; needs queuekeeper[redis] (default: none)",
    )
    bench.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop of the --redis measurements (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``queuekeeper`` command; return its exit status.

    Without a command it prints the usage and the commands, and returns 0.
    """
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
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


def _check_output(command: str, option: str, path: Path | None) -> None:
    """Raise a one-line :class:`_UsageError` if *path* cannot be a file to write."""
    if path is None:
        return
    if not path.parent.is_dir():
        where = str(path.parent)
        msg = f"queuekeeper {command}: error: --{option}: no directory {where!r}"
        raise _UsageError(msg)
    if path.is_dir():
        msg = f"queuekeeper {command}: error: --{option}: {str(path)!r} is a directory"
        raise _UsageError(msg)


def _run(args: argparse.Namespace) -> int:
    if args.backend == "trio":
        _require("trio", "trio", "--backend trio")
    if args.metrics_port is not None:
        _require("prometheus_client", "prometheus", "--metrics-port")
    workload = _workload(args)
    _check_output("run", "json", args.json)
    _check_output("run", "plot", args.plot)
    pyplot = None if args.plot is None else _plot_check(args.plot)
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
        console.print(f"summary written to {args.json}", soft_wrap=True)
    if args.plot is not None:
        try:
            _plot_run(pyplot, summary, timeline(report), args.plot)
        except OSError as exc:
            where = str(args.plot)
            msg = f"queuekeeper run: error: --plot: {where!r}: {exc.strerror or exc}"
            raise _UsageError(msg) from None
        console.print(f"plot written to {args.plot}", soft_wrap=True)
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
    # A second Ctrl-C cancels the work alone: the view then draws how it ended.
    work = anyio.CancelScope()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_watch_signals, stop, work, report)
        task_group.start_soon(_show, workload, report, console)
        try:
            with work:
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
    """Show the run as it goes until cancelled, then how it ended."""
    if console.is_terminal:
        await _show_live(workload, report, console)
    else:
        await _show_lines(report, console)


async def _show_live(workload: Workload, report: RunReport, console: Console) -> None:
    """On a terminal: the live view, redrawn in place, its last frame left on screen."""
    started = anyio.current_time()

    def redraw(live: Live) -> None:
        pool = report.pool
        if pool is not None:
            view = _live_view(
                workload,
                pool.status(),
                anyio.current_time() - started,
                ended=report.arrivals_ended,
                interrupted=report.interrupted,
                sample=_sample(report),
            )
            live.update(view, refresh=True)

    with Live(console=console, auto_refresh=False, transient=False) as live:
        try:
            while True:
                redraw(live)
                await anyio.sleep(_REFRESH_TTY)
        finally:
            redraw(live)


async def _show_lines(report: RunReport, console: Console) -> None:
    """Piped: a status line a second, and a line for each Ctrl-C."""
    started = anyio.current_time()
    told: list[str | None] = [None]

    def notice(pool: WorkerPool[Arrival, None]) -> PoolStatus:
        status = pool.status()
        if report.interrupted != told[0]:
            told[0] = report.interrupted
            console.print(_notice(told[0], status.state), soft_wrap=True)
        return status

    try:
        while True:
            await anyio.sleep(_REFRESH_PLAIN)
            pool = report.pool
            if pool is not None:
                line = _plain_line(notice(pool), anyio.current_time() - started)
                console.print(line, soft_wrap=True)
    finally:
        pool = report.pool
        if pool is not None:
            notice(pool)


def _depths(status: PoolStatus) -> str:
    return " ".join(
        f"{priority_label(level)}={count}"
        for level, count in status.queue_size_by_priority.items()
    )


def _finished(status: PoolStatus) -> int:
    """Requests in a final state: completed, failed, shed, timed out or cancelled."""
    return (
        status.completed
        + status.failed
        + status.shed
        + status.timed_out
        + status.cancelled
    )


def _plain_line(status: PoolStatus, elapsed: float) -> str:
    return (
        f"t={elapsed:6.1f}s {status.state:<8} submitted={status.submitted} "
        f"rejected={status.rejected} finished={_finished(status)} "
        f"(completed={status.completed} failed={status.failed} shed={status.shed} "
        f"timed_out={status.timed_out} cancelled={status.cancelled}) "
        f"queued={status.queue_size} ({_depths(status) or '-'}) "
        f"active={status.active_workers}/{status.max_workers} "
        f"wait p50={status.wait_time_ms_p50:.1f}ms p99={status.wait_time_ms_p99:.1f}ms"
    )


def _notice(interrupted: str | None, state: str) -> str:
    """What the view says after a Ctrl-C (*interrupted* is the report's)."""
    if interrupted == "drained":
        if state == "closed":
            return "Ctrl-C: arrivals stopped, and the queue drained."
        return "Ctrl-C: no more arrivals, the queue drains. Ctrl-C again cancels it."
    # Only called with a Ctrl-C behind it: the second one.
    return "Ctrl-C again: every queued and running request cancelled."


class _Phrases:
    """Phrases *gap* spaces apart, wrapped between phrases, never inside one.

    (Rich wraps at any space: "p99 5343.2" at the end of one line, "ms" at the
    start of the next.)
    """

    def __init__(self, *phrases: str | Text, gap: int = 2) -> None:
        self.phrases = [Text(p) if isinstance(p, str) else p for p in phrases]
        self.gap = gap

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[Text]:
        line = Text()
        for phrase in self.phrases:
            if line and line.cell_len + self.gap + phrase.cell_len > options.max_width:
                yield line
                line = Text()
            if line:
                line.append(" " * self.gap)
            line.append_text(phrase)
        yield line


#: The widest and narrowest bars of the live view.
_BAR_WIDTH: Final = 40
_MIN_BAR_WIDTH: Final = 8


class _Bars:
    """Rows of a label, a bar and a figure, the bars as wide as the line leaves room.

    Every row is drawn, one line each, whatever the width: the bars narrow first.
    """

    def __init__(self, rows: Sequence[tuple[str, ProgressBar | None, str]]) -> None:
        self.rows = rows

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[Table]:
        labels = max(cell_len(label) for label, _, _ in self.rows)
        figures = max(cell_len(figure) for _, _, figure in self.rows)
        width = options.max_width - labels - figures - 2
        width = max(_MIN_BAR_WIDTH, min(_BAR_WIDTH, width))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(width=width, no_wrap=True)
        grid.add_column()
        for label, bar, figure in self.rows:
            if bar is not None:
                bar.width = width
            grid.add_row(label, bar or "", figure)
        yield grid


def _arrivals_row(
    workload: Workload,
    status: PoolStatus,
    elapsed: float,
    ended: float | None,
    interrupted: str | None,
) -> tuple[ProgressBar, str]:
    """The arrivals' bar and what it stands for: time or requests, of what total."""
    if workload.requests is not None:
        arrived = status.submitted + status.rejected
        bar = ProgressBar(total=workload.requests, completed=arrived)
        figure = f"{arrived:,} of {workload.requests:,} requests"
        pace = elapsed / arrived if arrived else 1 / workload.rate
        left = min((workload.requests - arrived) * pace, workload.duration - elapsed)
    elif math.isinf(workload.duration):
        # No end but Ctrl-C: a pulsing bar, full once the arrivals stop.
        bar = ProgressBar(total=None if ended is None else 1, completed=1)
        figure, left = f"{elapsed if ended is None else ended:.1f} s", math.inf
    else:
        at = min(elapsed if ended is None else ended, workload.duration)
        bar = ProgressBar(total=workload.duration, completed=at)
        figure = f"{at:.1f} s of {workload.duration:g} s"
        left = workload.duration - at
    if ended is not None:
        figure += ", stopped by Ctrl-C" if interrupted else ", ended"
    elif math.isinf(left):
        figure += ", until Ctrl-C"
    else:
        figure += f", {max(0.0, left):.1f} s left"
    return bar, figure


class _Sample(NamedTuple):
    """What the live view shows of its sample request (see :func:`_sample`)."""

    id: str
    #: Its priority, as the view labels it.
    level: str
    #: Seconds it has waited so far.
    waited: float
    position: int
    #: Seconds until it starts at the recent service rate (``Ticket.eta()``),
    #: or ``None`` when unknown.
    eta: float | None


def _sample(report: RunReport) -> _Sample | None:
    """The live view's sample request, if still queued."""
    ticket = report.sample
    if ticket is None:
        return None
    position = ticket.position
    if position is None:
        return None
    waited = anyio.current_time() - ticket.submitted_at
    return _Sample(
        ticket.id, priority_label(ticket.priority), waited, position, ticket.eta()
    )


def _sample_line(sample: _Sample | None) -> str:
    """The live view's line on its sample request (see :func:`_sample`).

    How long it has waited goes beside its ETA: an ETA counts the requests ahead
    of it now, and later arrivals of a higher priority push it back.
    """
    if sample is None:
        return "sample request: none queued"
    eta = sample.eta
    starts = "start unknown" if eta is None else f"starts in ~{eta:.1f} s"
    return (
        f"sample request {sample.id} ({sample.level}, queued {sample.waited:.1f} s):"
        f" position {sample.position}, {starts}"
    )


def _live_view(
    workload: Workload,
    status: PoolStatus,
    elapsed: float,
    *,
    ended: float | None = None,
    interrupted: str | None = None,
    sample: _Sample | None = None,
) -> Group:
    """What a terminal shows during a run, *ended* seconds in the arrivals ended.

    *sample* is a queued request to follow (see :func:`_sample`).
    """
    header = _Phrases(
        Text.assemble(
            ("queuekeeper run", "bold"), f"  {status.state}  {elapsed:.1f} s"
        ),
        f"workers {status.active_workers}/{status.max_workers} busy",
    )
    arrivals, progress = _arrivals_row(workload, status, elapsed, ended, interrupted)
    capacity = status.max_queue_size or max(1, status.queue_size)
    digits = len(str(max(capacity, status.queue_size)))
    queued: tuple[ProgressBar | None, str]
    if status.max_queue_size:
        queued = (
            ProgressBar(total=capacity, completed=status.queue_size),
            f"{status.queue_size:>{digits}} of {status.max_queue_size} queued",
        )
    else:
        queued = (None, f"{status.queue_size:>{digits}} queued, no limit")
    rows: list[tuple[str, ProgressBar | None, str]] = [
        ("arrivals", arrivals, progress),
        ("queue", *queued),
    ]
    for level, _ in sorted(workload.mix):
        count = status.queue_size_by_priority.get(level, 0)
        rows.append(
            (
                priority_label(level),
                ProgressBar(total=capacity, completed=count),
                f"{count:>{digits}}",
            )
        )
    # The sums say what each count holds: "finished" is every final state.
    offered = _Phrases(
        f"offered {status.submitted + status.rejected}",
        f"= submitted {status.submitted}",
        f"+ rejected {status.rejected}",
        gap=1,
    )
    finished = _Phrases(
        f"finished {_finished(status)}",
        f"= completed {status.completed}",
        f"+ failed {status.failed}",
        f"+ shed {status.shed}",
        f"+ timed out {status.timed_out}",
        f"+ cancelled {status.cancelled}",
        gap=1,
    )
    waits = _Phrases(
        "wait for a worker:",
        f"p50 {status.wait_time_ms_p50:.1f} ms",
        f"p99 {status.wait_time_ms_p99:.1f} ms",
    )
    parts: list[RenderableType] = [
        header,
        _Bars(rows),
        offered,
        finished,
        waits,
        Text(_sample_line(sample)),
    ]
    if interrupted:
        parts.append(Text(_notice(interrupted, status.state), style="bold yellow"))
    return Group(*parts)


#: Columns of piped output (80 by default): room for the summary table with
#: seven-digit counts and times, its headers neither wrapped nor cut.
_PIPED_WIDTH: Final = 180

_COLUMNS: Final = (
    ("offered", "offered"),
    ("rejected", "rejected"),
    ("submitted", "submitted"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("shed", "shed"),
    ("timed_out", "timed out"),
    ("cancelled", "cancelled"),
    ("completed_per_s", "completed/s"),
    ("wait_ms_p50", "wait p50"),
    ("wait_ms_p95", "p95"),
    ("wait_ms_p99", "p99"),
    ("run_ms_p50", "run p50"),
    ("run_ms_p99", "p99"),
)
#: The leading columns of _COLUMNS that count requests (the rest are rates and times).
_COUNT_COLUMNS: Final = 8
#: Wide enough for any summary table: what it is measured against.
_UNBOUNDED_WIDTH: Final = 1_000


def _summary(workload: Workload, report: RunReport, backend: str) -> dict[str, Any]:
    ordered = sorted(report.levels.items())
    everything = PriorityStats(0)
    for _, stats in ordered:
        everything.merge(stats)
    totals = everything.as_dict(report.elapsed)
    del totals["priority"]
    levels = {
        priority_label(level): stats.as_dict(report.elapsed) for level, stats in ordered
    }
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
            # JSON has no infinity: null, as for requests, is "no limit".
            "duration": None if math.isinf(workload.duration) else workload.duration,
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
    caption = "completed/s over the whole run; times in milliseconds"
    # As many tables as the terminal's width needs (at 80 columns, one table cut
    # every cell short): one if it fits, else the counts apart from the times,
    # each cut into as few even parts as fit whole.
    unbounded = console.options.update(max_width=_UNBOUNDED_WIDTH)

    def fits(columns: Sequence[tuple[str, str]]) -> bool:
        table = _summary_table(summary, columns, title, None)
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


def _pyplot() -> Any:  # noqa: ANN401 (matplotlib.pyplot, an optional extra)
    """Import matplotlib's pyplot to draw into files.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        import matplotlib as mpl  # noqa: PLC0415 (optional)

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        msg = "matplotlib is not installed (pip install 'queuekeeper[plot]')"
        raise RuntimeError(msg) from None
    return plt


def _plot_check(path: Path) -> Any:  # noqa: ANN401 (matplotlib.pyplot)
    """Return pyplot if matplotlib is there and can draw a file of *path*'s type.

    Raises:
        _UsageError: matplotlib is missing, or the type is not one it draws.
    """
    try:
        pyplot = _pyplot()
    except RuntimeError as exc:
        msg = f"queuekeeper run: error: --plot: {exc}"
        raise _UsageError(msg) from None
    from matplotlib.backend_bases import FigureCanvasBase  # noqa: PLC0415 (optional)

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.removeprefix(".").lower()
    if suffix and suffix not in formats:
        msg = (
            f"queuekeeper run: error: --plot: {str(path)!r}: matplotlib draws no "
            f"{suffix!r} files (use one of {', '.join(sorted(formats))})"
        )
        raise _UsageError(msg)
    return pyplot


def _plot_run(
    plt: Any,  # noqa: ANN401 (matplotlib.pyplot)
    summary: dict[str, Any],
    line: Timeline,
    path: Path,
) -> None:
    """Draw queue depth per priority and wait percentiles over time into *path*."""
    config = summary["config"]
    figure, (depth, waits) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 7), layout="constrained"
    )
    try:
        labels = [priority_label(level) for level in line.depth]
        colors = [f"C{index}" for index in range(len(labels))]
        depth.stackplot(
            line.times, *line.depth.values(), labels=labels, colors=colors, step="post"
        )
        capacity = config["max_queue_size"]
        if capacity:
            depth.axhline(capacity, color="0.2", linestyle=":", label="capacity")
        depth.set_ylabel("requests queued")
        depth.set_title("queue depth by priority (stacked)", loc="left")
        for level, color in zip(line.depth, colors, strict=True):
            for percentiles, style in (
                (line.wait_ms_p50, "-"),
                (line.wait_ms_p99, "--"),
            ):
                waits.plot(
                    line.window_times,
                    [math.nan if ms is None else ms for ms in percentiles[level]],
                    color=color,
                    linestyle=style,
                    marker=".",
                )
        for name, style in (("p50", "-"), ("p99", "--")):
            waits.plot([], [], color="0.2", linestyle=style, label=name)
        waits.set_yscale("symlog", linthresh=1.0)
        waits.set_ylabel("wait for a worker (ms)")
        window = line.window_times[0] * 2
        waits.set_title(
            f"wait percentiles per priority (colours as above), {window:.2g} s windows",
            loc="left",
        )
        waits.set_xlabel("seconds since the start")
        waits.set_xlim(0, line.elapsed)
        if line.arrivals_ended is not None:
            for axes in (depth, waits):
                axes.axvline(
                    line.arrivals_ended, color="0.5", linewidth=1, label="arrivals end"
                )
        for axes in (depth, waits):
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
        queue = f"queue {capacity}" if capacity else "unbounded queue"
        figure.suptitle(
            f"queuekeeper run ({summary['backend']}): {config['workers']} workers, "
            f"{queue} ({config['backpressure']}), {config['rate']:g} arrivals/s, "
            f"latency {config['latency']}, seed {config['seed']}"
        )
        figure.savefig(path, dpi=150)
    finally:
        plt.close(figure)


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
