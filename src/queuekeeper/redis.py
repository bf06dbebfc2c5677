"""queuekeeper on Redis (or Valkey): one priority queue shared by many processes.

Every process, on any host, that opens the same queue name on the same server
shares the queue: the same priorities (ints from 0 to 255), the same order (lowest
value first, first come first within a level), one size limit. Needs coredis, from
the ``queuekeeper[redis]`` extra::

    pip install 'queuekeeper[redis]'
"""

from __future__ import annotations

from ._pool._redis import RedisQueue, RemoteError
from ._redis._channel import (
    Delivery,
    JSONSerializer,
    RedisPriorityReceiveChannel,
    RedisPrioritySendChannel,
    Serializer,
    create_redis_priority_channel,
)

__all__ = [
    "Delivery",
    "JSONSerializer",
    "RedisPriorityReceiveChannel",
    "RedisPrioritySendChannel",
    "RedisQueue",
    "RemoteError",
    "Serializer",
    "create_redis_priority_channel",
]

for _name in __all__:
    # Tracebacks and reprs say queuekeeper.redis.X, not the private module.
    globals()[_name].__module__ = __name__
del _name
