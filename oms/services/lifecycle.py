"""The order state machine and the broker's answers.

Transitions follow ``oms.models.TRANSITIONS`` (anything else raises) and each
one records an event. The broker's answers (an ack, a result, a status update)
move an order towards the broker's status where that is a legal step
(``order_settle``); fills only ever come from deals (``oms.services.fills``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from accounts.models import User
from brokers.base import OrderAck
from brokers.base import OrderStatus as BrokerOrderStatus
from core.masking import mask_secrets, mask_text
from oms.errors import IllegalTransition
from oms.models import FINAL_STATUSES, TRANSITIONS, Order, OrderEvent, OrderStatus, Source
from oms.services.tx import AccountTx


def order_transition(
    tx: AccountTx,
    order: Order,
    to_status: str,
    *,
    source: str,
    actor: User | None = None,
    message: str = "",
    payload: dict[str, Any] | None = None,
    kind: str = "transition",
) -> None:
    """Move ``order`` to ``to_status`` (legal transitions only) with an event.
    The caller holds the account lock (``tx``) and the order row is fresh."""
    if to_status not in TRANSITIONS[order.status]:
        raise IllegalTransition(f"An order in {order.status} cannot become {to_status}.", fields={"status": [order.status]})
    from_status = order.status
    order.status = to_status
    message = mask_text(message)
    if message:
        order.status_message = message[:1000]
    tx.order_save(order)
    tx.event_add(
        OrderEvent(
            order=order,
            kind=kind,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            source=source,
            message=message[:1000],
            payload=mask_secrets(payload or {}),
        )
    )
    if to_status in FINAL_STATUSES and order.reduce_only:
        # Only a close (a reduce-only order, oms.services.closing) is ever a position's closing order.
        tx.order_closing_cleared(order)
    tx.order_changed(order)


def order_note(
    order: Order,
    *,
    kind: str,
    source: str,
    actor: User | None = None,
    message: str = "",
    payload: dict[str, Any] | None = None,
    tx: AccountTx | None = None,
) -> None:
    """Record an event that does not change the order's status (held with
    ``tx``'s bulk writes when given)."""
    message = mask_text(message)
    event = OrderEvent(
        order=order,
        kind=kind,
        from_status=order.status,
        to_status=order.status,
        actor=actor,
        source=source,
        message=message[:1000],
        payload=mask_secrets(payload or {}),
    )
    if tx is None:
        event.save(force_insert=True)
    else:
        tx.event_add(event)


def order_fill_status(order: Order) -> str:
    """The working status the order's booked fills give it: new, partially_filled or filled."""
    if order.filled_qty >= order.qty:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED if order.filled_qty > 0 else OrderStatus.NEW


def order_settle(
    tx: AccountTx, order: Order, broker_status: str, *, source: str, message: str = "", payload: dict[str, Any] | None = None
) -> None:
    """Move towards the broker's status where that is a legal step; fills
    (partially_filled/filled) only ever come from deals, so a broker status
    that claims fills the OMS has not booked yet means 'accepted'. A status
    that cannot be followed is noted as a ``stale_update`` event."""
    if order.is_final:
        return
    target = broker_status
    if target in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
        target = order_fill_status(order)
    if target == OrderStatus.NEW and order.filled_qty > 0:
        target = order_fill_status(order)
    if target == order.status:
        return
    if target in TRANSITIONS[order.status]:
        order_transition(tx, order, target, source=source, message=message, payload=payload)
    else:
        order_note(
            order, kind="stale_update", source=source, message=f"broker said {broker_status} while {order.status}", payload=payload, tx=tx
        )


def order_find(account_id: int, *, broker_order_id: str | None, client_order_id: str | None) -> Order | None:
    """The account's order the broker names, by its id first, else by our client order id."""
    if broker_order_id:
        order = Order.objects.filter(account_id=account_id, broker_order_id=broker_order_id).first()
        if order is not None:
            return order
    if client_order_id:
        return Order.objects.filter(account_id=account_id, client_order_id=client_order_id).first()
    return None


def _note_late_answer(order: Order, payload: dict[str, Any] | None, message: str, source: str, tx: AccountTx | None = None) -> None:
    """The broker's answer to our request, with its raw payload, when its
    fills settled the order first (an exchange that fills at once): kept as
    a note, the order's status untouched."""
    if order.is_final and payload:
        order_note(order, kind="broker_answer", source=source, message=message, payload=payload, tx=tx)


def _account_of(order_id: int) -> int:
    return Order.objects.values_list("account_id", flat=True).get(pk=order_id)


def order_apply_ack(*, order_id: int, ack: OrderAck, source: str = Source.BROKER) -> Order:
    """The broker's answer to a place, cancel or change: its order id and status."""
    with AccountTx(_account_of(order_id)) as tx:
        order = Order.objects.get(pk=order_id)
        if ack.broker_order_id and not order.broker_order_id:
            order.broker_order_id = ack.broker_order_id
            order.save(update_fields=["broker_order_id", "updated_at"])
        _note_late_answer(order, ack.raw, ack.message, source)
        order_settle(tx, order, ack.status, source=source, message=ack.message, payload=ack.raw)
    return order


def order_apply_result(
    *, order_id: int, status: str, message: str = "", payload: dict[str, Any] | None = None, source: str = Source.BROKER
) -> Order:
    """An outcome without an ack (rejected, or unknown after a timeout)."""
    with AccountTx(_account_of(order_id)) as tx:
        order = Order.objects.get(pk=order_id)
        order_settle(tx, order, status, source=source, message=message, payload=payload)
    return order


@dataclass(frozen=True)
class BrokerAnswer:
    """The broker's answer to the send of one of our orders: an ack's status
    and id, or an outcome without one (rejected; unknown after a timeout)."""

    order_id: int
    status: str
    broker_order_id: str = ""
    message: str = ""
    payload: dict[str, Any] | None = None

    @classmethod
    def of_ack(cls, order_id: int, ack: OrderAck) -> BrokerAnswer:
        return cls(order_id, ack.status, ack.broker_order_id or "", ack.message, ack.raw)


def orders_apply_answers(*, account_id: int, answers: Sequence[BrokerAnswer], source: str = Source.BROKER) -> None:
    """The broker's answers to the sends of a batch of one account's orders,
    under one account lock, in one transaction (``order_apply_ack`` or
    ``order_apply_result`` for each, without a lock and a commit each): the
    orders in one query, their updates and events in bulk (``AccountTx.bulk``)."""
    if not answers:
        return
    with AccountTx(account_id) as tx, tx.bulk():
        orders_answers_record(tx, Order.objects.in_bulk([a.order_id for a in answers]), answers, source=source)


def orders_answers_record(tx: AccountTx, orders: dict[int, Order], answers: Sequence[BrokerAnswer], *, source: str) -> None:
    """Record ``answers`` on ``orders`` (by id, read under ``tx``'s lock;
    the caller holds ``tx.bulk()``)."""
    for answer in answers:
        order = orders[answer.order_id]
        named = bool(answer.broker_order_id) and not order.broker_order_id
        if named:
            order.broker_order_id = answer.broker_order_id
        before = order.status
        _note_late_answer(order, answer.payload, answer.message, source, tx)
        order_settle(tx, order, answer.status, source=source, message=answer.message, payload=answer.payload)
        if named and order.status == before:  # no transition saved it
            tx.order_save(order, update_fields=["broker_order_id", "updated_at"])


def order_apply_broker_status(*, account_id: int, status: BrokerOrderStatus, source: str = Source.BROKER) -> Order | None:
    """An order update from the broker (venue expiry, reconciliation)."""
    with AccountTx(account_id) as tx:
        order = order_find(account_id, broker_order_id=status.broker_order_id, client_order_id=status.client_order_id)
        if order is None:
            return None
        if status.broker_order_id and not order.broker_order_id:
            order.broker_order_id = status.broker_order_id
            order.save(update_fields=["broker_order_id", "updated_at"])
        order_settle(tx, order, status.status, source=source, message=status.message, payload=status.raw)
    return order
