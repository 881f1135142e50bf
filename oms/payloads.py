"""Wire forms of OMS objects, shared by the REST API and the streams."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from core.decimals import decimal_str
from core.money import money_quantize
from oms.models import Deal, Order, Position

_s = decimal_str


def _money(value: Decimal | None, currency: str) -> str | None:
    return None if value is None else _s(money_quantize(Decimal(value), currency))


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def order_payload(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "broker_order_id": order.broker_order_id or None,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "qty": _s(order.qty),
        "price": _s(order.price),
        "stop_price": _s(order.stop_price),
        "time_in_force": order.time_in_force,
        "status": order.status,
        "status_message": order.status_message,
        "filled_qty": _s(order.filled_qty),
        "avg_fill_price": _s(order.avg_fill_price),
        "strategy_id": order.strategy_id,
        "position_id": order.position_id,
        "reduce_only": order.reduce_only,
        "source": order.source,
        # Broker-specific fields the order was sent with (Kite: product, variety).
        "broker_fields": dict(order.broker_fields or {}),
        # When the sender claimed it for the broker; null while it waits to be sent.
        "sent_at": _t(order.sent_at),
        "created_at": _t(order.created_at),
        "updated_at": _t(order.updated_at),
    }


def position_payload(position: Position) -> dict[str, Any]:
    """Money (P&L, fees) in the position's currency, rounded to its minor
    units; prices and quantities as stored."""
    currency = position.currency
    return {
        "id": position.pk,
        "account_id": position.account_id,
        "symbol": position.symbol,
        "strategy_id": position.strategy_id,
        "side": position.side,
        "qty": _s(position.qty),
        "avg_price": _s(position.avg_price),
        "multiplier": _s(position.multiplier),
        "realized_pnl": _money(position.realized_pnl, currency),
        "unrealized_pnl": _money(position.unrealized_pnl, currency),
        "last_price": _s(position.last_price),
        "status": position.status,
        "opened_at": _t(position.opened_at),
        "closed_at": _t(position.closed_at),
        "updated_at": _t(position.updated_at),
        "currency": currency,
        "max_qty": _s(position.max_qty),
        "avg_open_price": _s(position.avg_open_price),
        "avg_close_price": _s(position.avg_close_price),
        "fees": _money(position.fees, currency),
        "base_currency": position.base_currency,
        "rate": _s(position.rate),
        "realized_pnl_base": _money(position.realized_pnl_base, position.base_currency),
        "unrealized_pnl_base": _money(position.unrealized_pnl_base, position.base_currency),
    }


def deal_payload(deal: Deal) -> dict[str, Any]:
    return {
        "id": deal.pk,
        "account_id": deal.account_id,
        "order_id": deal.order_id,
        "position_id": deal.position_id,
        "strategy_id": deal.strategy_id,
        "symbol": deal.symbol,
        "side": deal.side,
        "qty": _s(deal.qty),
        "price": _s(deal.price),
        "fee": _s(deal.fee),
        "fee_currency": deal.fee_currency,
        "currency": deal.currency,
        "rate": _s(deal.rate),
        "realized_pnl": _money(deal.realized_pnl, deal.currency),
        "base_currency": deal.base_currency,
        "realized_pnl_base": _money(deal.realized_pnl_base, deal.base_currency),
        "kind": deal.kind,
        "broker_trade_id": deal.broker_trade_id,
        "executed_at": _t(deal.executed_at),
    }
