"""docs/grafana-dashboard.json: a Grafana dashboard whose queries name real metrics.

Every PromQL query of the dashboard is read by a small reader of the language
(the part dashboards use, strict about the rest) and checked against what a
:class:`PrometheusMetrics` exposes after a pool ran: each metric name, each label
of a selector, ``by``, ``without``, ``on`` and ``ignoring``, each literal label
value, and each label a legend prints. A misspelt name fails here instead of
drawing an empty panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import anyio
import attrs
import pytest
from prometheus_client import CollectorRegistry

from helpers import Boom, Gate
from queuekeeper import (
    Backpressure,
    Priority,
    PrometheusMetrics,
    QueueFull,
    RequestCancelled,
    RequestShed,
    RequestTimeout,
    WorkerPool,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

DASHBOARD: Final = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"

#: Sample name -> label -> the values seen.
Exposed = dict[str, dict[str, set[str]]]

#: Labels Prometheus adds to every series when it scrapes.
SCRAPE_LABELS: Final = frozenset({"instance", "job"})
#: What the Grafana interval variables stand for, here.
INTERVALS: Final = ("$__rate_interval", "$__interval", "$__range")


# -- what the metrics expose ----------------------------------------------------------


async def run_every_outcome(registry: CollectorRegistry, namespace: str) -> Exposed:
    """Run one pool through every outcome, a rejection and a shed; then scrape."""
    metrics = PrometheusMetrics(registry, namespace=namespace)
    gate = Gate()
    async with WorkerPool(
        gate,
        workers=1,
        max_queue_size=1,
        backpressure=Backpressure.SHED,
        name="p",
        metrics=metrics,
    ) as pool:
        with pytest.raises(RequestTimeout):
            await pool.execute("held", timeout=0.01)
        running = await pool.submit("held", priority=Priority.CRITICAL)
        await anyio.wait_all_tasks_blocked()
        victim = await pool.submit("low", priority=Priority.LOW)
        newcomer = await pool.submit("high", priority=Priority.HIGH)  # sheds the LOW
        with pytest.raises(RequestShed):
            await victim.result()
        with pytest.raises(QueueFull):
            pool.submit_nowait("low", priority=Priority.LOW)  # nothing lower queued
        assert running.cancel()
        with pytest.raises(RequestCancelled):
            await running.result()
        gate.open.set()
        assert "high" == await newcomer.result()
        with pytest.raises(Boom):
            await pool.execute(Boom())
    # The gauges report the pools alive: the closed pool, held here, still is.
    assert "closed" == pool.status().state
    return exposed_by(registry)


def exposed_by(registry: CollectorRegistry) -> Exposed:
    """Each sample name of *registry*, with its labels and their values."""
    exposed: Exposed = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = exposed.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return exposed


def load_dashboard() -> dict[str, Any]:
    """The dashboard, as Grafana imports it."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def dashboard_namespace(dashboard: Mapping[str, Any]) -> str:
    """The metric namespace the dashboard's queries use (its constant variable)."""
    (namespace,) = (
        variable["query"]
        for variable in dashboard["templating"]["list"]
        if variable["name"] == "namespace"
    )
    assert isinstance(namespace, str)
    return namespace


@pytest.fixture(scope="module")
def exposed() -> Exposed:
    """What PrometheusMetrics exposes in the dashboard's namespace after a pool ran."""
    namespace = dashboard_namespace(load_dashboard())
    return anyio.run(run_every_outcome, CollectorRegistry(), namespace)


# -- a PromQL reader ------------------------------------------------------------------


class PromQLSyntaxError(ValueError):
    """A query this reader cannot read."""


@attrs.frozen
class Value:
    """What an expression gives: its kind, and the labels of its series.

    ``known`` is false for what a metric that does not exist feeds: its labels are
    then not checked, as the missing metric is the one problem to report.
    """

    kind: str  # "scalar", "string", "vector" or "matrix"
    labels: frozenset[str] = frozenset()
    known: bool = True


SCALAR: Final = Value("scalar")

_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},])
    """,
    re.VERBOSE,
)
_DURATION: Final = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_LEVELS: Final = (
    ("or",),
    ("and", "unless"),
    ("==", "!=", "<=", "<", ">=", ">"),
    ("+", "-"),
    ("*", "/", "%", "atan2"),
    ("^",),
)
_SET_OPS: Final = frozenset({"and", "or", "unless"})
_AGGREGATIONS: Final = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
)
#: Aggregations that keep their input's series (and so its labels) and take a
#: parameter first.
_SELECTIONS: Final = frozenset({"topk", "bottomk"})
_OVER_TIME: Final = ("rate", "irate", "increase", "delta", "deriv", "avg_over_time")
#: Function -> the kinds of its arguments, and what it gives.
_FUNCTIONS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    **dict.fromkeys(_OVER_TIME, (("matrix",), "same")),
    **dict.fromkeys(("abs", "ceil", "floor", "round"), (("vector",), "same")),
    "clamp_min": (("vector", "scalar"), "same"),
    "clamp_max": (("vector", "scalar"), "same"),
    "histogram_quantile": (("scalar", "vector"), "without le"),
    "scalar": (("vector",), "scalar"),
    "vector": (("scalar",), "vector"),
    "time": ((), "scalar"),
}


class Query:
    """One PromQL query, read: what it gives, the metrics it names, its problems.

    It reads selectors with matchers and ranges, the operators with ``bool``,
    ``on``, ``ignoring`` and ``group_*``, aggregations with ``by`` or ``without``,
    and the functions of ``_FUNCTIONS``; anything else (``offset``, ``@``,
    subqueries, another function) is a :exc:`PromQLSyntaxError`, so a query is
    never passed unread.
    """

    def __init__(self, source: str, exposed: Exposed) -> None:
        self.source = source
        self.exposed = exposed
        self.value = SCALAR
        self.metrics: set[str] = set()
        self.problems: list[str] = []
        self._tokens: list[tuple[str, str]] = []
        self._at = 0

    @classmethod
    def read(cls, source: str, exposed: Exposed, namespace: str) -> Query:
        """Read *source*, with Grafana's variables replaced as Grafana would.

        Raises:
            PromQLSyntaxError: *source* is not PromQL this reader knows.
        """
        text = source.replace("${namespace}", namespace)
        text = text.replace("$namespace", namespace)
        for interval in INTERVALS:
            text = text.replace(interval, "5m")
        query = cls(source, exposed)
        query._tokens = query._tokenize(text)
        query.value = query._expression()
        if query._at != len(query._tokens):
            query._fail(f"unexpected {query._peek()!r}")
        return query

    # tokens

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens = []
        at = 0
        while at < len(text):
            match = _TOKEN.match(text, at)
            if match is None:
                self._fail(f"cannot read {text[at:]!r}")
            at = match.end()
            if match.lastgroup != "space":
                tokens.append((str(match.lastgroup), match.group()))
        return tokens

    def _peek(self) -> str:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else ""

    def _kind(self) -> str:
        return self._tokens[self._at][0] if self._at < len(self._tokens) else ""

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if not token or (expected is not None and token != expected):
            self._fail(f"expected {expected or 'more'!r}, found {token or 'the end'!r}")
        self._at += 1
        return token

    def _fail(self, message: str) -> NoReturn:
        raise PromQLSyntaxError(f"{message} in {self.source!r}")

    def _labels(self) -> list[str]:
        """A parenthesised list of label names, as after ``by``."""
        self._take("(")
        labels = []
        while self._peek() != ")":
            if self._kind() != "name":
                self._fail(f"expected a label name, found {self._peek()!r}")
            labels.append(self._take())
            if self._peek() != ")":
                self._take(",")
        self._take(")")
        return labels

    # expressions

    def _expression(self, level: int = 0) -> Value:
        if level == len(_LEVELS):
            return self._unary()
        left = self._expression(level + 1)
        while self._peek() in _LEVELS[level]:
            op = self._take()
            if self._peek() == "bool":  # 0 or 1 instead of a filter: same labels
                self._take()
            matching: tuple[str, list[str]] | None = None
            if self._peek() in {"on", "ignoring"}:
                matching = (self._take(), self._labels())
            group: tuple[str, list[str]] | None = None
            if self._peek() in {"group_left", "group_right"}:
                keyword = self._take()
                group = (keyword, self._labels() if self._peek() == "(" else [])
            # ^ is right-associative: the rest of the chain binds to the right.
            right = self._expression(level if op == "^" else level + 1)
            left = self._binary(op, left, right, matching, group)
        return left

    def _binary(
        self,
        op: str,
        left: Value,
        right: Value,
        matching: tuple[str, list[str]] | None,
        group: tuple[str, list[str]] | None,
    ) -> Value:
        if "string" in {left.kind, right.kind} or "matrix" in {left.kind, right.kind}:
            self.problems.append(f"{op}: operands must be scalars or instant vectors")
            return left
        if left.kind == "scalar":
            return right
        if right.kind == "scalar":
            return left
        if not (left.known and right.known):
            return Value("vector", left.labels | right.labels, known=False)
        return self._vectors(op, left, right, matching, group)

    def _vectors(
        self,
        op: str,
        left: Value,
        right: Value,
        matching: tuple[str, list[str]] | None,
        group: tuple[str, list[str]] | None,
    ) -> Value:
        """Two vectors: check how their series match, and give the result's labels."""
        keyword, names = matching or ("ignoring", [])
        on = keyword == "on"
        for label in names:
            sides = [side for side in (left, right) if label in side.labels]
            if on and len(sides) < 2:
                self.problems.append(f"on({label}): not on both sides of {op}")
            elif not sides:
                self.problems.append(f"ignoring({label}): on neither side of {op}")
        if op in _SET_OPS:
            return Value(
                "vector", left.labels | right.labels if op == "or" else left.labels
            )
        if group is None:
            ignored = set(names)
            keys = (
                (set(names), set(names))
                if on
                else (set(left.labels) - ignored, set(right.labels) - ignored)
            )
            if keys[0] != keys[1]:
                self.problems.append(
                    f"{op}: one-to-one matching of series labelled {sorted(keys[0])} "
                    f"with {sorted(keys[1])} matches nothing"
                )
            return Value("vector", frozenset(keys[0]) if on else left.labels - ignored)
        keyword, extra = group
        many, one = (left, right) if keyword == "group_left" else (right, left)
        for label in extra:
            if label not in one.labels:
                self.problems.append(f"{keyword}({label}): no such label to copy")
        return Value("vector", many.labels | set(extra))

    def _unary(self) -> Value:
        if self._peek() in {"-", "+"}:
            self._take()
            return self._unary()
        return self._primary()

    def _primary(self) -> Value:
        kind, text = self._kind(), self._peek()
        if kind == "number" or text.lower() in {"inf", "nan"}:
            self._take()
            return SCALAR
        if kind == "string":
            self._take()
            return Value("string")
        if text == "(":
            self._take()
            value = self._expression()
            self._take(")")
            return value
        if kind != "name":
            self._fail(f"unexpected {text or 'end'!r}")
        self._take()
        if text in _AGGREGATIONS | _SELECTIONS:
            return self._aggregation(text)
        if self._peek() == "(":
            return self._function(text)
        return self._range(self._selector(text))

    def _range(self, value: Value) -> Value:
        if self._kind() != "range":
            return value
        window = self._take()[1:-1].strip()
        if ":" in window:
            self._fail(f"subqueries ([{window}]) are not read here")
        if not _DURATION.fullmatch(window):
            self._fail(f"{window!r} is not a duration")
        if value.kind != "vector":
            self.problems.append(f"[{window}] applies to an instant vector only")
        return Value("matrix", value.labels, known=value.known)

    def _selector(self, name: str) -> Value:
        labels = self.exposed.get(name)
        self.metrics.add(name)
        if labels is None:
            self.problems.append(f"no metric named {name!r}")
            labels = {}
        if self._peek() == "{":
            self._take()
            while self._peek() != "}":
                label = self._take()
                op = self._take()
                if op not in {"=", "!=", "=~", "!~"} or self._kind() != "string":
                    self._fail(f"bad matcher {label}{op}{self._peek()}")
                value = self._take()[1:-1]
                self._matcher(name, labels, label, op, value)
                if self._peek() != "}":
                    self._take(",")
            self._take("}")
        known = name in self.exposed
        return Value("vector", frozenset(labels) | SCRAPE_LABELS, known=known)

    def _matcher(
        self, name: str, labels: Mapping[str, set[str]], label: str, op: str, value: str
    ) -> None:
        if label in SCRAPE_LABELS or not labels:
            return
        if label not in labels:
            self.problems.append(f"{name} has no label {label!r}")
        elif op in {"=", "!="} and "$" not in value and value not in labels[label]:
            seen = sorted(labels[label])
            self.problems.append(f"{name}{{{label}}} is never {value!r} (seen: {seen})")

    def _aggregation(self, op: str) -> Value:
        grouping: tuple[str, list[str]] | None = None
        if self._peek() in {"by", "without"}:
            grouping = (self._take(), self._labels())
        self._take("(")
        if op in _SELECTIONS:
            self._argument("scalar", op)
            self._take(",")
        value = self._expression()
        self._take(")")
        if self._peek() in {"by", "without"}:
            if grouping is not None:
                self._fail(f"{op} has two groupings")
            grouping = (self._take(), self._labels())
        if value.kind != "vector":
            self.problems.append(f"{op} needs an instant vector, not a {value.kind}")
        keyword, names = grouping or ("by", [])
        if not value.known:
            return Value("vector", frozenset(names), known=False)
        for label in names:
            if label not in value.labels:
                self.problems.append(
                    f"{op} {keyword} ({label}): no series it covers has that label"
                )
        if op in _SELECTIONS:
            return Value("vector", value.labels)
        if keyword == "without":
            return Value("vector", value.labels - set(names))
        return Value("vector", frozenset(names) & value.labels)

    def _argument(self, kind: str, function: str) -> Value:
        value = self._expression()
        if value.kind != kind:
            self.problems.append(f"{function} needs a {kind}, not a {value.kind}")
        return value

    def _function(self, name: str) -> Value:
        known = _FUNCTIONS.get(name)
        if known is None:
            self._fail(f"function {name!r} is unknown to this reader")
        kinds, gives = known
        self._take("(")
        values = []
        for index, kind in enumerate(kinds):
            if index:
                self._take(",")
            values.append(self._argument(kind, name))
        self._take(")")
        series = [value for value in values if value.kind in {"vector", "matrix"}]
        labels = series[0].labels if series else frozenset()
        if gives == "scalar":
            return SCALAR
        if not all(value.known for value in series):
            return Value("vector", labels - {"le"}, known=False)
        if gives == "without le":
            if "le" not in labels:
                self.problems.append(f"{name} needs the buckets' label 'le'")
            return Value("vector", labels - {"le"})
        return Value("vector", labels)


# -- checking a dashboard -------------------------------------------------------------


def targets(dashboard: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each panel target, named by its panel's title and its refId."""
    return [
        (f"{panel['title']}/{target['refId']}", target)
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def query_problems(
    where: str, source: str, shown: str, exposed: Exposed, namespace: str
) -> tuple[set[str], list[str]]:
    """The metrics a query names, and what is wrong with it.

    *shown* is what is printed of each result series (a legend: ``{{pool}}``);
    each label it names must be one the result has.
    """
    try:
        query = Query.read(source, exposed, namespace)
    except PromQLSyntaxError as exc:
        return set(), [f"{where}: {exc}"]
    printed = re.findall(r"\{\{\s*(\w+)\s*\}\}", shown)
    problems = query.problems + [
        f"{{{{{label}}}}} names no label of the result"
        for label in printed
        if query.value.known and label not in query.value.labels
    ]
    return query.metrics, [f"{where}: {problem}" for problem in problems]


def dashboard_problems(
    dashboard: Mapping[str, Any], exposed: Exposed
) -> tuple[set[str], list[str]]:
    """Every metric the dashboard's queries name, and every problem with them."""
    namespace = dashboard_namespace(dashboard)
    metrics: set[str] = set()
    problems: list[str] = []
    for where, target in targets(dashboard):
        found, wrong = query_problems(
            where, target["expr"], target.get("legendFormat", ""), exposed, namespace
        )
        metrics |= found
        problems += wrong
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        where = f"variable {variable['name']}"
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
        if match is None:
            problems.append(f"{where}: not a label_values(metric, label) query")
            continue
        selector, label = match.groups()
        found, wrong = query_problems(
            where, selector, f"{{{{{label}}}}}", exposed, namespace
        )
        metrics |= found
        problems += wrong
    return metrics, problems


# -- the dashboard --------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_with_its_variables() -> None:
    """The JSON is a Grafana dashboard: variables, panels on one grid, one source."""
    dashboard = load_dashboard()
    assert 39 <= dashboard["schemaVersion"]
    assert (None, "queuekeeper-pools", "queuekeeper") == (
        dashboard["id"],
        dashboard["uid"],
        dashboard["title"],
    )
    variables = {
        variable["name"]: variable for variable in dashboard["templating"]["list"]
    }
    assert ["datasource", "namespace", "pool"] == list(variables)
    assert ("datasource", "prometheus") == (
        variables["datasource"]["type"],
        variables["datasource"]["query"],
    )
    assert ("constant", 2) == (
        variables["namespace"]["type"],
        variables["namespace"]["hide"],
    )
    pool = variables["pool"]
    assert ("query", True, True, ".*") == (
        pool["type"],
        pool["multi"],
        pool["includeAll"],
        pool["allValue"],
    )
    assert pool["query"] == pool["definition"]
    assert pool["query"].startswith("label_values(")

    source = {"type": "prometheus", "uid": "${datasource}"}
    assert source == pool["datasource"]
    panels = dashboard["panels"]
    assert len(panels) == len({panel["id"] for panel in panels})
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] in {"stat", "timeseries"}
        assert panel["title"]
        assert panel["description"]
        assert source == panel["datasource"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert source == target["datasource"]
            assert 'pool=~"$pool"' in target["expr"]


def test_every_query_names_metrics_and_labels_that_exist(exposed: Exposed) -> None:
    """Each metric, label, label value and legend label of every query is exposed."""
    _metrics, problems = dashboard_problems(load_dashboard(), exposed)
    assert [] == problems


def test_dashboard_draws_depth_waits_throughput_saturation_and_rejections(
    exposed: Exposed,
) -> None:
    """Depth, waits, throughput, saturation against workers, rejections and sheds."""
    dashboard = load_dashboard()
    metrics, _problems = dashboard_problems(dashboard, exposed)
    ns = dashboard_namespace(dashboard)
    assert {
        f"{ns}_queue_size",
        f"{ns}_queue_capacity",
        f"{ns}_queue_wait_time_seconds_bucket",
        f"{ns}_request_duration_seconds_bucket",
        f"{ns}_requests_completed_total",
        f"{ns}_queue_requests_total",
        f"{ns}_queue_active_workers",
        f"{ns}_workers",
        f"{ns}_queue_requests_rejected_total",
    } == metrics
    (saturation,) = (
        target["expr"]
        for where, target in targets(dashboard)
        if where.startswith("Worker saturation")
    )
    busy, workers = saturation.split(" / ")
    assert "_queue_active_workers{" in busy
    assert "${namespace}_workers{" in workers


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "${namespace}_workers{",
            "${namespace}_worker{",
            [
                "Workers/A: no metric named 'queuekeeper_worker'",
                (
                    "Worker saturation (busy / workers)/A: no metric named "
                    "'queuekeeper_worker'"
                ),
            ],
            id="misspelt-metric",
        ),
        pytest.param(
            "_workers, pool)",
            "_workers, priority)",
            ["variable pool: {{priority}} names no label of the result"],
            id="variable-of-a-missing-label",
        ),
        pytest.param(
            '"{{pool}} {{outcome}}"',
            '"{{pool}} {{status}}"',
            ["Throughput by outcome/A: {{status}} names no label of the result"],
            id="legend-of-a-missing-label",
        ),
    ],
)
def test_the_check_flags_a_mistake_in_the_dashboard(
    exposed: Exposed, old: str, new: str, expected: list[str]
) -> None:
    """The same check, on the dashboard with one mistake made, names the mistake."""
    text = DASHBOARD.read_text(encoding="utf-8")
    assert old in text
    _metrics, problems = dashboard_problems(json.loads(text.replace(old, new)), exposed)
    assert expected == problems


# -- the reader's checks, one mistake each ------------------------------------------


@pytest.mark.parametrize(
    ("query", "legend", "problem"),
    [
        pytest.param(
            "sum(queuekeeper_queue_sizes)",
            "",
            "no metric named 'queuekeeper_queue_sizes'",
            id="misspelt-metric",
        ),
        pytest.param(
            "queuekeeper_queue_requests_rejected",
            "",
            "no metric named 'queuekeeper_queue_requests_rejected'",
            id="counter-without-total",
        ),
        pytest.param(
            'queuekeeper_queue_requests_rejected_total{outcome="shed"}',
            "",
            "queuekeeper_queue_requests_rejected_total has no label 'outcome'",
            id="label-not-on-metric",
        ),
        pytest.param(
            'queuekeeper_requests_completed_total{outcome="shedded"}',
            "",
            "queuekeeper_requests_completed_total{outcome} is never 'shedded' (seen: "
            "['cancelled', 'failed', 'shed', 'succeeded', 'timed_out'])",
            id="misspelt-label-value",
        ),
        pytest.param(
            "sum by (priority) (queuekeeper_workers)",
            "",
            "sum by (priority): no series it covers has that label",
            id="by-label-not-on-metric",
        ),
        pytest.param(
            "sum without (outcome) (queuekeeper_queue_size)",
            "",
            "sum without (outcome): no series it covers has that label",
            id="without-label-not-on-metric",
        ),
        pytest.param(
            "histogram_quantile(0.5, sum by (priority) "
            "(rate(queuekeeper_queue_wait_time_seconds_bucket[5m])))",
            "",
            "histogram_quantile needs the buckets' label 'le'",
            id="quantile-without-le",
        ),
        pytest.param(
            "sum by (pool) (queuekeeper_queue_active_workers) "
            "/ sum by (pool, priority) (queuekeeper_queue_size)",
            "",
            "/: one-to-one matching of series labelled ['pool'] with "
            "['pool', 'priority'] matches nothing",
            id="unmatched-division",
        ),
        pytest.param(
            "queuekeeper_workers / on(process) queuekeeper_queue_workers_alive",
            "",
            "on(process): not on both sides of /",
            id="on-label-on-one-side",
        ),
        pytest.param(
            "rate(queuekeeper_queue_size)",
            "",
            "rate needs a matrix, not a vector",
            id="rate-of-an-instant-vector",
        ),
        pytest.param(
            "sum by (pool) (queuekeeper_workers)",
            "{{pool}} {{priority}}",
            "{{priority}} names no label of the result",
            id="legend-label-aggregated-away",
        ),
    ],
)
def test_the_check_flags_each_kind_of_mistake(
    exposed: Exposed, query: str, legend: str, problem: str
) -> None:
    """A query with one mistake gets exactly the problem that names it."""
    assert (["q: " + problem]) == query_problems(
        "q", query, legend, exposed, "queuekeeper"
    )[1]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("sum(", "unexpected 'end'", id="unfinished"),
        pytest.param(
            "sum by (pool) (queuekeeper_workers{pool=~$pool})",
            "cannot read '$pool})'",
            id="variable-outside-quotes",
        ),
        pytest.param(
            "label_replace(queuekeeper_workers, 'a', 'b', 'c', 'd')",
            "function 'label_replace' is unknown to this reader",
            id="unknown-function",
        ),
        pytest.param(
            "avg_over_time(queuekeeper_workers[1h:1m])",
            "subqueries ([1h:1m]) are not read here",
            id="subquery",
        ),
        pytest.param(
            "rate(queuekeeper_queue_requests_total[five])",
            "'five' is not a duration",
            id="bad-duration",
        ),
    ],
)
def test_queries_it_cannot_read_are_problems_too(
    exposed: Exposed, query: str, message: str
) -> None:
    """Nothing passes unread: syntax it does not know is reported, with the query."""
    expected = f"q: {message} in {query!r}"
    assert ([expected]) == query_problems("q", query, "", exposed, "queuekeeper")[1]


def test_the_reader_follows_labels_through_a_query(exposed: Exposed) -> None:
    """What a correct query gives: its labels through rate, by, quantiles and ops."""

    def read(query: str) -> tuple[str, set[str]]:
        value = Query.read(query, exposed, "queuekeeper").value
        return value.kind, set(value.labels - SCRAPE_LABELS)

    bucket = "queuekeeper_queue_wait_time_seconds_bucket"
    assert ("vector", {"pool", "priority"}) == read(
        f"histogram_quantile(0.9, sum by (pool, priority, le) (rate({bucket}[5m])))"
    )
    assert ("matrix", {"pool", "priority", "le"}) == read(f"{bucket}[1h30m]")
    assert ("vector", {"pool"}) == read(
        "queuekeeper_queue_active_workers / ignoring(process) "
        "queuekeeper_queue_workers_alive"
    )
    assert ("vector", {"pool", "process"}) == read(
        "queuekeeper_queue_workers_alive * on(pool) group_left() queuekeeper_workers"
    )
    assert ("vector", {"pool", "priority"}) == read(
        'sum without (outcome) (queuekeeper_requests_completed_total{outcome!="shed"})'
        " or on(pool) -queuekeeper_queue_capacity ^ 2 ^ 0.5 > bool +Inf"
    )
    assert ("scalar", set()) == read("scalar(max(queuekeeper_workers)) * 2")
