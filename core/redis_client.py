"""The one Redis client of a process for short commands (rate counters, broker
locks and pacing), on ``settings.REDIS_URL``.

A bounded blocking pool: a burst of threads waits up to a few seconds for a
connection instead of opening one each (the server's ``maxclients`` is shared by
every process of the deployment). redis-py pools reset themselves after a fork.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings

MAX_CONNECTIONS = 64  # per process; each command holds one only for a round trip
POOL_TIMEOUT = 5.0  # seconds a caller waits for a free connection


@functools.cache
def redis_client() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    return redis.Redis(connection_pool=pool)
