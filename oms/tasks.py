"""Celery entry points of the OMS: thin, idempotent, ids in, services called."""

from __future__ import annotations

from celery import shared_task

from oms.models import Order


@shared_task(name="oms.orders_submit", bind=True, max_retries=20, acks_late=True)
def orders_submit_task(self, order_ids: list[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """Send pending orders (a batch in one task: one enqueue per batch)."""
    from oms.services.orders import order_submit

    retry = []
    for order_id in order_ids:
        if not Order.objects.filter(pk=order_id).exists():
            continue
        if order_submit(order_id=order_id).retry:
            retry.append(order_id)
    if retry and not self.request.is_eager:
        # Surely not sent (broker unavailable): try again later; the sweeper also finds them.
        # Eager (the embedded default) a retry would re-run at once, 20 times, inside the
        # caller's on_commit and then raise into a request whose order has committed:
        # leave those to the sweeper instead.
        raise self.retry(args=[retry], countdown=min(2**self.request.retries, 60))
    return order_ids


@shared_task(name="oms.order_cancel", acks_late=True)
def order_cancel_task(order_id: int) -> None:
    from oms.services.orders import order_cancel_at_broker

    if Order.objects.filter(pk=order_id).exists():
        order_cancel_at_broker(order_id=order_id)


@shared_task(name="oms.order_change", acks_late=True)
def order_change_task(order_id: int, changes: dict[str, str]) -> None:
    from oms.services.orders import order_change_at_broker

    if Order.objects.filter(pk=order_id).exists():
        order_change_at_broker(order_id=order_id, changes=changes)
