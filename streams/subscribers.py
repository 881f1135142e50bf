"""Which channels have subscribers, across processes.

Producers (the market-data loops) compute and publish only channels someone
listens to, and ``/datafeed/health`` counts them. Each process keeps its own
counts in memory and, in production (``REDIS_URL``), mirrors them to its own
Redis hash ``streams:subs:proc:<id>`` (absolute values, written under this
process's lock, so two processes never overwrite each other: there is no
shared read-modify-write). The hash expires unless refreshed, so a process
that dies stops counting within ``SUBSCRIBERS_TTL``; a refresher thread
rewrites the whole hash every ``SUBSCRIBERS_REFRESH`` seconds, so a restarted
(emptied) Redis knows every subscriber again within one interval. Readers sum
the hashes of the live processes listed in the ``streams:subs:procs`` sorted
set (score: the time an entry stops counting).

The embedded default is one process: the in-memory counts are the answer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_PROCS = "streams:subs:procs"
_PROC_PREFIX = "streams:subs:proc:"


class _Registry:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.process_id = f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.redis_url = settings.REDIS_URL
        self.client: Any = None
        self.refresher: threading.Thread | None = None
        self.stopped = threading.Event()
        if self.redis_url:
            import redis

            self.client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)

    @property
    def key(self) -> str:
        return _PROC_PREFIX + self.process_id

    def usable(self) -> bool:
        return self.pid == os.getpid() and self.redis_url == settings.REDIS_URL

    # --- writing (this process's entry) ------------------------------------------------------

    def add(self, channel: str, delta: int) -> None:
        with self.lock:
            count = max(self.counts[channel] + delta, 0)
            if count:
                self.counts[channel] = count
            else:
                self.counts.pop(channel, None)
            if self.client is None:
                return
            self._start_refresher()
            try:
                pipe = self.client.pipeline(transaction=True)
                if count:
                    pipe.hset(self.key, channel, count)
                else:
                    pipe.hdel(self.key, channel)
                self._keep_alive(pipe)
                pipe.execute()
            except Exception:
                # The refresher writes the whole entry again once Redis answers.
                logger.warning("subscriber registry not updated for %s", channel, exc_info=True)

    def _keep_alive(self, pipe: Any) -> None:
        ttl = settings.SUBSCRIBERS_TTL
        pipe.expire(self.key, max(int(ttl), 1))
        pipe.zadd(_PROCS, {self.process_id: time.time() + ttl})

    def refresh(self) -> None:
        """Write this process's whole entry again (and forget dead processes)."""
        if self.client is None:
            return
        with self.lock:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key)
            if self.counts:
                pipe.hset(self.key, mapping=dict(self.counts))
            self._keep_alive(pipe)
            pipe.zremrangebyscore(_PROCS, "-inf", time.time())
            pipe.execute()

    def _start_refresher(self) -> None:
        if self.refresher is None or not self.refresher.is_alive():
            self.refresher = threading.Thread(target=self._refresh_forever, name="stream-subscribers", daemon=True)
            self.refresher.start()

    def _refresh_forever(self) -> None:
        while not self.stopped.wait(settings.SUBSCRIBERS_REFRESH):
            try:
                self.refresh()
            except Exception:
                logger.warning("subscriber registry refresh failed", exc_info=True)

    def close(self) -> None:
        self.stopped.set()
        if self.client is not None:
            try:
                self.client.delete(self.key)
                self.client.zrem(_PROCS, self.process_id)
            except Exception:
                logger.debug("subscriber registry entry not removed", exc_info=True)

    # --- reading (every process) ---------------------------------------------------------------

    def totals(self) -> Counter[str]:
        if self.client is None:
            with self.lock:
                return Counter(self.counts)
        live = self.client.zrangebyscore(_PROCS, time.time(), "+inf")
        pipe = self.client.pipeline(transaction=False)
        for process_id in live:
            pipe.hgetall(_PROC_PREFIX + process_id.decode())
        totals: Counter[str] = Counter()
        for entry in pipe.execute():
            for channel, count in entry.items():
                totals[channel.decode()] += int(count)
        return totals


_registry: _Registry | None = None
_registry_lock = threading.Lock()


def _current() -> _Registry:
    global _registry
    with _registry_lock:
        if _registry is None or not _registry.usable():
            if _registry is not None and _registry.pid == os.getpid():
                _registry.close()
            _registry = _Registry()
        return _registry


def subscriber_add(channel: str, delta: int) -> None:
    """This process gained (``delta`` > 0) or lost subscriptions to ``channel``."""
    _current().add(channel, delta)


def subscriber_totals(prefix: str = "") -> dict[str, int]:
    """Subscriptions per channel across live processes (channels with at least one)."""
    try:
        totals = _current().totals()
    except Exception:
        logger.warning("subscriber registry unreadable", exc_info=True)
        return {}
    return {c: n for c, n in totals.items() if n > 0 and c.startswith(prefix)}


def subscribers_refresh() -> None:
    """Rewrite this process's entry now (after Redis came back)."""
    try:
        _current().refresh()
    except Exception:
        logger.warning("subscriber registry refresh failed", exc_info=True)


def subscribers_forget() -> None:
    """Drop this process's counts and entry (tests start from none)."""
    global _registry
    with _registry_lock:
        if _registry is not None and _registry.pid == os.getpid():
            _registry.close()
        _registry = None
