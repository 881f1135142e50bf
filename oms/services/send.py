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
from django.db import connection
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
    place_orders,
)
from brokers.locks import LockNotAcquired, named_lock
from brokers.models import LOGIN_REQUIRED, AccountStatus, BrokerAccount
from brokers.registry import adapter_registered, broker_for, deliveries_held
from brokers.services import broker_account_status
from oms.errors import BrokerNotConfigured, Conflict, InvalidInput, TradingDisabled
from oms.models import Order, OrderEvent, OrderStatus
from oms.services.enqueue import enqueue_submit
from oms.services.fills import orders_answers_and_fills_apply, progress_pending_apply
from oms.services.funds import funds_buying_power
from oms.services.lifecycle import BrokerAnswer, orders_apply_answers
from oms.services.order_rate import OrderRateTake, order_rate_check_size, order_rate_give_back, order_rate_take
from oms.services.positions import order_position_check, orders_opening_qty
from oms.services.tx import AccountTx
from oms.services.validation import risk_check
from oms.specs import OrderSpec
from streams.publish import publishing_batched

logger = logging.getLogger(__name__)


def account_check_trading(account: BrokerAccount) -> None:
    """Refuse new orders at once for an account that cannot take them: the
    kill switch, a broker that is not configured, an account not active."""
    if not account.trading_enabled:
        raise TradingDisabled()
    account_check_configured(account, doing="the order was not accepted")
    status = broker_account_status(account)
    if status == LOGIN_REQUIRED:
        raise Conflict(
            f"Log in to {account.get_kind_display()} first: the account has no valid broker session; the order was not accepted.",
            code="broker_login_required",
        )
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
    return orders_create(tx, [spec], actor=actor, source=source)[0]


def orders_create(tx: AccountTx, specs: Sequence[OrderSpec], *, actor: User | None, source: str) -> list[Order]:
    """Write validated orders as ``pending_new`` with their ``created`` events,
    in the specs' order, in a fixed number of queries whatever their count
    (one client_order_id check, one insert of the orders, one of the events;
    an order naming or reducing a position costs its look-ups and one more
    insert of each). The caller holds the
    account lock and enqueues the send after commit."""
    named = [s.client_order_id for s in specs if s.client_named_id]
    if named and Order.objects.filter(account=tx.account, client_order_id__in=named).exists():
        raise Conflict(
            "This client_order_id is used by another order.",
            code="duplicate_client_order_id",
            fields={"client_order_id": ["Already used."]},
        )
    orders: list[Order] = []
    unsaved: list[Order] = []

    def flush() -> None:
        # Both backends return the new ids from one multi-row INSERT
        # (PostgreSQL, SQLite >= 3.35), in the order given.
        Order.objects.bulk_create(unsaved)
        OrderEvent.objects.bulk_create(
            OrderEvent(order=order, kind="created", to_status=OrderStatus.PENDING_NEW, actor=actor, source=source) for order in unsaved
        )
        orders.extend(unsaved)
        unsaved.clear()

    for spec in specs:
        if unsaved and (spec.position_id is not None or spec.reduce_only):
            flush()  # its position check counts the batch's earlier orders as working
        position = order_position_check(
            tx.account,
            symbol=spec.symbol,
            side=spec.side,
            qty=spec.qty,
            strategy_id=spec.strategy_id,
            position_id=spec.position_id,
            reduce_only=spec.reduce_only,
        )
        unsaved.append(
            Order(
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
        )
    if unsaved:
        flush()
    for order in orders:
        tx.order_changed(order)
    return orders


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
    openings = [s.qty for s in specs] if buying_power is None else orders_opening_qty(account, specs)
    for spec, opening in zip(specs, openings, strict=True):
        risk_check(account=account, spec=spec, buying_power=buying_power, opening_qty=opening)
    order_rate_check_size(count=len(specs))
    taken: OrderRateTake | None = None
    try:
        with AccountTx(account.pk) as tx:
            account_check_trading(tx.account)  # the kill switch may have flipped meanwhile
            orders = orders_create(tx, specs, actor=actor, source=source)
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
    return orders_submit(order_ids=[order_id])[0]


def orders_claim(order_ids: Sequence[int], claimed_at: datetime) -> set[int]:
    """Claim the pending_new orders of ``order_ids`` not claimed yet (set
    ``sent_at`` to ``claimed_at``) in one atomic UPDATE; returns the ids this
    call claimed (``RETURNING``: PostgreSQL, SQLite >= 3.35), so two senders
    never both claim one order, even with the same clock reading."""
    if not order_ids:
        return set()
    table = connection.ops.quote_name(Order._meta.db_table)
    marks = ", ".join(["%s"] * len(order_ids))
    sql = f"UPDATE {table} SET sent_at = %s WHERE id IN ({marks}) AND status = %s AND sent_at IS NULL RETURNING id"  # noqa: S608 (no input in the text)
    params = [connection.ops.adapt_datetimefield_value(claimed_at), *order_ids, OrderStatus.PENDING_NEW]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def orders_submit(*, order_ids: Sequence[int]) -> list[SubmitOutcome]:
    """Send pending_new orders to their brokers, each exactly once, as one unit
    of work: one claim for all, one read, each account's broker asked once
    for the batch where its adapter can (``brokers.base.place_orders``), its
    answers recorded under one account lock. One outcome per id, in order
    (not sent: already sent, canceled or gone)."""
    claimed_at = timezone.now()
    claimed = orders_claim(order_ids, claimed_at)
    outcomes = {order_id: SubmitOutcome(order_id, sent=False) for order_id in order_ids}
    if claimed:
        for outcome in orders_submit_claimed(order_ids=sorted(claimed), claimed_at=claimed_at):
            outcomes[outcome.order_id] = outcome
    return [outcomes[order_id] for order_id in order_ids]


# Per-account order of sends across worker processes: see orders_submit_in_order.
SEND_LOCK_TTL = 120.0  # seconds a dead holder keeps an account's sends waiting
SEND_LOCK_WAIT = 10.0  # seconds a task waits for another one of its account, then retries
SEND_CHUNK = 500  # orders sent per unit of work while draining an account's backlog


def orders_submit_in_order(*, order_ids: Sequence[int]) -> list[SubmitOutcome]:
    """The worker's send (``oms.orders_submit``): for each account of
    ``order_ids``, under that account's send lock (``brokers.locks``: Redis
    in production, a file lock embedded), every unsent pending_new order of
    the account up to the newest of ``order_ids``, in id order (the order
    they were accepted), ``SEND_CHUNK`` at a time. So one account's orders
    reach its broker in order whichever worker process runs which task (a
    later task that locks first sends the earlier orders first; the earlier
    task then finds them claimed), and accounts never wait for each other.
    Outcomes of ``order_ids`` first, then of other orders this call sent; an
    account whose lock stays taken gives ``retry`` outcomes."""
    owners = dict(Order.objects.filter(pk__in=list(order_ids)).values_list("pk", "account_id"))
    outcomes: dict[int, SubmitOutcome] = {order_id: SubmitOutcome(order_id, sent=False) for order_id in order_ids}
    for account_id in sorted(set(owners.values())):
        newest = max(order_id for order_id, owner in owners.items() if owner == account_id)
        try:
            with named_lock(f"oms:send:{account_id}", ttl=SEND_LOCK_TTL, wait=SEND_LOCK_WAIT):
                while True:
                    due = list(
                        Order.objects.filter(account_id=account_id, status=OrderStatus.PENDING_NEW, sent_at__isnull=True, pk__lte=newest)
                        .order_by("pk")
                        .values_list("pk", flat=True)[:SEND_CHUNK]
                    )
                    sent = orders_submit(order_ids=due) if due else []
                    outcomes.update((o.order_id, o) for o in sent)
                    # Stop when drained, and at once when the broker is unavailable
                    # (the released claims would be due again at once).
                    if len(due) < SEND_CHUNK or any(o.retry for o in sent):
                        break
        except LockNotAcquired:
            logger.warning("sends of account %s wait: its send lock stayed taken for %s s", account_id, SEND_LOCK_WAIT)
            for order_id, owner in owners.items():
                if owner == account_id:
                    outcomes[order_id] = SubmitOutcome(order_id, sent=False, retry=True)
    asked = set(order_ids)
    return [outcomes[i] for i in order_ids] + [o for i, o in outcomes.items() if i not in asked]


def order_submit_claimed(*, order_id: int, claimed_at: datetime) -> SubmitOutcome:
    """Send an order whose claim the caller has just taken (``sent_at`` set
    to ``claimed_at`` by an atomic UPDATE): ``order_submit`` and the sweeper."""
    return orders_submit_claimed(order_ids=[order_id], claimed_at=claimed_at)[0]


def orders_submit_claimed(*, order_ids: Sequence[int], claimed_at: datetime) -> list[SubmitOutcome]:
    """Send orders whose claims the caller has just taken (``sent_at`` set to
    ``claimed_at``), per account in id order; one outcome per order found."""
    orders = list(Order.objects.select_related("account").filter(pk__in=list(order_ids)).order_by("pk"))
    groups: dict[int, list[Order]] = {}
    for order in orders:
        groups.setdefault(order.account_id, []).append(order)
    outcomes: list[SubmitOutcome] = []
    # The answers and the fills are recorded in several transactions; their
    # updates go out together once the unit of work is done: one message per
    # channel, not one per order or per transaction.
    with publishing_batched():
        for group in groups.values():
            outcomes.extend(_account_orders_submit(group, claimed_at))
    return outcomes


def _account_orders_submit(orders: list[Order], claimed_at: datetime) -> list[SubmitOutcome]:
    account = orders[0].account
    ids = [o.pk for o in orders]
    try:
        account_check_configured(account, doing="the order was not sent")
    except BrokerNotConfigured as exc:
        # Accepted before the account lost its adapter or a credential: nothing
        # was sent, and retrying every sweep cannot succeed. Say so on the orders.
        orders_apply_answers(account_id=account.pk, answers=[BrokerAnswer(i, OrderStatus.REJECTED, message=exc.message) for i in ids])
        return [SubmitOutcome(i, sent=False) for i in ids]
    # The fills a venue delivers inside the call (after its own commit: the
    # paper venue's immediate match) are booked with the answers, in one
    # account transaction; whatever is not booked here is delivered as usual
    # when the block ends, an exception included.
    with deliveries_held() as held:
        answers: list[OrderAck | BrokerError]
        try:
            broker = broker_for(account)
            cumulative = broker.capabilities.cumulative_fills
            answers = place_orders(broker, [order_request(o) for o in orders])
        except BrokerError as exc:  # no adapter (not sent), or an adapter's batch answer that does not add up
            answers, cumulative = [exc] * len(orders), False
        recorded, retry = _answers_recorded(ids, answers)
        if retry:
            # Surely not sent: release the claims so a retry (or the sweeper) sends
            # them; only our own claims (a sweeper that took one over owns it now).
            Order.objects.filter(pk__in=retry, status=OrderStatus.PENDING_NEW, sent_at=claimed_at).update(sent_at=None)
        fills = held.fills(account.pk)
        orders_answers_and_fills_apply(account_id=account.pk, answers=recorded, fills=fills)
        held.fills_taken(account.pk)
    if cumulative:
        for done in recorded:
            # A fill notice that outran this answer waited for the link it makes.
            progress_pending_apply(account_id=account.pk, broker_order_id=done.broker_order_id)
    retrying = set(retry)
    return [SubmitOutcome(i, sent=i not in retrying, retry=i in retrying) for i in ids]


def _answers_recorded(ids: list[int], answers: Sequence[OrderAck | BrokerError]) -> tuple[list[BrokerAnswer], list[int]]:
    """What to record of each order's answer, and the orders surely not sent (to retry)."""
    recorded: list[BrokerAnswer] = []
    retry: list[int] = []
    for order_id, answer in zip(ids, answers, strict=True):
        if isinstance(answer, OrderAck):
            recorded.append(BrokerAnswer.of_ack(order_id, answer))
        elif isinstance(answer, BrokerRejected):
            recorded.append(
                BrokerAnswer(order_id, OrderStatus.REJECTED, message=answer.message or "Rejected by the broker.", payload=answer.raw)
            )
        elif isinstance(answer, BrokerTimeout):
            # It may have reached the broker: never send again; reconciliation asks.
            recorded.append(
                BrokerAnswer(order_id, OrderStatus.UNKNOWN, message=answer.message or "The broker did not answer.", payload=answer.raw)
            )
        elif isinstance(answer, BrokerUnavailable | BrokerRateLimited | BrokerAuthExpired):
            logger.warning("order %s not sent (%s): %s", order_id, type(answer).__name__, answer.message)
            retry.append(order_id)
        else:
            recorded.append(BrokerAnswer(order_id, OrderStatus.UNKNOWN, message=answer.message or "Broker error.", payload=answer.raw))
    return recorded, retry
