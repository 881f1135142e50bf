"""Sending orders: write, commit, then send.

The order row (``pending_new``) and its first event commit before any broker
call; the send runs after commit (a Celery task, eager on the embedded
default). Before calling the broker the sender claims the order by setting
``sent_at`` (an atomic UPDATE), so two senders never send one order twice, and
a crash after the claim leaves evidence for the sweeper, which asks the broker
before sending again. The broker's answer is recorded in a second transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from accounts.models import User
from brokers.base import (
    BrokerAuthExpired,
    BrokerError,
    BrokerRateLimited,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    OrderRequest,
)
from brokers.models import AccountStatus, BrokerAccount
from brokers.registry import adapter_registered, broker_for
from brokers.services import broker_account_status
from oms.errors import BrokerNotConfigured, Conflict, InvalidInput, TradingDisabled
from oms.models import Order, OrderEvent, OrderStatus
from oms.services.enqueue import enqueue_submit
from oms.services.funds import funds_buying_power
from oms.services.lifecycle import order_apply_ack, order_apply_result
from oms.services.order_rate import OrderRateTake, order_rate_check_size, order_rate_give_back, order_rate_take
from oms.services.positions import order_opening_qty, order_position_check
from oms.services.tx import AccountTx
from oms.services.validation import risk_check
from oms.specs import OrderSpec

logger = logging.getLogger(__name__)


def account_check_trading(account: BrokerAccount) -> None:
    """Refuse new orders at once for an account that cannot take them: the
    kill switch, a broker that is not configured, an account not active."""
    if not account.trading_enabled:
        raise TradingDisabled()
    account_check_configured(account, doing="the order was not accepted")
    status = broker_account_status(account)
    if status != AccountStatus.ACTIVE:
        raise Conflict(f"The account is {status}.", code="account_not_active")


def account_check_configured(account: BrokerAccount, *, doing: str = "nothing was asked of it") -> None:
    """Refuse (409 ``broker_not_configured``) anything that needs the account's
    broker when no adapter serves its kind or a required credential is unset,
    rather than failing later as a broker that did not answer."""
    if broker_account_status(account) != AccountStatus.NOT_CONFIGURED:
        return
    if not adapter_registered(account.kind):
        raise BrokerNotConfigured(
            f"The account's broker is not configured: no adapter serves {account.kind} accounts here; {doing}.",
            fields={"kind": ["No adapter."]},
        )
    missing = account.missing_credentials
    raise BrokerNotConfigured(
        f"The account's broker is not configured (credentials missing: {', '.join(missing) or 'unknown'}); {doing}.",
        fields={"credentials": [f"{name} is not set." for name in missing]},
    )


def order_create(tx: AccountTx, spec: OrderSpec, *, actor: User | None, source: str) -> Order:
    """Write one validated order as ``pending_new`` with its ``created`` event
    (the caller holds the account lock and enqueues the send after commit)."""
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
        broker_fields=dict(spec.extra),
        source=source,
        status=OrderStatus.PENDING_NEW,
    )
    OrderEvent.objects.create(order=order, kind="created", to_status=OrderStatus.PENDING_NEW, actor=actor, source=source)
    tx.order_changed(order)
    return order


def orders_send(*, account: BrokerAccount, specs: Sequence[OrderSpec], actor: User | None, source: str) -> list[Order]:
    """``send_order`` for one or several orders (specs parsed by
    ``oms.specs.SendOrderPayload``): write all under one account lock,
    atomically, and enqueue one send after commit."""
    return _orders_write(account=account, specs=list(specs), actor=actor, source=source)


def _orders_write(*, account: BrokerAccount, specs: list[OrderSpec], actor: User | None, source: str) -> list[Order]:
    coids = [s.client_order_id for s in specs]
    if len(set(coids)) != len(coids):
        raise InvalidInput("Two orders of the batch share a client_order_id.", fields={"client_order_id": ["Duplicated in the batch."]})
    account_check_trading(account)
    # The projection of the broker's funds, not the broker: nothing is asked on the request path.
    buying_power = funds_buying_power(account) if settings.OMS_RISK["CHECK_BUYING_POWER"] else None
    for spec in specs:
        opening = spec.qty if buying_power is None else order_opening_qty(account, spec)
        risk_check(account=account, spec=spec, buying_power=buying_power, opening_qty=opening)
    order_rate_check_size(count=len(specs))
    taken: OrderRateTake | None = None
    try:
        with AccountTx(account.pk) as tx:
            account_check_trading(tx.account)  # the kill switch may have flipped meanwhile
            orders = [order_create(tx, spec, actor=actor, source=source) for spec in specs]
            # Counted last, under the account lock: a refusal rolls the orders back.
            taken = order_rate_take(account_id=account.pk, amount=len(orders), at=orders[0].created_at)
            ids = [o.pk for o in orders]
            tx.on_commit(lambda: enqueue_submit(ids))
    except BaseException:
        order_rate_give_back(taken)  # counted, then the commit failed
        raise
    return orders


def order_send(*, account: BrokerAccount, spec: OrderSpec, actor: User | None, source: str) -> Order:
    """``send_order``: write the order as pending_new; it is sent after commit."""
    return orders_send(account=account, specs=[spec], actor=actor, source=source)[0]


def order_request(order: Order) -> OrderRequest:
    """The Broker protocol's request for one of our orders."""
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
        extra=dict(order.broker_fields or {}),
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
        account_check_configured(order.account, doing="the order was not sent")
    except BrokerNotConfigured as exc:
        # Accepted before the account lost its adapter or a credential: nothing
        # was sent, and retrying every sweep cannot succeed. Say so on the order.
        order_apply_result(order_id=order_id, status=OrderStatus.REJECTED, message=exc.message)
        return SubmitOutcome(order_id, sent=False)
    try:
        broker = broker_for(order.account)
        ack = broker.place_order(order_request(order))
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
