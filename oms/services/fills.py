"""Fills from the broker into deals, orders and positions — exactly once.

A deal is unique by (account, broker trade id), so a replayed fill (the
paper venue's delivery, a postback, reconciliation) is a no-op. The deal, the
order's filled quantity and the position change in one transaction under the
account lock.

Brokers whose fills carry no trade id (``Capabilities.cumulative_fills``,
KIS) report progress on orders instead: an order's cumulative filled quantity
and amount. ``fills_apply_progress`` books the difference between that and
what the order's deals hold, as one fill keyed ``<broker order id>:<cumulative
qty>``, so the same execution reported twice (a fill notice, then the
daily-orders query) is booked once, whichever comes first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from brokers.base import Fill
from brokers.base import OrderStatus as BrokerOrderStatus
from brokers.models import BrokerAccount
from brokers.registry import broker_for
from core.masking import mask_secrets
from oms.models import Deal, DealKind, Order, OrderEvent, OrderStatus, Source
from oms.services.lifecycle import BrokerAnswer, order_apply_broker_status, order_settle, orders_answers_record, orders_apply_answers
from oms.services.positions import OpenPositions, position_book_deal
from oms.services.tx import AccountTx

logger = logging.getLogger(__name__)


def fill_apply(*, account_id: int, fill: Fill, source: str = Source.BROKER) -> Deal | None:
    """Book one fill. Returns the new deal, or None when it was booked before."""
    booked = fills_apply(account_id, [fill], source=source)
    return booked[0] if booked else None


def _booked_trade_ids(account_id: int, trade_ids: set[str]) -> set[str]:
    rows = Deal.objects.filter(account_id=account_id, broker_trade_id__in=sorted(trade_ids)).values_list("broker_trade_id", flat=True)
    return {trade_id for trade_id in rows if trade_id is not None}


class _FilledOrders:
    """The account's orders a batch of fills names, found as ``order_find``
    finds them (by the broker's order id, else by our client order id) and
    kept current as the batch books them. ``known`` (orders the caller read
    under the lock, each with the broker order id the broker's answer gave
    it, if any) are linked first; the fills they do not name exactly (by that
    broker order id, or by client order id for a fill without one) are looked
    up in one query."""

    def __init__(self, account_id: int, fills: list[Fill], known: Iterable[tuple[Order, str]] = ()) -> None:
        self.by_broker_id: dict[str, Order] = {}
        self.by_client_id: dict[str, Order] = {}
        instances: dict[int, Order] = {}
        for order, answered_id in known:
            instances[order.pk] = order
            if answered_id:
                self.by_broker_id.setdefault(answered_id, order)
            self.link(order)
        unknown = [
            f
            for f in fills
            if not (f.broker_order_id in self.by_broker_id if f.broker_order_id else f.client_order_id in self.by_client_id)
        ]
        broker_ids = sorted({f.broker_order_id for f in unknown if f.broker_order_id})
        client_ids = sorted({f.client_order_id for f in unknown if f.client_order_id})
        if not broker_ids and not client_ids:
            return
        # Newest first (Meta.ordering), as order_find's .first() picks.
        for order in Order.objects.filter(account_id=account_id).filter(
            Q(broker_order_id__in=broker_ids) | Q(client_order_id__in=client_ids)
        ):
            self.link(instances.get(order.pk, order))  # one instance per row

    def link(self, order: Order) -> None:
        if order.broker_order_id:
            self.by_broker_id.setdefault(order.broker_order_id, order)
        self.by_client_id.setdefault(order.client_order_id, order)

    def find(self, fill: Fill) -> Order | None:
        if fill.broker_order_id and fill.broker_order_id in self.by_broker_id:
            return self.by_broker_id[fill.broker_order_id]
        return self.by_client_id.get(fill.client_order_id) if fill.client_order_id else None


def fills_apply(account_id: int, fills: list[Fill], source: str = Source.BROKER) -> list[Deal]:
    """The brokers' fill sink: book each fill exactly once, in time order,
    under one account lock and in one transaction, with one funds update.
    A batch costs a fixed number of queries whatever its size (the booked
    trade ids, the orders and the open positions read once; the deals,
    positions, orders and events written in bulk, ``AccountTx.bulk``): each
    fill is booked by the same code as a single one, against the state the
    fills before it left. Returns the new deals (none for a replay)."""
    if not fills:
        return []
    return _fills_and_answers_book(account_id, fills, (), source)


def orders_answers_and_fills_apply(*, account_id: int, answers: Sequence[BrokerAnswer], fills: list[Fill]) -> list[Deal]:
    """The broker's answers to the send of some of one account's orders and
    the fills it reported with them (a venue that fills at once), in one
    transaction under one account lock: each fill booked exactly once as
    ``fills_apply`` books it, then each answer recorded as
    ``orders_apply_answers`` records it (the order the venue's after-commit
    delivery gave them before: fills, then the answer, which notes itself on
    an order its fills made final). Returns the new deals."""
    if not fills:
        orders_apply_answers(account_id=account_id, answers=answers)
        return []
    return _fills_and_answers_book(account_id, fills, answers, Source.BROKER)


def _fills_and_answers_book(account_id: int, fills: list[Fill], answers: Sequence[BrokerAnswer], source: str) -> list[Deal]:
    trade_ids = {f.broker_trade_id for f in fills}
    todo: list[Fill] = []
    deals: list[Deal] = []
    try:
        with AccountTx(account_id) as tx:
            # Under the lock: a concurrent delivery cannot book one meanwhile.
            seen = _booked_trade_ids(account_id, trade_ids)
            for fill in sorted(fills, key=lambda f: (f.executed_at or timezone.now(), f.broker_trade_id)):
                if fill.broker_trade_id not in seen:
                    seen.add(fill.broker_trade_id)
                    todo.append(fill)
            if not todo and not answers:
                return []
            answered = Order.objects.filter(account_id=account_id).in_bulk([a.order_id for a in answers]) if answers else {}
            with tx.bulk():
                if todo:
                    known = [(answered[a.order_id], a.broker_order_id) for a in answers if a.order_id in answered]
                    orders = _FilledOrders(account_id, todo, known)
                    named = [(f, orders.find(f)) for f in todo]
                    positions = OpenPositions(
                        tx.account, symbols={f.symbol for f in todo}, position_ids={o.position_id for _, o in named if o}
                    )
                    for fill, _ in named:
                        order = orders.find(fill)  # a fill before may have linked the broker's id
                        deals.append(_fill_book(tx, fill, order, positions, source))
                        if order is not None:
                            orders.link(order)
                # The same instances the fills moved: one row write per order.
                orders_answers_record(tx, answered, answers, source=Source.BROKER)
            if todo:
                tx.funds_changed()
    except IntegrityError:
        # Only the (account, broker trade id) constraint makes this a duplicate:
        # a concurrent booking of the same trades, committed now. Any other
        # violation is a bug or a broken fill and must not vanish. The
        # answers rolled back with them: recorded on their own.
        if _booked_trade_ids(account_id, {f.broker_trade_id for f in todo}) == {f.broker_trade_id for f in todo}:
            orders_apply_answers(account_id=account_id, answers=answers)
            return []
        logger.exception("fills %s of account %s not booked", [f.broker_trade_id for f in todo], account_id)
        raise
    return deals


def _fill_book(tx: AccountTx, fill: Fill, order: Order | None, positions: OpenPositions, source: str) -> Deal:
    """Book one fill (the caller holds the account lock): its deal into its
    position, and its progress on its order."""
    executed_at: datetime = fill.executed_at or timezone.now()
    strategy_id = order.strategy_id if order else ""
    position = positions.for_deal(
        symbol=fill.symbol, strategy_id=strategy_id, side=fill.side, position_id=order.position_id if order else None, at=executed_at
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
        payload=mask_secrets(dict(fill.raw)) if fill.raw else {},
    )
    if order is not None:
        _book_on_order(tx, order, fill, source)
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
    tx.order_save(order)
    tx.event_add(
        OrderEvent(
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
    )
    if order.is_final:
        tx.order_changed(order)  # filled_qty moved on a final order (a fill raced a cancel)
        return
    target = OrderStatus.FILLED if order.filled_qty >= order.qty else OrderStatus.PARTIALLY_FILLED
    published = tx.account.orders_seq
    order_settle(tx, order, target, source=source)
    if tx.account.orders_seq == published:
        tx.order_changed(order)  # no transition (e.g. another partial fill): still an update


# --- cumulative progress (brokers without trade ids) ---------------------------------------

PRICE_PLACES = Decimal("1e-10")  # the deal price's precision (oms.models.QTY)


def progress_trade_id(broker_order_id: str, cumulative_qty: Decimal) -> str:
    """The trade id of the fill that brings an order to ``cumulative_qty``."""
    return f"{broker_order_id}:{cumulative_qty.normalize():f}"


def _booked(account_id: int, broker_order_id: str) -> tuple[Decimal, Decimal]:
    """Quantity and amount the progress deals of one broker order hold
    (summed here, exactly: an order has few deals)."""
    rows = Deal.objects.filter(account_id=account_id, broker_trade_id__startswith=f"{broker_order_id}:").values_list("qty", "price")
    return sum((q for q, _ in rows), Decimal(0)), sum((q * p for q, p in rows), Decimal(0))


def fill_apply_progress(*, account_id: int, view: BrokerOrderStatus, source: str = Source.BROKER) -> Deal | None:
    """Book what one broker order executed beyond what its deals hold.
    Returns the new deal, or None when the view reports nothing new (or
    names no order of ours)."""
    if not view.broker_order_id or view.filled_qty <= 0:
        return None
    cumulative = Decimal(view.filled_qty)
    # Counted and booked under the account lock: two reports of different
    # progress (a notice at 1, the query at 2) must not both book from 0.
    with AccountTx(account_id):
        order = Order.objects.filter(account_id=account_id, broker_order_id=view.broker_order_id).first()
        if order is None:
            return None
        booked_qty, booked_amount = _booked(account_id, view.broker_order_id)
        qty = cumulative - booked_qty
        if qty <= 0:
            return None
        price = None
        if view.filled_amount is not None and view.filled_amount > 0:
            price = (Decimal(view.filled_amount) - booked_amount) / qty
        if (price is None or price <= 0) and view.avg_fill_price:
            price = Decimal(view.avg_fill_price)
        if price is None or price <= 0:
            logger.error("order %s: progress to %s without a price; not booked", order.pk, cumulative)
            return None
        fill = Fill(
            broker_trade_id=progress_trade_id(view.broker_order_id, cumulative),
            broker_order_id=view.broker_order_id,
            client_order_id=None,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price.quantize(PRICE_PLACES),
            executed_at=view.updated_at,
            raw={"cumulative_qty": str(cumulative), "cumulative_amount": str(view.filled_amount or "")},
        )
        return fill_apply(account_id=account_id, fill=fill, source=source)


def fills_apply_progress(account_id: int, views: list[BrokerOrderStatus], *, source: str = Source.BROKER) -> list[Deal]:
    """Book each order's new progress once (see the module docstring)."""
    booked = []
    for view in views:
        deal = fill_apply_progress(account_id=account_id, view=view, source=source)
        if deal is not None:
            booked.append(deal)
    return booked


def broker_reports_cumulative(account_id: int) -> bool:
    """Whether the account's broker reports fills as per-order progress."""
    account = BrokerAccount.objects.filter(pk=account_id).first()
    if account is None:
        return False
    try:
        return bool(broker_for(account).capabilities.cumulative_fills)
    except Exception:  # an adapter that cannot be built reports nothing cumulative
        logger.warning("account %s: broker not built; its updates book no progress", account_id)
        return False


# A fill notice can outrun the answer to the order it fills: its view names a
# broker order id no order of ours carries yet. It waits here (shared cache)
# until the answer links the id (``progress_pending_apply``); reconciliation
# books it anyway if the answer never comes.
PENDING_TTL = 300  # seconds


def _pending_key(account_id: int, broker_order_id: str) -> str:
    return f"oms:progress-pending:{account_id}:{hashlib.sha1(broker_order_id.encode()).hexdigest()}"  # noqa: S324 - a cache key


def order_updates_apply(account_id: int, updates: list[BrokerOrderStatus]) -> None:
    """The brokers' order-update sink: for a broker reporting cumulative
    fills, book each order's progress first (so a filled order is filled by
    its deals), then move each order towards the broker's status."""
    if not updates:
        return
    if broker_reports_cumulative(account_id):
        known = set(
            Order.objects.filter(
                account_id=account_id, broker_order_id__in=[u.broker_order_id for u in updates if u.broker_order_id]
            ).values_list("broker_order_id", flat=True)
        )
        for update in updates:
            if update.broker_order_id and update.broker_order_id not in known:
                cache.set(_pending_key(account_id, update.broker_order_id), update, PENDING_TTL)
        fills_apply_progress(account_id, [u for u in updates if u.broker_order_id in known])
    for update in updates:
        order_apply_broker_status(account_id=account_id, status=update)


def progress_pending_apply(*, account_id: int, broker_order_id: str) -> None:
    """Apply an update that arrived before its order was linked to
    ``broker_order_id`` (called once the broker's answer linked it)."""
    if not broker_order_id:
        return
    key = _pending_key(account_id, broker_order_id)
    update = cache.get(key)
    if update is None:
        return
    cache.delete(key)
    order_updates_apply(account_id, [update])
