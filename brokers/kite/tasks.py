"""Celery entry points of the Kite adapter: thin, idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="brokers.kite_instruments_import", acks_late=True)
def kite_instruments_import_task() -> dict:
    """Import Kite's instrument master (daily, PERIODIC_TASKS)."""
    from brokers.kite.instruments import kite_instruments_import_all

    return kite_instruments_import_all()
