"""Prometheus metrics for worker pools: one :class:`PoolObserver`.

The only module that uses prometheus_client, and it imports it only when a
:class:`PrometheusMetrics` is made: ``import queuekeeper`` does not need it (the
extra ``queuekeeper[prometheus]`` installs it).
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final, cast, final

from ._priority import Priority, priority_label

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType

    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from ._observer import ObservedPool
    from ._states import TicketState

#: What a metric name (and so a namespace) may be, on every prometheus_client.
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

__all__ = ["DURATION_BUCKETS", "PrometheusMetrics", "serve_metrics"]


def _prometheus_client() -> ModuleType:
    """The prometheus_client module, or an ImportError saying which extra to install."""
    try:
        import prometheus_client  # noqa: PLC0415 (only when metrics are used)
    except ImportError as exc:
        msg = (
            "PrometheusMetrics needs prometheus_client: "
            "pip install 'queuekeeper[prometheus]'"
        )
        raise ImportError(msg) from exc
    return prometheus_client


#: Histogram buckets (seconds) for queue waits and run times: sub-millisecond to a
#: minute, roughly 1-2.5-5 per decade.
DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_ALL: Final = "all"
#: The named levels, exported whether they hold requests or not.
_NAMED: Final = tuple(int(level) for level in Priority)


@final
class _GaugeCollector:
    """Reads the queue and the workers from the attached pools at scrape time.

    Reading at scrape time keeps the gauges exact and costs the request path
    nothing. A prometheus_client collector: it has ``collect()`` and
    ``describe()``, and reads each pool's public ``status()`` snapshot.
    """

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._pools: weakref.WeakValueDictionary[str, ObservedPool] = (
            weakref.WeakValueDictionary()
        )
        # Custom levels seen in each pool's queue: their series stay exported (0
        # when empty), as the named levels' do.
        self._custom: weakref.WeakKeyDictionary[ObservedPool, set[int]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def attach(self, pool: ObservedPool) -> None:
        with self._lock:
            other = self._pools.get(pool.name)
            if (
                other is not None
                and other is not pool
                and other.status().state != "closed"
            ):
                msg = (
                    f"a running pool named {pool.name!r} already reports to these "
                    "metrics; give each pool its own name"
                )
                raise ValueError(msg)
            self._pools[pool.name] = pool

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return (*self._families(), *self._rate_families(), *self._outcome_families())

    def _outcome_families(self) -> tuple[CounterMetricFamily, ...]:
        """The counters of the outcome policies: retries and dead letters."""
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

        ns = self._namespace
        return (
            CounterMetricFamily(
                f"{ns}_requests_retried",
                "Retries scheduled: requests whose handler failed, kept to run "
                "again (retry=).",
                labels=("pool", "priority"),
            ),
            CounterMetricFamily(
                f"{ns}_dead_letters",
                "Requests that failed for good, recorded as dead letters "
                "(dead_letter_size=).",
                labels=("pool",),
            ),
            CounterMetricFamily(
                f"{ns}_dead_letters_dropped",
                "Dead letters lost unread (the oldest, dropped for new ones).",
                labels=("pool",),
            ),
        )

    def _rate_families(self) -> tuple[CounterMetricFamily, GaugeMetricFamily]:
        """The rate limits' series (see ``WorkerPool(rate_limits=...)``)."""
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        ns = self._namespace
        return (
            CounterMetricFamily(
                f"{ns}_rate_limited",
                "Requests that had to wait for a token of their level's rate "
                "limit, by priority.",
                labels=("pool", "priority"),
            ),
            GaugeMetricFamily(
                f"{ns}_queue_rate_limited",
                "Queued requests of levels that have no token of their rate "
                "limit now, by priority.",
                labels=("pool", "priority"),
            ),
        )

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415

        ns = self._namespace
        return (
            GaugeMetricFamily(
                f"{ns}_queue_size",
                "Requests waiting in the queue, by priority (and 'all').",
                labels=("pool", "priority"),
            ),
            GaugeMetricFamily(
                f"{ns}_queue_active_workers",
                "Workers busy on a request.",
                labels=("pool",),
            ),
            GaugeMetricFamily(
                f"{ns}_queue_in_flight",
                "Requests taken from the queue and not finished (on a shared "
                "queue: by every process, as its server counts them).",
                labels=("pool",),
            ),
            GaugeMetricFamily(
                f"{ns}_queue_workers_alive",
                "Workers alive per process (on a shared queue: every process "
                "serving it, as its server knows them).",
                labels=("pool", "process"),
            ),
            GaugeMetricFamily(
                f"{ns}_workers",
                "Workers the pool runs (its workers= setting), reported from "
                "when it is built, running or not.",
                labels=("pool",),
            ),
            GaugeMetricFamily(
                f"{ns}_queue_capacity",
                "Requests that may wait in the queue (max_queue_size, or a "
                "shared queue's max_size); +Inf when unbounded.",
                labels=("pool",),
            ),
        )

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        families = self._families()
        queue_size, active, in_flight, alive, workers, capacity = families
        rate_limited, rate_limited_now = rates = self._rate_families()
        outcomes = self._outcome_families()
        retried, dead_letters, dropped = outcomes
        with self._lock:
            pools = list(self._pools.items())
            for name, pool in pools:
                status = pool.status()
                by_level = status.queue_size_by_priority
                custom = self._custom.setdefault(pool, set())
                custom.update(level for level in by_level if level not in _NAMED)
                queue_size.add_metric((name, _ALL), status.queue_size)
                for level in (*_NAMED, *sorted(custom)):
                    count = by_level.get(level, 0)
                    queue_size.add_metric((name, priority_label(level)), count)
                active.add_metric((name,), status.active_workers)
                in_flight.add_metric((name,), status.in_flight)
                for process, count in status.workers_alive.items():
                    alive.add_metric((name, process), count)
                workers.add_metric((name,), status.max_workers)
                limit = status.max_queue_size
                capacity.add_metric((name,), math.inf if limit is None else limit)
                waited = status.rate_limited_by_priority
                waiting = status.rate_limited_now_by_priority
                for level in sorted({*waited, *waiting}):
                    label = (name, priority_label(level))
                    rate_limited.add_metric(label, waited.get(level, 0))
                    rate_limited_now.add_metric(label, waiting.get(level, 0))
                retries = status.retried_by_priority
                for level in sorted({*_NAMED, *retries}):
                    retried.add_metric(
                        (name, priority_label(level)), retries.get(level, 0)
                    )
                dead_letters.add_metric((name,), status.dead_letters)
                dropped.add_metric((name,), status.dead_letters_dropped)
        # Only pools with rate limits have these series: none, no family.
        return (
            *families,
            *(rates if rate_limited.samples else ()),
            *outcomes,
        )


@final
class _Instruments:
    """The metric objects of one namespace on one registry, shared by its users."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        client = _prometheus_client()
        Counter, Histogram = client.Counter, client.Histogram  # noqa: N806 (classes)
        ns = namespace
        self.requests = Counter(
            f"{ns}_queue_requests",
            "Requests accepted into the queue.",
            ("pool", "priority"),
            registry=None,
        )
        self.rejected = Counter(
            f"{ns}_queue_requests_rejected",
            "Requests refused with QueueFull.",
            ("pool", "priority"),
            registry=None,
        )
        self.wait = Histogram(
            f"{ns}_queue_wait_time_seconds",
            "Time requests waited in the queue before a worker took them.",
            ("pool", "priority"),
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.duration = Histogram(
            f"{ns}_request_duration_seconds",
            "Time the handler ran, for requests that started.",
            ("pool", "priority"),
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.completed = Counter(
            f"{ns}_requests_completed",
            "Requests that reached a final state, by outcome.",
            ("pool", "priority", "outcome"),
            registry=None,
        )
        self.coalesced = Counter(
            f"{ns}_queue_requests_coalesced",
            "Submits that shared a queued or running request's outcome (its key).",
            ("pool", "priority"),
            registry=None,
        )
        self.gauges = _GaugeCollector(ns)
        # All or nothing: a name clash must not leave some of them registered.
        registered: list[Any] = []
        try:
            for collector in (
                self.requests,
                self.rejected,
                self.wait,
                self.duration,
                self.completed,
                self.coalesced,
                self.gauges,
            ):
                registry.register(collector)
                registered.append(collector)
        except ValueError:
            for done in registered:
                registry.unregister(done)
            raise


# One set of instruments per (registry, namespace): a second PrometheusMetrics on
# the same registry reuses the first one's metrics instead of failing to register.
_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Instruments]] = (
    weakref.WeakKeyDictionary()
)
_shared_lock = threading.Lock()


def _instruments(registry: CollectorRegistry, namespace: str) -> _Instruments:
    with _shared_lock:
        by_namespace = _shared.setdefault(registry, {})
        instruments = by_namespace.get(namespace)
        if instruments is None:
            try:
                instruments = _Instruments(registry, namespace)
            except ValueError as exc:
                msg = (
                    "cannot register queuekeeper metrics with namespace "
                    f"{namespace!r}: the registry already has metrics of those "
                    f"names ({exc})"
                )
                raise ValueError(msg) from None
            by_namespace[namespace] = instruments
        return instruments


@final
class PrometheusMetrics:
    """Report pools to Prometheus: pass as ``WorkerPool(metrics=...)``.

    Every metric has the label ``pool`` (the pool's name); see the metrics
    reference for names and labels. Several pools may share one object or one
    registry, as long as each running pool has its own name. Creating a second
    ``PrometheusMetrics`` with the same registry and namespace is fine: it
    reuses the metrics the first one registered.

    Args:
        registry: Where to register; ``None`` for prometheus_client's default
            ``REGISTRY``.
        namespace: The prefix of every metric name.

    Raises:
        TypeError: *registry* is not a ``CollectorRegistry`` or *namespace* not a str.
        ValueError: *namespace* is empty, or the registry already holds other
            metrics with these names.
    """

    __slots__ = ("_children", "_instruments", "_labels", "namespace", "registry")

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "queuekeeper"
    ) -> None:
        client = _prometheus_client()
        if registry is None:
            registry = client.REGISTRY
        if not isinstance(cast("object", registry), client.CollectorRegistry):
            msg = (
                "registry must be a prometheus_client.CollectorRegistry or None, "
                f"not {registry!r}"
            )
            raise TypeError(msg)
        if not isinstance(cast("object", namespace), str):
            kind = type(namespace).__name__
            msg = f"namespace must be a str, not {namespace!r} ({kind})"
            raise TypeError(msg)
        if not namespace:
            msg = "namespace must be a non-empty str, not ''"
            raise ValueError(msg)
        if not _METRIC_NAME.fullmatch(namespace):
            msg = (
                "namespace must be a Prometheus metric name prefix "
                f"([a-zA-Z_:][a-zA-Z0-9_:]*), not {namespace!r}"
            )
            raise ValueError(msg)
        self.registry: CollectorRegistry = registry
        self.namespace: str = namespace
        self._instruments = _instruments(registry, namespace)
        # Label lookups are the expensive part of an update: cache the children.
        self._children: dict[tuple[object, ...], Any] = {}

    def attach(self, pool: ObservedPool) -> None:
        """Start reporting *pool* (the pool calls this when it is built).

        Raises:
            ValueError: Another running pool of the same name already reports here.
        """
        self._instruments.gauges.attach(pool)

    def _child(self, metric: Any, *labels: str) -> Any:  # noqa: ANN401 (a metric)
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def submitted(self, pool: str, priority: int) -> None:
        """Count a request accepted into the queue."""
        self._child(self._instruments.requests, pool, priority_label(priority)).inc()

    def rejected(self, pool: str, priority: int) -> None:
        """Count a request refused with :exc:`QueueFull`."""
        self._child(self._instruments.rejected, pool, priority_label(priority)).inc()

    def started(self, pool: str, priority: int, wait: float) -> None:
        """Record how long a request waited before a worker took it."""
        self._child(self._instruments.wait, pool, priority_label(priority)).observe(
            wait
        )

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        """Count a request's outcome and record its run time, if it ran."""
        label = priority_label(priority)
        self._child(self._instruments.completed, pool, label, outcome.value).inc()
        if duration is not None:
            self._child(self._instruments.duration, pool, label).observe(duration)

    def coalesced(self, pool: str, priority: int) -> None:
        """Count a submit that shared a queued or running request (its ``key``).

        .. versionadded:: 0.2
        """
        self._child(self._instruments.coalesced, pool, priority_label(priority)).inc()

    def __repr__(self) -> str:
        return f"<queuekeeper.PrometheusMetrics namespace={self.namespace!r}>"


def serve_metrics(port: int) -> tuple[PrometheusMetrics, Any]:
    """Serve a fresh registry's metrics on 127.0.0.1:*port* (0: a free port).

    Returns the :class:`PrometheusMetrics` to pass to a pool and the HTTP server
    (``server_port``, ``shutdown()``, ``server_close()``), which serves from a
    thread of prometheus_client's until shut down.

    Raises:
        OSError: The port cannot be bound.
    """
    client = _prometheus_client()
    registry = client.CollectorRegistry()
    server, _thread = client.start_http_server(
        port, addr="127.0.0.1", registry=registry
    )
    return PrometheusMetrics(registry), server
