"""Readiness checks (each returns None when healthy or a short reason) and the
pipeline checks of /api/v1/health (workers, and what apps register)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

CHECK_TIMEOUT = 3.0


def check_database() -> str | None:
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    if plan:
        return f"{len(plan)} unapplied migration(s)"
    return None


def check_cache() -> str | None:
    key = f"health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=5)
        ok = cache.get(key) == "1"
        cache.delete(key)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return None if ok else "read back failed"


def check_channel_layer() -> str | None:
    layer = get_channel_layer()
    if layer is None:
        return "not configured"

    async def roundtrip() -> None:
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "health.ping"})
        await layer.receive(channel)

    async def bounded() -> None:
        await asyncio.wait_for(roundtrip(), CHECK_TIMEOUT)

    try:
        async_to_sync(bounded)()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return None


def check_celery_broker() -> str | None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return None  # embedded default: tasks run in process, no broker
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return None


CHECKS: dict[str, Callable[[], str | None]] = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "celery_broker": check_celery_broker,
}


def readiness() -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        problem = check()
        results[name] = {"status": "ok"} if problem is None else {"status": "fail", "detail": problem}
    return results


# --- pipeline health (/api/v1/health, /metrics) --------------------------------------------------
# Unlike readiness, these speak for the whole deployment (is anyone sending the
# orders this API accepts?), so /health reports them and /health/ready ignores them.

PIPELINE_CHECKS: dict[str, Callable[[], dict[str, Any]]] = {}
_pipeline_lock = threading.Lock()
_pipeline_cached: tuple[float, dict[str, dict[str, Any]]] | None = None


def register_pipeline_check(name: str, check: Callable[[], dict[str, Any]]) -> None:
    """An app's check: returns a dict with a ``status`` ("ok" when healthy)."""
    PIPELINE_CHECKS[name] = check


def _run_pipeline_checks() -> dict[str, dict[str, Any]]:
    from core.workers import workers_status

    results: dict[str, dict[str, Any]] = {"workers": workers_status()}
    for name, check in PIPELINE_CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # health answers even when a dependency does not
            results[name] = {"status": "unknown", "detail": f"unreachable: {type(exc).__name__}"}
    return results


def pipeline_health() -> dict[str, dict[str, Any]]:
    """The pipeline checks, reused for ``HEALTH_CACHE_SECONDS`` in this process
    so that probes and scrapes stay a dictionary read."""
    global _pipeline_cached
    with _pipeline_lock:
        now = time.monotonic()
        if _pipeline_cached is None or now - _pipeline_cached[0] >= settings.HEALTH_CACHE_SECONDS:
            _pipeline_cached = (now, _run_pipeline_checks())
        return _pipeline_cached[1]


def pipeline_health_clear() -> None:
    global _pipeline_cached
    with _pipeline_lock:
        _pipeline_cached = None


def pipeline_degraded(checks: dict[str, dict[str, Any]]) -> list[str]:
    """Names of the checks that are not ok (``unknown`` included: health does not claim what it cannot see)."""
    return sorted(name for name, result in checks.items() if result.get("status") != "ok")
