"""``queuekeeper bench``: priority-queue implementations compared, queuekeeper in.

Three tests, laid out as in the comparison that informed this design:

1. **Single task**: enqueue *tasks* items at four random priorities, then dequeue
   them all, without any waiting (``heappush``/``put_nowait``/``send_nowait``
   and their counterparts).
2. **Concurrent**: 5 producers and 5 consumers (threads for
   :class:`queue.PriorityQueue`, tasks for the async ones) move *tasks* items;
   queue latency is dequeue time minus enqueue time.
3. **End to end**: ``5 * tasks`` no-op requests through :class:`WorkerPool`
   and two hand-written pools (an :class:`asyncio.PriorityQueue` with a future
   per request; an anyio memory object stream with an Event per request).

Every sample is paired with a bare ``heapq`` loop run just before it, and reported
as a ratio to it: absolute figures on a shared machine swing from run to run,
ratios much less. Each figure is the median over ``--repeat`` samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import heapq
import itertools
import math
import os
import platform
import queue
import random
import statistics
import sys
import threading
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from .._channel import create_priority_channel
from .._order import aging_clock
from .._policies import WeightedFair
from .._pool import WorkerPool
from .._states import Backpressure

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import TextIO

__all__ = ["BenchConfig", "implementation_names", "plot", "run_bench"]

#: The four levels of the comparison, CRITICAL to LOW.
LEVELS: Final = (1, 2, 3, 4)
_LEVEL_NAMES: Final = {1: "CRITICAL", 2: "HIGH", 3: "NORMAL", 4: "LOW"}
#: The weights of the ``queuekeeper-fair@...`` rows.
_FAIR: Final = WeightedFair({1: 8, 2: 4, 3: 2, 4: 1})
_SENTINEL: Final = 99  # sorts after every level: tells a consumer to stop
_RULE: Final = "=" * 78
_THIN: Final = "-" * 78

# A work item: (priority, producer, sequence number within the producer).
Item = tuple[int, int, int]
# What the single-task queues store: (priority, seq, item), so order can be checked.
Entry = tuple[int, int, Item]


@attrs.frozen
class BenchConfig:
    """What ``queuekeeper bench`` measures.

    Attributes:
        tasks: Items per single-task and concurrent run; the end-to-end runs
            pass ``5 * tasks`` requests.
        repeat: Samples per implementation; figures are their medians.
        only: Implementation names to run (empty: all). The heapq reference
            always runs: every figure is a ratio to it.
        producers: Producers in the concurrent and end-to-end runs.
        consumers: Consumers (workers) in the concurrent and end-to-end runs.
        capacity: Bound of the bounded queues.
        seed: Seed of the random priorities.
    """

    tasks: int = 10_000
    repeat: int = 5
    only: tuple[str, ...] = ()
    producers: int = 5
    consumers: int = 5
    capacity: int = 100
    seed: int = 1

    @property
    def requests(self) -> int:
        """Requests per end-to-end run."""
        return 5 * self.tasks


@attrs.frozen
class _Impl:
    name: str
    section: str  # "single", "concurrent" or "pool"
    description: str
    # "priority", "fifo" (FIFO references have no priority order) or "fair"
    # (weighted fair sharing: no strict priority order either).
    kind: str
    # Called with the config and, for "single", the prebuilt entries, else the items.
    run: Callable[[BenchConfig, Any], dict[str, Any]]


# -- measuring -----------------------------------------------------------------


def _items(config: BenchConfig, count: int) -> list[Item]:
    """*count* items at random levels, dealt round-robin to the producers."""
    rng = random.Random(config.seed)  # noqa: S311 (not cryptography)
    per_producer = [0] * config.producers
    items = []
    for index in range(count):
        producer = index % config.producers
        items.append((rng.choice(LEVELS), producer, per_producer[producer]))
        per_producer[producer] += 1
    return items


def _rss() -> int | None:
    try:
        import psutil  # noqa: PLC0415 (optional)
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _no_rss() -> None:
    return None


class _Quiet:
    """Collect garbage, then keep the collector out of a timed section."""

    def __enter__(self) -> None:
        gc.collect()
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._enabled:
            gc.enable()


#: Bulk passes per single-task sample (and per heapq reference): the fastest
#: counts, as with timeit, since noise only ever adds time.
_BEST_OF: Final = 5


def _heapq_ns_per_op(items: list[Item]) -> float:
    """The reference: a bare heappush/heappop loop, nanoseconds per operation."""
    push, pop = heapq.heappush, heapq.heappop
    best = math.inf
    for _ in range(_BEST_OF):
        heap: list[tuple[int, int, Item]] = []
        with _Quiet():
            start = time.perf_counter_ns()
            for seq, item in enumerate(items):
                push(heap, (item[0], seq, item))
            for _ in range(len(items)):
                pop(heap)
            elapsed = time.perf_counter_ns() - start
        best = min(best, elapsed)
    return best / (2 * len(items))


def _order_violations(order: Sequence[tuple[int, int]]) -> int:
    """Dequeues that came out of (priority, FIFO) order."""
    return sum(1 for a, b in itertools.pairwise(order) if b < a)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _single_sample(
    open_queue: Callable[[], tuple[Callable[..., object], Callable[[], Any]]],
    entries: list[Entry],
    *,
    with_priority: bool = False,
    clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Turn the best of a few bulk passes and a per-operation pass into one sample.

    *open_queue* opens a fresh queue under test for each pass and returns its bare
    enqueue and dequeue; *with_priority* and *clock* say how they are called (see
    :func:`_bulk_pass`).

    Memory is read in a pass of its own: reading it between the enqueues and the
    dequeues would leave the caches cold for the timed dequeues.
    """
    pass_ = functools.partial(_bulk_pass, with_priority=with_priority, clock=clock)
    _, order, memory = pass_(*open_queue(), entries, memory=True)
    elapsed = min(pass_(*open_queue(), entries)[0] for _ in range(_BEST_OF))
    enqueue, dequeue = _timed_pass(
        *open_queue(), entries, with_priority=with_priority, clock=clock
    )
    enqueue.sort()
    dequeue.sort()
    return {
        "ns_per_op": elapsed / (2 * len(entries)),
        "ops_per_s": 2 * len(entries) / (elapsed / 1e9),
        "enqueue_us_avg": statistics.fmean(enqueue) / 1e3,
        "enqueue_us_p99": _percentile(enqueue, 0.99) / 1e3,
        "dequeue_us_avg": statistics.fmean(dequeue) / 1e3,
        "dequeue_us_p99": _percentile(dequeue, 0.99) / 1e3,
        "memory_bytes": memory,
        "violations": _order_violations(order),
        "errors": 0,
    }


def _entries(items: list[Item]) -> list[Entry]:
    """What the single-task queues store, built once for a whole bench run.

    Every pass of every implementation then moves the same objects, laid out in
    memory the same way. Entries built afresh for each pass would sit wherever the
    previous pass freed its own, in the order that pass dequeued them, and how
    scattered they are shows in the next pass's time.
    """
    return [(item[0], seq, item) for seq, item in enumerate(items)]


def _bulk_pass(
    put: Callable[..., object],
    get: Callable[[], Any],
    entries: list[Entry],
    *,
    memory: bool = False,
    with_priority: bool = False,
    clock: Callable[[], float] | None = None,
) -> tuple[int, list[tuple[int, int]], int | None]:
    """Enqueue all, dequeue all; the time of both, the order, memory held.

    *put* is called bare: a priority channel's ``put`` takes ``(entry, priority)``,
    the others ``(entry)``. With a *clock*, the pass does beside a FIFO what
    aging needs at the least: each entry goes in with a reading of the clock,
    and each dequeue reads it and compares it with a deadline (see
    :func:`_single_anyio_stream`).
    """
    count = len(entries)
    rss = _rss if memory else _no_rss
    never = math.inf
    with _Quiet():
        before = rss()
        start = time.perf_counter_ns()
        if with_priority:
            for entry in entries:
                put(entry, entry[0])
        elif clock is not None:
            for entry in entries:
                put((clock(), entry))
        else:
            for entry in entries:
                put(entry)
        middle = time.perf_counter_ns()
        held = rss()
        resume = time.perf_counter_ns()
        if clock is None:
            out = [get() for _ in range(count)]
        else:
            out = [get()[1] for _ in range(count) if clock() < never]
        elapsed = middle - start + time.perf_counter_ns() - resume
    held_bytes = None if before is None or held is None else max(0, held - before)
    return elapsed, [(entry[0], entry[1]) for entry in out], held_bytes


def _timed_pass(
    put: Callable[..., object],
    get: Callable[[], Any],
    entries: list[Entry],
    *,
    with_priority: bool = False,
    clock: Callable[[], float] | None = None,
) -> tuple[list[int], list[int]]:
    """Enqueue all, dequeue all, timing every operation (ns); calls as _bulk_pass."""
    timer = time.perf_counter_ns
    never = math.inf
    enqueue, dequeue = [], []
    with _Quiet():
        for entry in entries:
            start = timer()
            if with_priority:
                put(entry, entry[0])
            elif clock is not None:
                put((clock(), entry))
            else:
                put(entry)
            enqueue.append(timer() - start)
        for _ in entries:
            start = timer()
            if clock is None or clock() < never:  # pragma: no branch (never: inf)
                get()
            dequeue.append(timer() - start)
    return enqueue, dequeue


def _single_heapq(config: BenchConfig, entries: list[Entry]) -> dict[str, Any]:
    del config

    def open_queue() -> tuple[Callable[..., object], Callable[[], Any]]:
        heap: list[tuple[int, int, Item]] = []
        return (
            functools.partial(heapq.heappush, heap),
            functools.partial(heapq.heappop, heap),
        )

    return _single_sample(open_queue, entries)


def _single_queue_pq(config: BenchConfig, entries: list[Entry]) -> dict[str, Any]:
    del config

    def open_queue() -> tuple[Callable[..., object], Callable[[], Any]]:
        pq: queue.PriorityQueue[tuple[int, int, Item]] = queue.PriorityQueue()
        return pq.put_nowait, pq.get_nowait

    return _single_sample(open_queue, entries)


def _single_locked_heapq(config: BenchConfig, entries: list[Entry]) -> dict[str, Any]:
    del config

    def open_queue() -> tuple[Callable[..., object], Callable[[], Any]]:
        heap: list[tuple[int, int, Item]] = []
        lock = threading.Lock()

        def put(entry: tuple[int, int, Item]) -> None:
            with lock:
                heapq.heappush(heap, entry)

        def get() -> tuple[int, int, Item]:
            with lock:
                return heapq.heappop(heap)

        return put, get

    return _single_sample(open_queue, entries)


def _single_asyncio_pq(config: BenchConfig, entries: list[Entry]) -> dict[str, Any]:
    del config

    async def sample() -> dict[str, Any]:
        def open_queue() -> tuple[Callable[..., object], Callable[[], Any]]:
            pq: asyncio.PriorityQueue[tuple[int, int, Item]] = asyncio.PriorityQueue()
            return pq.put_nowait, pq.get_nowait

        return _single_sample(open_queue, entries)

    return anyio.run(sample, backend="asyncio")


def _single_anyio_stream(
    backend: str, *, clocked: bool = False
) -> Callable[[BenchConfig, list[Entry]], Any]:
    """The anyio stream's single-task pass; *clocked*: with aging's clock reads.

    A channel that ages its items by the clock must read the clock on every
    send (each item's arrival time) and, while more than one level holds items,
    on every receive (whether a queued item has aged yet). The *clocked* pass
    gives the stream nothing else: the clock an aging channel reads, a reading
    kept with each item, one read and compared at each dequeue. What it costs is
    the floor under the aging target: no aging channel can cost less.
    """

    def run(config: BenchConfig, entries: list[Entry]) -> dict[str, Any]:
        del config

        async def sample() -> dict[str, Any]:
            clock = aging_clock() if clocked else None
            opened: list[Any] = []

            def open_queue() -> tuple[Callable[..., object], Callable[[], Any]]:
                send, receive = anyio.create_memory_object_stream[
                    tuple[int, int, Item]
                ](math.inf)
                opened.extend((send, receive))
                return send.send_nowait, receive.receive_nowait

            try:
                return _single_sample(open_queue, entries, clock=clock)
            finally:
                for stream in opened:
                    stream.close()

        return anyio.run(sample, backend=backend)

    return run


def _single_channel(
    backend: str, aging: float | None = None, scheduling: WeightedFair | None = None
) -> Callable[[BenchConfig, list[Entry]], Any]:
    def run(config: BenchConfig, entries: list[Entry]) -> dict[str, Any]:
        del config

        async def sample() -> dict[str, Any]:
            def open_queue() -> tuple[Callable[..., object], Callable[[], Any]]:
                send, receive = create_priority_channel[tuple[int, int, Item]](
                    aging=aging, scheduling=scheduling
                )
                return send.send_nowait, receive.receive_nowait

            return _single_sample(open_queue, entries, with_priority=True)

        return anyio.run(sample, backend=backend)

    return run


# -- concurrent ----------------------------------------------------------------


def _concurrent_sample(
    config: BenchConfig, elapsed: int, latencies: list[int], got: list[list[Item]]
) -> dict[str, Any]:
    latencies.sort()
    per_level = dict.fromkeys(LEVELS, 0)
    for received in got:
        last: dict[tuple[int, int], int] = {}
        for level, producer, seq in received:
            key = (level, producer)
            if seq < last.get(key, -1):
                per_level[level] += 1
            last[key] = seq
    total = sum(len(received) for received in got)
    return {
        "ns_per_op": elapsed / (2 * config.tasks),
        "ops_per_s": 2 * config.tasks / (elapsed / 1e9),
        "latency_us_p50": _percentile(latencies, 0.50) / 1e3,
        "latency_us_p99": _percentile(latencies, 0.99) / 1e3,
        "violations": sum(per_level.values()),
        "violations_per_level": {_LEVEL_NAMES[k]: v for k, v in per_level.items()},
        "errors": 0 if total == config.tasks else abs(config.tasks - total),
    }


def _split(config: BenchConfig, items: list[Item]) -> list[list[Item]]:
    return [[item for item in items if item[1] == p] for p in range(config.producers)]


def _concurrent_threads(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
    pq: queue.PriorityQueue[tuple[int, int, Item, int]] = queue.PriorityQueue()
    counter = itertools.count()
    latencies: list[int] = []
    got: list[list[Item]] = [[] for _ in range(config.consumers)]
    clock = time.perf_counter_ns

    def produce(mine: list[Item]) -> None:
        for item in mine:
            pq.put((item[0], next(counter), item, clock()))

    def consume(received: list[Item]) -> None:
        while True:
            level, _, item, sent = pq.get()
            if level == _SENTINEL:
                return
            latencies.append(clock() - sent)
            received.append(item)

    producers = [
        threading.Thread(target=produce, args=(m,)) for m in _split(config, items)
    ]
    consumers = [threading.Thread(target=consume, args=(g,)) for g in got]
    with _Quiet():
        start = clock()
        for thread in (*consumers, *producers):
            thread.start()
        try:
            for thread in producers:
                thread.join()
        finally:
            for _ in consumers:
                pq.put((_SENTINEL, next(counter), (0, 0, 0), 0))
            for thread in consumers:
                thread.join()
        elapsed = clock() - start
    return _concurrent_sample(config, elapsed, latencies, got)


def _concurrent_asyncio_pq(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
    async def sample() -> dict[str, Any]:
        pq: asyncio.PriorityQueue[tuple[int, int, Item, int]] = asyncio.PriorityQueue()
        counter = itertools.count()
        latencies: list[int] = []
        got: list[list[Item]] = [[] for _ in range(config.consumers)]
        clock = time.perf_counter_ns

        async def produce(mine: list[Item]) -> None:
            for item in mine:
                await pq.put((item[0], next(counter), item, clock()))

        async def consume(received: list[Item]) -> None:
            while True:
                level, _, item, sent = await pq.get()
                if level == _SENTINEL:
                    return
                latencies.append(clock() - sent)
                received.append(item)

        with _Quiet():
            start = clock()
            async with anyio.create_task_group() as consumers:
                for received in got:
                    consumers.start_soon(consume, received)
                async with anyio.create_task_group() as producers:
                    for mine in _split(config, items):
                        producers.start_soon(produce, mine)
                for _ in got:
                    pq.put_nowait((_SENTINEL, next(counter), (0, 0, 0), 0))
            elapsed = clock() - start
        return _concurrent_sample(config, elapsed, latencies, got)

    return anyio.run(sample, backend="asyncio")


async def _produce_priority(send: Any, mine: list[Item]) -> None:  # noqa: ANN401
    clock = time.perf_counter_ns
    async with send:
        for item in mine:
            await send.send((item, clock()), item[0])


async def _produce_one_level(send: Any, mine: list[Item]) -> None:  # noqa: ANN401
    clock = time.perf_counter_ns
    async with send:
        for item in mine:
            await send.send((item, clock()), 3)  # all at NORMAL


async def _produce_fifo(send: Any, mine: list[Item]) -> None:  # noqa: ANN401
    clock = time.perf_counter_ns
    async with send:
        for item in mine:
            await send.send((item, clock()))


async def _consume(receive: Any, received: list[Item], latencies: list[int]) -> None:  # noqa: ANN401
    clock = time.perf_counter_ns
    async with receive:
        async for item, sent in receive:
            latencies.append(clock() - sent)
            received.append(item)


def _concurrent_stream(
    backend: str, *, priority: bool, bounded: bool, one_level: bool = False
) -> Callable[[BenchConfig, list[Item]], Any]:
    """5 + 5 tasks on an anyio memory object stream or a priority channel."""

    def run(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
        async def sample() -> dict[str, Any]:
            size = config.capacity if bounded else math.inf
            latencies: list[int] = []
            got: list[list[Item]] = [[] for _ in range(config.consumers)]
            send: Any
            receive: Any
            if priority:
                send, receive = create_priority_channel[tuple[Item, int]](size)
            else:
                send, receive = anyio.create_memory_object_stream[tuple[Item, int]](
                    size
                )
            produce = (
                (_produce_one_level if one_level else _produce_priority)
                if priority
                else _produce_fifo
            )
            with _Quiet():
                start = time.perf_counter_ns()
                async with anyio.create_task_group() as tg, send, receive:
                    for mine in _split(config, items):
                        tg.start_soon(produce, send.clone(), mine)
                    for received in got:
                        tg.start_soon(_consume, receive.clone(), received, latencies)
                elapsed = time.perf_counter_ns() - start
            return _concurrent_sample(config, elapsed, latencies, got)

        return anyio.run(sample, backend=backend)

    return run


# -- end to end ----------------------------------------------------------------


async def _noop(request: object) -> object:
    return request


def _pool_sample(config: BenchConfig, elapsed: int) -> dict[str, Any]:
    return {
        "ns_per_op": elapsed / config.requests,
        "requests_per_s": config.requests / (elapsed / 1e9),
        "overhead_us": elapsed / config.requests / 1e3,
        "errors": 0,
    }


def _pool_queuekeeper(backend: str) -> Callable[[BenchConfig, list[Item]], Any]:
    def run(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
        async def sample() -> dict[str, Any]:
            async def produce(pool: WorkerPool[Item, object], mine: list[Item]) -> None:
                tickets = [await pool.submit(item, priority=item[0]) for item in mine]
                for ticket in tickets:
                    await ticket.result()

            pool: WorkerPool[Item, object] = WorkerPool(
                _noop,
                workers=config.consumers,
                max_queue_size=config.capacity,
                backpressure=Backpressure.BLOCK,
                name="bench",
            )
            with _Quiet():
                start = time.perf_counter_ns()
                async with pool, anyio.create_task_group() as tg:
                    for mine in _split(config, items):
                        tg.start_soon(produce, pool, mine)
                elapsed = time.perf_counter_ns() - start
            return _pool_sample(config, elapsed)

        return anyio.run(sample, backend=backend)

    return run


def _pool_asyncio_baseline(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
    """asyncio.PriorityQueue, worker tasks and one future per request."""

    async def sample() -> dict[str, Any]:
        pq: asyncio.PriorityQueue[tuple[int, int, Item, asyncio.Future[object]]]
        pq = asyncio.PriorityQueue(config.capacity)
        counter = itertools.count()
        loop = asyncio.get_running_loop()

        async def work() -> None:
            while True:
                _, _, item, future = await pq.get()
                try:
                    future.set_result(await _noop(item))
                # Never taken (_noop cannot raise): the baseline keeps the error
                # handling that a real pool's worker needs.
                except Exception as exc:  # noqa: BLE001 (handed to the caller)  # pragma: no cover
                    future.set_exception(exc)

        async def produce(mine: list[Item]) -> None:
            futures = []
            for item in mine:
                future = loop.create_future()
                await pq.put((item[0], next(counter), item, future))
                futures.append(future)
            for future in futures:
                await future

        with _Quiet():
            start = time.perf_counter_ns()
            async with anyio.create_task_group() as workers:
                for _ in range(config.consumers):
                    workers.start_soon(work)
                async with anyio.create_task_group() as producers:
                    for mine in _split(config, items):
                        producers.start_soon(produce, mine)
                workers.cancel_scope.cancel()
            # Every bench run gets here (tests/test_bench.py checks this pool's
            # figures), but CPython 3.11 cannot show it to coverage: ending the
            # workers throws a cancellation into this task, after which its trace
            # events are out of step (python/cpython#106749; 3.12 measures it).
            elapsed = time.perf_counter_ns() - start  # pragma: no cover
        return _pool_sample(config, elapsed)  # pragma: no cover

    return anyio.run(sample, backend="asyncio")


class _Box:
    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: object = None


def _pool_anyio_stream(backend: str) -> Callable[[BenchConfig, list[Item]], Any]:
    """An anyio memory object stream, worker tasks and an Event per request."""

    def run(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
        async def sample() -> dict[str, Any]:
            send, receive = anyio.create_memory_object_stream[tuple[Item, _Box]](
                config.capacity
            )

            async def work(receive: Any) -> None:  # noqa: ANN401
                async with receive:
                    async for item, box in receive:
                        box.value = await _noop(item)
                        box.done.set()

            async def produce(send: Any, mine: list[Item]) -> None:  # noqa: ANN401
                boxes = []
                async with send:
                    for item in mine:
                        box = _Box()
                        await send.send((item, box))
                        boxes.append(box)
                for box in boxes:
                    await box.done.wait()

            with _Quiet():
                start = time.perf_counter_ns()
                async with anyio.create_task_group() as tg, send, receive:
                    for _ in range(config.consumers):
                        tg.start_soon(work, receive.clone())
                    for mine in _split(config, items):
                        tg.start_soon(produce, send.clone(), mine)
                elapsed = time.perf_counter_ns() - start
            return _pool_sample(config, elapsed)

        return anyio.run(sample, backend=backend)

    return run


def _pool_aiojobs(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
    """The aiojobs Scheduler: a job per request, 5 at once, the rest pending (FIFO)."""
    import aiojobs  # noqa: PLC0415 (the cli extra's; checked before the run)

    async def sample() -> dict[str, Any]:
        scheduler = aiojobs.Scheduler(
            limit=config.consumers, pending_limit=config.capacity
        )

        async def produce(mine: list[Item]) -> None:
            jobs = [await scheduler.spawn(_noop(item)) for item in mine]
            for job in jobs:
                await job.wait()

        with _Quiet():
            start = time.perf_counter_ns()
            async with anyio.create_task_group() as producers:
                for mine in _split(config, items):
                    producers.start_soon(produce, mine)
            elapsed = time.perf_counter_ns() - start
        await scheduler.close()
        return _pool_sample(config, elapsed)

    return anyio.run(sample, backend="asyncio")


def _pool_semaphore(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
    """A task per request, 5 at once under an asyncio.Semaphore (FIFO wake-ups)."""

    async def sample() -> dict[str, Any]:
        semaphore = asyncio.Semaphore(config.consumers)
        loop = asyncio.get_running_loop()

        async def run_one(item: Item) -> object:
            async with semaphore:
                return await _noop(item)

        async def produce(mine: list[Item]) -> None:
            tasks = []
            for item in mine:
                tasks.append(loop.create_task(run_one(item)))
                await asyncio.sleep(0)  # as a submit would: one turn per request
            for task in tasks:
                await task

        with _Quiet():
            start = time.perf_counter_ns()
            async with anyio.create_task_group() as producers:
                for mine in _split(config, items):
                    producers.start_soon(produce, mine)
            elapsed = time.perf_counter_ns() - start
        return _pool_sample(config, elapsed)

    return anyio.run(sample, backend="asyncio")


def _pool_capacity_limiter(backend: str) -> Callable[[BenchConfig, list[Item]], Any]:
    """A task per request, 5 at once under an anyio.CapacityLimiter."""

    def run(config: BenchConfig, items: list[Item]) -> dict[str, Any]:
        async def sample() -> dict[str, Any]:
            limiter = anyio.CapacityLimiter(config.consumers)

            async def run_one(item: Item, box: _Box) -> None:
                async with limiter:
                    box.value = await _noop(item)

            async def produce(mine: list[Item]) -> None:
                async with anyio.create_task_group() as requests:
                    for item in mine:
                        requests.start_soon(run_one, item, _Box())
                        await anyio.lowlevel.checkpoint()  # as a submit would

            with _Quiet():
                start = time.perf_counter_ns()
                async with anyio.create_task_group() as producers:
                    for mine in _split(config, items):
                        producers.start_soon(produce, mine)
                elapsed = time.perf_counter_ns() - start
            return _pool_sample(config, elapsed)

        return anyio.run(sample, backend=backend)

    return run


# -- the registry ----------------------------------------------------------------

_IMPLEMENTATIONS: Final = (
    _Impl(
        "heapq", "single", "heapq (stdlib, single-threaded)", "priority", _single_heapq
    ),
    _Impl(
        "queue.PriorityQueue",
        "single",
        "queue.PriorityQueue (stdlib, thread-safe)",
        "priority",
        _single_queue_pq,
    ),
    _Impl(
        "asyncio.PriorityQueue",
        "single",
        "asyncio.PriorityQueue (stdlib, async)",
        "priority",
        _single_asyncio_pq,
    ),
    _Impl(
        "heapq+lock",
        "single",
        "ThreadSafeHeapQueue (heapq with threading.Lock)",
        "priority",
        _single_locked_heapq,
    ),
    # Each channel right after its reference: the target compares the two
    # samples of a round, and the closer in time, the less the machine's
    # changes of pace weigh in their ratio.
    *(
        impl
        for backend in ("asyncio", "trio")
        for impl in (
            _Impl(
                f"anyio-stream@{backend}",
                "single",
                f"anyio memory object stream on {backend} (FIFO reference)",
                "fifo",
                _single_anyio_stream(backend),
            ),
            _Impl(
                f"queuekeeper@{backend}",
                "single",
                f"queuekeeper priority channel on {backend}",
                "priority",
                _single_channel(backend),
            ),
            # What aging cannot do without, on the stream: the floor under the
            # aging target (see _single_anyio_stream).
            _Impl(
                f"anyio-stream+clock@{backend}",
                "single",
                f"anyio memory object stream plus the clock reads aging needs,"
                f" on {backend} (the floor under aging)",
                "fifo",
                _single_anyio_stream(backend, clocked=True),
            ),
            # An hour per level: nothing ages within a pass, so the order stays
            # checkable; what is measured is what aging costs a send and a receive.
            _Impl(
                f"queuekeeper-aging@{backend}",
                "single",
                f"queuekeeper priority channel with aging=3600 on {backend}",
                "priority",
                _single_channel(backend, aging=3600.0),
            ),
            # Weights 8:4:2:1: the order is no strict priority order, so it is
            # not checked here (tests/test_fair.py checks the shares).
            _Impl(
                f"queuekeeper-fair@{backend}",
                "single",
                f"queuekeeper priority channel with WeightedFair on {backend}",
                "fair",
                _single_channel(backend, scheduling=_FAIR),
            ),
        )
    ),
    _Impl(
        "concurrent-threads",
        "concurrent",
        "queue.PriorityQueue, 5 producer + 5 consumer threads",
        "priority",
        _concurrent_threads,
    ),
    _Impl(
        "concurrent-asyncio",
        "concurrent",
        "asyncio.PriorityQueue (unbounded), 5 + 5 coroutines",
        "priority",
        _concurrent_asyncio_pq,
    ),
    *(
        _Impl(
            f"concurrent-anyio-stream@{backend}",
            "concurrent",
            f"anyio memory object stream (bounded), 5 + 5 tasks on {backend}",
            "fifo",
            _concurrent_stream(backend, priority=False, bounded=True),
        )
        for backend in ("asyncio", "trio")
    ),
    *(
        _Impl(
            f"concurrent-queuekeeper{suffix}@{backend}",
            "concurrent",
            f"queuekeeper channel ({what}), 5 + 5 tasks on {backend}",
            "priority",
            _concurrent_stream(
                backend, priority=True, bounded=bounded, one_level=one_level
            ),
        )
        for suffix, what, bounded, one_level in (
            ("", "bounded", True, False),
            ("-unbounded", "unbounded", False, False),
            ("-one-level", "bounded, every item at NORMAL", True, True),
        )
        for backend in ("asyncio", "trio")
    ),
    *(
        _Impl(
            f"pool-queuekeeper@{backend}",
            "pool",
            f"WorkerPool(workers=5), BLOCK at capacity, on {backend}",
            "priority",
            _pool_queuekeeper(backend),
        )
        for backend in ("asyncio", "trio")
    ),
    _Impl(
        "pool-asyncio-baseline",
        "pool",
        "asyncio.PriorityQueue + 5 worker tasks + a future per request",
        "priority",
        _pool_asyncio_baseline,
    ),
    *(
        _Impl(
            f"pool-anyio-stream@{backend}",
            "pool",
            f"anyio memory object stream + 5 workers + an Event per request, {backend}",
            "fifo",
            _pool_anyio_stream(backend),
        )
        for backend in ("asyncio", "trio")
    ),
    _Impl(
        "pool-aiojobs",
        "pool",
        "aiojobs.Scheduler(limit=5, pending_limit=100): a job per request",
        "fifo",
        _pool_aiojobs,
    ),
    _Impl(
        "pool-semaphore",
        "pool",
        "a task per request, 5 at once under asyncio.Semaphore",
        "fifo",
        _pool_semaphore,
    ),
    *(
        _Impl(
            f"pool-capacity-limiter@{backend}",
            "pool",
            f"a task per request, 5 at once under anyio.CapacityLimiter, {backend}",
            "fifo",
            _pool_capacity_limiter(backend),
        )
        for backend in ("asyncio", "trio")
    ),
)

# What each target compares: (name, implementation, reference, bound, "cost" if
# the ratio of per-operation costs must stay at most bound, "speed" if the ratio
# of throughputs must reach at least bound).
_TARGETS: Final = (
    *(
        (
            f"channel single-task cost vs anyio stream, {b}",
            f"queuekeeper@{b}",
            f"anyio-stream@{b}",
            1.25,
            "cost",
        )
        for b in ("asyncio", "trio")
    ),
    *(
        (
            f"channel single-task cost with aging vs anyio stream, {b}",
            f"queuekeeper-aging@{b}",
            f"anyio-stream@{b}",
            1.5,
            "cost",
        )
        for b in ("asyncio", "trio")
    ),
    *(
        (
            f"channel single-task cost with WeightedFair vs anyio stream, {b}",
            f"queuekeeper-fair@{b}",
            f"anyio-stream@{b}",
            1.5,
            "cost",
        )
        for b in ("asyncio", "trio")
    ),
    *(
        (
            f"channel single-task cost vs asyncio.PriorityQueue, {b}",
            f"queuekeeper@{b}",
            "asyncio.PriorityQueue",
            1.0,
            "cost<",
        )
        for b in ("asyncio", "trio")
    ),
    *(
        (
            f"channel 5+5 bounded throughput vs anyio stream 5+5, {b}",
            f"concurrent-queuekeeper@{b}",
            f"concurrent-anyio-stream@{b}",
            0.9,
            "speed",
        )
        for b in ("asyncio", "trio")
    ),
    *(
        (
            f"channel 5+5 queue-latency p99 vs anyio stream 5+5 (one level), {b}",
            f"concurrent-queuekeeper-one-level@{b}",
            f"concurrent-anyio-stream@{b}",
            1.0,
            "p99",
        )
        for b in ("asyncio", "trio")
    ),
    (
        "WorkerPool throughput vs asyncio baseline pool, asyncio",
        "pool-queuekeeper@asyncio",
        "pool-asyncio-baseline",
        0.8,
        "speed",
    ),
    *(
        (
            f"WorkerPool throughput vs anyio-stream pool, {b}",
            f"pool-queuekeeper@{b}",
            f"pool-anyio-stream@{b}",
            1.0,
            "speed",
        )
        for b in ("asyncio", "trio")
    ),
    (
        "WorkerPool throughput, trio vs asyncio",
        "pool-queuekeeper@trio",
        "pool-queuekeeper@asyncio",
        1 / 1.5,
        "speed",
    ),
)


# The floor under a target: the reference doing only what the subject cannot do
# without, measured in the same rounds. A bound below its floor cannot be met.
_FLOORS: Final = {
    f"queuekeeper-aging@{b}": f"anyio-stream+clock@{b}" for b in ("asyncio", "trio")
}


def implementation_names() -> tuple[str, ...]:
    """The names ``--only`` accepts, in the order they run."""
    return tuple(impl.name for impl in _IMPLEMENTATIONS)


# -- verdicts --------------------------------------------------------------------


def throughput_verdict(ops_per_s: float) -> str:
    """The comparison document's throughput band."""
    if ops_per_s > 200_000:  # noqa: PLR2004 (the bands are the point)
        return "Excellent"
    if ops_per_s >= 100_000:  # noqa: PLR2004
        return "Good"
    if ops_per_s >= 50_000:  # noqa: PLR2004
        return "Acceptable"
    return "Moderate"


def latency_verdict(avg_us: float) -> str:
    """The comparison document's average-latency band."""
    if avg_us < 5:  # noqa: PLR2004
        return "Excellent"
    if avg_us <= 10:  # noqa: PLR2004
        return "Good"
    if avg_us <= 50:  # noqa: PLR2004
        return "Acceptable"
    return "Moderate"


def correctness_verdict(violations: int) -> str:
    """The comparison document's priority-correctness band."""
    if violations == 0:
        return "PASS"
    if violations <= 10:  # noqa: PLR2004
        return "CAUTION"
    return "FAIL"


# -- running and reporting -------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "not installed"


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "queuekeeper": _version("queuekeeper"),
        "anyio": _version("anyio"),
        "trio": _version("trio"),
        "aiojobs": _version("aiojobs"),
        "psutil": _version("psutil") if _rss() is not None else None,
    }


def _median(samples: list[dict[str, Any]]) -> dict[str, Any]:
    median: dict[str, Any] = {}
    for key, value in samples[0].items():
        if key == "turns":
            continue  # each run's figures, kept in the samples only
        if isinstance(value, dict):
            median[key] = {k: max(s[key][k] for s in samples) for k in value}
        elif key in {"violations", "errors"}:
            median[key] = max(s[key] for s in samples)  # the worst run counts
        elif value is None:
            median[key] = None
        else:
            median[key] = statistics.median(s[key] for s in samples)
    return median


#: Runs of each concurrent implementation per round; the sample is the median run,
#: latencies included. One 5 + 5 run lasts a few tens of milliseconds, and this
#: machine's speed shifts over such spans: the runs of all concurrent
#: implementations take turns, so each meets the same shifts, and a median of five
#: keeps one slow or fast spell from deciding a sample.
_CONCURRENT_RUNS: Final = 5


def _round_groups(chosen: list[_Impl]) -> list[list[_Impl]]:
    """Split a round into groups run in turn.

    Each single-task and end-to-end implementation is a group of its own; the
    concurrent ones form one group, whose runs take turns, those on one backend
    next to each other (what the targets compare runs close in time).
    """
    concurrent = sorted(
        (impl for impl in chosen if impl.section == "concurrent"),
        key=lambda impl: impl.name.rpartition("@")[2],
    )
    groups = [[impl] for impl in chosen if impl.section != "concurrent"]
    if concurrent:
        at = sum(1 for impl in chosen if impl.section == "single")
        groups.insert(at, concurrent)
    return groups


def _round_order(groups: list[list[_Impl]], round_number: int) -> list[list[_Impl]]:
    """The order of *groups* in round *round_number*: every other round backwards.

    Within each section, so that the sections keep their order; a paired ratio
    then never has the same implementation run first (running right after
    another, in a heap it left grown, costs or gains a few per cent: enough to
    tip a ratio near 1 one way in every round).
    """
    if round_number % 2:
        return groups
    ordered: list[list[_Impl]] = []
    for _, section in itertools.groupby(groups, key=lambda group: group[0].section):
        ordered.extend(reversed(list(section)))
    return ordered


def _measure(
    impl: _Impl, config: BenchConfig, given: list[Any], reference_items: list[Item]
) -> dict[str, Any]:
    """One run of *impl*, with the heapq reference run just before it."""
    reference = _heapq_ns_per_op(reference_items)
    try:
        sample = impl.run(config, given)
    except Exception as exc:  # noqa: BLE001 (reported as an error figure)
        sample = {"errors": 1, "error": repr(exc)}
    sample["heapq_ns_per_op"] = reference
    if "ns_per_op" in sample:
        sample["ratio_to_heapq"] = sample["ns_per_op"] / reference
    return sample


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median heapq-normalised cost; a failed run if any failed.

    With more than one run, the sample also keeps each run's time and latencies
    in ``turns``, in the order of the turns, for the paired target checks.
    """
    failed = [run for run in runs if "ns_per_op" not in run]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda run: float(run["ratio_to_heapq"]))
    sample = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        sample["turns"] = [
            {key: run[key] for key in _TURN_KEYS if key in run} for run in runs
        ]
    return sample


_TURN_KEYS: Final = ("ns_per_op", "latency_us_p50", "latency_us_p99")


def _paired_ratios(
    subject: dict[str, Any], reference: dict[str, Any], key: str
) -> list[float]:
    """Subject over reference for each pair of runs made close in time.

    The samples of one round pair up, or, for implementations whose runs took
    turns, the runs of one turn. The machine's slow and fast spells outlast such
    a pair, so they cancel in its ratio, where medians taken apart would keep
    them, and so would ratios to the heapq loops (which swing with the
    allocator's state as much as with the machine).
    """
    pairs: list[tuple[dict[str, float], dict[str, float]]] = []
    for a, b in zip(subject["samples"], reference["samples"], strict=True):
        if "turns" in a and "turns" in b:
            pairs.extend(zip(a["turns"], b["turns"], strict=True))
        else:
            pairs.append((a, b))
    return [x[key] / y[key] for x, y in pairs]


def _inputs(config: BenchConfig) -> dict[str, list[Any]]:
    """What each section's runs are given, built once for the whole bench run."""
    items = _items(config, config.tasks)
    return {
        "single": _entries(items),
        "concurrent": items,
        "pool": _items(config, config.requests),
    }


def run_bench(config: BenchConfig, out: TextIO) -> dict[str, Any]:
    """Run the comparison, print it to *out*, return every figure.

    Returns:
        A JSON-ready dict: ``machine``, ``config``, ``results`` (per
        implementation: its raw ``samples`` and their ``median``) and
        ``targets``.
    """

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    chosen = [
        impl
        for impl in _IMPLEMENTATIONS
        if not config.only or impl.name in config.only or impl.name == "heapq"
    ]
    machine = _machine()
    say(_RULE)
    say("queuekeeper: Priority Queue Implementation Comparison")
    say(_RULE)
    say()
    say("Dependency Check:")
    psutil_state = "yes" if machine["psutil"] else "no (memory column shows -)"
    say(f"  psutil: {psutil_state}")
    say()
    say("Configuration:")
    say(f"  Test tasks: {config.tasks:,} (end to end: {config.requests:,} requests)")
    levels = ", ".join(f"{name}={value}" for value, name in _LEVEL_NAMES.items())
    say(f"  Priority levels: 4 ({levels})")
    say(f"  Repeats: {config.repeat} (figures are medians)")
    say(
        f"  Concurrency: {config.producers} producers + {config.consumers} consumers,"
        f" bounded queues hold {config.capacity}"
    )
    say(
        f"  Python {machine['python']} ({machine['implementation']}),"
        f" anyio {machine['anyio']}, trio {machine['trio']},"
        f" queuekeeper {machine['queuekeeper']}"
    )
    say()
    say(_RULE)
    say("RUNNING BENCHMARKS")
    say(_RULE)

    inputs = _inputs(config)
    single_items = inputs["concurrent"]
    samples: dict[str, list[dict[str, Any]]] = {impl.name: [] for impl in chosen}
    # A small unrecorded round first: the first run of each code path (imports,
    # caches, the interpreter's specialisation) is not what a queue costs.
    warm = attrs.evolve(config, tasks=max(100, config.tasks // 10))
    warm_inputs = _inputs(warm)
    for impl in chosen:
        with contextlib.suppress(Exception):  # a failing one is reported below
            impl.run(warm, warm_inputs[impl.section])
    say("  warm-up round done")
    groups = _round_groups(chosen)
    for round_number in range(1, config.repeat + 1):
        for group in _round_order(groups, round_number):
            turns = _CONCURRENT_RUNS if group[0].section == "concurrent" else 1
            group_runs: dict[str, list[dict[str, Any]]] = {i.name: [] for i in group}
            for turn in range(turns):
                # Every other turn backwards: no implementation always runs first.
                for impl in group if turn % 2 == 0 else reversed(group):
                    group_runs[impl.name].append(
                        _measure(impl, config, inputs[impl.section], single_items)
                    )
            for name, measured in group_runs.items():
                samples[name].append(_median_run(measured))
        say(f"  round {round_number}/{config.repeat} done")

    results: list[dict[str, Any]] = []
    for impl in chosen:
        runs = samples[impl.name]
        good = [s for s in runs if "ns_per_op" in s]
        median = _median(good) if len(good) == len(runs) else {"errors": len(runs)}
        results.append(
            {
                "name": impl.name,
                "section": impl.section,
                "description": impl.description,
                "kind": impl.kind,
                "median": median,
                "samples": runs,
            }
        )
    by_name = {r["name"]: r for r in results}
    targets = _targets(by_name)
    _report(config, results, targets, say)
    return {
        "machine": machine,
        "config": attrs.asdict(config) | {"requests": config.requests},
        "results": results,
        "targets": targets,
    }


def _targets(by_name: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for name, subject, reference, bound, mode in _TARGETS:
        if subject not in by_name or reference not in by_name:
            continue
        a, b = by_name[subject]["median"], by_name[reference]["median"]
        if "ratio_to_heapq" not in a or "ratio_to_heapq" not in b:
            continue
        key = "latency_us_p99" if mode == "p99" else "ns_per_op"
        paired = _paired_ratios(by_name[subject], by_name[reference], key)
        cost_ratio = statistics.median(paired)
        if mode == "speed":
            ratio, passed = 1 / cost_ratio, 1 / cost_ratio >= bound
        elif mode == "cost<":
            ratio, passed = cost_ratio, cost_ratio < bound
        else:
            ratio, passed = cost_ratio, cost_ratio <= bound
        target = {
            "target": name,
            "subject": subject,
            "reference": reference,
            "measure": {"speed": "throughput ratio", "p99": "latency ratio"}.get(
                mode, "cost ratio"
            ),
            "mode": mode,
            "pairs": len(paired),
            "ratio": ratio,
            "bound": bound,
            "passed": passed,
        }
        floor = _FLOORS.get(subject)
        if floor in by_name and "ratio_to_heapq" in by_name[floor]["median"]:
            target["floor_subject"] = floor
            target["floor"] = statistics.median(
                _paired_ratios(by_name[floor], by_name[reference], key)
            )
        targets.append(target)
    return targets


def _report(
    config: BenchConfig,
    results: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    say: Callable[..., None],
) -> None:
    sections = (
        ("single", "Test 1: Single-task Performance (Baseline)"),
        ("concurrent", "Test 2: Concurrent, 5 producers + 5 consumers"),
        ("pool", "Test 3: End to end, a worker pool of 5 with a no-op handler"),
    )
    for section, title in sections:
        rows = [r for r in results if r["section"] == section]
        if not rows:
            continue
        say()
        say(title)
        for result in rows:
            _report_one(config, result, say)

    ok = [r for r in results if "ns_per_op" in r["median"]]
    say()
    say(_RULE)
    say("COMPARISON: Priority Queue Implementations")
    say(_RULE)
    _report_ranking(ok, say)
    _report_latency(ok, say)
    _report_correctness(results, say)
    _report_targets(targets, say)


def _report_ranking(ok: list[dict[str, Any]], say: Callable[..., None]) -> None:
    say()
    say("Throughput Ranking (operations/s; end to end: requests/s):")
    say(_THIN)
    ranked = sorted(ok, key=lambda r: r["median"]["ns_per_op"])
    for rank, result in enumerate(ranked, 1):
        median = result["median"]
        rate = median.get("ops_per_s", median.get("requests_per_s", 0.0))
        say(
            f"{rank:>2}. {result['name']:<36} {rate:>12,.0f}/s"
            f"  x{median['ratio_to_heapq']:>5.2f} heapq  {throughput_verdict(rate)}"
        )


def _report_latency(ok: list[dict[str, Any]], say: Callable[..., None]) -> None:
    say()
    say("Latency Comparison (us):")
    say(_THIN)
    say(
        f"{'Queue Type':<34}{'Enqueue':>9}{'Dequeue':>9}{'P99 Enq':>9}{'P99 Deq':>9}"
        f"  Verdict"
    )
    for result in ok:
        median = result["median"]
        if "enqueue_us_avg" in median:
            say(
                f"{result['name']:<34}{median['enqueue_us_avg']:>9.2f}"
                f"{median['dequeue_us_avg']:>9.2f}{median['enqueue_us_p99']:>9.2f}"
                f"{median['dequeue_us_p99']:>9.2f}"
                f"  {latency_verdict(median['enqueue_us_avg'])}"
            )
    say(f"{'Queue latency (dequeue - enqueue)':<34}{'p50':>9}{'p99':>9}")
    for result in ok:
        median = result["median"]
        if "latency_us_p50" in median:
            say(
                f"{result['name']:<34}{median['latency_us_p50']:>9.1f}"
                f"{median['latency_us_p99']:>9.1f}"
            )


def _report_correctness(
    results: list[dict[str, Any]], say: Callable[..., None]
) -> None:
    say()
    say("Priority Order Correctness:")
    say(_THIN)
    for result in results:
        median = result["median"]
        errors = median.get("errors", 0)
        if result["section"] == "pool":
            continue  # a pool's order depends on its workers; its tests check it
        if "violations" not in median:
            say(f"ERROR    {result['name']:<36} {errors} failed runs")
            continue
        violations = median["violations"]
        if result["kind"] == "fifo":
            verdict, note = "n/a", "FIFO reference, no priority order"
        elif result["kind"] == "fair":
            verdict, note = "n/a", "weighted fair order, no strict priority order"
        else:
            verdict = correctness_verdict(violations)
            note = f"{violations} violations, {errors} errors"
        say(f"{verdict:<8} {result['name']:<36} {note}")
    say(
        "(single task: every dequeue in (priority, FIFO) order; concurrent: per"
        " consumer, FIFO per producer within each level)"
    )


def _report_targets(targets: list[dict[str, Any]], say: Callable[..., None]) -> None:
    if not targets:
        return
    say()
    say(_RULE)
    say("TARGETS")
    say("(medians of the ratios of runs paired in time: the samples of a round;")
    say(" concurrent: the runs of a turn)")
    say(_RULE)
    for target in targets:
        sign = {"speed": ">=", "cost": "<=", "cost<": "<", "p99": "<="}[target["mode"]]
        verdict = "MET" if target["passed"] else "MISSED"
        say(
            f"{verdict:<7} {target['target']:<58} {target['ratio']:5.2f}"
            f" ({sign} {target['bound']:.2f})"
        )
        if "floor" in target:
            say(
                f"{'':<8}{target['floor_subject'] + ', its floor:':<58}"
                f" {target['floor']:5.2f}"
            )


def _report_one(
    config: BenchConfig, result: dict[str, Any], say: Callable[..., None]
) -> None:
    median = result["median"]
    say()
    say(_RULE)
    say(f"TEST: {result['description']}")
    say(_RULE)
    if "ns_per_op" not in median:
        errors = [s.get("error") for s in result["samples"] if "error" in s]
        say(f"FAILED: {result['name']}: {errors[0] if errors else 'error'}")
        return
    if result["section"] == "pool":
        say(f"Complete: {result['name']}:")
        say(f"  Requests: {config.requests:,}")
        say(f"  Throughput: {median['requests_per_s']:,.0f} requests/s")
        say(f"  Overhead: {median['overhead_us']:.2f} us per request")
    elif result["section"] == "concurrent":
        say(f"Complete: {result['name']}:")
        say(f"  Throughput: {median['ops_per_s']:,.0f} ops/s")
        say(
            f"  Queue latency: p50 {median['latency_us_p50']:.1f} us,"
            f" p99 {median['latency_us_p99']:.1f} us"
        )
        per_level = ", ".join(
            f"{k} {v}" for k, v in median["violations_per_level"].items()
        )
        say(f"  FIFO violations per level: {per_level}")
        say(f"  Errors: {median['errors']}")
    else:
        say(f"Complete: {result['name']}:")
        say(
            f"  Avg enqueue: {median['enqueue_us_avg']:.2f}us"
            f" (p99: {median['enqueue_us_p99']:.2f}us)"
        )
        say(
            f"  Avg dequeue: {median['dequeue_us_avg']:.2f}us"
            f" (p99: {median['dequeue_us_p99']:.2f}us)"
        )
        say(f"  Throughput: {median['ops_per_s']:,.0f} ops/s")
        memory = median["memory_bytes"]
        say(f"  Memory: {'-' if memory is None else f'+{memory / 2**20:.2f} MiB'}")
        order = (
            "priority violations" if result["kind"] == "priority" else "out of order"
        )
        say(f"  {order}: {median['violations']}/{config.tasks}")
        say(f"  Errors: {median['errors']}")
    say(f"  Cost: x{median['ratio_to_heapq']:.2f} the heapq loop run beside it")


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw throughput and latency bars per implementation into *path*.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        import matplotlib as mpl  # noqa: PLC0415 (optional)

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        msg = "matplotlib is not installed (pip install 'queuekeeper[plot]')"
        raise RuntimeError(msg) from None
    rows = [r for r in results["results"] if "ns_per_op" in r["median"]]
    names = [r["name"] for r in rows]
    rates = [1e9 / r["median"]["ns_per_op"] for r in rows]
    ratios = [r["median"]["ratio_to_heapq"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 0.4 * len(rows) + 2))
    try:
        left.barh(names, rates)
        left.set_xlabel("operations (requests) per second")
        left.invert_yaxis()
        right.barh(names, ratios)
        right.set_xlabel("cost per operation, x the heapq loop")
        right.invert_yaxis()
        right.set_yticklabels([])
        figure.suptitle("queuekeeper bench (medians)")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)  # a failed save leaves no figure open either


if __name__ == "__main__":  # pragma: no cover
    run_bench(BenchConfig(), sys.stdout)
