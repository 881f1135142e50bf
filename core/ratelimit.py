"""Atomic rate counters shared by every process (Redis) or by the one process
of the embedded default (the local-memory cache).

A window opens with the first hit on a key and lasts ``period`` seconds; every
hit increments the key's counter atomically, so N concurrent callers get N
distinct counts and exactly ``limit`` of them are allowed (a read-then-write
history, as DRF's cache throttle keeps, lets a burst through).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

KEY_PREFIX = "ratelimit:"

# One round trip, atomic: create the key with its expiry if absent, increment,
# read the time left. A key can never lose its expiry (INCR alone on an expired
# key would create one without, and throttle forever).
_HIT_SCRIPT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local count = redis.call('INCR', KEYS[1])
return {count, redis.call('PTTL', KEYS[1])}
"""

# The same window, taking ``amount`` hits at once or none: a take that would
# pass ``limit`` leaves the count as it was (a refused batch is not counted).
_TAKE_SCRIPT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local count = tonumber(redis.call('GET', KEYS[1]))
local taken = 0
if count + tonumber(ARGV[2]) <= tonumber(ARGV[3]) then
  count = redis.call('INCRBY', KEYS[1], ARGV[2])
  taken = 1
end
return {taken, count, redis.call('PTTL', KEYS[1])}
"""

# Give back what a take counted for work that did not happen; a window that
# has ended is left alone (DECRBY would recreate the key without an expiry).
_GIVE_BACK_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECRBY', KEYS[1], ARGV[1])
end
return 0
"""

# The embedded default's local-memory cache makes each call atomic, not a
# read-then-increment: takes in this process are serialized here.
_local_take_lock = threading.Lock()


@dataclass(frozen=True)
class Hit:
    count: int  # hits in the current window, this one included
    retry_after: int  # whole seconds until the window ends (at least 1)
    taken: bool = True  # False: ``rate_take`` refused and counted nothing


@functools.cache
def _redis():  # type: ignore[no-untyped-def]
    from core.redis_client import redis_client

    client = redis_client()
    return client, client.register_script(_HIT_SCRIPT)


@functools.cache
def _redis_take_scripts():  # type: ignore[no-untyped-def]
    client, _ = _redis()
    return client.register_script(_TAKE_SCRIPT), client.register_script(_GIVE_BACK_SCRIPT)


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def rate_hit(key: str, period: int) -> Hit:
    """Count one hit on ``key`` in its current window of ``period`` seconds."""
    key = KEY_PREFIX + key
    if settings.REDIS_URL:
        _, script = _redis()
        count, ttl_ms = script(keys=[key], args=[period])
        return Hit(count=int(count), retry_after=_seconds(int(ttl_ms) / 1000 if int(ttl_ms) > 0 else period))
    ends_key = key + ":ends"
    for _ in range(3):
        if cache.add(key, 0, period):
            cache.set(ends_key, time.time() + period, period)
        try:
            count = cache.incr(key)  # under the local cache's lock: atomic in this process
        except ValueError:
            continue  # expired between add and incr: open a new window
        ends = cache.get(ends_key)
        return Hit(count=count, retry_after=_seconds(ends - time.time() if ends else period))
    raise RuntimeError("rate counter kept expiring")  # pragma: no cover - needs a sub-millisecond period


def rate_take(key: str, period: int, *, amount: int, limit: int) -> Hit:
    """Count ``amount`` hits on ``key`` at once if the window's count stays
    within ``limit``; otherwise count nothing and answer ``taken=False``."""
    key = KEY_PREFIX + key
    if settings.REDIS_URL:
        take, _ = _redis_take_scripts()
        taken, count, ttl_ms = take(keys=[key], args=[period, amount, limit])
        retry_after = _seconds(int(ttl_ms) / 1000 if int(ttl_ms) > 0 else period)
        return Hit(count=int(count), retry_after=retry_after, taken=bool(taken))
    ends_key = key + ":ends"
    with _local_take_lock:
        if cache.add(key, 0, period):
            cache.set(ends_key, time.time() + period, period)
        count = int(cache.get(key) or 0)
        ends = cache.get(ends_key)
        retry_after = _seconds(ends - time.time() if ends else period)
        if count + amount > limit:
            return Hit(count=count, retry_after=retry_after, taken=False)
        try:
            count = cache.incr(key, amount)
        except ValueError:  # expired since the read: a new window
            cache.set(key, amount, period)
            cache.set(ends_key, time.time() + period, period)
            count = amount
        return Hit(count=count, retry_after=retry_after)


def rate_give_back(key: str, amount: int) -> None:
    """Undo a ``rate_take`` of ``amount`` whose work failed, if its window is still open."""
    key = KEY_PREFIX + key
    if settings.REDIS_URL:
        _, give_back = _redis_take_scripts()
        give_back(keys=[key], args=[amount])
        return
    with _local_take_lock, contextlib.suppress(ValueError):  # ValueError: the window has ended
        cache.decr(key, amount)


def rate_count(key: str) -> Hit:
    """The current window's count on ``key`` without counting a hit."""
    key = KEY_PREFIX + key
    if settings.REDIS_URL:
        client, _ = _redis()
        count = client.get(key)
        if not count:  # no window open (every request with a good key): one GET
            return Hit(count=0, retry_after=1)
        ttl_ms = client.pttl(key)
        return Hit(count=int(count or 0), retry_after=_seconds(int(ttl_ms) / 1000 if ttl_ms and int(ttl_ms) > 0 else 1))
    ends = cache.get(key + ":ends")
    return Hit(count=int(cache.get(key) or 0), retry_after=_seconds(ends - time.time() if ends else 1))


def parse_rate(rate: str) -> tuple[int, int]:
    """``"120/min"`` → (120, 60). Periods: s, min (m), hour (h), day (d); ``"10/5s"`` is allowed too."""
    number, _, period = rate.partition("/")
    digits = "".join(ch for ch in period if ch.isdigit())
    unit = period[len(digits) :].strip().lower()
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit[:1]]
    return int(number), seconds * (int(digits) if digits else 1)


def rate_reset(key: str) -> None:
    """Close ``key``'s window (an address unblocked by staff; tests between cases)."""
    key = KEY_PREFIX + key
    if settings.REDIS_URL:
        client, _ = _redis()
        client.delete(key)
    else:
        cache.delete_many([key, key + ":ends"])
