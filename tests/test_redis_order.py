"""Rate limits and weighted fair sharing on the Redis queue, against a real server.

The server keeps the token buckets and the shares, so that they hold across every
process taking from the queue: the last tests run three worker processes
(``tests/redis_process.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

import coredis

from helpers import queued_on_server, until
from queuekeeper import Priority, RateLimit, StrictPriority, WeightedFair, WorkerPool
from queuekeeper._redis._server import Policy, ServerQueue

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import RedisServer
    from queuekeeper import Ticket
    from queuekeeper.redis import RedisQueue

pytestmark = pytest.mark.anyio

PROCESS = Path(__file__).with_name("redis_process.py")
#: CRITICAL 8, HIGH 4, NORMAL 2, LOW 1.
WEIGHTS = WeightedFair({1: 8, 2: 4, 3: 2, 4: 1})


def ids(taken: list[Any]) -> list[str]:
    """The ids of requests taken."""
    return [each.id for each in taken]


# -- the take script ----------------------------------------------------------------


async def test_the_take_script_skips_a_level_without_a_token(
    client: coredis.Redis[Any],
) -> None:
    """A burst of 2, then nothing until the next token: other levels go on."""
    server = ServerQueue(client, f"limit-{uuid.uuid4().hex[:8]}")
    await server.put([(f"low{i}", 4, b"x") for i in range(4)], None)
    await server.put([("normal", 3, b"y")], None)
    policy = Policy.of({4: RateLimit(5, per=1.0, burst=2)}, None)
    assert policy is not None
    taken, seen, wait = await server.take_by(10, 30.0, "t", policy)
    assert (["normal", "low0", "low1"], None, None) == (ids(taken), seen, wait)
    taken, seen, wait = await server.take_by(10, 30.0, "t", policy)
    assert [] == taken
    assert seen is not None
    assert wait is not None
    assert 0 < wait <= 0.2  # one token every 0.2 s
    # Both left wait for a token; none taken had waited yet.
    assert {4: (0, 2)} == await server.limited(policy)
    await anyio.sleep(wait)  # the server's clock: the token is due
    taken, _, _ = await server.take_by(10, 30.0, "t", policy)
    assert ["low2"] == ids(taken)
    assert {4: (1, 1)} == await server.limited(policy)
    # A take without the policy knows nothing of the limit.
    taken, _ = await server.take(10, 30.0, "t")
    assert ["low3"] == ids(taken)


async def test_a_put_rings_the_bell_while_a_level_waits_for_a_token(
    client: coredis.Redis[Any],
) -> None:
    """A request queued behind a starved level is not first, yet the taker hears."""
    server = ServerQueue(client, f"ring-{uuid.uuid4().hex[:8]}")
    policy = Policy.of({1: RateLimit(1, per=60.0)}, None)
    assert policy is not None
    await server.put([("c0", 1, b"x"), ("c1", 1, b"x")], None)
    assert ["c0"] == ids((await server.take_by(10, 30.0, "t", policy))[0])
    _, seen, wait = await server.take_by(10, 30.0, "t", policy)
    assert wait is not None
    assert seen is not None
    await server.put([("low", 4, b"y")], None)
    assert await server.wait(server.bell, seen, 0.01)
    assert ["low"] == ids((await server.take_by(10, 30.0, "t", policy))[0])


async def test_the_take_script_shares_by_weight_in_order_within_a_level(
    client: coredis.Redis[Any],
) -> None:
    """15 takes of 8:4:2:1 levels: 8, 4, 2 and 1, each level first-come first."""
    server = ServerQueue(client, f"fair-{uuid.uuid4().hex[:8]}")
    await server.put(
        [(f"{level}-{i}", level, b"x") for level in (4, 3, 2, 1) for i in range(30)],
        None,
    )
    policy = Policy.of({}, WEIGHTS)
    assert policy is not None
    for _ in range(3):
        taken, _, _ = await server.take_by(15, 30.0, "t", policy)
        assert {1: 8, 2: 4, 3: 2, 4: 1} == Counter(each.priority for each in taken)
    # In order within each level.
    taken, _, _ = await server.take_by(1000, 30.0, "t", policy)
    for level in (1, 2, 3, 4):
        numbers = [
            int(each.id.split("-")[1]) for each in taken if each.priority == level
        ]
        assert sorted(numbers) == numbers


async def test_weighted_sharing_on_the_server_is_work_conserving(
    client: coredis.Redis[Any],
) -> None:
    """Idle levels' shares go to the others; a level back from idle saves no credit."""
    server = ServerQueue(client, f"conserve-{uuid.uuid4().hex[:8]}")
    policy = Policy.of({}, WEIGHTS)
    assert policy is not None
    await server.put([(f"low{i}", 4, b"x") for i in range(40)], None)
    taken, _, _ = await server.take_by(30, 30.0, "t", policy)
    assert 30 == len(taken)  # alone, LOW takes every start
    await server.put(
        [(f"n{i}", 3, b"x") for i in range(20)]
        + [(f"c{i}", 1, b"x") for i in range(20)],
        None,
    )
    taken, _, _ = await server.take_by(21, 30.0, "t", policy)
    # 8:2:1 between the three queued levels (the others came back at the
    # virtual time, a round ahead of LOW's next start): LOW's 30 earlier
    # starts are not held against it, and the others' idle spells save them
    # no credit.
    assert {1: 16, 3: 4, 4: 1} == Counter(each.priority for each in taken)
    # Only what most allows competes.
    taken, _, _ = await server.take_by(5, 30.0, "t", policy, most=3)
    assert {1, 3} >= {each.priority for each in taken}
    assert 5 == len(taken)


async def test_the_take_script_limits_and_ages_together(
    client: coredis.Redis[Any],
) -> None:
    """With aging, a token-less level is skipped by its submitted level."""
    server = ServerQueue(client, f"aged-{uuid.uuid4().hex[:8]}")
    policy = Policy.of({3: RateLimit(1, per=60.0)}, None)
    assert policy is not None
    await server.put([("old", 4, b"x")], None)
    # Real time (the server's clock): aging 1 s, old is at 3 by then.
    await anyio.sleep(1.2)
    await server.put([("n0", 3, b"y"), ("n1", 3, b"y")], None)
    # most=3: old qualifies only by its aged level; it is older than n0.
    taken, _, _ = await server.take_by(1, 30.0, "t", policy, aging=1.0, most=3)
    assert ["old"] == ids(taken)
    taken, _, _ = await server.take_by(5, 30.0, "t", policy, aging=1.0, most=3)
    assert ["n0"] == ids(taken)  # NORMAL's one token
    taken, _, wait = await server.take_by(5, 30.0, "t", policy, aging=1.0, most=3)
    assert [] == taken
    assert wait is not None
    assert 59 < wait <= 60


# -- a pool on Redis ------------------------------------------------------------------


async def test_a_pool_on_redis_waits_for_tokens_holding_no_worker(
    queue: Callable[..., RedisQueue],
) -> None:
    """HIGH requests beyond the burst wait on the server; LOW ones run meanwhile."""
    started: list[str] = []

    async def record(request: str) -> str:
        started.append(request)
        await anyio.lowlevel.checkpoint()
        return request

    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        highs = [
            await front.submit(f"high{i}", priority=Priority.HIGH) for i in range(4)
        ]
        async with WorkerPool(
            record,
            queue=queue(),
            workers=2,
            rate_limits={Priority.HIGH: RateLimit(2, per=1.0, burst=1)},
        ) as back:
            await until(lambda: 1 == len(started))
            lows = [
                await front.submit(f"low{i}", priority=Priority.LOW) for i in range(5)
            ]
            for ticket in lows:
                await ticket.result()  # not behind the HIGH ones waiting for tokens
            assert 3 <= await queued_on_server(queue())
            await until(lambda: 3 == back.status().rate_limited_now)
            for ticket in highs:
                await ticket.result()
            await until(lambda: 3 == back.status().rate_limited)
            status = back.status()
            assert {Priority.HIGH: 3} == dict(status.rate_limited_by_priority)
            assert {Priority.HIGH: 0} == dict(status.rate_limited_now_by_priority)
            assert 0 == status.rate_limited_now
    assert ["high0"] == started[:1]
    assert all(name.startswith("low") for name in started[1:6])


async def test_weighted_fair_pool_on_redis_takes_by_weight(
    queue: Callable[..., RedisQueue],
) -> None:
    """One worker, all levels queued: the first 15 starts are 8:4:2:1."""
    started: list[int] = []

    async def record(request: int) -> int:
        started.append(request)
        await anyio.lowlevel.checkpoint()
        return request

    async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
        tickets = [
            await front.submit(level, priority=level)
            for level in (4, 3, 2, 1)
            for _ in range(16)
        ]
        async with WorkerPool(record, queue=queue(), workers=1, scheduling=WEIGHTS):
            for ticket in tickets:
                await ticket.result()
    assert {1: 8, 2: 4, 3: 2, 4: 1} == Counter(started[:15])


async def test_policy_arguments_are_checked_for_a_redis_queue(
    queue: Callable[..., RedisQueue],
) -> None:
    """Bad values and combinations fail at construction, naming the value."""

    async def handler(request: int) -> int:
        return request

    with pytest.raises(ValueError, match=r"aging=1\.0 cannot be given with scheduling"):
        WorkerPool(handler, queue=queue(), aging=1.0, scheduling=WEIGHTS)
    with pytest.raises(ValueError, match="priority must be an int from 0 to 255"):
        WorkerPool(handler, queue=queue(), rate_limits={300: RateLimit(1)})
    with pytest.raises(ValueError, match="priority must be an int from 0 to 255"):
        WorkerPool(handler, queue=queue(), scheduling=WeightedFair({256: 1}))
    with pytest.raises(TypeError, match="rate_limits must be None or a mapping"):
        WorkerPool(handler, queue=queue(), rate_limits=[RateLimit(1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scheduling must be"):
        WorkerPool(handler, queue=queue(), scheduling="fair")  # type: ignore[arg-type]
    # Strict priority, stated: no policy, the plain take.
    pool = WorkerPool(handler, queue=queue(), scheduling=StrictPriority(), aging=1.0)
    assert pool._link.policy is None


async def test_rate_limits_and_weights_on_a_server_without_functions(
    scripts_only_redis: RedisServer,
) -> None:
    """EVALSHA of the same library: the policy's take works there too."""
    redis: coredis.Redis[Any] = coredis.Redis(
        host="127.0.0.1", port=scripts_only_redis.port
    )
    async with redis:
        server = ServerQueue(redis, f"scripts-{uuid.uuid4().hex[:8]}")
        await server.put(
            [(f"{lv}-{i}", lv, b"x") for lv in (2, 1) for i in range(9)], None
        )
        policy = Policy.of(
            {2: RateLimit(1, per=60.0, burst=2)}, WeightedFair({1: 1, 2: 1})
        )
        assert policy is not None
        taken, _, _ = await server.take_by(6, 30.0, "t", policy)
        assert ["1-0", "2-0", "1-1", "2-1", "1-2", "1-3"] == ids(taken)
        assert {2: (0, 7)} == await server.limited(policy)


# -- several processes --------------------------------------------------------------


def spawn(backend: str, port: int, name: str, workers: int, policy: object) -> Any:
    """Start tests/redis_process.py serving the queue with *policy*."""
    return subprocess.Popen(  # noqa: S603 (our interpreter and script)
        [
            sys.executable,
            str(PROCESS),
            backend,
            str(port),
            name,
            "policy",
            str(workers),
            json.dumps(policy),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


async def serving(processes: list[Any]) -> None:
    """Wait until every process in *processes* serves the queue."""
    for process in processes:
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(process.stdout.readline)
        assert "serving\n" == line


def stop(processes: list[Any]) -> None:
    """SIGKILL each process and reap it."""
    for process in processes:
        process.kill()
        process.communicate()


async def submit_all(
    front: WorkerPool[Any, Any], requests: list[tuple[Any, int]]
) -> list[Ticket[Any]]:
    """Submit *requests* (request, priority) in batches, in order; their tickets."""
    slots: list[Ticket[Any] | None] = [None] * len(requests)

    async def one(index: int, request: Any, priority: int) -> None:
        slots[index] = await front.submit(request, priority=priority)

    for first in range(0, len(requests), 500):
        async with anyio.create_task_group() as task_group:
            for index in range(first, min(first + 500, len(requests))):
                task_group.start_soon(one, index, *requests[index])
    return [ticket for ticket in slots if ticket is not None]


async def test_a_rate_limit_holds_across_three_worker_processes(
    queue: Callable[..., RedisQueue], redis_port: int, name: str, anyio_backend: str
) -> None:
    """Three processes together start HIGH requests no faster than the limit.

    Counted in every window of one second of the server's clock (each request
    returns it as it starts): never above rate * window + burst. LOW requests,
    unlimited, run meanwhile.
    """
    rate, per, burst = 4, 1.0, 2
    policy = {"rate_limits": {"2": [rate, per, burst]}}
    processes = [spawn(anyio_backend, redis_port, name, 2, policy) for _ in range(3)]
    try:
        await serving(processes)
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            highs = [
                await front.submit(["stamp", i], priority=Priority.HIGH)
                for i in range(14)
            ]
            lows = [
                await front.submit(["double", i], priority=Priority.LOW)
                for i in range(20)
            ]
            assert [2 * i for i in range(20)] == [await t.result() for t in lows]
            # The LOW requests did not wait for the HIGH ones' tokens.
            assert any(not ticket.done() for ticket in highs)
            with anyio.fail_after(60):
                starts = sorted([await ticket.result() for ticket in highs])
    finally:
        stop(processes)
    for index, start in enumerate(starts):
        within = sum(1 for other in starts[index:] if other < start + per)
        assert within <= rate * per + burst, starts
    # And not much slower: the limit, not a worker, set the pace.
    assert starts[-1] - starts[0] < (len(starts) - burst) / rate * per + 2.0


async def test_weighted_fair_shares_hold_across_three_worker_processes(
    queue: Callable[..., RedisQueue], redis_port: int, name: str, anyio_backend: str
) -> None:
    """10,000 requests started, every level saturated: shares within 5 % of 8:4:2:1.

    Every level has more queued than its share of the first 10,000 starts, so
    all stay saturated; the processes start once everything is queued. Starts
    are ordered by when each began, as its submitter learned.
    """
    counts = {1: 6000, 2: 3000, 3: 1500, 4: 1000}
    requests = [
        (["double", level], level)
        for level, count in counts.items()
        for _ in range(count)
    ]
    processes: list[Any] = []
    try:
        async with WorkerPool[Any, Any](None, queue=queue(), workers=0) as front:
            tickets = await submit_all(front, requests)
            assert len(requests) == await queued_on_server(queue())
            processes = [
                spawn(anyio_backend, redis_port, name, 8, {"weights": WEIGHTS_JSON})
                for _ in range(3)
            ]
            await serving(processes)
            with anyio.fail_after(120):
                for ticket in tickets:
                    await ticket.result()
    finally:
        stop(processes)
    order = sorted(tickets, key=lambda ticket: ticket.started_at or 0.0)[:10_000]
    shares = Counter(ticket.priority for ticket in order)
    total = sum(WEIGHTS.weights.values())
    for level, weight in WEIGHTS.weights.items():
        expected = 10_000 * weight / total
        assert abs(shares[level] - expected) <= 0.05 * expected, (level, shares)


WEIGHTS_JSON = {str(level): weight for level, weight in WEIGHTS.weights.items()}
