"""The synthetic workload's parsers and latency distributions."""

from __future__ import annotations

import random

import pytest

from queuekeeper import Priority
from queuekeeper.cli._workload import parse_latency, parse_mix


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
