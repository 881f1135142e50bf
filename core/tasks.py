"""Core Celery tasks."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="core.ping")
def ping() -> str:
    """Proves that a worker takes tasks from the broker and returns results."""
    return "pong"
