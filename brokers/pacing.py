"""Request pacing per broker credential: a token bucket, shared by every
process through Redis in production, in process on the embedded default.

Brokers count requests per second per app key and answer an error beyond
(KIS ``EGW00201``); pacing on our side keeps us under the rule instead of
learning it from errors. The bucket is kept as GCRA (one "theoretical arrival
time" per key): each call reserves the next slot atomically and learns how
long to wait for it, so callers are served in arrival order with one round
trip and no polling. A call whose slot is more than ``max_wait`` away reserves
nothing and raises ``BrokerRateLimited`` with the wait as ``retry_after``.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings

from brokers.base import BrokerRateLimited, BrokerUnavailable

if TYPE_CHECKING:
    from redis.commands.core import Script

REDIS_PREFIX = "pace:"

# KEYS[1] bucket; ARGV: interval ms, burst, max wait ms. Server time, so every
# process agrees on "now". Answers the wait in ms as a string (a Lua number
# would be truncated to an integer) and 1 if the slot was reserved, 0 if not.
_PACE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat + interval - burst * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then
  return {tostring(wait), 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {tostring(wait), 1}
"""

# Embedded default: the same arithmetic on a monotonic clock.
_local_tat: dict[str, float] = {}
_local_lock = threading.Lock()
_LOCAL_MAX_KEYS = 4096


def pace(key: str, *, rate: float, burst: int, max_wait: float = 1.0) -> None:
    """Wait for a slot of ``key``'s bucket (``rate`` per second, ``burst`` at
    once), at most ``max_wait`` seconds; beyond, raise ``BrokerRateLimited``."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    burst = max(1, int(burst))
    interval = 1.0 / rate
    wait = _reserve_redis(key, interval, burst, max_wait) if settings.REDIS_URL else _reserve_local(key, interval, burst, max_wait)
    if wait > 0:
        time.sleep(wait)


def _refused(wait: float) -> BrokerRateLimited:
    return BrokerRateLimited(f"Request rate to the broker exceeded; next slot in {wait:.2f} s.", retry_after=wait)


def _reserve_redis(key: str, interval: float, burst: int, max_wait: float) -> float:
    import redis

    try:
        wait_ms, taken = _script()(keys=[REDIS_PREFIX + key], args=[interval * 1000, burst, max_wait * 1000])
    except redis.RedisError as exc:
        raise BrokerUnavailable("The pacing service (Redis) is unavailable.") from exc
    wait = float(wait_ms) / 1000
    if not int(taken):
        raise _refused(wait)
    return wait


@functools.cache
def _script() -> Script:
    from core.redis_client import redis_client

    return redis_client().register_script(_PACE_SCRIPT)


def _reserve_local(key: str, interval: float, burst: int, max_wait: float) -> float:
    with _local_lock:
        now = time.monotonic()
        tat = max(_local_tat.get(key, now), now)
        wait = max(0.0, tat + interval - burst * interval - now)
        if wait > max_wait:
            raise _refused(wait)
        _local_tat[key] = tat + interval
        if len(_local_tat) > _LOCAL_MAX_KEYS:
            for stale in [k for k, v in _local_tat.items() if v < now]:
                del _local_tat[stale]
        return wait


def pace_reset(key: str) -> None:
    """Forget ``key``'s bucket (tests; a credential removed)."""
    if settings.REDIS_URL:
        from core.redis_client import redis_client

        redis_client().delete(REDIS_PREFIX + key)
    else:
        with _local_lock:
            _local_tat.pop(key, None)
