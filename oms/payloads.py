"""Wire forms of OMS objects, shared by the REST API and the streams."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.decimals import decimal_str
from oms.models import Deal, Order, Position

_s = decimal_str


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
        "created_at": _t(order.created_at),
        "updated_at": _t(order.updated_at),
    }


def position_payload(position: Position) -> dict[str, Any]:
    return {
        "id": position.pk,
        "account_id": position.account_id,
        "symbol": position.symbol,
        "strategy_id": position.strategy_id,
        "side": position.side,
        "qty": _s(position.qty),
        "avg_price": _s(position.avg_price),
        "multiplier": _s(position.multiplier),
        "realized_pnl": _s(position.realized_pnl),
        "unrealized_pnl": _s(position.unrealized_pnl),
        "last_price": _s(position.last_price),
        "status": position.status,
        "opened_at": _t(position.opened_at),
        "closed_at": _t(position.closed_at),
        "updated_at": _t(position.updated_at),
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
        "kind": deal.kind,
        "broker_trade_id": deal.broker_trade_id,
        "executed_at": _t(deal.executed_at),
    }
