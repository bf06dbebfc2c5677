"""The settings of the scheduling policies a pool (or a channel) may be given.

Plain frozen values, validated when built, so that a bad setting fails where it is
written and names the bad value: :class:`RateLimit` (``rate_limits=``),
:class:`StrictPriority` and :class:`WeightedFair` (``scheduling=``),
:class:`Retry` (``retry=``), and :class:`DeadLetter`, the record of a request that
failed for good. What each policy does lives where it acts (the queue's take, the
pool's workers and accounting); this module only says what was asked for.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Generic, TypeVar, cast, final

import attrs

from ._priority import check_priority
from ._util import describe

__all__ = [
    "DeadLetter",
    "RateLimit",
    "Retry",
    "StrictPriority",
    "WeightedFair",
    "check_rate_limits",
    "check_scheduling",
]

Req = TypeVar("Req")

#: The most retries' worth of doubling the default backoff computes exactly.
_MAX_DOUBLINGS: Final = 64


def _number(value: object, name: str, *, zero: bool = False) -> float:
    """A finite ``int``/``float`` > 0 (>= 0 if *zero*), as a float."""
    bound = ">= 0" if zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = type(value).__name__
        msg = f"{name} must be a number {bound}, not {describe(value)} ({kind})"
        raise TypeError(msg)
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        msg = (
            f"{name} must be a finite number {bound}, not {describe(value)} (too large)"
        )
        raise ValueError(msg) from None
    if not (number >= 0 if zero else number > 0) or number == math.inf:
        msg = f"{name} must be a finite number {bound}, not {describe(value)}"
        raise ValueError(msg)
    return number


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        msg = f"{name} must be an int >= 1, not {describe(value)} ({kind})"
        raise TypeError(msg)
    if value < 1:
        msg = f"{name} must be an int >= 1, not {describe(value)}"
        raise ValueError(msg)
    return value


# -- rate limits ------------------------------------------------------------------


def _check_rate(value: float) -> float:
    return _number(value, "RateLimit rate")


def _check_per(value: float) -> float:
    return _number(value, "RateLimit per")


def _check_burst(value: int) -> int:
    return _count(value, "RateLimit burst")


@final
@attrs.frozen
class RateLimit:
    """At most *rate* starts per *per* seconds for one priority level.

    Pass as ``WorkerPool(rate_limits={Priority.LOW: RateLimit(100, per=1.0)})``.
    A token bucket on the backend's clock: it holds up to *burst* tokens, gains
    one every ``per / rate`` seconds, and each request of its level takes one as
    it starts. A request waiting for a token holds no worker and never delays
    requests of other levels.

    Args:
        rate: Starts allowed per *per* seconds (a finite number > 0).
        per: The period *rate* is counted over, in seconds.
        burst: Tokens the bucket holds at most: how many requests may start at
            once after an idle spell. A full bucket to begin with.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).

    .. versionadded:: 0.3
    """

    rate: float = attrs.field(converter=_check_rate)
    per: float = attrs.field(default=1.0, kw_only=True, converter=_check_per)
    burst: int = attrs.field(default=1, kw_only=True, converter=_check_burst)

    @property
    def interval(self) -> float:
        """How long the bucket takes to gain a token (``per / rate`` seconds)."""
        return self.per / self.rate


def check_rate_limits(value: object) -> dict[int, RateLimit]:
    """Validate ``rate_limits=``: a mapping of priority levels to :class:`RateLimit`.

    Returns a new ``dict`` keyed by plain ``int`` levels (empty for ``None``).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = (
            "rate_limits must be None or a mapping of priority to "
            f"queuekeeper.RateLimit, not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    limits: dict[int, RateLimit] = {}
    for key, limit in value.items():
        level = _level(key, "rate_limits")
        if not isinstance(limit, RateLimit):
            msg = (
                f"rate_limits[{level}] must be a queuekeeper.RateLimit, "
                f"not {describe(limit)} ({type(limit).__name__})"
            )
            raise TypeError(msg)
        limits[level] = limit
    return limits


def _level(key: object, name: str) -> int:
    try:
        return int(check_priority(key))
    except TypeError:
        msg = (
            f"{name}'s keys must be priorities (an int or a queuekeeper.Priority), "
            f"not {describe(key)} ({type(key).__name__})"
        )
        raise TypeError(msg) from None


# -- scheduling ---------------------------------------------------------------------


@final
@attrs.frozen
class StrictPriority:
    """Serve the best level first, always: the default ``scheduling=``.

    A request waits while any request of a better level is queued (see ``aging=``
    for a bound on that wait).

    .. versionadded:: 0.3
    """


def _check_weights(value: object) -> Mapping[int, float]:
    if not isinstance(value, Mapping):
        msg = (
            "WeightedFair weights must be a mapping of priority to a weight > 0, "
            f"not {describe(value)} ({type(value).__name__})"
        )
        raise TypeError(msg)
    if not value:
        msg = "WeightedFair weights must name at least one priority, not {}"
        raise ValueError(msg)
    weights: dict[int, float] = {}
    for key, weight in value.items():
        level = _level(key, "WeightedFair weights")
        weights[level] = _number(weight, f"WeightedFair weights[{level}]")
    return MappingProxyType(dict(sorted(weights.items())))


def _check_default(value: float) -> float:
    return _number(value, "WeightedFair default")


@final
@attrs.frozen
class WeightedFair:
    """Share the workers between levels by weight instead of strict priority.

    Pass as ``WorkerPool(scheduling=WeightedFair({Priority.CRITICAL: 8,
    Priority.HIGH: 4, Priority.NORMAL: 2, Priority.LOW: 1}))``. While several
    levels have requests queued, each level's share of the requests that start
    converges to its weight's share of the weights of those levels; a level with
    nothing queued takes no share, and the others divide it (the workers never
    idle while anything is queued). Within a level, requests start in the order
    they were submitted.

    Args:
        weights: A weight (a finite number > 0) per priority level.
        default: The weight of a level *weights* does not name.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).

    .. versionadded:: 0.3
    """

    weights: Mapping[int, float] = attrs.field(converter=_check_weights)
    default: float = attrs.field(default=1.0, kw_only=True, converter=_check_default)

    def weight(self, level: int) -> float:
        """The weight of *level*."""
        return self.weights.get(level, self.default)


def check_scheduling(value: object) -> WeightedFair | None:
    """Validate ``scheduling=``: the :class:`WeightedFair` it asks for, or ``None``.

    ``None`` and :class:`StrictPriority` both mean strict priority.
    """
    if value is None or isinstance(value, StrictPriority):
        return None
    if isinstance(value, WeightedFair):
        return value
    msg = (
        "scheduling must be queuekeeper.StrictPriority() or queuekeeper.WeightedFair, "
        f"not {describe(value)} ({type(value).__name__})"
    )
    raise TypeError(msg)


# -- retries ------------------------------------------------------------------------


def _check_attempts(value: int) -> int:
    return _count(value, "Retry attempts")


def _check_backoff(value: object) -> float | Callable[[int], float]:
    if callable(value):
        return cast("Callable[[int], float]", value)
    return _number(value, "Retry backoff", zero=True)


def _check_max_backoff(value: float) -> float:
    return _number(value, "Retry max_backoff", zero=True)


def _check_on(value: object) -> tuple[type[BaseException], ...]:
    kinds = value if isinstance(value, tuple) else (value,)
    if not kinds:
        msg = "Retry on must name at least one exception type, not ()"
        raise ValueError(msg)
    checked: list[type[BaseException]] = []
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            msg = (
                "Retry on must be an exception type or a tuple of them, "
                f"not {describe(value)} (holds {describe(kind)})"
            )
            raise TypeError(msg)
        checked.append(kind)
    return tuple(checked)


@final
@attrs.frozen
class Retry:
    """Run a request again when its handler raised one of *on*, up to *attempts* runs.

    Pass as ``WorkerPool(retry=Retry(3, on=(ConnectionError,)))``. A retried
    request waits out a backoff holding no worker, then is queued again at its
    priority, behind what is queued there, with the same ticket.

    The backoff before the *n*-th retry (``n = 1`` after the first run): a number
    *backoff* doubles each retry (``backoff * 2 ** (n - 1)``) up to *max_backoff*,
    and with *jitter* a uniformly random part of its second half is taken off
    (between half and all of it is waited), so that requests that failed
    together do not all come back together. A callable *backoff* is called with
    *n* and returns the seconds to wait, used as is.

    Args:
        attempts: Runs in all, the first included (an int >= 1; 1 never retries).
        backoff: Seconds before the first retry (a number >= 0), or a callable
            of the retry number giving the seconds.
        max_backoff: The longest backoff of a doubling *backoff*.
        jitter: Whether to wait a random part of the doubling backoff.
        on: The exception types (one, or a tuple) that are retried; any other
            exception fails the request at once.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: An argument is out of range (the message names it).

    .. versionadded:: 0.3
    """

    attempts: int = attrs.field(converter=_check_attempts)
    backoff: float | Callable[[int], float] = attrs.field(
        default=0.1, kw_only=True, converter=_check_backoff
    )
    max_backoff: float = attrs.field(
        default=10.0, kw_only=True, converter=_check_max_backoff
    )
    jitter: bool = attrs.field(default=True, kw_only=True)
    on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), kw_only=True, converter=_check_on
    )

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[bool], value: object) -> None:
        del attribute
        if not isinstance(value, bool):
            kind = type(value).__name__
            msg = f"Retry jitter must be a bool, not {describe(value)} ({kind})"
            raise TypeError(msg)

    def retries(self, error: BaseException, attempts: int) -> bool:
        """Whether a request that ran *attempts* times and raised *error* runs again."""
        return attempts < self.attempts and isinstance(error, self.on)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the *retry*-th retry (1 for the first).

        Raises:
            TypeError, ValueError: A callable *backoff* returned no number of
                seconds >= 0 (the message names what it returned).
        """
        backoff = self.backoff
        if callable(backoff):
            return _number(backoff(retry), f"Retry backoff({retry})", zero=True)
        delay = min(self.max_backoff, backoff * 2.0 ** min(retry - 1, _MAX_DOUBLINGS))
        if self.jitter:
            delay -= (rng or random).uniform(0.0, delay / 2)
        return delay


# -- dead letters -------------------------------------------------------------------


@final
@attrs.frozen
class DeadLetter(Generic[Req]):
    """A request that failed for good: its handler raised, and no retry was left.

    What ``WorkerPool.dead_letters`` delivers.

    Attributes:
        ticket_id: The request's ticket id.
        request: The request, as submitted.
        priority: Its priority, as submitted.
        attempts: How many times it ran.
        error: The exception its last run raised (``None`` where the record
            crossed a process boundary and the exception could not be rebuilt).
        error_type: The exception's qualified type name, e.g. ``"builtins.ValueError"``.
        error_message: ``str()`` of the exception.
        traceback: The formatted traceback of the last run.
        submitted_at: When it was submitted (seconds on the backend's clock).
        finished_at: When its last run ended (the same clock).

    .. versionadded:: 0.3
    """

    ticket_id: str
    request: Req
    priority: int
    attempts: int
    error: BaseException | None
    error_type: str
    error_message: str
    traceback: str
    submitted_at: float
    finished_at: float

    @staticmethod
    def type_name(error: BaseException) -> str:
        """*error*'s type as ``module.QualifiedName``."""
        kind = type(error)
        return f"{kind.__module__}.{kind.__qualname__}"
