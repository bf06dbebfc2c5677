"""Immutable snapshots: channel statistics, pool status and worker health."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ChannelStatistics", "PoolStatus", "WorkerHealth"]


@attrs.frozen
class ChannelStatistics:
    """A snapshot of a priority channel, returned by ``statistics()``.

    Attributes:
        current_size: Items in the channel now. Items held by blocked senders are
            not counted until they move in (see ``tasks_waiting_send``).
        max_size: The channel's capacity (:data:`math.inf` when unbounded).
        peak_size: The highest ``current_size`` seen since the channel was made.
        size_by_priority: Items in the channel per priority (a plain ``int`` key),
            listing only non-empty levels, in the order they are served.
        open_send_channels: Send endpoints (clones included) not yet closed.
        open_receive_channels: Receive endpoints (clones included) not yet closed.
        tasks_waiting_send: Tasks blocked in ``send()`` because the channel is full,
            and items waiting the same way to move back in: on plain asyncio, an
            item a natively cancelled receiver gave back while the channel was full.
        tasks_waiting_receive: Tasks blocked in ``receive()`` because it is empty.
    """

    current_size: int
    max_size: float
    peak_size: int
    size_by_priority: Mapping[int, int]
    open_send_channels: int
    open_receive_channels: int
    tasks_waiting_send: int
    tasks_waiting_receive: int


@attrs.frozen
class WorkerHealth:
    """A snapshot of one worker, from :meth:`WorkerPool.worker_health`.

    Attributes:
        worker_id: The worker's index in the pool, from 0.
        is_healthy: ``False`` when the worker has been busy on one request for
            longer than the pool's ``hung_after``, when its handler has ignored a
            cancellation for longer than the pool's ``cancel_grace``, or when its
            last ``unhealthy_after`` requests in a row failed or timed out.
        total_processed: Requests the worker finished, whatever their outcome.
        total_errors: Requests whose handler raised or timed out.
        current_request: The id of the ticket it is running, or ``None``.
        busy_since: When it took that request (backend clock), or ``None``.
        last_error: ``repr`` of the last error a handler raised, or ``None``.
        consecutive_errors: Errors since the worker's last success.
        reserved_for: For a reserved worker (see ``WorkerPool(reserved=...)``),
            the lowest priority it takes (the largest value); else ``None``.

    .. versionchanged:: 0.2
       Added ``reserved_for``.
    """

    worker_id: int
    is_healthy: bool
    total_processed: int
    total_errors: int
    current_request: str | None
    busy_since: float | None
    last_error: str | None
    consecutive_errors: int = 0
    reserved_for: int | None = None


@attrs.frozen
class PoolStatus:
    """A snapshot of a :class:`WorkerPool`, from :meth:`WorkerPool.status`.

    Once everything settles, ``submitted == completed + failed + cancelled +
    timed_out + shed``; until then the difference is the requests still queued or
    running. Wait times cover the most recent requests that started running.

    Attributes:
        name: The pool's name.
        state: ``"created"`` (the workers have not started yet), ``"running"``,
            ``"draining"`` (shutdown waits for work to finish) or ``"closed"``.
        max_workers: How many workers the pool runs: its ``workers``, as
            :meth:`WorkerPool.resize` or its ``autoscale`` last set it.
        active_workers: Workers busy on a request now.
        queue_size: Requests waiting in the queue.
        queue_size_by_priority: Waiting requests per priority (non-empty levels).
        max_queue_size: The queue's capacity, ``None`` when unbounded.
        submitted: Requests accepted into the queue.
        completed: Requests whose handler returned.
        failed: Requests whose handler raised.
        rejected: :exc:`QueueFull` errors raised to submitters.
        timed_out: Requests that hit their ``queue_timeout`` or ``timeout``.
        cancelled: Requests cancelled (ticket, caller or shutdown).
        shed: Requests evicted for higher-priority ones.
        average_wait_time_ms: Mean time in the queue, recent requests.
        wait_time_ms_p50: Median time in the queue, recent requests.
        wait_time_ms_p95: 95th percentile of the same.
        wait_time_ms_p99: 99th percentile of the same.
        workers: One :class:`WorkerHealth` per worker (after a shrink, those
            still to retire included until they do).
        in_flight: Requests taken from the queue and not finished yet. In-process,
            the same as ``active_workers``; on a shared queue (Redis), those of
            every process, as the server counts them.
        workers_alive: Workers alive per process (``"<host>:<pid>"``), this
            process always listed. In-process, the pool's workers while it runs
            (0 before and after); on a shared queue, every process whose pools
            serve it and whose heartbeat came within the last three beats (at
            most 3 s), as the server knew it at the pool's last heartbeat.
        coalesced: Submits that shared the outcome of a queued or running
            request with an equal ``key`` instead of queuing one (see
            :meth:`WorkerPool.submit`). They are not counted in ``submitted``
            (nor their tickets' outcomes in the other counters): those count
            requests, and a coalesced submit queues none.

            .. versionadded:: 0.2
        retried: Retries scheduled (see ``retry``): runs that failed and were
            queued again. On Redis, those of this pool's workers.

            .. versionadded:: 0.3
        retrying: Requests waiting out a backoff now. On Redis, the queue's
            (every process's), as of the pool's last heartbeat.

            .. versionadded:: 0.3
        dead_letters: Dead letters made: requests that failed for good (see
            ``dead_letter_size``). On Redis, those of this pool's workers.

            .. versionadded:: 0.3
        dead_letters_dropped: Records dropped unread from
            :attr:`WorkerPool.dead_letters` because it was full.

            .. versionadded:: 0.3
    """

    name: str
    state: str
    max_workers: int
    active_workers: int
    queue_size: int
    queue_size_by_priority: Mapping[int, int]
    max_queue_size: int | None
    submitted: int
    completed: int
    failed: int
    rejected: int
    timed_out: int
    cancelled: int
    shed: int
    average_wait_time_ms: float
    wait_time_ms_p50: float
    wait_time_ms_p95: float
    wait_time_ms_p99: float
    workers: tuple[WorkerHealth, ...]
    in_flight: int = 0
    workers_alive: Mapping[str, int] = attrs.field(factory=dict)
    coalesced: int = 0
    retried: int = 0
    retrying: int = 0
    dead_letters: int = 0
    dead_letters_dropped: int = 0
