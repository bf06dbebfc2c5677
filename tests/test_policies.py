"""The settings of the scheduling policies: validated where they are written."""

from __future__ import annotations

import math
import random
import re

import attrs
import pytest

from queuekeeper import (
    DeadLetter,
    Priority,
    RateLimit,
    Retry,
    StrictPriority,
    WeightedFair,
)
from queuekeeper._policies import check_rate_limits, check_scheduling


def test_rate_limit_defaults_and_interval() -> None:
    """A limit of 100 per second, one at a time by default; frozen."""
    limit = RateLimit(100)
    assert (100.0, 1.0, 1) == (limit.rate, limit.per, limit.burst)
    assert 0.01 == pytest.approx(limit.interval)
    assert 0.5 == RateLimit(4, per=2.0, burst=3).interval
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        limit.rate = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rate": 0}, ValueError, r"RateLimit rate must be a finite number > 0, not 0"),
        ({"rate": -1.5}, ValueError, r"RateLimit rate must be .* not -1\.5"),
        ({"rate": math.inf}, ValueError, r"RateLimit rate must be a finite .* not inf"),
        ({"rate": math.nan}, ValueError, r"RateLimit rate must be .* not nan"),
        ({"rate": 10**400}, ValueError, r"RateLimit rate .*\(too large\)"),
        (
            {"rate": "5"},
            TypeError,
            r"RateLimit rate must be a number > 0, not '5' \(str\)",
        ),
        ({"rate": True}, TypeError, r"RateLimit rate must be a number .*\(bool\)"),
        ({"rate": 1, "per": 0}, ValueError, r"RateLimit per must be .* not 0"),
        (
            {"rate": 1, "burst": 0},
            ValueError,
            r"RateLimit burst must be an int >= 1, not 0",
        ),
        (
            {"rate": 1, "burst": 1.5},
            TypeError,
            r"RateLimit burst must be an int .*\(float\)",
        ),
    ],
)
def test_rate_limit_rejects_bad_values(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad argument is named, with its value."""
    with pytest.raises(error, match=f"^{message}$"):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_rate_limits_map_levels_to_limits() -> None:
    """rate_limits= becomes plain int levels; bad keys and values are named."""
    limit = RateLimit(5)
    assert {} == check_rate_limits(None)
    assert {4: limit, 7: limit} == check_rate_limits({Priority.LOW: limit, 7: limit})
    assert int is type(next(iter(check_rate_limits({Priority.LOW: limit}))))
    with pytest.raises(
        TypeError, match=r"^rate_limits must be None or a mapping .* \(list\)$"
    ):
        check_rate_limits([limit])
    with pytest.raises(
        TypeError, match=r"^rate_limits's keys must be priorities .*'low'"
    ):
        check_rate_limits({"low": limit})
    with pytest.raises(
        TypeError, match=r"^rate_limits\[4\] must be a queuekeeper\.RateLimit, not 5"
    ):
        check_rate_limits({4: 5})


def test_weighted_fair_weights() -> None:
    """Weights by plain int level, sorted, read-only; unnamed levels get the default."""
    fair = WeightedFair({Priority.LOW: 1, Priority.CRITICAL: 8})
    assert {1: 8.0, 4: 1.0} == dict(fair.weights)
    assert [1, 4] == list(fair.weights)
    assert (8.0, 1.0, 1.0) == (fair.weight(1), fair.weight(4), fair.weight(9))
    assert 0.5 == WeightedFair({1: 2}, default=0.5).weight(3)
    with pytest.raises(TypeError):
        fair.weights[2] = 3  # type: ignore[index]
    assert fair == WeightedFair({4: 1.0, 1: 8.0})


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        (
            {},
            ValueError,
            r"WeightedFair weights must name at least one priority, not \{\}",
        ),
        ([1, 2], TypeError, r"WeightedFair weights must be a mapping .* \(list\)"),
        (
            {1: 0},
            ValueError,
            r"WeightedFair weights\[1\] must be a finite number > 0, not 0",
        ),
        (
            {2: "a"},
            TypeError,
            r"WeightedFair weights\[2\] must be a number > 0, not 'a' \(str\)",
        ),
        (
            {None: 1},
            TypeError,
            r"WeightedFair weights's keys must be priorities .*None",
        ),
    ],
)
def test_weighted_fair_rejects_bad_weights(
    weights: object, error: type[Exception], message: str
) -> None:
    """Each bad weight or level is named, with its value."""
    with pytest.raises(error, match=f"^{message}"):
        WeightedFair(weights)


def test_scheduling_is_strict_or_weighted_fair() -> None:
    """None and StrictPriority() mean strict priority; nothing else passes."""
    fair = WeightedFair({1: 2})
    assert check_scheduling(None) is None
    assert check_scheduling(StrictPriority()) is None
    assert check_scheduling(fair) is fair
    with pytest.raises(TypeError, match=r"^scheduling must be .* not 'fair' \(str\)$"):
        check_scheduling("fair")
    with pytest.raises(ValueError, match=r"^WeightedFair default must be .* not -1$"):
        WeightedFair({1: 2}, default=-1)


def test_retry_backoff_doubles_up_to_its_bound_with_jitter() -> None:
    """Doubling up to max_backoff; jitter takes off at most half."""
    plain = Retry(5, backoff=0.5, max_backoff=3.0, jitter=False)
    assert [0.5, 1.0, 2.0, 3.0, 3.0] == [plain.delay(n) for n in range(1, 6)]
    assert 3.0 == plain.delay(10_000)
    rng = random.Random(1)
    jittered = Retry(3, backoff=2.0, max_backoff=100.0)
    delays = [jittered.delay(3, rng) for _ in range(200)]
    assert all(4.0 <= delay <= 8.0 for delay in delays)
    assert len(set(delays)) > 100
    assert 0.0 == Retry(2, backoff=0).delay(1)


def test_retry_with_a_callable_backoff() -> None:
    """A callable backoff is used as is, and checked when called."""
    retry = Retry(3, backoff=lambda n: n * 0.25)
    assert [0.25, 0.5] == [retry.delay(1), retry.delay(2)]
    bad = Retry(3, backoff=lambda n: -n)
    with pytest.raises(
        ValueError, match=r"^Retry backoff\(2\) must be a finite number >= 0, not -2$"
    ):
        bad.delay(2)


def test_retry_decides_what_runs_again() -> None:
    """Only the exceptions in on=, and only while attempts remain."""
    retry = Retry(3, on=(KeyError, ConnectionError))
    assert retry.retries(KeyError("k"), 1)
    assert retry.retries(ConnectionResetError(), 2)
    assert not retry.retries(KeyError("k"), 3)
    assert not retry.retries(ValueError(), 1)
    assert (ValueError,) == Retry(2, on=ValueError).on
    assert (Exception,) == Retry(2).on
    assert not Retry(1).retries(ValueError(), 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attempts": 0}, ValueError, r"Retry attempts must be an int >= 1, not 0"),
        (
            {"attempts": 2.0},
            TypeError,
            r"Retry attempts must be an int >= 1, not 2\.0 \(float\)",
        ),
        (
            {"attempts": 2, "backoff": -1},
            ValueError,
            r"Retry backoff must be a finite number >= 0, not -1",
        ),
        (
            {"attempts": 2, "backoff": "1"},
            TypeError,
            r"Retry backoff must be a number >= 0, not '1' \(str\)",
        ),
        (
            {"attempts": 2, "max_backoff": math.inf},
            ValueError,
            r"Retry max_backoff must be .* not inf",
        ),
        (
            {"attempts": 2, "jitter": 1},
            TypeError,
            r"Retry jitter must be a bool, not 1 \(int\)",
        ),
        (
            {"attempts": 2, "on": ()},
            ValueError,
            r"Retry on must name at least one exception type, not \(\)",
        ),
        (
            {"attempts": 2, "on": (ValueError, "x")},
            TypeError,
            r"Retry on must be an exception type or a tuple of them, .*holds 'x'\)",
        ),
        (
            {"attempts": 2, "on": int},
            TypeError,
            r"Retry on must be an exception type .*",
        ),
    ],
)
def test_retry_rejects_bad_values(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad argument is named, with its value."""
    with pytest.raises(error, match=f"^{message}$"):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_dead_letter_names_its_error_type() -> None:
    """The record names its error's type by module and qualified name."""
    error = ValueError("bad")
    letter = DeadLetter(
        ticket_id="t",
        request=3,
        priority=2,
        attempts=3,
        error=error,
        error_type=DeadLetter.type_name(error),
        error_message=str(error),
        traceback="",
        submitted_at=1.0,
        finished_at=2.0,
    )
    assert "builtins.ValueError" == letter.error_type
    assert re.fullmatch(r"DeadLetter\(ticket_id='t', request=3, .*\)", repr(letter))
