"""Readiness checks: each returns None when healthy or a short reason."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

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
