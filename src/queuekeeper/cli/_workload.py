"""The synthetic workload behind ``queuekeeper run``: arrivals, mix, latencies."""

from __future__ import annotations

import math
import random
import re
from typing import TYPE_CHECKING, Final, final

import anyio
import attrs

from .._errors import QueueFull, QueueKeeperError
from .._pool import WorkerPool
from .._priority import Priority
from .._states import Backpressure

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._pool import Ticket
    from .._prometheus import PrometheusMetrics

__all__ = [
    "DEFAULT_MIX",
    "Latency",
    "PriorityStats",
    "RunReport",
    "Workload",
    "parse_latency",
    "parse_mix",
    "run_workload",
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
    """What ``queuekeeper run`` drives through a pool."""

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
        self.run_times: list[float] = []

    def add(self, ticket: Ticket[None]) -> None:
        """Account for a finished ticket."""
        state = ticket.state.value
        self.outcomes[state] = self.outcomes.get(state, 0) + 1
        started, finished = ticket.started_at, ticket.finished_at
        if started is not None:
            self.waits.append(started - ticket.submitted_at)
            # Always true: add() is given finished tickets, and each final state
            # sets finished_at (the check is for the type checker).
            if finished is not None:  # pragma: no branch
                self.run_times.append(finished - started)

    def merge(self, other: PriorityStats) -> None:
        """Add *other*'s counts and timings to these."""
        self.offered += other.offered
        self.submitted += other.submitted
        self.rejected += other.rejected
        for state, count in other.outcomes.items():
            self.outcomes[state] = self.outcomes.get(state, 0) + count
        self.waits.extend(other.waits)
        self.run_times.extend(other.run_times)

    def as_dict(self) -> dict[str, object]:
        """The level's figures, JSON-ready (times in milliseconds)."""
        waits, runs = sorted(self.waits), sorted(self.run_times)
        return {
            "priority": self.level,
            "offered": self.offered,
            "submitted": self.submitted,
            "rejected": self.rejected,
            "completed": self.outcomes.get("succeeded", 0),
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
    pool: WorkerPool[int, None] | None = None


async def run_workload(
    workload: Workload,
    *,
    metrics: PrometheusMetrics | None = None,
    report: RunReport | None = None,
    stop: anyio.Event | None = None,
) -> RunReport:
    """Drive *workload* through a fresh pool, then drain it; return the figures.

    Setting *stop* ends the arrivals early (the pool still drains). Cancelling
    this cancels the pool's work; *report* (if given) then still holds what was
    measured.
    """
    rng = random.Random(workload.seed)  # noqa: S311 (a simulation, not crypto)
    draw_latency = workload.latency.sampler(rng)
    if report is None:
        report = RunReport({})
    for level, _ in sorted(workload.mix):
        report.levels.setdefault(level, PriorityStats(level))
    stop = stop or anyio.Event()
    fail_rate = workload.fail_rate

    async def handler(request: int) -> None:
        await anyio.sleep(draw_latency())
        if fail_rate and rng.random() < fail_rate:
            msg = f"simulated failure of request {request}"
            raise SimulatedFailure(msg)

    pool: WorkerPool[int, None] = WorkerPool(
        handler,
        workers=workload.workers,
        max_queue_size=workload.max_queue_size,
        backpressure=workload.backpressure,
        name="run",
        metrics=metrics,
    )
    report.pool = pool
    pending: list[Ticket[None]] = []
    started = anyio.current_time()

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
            await _arrivals(workload, pool, report, stop, rng, pending, collect)
            await pool.shutdown(drain=True)
    finally:
        collect()
        report.elapsed = anyio.current_time() - started
    return report


async def _arrivals(
    workload: Workload,
    pool: WorkerPool[int, None],
    report: RunReport,
    stop: anyio.Event,
    rng: random.Random,
    pending: list[Ticket[None]],
    collect: Callable[[], None],
) -> None:
    """Submit requests as a Poisson process until the duration, count or *stop*."""
    levels = [level for level, _ in workload.mix]
    weights = [weight for _, weight in workload.mix]
    now = anyio.current_time()
    deadline = now + workload.duration
    limit = workload.requests if workload.requests is not None else math.inf
    count = 0
    next_at = now
    while count < limit and not stop.is_set():
        next_at += rng.expovariate(workload.rate)
        if next_at >= deadline:
            return
        with anyio.move_on_after(max(0.0, next_at - anyio.current_time())):
            await stop.wait()
        if stop.is_set():
            return
        level = rng.choices(levels, weights)[0]
        stats = report.levels[level]
        stats.offered += 1
        count += 1
        try:
            ticket = await pool.submit(
                count,
                priority=level,
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
        if len(pending) > 4096:  # noqa: PLR2004
            collect()
