"""The synthetic workload behind ``queuekeeper run``: arrivals, mix, latencies."""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_right
from typing import TYPE_CHECKING, Final, final

import anyio
import attrs

from .._errors import QueueFull, QueueKeeperError
from .._pool import WorkerPool
from .._priority import Priority
from .._states import Backpressure, TicketState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .._pool import Ticket
    from .._prometheus import PrometheusMetrics

__all__ = [
    "DEFAULT_MIX",
    "Arrival",
    "Latency",
    "PriorityStats",
    "RunReport",
    "Timeline",
    "Workload",
    "offered",
    "parse_latency",
    "parse_mix",
    "run_workload",
    "timeline",
]

#: The default share of requests at each level.
DEFAULT_MIX: Final = "critical=5,high=15,normal=60,low=20"

_LEVELS: Final = {p.name.lower(): int(p) for p in Priority}


class SimulatedFailure(Exception):
    """What the synthetic handler raises for the ``--fail-rate`` share of requests."""


def parse_mix(text: str) -> tuple[tuple[int, float], ...]:
    """Parse ``"critical=5,high=15,normal=60,low=20"`` (names or ints, any weights).

    Returns ``(priority, weight)`` pairs with weights summing to 1.

    Raises:
        ValueError: The text is malformed; the message names the bad part.
    """
    pairs: list[tuple[int, float]] = []
    for part in text.split(","):
        name, sep, weight_text = part.strip().partition("=")
        name = name.strip().lower()
        if not sep or not name:
            msg = f"bad mix entry {part.strip()!r}: expected LEVEL=WEIGHT"
            raise ValueError(msg)
        if name in _LEVELS:
            level = _LEVELS[name]
        elif re.fullmatch(r"[+-]?\d+", name):
            level = int(name)
        else:
            msg = f"bad mix level {name!r}: use critical, high, normal, low or an int"
            raise ValueError(msg)
        try:
            weight = float(weight_text)
        except ValueError:
            msg = f"bad mix weight {weight_text.strip()!r} for {name!r}: not a number"
            raise ValueError(msg) from None
        if not (0 <= weight < math.inf):
            msg = f"bad mix weight {weight_text.strip()!r} for {name!r}: must be >= 0"
            raise ValueError(msg)
        pairs.append((level, weight))
    total = sum(weight for _, weight in pairs)
    if total <= 0:
        msg = f"bad mix {text!r}: the weights add up to 0"
        raise ValueError(msg)
    return tuple((level, weight / total) for level, weight in pairs)


@attrs.frozen
class Latency:
    """A handler latency distribution, in seconds; parsed from ``--latency``."""

    kind: str
    a: float
    b: float = 0.0

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """Return a function drawing one latency (seconds, never negative)."""
        a, b = self.a, self.b
        if self.kind == "const":
            return lambda: a
        if self.kind == "uniform":
            return lambda: rng.uniform(a, b)
        if self.kind == "exp":
            return lambda: rng.expovariate(1 / a) if a > 0 else 0.0
        # lognormal: a = median, b = sigma
        mu = math.log(a) if a > 0 else -math.inf
        return lambda: rng.lognormvariate(mu, b) if a > 0 else 0.0

    def __str__(self) -> str:
        if self.kind in {"const", "exp"}:
            return f"{self.kind}:{self.a * 1000:g}ms"
        if self.kind == "uniform":
            return f"uniform:{self.a * 1000:g}ms:{self.b * 1000:g}ms"
        return f"lognormal:{self.a * 1000:g}ms:{self.b:g}"


def _ms(text: str, spec: str) -> float:
    try:
        value = float(text.removesuffix("ms"))
    except ValueError:
        msg = f"bad latency {spec!r}: {text!r} is not a number of milliseconds"
        raise ValueError(msg) from None
    if not (0 <= value < math.inf):
        msg = f"bad latency {spec!r}: {text!r} must be a finite number >= 0"
        raise ValueError(msg)
    return value / 1000


def parse_latency(spec: str) -> Latency:
    """Parse a latency distribution.

    Forms: ``const:MS``, ``uniform:MIN:MAX``, ``exp:MEAN`` and
    ``lognormal:MEDIAN:SIGMA``. Times are milliseconds (an ``ms`` suffix is
    allowed).

    Raises:
        ValueError: The text is malformed; the message names it.
    """
    kind, _, rest = spec.strip().partition(":")
    args = rest.split(":") if rest else []
    if kind in {"const", "exp"} and len(args) == 1:
        return Latency(kind, _ms(args[0], spec))
    if kind == "uniform" and len(args) == 2:  # noqa: PLR2004
        low, high = _ms(args[0], spec), _ms(args[1], spec)
        if low > high:
            msg = f"bad latency {spec!r}: the minimum is above the maximum"
            raise ValueError(msg)
        return Latency(kind, low, high)
    if kind == "lognormal" and len(args) == 2:  # noqa: PLR2004
        try:
            sigma = float(args[1])
        except ValueError:
            sigma = -1.0
        if not (0 <= sigma < math.inf):
            msg = f"bad latency {spec!r}: sigma {args[1]!r} must be a number >= 0"
            raise ValueError(msg)
        return Latency(kind, _ms(args[0], spec), sigma)
    msg = (
        f"bad latency {spec!r}: use const:MS, uniform:MIN:MAX, exp:MEAN "
        "or lognormal:MEDIAN:SIGMA"
    )
    raise ValueError(msg)


@attrs.frozen
class Workload:
    """What ``queuekeeper run`` drives through a pool.

    ``duration`` may be ``math.inf``: arrivals then go on until ``requests`` or
    until the run is stopped.
    """

    workers: int = 4
    max_queue_size: int | None = 100
    backpressure: Backpressure = Backpressure.SHED
    rate: float = 200.0
    duration: float = 8.0
    requests: int | None = None
    mix: tuple[tuple[int, float], ...] = parse_mix(DEFAULT_MIX)
    latency: Latency = Latency("exp", 0.025)
    fail_rate: float = 0.02
    timeout: float | None = None
    queue_timeout: float | None = None
    seed: int | None = 1


@attrs.frozen
class Arrival:
    """One request of the offered workload: when it comes, and how it will go."""

    #: Its number, from 1 in order of arrival.
    number: int
    #: When it arrives, in seconds after the run's start.
    at: float
    priority: int
    #: How long its handler takes, in seconds.
    latency: float
    #: Whether its handler raises :class:`SimulatedFailure`.
    fails: bool


#: The random streams of a workload, one per kind of draw.
_STREAMS: Final = ("arrivals", "priorities", "latencies", "failures")


def offered(workload: Workload) -> Iterator[Arrival]:
    """The requests *workload* offers, in order of arrival, until its duration or count.

    Arrival times, priorities, latencies and failures are each drawn from a random
    stream of their own, seeded from ``workload.seed`` and consumed once per
    arrival in order. So the same seed offers the same requests however the run
    goes (what was queued, shed or run first does not move a draw), and changing
    one part of the workload (say ``fail_rate``) leaves the other draws as they
    were. A seed of ``None`` draws fresh streams from the system.
    """
    streams = {
        name: random.Random(  # noqa: S311 (a simulation, not crypto)
            None if workload.seed is None else f"{workload.seed}:{name}"
        )
        for name in _STREAMS
    }
    gaps, priorities = streams["arrivals"], streams["priorities"]
    failures = streams["failures"]
    draw_latency = workload.latency.sampler(streams["latencies"])
    levels = [level for level, _ in workload.mix]
    weights = [weight for _, weight in workload.mix]
    limit = workload.requests if workload.requests is not None else math.inf
    number, at = 0, 0.0
    while number < limit:
        at += gaps.expovariate(workload.rate)
        if at >= workload.duration:
            return
        number += 1
        yield Arrival(
            number=number,
            at=at,
            priority=priorities.choices(levels, weights)[0],
            latency=draw_latency(),
            fails=failures.random() < workload.fail_rate,
        )


@final
class PriorityStats:
    """Outcomes and timings of one priority level."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.offered = 0
        self.submitted = 0
        self.rejected = 0
        self.outcomes: dict[str, int] = {}
        self.waits: list[float] = []
        #: When each request of ``waits`` left the queue for a worker (clock time).
        self.starts: list[float] = []
        self.run_times: list[float] = []
        #: When each request entered the queue and when it left it (clock times):
        #: to a worker, or shed, cancelled or timed out while queued.
        self.queued: list[tuple[float, float]] = []

    def add(self, ticket: Ticket[None]) -> None:
        """Account for a finished ticket."""
        state = ticket.state.value
        self.outcomes[state] = self.outcomes.get(state, 0) + 1
        submitted, started = ticket.submitted_at, ticket.started_at
        finished = ticket.finished_at
        # finished is always set: add() is given finished tickets, and each final
        # state sets finished_at (the checks are for the type checker).
        if started is not None:
            self.waits.append(started - submitted)
            self.starts.append(started)
            self.queued.append((submitted, started))
            if finished is not None:  # pragma: no branch
                self.run_times.append(finished - started)
        elif finished is not None:  # pragma: no branch
            self.queued.append((submitted, finished))

    def merge(self, other: PriorityStats) -> None:
        """Add *other*'s counts and timings to these."""
        self.offered += other.offered
        self.submitted += other.submitted
        self.rejected += other.rejected
        for state, count in other.outcomes.items():
            self.outcomes[state] = self.outcomes.get(state, 0) + count
        self.waits.extend(other.waits)
        self.starts.extend(other.starts)
        self.run_times.extend(other.run_times)
        self.queued.extend(other.queued)

    def as_dict(self, elapsed: float = 0.0) -> dict[str, object]:
        """The level's figures, JSON-ready (times in milliseconds).

        ``completed_per_s`` is the throughput over a run of *elapsed* seconds:
        completed requests a second (``None`` for a run of no time).
        """
        waits, runs = sorted(self.waits), sorted(self.run_times)
        completed = self.outcomes.get("succeeded", 0)
        return {
            "priority": self.level,
            "offered": self.offered,
            "submitted": self.submitted,
            "rejected": self.rejected,
            "completed": completed,
            "completed_per_s": round(completed / elapsed, 1) if elapsed > 0 else None,
            "failed": self.outcomes.get("failed", 0),
            "cancelled": self.outcomes.get("cancelled", 0),
            "timed_out": self.outcomes.get("timed_out", 0),
            "shed": self.outcomes.get("shed", 0),
            "wait_ms_p50": percentile_ms(waits, 0.50),
            "wait_ms_p95": percentile_ms(waits, 0.95),
            "wait_ms_p99": percentile_ms(waits, 0.99),
            "run_ms_p50": percentile_ms(runs, 0.50),
            "run_ms_p99": percentile_ms(runs, 0.99),
        }


def percentile_ms(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in ms; ``None`` when empty."""
    if not ordered:
        return None
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return round(ordered[index] * 1000, 3)


@attrs.define
class RunReport:
    """What a run did: per-level figures, the pool's last status, how it ended."""

    levels: dict[int, PriorityStats]
    elapsed: float = 0.0
    interrupted: str | None = None
    pool: WorkerPool[Arrival, None] | None = None
    #: The clock time the run started at.
    started_at: float = 0.0
    #: When the arrivals ended, in seconds after the start; ``None`` until then.
    arrivals_ended: float | None = None
    #: A queued request the live view follows (its position and ETA): the
    #: latest submitted once the one before left the queue.
    sample: Ticket[None] | None = None


async def run_workload(
    workload: Workload,
    *,
    metrics: PrometheusMetrics | None = None,
    report: RunReport | None = None,
    stop: anyio.Event | None = None,
) -> RunReport:
    """Drive *workload* through a fresh pool, then drain it; return the figures.

    The requests are those :func:`offered` draws. Setting *stop* ends the
    arrivals early (the pool still drains). Cancelling this cancels the pool's
    work; *report* (if given) then still holds what was measured.
    """
    if report is None:
        report = RunReport({})
    for level, _ in sorted(workload.mix):
        report.levels.setdefault(level, PriorityStats(level))
    stop = stop or anyio.Event()

    async def handler(request: Arrival) -> None:
        await anyio.sleep(request.latency)
        if request.fails:
            msg = f"simulated failure of request {request.number}"
            raise SimulatedFailure(msg)

    pool: WorkerPool[Arrival, None] = WorkerPool(
        handler,
        workers=workload.workers,
        max_queue_size=workload.max_queue_size,
        backpressure=workload.backpressure,
        name="run",
        metrics=metrics,
    )
    report.pool = pool
    pending: list[Ticket[None]] = []
    started = report.started_at = anyio.current_time()

    def collect() -> None:
        keep = []
        for ticket in pending:
            if ticket.done():
                report.levels[int(ticket.priority)].add(ticket)
            else:
                keep.append(ticket)
        pending[:] = keep

    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(pool.run)
            try:
                await _arrivals(workload, pool, report, stop, pending, collect)
            finally:
                report.arrivals_ended = anyio.current_time() - started
            await pool.shutdown(drain=True)
    finally:
        collect()
        report.elapsed = anyio.current_time() - started
    return report


async def _arrivals(
    workload: Workload,
    pool: WorkerPool[Arrival, None],
    report: RunReport,
    stop: anyio.Event,
    pending: list[Ticket[None]],
    collect: Callable[[], None],
) -> None:
    """Submit the offered requests, each at its time, until they end or *stop*."""
    for arrival in offered(workload):
        delay = report.started_at + arrival.at - anyio.current_time()
        with anyio.move_on_after(max(0.0, delay)):
            await stop.wait()
        if stop.is_set():
            return
        stats = report.levels[arrival.priority]
        stats.offered += 1
        try:
            ticket = await pool.submit(
                arrival,
                priority=arrival.priority,
                timeout=workload.timeout,
                queue_timeout=workload.queue_timeout,
            )
        except QueueFull:
            stats.rejected += 1
            continue
        except QueueKeeperError:  # PoolClosed: shut down under us
            return
        stats.submitted += 1
        pending.append(ticket)
        if report.sample is None or report.sample.state is not TicketState.QUEUED:
            report.sample = ticket
        if len(pending) > 4096:  # noqa: PLR2004
            collect()


@attrs.frozen
class Timeline:
    """A run over time, for a plot. Times are seconds after the run's start."""

    #: When the run ended (its ``elapsed``), and when its arrivals did.
    elapsed: float
    arrivals_ended: float | None
    #: Evenly spaced instants from 0 to ``elapsed``...
    times: tuple[float, ...]
    #: ...and how many requests of each level were queued at each.
    depth: dict[int, tuple[int, ...]]
    #: The middle of each wait window (windows of equal length, end to end)...
    window_times: tuple[float, ...]
    #: ...and the wait percentiles (ms) of the requests of each level that left
    #: the queue for a worker in that window (``None`` where none did).
    wait_ms_p50: dict[int, tuple[float | None, ...]]
    wait_ms_p99: dict[int, tuple[float | None, ...]]


#: The shortest span a timeline covers (a run that took no time at all).
_MIN_SPAN: Final = 1e-3


def timeline(report: RunReport, *, points: int = 500, windows: int = 25) -> Timeline:
    """Queue depth per level at *points* instants, wait percentiles in *windows*.

    Both are worked out from the finished tickets the report collected: a
    request counts as queued from its submission until it left the queue.
    """
    start = report.started_at
    span = max(report.elapsed, _MIN_SPAN)
    times = tuple(span * index / (points - 1) for index in range(points))
    width = span / windows
    depth: dict[int, tuple[int, ...]] = {}
    p50: dict[int, tuple[float | None, ...]] = {}
    p99: dict[int, tuple[float | None, ...]] = {}
    for level, stats in sorted(report.levels.items()):
        entered = sorted(entered for entered, _ in stats.queued)
        left = sorted(left for _, left in stats.queued)
        depth[level] = tuple(
            bisect_right(entered, start + at) - bisect_right(left, start + at)
            for at in times
        )
        buckets: list[list[float]] = [[] for _ in range(windows)]
        for started, wait in zip(stats.starts, stats.waits, strict=True):
            index = min(windows - 1, int((started - start) / width))
            buckets[index].append(wait)
        p50[level] = tuple(percentile_ms(sorted(b), 0.50) for b in buckets)
        p99[level] = tuple(percentile_ms(sorted(b), 0.99) for b in buckets)
    return Timeline(
        elapsed=report.elapsed,
        arrivals_ended=report.arrivals_ended,
        times=times,
        depth=depth,
        window_times=tuple(width * (index + 0.5) for index in range(windows)),
        wait_ms_p50=p50,
        wait_ms_p99=p99,
    )
