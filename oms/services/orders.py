"""The order lifecycle: send, cancel, change, close; the broker's answers.

Write, commit, then send: the order row (``pending_new``) and its first event
commit before any broker call; the send runs after commit (a Celery task,
eager on the embedded default). Before calling the broker the sender claims
the order by setting ``sent_at`` (an atomic UPDATE), so two senders never
send one order twice, and a crash after the claim leaves evidence for the
sweeper, which asks the broker before sending again. The broker's answer is
recorded in a second transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from brokers.base import (
    BrokerAuthExpired,
    BrokerError,
    BrokerRateLimited,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    OrderAck,
    OrderRequest,
)
from brokers.base import OrderStatus as BrokerOrderStatus
from brokers.models import AccountStatus, BrokerAccount
from brokers.registry import broker_for
from core.masking import mask_secrets
from oms.errors import Conflict, IllegalTransition, InvalidInput, NotFound, TradingDisabled
from oms.models import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    TRANSITIONS,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    PositionStatus,
    Side,
    Source,
    TimeInForce,
)
from oms.services.positions import order_position_check, working_reduce_qty
from oms.services.tx import AccountTx
from oms.services.validation import OrderSpec, order_spec, risk_check, to_decimal

logger = logging.getLogger(__name__)

# --- transitions ---------------------------------------------------------------------


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
    if message:
        order.status_message = message[:1000]
    order.save()
    OrderEvent.objects.create(
        order=order,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        source=source,
        message=message[:1000],
        payload=mask_secrets(payload or {}),
    )
    if to_status in FINAL_STATUSES:
        Position.objects.filter(closing_order=order).update(closing_order=None)
    tx.order_changed(order)


def order_note(
    order: Order, *, kind: str, source: str, actor: User | None = None, message: str = "", payload: dict[str, Any] | None = None
) -> None:
    OrderEvent.objects.create(
        order=order,
        kind=kind,
        from_status=order.status,
        to_status=order.status,
        actor=actor,
        source=source,
        message=message[:1000],
        payload=mask_secrets(payload or {}),
    )


def _fill_status(order: Order) -> str:
    if order.filled_qty >= order.qty:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED if order.filled_qty > 0 else OrderStatus.NEW


# --- sending -----------------------------------------------------------------------------


def _check_account(account: BrokerAccount) -> None:
    if not account.trading_enabled:
        raise TradingDisabled()
    if account.status != AccountStatus.ACTIVE:
        raise Conflict(f"The account is {account.status}.", code="account_not_active")


def _funds_available(account: BrokerAccount) -> Decimal | None:
    from oms.services.funds import funds_snapshot

    funds = funds_snapshot(account)
    return None if funds is None else funds.margin_available


def _create_order(tx: AccountTx, spec: OrderSpec, *, actor: User | None, source: str) -> Order:
    if spec.client_named_id and Order.objects.filter(account=tx.account, client_order_id=spec.client_order_id).exists():
        raise Conflict(
            "This client_order_id is used by another order.",
            code="duplicate_client_order_id",
            fields={"client_order_id": ["Already used."]},
        )
    position = order_position_check(
        tx.account,
        symbol=spec.symbol,
        side=spec.side,
        qty=spec.qty,
        strategy_id=spec.strategy_id,
        position_id=spec.position_id,
        reduce_only=spec.reduce_only,
    )
    order = Order.objects.create(
        account=tx.account,
        client_order_id=spec.client_order_id,
        symbol=spec.symbol,
        side=spec.side,
        order_type=spec.order_type,
        qty=spec.qty,
        price=spec.price,
        stop_price=spec.stop_price,
        time_in_force=spec.time_in_force,
        strategy_id=spec.strategy_id,
        position=position if position is not None else None,
        reduce_only=spec.reduce_only,
        source=source,
        status=OrderStatus.PENDING_NEW,
    )
    OrderEvent.objects.create(order=order, kind="created", to_status=OrderStatus.PENDING_NEW, actor=actor, source=source)
    tx.order_changed(order)
    return order


def _enqueue_submit(order_ids: list[int]) -> None:
    from oms.tasks import orders_submit_task

    # Runs after commit: the orders exist whatever happens here. An error
    # (Redis down; eager, an adapter bug) must not turn into a failed request
    # that a client retries as a second order: the sweeper sends them.
    try:
        orders_submit_task.delay(order_ids)
    except Exception:
        logger.exception("send of orders %s not enqueued; the sweeper will send them", order_ids)


def orders_send(
    *,
    account: BrokerAccount,
    payloads: Sequence[dict[str, Any]] = (),
    actor: User | None,
    source: str,
    specs: Sequence[OrderSpec] | None = None,
) -> list[Order]:
    """Validate every order first (one invalid: none written), then write all
    under one account lock and enqueue one send after commit. ``specs`` are
    payloads validated already (by the command layer): not checked twice."""
    if specs is not None:
        return _orders_write(account=account, specs=list(specs), actor=actor, source=source)
    checked: list[OrderSpec] = []
    errors: dict[str, Any] = {}
    for index, payload in enumerate(payloads):
        try:
            checked.append(order_spec(**payload))
        except TypeError as exc:
            errors[f"[{index}]"] = [str(exc)]
        except InvalidInput as exc:
            if len(payloads) == 1:
                raise
            errors.update({f"[{index}].{k}": v for k, v in exc.fields.items()} or {f"[{index}]": [exc.message]})
    if errors:
        raise InvalidInput("An order of the batch is not valid; none was sent.", fields=errors)
    return _orders_write(account=account, specs=checked, actor=actor, source=source)


def _orders_write(*, account: BrokerAccount, specs: list[OrderSpec], actor: User | None, source: str) -> list[Order]:
    coids = [s.client_order_id for s in specs]
    if len(set(coids)) != len(coids):
        raise InvalidInput("Two orders of the batch share a client_order_id.", fields={"client_order_id": ["Duplicated in the batch."]})
    _check_account(account)
    funds = _funds_available(account) if settings.OMS_RISK["CHECK_BUYING_POWER"] else None
    for spec in specs:
        risk_check(account=account, spec=spec, funds_available=funds)
    with transaction.atomic():
        tx = AccountTx.lock(account.pk)
        _check_account(tx.account)  # the kill switch may have flipped meanwhile
        orders = [_create_order(tx, spec, actor=actor, source=source) for spec in specs]
        tx.finish()
        ids = [o.pk for o in orders]
        transaction.on_commit(lambda: _enqueue_submit(ids))
    return orders


def order_send(*, account: BrokerAccount, actor: User | None, source: str, **payload: Any) -> Order:
    """``send_order``: write the order as pending_new; it is sent after commit."""
    return orders_send(account=account, payloads=[payload], actor=actor, source=source)[0]


def _request_of(order: Order) -> OrderRequest:
    return OrderRequest(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price,
        stop_price=order.stop_price,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
        position_ref=str(order.position_id) if order.position_id else None,
    )


@dataclass
class SubmitOutcome:
    order_id: int
    sent: bool
    retry: bool = False


def order_submit(*, order_id: int) -> SubmitOutcome:
    """Send one pending_new order to its broker, exactly once."""
    claimed_at = timezone.now()
    claimed = Order.objects.filter(pk=order_id, status=OrderStatus.PENDING_NEW, sent_at__isnull=True).update(sent_at=claimed_at)
    if not claimed:
        return SubmitOutcome(order_id, sent=False)  # sent already, canceled, or gone
    return order_submit_claimed(order_id=order_id, claimed_at=claimed_at)


def order_submit_claimed(*, order_id: int, claimed_at: datetime) -> SubmitOutcome:
    """Send an order whose claim the caller has just taken (``sent_at`` set
    to ``claimed_at`` by an atomic UPDATE): ``order_submit`` and the sweeper."""
    order = Order.objects.select_related("account").get(pk=order_id)
    try:
        broker = broker_for(order.account)
        ack = broker.place_order(_request_of(order))
    except BrokerRejected as exc:
        order_apply_result(
            order_id=order_id, status=OrderStatus.REJECTED, message=exc.message or "Rejected by the broker.", payload=exc.raw
        )
    except BrokerTimeout as exc:
        # It may have reached the broker: never send again; reconciliation asks.
        order_apply_result(
            order_id=order_id, status=OrderStatus.UNKNOWN, message=exc.message or "The broker did not answer.", payload=exc.raw
        )
    except (BrokerUnavailable, BrokerRateLimited, BrokerAuthExpired) as exc:
        # Surely not sent: release the claim so a retry (or the sweeper) sends it;
        # only our own claim (a sweeper that took it over owns it now).
        Order.objects.filter(pk=order_id, status=OrderStatus.PENDING_NEW, sent_at=claimed_at).update(sent_at=None)
        logger.warning("order %s not sent (%s): %s", order_id, type(exc).__name__, exc.message)
        return SubmitOutcome(order_id, sent=False, retry=True)
    except BrokerError as exc:
        order_apply_result(order_id=order_id, status=OrderStatus.UNKNOWN, message=exc.message or "Broker error.", payload=exc.raw)
    else:
        order_apply_ack(order_id=order_id, ack=ack)
    return SubmitOutcome(order_id, sent=True)


# --- the broker's answers -------------------------------------------------------------------


def _settle(tx: AccountTx, order: Order, broker_status: str, *, source: str, message: str = "", payload: dict | None = None) -> None:
    """Move towards the broker's status where that is a legal step; fills
    (partially_filled/filled) only ever come from deals, so a broker status
    that claims fills the OMS has not booked yet means 'accepted'."""
    if order.is_final:
        return
    target = broker_status
    if target in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
        target = _fill_status(order)
    if target == OrderStatus.NEW and order.filled_qty > 0:
        target = _fill_status(order)
    if target == order.status:
        return
    if target in TRANSITIONS[order.status]:
        order_transition(tx, order, target, source=source, message=message, payload=payload)
    else:
        order_note(order, kind="stale_update", source=source, message=f"broker said {broker_status} while {order.status}", payload=payload)


def order_apply_ack(*, order_id: int, ack: OrderAck, source: str = Source.BROKER) -> Order:
    with transaction.atomic():
        tx = AccountTx.lock(Order.objects.values_list("account_id", flat=True).get(pk=order_id))
        order = Order.objects.get(pk=order_id)
        if ack.broker_order_id and not order.broker_order_id:
            order.broker_order_id = ack.broker_order_id
            order.save(update_fields=["broker_order_id", "updated_at"])
        _settle(tx, order, ack.status, source=source, message=ack.message, payload=ack.raw)
        tx.finish()
    return order


def order_apply_result(*, order_id: int, status: str, message: str = "", payload: dict | None = None, source: str = Source.BROKER) -> Order:
    with transaction.atomic():
        tx = AccountTx.lock(Order.objects.values_list("account_id", flat=True).get(pk=order_id))
        order = Order.objects.get(pk=order_id)
        _settle(tx, order, status, source=source, message=message, payload=payload)
        tx.finish()
    return order


def order_apply_broker_status(*, account_id: int, status: BrokerOrderStatus, source: str = Source.BROKER) -> Order | None:
    """An order update from the broker (venue expiry, reconciliation)."""
    with transaction.atomic():
        tx = AccountTx.lock(account_id)
        order = _find_order(account_id, broker_order_id=status.broker_order_id, client_order_id=status.client_order_id)
        if order is None:
            tx.finish()
            return None
        if status.broker_order_id and not order.broker_order_id:
            order.broker_order_id = status.broker_order_id
            order.save(update_fields=["broker_order_id", "updated_at"])
        _settle(tx, order, status.status, source=source, message=status.message, payload=status.raw)
        tx.finish()
    return order


def _find_order(account_id: int, *, broker_order_id: str | None, client_order_id: str | None) -> Order | None:
    if broker_order_id:
        order = Order.objects.filter(account_id=account_id, broker_order_id=broker_order_id).first()
        if order is not None:
            return order
    if client_order_id:
        return Order.objects.filter(account_id=account_id, client_order_id=client_order_id).first()
    return None


# --- cancel and change -----------------------------------------------------------------------


def order_get_for_account(*, account: BrokerAccount, order_id: int | None = None, client_order_id: str | None = None) -> Order:
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


def _enqueue(task_name: str, *args: Any) -> None:
    from oms import tasks

    # After commit, as _enqueue_submit: reconciliation re-asks a cancel left pending.
    try:
        getattr(tasks, task_name).delay(*args)
    except Exception:
        logger.exception("%s%s not enqueued; reconciliation will settle it", task_name, args)


def order_cancel(*, order: Order, actor: User | None, source: str) -> Order:
    """``cancel_order``. Allowed while trading is disabled."""
    with transaction.atomic():
        tx = AccountTx.lock(order.account_id)
        # The row lock too: the sender claims (sets sent_at) without the account
        # lock, and a cancel that read sent_at as NULL must not save over a claim
        # made meanwhile (the order would be canceled here and live at the broker).
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.is_final:
            raise Conflict(f"The order is {order.status}; it cannot be canceled.", code="order_final")
        if order.status == OrderStatus.PENDING_NEW and order.sent_at is None:
            # Not sent yet: the sender's claim will now find it canceled.
            order_transition(tx, order, OrderStatus.CANCELED, source=source, actor=actor, message="Canceled before it was sent.")
            tx.finish()
            return order
        if order.status in (OrderStatus.PENDING_NEW, OrderStatus.UNKNOWN):
            raise Conflict("The order is on its way to the broker; cancel again in a moment.", code="order_in_flight")
        if order.status == OrderStatus.PENDING_CANCEL:
            raise Conflict("A cancel is already pending.", code="cancel_pending")
        order_transition(tx, order, OrderStatus.PENDING_CANCEL, source=source, actor=actor)
        tx.finish()
        order_id = order.pk
        transaction.on_commit(lambda: _enqueue("order_cancel_task", order_id))
    return order


def _request_refused(account_id: int, order_id: int, pending: str, message: str, raw: dict) -> None:
    """The broker refused a cancel or change (usually: filled meanwhile): the
    order goes back to working; fills, if any, settle the rest."""
    with transaction.atomic():
        tx = AccountTx.lock(account_id)
        fresh = Order.objects.get(pk=order_id)
        if fresh.status == pending:
            order_transition(tx, fresh, _fill_status(fresh), source=Source.BROKER, message=message, payload=raw)
        tx.finish()


def order_cancel_at_broker(*, order_id: int) -> None:
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


def order_change(*, order: Order, actor: User | None, source: str, qty: Any = None, price: Any = None, stop_price: Any = None) -> Order:
    """``change_order``: new qty and/or prices of a working order."""
    new_qty = to_decimal(qty, "qty")
    new_price = to_decimal(price, "price")
    new_stop = to_decimal(stop_price, "stop_price")
    if new_qty is None and new_price is None and new_stop is None:
        raise InvalidInput("Give a new qty, price or stop_price.", fields={"qty": ["Nothing to change."]})
    with transaction.atomic():
        tx = AccountTx.lock(order.account_id)
        order = Order.objects.get(pk=order.pk)
        if order.is_final:
            raise Conflict(f"The order is {order.status}; it cannot be changed.", code="order_final")
        if order.status not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            raise Conflict(f"The order is {order.status}; change it once it is working.", code="order_busy")
        broker = broker_for(tx.account)
        if not broker.capabilities.supports_modify:
            raise InvalidInput("This broker cannot change orders; cancel and send a new one.", code="not_supported")
        from marketdata.models import Instrument

        instrument = Instrument.objects.get(symbol=order.symbol)
        errors: dict[str, list[str]] = {}
        if new_qty is not None:
            if new_qty <= order.filled_qty:
                errors["qty"] = [f"Must be above the filled quantity {order.filled_qty}."]
            elif instrument.lot_size and new_qty % instrument.lot_size:
                errors["qty"] = [f"Must be a multiple of the lot size {instrument.lot_size.normalize()}."]
        if new_price is not None:
            if order.order_type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
                errors["price"] = [f"A {order.order_type} order has no price."]
            elif new_price <= 0 or (instrument.tick_size and new_price % instrument.tick_size):
                errors["price"] = [f"Must be positive and on the tick size {instrument.tick_size.normalize()}."]
        if new_stop is not None:
            if order.order_type not in (OrderType.STOP, OrderType.STOP_LIMIT):
                errors["stop_price"] = [f"A {order.order_type} order has no stop_price."]
            elif new_stop <= 0 or (instrument.tick_size and new_stop % instrument.tick_size):
                errors["stop_price"] = [f"Must be positive and on the tick size {instrument.tick_size.normalize()}."]
        if errors:
            raise InvalidInput(next(iter(errors.values()))[0], fields=errors)
        changes = {k: str(v) for k, v in (("qty", new_qty), ("price", new_price), ("stop_price", new_stop)) if v is not None}
        order_transition(
            tx, order, OrderStatus.PENDING_CHANGE, source=source, actor=actor, payload={"requested": changes}, kind="change_requested"
        )
        tx.finish()
        order_id = order.pk
        transaction.on_commit(lambda: _enqueue("order_change_task", order_id, changes))
    return order


def order_change_at_broker(*, order_id: int, changes: dict[str, str]) -> None:
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
    with transaction.atomic():
        tx = AccountTx.lock(order.account_id)
        fresh = Order.objects.get(pk=order_id)
        if fresh.status == OrderStatus.PENDING_CHANGE:
            if qty is not None and qty > fresh.filled_qty:
                fresh.qty = qty
            if price is not None:
                fresh.price = price
            if stop is not None:
                fresh.stop_price = stop
            fresh.save()
            target = _fill_status(fresh) if ack.status not in FINAL_STATUSES else ack.status
            order_transition(tx, fresh, target, source=Source.BROKER, message="Change applied.", payload=ack.raw, kind="changed")
        tx.finish()


# --- account-wide commands ---------------------------------------------------------------------


def orders_cancel_all(*, account: BrokerAccount, actor: User | None, source: str) -> list[Order]:
    """``cancel_all``: ask to cancel every working order (skips those busy)."""
    canceled = []
    for order in Order.objects.filter(account=account, status__in=OPEN_STATUSES).order_by("id"):
        try:
            canceled.append(order_cancel(order=order, actor=actor, source=source))
        except Conflict:
            continue  # final meanwhile, in flight, or a cancel pending already
    return canceled


def position_close(*, account: BrokerAccount, position_id: int, actor: User | None, source: str) -> Order:
    """``close_position``: a reduce-only market order for the remaining qty.
    One close at a time per position (a second one answers 409)."""
    with transaction.atomic():
        tx = AccountTx.lock(account.pk)
        position = Position.objects.filter(account=tx.account, pk=position_id).first()
        if position is None:
            raise NotFound("No such position.")
        if position.status != PositionStatus.OPEN:
            raise Conflict("The position is closed.", code="position_closed")
        if position.closing_order_id is not None:
            working = Order.objects.filter(pk=position.closing_order_id).values_list("status", flat=True).first()
            if working is not None and working not in FINAL_STATUSES:
                raise Conflict("A close of this position is already working.", code="close_pending")
        if not tx.account.trading_enabled:
            raise TradingDisabled()
        # Working reduce-only orders of the position already cover part of it.
        remaining = position.qty - working_reduce_qty(position)
        if remaining <= 0:
            raise Conflict("Working reduce-only orders already close this position.", code="close_pending")
        spec = order_spec(
            symbol=position.symbol,
            side=Side.SELL if position.side == PositionSide.LONG else Side.BUY,
            order_type=OrderType.MARKET,
            qty=str(remaining),
            time_in_force=TimeInForce.GTC,
            strategy_id=position.strategy_id,
            position_id=position.pk,
            reduce_only=True,
        )
        order = _create_order(tx, spec, actor=actor, source=source)
        position.closing_order = order
        position.save(update_fields=["closing_order", "updated_at"])
        tx.finish()
        ids = [order.pk]
        transaction.on_commit(lambda: _enqueue_submit(ids))
    return order


def positions_flatten_all(*, account: BrokerAccount, actor: User | None, source: str) -> list[Order]:
    """``flatten_all``: cancel working orders, then close every open position.

    Closing sends new orders, so the kill switch refuses flatten as a whole
    before anything is canceled (cancel_all stays allowed)."""
    if not BrokerAccount.objects.filter(pk=account.pk, trading_enabled=True).exists():
        raise TradingDisabled("Trading is disabled on this account by staff: flatten needs new orders. cancel_all is still allowed.")
    orders_cancel_all(account=account, actor=actor, source=source)
    closes = []
    for position_id in Position.objects.filter(account=account, status=PositionStatus.OPEN).values_list("pk", flat=True):
        try:
            closes.append(position_close(account=account, position_id=position_id, actor=actor, source=source))
        except (Conflict, InvalidInput):
            continue  # closing already, or working reduce orders cover it
    return closes
