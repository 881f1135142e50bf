"""The OMS's periodic work as in-process loops (core.loops): the sweeper,
reconciliation and sync of every account, marks of open positions, and the
refresh of broker tokens ahead of expiry.

Registered always (``oms.apps``); they run only in a process that starts loops
(daphne with ``RUN_LOOPS_IN_PROCESS``, or ``manage.py run_loops``). With a
Celery worker and beat (production), beat schedules the same services as
tasks (``PERIODIC_TASKS``, editable in the admin), so here they step aside rather than do the
work twice.
"""

from __future__ import annotations

from django.conf import settings

from core.loops import register_loop


def _beat_schedules() -> bool:
    # Eager Celery means no worker and no beat: these loops are the only scheduler.
    return not settings.CELERY_TASK_ALWAYS_EAGER


def sweep_step() -> None:
    if _beat_schedules():
        return
    from oms.services.sweeper import orders_sweep

    orders_sweep()


def reconcile_step() -> None:
    if _beat_schedules():
        return
    from oms.services.reconcile import accounts_reconcile_all

    accounts_reconcile_all()


def marks_step() -> None:
    if _beat_schedules():
        return
    from oms.services.positions import positions_mark_all

    positions_mark_all()


def sync_step() -> None:
    if _beat_schedules():
        return
    from oms.services.sync import accounts_sync_all

    accounts_sync_all()


def tokens_step() -> None:
    if _beat_schedules():
        return
    from brokers.connection import broker_tokens_refresh

    broker_tokens_refresh()


def register_loops() -> None:
    register_loop("oms.sweeper", sweep_step, interval=lambda: settings.OMS_SWEEP_INTERVAL)
    register_loop("oms.reconcile", reconcile_step, interval=lambda: settings.OMS_RECONCILE_INTERVAL)
    register_loop("oms.marks", marks_step, interval=lambda: settings.OMS_MARKS_INTERVAL)
    register_loop("oms.sync", sync_step, interval=lambda: settings.ACCOUNT_SYNC_INTERVAL)
    register_loop("brokers.tokens", tokens_step, interval=lambda: settings.BROKER_TOKEN_REFRESH_INTERVAL)
