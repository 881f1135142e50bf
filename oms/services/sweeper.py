"""The order sweeper: orders a crash left in ``pending_new``.

Write, commit, then send: a process can die after the order committed and
before (or while) it was sent. Every ``OMS_SWEEP_INTERVAL`` the sweeper takes
the orders in ``pending_new`` older than ``OMS_SWEEP_AFTER_SECONDS``:

* never claimed (``sent_at`` NULL): nobody called the broker; send them
  (``order_submit`` claims first, so a late task and the sweeper never both send);
* claimed (``sent_at`` set) with no answer recorded: the call may have reached
  the broker. Ask the broker first; found: record its status, never send;
  not found: take over the claim (compare-and-set on the ``sent_at`` we saw)
  and send once, with the same client order id.

``OMS_SWEEP_AFTER_SECONDS`` must be longer than any broker request can take,
or the sweeper could ask about an order whose first send is still on its way.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from brokers.base import BrokerError, Fill
from brokers.base import OrderStatus as BrokerOrderStatus
from brokers.registry import broker_for
from oms.models import Order, OrderStatus, Source
from oms.services.fills import fills_apply, fills_apply_progress
from oms.services.reconcile import MATCH_WINDOW, order_lookup_at_broker, order_record_broker_view
from oms.services.send import order_submit, order_submit_claimed

logger = logging.getLogger(__name__)

BATCH = 200  # orders per kind per run: a backlog drains over a few runs, no run takes long


@dataclass
class SweepSummary:
    submitted: list[int] = field(default_factory=list)  # never sent: sent now
    found: list[int] = field(default_factory=list)  # at the broker: its status recorded, not sent
    resent: list[int] = field(default_factory=list)  # claimed but not at the broker: sent once
    failed: list[int] = field(default_factory=list)  # broker unavailable or an error: next run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def orders_sweep(*, now: datetime | None = None) -> SweepSummary:
    """Send or settle the orders left in pending_new (see the module docstring)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OMS_SWEEP_AFTER_SECONDS)
    summary = SweepSummary()
    never_sent = Order.objects.filter(status=OrderStatus.PENDING_NEW, sent_at__isnull=True, created_at__lt=cutoff)
    for order_id in never_sent.order_by("id").values_list("pk", flat=True)[:BATCH]:
        try:
            outcome = order_submit(order_id=order_id)
        except Exception:
            logger.exception("sweeper: sending order %s failed", order_id)
            summary.failed.append(order_id)
            continue
        if outcome.sent:
            summary.submitted.append(order_id)
        elif outcome.retry:
            summary.failed.append(order_id)
    claimed = Order.objects.filter(status=OrderStatus.PENDING_NEW, sent_at__lt=cutoff).select_related("account")
    for order in claimed.order_by("id")[:BATCH]:
        try:
            _sweep_claimed(order, summary)
        except Exception:
            logger.exception("sweeper: order %s failed", order.pk)
            summary.failed.append(order.pk)
    if summary.submitted or summary.found or summary.resent or summary.failed:
        logger.info("sweeper: %s", summary.as_dict())
    return summary


def _sweep_claimed(order: Order, summary: SweepSummary) -> None:
    observed = order.sent_at
    assert observed is not None
    try:
        broker = broker_for(order.account)
        view = order_lookup_at_broker(broker, order)
        wanted = view is not None and view.filled_qty and not broker.capabilities.cumulative_fills
        fills = _fills_of(broker.fills_since(observed - MATCH_WINDOW), order, view) if view is not None and wanted else []
    except BrokerError as exc:
        logger.warning("sweeper: order %s not checked at the broker: %s", order.pk, exc.message)
        summary.failed.append(order.pk)
        return
    if view is not None:
        recorded = order_record_broker_view(
            order_id=order.pk, view=view, source=Source.RECONCILIATION, message="Found at the broker by the sweeper."
        )
        if recorded is None:  # the broker's order is tied to another order of ours meanwhile: look again next run
            summary.failed.append(order.pk)
            return
        fills_apply(order.account_id, fills)
        if broker.capabilities.cumulative_fills:
            fills_apply_progress(order.account_id, [view], source=Source.RECONCILIATION)
        summary.found.append(order.pk)
        return
    # Take the claim over only if nobody touched the order since we read it:
    # a second sweeper (or the answer arriving) makes this a no-op.
    claimed_at = timezone.now()
    taken = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_NEW, sent_at=observed).update(sent_at=claimed_at)
    if not taken:
        return
    outcome = order_submit_claimed(order_id=order.pk, claimed_at=claimed_at)
    (summary.resent if outcome.sent else summary.failed).append(order.pk)


def _fills_of(fills: list[Fill], order: Order, view: BrokerOrderStatus) -> list[Fill]:
    return [
        f
        for f in fills
        if (f.broker_order_id and f.broker_order_id == view.broker_order_id)
        or (f.client_order_id and f.client_order_id == order.client_order_id)
    ]
