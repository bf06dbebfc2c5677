"""Cancel-safety of the channel: exact races, random cancellation, and a 5x5 stress."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest
from hypothesis import given, settings

from helpers import CANCELLATION_SCENARIOS
from queuekeeper import Priority, WeightedFair, create_priority_channel

# -- exact races --------------------------------------------------------------------


@pytest.mark.anyio
async def test_receiver_handed_an_item_and_cancelled_in_the_same_instant_keeps_it() -> (
    None
):
    """An item handed over just before the receiver's cancel is returned, not lost."""
    send, receive = create_priority_channel[str](1)
    got: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def receiver() -> None:
            with scope:
                got.append(await receive.receive())

        tg.start_soon(receiver)
        await anyio.wait_all_tasks_blocked()
        send.send_nowait("item")
        scope.cancel()  # same instant: no checkpoint in between
    assert ["item"] == got
    assert 0 == send.statistics().current_size


@pytest.mark.anyio
async def test_item_is_never_handed_to_a_receiver_being_cancelled() -> None:
    """A receiver whose wait is already cancelled is skipped; the item is buffered."""
    send, receive = create_priority_channel[str](1)
    got: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def receiver() -> None:
            with scope:
                got.append(await receive.receive())

        tg.start_soon(receiver)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        send.send_nowait("item")  # the receiver is cancelling: not handed to it
    assert [] == got
    assert "item" == receive.receive_nowait()
    assert 0 == send.statistics().tasks_waiting_receive


@pytest.mark.anyio
@pytest.mark.parametrize("cancel_first", [False, True])
async def test_sender_admitted_in_the_instant_of_its_cancel_returns_normally(
    cancel_first: bool,
) -> None:
    """A blocked send whose item moves in as it is cancelled completes, once."""
    send, receive = create_priority_channel[str](1)
    send.send_nowait("first")
    outcome: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def sender() -> None:
            with scope:
                await send.send("second")
                outcome.append("sent")

        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        if cancel_first:
            scope.cancel()
        assert "first" == receive.receive_nowait()  # admits "second" at this moment
        scope.cancel()
    assert ["sent"] == outcome
    assert "second" == receive.receive_nowait()
    assert 0 == send.statistics().current_size


@pytest.mark.anyio
async def test_cancelled_blocked_send_enqueues_nothing() -> None:
    """Cancelling a blocked send before room appears leaves the channel as it was."""
    send, receive = create_priority_channel[str](1)
    send.send_nowait("first")
    with anyio.move_on_after(0.01) as scope:
        await send.send("never")
    assert scope.cancelled_caught
    assert "first" == receive.receive_nowait()
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()


# -- random cancellation, counted ---------------------------------------------------


async def _scenario(spec: dict[str, Any], **options: Any) -> None:
    send, receive = create_priority_channel[tuple[int, int]](
        spec["max_size"], **options
    )
    scopes: dict[int, anyio.CancelScope] = {}
    sent: list[tuple[int, int]] = []
    cancelled_sends: list[tuple[int, int]] = []
    received: list[tuple[int, int]] = []

    async def producer(pid: int, levels: list[int], sender: object) -> None:
        async with sender:  # type: ignore[attr-defined]
            for seq, level in enumerate(levels):
                item = (pid, seq)
                with anyio.CancelScope() as scope:
                    scopes[pid] = scope
                    await sender.send(item, level)  # type: ignore[attr-defined]
                    sent.append(item)
                if scope.cancelled_caught:
                    cancelled_sends.append(item)

    async def consumer(cid: int, receiver: object) -> None:
        # Odd consumers take items as async for does (__anext__ has its own fast
        # path), even ones with receive().
        take = receiver.__anext__ if cid % 2 else receiver.receive  # type: ignore[attr-defined]
        async with receiver:  # type: ignore[attr-defined]
            while True:
                with anyio.CancelScope() as scope:
                    scopes[100 + cid] = scope
                    try:
                        received.append(await take())
                    except (anyio.EndOfStream, StopAsyncIteration):
                        return

    async def chaos() -> None:
        keys = [
            *range(len(spec["producers"])),
            *(100 + c for c in range(spec["consumers"])),
        ]
        for wait, target in spec["chaos"]:
            for _ in range(wait):
                await anyio.lowlevel.checkpoint()
            scope = scopes.get(keys[target % len(keys)])
            if scope is not None:
                scope.cancel()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(chaos)
            async with anyio.create_task_group() as work:
                for pid, levels in enumerate(spec["producers"]):
                    work.start_soon(producer, pid, levels, send.clone())
                for cid in range(spec["consumers"]):
                    work.start_soon(consumer, cid, receive.clone())
                send.close()
                receive.close()
    counts = Counter(received)
    assert [] == [item for item, n in counts.items() if n > 1]  # no duplicates
    assert set(sent) == set(received)  # every completed send delivered
    assert set() == set(cancelled_sends) & set(
        received
    )  # cancelled sends enqueued nothing
    assert len(sent) + len(cancelled_sends) == sum(len(p) for p in spec["producers"])
    stats = send.statistics()
    assert (0, 0, 0) == (
        stats.current_size,
        stats.tasks_waiting_send,
        stats.tasks_waiting_receive,
    )


@pytest.mark.anyio
@settings(max_examples=200, deadline=None, database=None)
@given(spec=CANCELLATION_SCENARIOS)
async def test_random_cancellation_loses_and_duplicates_nothing(
    spec: dict[str, Any],
) -> None:
    """Producers and consumers cancelled at random points: every item accounted for."""
    await _scenario(spec)


@pytest.mark.anyio
@settings(max_examples=100, deadline=None, database=None)
@given(spec=CANCELLATION_SCENARIOS)
async def test_random_cancellation_of_a_weighted_channel_loses_nothing(
    spec: dict[str, Any],
) -> None:
    """The same on a channel with ``WeightedFair``, which takes in batches."""
    weights = WeightedFair({1: 8, 2: 4, 3: 2, 4: 1})
    await _scenario(spec, scheduling=weights)


# -- stress -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_five_producers_five_consumers_exact_counts_and_fifo_per_level() -> None:
    """20,000 items through a channel of 10: each arrives once, FIFO per level.

    FIFO is checked per consumer: the order in which several woken consumers get
    to run is the scheduler's, not the channel's (trio varies it on purpose).
    """
    send, receive = create_priority_channel[tuple[int, int, int]](10)
    received: list[tuple[int, int, int]] = []
    by_consumer: list[list[tuple[int, int, int]]] = [[] for _ in range(5)]
    per_producer = 4_000
    levels = [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW]

    async def producer(pid: int, sender: object) -> None:
        rng = random.Random(pid)
        async with sender:  # type: ignore[attr-defined]
            for seq in range(per_producer):
                level = rng.choice(levels)
                await sender.send((pid, int(level), seq), level)  # type: ignore[attr-defined]

    async def consumer(receiver: object, mine: list[tuple[int, int, int]]) -> None:
        async with receiver:  # type: ignore[attr-defined]
            async for item in receiver:  # type: ignore[attr-defined]
                mine.append(item)
                received.append(item)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for pid in range(5):
                tg.start_soon(producer, pid, send.clone())
            for mine in by_consumer:
                tg.start_soon(consumer, receive.clone(), mine)
            send.close()
            receive.close()
    assert 20_000 == len(received)
    assert {(pid, seq) for pid in range(5) for seq in range(4_000)} == {
        (pid, seq) for pid, _, seq in received
    }
    for mine in by_consumer:
        last: dict[tuple[int, int], int] = {}
        for pid, level, seq in mine:
            assert last.get((pid, level), -1) < seq, (pid, level, seq)
            last[pid, level] = seq
    assert send.statistics().peak_size <= 10
