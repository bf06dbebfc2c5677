"""The priority channel: ordering, capacity, closing, statistics, bad input."""

from __future__ import annotations

import math
from typing import TypeVar

import anyio
import pytest
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.stapled import StapledObjectStream
from hypothesis import given, settings
from hypothesis import strategies as st

from queuekeeper import (
    ChannelStatistics,
    Priority,
    PriorityReceiveChannel,
    PrioritySendChannel,
    create_priority_channel,
)
from queuekeeper._channel import _KEEP_IDLE_LEVELS
from queuekeeper._memory import MemoryQueue

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def drain(receive: PriorityReceiveChannel[T]) -> list[T]:
    """Receive with receive_nowait until the channel has nothing more to give."""
    items: list[T] = []
    while True:
        try:
            items.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):  # noqa: PERF203
            return items


# -- priorities ---------------------------------------------------------------------


def test_priority_is_an_int_enum_with_four_levels() -> None:
    """Priority names CRITICAL=1, HIGH=2, NORMAL=3, LOW=4, and is an int."""
    assert [1, 2, 3, 4] == [
        Priority.CRITICAL,
        Priority.HIGH,
        Priority.NORMAL,
        Priority.LOW,
    ]
    assert isinstance(Priority.HIGH, int)


async def test_levels_are_served_lowest_value_first() -> None:
    """Items come out CRITICAL, HIGH, NORMAL, LOW whatever order they went in."""
    send, receive = create_priority_channel[str](10)
    for level in (Priority.LOW, Priority.NORMAL, Priority.CRITICAL, Priority.HIGH):
        await send.send(level.name, level)
    assert ["CRITICAL", "HIGH", "NORMAL", "LOW"] == drain(receive)


def test_custom_int_levels_sort_among_the_named_ones() -> None:
    """0 goes before CRITICAL, 10 after LOW, negative ints first of all."""
    send, receive = create_priority_channel[int]()
    for level in (10, 4, 0, 1, -5, 3, 2):
        send.send_nowait(level, level)
    assert [-5, 0, 1, 2, 3, 4, 10] == drain(receive)


def test_fifo_within_a_level_across_interleaved_levels() -> None:
    """Within one level, items leave in the order they were sent."""
    send, receive = create_priority_channel[tuple[int, int]]()
    for i in range(50):
        send.send_nowait((i % 3, i), i % 3)
    out = drain(receive)
    assert sorted(out) == out  # by level, then by sequence


async def test_default_priority_is_normal() -> None:
    """send and send_nowait default to Priority.NORMAL."""
    send, receive = create_priority_channel[str]()
    send.send_nowait("default-nowait")
    await send.send("default-send")
    send.send_nowait("high", Priority.HIGH)
    send.send_nowait("low", Priority.LOW)
    assert {3: 2, 2: 1, 4: 1} == dict(send.statistics().size_by_priority)
    assert ["high", "default-nowait", "default-send", "low"] == drain(receive)


# -- capacity -----------------------------------------------------------------------


def test_send_nowait_raises_would_block_when_full_at_any_priority() -> None:
    """A full channel never evicts, not even for CRITICAL or a custom 0."""
    send, receive = create_priority_channel[str](2)
    send.send_nowait("a", Priority.LOW)
    send.send_nowait("b", Priority.LOW)
    for level in (Priority.CRITICAL, 0, Priority.LOW):
        with pytest.raises(anyio.WouldBlock):
            send.send_nowait("x", level)
    assert ["a", "b"] == drain(receive)


async def test_blocked_send_wakes_when_room_appears() -> None:
    """A send blocked on a full channel completes as soon as a receive makes room."""
    send, receive = create_priority_channel[str](1)
    send.send_nowait("first")
    done = anyio.Event()

    async def blocked() -> None:
        await send.send("second")
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(blocked)
        await anyio.wait_all_tasks_blocked()
        assert 1 == send.statistics().tasks_waiting_send
        assert "first" == receive.receive_nowait()
        with anyio.fail_after(5):
            await done.wait()
    assert ["second"] == drain(receive)


async def test_blocked_senders_are_admitted_in_arrival_order() -> None:
    """Blocked senders go in first come, first served, whatever their priority."""
    send, receive = create_priority_channel[str](1)
    send.send_nowait("filler", Priority.LOW)
    async with anyio.create_task_group() as tg:
        for name, level in [("a", Priority.LOW), ("b", Priority.CRITICAL), ("c", 0)]:
            tg.start_soon(send.send, name, level)
            await anyio.wait_all_tasks_blocked()
        assert 3 == send.statistics().tasks_waiting_send
        # Each receive admits the longest-waiting sender, then takes the best item:
        # b (admitted second) comes out before c, though c's level is higher.
        assert ["filler", "b", "c", "a"] == [receive.receive_nowait() for _ in range(4)]
    assert 0 == send.statistics().tasks_waiting_send


async def test_receive_nowait_loop_drains_items_held_by_blocked_senders() -> None:
    """Items of blocked senders move into the channel as receive_nowait makes room."""
    send, receive = create_priority_channel[int](2)
    send.send_nowait(0)
    send.send_nowait(1)
    async with anyio.create_task_group() as tg:
        for i in range(2, 6):
            tg.start_soon(send.send, i)
            await anyio.wait_all_tasks_blocked()
        stats = send.statistics()
        assert (2, 4) == (stats.current_size, stats.tasks_waiting_send)
        assert [0, 1, 2, 3, 4, 5] == drain(receive)


async def test_waiting_receiver_is_handed_the_item_without_using_buffer_space() -> None:
    """With max_size=1 and a receiver waiting, two send_nowait calls succeed."""
    send, receive = create_priority_channel[str](1)
    got = []

    async def receiver() -> None:
        got.append(await receive.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await anyio.wait_all_tasks_blocked()
        send.send_nowait("handed")
        send.send_nowait("buffered")
        assert 1 == send.statistics().current_size
    assert ["handed"] == got
    assert ["buffered"] == drain(receive)


async def test_channel_never_holds_more_than_max_size() -> None:
    """current_size stays within max_size while senders pile up and drain."""
    send, receive = create_priority_channel[int](3)
    sizes = []
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(send.send, i, i % 4)
        await anyio.wait_all_tasks_blocked()
        for _ in range(10):
            sizes.append(send.statistics().current_size)
            receive.receive_nowait()
            await anyio.wait_all_tasks_blocked()
    assert max(sizes) <= 3
    assert 3 == send.statistics().peak_size


@pytest.mark.parametrize("unbounded", [None, math.inf])
def test_unbounded_channel_accepts_everything(unbounded: float | None) -> None:
    """None and math.inf both mean no limit."""
    send, receive = create_priority_channel[int](unbounded)
    for i in range(10_000):
        send.send_nowait(i, i % 5)
    stats = receive.statistics()
    assert (10_000, math.inf) == (stats.current_size, stats.max_size)
    assert 10_000 == len(drain(receive))


# -- closing and cloning ------------------------------------------------------------


async def test_end_of_stream_after_queued_items_are_delivered() -> None:
    """Closing the last sender ends the stream only once the queue is empty."""
    send, receive = create_priority_channel[str](5)
    send.send_nowait("low", Priority.LOW)
    send.send_nowait("high", Priority.HIGH)
    send.close()
    assert ["high", "low"] == [receive.receive_nowait(), receive.receive_nowait()]
    with pytest.raises(anyio.EndOfStream):
        receive.receive_nowait()
    with pytest.raises(anyio.EndOfStream):
        await receive.receive()


async def test_blocked_receive_gets_end_of_stream_when_last_sender_closes() -> None:
    """A receiver waiting on an empty channel ends when every sender is gone."""
    send, receive = create_priority_channel[str](5)
    clone = send.clone()
    outcome = []

    async def waiter() -> None:
        try:
            await receive.receive()
        except anyio.EndOfStream:
            outcome.append("end")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        send.close()
        await anyio.wait_all_tasks_blocked()
        assert [] == outcome  # the clone is still open
        await clone.aclose()
    assert ["end"] == outcome


async def test_async_for_ends_when_the_last_sender_closes() -> None:
    """async for yields everything in priority order, then stops."""
    send, receive = create_priority_channel[int](10)
    async with send:
        for i in (3, 1, 2):
            await send.send(i, i)
    assert [1, 2, 3] == [item async for item in receive]


async def test_send_after_receivers_close_is_broken() -> None:
    """With every receiver closed, send and send_nowait raise BrokenResourceError."""
    send, receive = create_priority_channel[int](5)
    send.send_nowait(1)
    clone = receive.clone()
    receive.close()
    send.send_nowait(2)  # a clone still receives
    await clone.aclose()
    with pytest.raises(anyio.BrokenResourceError):
        send.send_nowait(3)
    with pytest.raises(anyio.BrokenResourceError):
        await send.send(3)
    assert 0 == send.statistics().current_size  # unreachable items are dropped


async def test_blocked_send_gets_broken_when_last_receiver_closes() -> None:
    """A sender blocked on a full channel fails when the receiving side goes away."""
    send, receive = create_priority_channel[int](1)
    send.send_nowait(1)
    outcome = []

    async def blocked() -> None:
        try:
            await send.send(2)
        except anyio.BrokenResourceError:
            outcome.append("broken")

    async with anyio.create_task_group() as tg:
        tg.start_soon(blocked)
        await anyio.wait_all_tasks_blocked()
        receive.close()
    assert ["broken"] == outcome
    assert 0 == send.statistics().tasks_waiting_send


async def test_closed_endpoints_raise_closed_resource_error() -> None:
    """Every operation on an endpoint you closed raises ClosedResourceError."""
    send, receive = create_priority_channel[int](5)
    await send.aclose()
    await receive.aclose()
    send.close()  # idempotent
    receive.close()
    for call in (
        lambda: send.send_nowait(1),
        receive.receive_nowait,
        send.clone,
        receive.clone,
    ):
        with pytest.raises(anyio.ClosedResourceError):
            call()
    with pytest.raises(anyio.ClosedResourceError):
        await send.send(1)
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()


async def test_async_for_on_a_closed_receiver_raises_while_senders_remain() -> None:
    """A closed endpoint is an error for ``async for`` too, not an end of stream."""
    send, receive = create_priority_channel[int](5)
    receive.close()
    with pytest.raises(anyio.ClosedResourceError):
        await receive.__anext__()  # what each turn of an ``async for`` calls
    send.close()


def test_endpoints_repr_says_whether_they_are_open() -> None:
    """Named by their public class, with open or closed."""
    send, receive = create_priority_channel[int](5)
    assert repr(send).startswith("<queuekeeper.PrioritySendChannel at 0x")
    assert repr(receive).startswith("<queuekeeper.PriorityReceiveChannel at 0x")
    assert (repr(send).endswith(", open>"), repr(receive).endswith(", open>")) == (
        True,
        True,
    )
    send.close()
    receive.close()
    assert repr(send).endswith(", closed>")
    assert repr(receive).endswith(", closed>")


async def test_closing_an_endpoint_wakes_its_own_blocked_tasks() -> None:
    """Tasks blocked on an endpoint that gets closed raise ClosedResourceError."""
    send, receive = create_priority_channel[int](1)
    keep_open = send.clone()  # so receivers block rather than see the end
    other_receive = receive.clone()
    outcomes = []

    async def blocked_send() -> None:
        send.send_nowait(1)
        try:
            await send.send(2)
        except anyio.ClosedResourceError:
            outcomes.append("send closed")

    async def blocked_receive() -> None:
        try:
            await other_receive.receive()
        except anyio.ClosedResourceError:
            outcomes.append("receive closed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(blocked_send)
        await anyio.wait_all_tasks_blocked()
        send.close()
        await anyio.wait_all_tasks_blocked()
        assert [1] == drain(receive)
        tg.start_soon(blocked_receive)
        await anyio.wait_all_tasks_blocked()
        other_receive.close()
    keep_open.close()
    assert ["send closed", "receive closed"] == outcomes


async def test_context_managers_close_the_endpoints() -> None:
    """with and async with close what they opened."""
    send, receive = create_priority_channel[int]()
    with send:
        send.send_nowait(1)
    async with receive:
        assert 1 == receive.receive_nowait()
    stats = receive.statistics()
    assert (0, 0) == (stats.open_send_channels, stats.open_receive_channels)


async def test_endpoints_are_anyio_object_streams() -> None:
    """The endpoints drop in where anyio object streams are expected."""
    send, receive = create_priority_channel[int](4)
    assert isinstance(send, ObjectSendStream)
    assert isinstance(receive, ObjectReceiveStream)
    stapled = StapledObjectStream(send, receive)
    await stapled.send(7)
    assert 7 == await stapled.receive()
    await stapled.aclose()


def test_endpoints_have_no_public_constructor() -> None:
    """Only create_priority_channel builds endpoints."""
    send, _receive = create_priority_channel[int]()
    with pytest.raises(TypeError, match="no public constructor"):
        PrioritySendChannel(send._state)
    with pytest.raises(TypeError, match="no public constructor"):
        PriorityReceiveChannel(send._state)


# -- statistics ---------------------------------------------------------------------


def test_statistics_report_every_field() -> None:
    """statistics() is a frozen snapshot of sizes, levels, endpoints and waiters."""
    send, receive = create_priority_channel[str](3)
    clone = send.clone()
    send.send_nowait("a", Priority.LOW)
    send.send_nowait("b", 0)
    send.send_nowait("c", Priority.LOW)
    receive.receive_nowait()
    stats = send.statistics()
    assert isinstance(stats, ChannelStatistics)
    assert (
        ChannelStatistics(
            current_size=2,
            max_size=3,
            peak_size=3,
            size_by_priority={4: 2},
            open_send_channels=2,
            open_receive_channels=1,
            tasks_waiting_send=0,
            tasks_waiting_receive=0,
        )
        == stats
    )
    assert stats == receive.statistics() == clone.statistics()
    with pytest.raises(AttributeError):
        stats.current_size = 5  # type: ignore[misc]


async def test_waiter_counts_return_to_zero_after_cancellation() -> None:
    """Cancelled blocked senders and receivers leave no waiter behind."""
    send, receive = create_priority_channel[int](1)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(receive.receive)
        await anyio.wait_all_tasks_blocked()
        assert 3 == send.statistics().tasks_waiting_receive
        tg.cancel_scope.cancel()
    assert 0 == send.statistics().tasks_waiting_receive
    send.send_nowait(0)
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(send.send, i)
        await anyio.wait_all_tasks_blocked()
        assert 3 == send.statistics().tasks_waiting_send
        tg.cancel_scope.cancel()
    stats = send.statistics()
    assert (0, 0, 1) == (
        stats.tasks_waiting_send,
        stats.tasks_waiting_receive,
        stats.current_size,
    )
    assert [0] == drain(receive)  # the cancelled sends enqueued nothing


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_size", "error", "shown"),
    [
        (0, ValueError, "0"),
        (-1, ValueError, "-1"),
        (1.5, TypeError, "1.5"),
        (True, TypeError, "True"),
        ("3", TypeError, "'3'"),
        (math.nan, TypeError, "nan"),
        (-math.inf, TypeError, "-inf"),
    ],
)
def test_bad_max_size_is_rejected_naming_the_value(
    max_size: object, error: type[Exception], shown: str
) -> None:
    """max_size must be None, math.inf or an int >= 1; the error names the value."""
    pattern = rf"^max_size must be None, math.inf or an int >= 1, not {shown}( |$)"
    with pytest.raises(error, match=pattern):
        create_priority_channel(max_size)  # type: ignore[arg-type]


def test_int_subclass_priorities_are_plain_ints() -> None:
    """A user's own int subclass is accepted, and counted as the int it is."""

    class Tier(int):
        pass

    send, receive = create_priority_channel[str](2)
    send.send_nowait("tier 3", Tier(3))
    send.send_nowait("critical", Priority.CRITICAL)
    sizes = send.statistics().size_by_priority
    assert {3: 1, Priority.CRITICAL: 1} == dict(sizes)
    assert [int] == [type(level) for level in sizes if level == 3]
    assert ["critical", "tier 3"] == drain(receive)


@pytest.mark.parametrize(
    ("priority", "shown"),
    [(None, "None"), (1.0, "1.0"), ("HIGH", "'HIGH'"), (True, "True")],
)
async def test_bad_priority_is_rejected_and_the_channel_keeps_working(
    priority: object, shown: str
) -> None:
    """Non-int priorities raise TypeError naming the value; nothing is lost."""
    send, receive = create_priority_channel[str](2)
    send.send_nowait("kept")
    pattern = rf"^priority must be an int or a queuekeeper.Priority, not {shown} "
    with pytest.raises(TypeError, match=pattern):
        send.send_nowait("bad", priority)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=pattern):
        await send.send("bad", priority)  # type: ignore[arg-type]
    assert 1 == send.statistics().current_size
    await send.send("after", Priority.HIGH)
    assert ["after", "kept"] == drain(receive)


def test_bad_priority_in_a_full_channel_raises_type_error_not_would_block() -> None:
    """Validation comes first: bad input is reported even when the channel is full."""
    send, _receive = create_priority_channel[str](1)
    send.send_nowait("x")
    with pytest.raises(TypeError):
        send.send_nowait("y", "LOW")  # type: ignore[arg-type]


def test_statistics_tolerate_a_level_that_empties_meanwhile() -> None:
    """A scrape from another thread may see a level listed but already dropped."""
    send, receive = create_priority_channel[str](10)
    with send, receive:
        send.send_nowait("a", Priority.HIGH)
        send.send_nowait("b", Priority.LOW)
        state = send._state
        del state.buckets[Priority.LOW]  # as if dropped between two reads
        stats = send.statistics()
        assert {Priority.HIGH: 1} == dict(stats.size_by_priority)


# Levels enough to overflow the table of idle levels kept for reuse.
_MODEL_LEVELS = st.sampled_from([-7, 0, 1, 2, 3, 4, 10, 11, 12, 50, 99])


@settings(max_examples=300, deadline=None)
@given(
    max_size=st.integers(min_value=1, max_value=6),
    ops=st.lists(st.one_of(st.none(), _MODEL_LEVELS), max_size=80),
)
def test_nowait_calls_agree_with_a_sorted_model(
    max_size: int, ops: list[int | None]
) -> None:
    """Any mix of sends (a level) and receives (None) matches a (level, seq) model.

    Covers the lazily dropped level: a receive that empties the first level leaves
    it listed until the next receive or a send at any level.
    """
    send, receive = create_priority_channel[tuple[int, int]](max_size)
    model: list[tuple[int, int]] = []
    peak = 0
    with send, receive:
        for seq, op in enumerate(ops):
            if op is None:
                if not model:
                    with pytest.raises(anyio.WouldBlock):
                        receive.receive_nowait()
                else:
                    assert receive.receive_nowait() == model.pop(0)
            elif len(model) == max_size:
                with pytest.raises(anyio.WouldBlock):
                    send.send_nowait((op, seq), op)
            else:
                send.send_nowait((op, seq), op)
                model.append((op, seq))
                model.sort()
                peak = max(peak, len(model))
            stats = receive.statistics()
            expected: dict[int, int] = {}
            for level, _ in model:
                expected[level] = expected.get(level, 0) + 1
            assert dict(stats.size_by_priority) == expected
            assert stats.current_size == len(model)
            assert stats.peak_size == peak
            state = receive._state
            # Every listed level holds items, but the first may be the one a
            # receive just emptied.
            assert state.levels == sorted(set(state.levels))
            listed = set(state.levels)
            assert set(expected) <= listed <= {*expected, *state.levels[:1]}
            head = state.buckets[state.levels[0]] if state.levels else None
            assert state.head is head
            assert state.ready is state.head
        assert [receive.receive_nowait() for _ in model] == model


@pytest.mark.parametrize(
    "levels",
    [range(1000), range(1000, 0, -1)],
    ids=["ascending", "descending"],
)
def test_ever_new_custom_levels_do_not_grow_the_level_table(levels: range) -> None:
    """Emptied levels are forgotten beyond a few idle ones, however they empty.

    Each round empties a level by remove(), one by a receive that the next
    receive drops, and one by a receive that the next level added drops.
    """
    queue = MemoryQueue[int](10)  # the pool's view of the bucket queue
    state = queue._state
    queue.put_nowait(-1, 10**9)  # a level that stays filled, served last
    for level in levels:
        queue.put_nowait(level, level + 5000)
        assert queue.remove(level, level + 5000)  # empties a level behind
        queue.put_nowait(level, level)
        queue.put_nowait(level, level + 3000)
        assert queue.take_nowait() == level  # leaves its level empty
        assert queue.take_nowait() == level  # drops it; empties the next
        queue.put_nowait(level, level + 2000)  # drops that: a level added
        assert queue.take_nowait() == level  # leaves this one empty
        assert state.levels == sorted(state.buckets.keys() & {*state.levels})
        assert len(state.buckets) <= _KEEP_IDLE_LEVELS + 1
    assert [-1] == queue.drain()
    assert len(state.buckets) <= _KEEP_IDLE_LEVELS + 1
