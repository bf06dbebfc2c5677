"""queuekeeper: priority request queuing for anyio, asyncio and Trio programs."""

from __future__ import annotations

from ._channel import PriorityReceiveChannel as PriorityReceiveChannel
from ._channel import PrioritySendChannel as PrioritySendChannel
from ._channel import create_priority_channel as create_priority_channel
from ._errors import PoolClosed as PoolClosed
from ._errors import QueueFull as QueueFull
from ._errors import QueueKeeperError as QueueKeeperError
from ._errors import QueueTimeout as QueueTimeout
from ._errors import RequestCancelled as RequestCancelled
from ._errors import RequestShed as RequestShed
from ._errors import RequestTimeout as RequestTimeout
from ._observer import PoolObserver as PoolObserver
from ._policies import DeadLetter as DeadLetter
from ._policies import RateLimit as RateLimit
from ._policies import Retry as Retry
from ._policies import StrictPriority as StrictPriority
from ._policies import WeightedFair as WeightedFair
from ._pool import Autoscale as Autoscale
from ._pool import Ticket as Ticket
from ._pool import WorkerPool as WorkerPool
from ._priority import Priority as Priority
from ._prometheus import PrometheusMetrics as PrometheusMetrics
from ._states import Backpressure as Backpressure
from ._states import TicketState as TicketState
from ._status import ChannelStatistics as ChannelStatistics
from ._status import PoolStatus as PoolStatus
from ._status import WorkerHealth as WorkerHealth
from ._util import fixup_module_metadata as _fixup_module_metadata
from ._version import __version__ as __version__

__all__ = [
    "Autoscale",
    "Backpressure",
    "ChannelStatistics",
    "DeadLetter",
    "PoolClosed",
    "PoolObserver",
    "PoolStatus",
    "Priority",
    "PriorityReceiveChannel",
    "PrioritySendChannel",
    "PrometheusMetrics",
    "QueueFull",
    "QueueKeeperError",
    "QueueTimeout",
    "RateLimit",
    "RequestCancelled",
    "RequestShed",
    "RequestTimeout",
    "Retry",
    "StrictPriority",
    "Ticket",
    "TicketState",
    "WeightedFair",
    "WorkerHealth",
    "WorkerPool",
    "create_priority_channel",
]


_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
