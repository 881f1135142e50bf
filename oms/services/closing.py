"""Closing positions with orders: ``close_position`` and ``flatten_all``.

(Internal bookings that close without an order, ``close_by`` and
``reassign``, live with the position projection in ``positions``.)
"""

from __future__ import annotations

from accounts.models import User
from brokers.models import BrokerAccount
from marketdata.quotes import quote_is_stale, quotes_get
from oms.errors import Conflict, InvalidInput, NotFound, TradingDisabled
from oms.models import FINAL_STATUSES, Order, OrderType, Position, PositionSide, PositionStatus, Side
from oms.services.amend import orders_cancel_all
from oms.services.enqueue import enqueue_submit
from oms.services.positions import working_reduce_qty
from oms.services.send import account_check_trading, order_create
from oms.services.tx import AccountTx
from oms.specs import OrderSpec, broker_capabilities, default_time_in_force, instrument_for_order, new_client_order_id


def position_close(*, account: BrokerAccount, position_id: int, actor: User | None, source: str) -> Order:
    """``close_position``: a reduce-only market order for the remaining qty.
    One close at a time per position (a second one answers 409)."""
    with AccountTx(account.pk) as tx:
        position = Position.objects.filter(account=tx.account, pk=position_id).first()
        if position is None:
            raise NotFound("No such position.")
        if position.status != PositionStatus.OPEN:
            raise Conflict("The position is closed.", code="position_closed")
        if position.closing_order_id is not None:
            working = Order.objects.filter(pk=position.closing_order_id).values_list("status", flat=True).first()
            if working is not None and working not in FINAL_STATUSES:
                raise Conflict("A close of this position is already working.", code="close_pending")
        account_check_trading(tx.account)
        # Working reduce-only orders of the position already cover part of it.
        remaining = position.qty - working_reduce_qty(position)
        if remaining <= 0:
            raise Conflict("Working reduce-only orders already close this position.", code="close_pending")
        spec = OrderSpec(
            symbol=position.symbol,
            side=Side.SELL if position.side == PositionSide.LONG else Side.BUY,
            order_type=OrderType.MARKET,
            qty=remaining,
            price=None,
            stop_price=None,
            time_in_force=default_time_in_force(broker_capabilities(tx.account)),
            strategy_id=position.strategy_id,
            position_id=position.pk,
            reduce_only=True,
            client_order_id=new_client_order_id(),
            instrument=instrument_for_order(position.symbol),
            client_named_id=False,
        )
        order = order_create(tx, spec, actor=actor, source=source)
        position.closing_order = order
        position.save(update_fields=["closing_order", "updated_at"])
        ids = [order.pk]
        tx.on_commit(lambda: enqueue_submit(ids))
    return order


def positions_flatten_all(*, account: BrokerAccount, actor: User | None, source: str) -> list[Order]:
    """``flatten_all``: cancel working orders, then close every open position.

    Closing sends new market orders, so flatten first checks that every close
    is possible (the account takes orders, each open position's symbol has a
    fresh quote) and otherwise refuses as a whole, before anything is
    canceled (cancel_all stays allowed)."""
    fresh = BrokerAccount.objects.get(pk=account.pk)
    if not fresh.trading_enabled:
        raise TradingDisabled("Trading is disabled on this account by staff: flatten needs new orders. cancel_all is still allowed.")
    account_check_trading(fresh)
    symbols = sorted(set(Position.objects.filter(account=account, status=PositionStatus.OPEN).values_list("symbol", flat=True)))
    quotes = quotes_get(symbols)
    unquoted = [symbol for symbol in symbols if symbol not in quotes or quote_is_stale(quotes[symbol])]
    if unquoted:
        raise Conflict(
            f"No fresh quote for {', '.join(unquoted)}: those positions cannot be closed now, so nothing was canceled or sent.",
            code="flatten_not_possible",
            fields={"symbols": unquoted},
        )
    orders_cancel_all(account=account, actor=actor, source=source)
    closes = []
    for position_id in Position.objects.filter(account=account, status=PositionStatus.OPEN).values_list("pk", flat=True):
        try:
            closes.append(position_close(account=account, position_id=position_id, actor=actor, source=source))
        except (Conflict, InvalidInput):
            continue  # closing already, or working reduce orders cover it
    return closes
