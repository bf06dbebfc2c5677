"""The public generics, type-checked: never run, never collected by pytest.

``mypy --strict src tests`` and ``pyright -p tests/typing`` read this file (``nox -s
typecheck`` runs both); pytest collects ``test_*.py`` only. ``assert_type`` checks
what each checker infers. A line that must be refused carries an ignore for the
one error it must raise, once for each checker: ``# type: ignore[code]`` for mypy,
whose ``warn_unused_ignores`` (part of ``--strict``) fails an ignore that is not
needed, and ``# pyright: ignore[rule]`` for pyright, which ``pyrightconfig.json``
beside this file tells to read no ``# type: ignore`` and to fail an unneeded
ignore of its own. So if a refused line became accepted, both checks would fail.
"""

from __future__ import annotations

from typing_extensions import assert_type

from queuekeeper import (
    PoolObserver,
    PriorityReceiveChannel,
    PrioritySendChannel,
    PrometheusMetrics,
    Ticket,
    TicketState,
    WorkerPool,
    create_priority_channel,
)

# -- the channel --------------------------------------------------------------------

int_send, int_receive = create_priority_channel[int](10)
bool_send, bool_receive = create_priority_channel[bool](10)
assert_type(
    create_priority_channel[int](10),
    tuple[PrioritySendChannel[int], PriorityReceiveChannel[int]],
)
assert_type(int_send, PrioritySendChannel[int])
assert_type(int_receive, PriorityReceiveChannel[int])
assert_type(int_receive.receive_nowait(), int)

int_send.send_nowait(1)
int_send.send_nowait(True)  # a bool is an int
int_send.send_nowait("one")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def wants_bool_sender(channel: PrioritySendChannel[bool]) -> None:
    """Send bools on *channel*."""


def wants_int_sender(channel: PrioritySendChannel[int]) -> None:
    """Send ints on *channel*."""


def wants_int_receiver(channel: PriorityReceiveChannel[int]) -> None:
    """Receive ints from *channel*."""


def wants_bool_receiver(channel: PriorityReceiveChannel[bool]) -> None:
    """Receive bools from *channel*."""


# The send side is contravariant: a channel taking any int takes bools too...
wants_bool_sender(int_send)
# ...but one taking only bools is no place to send any int.
wants_int_sender(bool_send)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
# The receive side is covariant: bools received are ints received...
wants_int_receiver(bool_receive)
# ...but ints received are not all bools.
wants_bool_receiver(int_receive)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def receive_one() -> None:
    """``await receive()`` gives the item type."""
    assert_type(await int_receive.receive(), int)
    async for item in bool_receive:
        assert_type(item, bool)


# -- the pool -----------------------------------------------------------------------


async def handler(request: str) -> int:
    """Take a str, give an int."""
    return len(request)


def sync_handler(request: str) -> int:
    """A synchronous function: no handler."""
    return len(request)


pool = WorkerPool(handler)
assert_type(pool, WorkerPool[str, int])
assert_type(pool.submit_nowait("x"), Ticket[int])
WorkerPool(sync_handler)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def use_the_pool() -> None:
    """Results and tickets carry the handler's types."""
    assert_type(await pool.execute("x"), int)
    ticket = await pool.submit("x")
    assert_type(ticket, Ticket[int])
    assert_type(await ticket.result(), int)
    await pool.submit(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await pool.execute(b"x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    pool.submit_nowait(None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# -- observers ----------------------------------------------------------------------


class LoggingObserver:
    """Any object with the five PoolObserver methods is an observer."""

    def attach(self, pool: object) -> None:
        """Accept any pool."""

    def submitted(self, pool: str, priority: int) -> None:
        """Log a request accepted into the queue."""

    def rejected(self, pool: str, priority: int) -> None:
        """Log a QueueFull."""

    def started(self, pool: str, priority: int, wait: float) -> None:
        """Log a start."""

    def finished(
        self, pool: str, priority: int, outcome: TicketState, duration: float | None
    ) -> None:
        """Log a final state."""


class HalfAnObserver:
    """An object that lacks four of the five methods."""

    def attach(self, pool: object) -> None:
        """Accept any pool."""


WorkerPool(handler, metrics=PrometheusMetrics())
WorkerPool(handler, metrics=LoggingObserver())
WorkerPool(handler, metrics=None)
WorkerPool(handler, metrics=HalfAnObserver())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
observer: PoolObserver = PrometheusMetrics()
