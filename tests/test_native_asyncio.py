"""Plain asyncio: a native ``task.cancel()`` or ``asyncio.timeout()`` at a hand-over.

anyio's cancel scopes and Trio keep cancelling a task until its scope exits, so a
channel call that completes in the instant its cancellation arrives may return and
let the next checkpoint raise. A native asyncio cancellation is delivered once: the
call must raise it, and undo what it did so that no item is lost or duplicated.
These tests run under ``asyncio.run``, with no anyio runner and no cancel scope.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings

from helpers import CANCELLATION_SCENARIOS
from queuekeeper import (
    Backpressure,
    Priority,
    RequestCancelled,
    RequestTimeout,
    TicketState,
    WeightedFair,
    WorkerPool,
    create_priority_channel,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run *main* in a fresh event loop, as a plain asyncio program does."""

    async def guarded() -> T:
        return await asyncio.wait_for(main(), 10)  # a hang guard only

    return asyncio.run(guarded())


async def blocked() -> None:
    """Let every other task run until it blocks (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def outcome(task: asyncio.Task[Any]) -> object:
    """Wait for *task*; return its result, or the type of the exception it ended with.

    Unlike ``await task`` this never mistakes a cancellation of the caller for the
    task's own outcome.
    """
    await asyncio.wait([task])
    if task.cancelled():
        return asyncio.CancelledError
    error = task.exception()
    return task.result() if error is None else type(error)


# -- receive ------------------------------------------------------------------------


def test_receive_cancelled_as_it_is_handed_an_item_gives_the_item_back() -> None:
    """The item goes back to the front of its level and receive() raises."""

    async def main() -> None:
        send, receive = create_priority_channel[str](2)
        task = asyncio.get_running_loop().create_task(receive.receive())
        await blocked()
        send.send_nowait("handed")  # straight into the waiting receiver's hands
        send.send_nowait("later")
        task.cancel()  # the same loop turn
        assert asyncio.CancelledError is await outcome(task)
        assert ["handed", "later"] == [receive.receive_nowait() for _ in range(2)]
        stats = send.statistics()
        assert (0, 0, 0) == (
            stats.current_size,
            stats.tasks_waiting_send,
            stats.tasks_waiting_receive,
        )

    run(main)


def test_receive_cancelled_as_it_is_handed_an_item_passes_it_to_the_next() -> None:
    """With another receiver waiting, the item goes straight to it."""

    async def main() -> None:
        send, receive = create_priority_channel[str](1)
        loop = asyncio.get_running_loop()
        first = loop.create_task(receive.receive())
        await blocked()
        second = loop.create_task(receive.receive())
        await blocked()
        send.send_nowait("handed")  # to the first receiver
        first.cancel()
        assert asyncio.CancelledError is await outcome(first)
        assert "handed" == await outcome(second)
        assert 0 == send.statistics().current_size

    run(main)


def test_receive_cancelled_after_the_channel_refilled_keeps_max_size_and_order() -> (
    None
):
    """A full channel takes the item back first in line, never above max_size."""

    async def main() -> None:
        send, receive = create_priority_channel[str](1)
        task = asyncio.get_running_loop().create_task(receive.receive())
        await blocked()
        send.send_nowait("handed")
        send.send_nowait("refill")  # the channel is full again
        task.cancel()
        assert asyncio.CancelledError is await outcome(task)
        stats = send.statistics()
        assert (1, 1, 1) == (
            stats.current_size,
            stats.peak_size,
            stats.tasks_waiting_send,  # what was handed back waits for room
        )
        with pytest.raises(anyio.WouldBlock):
            send.send_nowait("no room")
        assert "handed" == receive.receive_nowait()  # first in line, as sent
        assert 1 == send.statistics().current_size
        assert "refill" == receive.receive_nowait()
        send.send_nowait("room again")
        assert "room again" == receive.receive_nowait()

    run(main)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_receive_under_asyncio_timeout_expiring_at_the_hand_over() -> None:
    """asyncio.timeout() raises TimeoutError and the item stays in the channel."""
    if sys.version_info >= (3, 11):  # always true here (see the mark); tells mypy

        async def main() -> None:
            send, receive = create_priority_channel[str](1)
            timeouts: list[asyncio.Timeout] = []

            async def receiver() -> str:
                async with asyncio.timeout(None) as timeout:
                    timeouts.append(timeout)
                    return await receive.receive()

            task = asyncio.get_running_loop().create_task(receiver())
            await blocked()
            timeouts[0].reschedule(0)  # expires in the next loop turn...
            send.send_nowait("handed")  # ...just as the receiver is handed this
            assert TimeoutError is await outcome(task)
            assert "handed" == receive.receive_nowait()

        run(main)


def test_receive_cancelled_as_it_is_handed_an_item_while_every_receiver_closes() -> (
    None
):
    """With no receiver left, the item goes where queued items go: nowhere."""

    async def main() -> None:
        send, receive = create_priority_channel[str](1)
        task = asyncio.get_running_loop().create_task(receive.receive())
        await blocked()
        send.send_nowait("handed")
        task.cancel()
        receive.close()  # the same loop turn, before the receiver sees either
        assert asyncio.CancelledError is await outcome(task)
        stats = send.statistics()
        assert (0, 0, 0) == (
            stats.current_size,
            stats.tasks_waiting_send,
            stats.tasks_waiting_receive,
        )
        with pytest.raises(anyio.BrokenResourceError):
            send.send_nowait("nobody to take it")

    run(main)


def test_a_cancelled_scope_keeps_the_handed_item_despite_a_native_cancel() -> None:
    """Its cancel scope raises again at the next checkpoint: the item is kept."""

    async def main() -> None:
        send, receive = create_priority_channel[str](1)
        got: list[str] = []
        scopes: list[anyio.CancelScope] = []

        async def receiver() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                got.append(await receive.receive())
                await anyio.lowlevel.checkpoint()  # where the scope's cancel lands

        task = asyncio.get_running_loop().create_task(receiver())
        await blocked()
        send.send_nowait("handed")
        scopes[0].cancel()  # the wait is over: anyio leaves the task alone...
        task.cancel()  # ...and a native cancel lands in the same loop turn
        await asyncio.wait([task])
        assert ["handed"] == got
        assert 0 == send.statistics().current_size

    run(main)


# -- send ---------------------------------------------------------------------------


def test_send_cancelled_as_its_item_moves_in_takes_it_back_out() -> None:
    """send() raises, and its item is no longer in the channel."""

    async def main() -> None:
        send, receive = create_priority_channel[str](1)
        send.send_nowait("first")
        loop = asyncio.get_running_loop()
        task = loop.create_task(send.send("moved in"))
        await blocked()
        waiting = loop.create_task(send.send("next in line"))
        await blocked()
        assert "first" == receive.receive_nowait()  # "moved in" moves in now
        task.cancel()
        assert asyncio.CancelledError is await outcome(task)
        # Taking it back made room: the next blocked sender moved in instead.
        assert await outcome(waiting) is None
        assert "next in line" == receive.receive_nowait()
        with pytest.raises(anyio.WouldBlock):
            receive.receive_nowait()
        assert 0 == send.statistics().tasks_waiting_send

    run(main)


def test_send_cancelled_after_its_item_was_received_raises_and_delivers_once() -> None:
    """The receive that admitted it took it at once: delivered once, send raises."""

    async def main() -> None:
        send, receive = create_priority_channel[str](1)
        send.send_nowait("low", Priority.LOW)
        task = asyncio.get_running_loop().create_task(
            send.send("critical", Priority.CRITICAL)
        )
        await blocked()
        assert "critical" == receive.receive_nowait()  # moved in and taken
        task.cancel()
        assert asyncio.CancelledError is await outcome(task)
        assert "low" == receive.receive_nowait()
        assert 0 == send.statistics().current_size

    run(main)


def test_send_cancelled_as_its_item_moves_in_finds_it_behind_a_later_one() -> None:
    """Taking back searches its level from the newest: a later item stays queued."""

    async def main() -> None:
        send, receive = create_priority_channel[str](2)
        send.send_nowait("a")
        send.send_nowait("b")
        task = asyncio.get_running_loop().create_task(send.send("moved in"))
        await blocked()
        assert "a" == receive.receive_nowait()  # "moved in" moves in behind "b"
        assert "b" == receive.receive_nowait()
        send.send_nowait("after")  # same level, behind "moved in"
        task.cancel()
        assert asyncio.CancelledError is await outcome(task)
        assert "after" == receive.receive_nowait()
        with pytest.raises(anyio.WouldBlock):
            receive.receive_nowait()

    run(main)


def test_send_cancelled_after_its_item_was_received_leaves_its_level_alone() -> None:
    """Already taken: nothing is taken back, and the level's other items stay."""

    async def main() -> None:
        send, receive = create_priority_channel[str](2)
        send.send_nowait("a")
        send.send_nowait("b")
        task = asyncio.get_running_loop().create_task(send.send("moved in"))
        await blocked()
        assert ["a", "b", "moved in"] == [receive.receive_nowait() for _ in range(3)]
        send.send_nowait("after")
        task.cancel()
        assert asyncio.CancelledError is await outcome(task)
        assert "after" == receive.receive_nowait()
        assert 0 == send.statistics().current_size

    run(main)


# -- the pool -----------------------------------------------------------------------


def test_execute_in_block_mode_cancelled_as_its_request_moves_in() -> None:
    """execute() raises CancelledError; its request is cancelled and never runs."""

    async def main() -> None:
        started: list[str] = []
        release = asyncio.Event()

        async def handler(request: str) -> str:
            started.append(request)
            await release.wait()
            return request

        pool = WorkerPool(
            handler,
            workers=1,
            max_queue_size=1,
            backpressure=Backpressure.BLOCK,
            name="native-block",
        )
        async with pool:
            await pool.submit("running")
            queued = await pool.submit("queued")
            await blocked()
            task = asyncio.get_running_loop().create_task(pool.execute("blocked"))
            await blocked()
            assert queued.cancel()  # makes room: "blocked" moves in now
            task.cancel()  # the same loop turn
            assert asyncio.CancelledError is await outcome(task)
            status = pool.status()
            assert (3, 2, 0) == (status.submitted, status.cancelled, status.queue_size)
            release.set()
        assert ["running"] == started
        status = pool.status()
        assert (3, 1, 2) == (status.submitted, status.completed, status.cancelled)

    run(main)


def test_execute_in_block_mode_cancelled_as_its_request_is_taken() -> None:
    """The request moved in and was taken by the worker: it is cancelled too."""

    async def main() -> None:
        started: list[str] = []
        release = asyncio.Event()

        async def handler(request: str) -> str:
            started.append(request)
            if request == "first":
                await release.wait()
            elif request == "urgent":
                await asyncio.sleep(3600)  # until its execute() caller is cancelled
            return request

        pool = WorkerPool(
            handler,
            workers=1,
            max_queue_size=1,
            backpressure=Backpressure.BLOCK,
            name="native-taken",
        )
        async with pool:
            first = await pool.submit("first")
            await pool.submit("queued", priority=Priority.LOW)
            await blocked()
            loop = asyncio.get_running_loop()
            task = loop.create_task(pool.execute("urgent", priority=Priority.CRITICAL))
            await blocked()
            release.set()
            await first.result()
            # The worker took "urgent" (moved in as it made room) before the
            # submitter could resume; cancel that submitter now.
            task.cancel()
            assert asyncio.CancelledError is await outcome(task)
            await blocked()
        assert ["first", "urgent", "queued"] == started
        status = pool.status()
        assert (3, 2, 1, TicketState.SUCCEEDED) == (
            status.submitted,
            status.completed,
            status.cancelled,
            first.state,
        )

    run(main)


# -- random native cancellation, counted ----------------------------------------------


async def _native_scenario(spec: dict[str, Any], **options: Any) -> None:
    send, receive = create_priority_channel[tuple[int, int]](
        spec["max_size"], **options
    )
    loop = asyncio.get_running_loop()
    calls: dict[int, asyncio.Task[Any]] = {}  # each side's call in progress
    sent: list[tuple[int, int]] = []
    cancelled_sends: list[tuple[int, int]] = []
    received: list[tuple[int, int]] = []
    outcomes: dict[asyncio.Task[Any], object] = {}
    hit: list[asyncio.Task[Any]] = []  # calls cancelled before they had ended

    async def producer(pid: int, levels: list[int], sender: Any) -> None:
        with sender:
            for seq, level in enumerate(levels):
                call = calls[pid] = loop.create_task(sender.send((pid, seq), level))
                outcomes[call] = await outcome(call)
                if outcomes[call] is None:
                    sent.append((pid, seq))
                else:
                    cancelled_sends.append((pid, seq))

    async def consumer(cid: int, receiver: Any) -> None:
        with receiver:
            while True:
                call = calls[100 + cid] = loop.create_task(receiver.receive())
                result = outcomes[call] = await outcome(call)
                if result is anyio.EndOfStream:
                    return
                if result is not asyncio.CancelledError:
                    received.append(result)  # type: ignore[arg-type]

    keys = [
        *range(len(spec["producers"])),
        *(100 + c for c in range(spec["consumers"])),
    ]
    sides = [
        loop.create_task(producer(pid, levels, send.clone()))
        for pid, levels in enumerate(spec["producers"])
    ]
    sides += [
        loop.create_task(consumer(cid, receive.clone()))
        for cid in range(spec["consumers"])
    ]
    send.close()
    receive.close()
    for wait, target in spec["chaos"]:
        for _ in range(wait):
            await asyncio.sleep(0)
        call = calls.get(keys[target % len(keys)])
        # A native cancellation, at whatever point it lands.
        if call is not None and call.cancel():
            hit.append(call)
    await asyncio.gather(*sides)

    # Every call cancelled before it had ended raised CancelledError: none was lost.
    assert [asyncio.CancelledError] * len(hit) == [outcomes[call] for call in hit]
    counts = Counter(received)
    assert [] == [item for item, n in counts.items() if n > 1]  # no duplicates
    assert set(sent) <= set(received)  # every completed send delivered
    # A send cancelled as its item moved in took it back, unless a receiver had
    # taken it in that very instant: then it was delivered, once.
    assert set(received) <= set(sent) | set(cancelled_sends)
    assert len(sent) + len(cancelled_sends) == sum(len(p) for p in spec["producers"])
    stats = send.statistics()
    assert (0, 0, 0) == (
        stats.current_size,
        stats.tasks_waiting_send,
        stats.tasks_waiting_receive,
    )
    assert stats.peak_size <= spec["max_size"]


@settings(max_examples=300, deadline=None, database=None)
@given(spec=CANCELLATION_SCENARIOS)
def test_random_native_cancellation_loses_and_duplicates_nothing(
    spec: dict[str, Any],
) -> None:
    """task.cancel() at random points of sends and receives: every item counted."""
    run(lambda: _native_scenario(spec))


@settings(max_examples=150, deadline=None, database=None)
@given(spec=CANCELLATION_SCENARIOS)
def test_random_native_cancellation_of_a_weighted_channel_loses_nothing(
    spec: dict[str, Any],
) -> None:
    """The same on a channel with ``WeightedFair``, which takes in batches."""
    weights = WeightedFair({1: 8, 2: 4, 3: 2, 4: 1})
    run(lambda: _native_scenario(spec, scheduling=weights))


def test_a_handler_cancelling_its_own_task_fails_only_that_request() -> None:
    """A native cancel of the task serving a request is a stray: the worker lives on.

    Later cancellations of that worker's own scope (a timeout) still work, and the
    pool does not close by itself.
    """

    async def main() -> None:
        async def handler(request: str) -> str:
            if request == "cancel my task":
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                await asyncio.sleep(0)
            elif request == "slow":
                await asyncio.sleep(3600)
            return request

        async with WorkerPool(handler, workers=1, name="self-cancel") as pool:
            with pytest.raises(RequestCancelled, match="did not issue"):
                await pool.execute("cancel my task")
            for _ in range(3):  # the worker's own scope, cancelled by the deadline
                with pytest.raises(RequestTimeout):
                    await pool.execute("slow", timeout=0.01)
            assert "after" == await pool.execute("after")
            assert "running" == pool.status().state

    run(main)
