"""Model-checked pool and channel: hypothesis state machines against Python models.

Each machine drives the real object in an event loop running behind an anyio blocking
portal, settles it (``wait_all_tasks_blocked``) after every step, and checks that
order, positions, states, statistics and counters agree with a model. The Trio
variants run on ``trio.testing.MockClock``, so timeouts fire exactly when the model
advances the clock.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future
from typing import Any, TypedDict

import anyio
import hypothesis.strategies as st
import pytest
import trio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from trio.testing import MockClock

from helpers import Boom
from queuekeeper import (
    Backpressure,
    PoolClosed,
    QueueFull,
    Ticket,
    TicketState,
    WorkerPool,
    create_priority_channel,
)

LEVELS = st.sampled_from([0, 1, 2, 3, 4, 10])
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _portal_context(backend: str) -> Any:
    options = {"clock": MockClock()} if backend == "trio" else {}
    return start_blocking_portal(backend, backend_options=options)


async def _settle() -> None:
    await anyio.wait_all_tasks_blocked()


def _position(ticket: Ticket[int]) -> int | None:
    return ticket.position


class _SubmitOptions(TypedDict):
    """The keyword arguments of submit and submit_nowait."""

    priority: int
    timeout: float | None
    queue_timeout: float | None


# -- the pool ----------------------------------------------------------------------


class PoolModel:
    """What the pool should look like: the queue, the running set, the counters."""

    def __init__(self, workers: int, capacity: int, mode: Backpressure) -> None:
        self.capacity = capacity
        self.mode = mode
        self.idle = workers
        self.queue: dict[int, deque[int]] = {}
        self.running: set[int] = set()
        self.blocked: deque[int] = deque()
        self.level: dict[int, int] = {}
        self.queue_deadline: dict[int, float] = {}
        self.deadline: dict[int, float] = {}
        self.state: dict[int, TicketState] = {}
        self.closed = False
        self.now = 0.0
        self.counters = dict.fromkeys(
            (
                "submitted",
                "completed",
                "failed",
                "cancelled",
                "timed_out",
                "shed",
                "rejected",
            ),
            0,
        )

    def size(self) -> int:
        return sum(len(q) for q in self.queue.values())

    def by_priority(self) -> dict[int, int]:
        return {level: len(q) for level, q in sorted(self.queue.items()) if q}

    def position(self, rid: int) -> int:
        level = self.level[rid]
        ahead = sum(len(q) for lv, q in self.queue.items() if lv < level)
        return ahead + list(self.queue[level]).index(rid)

    def finish(self, rid: int, state: TicketState) -> None:
        self.state[rid] = state
        key = {
            TicketState.SUCCEEDED: "completed",
            TicketState.FAILED: "failed",
            TicketState.CANCELLED: "cancelled",
            TicketState.TIMED_OUT: "timed_out",
            TicketState.SHED: "shed",
        }[state]
        self.counters[key] += 1

    def accept(self, rid: int) -> None:
        """*rid* enters the pool: straight to an idle worker, else the queue."""
        self.counters["submitted"] += 1
        if self.idle:
            self.idle -= 1
            self.running.add(rid)
            self.state[rid] = TicketState.RUNNING
        else:
            self.queue.setdefault(self.level[rid], deque()).append(rid)
            self.state[rid] = TicketState.QUEUED

    def offer(self, rid: int, *, blocking: bool) -> str:
        """A submit: returns "accepted", "rejected", "blocked" or "closed"."""
        if self.closed:
            return "closed"
        if self.idle or self.size() < self.capacity:
            self.accept(rid)
            return "accepted"
        if self.mode is Backpressure.SHED:
            lowest = max(level for level, q in self.queue.items() if q)
            if lowest > self.level[rid]:
                victim = self.queue[lowest].pop()
                self.finish(victim, TicketState.SHED)
                self.accept(rid)
                return "accepted"
        if self.mode is Backpressure.BLOCK and blocking:
            self.blocked.append(rid)
            return "blocked"
        self.counters["rejected"] += 1
        return "rejected"

    def remove_queued(self, rid: int) -> None:
        self.queue[self.level[rid]].remove(rid)
        self.admit()

    def admit(self) -> None:
        """Room appeared: the longest-blocked submitter's request moves in."""
        if self.blocked:
            rid = self.blocked.popleft()
            self.counters["submitted"] += 1
            self.queue.setdefault(self.level[rid], deque()).append(rid)
            self.state[rid] = TicketState.QUEUED

    def worker_freed(self) -> None:
        """A worker finished: it admits a blocked submitter, then takes the head."""
        self.admit()
        for level in sorted(self.queue):
            if self.queue[level]:
                rid = self.queue[level].popleft()
                self.running.add(rid)
                self.state[rid] = TicketState.RUNNING
                return
        self.idle += 1

    def end_running(self, rid: int, state: TicketState) -> None:
        self.running.discard(rid)
        self.finish(rid, state)
        self.worker_freed()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for level in sorted(self.queue):
            for rid in list(self.queue[level]):
                due = min(self.queue_deadline[rid], self.deadline[rid])
                if due <= self.now:
                    self.queue[level].remove(rid)
                    self.finish(rid, TicketState.TIMED_OUT)
        for rid in sorted(self.running):
            if self.deadline[rid] <= self.now:
                self.end_running(rid, TicketState.TIMED_OUT)

    def shutdown(self) -> None:
        self.closed = True
        for level in sorted(self.queue):
            while self.queue[level]:
                self.finish(self.queue[level].popleft(), TicketState.CANCELLED)
        for rid in sorted(self.running):
            self.running.discard(rid)
            self.finish(rid, TicketState.CANCELLED)
        self.blocked.clear()


class PoolMachine(RuleBasedStateMachine):
    """Drives a WorkerPool; checks it against PoolModel after every step."""

    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = _portal_context(self.backend)
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        self.pool: WorkerPool[int, int] | None = None
        self.model: PoolModel | None = None
        self.tickets: dict[int, Ticket[int]] = {}
        self.pending: dict[int, Future[Any]] = {}
        self.events: dict[int, anyio.Event] = {}
        self.actions: dict[int, str] = {}
        self.next_rid = 0
        self.run_future: Future[Any] | None = None

    def teardown(self) -> None:
        try:
            if self.pool is not None:
                self.portal.call(self._stop)
        finally:
            self._portal_cm.__exit__(None, None, None)

    async def _stop(self) -> None:
        assert self.pool is not None
        with anyio.fail_after(10):
            await self.pool.shutdown(drain=False)
            await _settle()

    async def _handler(self, rid: int) -> int:
        event = self.events.setdefault(rid, anyio.Event())
        await event.wait()
        if self.actions[rid] == "fail":
            raise Boom(rid)
        return rid

    @initialize(
        workers=st.integers(1, 3),
        capacity=st.integers(1, 4),
        mode=st.sampled_from(list(Backpressure)),
    )
    def start(self, workers: int, capacity: int, mode: Backpressure) -> None:
        """Build and start the pool (always the first step)."""
        self.model = PoolModel(workers, capacity, mode)
        self.pool = WorkerPool(
            self._handler, workers=workers, max_queue_size=capacity, backpressure=mode
        )
        self.run_future = self.portal.start_task_soon(self.pool.run)
        self.portal.call(_settle)

    def _timeouts(self, data: st.DataObject) -> tuple[float | None, float | None]:
        if self.backend != "trio" or self.model is None:
            return None, None
        if self.model.mode is Backpressure.BLOCK:
            return None, None  # keeps blocked submitters out of timeout races
        queue_timeout = data.draw(st.sampled_from([None, 1, 2, 5]))
        timeout = data.draw(st.sampled_from([None, 1, 3, 6]))
        return queue_timeout, timeout

    @rule(level=LEVELS, blocking=st.booleans(), data=st.data())
    @precondition(lambda self: self.pool is not None)
    def submit(self, level: int, blocking: bool, data: st.DataObject) -> None:
        """submit (may block in BLOCK mode) or submit_nowait one request."""
        assert self.pool is not None
        assert self.model is not None
        pool = self.pool
        rid = self.next_rid
        self.next_rid += 1
        self.actions[rid] = "ok"
        queue_timeout, timeout = self._timeouts(data)
        model = self.model
        model.level[rid] = level
        model.queue_deadline[rid] = (
            model.now + queue_timeout if queue_timeout else math.inf
        )
        model.deadline[rid] = model.now + timeout if timeout else math.inf
        expected = model.offer(rid, blocking=blocking)
        kwargs: _SubmitOptions = {
            "priority": level,
            "timeout": timeout,
            "queue_timeout": queue_timeout,
        }
        if blocking:
            future = self.portal.start_task_soon(lambda: pool.submit(rid, **kwargs))
            self.portal.call(_settle)
            if expected == "blocked":
                assert not future.done()
                self.pending[rid] = future
                return
            self._collect(rid, future, expected)
        else:
            future = Future()
            try:
                future.set_result(
                    self.portal.call(lambda: pool.submit_nowait(rid, **kwargs))
                )
            except BaseException as exc:
                future.set_exception(exc)
            self.portal.call(_settle)
            self._collect(rid, future, expected)

    def _collect(self, rid: int, future: Future[Any], expected: str) -> None:
        exc = future.exception(timeout=10)
        if expected == "accepted":
            assert exc is None, exc
            self.tickets[rid] = future.result()
        elif expected == "rejected":
            assert isinstance(exc, QueueFull), exc
        else:
            assert expected == "closed"
            assert isinstance(exc, PoolClosed), exc

    def _after_step(self) -> None:
        """Collect tickets of submitters the step unblocked."""
        assert self.model is not None
        for rid, future in list(self.pending.items()):
            if rid in self.model.blocked:
                continue
            del self.pending[rid]
            if self.model.closed and rid not in self.model.state:
                assert isinstance(future.exception(timeout=10), PoolClosed)
            else:
                self.tickets[rid] = future.result(timeout=10)

    def _running(self) -> list[int]:
        assert self.model is not None
        return sorted(self.model.running)

    @rule(data=st.data(), fail=st.booleans())
    @precondition(lambda self: self.model is not None and self.model.running)
    def finish_one(self, data: st.DataObject, fail: bool) -> None:
        """Let a running handler return or raise."""
        assert self.model is not None
        rid = data.draw(st.sampled_from(self._running()))
        self.actions[rid] = "fail" if fail else "ok"
        self.portal.call(self.events[rid].set)
        self.portal.call(_settle)
        self.model.end_running(
            rid, TicketState.FAILED if fail else TicketState.SUCCEEDED
        )
        self._after_step()

    @rule(data=st.data())
    @precondition(lambda self: self.tickets)
    def cancel(self, data: st.DataObject) -> None:
        """Cancel a ticket, queued, running or finished."""
        assert self.model is not None
        rid = data.draw(st.sampled_from(sorted(self.tickets)))
        state = self.model.state[rid]
        cancelled = self.portal.call(self.tickets[rid].cancel)
        self.portal.call(_settle)
        if state is TicketState.QUEUED:
            assert cancelled
            self.model.remove_queued(rid)
            self.model.finish(rid, TicketState.CANCELLED)
        elif state is TicketState.RUNNING:
            assert cancelled
            self.model.end_running(rid, TicketState.CANCELLED)
        else:
            assert not cancelled
        self._after_step()

    @rule(seconds=st.sampled_from([1, 2, 3]))
    @precondition(lambda self: self.backend == "trio" and self.model is not None)
    def advance_clock(self, seconds: int) -> None:
        """Move the mock clock; due timeouts fire."""
        assert self.model is not None

        async def jump() -> None:
            clock = trio.lowlevel.current_clock()
            assert isinstance(clock, MockClock)  # the portal runs Trio on a MockClock
            clock.jump(seconds)
            await _settle()

        self.portal.call(jump)
        self.model.advance(seconds)
        self._after_step()

    @rule()
    @precondition(lambda self: self.model is not None and not self.model.closed)
    def shutdown(self) -> None:
        """Shut down without draining: everything pending is cancelled."""
        assert self.pool is not None
        assert self.model is not None
        self.portal.call(self._stop)
        self.model.shutdown()
        self._after_step()
        assert self.run_future is not None
        assert self.run_future.result(timeout=10) is None

    @invariant()
    def agrees_with_model(self) -> None:
        """States, positions, statistics and counters match the model."""
        if self.pool is None or self.model is None:
            return
        model = self.model
        for rid, ticket in self.tickets.items():
            assert model.state[rid] == ticket.state, rid
            if ticket.state is TicketState.QUEUED:
                assert model.position(rid) == self.portal.call(_position, ticket)
            else:
                assert ticket.position is None
        status = self.portal.call(self.pool.status)
        assert model.size() == status.queue_size
        assert model.by_priority() == dict(status.queue_size_by_priority)
        assert len(model.running) == status.active_workers
        for key, value in model.counters.items():
            assert value == getattr(status, key), key
        stats = self.pool._queue.statistics()
        assert len(model.blocked) == stats.tasks_waiting_send


class TrioPoolMachine(PoolMachine):
    """The pool machine on Trio, with a mock clock and timeouts."""

    backend = "trio"


# -- the channel -------------------------------------------------------------------


class ChannelMachine(RuleBasedStateMachine):
    """Drives a bounded channel: nowait calls, blocked senders, receivers, cancels."""

    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = _portal_context(self.backend)
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        self.send, self.receive = create_priority_channel[int](3)
        self.buffer: dict[int, deque[int]] = {}
        self.blocked_senders: deque[tuple[int, int]] = deque()
        self.blocked_receivers: deque[int] = deque()
        self.scopes: dict[tuple[str, int], anyio.CancelScope] = {}
        self.futures: dict[tuple[str, int], Future[Any]] = {}
        self.received: list[int] = []
        self.expected_received: list[int] = []
        self.next_item = 0
        self.next_receiver = 0
        self.peak = 0

    def teardown(self) -> None:
        try:
            self.portal.call(self._close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    async def _close(self) -> None:
        for scope in self.scopes.values():
            scope.cancel()
        await _settle()
        self.send.close()
        self.receive.close()

    def _size(self) -> int:
        return sum(len(q) for q in self.buffer.values())

    def _pop_best(self) -> int:
        level = min(lv for lv, q in self.buffer.items() if q)
        return self.buffer[level].popleft()

    def _push(self, item: int, level: int, *, admitted: bool = False) -> None:
        self.buffer.setdefault(level, deque()).append(item)
        if not admitted:  # an admission refills the slot a receive frees
            self.peak = max(self.peak, self._size())

    async def _blocking(
        self, key: tuple[str, int], call: Any, *task_status_args: Any
    ) -> Any:
        with anyio.CancelScope() as scope:
            self.scopes[key] = scope
            return await call()
        return "cancelled"

    def _take(self) -> tuple[int, tuple[str, int] | None]:
        """A receive makes room: admit the first blocked sender, then pop.

        Returns the item and the key of the sender admitted (if any).
        """
        admitted = None
        if self.blocked_senders:
            item, level = self.blocked_senders.popleft()
            self._push(item, level, admitted=True)
            admitted = ("send", item)
        return self._pop_best(), admitted

    def _done(self, key: tuple[str, int]) -> None:
        future = self.futures.pop(key)
        self.scopes.pop(key)
        assert future.result(timeout=10) is None

    @rule(level=LEVELS, blocking=st.booleans())
    def send_one(self, level: int, blocking: bool) -> None:
        """send (blocking when full) or send_nowait an item."""
        item = self.next_item
        self.next_item += 1
        if self.blocked_receivers:
            receiver = self.blocked_receivers.popleft()
            expected = "handed"
        elif self._size() < 3:
            expected = "buffered"
        else:
            expected = "blocked" if blocking else "would_block"
        if blocking:
            key = ("send", item)
            self.futures[key] = self.portal.start_task_soon(
                self._blocking, key, lambda: self.send.send(item, level)
            )
            self.portal.call(_settle)
            if expected == "blocked":
                self.blocked_senders.append((item, level))
                return
            self._done(key)
        elif expected == "would_block":
            with pytest.raises(anyio.WouldBlock):
                self.portal.call(self.send.send_nowait, item, level)
            return
        else:
            self.portal.call(self.send.send_nowait, item, level)
            self.portal.call(_settle)
        if expected == "handed":
            key = ("receive", receiver)
            self.expected_received.append(item)
            self.received.append(self.futures.pop(key).result(timeout=10))
            self.scopes.pop(key)
        else:
            self._push(item, level)

    @rule(blocking=st.booleans())
    def receive_one(self, blocking: bool) -> None:
        """receive (blocking when empty) or receive_nowait an item."""
        admitted = None
        if self._size() or self.blocked_senders:
            expected: int | None
            expected, admitted = self._take()
        else:
            expected = None
        if blocking:
            receiver = self.next_receiver
            self.next_receiver += 1
            key = ("receive", receiver)
            self.futures[key] = self.portal.start_task_soon(
                self._blocking, key, self.receive.receive
            )
            self.portal.call(_settle)
            if expected is None:
                self.blocked_receivers.append(receiver)
                return
            self.scopes.pop(key)
            self.received.append(self.futures.pop(key).result(timeout=10))
            self.portal.call(_settle)
        elif expected is None:
            with pytest.raises(anyio.WouldBlock):
                self.portal.call(self.receive.receive_nowait)
            return
        else:
            self.received.append(self.portal.call(self.receive.receive_nowait))
            self.portal.call(_settle)
        if admitted is not None:
            self._done(admitted)
        self.expected_received.append(expected)

    @rule(data=st.data())
    @precondition(lambda self: self.blocked_senders)
    def cancel_sender(self, data: st.DataObject) -> None:
        """Cancel a blocked send: its item is not enqueued."""
        item, level = data.draw(st.sampled_from(list(self.blocked_senders)))
        key = ("send", item)
        self.portal.call(self.scopes.pop(key).cancel)
        self.portal.call(_settle)
        assert "cancelled" == self.futures.pop(key).result(timeout=10)
        self.blocked_senders.remove((item, level))

    @rule(data=st.data())
    @precondition(lambda self: self.blocked_receivers)
    def cancel_receiver(self, data: st.DataObject) -> None:
        """Cancel a blocked receive: it takes nothing with it."""
        receiver = data.draw(st.sampled_from(list(self.blocked_receivers)))
        key = ("receive", receiver)
        self.portal.call(self.scopes.pop(key).cancel)
        self.portal.call(_settle)
        assert "cancelled" == self.futures.pop(key).result(timeout=10)
        self.blocked_receivers.remove(receiver)

    @invariant()
    def agrees_with_model(self) -> None:
        """Order received, sizes by level, waiters and the peak match the model."""
        assert self.expected_received == self.received
        stats = self.send.statistics()
        assert self._size() == stats.current_size
        assert {lv: len(q) for lv, q in sorted(self.buffer.items()) if q} == dict(
            stats.size_by_priority
        )
        assert len(self.blocked_senders) == stats.tasks_waiting_send
        assert len(self.blocked_receivers) == stats.tasks_waiting_receive
        assert self.peak == stats.peak_size
        assert stats.current_size <= 3

    @invariant()
    def fast_path_gates_are_current(self) -> None:
        """The gates the fast paths read agree with the state they stand for."""
        state = self.send._state
        # receive: the first level's deque, unless a sender waits (it goes first).
        # Every listed level holds items, but the first may be one a receive
        # just emptied.
        assert all(state.buckets[level] for level in state.levels[1:])
        assert state.head is (state.buckets[state.levels[0]] if state.levels else None)
        assert state.ready is (None if state.waiting_senders else state.head)
        # send: the capacity, unless a receiver waits or none is left open.
        open_and_idle = state.open_receive and not state.waiting_receivers
        assert state.limit == (state.capacity if open_and_idle else -1)


class TrioChannelMachine(ChannelMachine):
    """The channel machine on Trio."""

    backend = "trio"


TestPoolAsyncio = PoolMachine.TestCase
TestPoolAsyncio.settings = SETTINGS
TestPoolTrio = TrioPoolMachine.TestCase
TestPoolTrio.settings = SETTINGS
TestChannelAsyncio = ChannelMachine.TestCase
TestChannelAsyncio.settings = SETTINGS
TestChannelTrio = TrioChannelMachine.TestCase
TestChannelTrio.settings = SETTINGS
