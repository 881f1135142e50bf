"""Celery entry points of the OMS: thin, idempotent, ids in, services called."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from oms.models import Order


@shared_task(name="oms.orders_submit", bind=True, max_retries=20, acks_late=True)
def orders_submit_task(self, order_ids: list[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """Send pending orders (a batch in one task: one enqueue per batch)."""
    from oms.services.send import orders_submit_in_order

    # In order per account, one account at a time per lock (see the service).
    retry = [outcome.order_id for outcome in orders_submit_in_order(order_ids=order_ids) if outcome.retry]
    if retry and not self.request.is_eager:
        # Surely not sent (broker unavailable): try again later; the sweeper also finds them.
        # Eager (the embedded default) a retry would re-run at once, 20 times, inside the
        # caller's on_commit and then raise into a request whose order has committed:
        # leave those to the sweeper instead.
        raise self.retry(args=[retry], countdown=min(2**self.request.retries, 60))
    return order_ids


@shared_task(name="oms.order_cancel", acks_late=True)
def order_cancel_task(order_id: int) -> None:
    from oms.services.amend import order_cancel_at_broker

    if Order.objects.filter(pk=order_id).exists():
        order_cancel_at_broker(order_id=order_id)


@shared_task(name="oms.order_change", acks_late=True)
def order_change_task(order_id: int, changes: dict[str, str]) -> None:
    from oms.services.amend import order_change_at_broker

    if Order.objects.filter(pk=order_id).exists():
        order_change_at_broker(order_id=order_id, changes=changes)


# --- periodic work (beat in production; oms.loops runs the same services on the embedded default) ---


@shared_task(name="oms.orders_sweep", acks_late=True)
def orders_sweep_task() -> dict:
    """Send or settle orders a crash left in pending_new."""
    from oms.services.sweeper import orders_sweep

    return orders_sweep().as_dict()


@shared_task(name="oms.account_reconcile", acks_late=True)
def account_reconcile_task(account_id: int) -> dict | None:
    """Reconcile one account with its broker (scheduled, or on demand)."""
    from oms.services.reconcile import account_reconcile_by_id

    summary = account_reconcile_by_id(account_id)
    return None if summary is None else summary.as_dict()


@shared_task(name="oms.accounts_reconcile_all", acks_late=True)
def accounts_reconcile_all_task() -> list[int]:
    """One reconciliation task per account: they run in parallel on the workers."""
    from oms.services.reconcile import accounts_to_reconcile

    account_ids = accounts_to_reconcile()
    for account_id in account_ids:
        account_reconcile_task.delay(account_id)
    return account_ids


@shared_task(name="oms.positions_mark", acks_late=True)
def positions_mark_task() -> int:
    """Re-mark open positions to the latest quotes."""
    from oms.services.positions import positions_mark_all

    return positions_mark_all()


# --- account sync (funds, holdings, positions, open orders, the day's fills) ---

# A sync that outlives its lock could overlap the next one: stopped first.
_SYNC_LIMIT = settings.ACCOUNT_SYNC_TIME_LIMIT


@shared_task(name="oms.account_sync", acks_late=True, soft_time_limit=_SYNC_LIMIT, time_limit=_SYNC_LIMIT + 10)
def account_sync_task(account_id: int) -> dict:
    """Sync one account with its broker; skipped when one is running for it."""
    from oms.services.sync import account_sync

    return account_sync(account_id=account_id).as_dict()


@shared_task(name="oms.accounts_sync_all", acks_late=True)
def accounts_sync_all_task() -> list[int]:
    """One sync task per active real account: they run in parallel on the
    workers, and one that waited longer than the interval is dropped."""
    from oms.services.sync import accounts_to_sync

    account_ids = accounts_to_sync()
    for account_id in account_ids:
        account_sync_task.apply_async((account_id,), expires=settings.ACCOUNT_SYNC_INTERVAL)
    return account_ids
