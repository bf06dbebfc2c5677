"""Helpers shared by the tests and by the soak script (``tests/soak.py``).

Handlers, counters and readers that more than one test module uses live here, once.
Test modules import them with ``from helpers import ...``: ``tests/`` is on
``sys.path`` (pytest puts a rootdir-less test directory there, and running
``python tests/soak.py`` puts the script's own directory first).

Only anyio, hypothesis and queuekeeper are imported at run time (and Trio, by
``run_on_virtual_time`` when called), so that the soak runs with
``queuekeeper[trio]`` and the test group alone (no prometheus_client).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from hypothesis import strategies as st

from queuekeeper import Priority, TicketState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

    from queuekeeper import PoolStatus, WorkerPool
    from queuekeeper.redis import RedisQueue

T = TypeVar("T")

#: The states a ticket ends in.
FINAL = frozenset(TicketState) - {TicketState.QUEUED, TicketState.RUNNING}
#: The named levels and two custom ones, one on either side of them.
LEVELS = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW, 0, 10)


# -- counting -----------------------------------------------------------------------


def settled(status: PoolStatus) -> int:
    """Count the requests that reached a final state."""
    return (
        status.completed
        + status.failed
        + status.cancelled
        + status.timed_out
        + status.shed
    )


def metric_total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of every sample of metric *name* in *registry* that has *labels*."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class CountingObserver:
    """A pool observer that counts events (the arguments are not needed)."""

    def __init__(self) -> None:
        self.submits = 0
        self.rejections = 0
        self.starts = 0
        self.outcomes: Counter[TicketState] = Counter()

    def attach(self, pool: Any) -> None:
        """Accept any pool."""

    def submitted(self, pool: str, priority: int) -> None:
        """Count a request accepted into the queue."""
        self.submits += 1

    def rejected(self, pool: str, priority: int) -> None:
        """Count a QueueFull."""
        self.rejections += 1

    def started(self, pool: str, priority: int, wait: float) -> None:
        """Count a start."""
        self.starts += 1

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        """Count a final state."""
        self.outcomes[outcome] += 1


# -- the pool's tasks (anyio: any backend) ------------------------------------------


def pool_task_names(pool: WorkerPool[Any, Any]) -> list[str]:
    """Names of the running tasks that belong to *pool* (workers, timekeeper)."""
    prefix = f"{pool.name}-"
    return sorted(
        task.name
        for task in anyio.get_running_tasks()
        if task.name is not None and task.name.startswith(prefix)
    )


def worker_names(pool: WorkerPool[Any, Any]) -> list[str]:
    """Names of *pool*'s worker tasks that are still alive."""
    return [name for name in pool_task_names(pool) if "-worker-" in name]


# -- handlers -----------------------------------------------------------------------


class Boom(Exception):
    """What a handler told to fail raises."""


class Gate:
    """A handler whose requests wait until the test lets them through."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.started: list[object] = []
        self.finished: list[object] = []

    async def __call__(self, request: object) -> object:
        self.started.append(request)
        await self.open.wait()
        if isinstance(request, BaseException):
            raise request
        self.finished.append(request)
        return request


async def echo(request: object) -> object:
    """Return the request after a checkpoint."""
    await anyio.lowlevel.checkpoint()
    return request


async def hang(request: object) -> object:
    """Never return on its own."""
    await anyio.sleep_forever()
    return request  # pragma: no cover


async def stray_cancellation() -> BaseException:
    """A cancellation caught in an inner scope that has exited: no pool issued it."""
    with anyio.CancelScope() as inner:
        inner.cancel()
        try:
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class() as exc:
            return exc
    raise AssertionError  # pragma: no cover


# -- channel scenarios ---------------------------------------------------------------

#: Random producers and consumers of a small channel, and when to cancel whom.
CANCELLATION_SCENARIOS = st.fixed_dictionaries(
    {
        "max_size": st.integers(1, 4),
        "producers": st.lists(
            st.lists(st.sampled_from([0, 1, 2, 3, 4, 10]), min_size=1, max_size=8),
            min_size=1,
            max_size=4,
        ),
        "consumers": st.integers(1, 4),
        # (checkpoints or loop turns to wait, which side's current call to cancel)
        "chaos": st.lists(st.tuples(st.integers(0, 6), st.integers(0, 7)), max_size=25),
    }
)


# -- virtual time -------------------------------------------------------------------


def run_on_virtual_time(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run *scenario* on Trio with a clock that jumps ahead whenever all tasks wait.

    Sleeps and timeouts then take no real time, and what happens when is decided
    by the virtual clock alone, never by how fast the machine runs.
    """
    from trio.testing import MockClock  # noqa: PLC0415 (trio is an extra)

    return anyio.run(
        scenario,
        backend="trio",
        backend_options={"clock": MockClock(autojump_threshold=0)},
    )


# -- Redis ----------------------------------------------------------------------------


async def until(condition: Callable[[], Awaitable[bool] | bool]) -> None:
    """Poll *condition* until it holds, for at most 30 s.

    For what changes in another process, another pool or on the Redis server,
    where no local event can say when.
    """
    with anyio.fail_after(30):
        while True:
            held = condition()
            if not isinstance(held, bool):
                held = await held
            if held:
                return
            await anyio.sleep(0.01)


async def queued_on_server(queue: RedisQueue) -> int:
    """How many requests the Redis server has queued."""
    return (await queue.fetch_statistics()).current_size
