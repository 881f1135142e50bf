"""Cancel and change: the request under the account lock, the broker call
after commit, its answer in a second transaction. ``cancel_all`` too."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from accounts.models import User
from brokers.base import BrokerError, BrokerRejected
from brokers.models import BrokerAccount
from brokers.registry import broker_for
from marketdata.models import Instrument
from oms.errors import Conflict, InvalidInput, NotFound
from oms.models import FINAL_STATUSES, OPEN_STATUSES, Order, OrderStatus, OrderType, Source
from oms.services.enqueue import enqueue_cancel, enqueue_change
from oms.services.lifecycle import order_apply_ack, order_fill_status, order_transition
from oms.services.tx import AccountTx
from oms.specs import ChangeSpec, instrument_errors

logger = logging.getLogger(__name__)


def order_get_for_account(*, account: BrokerAccount, order_id: int | None = None, client_order_id: str | None = None) -> Order:
    """The account's order named by id or client order id (another account's is NotFound)."""
    qs = Order.objects.filter(account=account)
    if order_id is not None:
        order = qs.filter(pk=order_id).first()
    elif client_order_id:
        order = qs.filter(client_order_id=client_order_id).first()
    else:
        raise InvalidInput("Name the order by order_id or client_order_id.", fields={"order_id": ["Required."]})
    if order is None:
        raise NotFound("No such order.")
    return order


def order_cancel(*, order: Order, actor: User | None, source: str) -> Order:
    """``cancel_order``. Allowed while trading is disabled."""
    with AccountTx(order.account_id) as tx:
        # The row lock too: the sender claims (sets sent_at) without the account
        # lock, and a cancel that read sent_at as NULL must not save over a claim
        # made meanwhile (the order would be canceled here and live at the broker).
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.is_final:
            raise Conflict(f"The order is {order.status}; it cannot be canceled.", code="order_final")
        if order.status == OrderStatus.PENDING_NEW and order.sent_at is None:
            # Not sent yet: the sender's claim will now find it canceled.
            order_transition(tx, order, OrderStatus.CANCELED, source=source, actor=actor, message="Canceled before it was sent.")
            return order
        if order.status in (OrderStatus.PENDING_NEW, OrderStatus.UNKNOWN):
            raise Conflict("The order is on its way to the broker; cancel again in a moment.", code="order_in_flight")
        if order.status == OrderStatus.PENDING_CANCEL:
            raise Conflict("A cancel is already pending.", code="cancel_pending")
        order_transition(tx, order, OrderStatus.PENDING_CANCEL, source=source, actor=actor)
        order_id = order.pk
        tx.on_commit(lambda: enqueue_cancel(order_id))
    return order


def _request_refused(account_id: int, order_id: int, pending: str, message: str, raw: dict[str, Any]) -> None:
    """The broker refused a cancel or change (usually: filled meanwhile): the
    order goes back to working; fills, if any, settle the rest."""
    with AccountTx(account_id) as tx:
        fresh = Order.objects.get(pk=order_id)
        if fresh.status == pending:
            order_transition(tx, fresh, order_fill_status(fresh), source=Source.BROKER, message=message, payload=raw)


def order_cancel_at_broker(*, order_id: int) -> None:
    """Ask the broker to cancel a pending_cancel order (the task's body)."""
    order = Order.objects.select_related("account").get(pk=order_id)
    if order.status != OrderStatus.PENDING_CANCEL:
        return
    try:
        ack = broker_for(order.account).cancel_order(broker_order_id=order.broker_order_id, symbol=order.symbol)
    except BrokerRejected as exc:
        _request_refused(order.account_id, order_id, OrderStatus.PENDING_CANCEL, f"Cancel refused: {exc.message}", exc.raw)
        return
    except BrokerError as exc:
        logger.warning("cancel of order %s: %s (reconciliation will settle it)", order_id, exc.message)
        return
    order_apply_ack(order_id=order_id, ack=ack)


def order_change(*, order: Order, spec: ChangeSpec, actor: User | None, source: str) -> Order:
    """``change_order``: new qty and/or prices of a working order."""
    new_qty, new_price, new_stop = spec.qty, spec.price, spec.stop_price
    if new_qty is None and new_price is None and new_stop is None:
        raise InvalidInput("Give a new qty, price or stop_price.", fields={"qty": ["Nothing to change."]})
    with AccountTx(order.account_id) as tx:
        order = Order.objects.get(pk=order.pk)
        if order.is_final:
            raise Conflict(f"The order is {order.status}; it cannot be changed.", code="order_final")
        if order.status not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            raise Conflict(f"The order is {order.status}; change it once it is working.", code="order_busy")
        broker = broker_for(tx.account)
        if not broker.capabilities.supports_modify:
            raise InvalidInput("This broker cannot change orders; cancel and send a new one.", code="not_supported")
        instrument = Instrument.objects.get(symbol=order.symbol)
        errors = instrument_errors(instrument, qty=new_qty, price=new_price, stop_price=new_stop)
        if new_qty is not None and "qty" not in errors and new_qty <= order.filled_qty:
            errors["qty"] = [f"Must be above the filled quantity {order.filled_qty}."]
        if new_price is not None and order.order_type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            errors["price"] = [f"A {order.order_type} order has no price."]
        if new_stop is not None and order.order_type not in (OrderType.STOP, OrderType.STOP_LIMIT):
            errors["stop_price"] = [f"A {order.order_type} order has no stop_price."]
        if errors:
            raise InvalidInput(next(iter(errors.values()))[0], fields=errors)
        changes = {k: str(v) for k, v in (("qty", new_qty), ("price", new_price), ("stop_price", new_stop)) if v is not None}
        order_transition(
            tx, order, OrderStatus.PENDING_CHANGE, source=source, actor=actor, payload={"requested": changes}, kind="change_requested"
        )
        order_id = order.pk
        tx.on_commit(lambda: enqueue_change(order_id, changes))
    return order


def order_change_at_broker(*, order_id: int, changes: dict[str, str]) -> None:
    """Ask the broker to apply a change to a pending_change order (the task's body)."""
    order = Order.objects.select_related("account").get(pk=order_id)
    if order.status != OrderStatus.PENDING_CHANGE:
        return
    qty = Decimal(changes["qty"]) if "qty" in changes else None
    price = Decimal(changes["price"]) if "price" in changes else None
    stop = Decimal(changes["stop_price"]) if "stop_price" in changes else None
    try:
        ack = broker_for(order.account).modify_order(
            broker_order_id=order.broker_order_id, symbol=order.symbol, qty=qty, price=price, stop_price=stop
        )
    except BrokerRejected as exc:
        _request_refused(order.account_id, order_id, OrderStatus.PENDING_CHANGE, f"Change refused: {exc.message}", exc.raw)
        return
    except BrokerError as exc:
        logger.warning("change of order %s: %s (reconciliation will settle it)", order_id, exc.message)
        return
    with AccountTx(order.account_id) as tx:
        fresh = Order.objects.get(pk=order_id)
        if fresh.status == OrderStatus.PENDING_CHANGE:
            if qty is not None and qty > fresh.filled_qty:
                fresh.qty = qty
            if price is not None:
                fresh.price = price
            if stop is not None:
                fresh.stop_price = stop
            fresh.save()
            target = order_fill_status(fresh) if ack.status not in FINAL_STATUSES else ack.status
            order_transition(tx, fresh, target, source=Source.BROKER, message="Change applied.", payload=ack.raw, kind="changed")


def orders_cancel_all(*, account: BrokerAccount, actor: User | None, source: str) -> list[Order]:
    """``cancel_all``: ask to cancel every working order (skips those busy)."""
    canceled = []
    for order in Order.objects.filter(account=account, status__in=OPEN_STATUSES).order_by("id"):
        try:
            canceled.append(order_cancel(order=order, actor=actor, source=source))
        except Conflict:
            continue  # final meanwhile, in flight, or a cancel pending already
    return canceled
