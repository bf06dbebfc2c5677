"""PrometheusMetrics: names, labels, counts per outcome, gauges, sharing, bad input."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import anyio
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest

from helpers import Gate
from queuekeeper import (
    Backpressure,
    Priority,
    PrometheusMetrics,
    QueueFull,
    QueueTimeout,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    TicketState,
    WorkerPool,
    _prometheus,
)
from queuekeeper._util import process_name

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio


async def scripted(request: str) -> str:
    """Succeed, fail or hang, as the request says."""
    await anyio.lowlevel.checkpoint()
    if request == "fail":
        msg = "scripted failure"
        raise ValueError(msg)
    if request == "hang":
        await anyio.sleep_forever()
    return request


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own, so counts start at zero."""
    return CollectorRegistry()


def exposed_types(registry: CollectorRegistry) -> dict[str, str]:
    """Map each metric name of the text exposition to its TYPE (no _created)."""
    text = generate_latest(registry).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    return {name: kind for name, kind in types.items() if not name.endswith("_created")}


def samples(
    registry: CollectorRegistry, name: str, *labels: str, pool: str = "p"
) -> dict[tuple[str, ...], float]:
    """The values of sample *name* for *pool*, keyed by the values of *labels*."""
    return {
        tuple(sample.labels[label] for label in labels): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and sample.labels.get("pool") == pool
    }


def by_priority(
    registry: CollectorRegistry, name: str, pool: str = "p"
) -> dict[str, float]:
    """The values of sample *name* for *pool*, keyed by the priority label."""
    return {
        key[0]: value
        for key, value in samples(registry, name, "priority", pool=pool).items()
    }


def expected_types(ns: str) -> dict[str, str]:
    """The metric names and types for namespace *ns*: API.md's, and five more."""
    return {
        f"{ns}_queue_size": "gauge",
        f"{ns}_queue_wait_time_seconds": "histogram",
        f"{ns}_queue_requests_total": "counter",
        f"{ns}_queue_requests_rejected_total": "counter",
        f"{ns}_queue_active_workers": "gauge",
        f"{ns}_queue_in_flight": "gauge",
        f"{ns}_queue_workers_alive": "gauge",
        f"{ns}_workers": "gauge",
        f"{ns}_queue_capacity": "gauge",
        f"{ns}_request_duration_seconds": "histogram",
        f"{ns}_requests_completed_total": "counter",
        f"{ns}_queue_requests_coalesced_total": "counter",
        f"{ns}_requests_retried_total": "counter",
        f"{ns}_dead_letters_total": "counter",
        f"{ns}_dead_letters_dropped_total": "counter",
    }


# -- names and labels ---------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["queuekeeper", "svc"])
async def test_metric_names_types_and_label_names(
    registry: CollectorRegistry, namespace: str
) -> None:
    """Every API.md metric is exposed under the namespace, each with its labels."""
    metrics = PrometheusMetrics(registry, namespace=namespace)
    assert registry is metrics.registry
    assert namespace == metrics.namespace
    assert expected_types(namespace) == exposed_types(registry)
    gate = Gate()
    async with WorkerPool(gate, workers=1, max_queue_size=1, metrics=metrics) as pool:
        await pool.submit("running")
        await anyio.wait_all_tasks_blocked()
        await pool.submit("queued", priority=Priority.LOW, key="q")
        await pool.submit("queued", priority=Priority.LOW, key="q")  # coalesced
        with pytest.raises(QueueFull):
            await pool.submit("rejected")
        gate.open.set()
    assert expected_types(namespace) == exposed_types(registry)
    labels = {
        "queue_size": {"pool", "priority"},
        "queue_wait_time_seconds": {"pool", "priority"},
        "queue_requests": {"pool", "priority"},
        "queue_requests_rejected": {"pool", "priority"},
        "queue_active_workers": {"pool"},
        "queue_in_flight": {"pool"},
        "queue_workers_alive": {"pool", "process"},
        "workers": {"pool"},
        "queue_capacity": {"pool"},
        "request_duration_seconds": {"pool", "priority"},
        "requests_completed": {"outcome", "pool", "priority"},
        "queue_requests_coalesced": {"pool", "priority"},
        "requests_retried": {"pool", "priority"},
        "dead_letters": {"pool"},
        "dead_letters_dropped": {"pool"},
    }
    seen: dict[str, set[str]] = {}
    for family in registry.collect():
        assert family.name.startswith(f"{namespace}_")
        short = family.name.removeprefix(f"{namespace}_")
        assert family.samples, f"{family.name} has no samples"
        for sample in family.samples:
            seen.setdefault(short, set()).update(set(sample.labels) - {"le"})
    assert labels == seen


async def test_counts_submit_reject_wait_and_every_outcome(
    registry: CollectorRegistry,
) -> None:
    """Each request is counted once: accepted or rejected, started, and finished."""
    metrics = PrometheusMetrics(registry)
    async with WorkerPool(
        scripted,
        workers=1,
        max_queue_size=1,
        backpressure=Backpressure.SHED,
        name="p",
        metrics=metrics,
    ) as pool:
        assert "ok" == await pool.execute("ok", priority=Priority.HIGH)
        with pytest.raises(ValueError, match="scripted failure"):
            await pool.execute("fail", priority=Priority.NORMAL)
        with pytest.raises(RequestTimeout):
            await pool.execute("hang", priority=Priority.LOW, timeout=0.01)

        running = await pool.submit("hang", priority=Priority.CRITICAL)
        await anyio.wait_all_tasks_blocked()
        assert TicketState.RUNNING == running.state
        victim = await pool.submit("ok", priority=7)
        newcomer = await pool.submit("ok", priority=Priority.LOW)  # sheds the 7
        with pytest.raises(RequestShed):
            await victim.result()
        with pytest.raises(QueueFull):
            pool.submit_nowait("ok", priority=Priority.LOW)  # nothing lower queued
        assert newcomer.cancel()
        impatient = await pool.submit("ok", priority=Priority.HIGH, queue_timeout=0.01)
        with pytest.raises(QueueTimeout):
            await impatient.result()
        assert running.cancel()
        with pytest.raises(RequestCancelled):
            await running.result()

    name = "queuekeeper_requests_completed_total"
    assert {
        ("high", "succeeded"): 1,
        ("normal", "failed"): 1,
        ("low", "timed_out"): 1,
        ("7", "shed"): 1,
        ("low", "cancelled"): 1,
        ("high", "timed_out"): 1,
        ("critical", "cancelled"): 1,
    } == samples(registry, name, "priority", "outcome")
    assert {"high": 2, "normal": 1, "low": 2, "critical": 1, "7": 1} == by_priority(
        registry, "queuekeeper_queue_requests_total"
    )
    assert {"low": 1} == by_priority(
        registry, "queuekeeper_queue_requests_rejected_total"
    )
    # Only the requests a worker took waited and ran: not the shed, the cancelled
    # while queued, nor the one that timed out in the queue.
    ran = {"high": 1, "normal": 1, "low": 1, "critical": 1}
    assert ran == by_priority(registry, "queuekeeper_queue_wait_time_seconds_count")
    assert ran == by_priority(registry, "queuekeeper_request_duration_seconds_count")
    for histogram in ("queue_wait_time_seconds", "request_duration_seconds"):
        buckets = samples(registry, f"queuekeeper_{histogram}_bucket", "priority", "le")
        assert dict.fromkeys(ran, 1) == {
            level: value for (level, le), value in buckets.items() if "+Inf" == le
        }
    duration_sum = registry.get_sample_value(
        "queuekeeper_request_duration_seconds_sum",
        {"pool": "p", "priority": "low"},
    )
    assert duration_sum is not None
    assert 0 < duration_sum

    status = pool.status()
    assert (1, 1, 2, 2, 1, 1) == (
        status.completed,
        status.failed,
        status.timed_out,
        status.cancelled,
        status.shed,
        status.rejected,
    )
    assert status.submitted == sum(
        by_priority(registry, "queuekeeper_queue_requests_total").values()
    )
    assert status.submitted == sum(
        samples(registry, name, "priority", "outcome").values()
    )


async def test_block_mode_counts_accepted_requests_and_no_rejections(
    registry: CollectorRegistry,
) -> None:
    """BLOCK: submitters wait for room instead of being counted as rejected."""
    gate = Gate()
    metrics = PrometheusMetrics(registry)
    async with (
        WorkerPool(
            gate,
            workers=1,
            max_queue_size=1,
            backpressure=Backpressure.BLOCK,
            name="p",
            metrics=metrics,
        ) as pool,
        anyio.create_task_group() as tg,
    ):
        for i in range(4):
            tg.start_soon(pool.submit, i)
        await anyio.wait_all_tasks_blocked()
        assert {"normal": 2} == by_priority(
            registry, "queuekeeper_queue_requests_total"
        )
        gate.open.set()
    assert {"normal": 4} == by_priority(registry, "queuekeeper_queue_requests_total")
    assert {} == by_priority(registry, "queuekeeper_queue_requests_rejected_total")
    assert {("normal", "succeeded"): 4} == samples(
        registry, "queuekeeper_requests_completed_total", "priority", "outcome"
    )


# -- gauges -------------------------------------------------------------------------


async def test_gauges_are_read_from_the_pool_at_scrape_time(
    registry: CollectorRegistry,
) -> None:
    """queue_size and active_workers follow the pool between two scrapes.

    The four named levels and ``all`` are always exported, 0 when empty, and a
    custom level stays exported once seen: a series that vanished would read as
    stale to Prometheus, not as an empty queue.
    """
    gate = Gate()
    metrics = PrometheusMetrics(registry)

    def gauges() -> tuple[dict[str, float], float | None]:
        active = registry.get_sample_value(
            "queuekeeper_queue_active_workers", {"pool": "p"}
        )
        return by_priority(registry, "queuekeeper_queue_size"), active

    empty = {"all": 0, "critical": 0, "high": 0, "normal": 0, "low": 0}
    pool = WorkerPool(gate, workers=2, name="p", metrics=metrics)
    assert (empty, 0) == gauges()  # attached when built, before it runs
    async with pool:
        tickets = [
            await pool.submit(i, priority=level)
            for i, level in enumerate(
                [Priority.NORMAL, Priority.NORMAL, 3, 1, 4, 4, 10]
            )
        ]
        await anyio.wait_all_tasks_blocked()
        expected = {**empty, "all": 5, "critical": 1, "normal": 1, "low": 2, "10": 1}
        assert (expected, 2) == gauges()
        assert tickets[4].cancel()  # no metrics call in between: read at scrape
        assert tickets[6].cancel()
        expected = {**empty, "all": 3, "critical": 1, "normal": 1, "low": 1, "10": 0}
        assert (expected, 2) == gauges()
        assert (expected, 2) == gauges()
        status = pool.status()
        assert (3, 2) == (status.queue_size, status.active_workers)
        gate.open.set()
    assert ({**empty, "10": 0}, 0) == gauges()


async def test_in_flight_and_workers_alive_follow_the_pool(
    registry: CollectorRegistry,
) -> None:
    """in_flight counts taken requests; workers_alive the workers while they run.

    This process is always listed (0 before the pool runs and after it closed),
    so its series never vanishes.
    """
    gate = Gate()
    metrics = PrometheusMetrics(registry)
    here = process_name()

    def gauges() -> tuple[float | None, dict[tuple[str, ...], float]]:
        in_flight = registry.get_sample_value(
            "queuekeeper_queue_in_flight", {"pool": "p"}
        )
        alive = samples(registry, "queuekeeper_queue_workers_alive", "process")
        return in_flight, alive

    def status() -> tuple[int, dict[str, int]]:
        snapshot = pool.status()
        return snapshot.in_flight, dict(snapshot.workers_alive)

    pool = WorkerPool(gate, workers=3, name="p", metrics=metrics)
    assert ((0, {here: 0}), (0, {(here,): 0})) == (status(), gauges())
    async with pool:
        await anyio.wait_all_tasks_blocked()
        assert ((0, {here: 3}), (0, {(here,): 3})) == (status(), gauges())
        for i in range(4):
            await pool.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert ((3, {here: 3}), (3, {(here,): 3})) == (status(), gauges())
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            assert "draining" == pool.status().state
            assert ((3, {here: 3}), (3, {(here,): 3})) == (status(), gauges())
            gate.open.set()
    assert ((0, {here: 0}), (0, {(here,): 0})) == (status(), gauges())


async def test_workers_and_queue_capacity_are_the_pools_settings(
    registry: CollectorRegistry,
) -> None:
    """workers and queue_capacity read the pool's settings, before, during and after.

    Unlike queue_workers_alive, workers is the pool's worker count whether or not
    they run, so busy / workers needs no number typed into a dashboard.
    """
    gate = Gate()
    metrics = PrometheusMetrics(registry)

    def gauges() -> tuple[float | None, float | None]:
        labels = {"pool": "p"}
        return (
            registry.get_sample_value("queuekeeper_workers", labels),
            registry.get_sample_value("queuekeeper_queue_capacity", labels),
        )

    pool = WorkerPool(gate, workers=3, max_queue_size=5, name="p", metrics=metrics)
    assert (3, 5) == gauges()  # attached when built, before it runs
    async with pool:
        for i in range(5):
            await pool.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert (3, 2) == (pool.status().active_workers, pool.status().queue_size)
        assert (3, 5) == gauges()  # settings, not how busy or how full
        gate.open.set()
    assert "closed" == pool.status().state
    assert (3, 5) == gauges()


async def test_unbounded_queue_capacity_is_positive_infinity(
    registry: CollectorRegistry,
) -> None:
    """An unbounded queue exports +Inf, so size / capacity reads 0, not no data."""
    metrics = PrometheusMetrics(registry)
    async with WorkerPool(scripted, workers=2, name="p", metrics=metrics) as pool:
        assert pool.status().max_queue_size is None
        assert (2, math.inf) == (
            registry.get_sample_value("queuekeeper_workers", {"pool": "p"}),
            registry.get_sample_value("queuekeeper_queue_capacity", {"pool": "p"}),
        )
    text = generate_latest(registry).decode()
    assert 'queuekeeper_queue_capacity{pool="p"} +Inf' in text.splitlines()


async def test_workers_and_queue_capacity_of_several_pools(
    registry: CollectorRegistry,
) -> None:
    """Each pool's settings under its own label, on one or two PrometheusMetrics."""
    one = PrometheusMetrics(registry)
    other = PrometheusMetrics(registry, namespace="other")
    pools = [
        WorkerPool(scripted, workers=1, max_queue_size=1, name="a", metrics=one),
        WorkerPool(scripted, workers=4, name="b", metrics=one),
        WorkerPool(scripted, workers=2, max_queue_size=100, name="c", metrics=one),
        WorkerPool(scripted, workers=7, max_queue_size=3, name="a", metrics=other),
    ]
    expected = {
        "queuekeeper": {("a",): 1, ("b",): 4, ("c",): 2},
        "other": {("a",): 7},
    }
    capacities = {
        "queuekeeper": {("a",): 1, ("b",): math.inf, ("c",): 100},
        "other": {("a",): 3},
    }

    def gauges(name: str) -> dict[str, dict[tuple[str, ...], float]]:
        return {
            ns: {
                key: value
                for pool in ("a", "b", "c")
                for key, value in samples(
                    registry, f"{ns}_{name}", "pool", pool=pool
                ).items()
            }
            for ns in ("queuekeeper", "other")
        }

    assert (expected, capacities) == (gauges("workers"), gauges("queue_capacity"))
    async with pools[0], pools[1], pools[2], pools[3]:
        assert "ok" == await pools[1].execute("ok")
        assert (expected, capacities) == (
            gauges("workers"),
            gauges("queue_capacity"),
        )
    assert (expected, capacities) == (gauges("workers"), gauges("queue_capacity"))


# -- several pools, several PrometheusMetrics -----------------------------------------


async def test_two_pools_on_one_registry_are_told_apart_by_label_pool(
    registry: CollectorRegistry,
) -> None:
    """Each pool's series carry its own name; nothing mixes."""
    metrics = PrometheusMetrics(registry)
    gate = Gate()
    async with (
        WorkerPool(gate, workers=1, name="a", metrics=metrics) as a,
        WorkerPool(scripted, workers=2, name="b", metrics=metrics) as b,
    ):
        for i in range(3):
            await a.submit(i)
        await b.execute("ok", priority=Priority.HIGH)
        with pytest.raises(ValueError, match="scripted failure"):
            await b.execute("fail", priority=Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        queue_size = "queuekeeper_queue_size"
        empty = {"all": 0, "critical": 0, "high": 0, "normal": 0, "low": 0}
        assert {**empty, "all": 2, "normal": 2} == by_priority(
            registry, queue_size, "a"
        )
        assert empty == by_priority(registry, queue_size, "b")
        active = "queuekeeper_queue_active_workers"
        assert 1 == registry.get_sample_value(active, {"pool": "a"})
        assert 0 == registry.get_sample_value(active, {"pool": "b"})
        gate.open.set()
    requests = "queuekeeper_queue_requests_total"
    assert {"normal": 3} == by_priority(registry, requests, "a")
    assert {"high": 1, "low": 1} == by_priority(registry, requests, "b")
    completed = "queuekeeper_requests_completed_total"
    assert {("normal", "succeeded"): 3} == samples(
        registry, completed, "priority", "outcome", pool="a"
    )
    assert {("high", "succeeded"): 1, ("low", "failed"): 1} == samples(
        registry, completed, "priority", "outcome", pool="b"
    )


async def test_second_prometheus_metrics_on_one_registry_shares_the_metrics(
    registry: CollectorRegistry,
) -> None:
    """A second PrometheusMetrics on the same registry reuses the first's metrics."""
    first = PrometheusMetrics(registry)
    second = PrometheusMetrics(registry)
    assert expected_types("queuekeeper") == exposed_types(registry)
    async with WorkerPool(scripted, name="a", metrics=first) as a:
        await a.execute("ok")
    async with WorkerPool(scripted, name="b", metrics=second) as b:
        await b.execute("ok")
        await b.execute("ok", priority=Priority.LOW)
    async with WorkerPool(scripted, name="a", metrics=second) as again:
        await again.execute("ok")  # a closed pool's name may be reused
    requests = "queuekeeper_queue_requests_total"
    assert {"normal": 2} == by_priority(registry, requests, "a")
    assert {"normal": 1, "low": 1} == by_priority(registry, requests, "b")


async def test_another_namespace_on_the_same_registry_gets_its_own_metrics(
    registry: CollectorRegistry,
) -> None:
    """Two namespaces on one registry: two independent sets of metrics."""
    one = PrometheusMetrics(registry)
    other = PrometheusMetrics(registry, namespace="other")
    assert expected_types("queuekeeper") | expected_types("other") == exposed_types(
        registry
    )
    async with WorkerPool(scripted, name="p", metrics=one) as pool:
        await pool.execute("ok")
    async with WorkerPool(scripted, name="p", metrics=other) as pool:
        await pool.execute("ok")
        await pool.execute("ok")
    assert {"normal": 1} == by_priority(registry, "queuekeeper_queue_requests_total")
    assert {"normal": 2} == by_priority(registry, "other_queue_requests_total")


async def test_two_running_pools_of_one_name_are_refused(
    registry: CollectorRegistry,
) -> None:
    """A second running pool may not report under a name already in use."""
    metrics = PrometheusMetrics(registry)
    async with WorkerPool(scripted, name="same", metrics=metrics):
        expected = "a running pool named 'same' already reports to these metrics"
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}"):
            WorkerPool(scripted, name="same", metrics=PrometheusMetrics(registry))
    async with WorkerPool(scripted, name="same", metrics=metrics) as pool:
        assert "ok" == await pool.execute("ok")


def test_registry_holding_those_names_is_a_value_error_and_left_as_it_was() -> None:
    """Foreign metrics of the same names: ValueError naming the namespace.

    The registry keeps only what it had: no half set of queuekeeper metrics
    stays behind to block a later attempt.
    """
    registry = CollectorRegistry()
    foreign = Counter(
        "queuekeeper_request_duration_seconds", "not ours", registry=registry
    )
    before = exposed_types(registry)
    expected = "^cannot register queuekeeper metrics with namespace 'queuekeeper': "
    for _ in range(2):
        with pytest.raises(ValueError, match=expected):
            PrometheusMetrics(registry)
        assert before == exposed_types(registry)
    PrometheusMetrics(registry, namespace="other")
    registry.unregister(foreign)
    PrometheusMetrics(registry)
    assert expected_types("queuekeeper") | expected_types("other") == exposed_types(
        registry
    )


# -- default registry, no metrics, bad input ----------------------------------------


@pytest.fixture
def default_registry_namespace() -> Iterator[str]:
    """A namespace to register on the global REGISTRY, removed afterwards."""
    namespace = "queuekeeper_test_default_registry"
    yield namespace
    instruments = _prometheus._shared.get(REGISTRY, {}).pop(namespace, None)
    if instruments is not None:
        for collector in (
            instruments.requests,
            instruments.rejected,
            instruments.wait,
            instruments.duration,
            instruments.completed,
            instruments.coalesced,
            instruments.gauges,
        ):
            REGISTRY.unregister(collector)


async def test_registry_none_means_the_default_registry(
    default_registry_namespace: str,
) -> None:
    """PrometheusMetrics(None) reports to prometheus_client's REGISTRY."""
    metrics = PrometheusMetrics(namespace=default_registry_namespace)
    assert REGISTRY is metrics.registry
    assert (
        f"<queuekeeper.PrometheusMetrics namespace={default_registry_namespace!r}>"
        == repr(metrics)
    )
    async with WorkerPool(scripted, name="default-test", metrics=metrics) as pool:
        await pool.execute("ok")
    assert 1 == REGISTRY.get_sample_value(
        f"{default_registry_namespace}_queue_requests_total",
        {"pool": "default-test", "priority": "normal"},
    )


async def test_metrics_none_runs_and_registers_nothing() -> None:
    """Without metrics the pool works and nothing reaches the default registry."""
    before = generate_latest(REGISTRY)
    async with WorkerPool(scripted, workers=2, metrics=None) as pool:
        assert "ok" == await pool.execute("ok")
        with pytest.raises(ValueError, match="scripted failure"):
            await pool.execute("fail")
    status = pool.status()
    assert (2, 1, 1) == (status.submitted, status.completed, status.failed)
    after = generate_latest(REGISTRY)
    assert [line for line in before.decode().splitlines() if "queuekeeper" in line] == [
        line for line in after.decode().splitlines() if "queuekeeper" in line
    ]


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        ("registry", "'registry'"),
        (42, "42"),
        ({}, r"\{\}"),
        (object(), "<object object at 0x[0-9a-f]+>"),
    ],
)
def test_registry_of_the_wrong_type_is_a_type_error(
    registry: object, message: str
) -> None:
    """A registry that is not a CollectorRegistry: TypeError naming the value."""
    prefix = "registry must be a prometheus_client.CollectorRegistry or None, not "
    expected = f"^{re.escape(prefix)}{message}$"
    with pytest.raises(TypeError, match=expected):
        PrometheusMetrics(registry)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        (1, "1 (int)"),
        (None, "None (NoneType)"),
        (b"qk", "b'qk' (bytes)"),
        (["qk"], "['qk'] (list)"),
    ],
)
def test_namespace_of_the_wrong_type_is_a_type_error(
    namespace: object, message: str
) -> None:
    """A namespace that is not a str: TypeError naming the value and its type."""
    expected = f"namespace must be a str, not {message}"
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
        PrometheusMetrics(CollectorRegistry(), namespace=namespace)  # type: ignore[arg-type]


def test_empty_namespace_is_a_value_error() -> None:
    """An empty namespace: ValueError naming it."""
    with pytest.raises(
        ValueError, match=r"^namespace must be a non-empty str, not ''$"
    ):
        PrometheusMetrics(CollectorRegistry(), namespace="")


@pytest.mark.parametrize("namespace", ["bad-name", "has space", "9lives", "ünï"])
def test_namespace_that_is_no_metric_name_is_a_value_error(namespace: str) -> None:
    """Whatever prometheus_client accepts, a namespace must be a plain metric name."""
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match=f"not {re.escape(repr(namespace))}$"):
        PrometheusMetrics(registry, namespace=namespace)
    assert [] == list(registry.collect())  # nothing half-registered
    PrometheusMetrics(registry, namespace="fine_name:sub")


def test_only_the_metrics_module_imports_prometheus_client() -> None:
    """prometheus_client stays behind one module: nothing else imports it."""
    import ast  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    import queuekeeper  # noqa: PLC0415

    importers = set()
    for path in Path(queuekeeper.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "prometheus_client" for name in names):
                importers.add(path.name)
    assert {"_prometheus.py"} == importers
