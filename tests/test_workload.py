"""The synthetic workload: its parsers and latency distributions, and its runs."""

from __future__ import annotations

import functools
import math
import random
from collections import Counter

import anyio
import anyio.lowlevel
import pytest

from helpers import run_on_virtual_time
from queuekeeper import Priority
from queuekeeper.cli._workload import (
    Latency,
    PriorityStats,
    RunReport,
    Workload,
    offered,
    parse_latency,
    parse_mix,
    run_workload,
    timeline,
)


@pytest.mark.parametrize(
    ("spec", "text", "low", "high"),
    [
        ("const:5", "const:5ms", 0.005, 0.005),
        ("exp:0", "exp:0ms", 0.0, 0.0),
        ("uniform:1ms:3ms", "uniform:1ms:3ms", 0.001, 0.003),
        ("lognormal:20:0", "lognormal:20ms:0", 0.02, 0.02),
        ("lognormal:0:1", "lognormal:0ms:1", 0.0, 0.0),
    ],
)
def test_latencies_parse_print_and_sample_within_their_bounds(
    spec: str, text: str, low: float, high: float
) -> None:
    """Each form round-trips through str() and draws values in its range."""
    latency = parse_latency(spec)
    assert text == str(latency)
    draw = latency.sampler(random.Random(3))
    for _ in range(50):
        assert low - 1e-12 <= draw() <= high + 1e-12


def test_exponential_latency_has_its_mean() -> None:
    """exp:MEAN draws around MEAN (a fixed seed keeps this exact)."""
    draw = parse_latency("exp:10").sampler(random.Random(1))
    values = [draw() for _ in range(5_000)]
    assert 0.009 < sum(values) / len(values) < 0.011
    assert min(values) >= 0


def test_mix_normalises_weights_and_accepts_custom_levels() -> None:
    """Weights are relative; levels are names or ints."""
    assert ((Priority.HIGH, 0.75), (7, 0.25)) == parse_mix("high=3, 7=1")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("uniform:1", "bad latency 'uniform:1'"),
        ("lognormal:5:inf", "sigma 'inf' must be a number >= 0"),
        ("const:5:6", "bad latency 'const:5:6'"),
    ],
)
def test_bad_latency_names_the_text(spec: str, fragment: str) -> None:
    """A malformed latency is a ValueError naming it."""
    with pytest.raises(ValueError, match=fragment):
        parse_latency(spec)


# -- the offered requests, seeded ----------------------------------------------------


def test_a_seed_offers_the_same_requests_every_time() -> None:
    """Same seed: the same arrival times, priorities, latencies and failures."""
    workload = Workload(requests=300, seed=42, fail_rate=0.3)
    first, again = list(offered(workload)), list(offered(workload))
    assert 300 == len(first)
    assert first == again
    assert list(range(1, 301)) == [arrival.number for arrival in first]
    times = [arrival.at for arrival in first]
    assert sorted(times) == times
    assert {1, 2, 3, 4} == {arrival.priority for arrival in first}
    assert 0 < sum(arrival.fails for arrival in first) < 300


def test_another_seed_offers_other_requests() -> None:
    """Another seed (or none): other times, and other counts per priority."""
    first = list(offered(Workload(requests=300, seed=42)))
    for seed in (43, None):
        other = list(offered(Workload(requests=300, seed=seed)))
        assert [a.at for a in first] != [a.at for a in other]
        assert [a.latency for a in first] != [a.latency for a in other]
        assert Counter(a.priority for a in first) != Counter(a.priority for a in other)


def test_each_kind_of_draw_has_its_own_stream() -> None:
    """Changing the failures, latencies or mix leaves the other draws as they were."""
    base = list(offered(Workload(requests=200, fail_rate=0.0)))
    failing = list(offered(Workload(requests=200, fail_rate=0.5)))
    slower = list(offered(Workload(requests=200, latency=Latency("uniform", 1, 2))))
    lows = list(offered(Workload(requests=200, mix=parse_mix("low=1"))))
    assert not any(arrival.fails for arrival in base)
    assert any(arrival.fails for arrival in failing)
    for other in (failing, slower, lows):
        assert [a.at for a in base] == [a.at for a in other]
    for other in (failing, lows):
        assert [a.latency for a in base] == [a.latency for a in other]
    for other in (failing, slower):
        assert [a.priority for a in base] == [a.priority for a in other]
    assert all(1 <= arrival.latency <= 2 for arrival in slower)


def test_the_duration_bounds_the_arrival_times() -> None:
    """Without a count, arrivals come before the duration; inf has no end."""
    arrivals = list(offered(Workload(duration=2.0, rate=100)))
    assert 100 < len(arrivals) < 300
    assert arrivals[-1].at < 2.0
    endless = offered(Workload(duration=math.inf, rate=100))
    assert 10_000 == sum(1 for _, _ in zip(range(10_000), endless, strict=False))


def test_two_runs_with_one_seed_offer_the_same_counts() -> None:
    """run_workload twice: the same offered count at each level."""
    workload = Workload(requests=200, rate=500, max_queue_size=5, seed=7)

    def offered_counts() -> dict[int, int]:
        report = run_on_virtual_time(functools.partial(run_workload, workload))
        return {level: stats.offered for level, stats in report.levels.items()}

    counts = offered_counts()
    expected = Counter(arrival.priority for arrival in offered(workload))
    assert dict(expected) == counts == offered_counts()


# -- the timeline of a run -----------------------------------------------------------


def test_timeline_counts_each_request_queued_until_it_leaves() -> None:
    """Depth per level at even instants; wait percentiles by the window it started."""
    stats = PriorityStats(2)
    # Queued at 10.0, started at 11.0; queued at 10.5, started at 12.0 (clock time);
    # queued at 11.5, shed at 13.0 (never started).
    stats.queued = [(10.0, 11.0), (10.5, 12.0), (11.5, 13.0)]
    stats.starts, stats.waits = [11.0, 12.0], [1.0, 1.5]
    empty = PriorityStats(1)
    report = RunReport(
        {2: stats, 1: empty}, elapsed=4.0, started_at=10.0, arrivals_ended=1.6
    )
    line = timeline(report, points=5, windows=2)
    assert (0.0, 1.0, 2.0, 3.0, 4.0) == line.times
    assert {1: (0, 0, 0, 0, 0), 2: (1, 1, 1, 0, 0)} == line.depth
    assert [1, 2] == list(line.depth)  # in priority order
    assert (1.0, 3.0) == line.window_times
    assert {1: (None, None), 2: (1000.0, 1500.0)} == line.wait_ms_p50
    assert line.wait_ms_p50 == line.wait_ms_p99  # one wait a window
    assert (4.0, 1.6) == (line.elapsed, line.arrivals_ended)


def test_timeline_of_a_real_run_adds_up() -> None:
    """A run with shedding: every request leaves the queue; depth never tops it."""
    workload = Workload(requests=300, rate=400, max_queue_size=10, seed=3)
    report = run_on_virtual_time(functools.partial(run_workload, workload))
    assert report.arrivals_ended is not None
    assert 0 < report.arrivals_ended < report.elapsed
    line = timeline(report)
    assert 500 == len(line.times)
    assert report.elapsed == pytest.approx(line.times[-1])
    totals = [sum(depths) for depths in zip(*line.depth.values(), strict=True)]
    assert 0 < max(totals) <= 10
    assert 0 == totals[-1]  # drained
    figures = totals_of(report)
    assert figures["shed"] > 0
    queued = sum(len(stats.queued) for stats in report.levels.values())
    assert figures["submitted"] == queued
    started = sum(len(stats.starts) for stats in report.levels.values())
    assert figures["submitted"] - figures["shed"] == started
    assert any(p is not None for p in line.wait_ms_p99[4])


def test_a_run_of_no_time_has_a_timeline_all_the_same() -> None:
    """elapsed 0 (nothing ran): a timeline over a tiny span, everything empty."""
    line = timeline(RunReport({3: PriorityStats(3)}), points=3, windows=2)
    assert {3: (0, 0, 0)} == line.depth
    assert 0 < line.times[-1] < 0.01
    assert {3: (None, None)} == line.wait_ms_p99


# -- runs, on virtual time -----------------------------------------------------------


def totals_of(report: RunReport) -> dict[str, int]:
    """The report's counts over every level, outcomes by their JSON names."""
    everything = PriorityStats(0)
    for stats in report.levels.values():
        everything.merge(stats)
    figures = everything.as_dict()
    return {key: value for key, value in figures.items() if isinstance(value, int)}


def test_a_run_without_a_report_returns_one() -> None:
    """run_workload on its own: a fresh report with every request accounted for."""
    workload = Workload(
        requests=30, rate=100, latency=Latency("const", 0.01), fail_rate=0
    )
    report = run_on_virtual_time(functools.partial(run_workload, workload))
    assert [1, 2, 3, 4] == sorted(report.levels)
    figures = totals_of(report)
    assert (30, 30, 30) == (
        figures["offered"],
        figures["submitted"],
        figures["completed"],
    )
    assert report.pool is not None
    assert "closed" == report.pool.status().state
    assert report.elapsed > 0
    assert report.interrupted is None


def test_the_duration_ends_the_arrivals() -> None:
    """Without --requests, arrivals stop at the duration and the pool drains."""
    workload = Workload(
        requests=None,
        duration=5.0,
        rate=20,
        latency=Latency("const", 0.01),
        fail_rate=0,
        max_queue_size=None,
    )
    report = run_on_virtual_time(functools.partial(run_workload, workload))
    figures = totals_of(report)
    # About rate x duration arrivals, fixed by the seed.
    assert 50 < figures["offered"] < 150
    assert figures["offered"] == figures["completed"]
    # Arrivals went on close to the duration, none after it; each took 10 ms.
    assert workload.duration - 1 < report.elapsed < workload.duration + 0.01 + 1e-9


def test_a_long_run_keeps_every_ticket_it_has_not_yet_collected() -> None:
    """Past 4096 pending tickets the run counts the finished ones and keeps the rest."""
    requests = 5000
    workload = Workload(
        workers=100,
        requests=requests,
        rate=1000,
        latency=Latency("const", 1.0),  # most are still queued at each collection
        fail_rate=0,
        max_queue_size=None,
    )
    report = run_on_virtual_time(functools.partial(run_workload, workload))
    figures = totals_of(report)
    assert (requests,) * 3 == (
        figures["offered"],
        figures["submitted"],
        figures["completed"],
    )
    for stats in report.levels.values():
        # Each ticket counted once: one wait and one run time per request.
        assert stats.submitted == len(stats.waits) == len(stats.run_times)


def test_a_pool_shut_down_under_the_arrivals_ends_them() -> None:
    """Arrivals stop at a closed pool: the run returns, nothing was submitted."""
    workload = Workload(requests=10, rate=10, fail_rate=0)
    report = RunReport({})

    async def scenario() -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(
                functools.partial(run_workload, workload, report=report)
            )
            # Virtual time stands still while this task runs: no arrival yet.
            while report.pool is None or report.pool.status().state != "running":
                await anyio.lowlevel.checkpoint()
            await report.pool.shutdown()

    run_on_virtual_time(scenario)
    figures = totals_of(report)
    # The first arrival met the closed pool: offered, neither submitted nor rejected.
    assert (1, 0, 0) == (figures["offered"], figures["submitted"], figures["rejected"])
    assert report.pool is not None
    assert "closed" == report.pool.status().state
