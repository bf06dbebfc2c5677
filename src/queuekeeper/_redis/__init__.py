"""The Redis queue: many processes and hosts sharing one priority queue.

Needs coredis (the ``queuekeeper[redis]`` extra); nothing imports this package unless
a Redis queue is used.
"""
