"""Celery worker liveness: every worker writes a heartbeat into the broker's
Redis; health and metrics read how long ago each worker last wrote.

A heartbeat in the broker's Redis (not the cache) speaks for the workers that
consume this broker: a worker on another broker never makes this one look alive.
It is a thread of the worker's main process, so a busy pool still beats; a
hung or killed main process stops beating."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "terminal:celery:worker-heartbeats"
# Heartbeats older than this are forgotten: a worker renamed or retired a day
# ago is no longer reported as missing.
FORGET_AFTER = 24 * 3600.0

_stop = threading.Event()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True)


def heartbeat_supported() -> bool:
    return settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://"))


def heartbeat_start(*, hostname: str) -> None:
    """Beat every ``WORKER_HEARTBEAT_INTERVAL`` seconds until ``heartbeat_stop``."""
    if not heartbeat_supported():
        return
    client = _redis()
    _stop.clear()

    def beat() -> None:
        while True:
            try:
                client.hset(HEARTBEAT_KEY, hostname, f"{time.time():.3f}")
            except redis.RedisError as exc:  # a Redis blip: beat again next round
                log.warning("worker heartbeat not written: %s", exc)
            if _stop.wait(settings.WORKER_HEARTBEAT_INTERVAL):
                return

    threading.Thread(target=beat, name="worker-heartbeat", daemon=True).start()


def heartbeat_stop() -> None:
    _stop.set()


def workers_status() -> dict[str, Any]:
    """``{"status": "ok" | "missing" | "unknown", "alive": [...], "missing": [...], ...}``.

    Eager Celery (the embedded default) runs tasks in this process: ok."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"status": "ok", "mode": "eager", "alive": 1, "detail": "tasks run in this process"}
    if not heartbeat_supported():
        return {"status": "unknown", "alive": 0, "detail": "worker heartbeats need a Redis broker"}
    try:
        beats = _redis().hgetall(HEARTBEAT_KEY)
    except redis.RedisError as exc:
        return {"status": "unknown", "alive": 0, "detail": f"broker unreachable: {type(exc).__name__}"}
    now = time.time()
    ages = {str(name): round(max(0.0, now - float(at)), 1) for name, at in beats.items()}
    alive = sorted(name for name, age in ages.items() if age <= settings.WORKER_HEARTBEAT_STALE_AFTER)
    missing = {name: age for name, age in sorted(ages.items()) if settings.WORKER_HEARTBEAT_STALE_AFTER < age <= FORGET_AFTER}
    result: dict[str, Any] = {
        "status": "ok" if alive else "missing",
        "alive": len(alive),
        "workers": alive,
        "missing": [{"worker": name, "last_heartbeat_age_seconds": age} for name, age in missing.items()],
    }
    if not alive:
        named = ", ".join(missing) if missing else "no Celery worker has ever sent a heartbeat"
        result["detail"] = f"no live Celery worker ({named}): accepted orders are not sent"
    return result
