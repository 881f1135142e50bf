"""Fills from the broker into deals, orders and positions — exactly once.

A deal is unique by (account, broker trade id), so a replayed fill (the
paper venue's delivery, a postback, reconciliation) is a no-op. The deal, the
order's filled quantity and the position change in one transaction under the
account lock.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError
from django.utils import timezone

from brokers.base import Fill
from core.masking import mask_secrets
from oms.models import Deal, DealKind, Order, OrderEvent, OrderStatus, Source
from oms.services.lifecycle import order_find, order_settle
from oms.services.positions import position_book_deal, position_for_deal
from oms.services.tx import AccountTx

logger = logging.getLogger(__name__)


def fill_apply(*, account_id: int, fill: Fill, source: str = Source.BROKER) -> Deal | None:
    """Book one fill. Returns the new deal, or None when it was booked before."""
    if Deal.objects.filter(account_id=account_id, broker_trade_id=fill.broker_trade_id).exists():
        return None
    executed_at: datetime = fill.executed_at or timezone.now()
    try:
        with AccountTx(account_id) as tx:
            if Deal.objects.filter(account_id=account_id, broker_trade_id=fill.broker_trade_id).exists():
                return None  # booked by a concurrent delivery while we waited for the lock
            order = order_find(account_id, broker_order_id=fill.broker_order_id, client_order_id=fill.client_order_id)
            strategy_id = order.strategy_id if order else ""
            position = position_for_deal(
                tx.account,
                symbol=fill.symbol,
                strategy_id=strategy_id,
                side=fill.side,
                position_id=order.position_id if order else None,
                at=executed_at,
            )
            deal = position_book_deal(
                tx,
                position,
                side=fill.side,
                qty=fill.qty,
                price=fill.price,
                at=executed_at,
                kind=DealKind.TRADE,
                strategy_id=strategy_id,
                fee=fill.fee,
                fee_currency=fill.fee_currency or "",
                order=order,
                broker_trade_id=fill.broker_trade_id,
            )
            if order is not None:
                _book_on_order(tx, order, fill, source)
            tx.funds_changed()
    except IntegrityError:
        # Only the (account, broker trade id) constraint makes this a duplicate:
        # a concurrent booking of the same trade, committed now. Any other
        # violation is a bug or a broken fill and must not vanish.
        if Deal.objects.filter(account_id=account_id, broker_trade_id=fill.broker_trade_id).exists():
            return None
        logger.exception("fill %s of account %s not booked", fill.broker_trade_id, account_id)
        raise
    return deal


def _book_on_order(tx: AccountTx, order: Order, fill: Fill, source: str) -> None:
    if fill.broker_order_id and not order.broker_order_id:
        order.broker_order_id = fill.broker_order_id
    previous = order.filled_qty
    new_filled = previous + fill.qty
    if new_filled > order.qty:
        # The broker filled more than we asked: the deal and the position hold
        # what happened; the order's filled_qty never exceeds its qty.
        logger.error("order %s overfilled at the broker: %s of %s", order.pk, new_filled, order.qty)
        new_filled = order.qty
    booked = new_filled - previous
    if booked > 0:
        prior_value = (order.avg_fill_price or 0) * previous
        order.avg_fill_price = ((prior_value + fill.price * booked) / new_filled).quantize(Decimal("1e-10"))
        order.filled_qty = new_filled
    order.save()
    OrderEvent.objects.create(
        order=order,
        kind="fill",
        from_status=order.status,
        to_status=order.status,
        source=source,
        message=f"{fill.side} {fill.qty} @ {fill.price}",
        payload=mask_secrets(
            {"broker_trade_id": fill.broker_trade_id, "qty": str(fill.qty), "price": str(fill.price), "fee": str(fill.fee), **fill.raw}
        ),
    )
    if order.is_final:
        tx.order_changed(order)  # filled_qty moved on a final order (a fill raced a cancel)
        return
    target = OrderStatus.FILLED if order.filled_qty >= order.qty else OrderStatus.PARTIALLY_FILLED
    published = tx.account.orders_seq
    order_settle(tx, order, target, source=source)
    if tx.account.orders_seq == published:
        tx.order_changed(order)  # no transition (e.g. another partial fill): still an update


def fills_apply(account_id: int, fills: list[Fill]) -> list[Deal]:
    """The brokers' fill sink: book each fill in time order, each exactly once."""
    booked = []
    for fill in sorted(fills, key=lambda f: (f.executed_at or timezone.now(), f.broker_trade_id)):
        deal = fill_apply(account_id=account_id, fill=fill)
        if deal is not None:
            booked.append(deal)
    return booked
