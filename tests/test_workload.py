"""The synthetic workload: its parsers and latency distributions, and its runs."""

from __future__ import annotations

import functools
import random

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
    parse_latency,
    parse_mix,
    run_workload,
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


# -- runs, on virtual time -----------------------------------------------------------


def totals(report: RunReport) -> dict[str, int]:
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
    figures = totals(report)
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
    figures = totals(report)
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
    figures = totals(report)
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
    figures = totals(report)
    # The first arrival met the closed pool: offered, neither submitted nor rejected.
    assert (1, 0, 0) == (figures["offered"], figures["submitted"], figures["rejected"])
    assert report.pool is not None
    assert "closed" == report.pool.status().state
