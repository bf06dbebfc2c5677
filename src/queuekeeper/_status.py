"""Immutable snapshots: channel statistics, pool status and worker health."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

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
        tasks_waiting_send: Tasks blocked in ``send()`` because the channel is full.
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
