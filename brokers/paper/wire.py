"""The paper venue's orders and fills as Broker-protocol types."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.base import Fill, OrderAck, OrderStatus
from brokers.paper.book import FillEvent, Order
from brokers.paper.models import PaperFill


def plain(value: Decimal) -> Decimal:
    """``100.0300020000`` -> ``100.030002``, ``0E-10`` -> ``0`` (never ``1E+2``):
    the book's fixed scale is storage detail, not what a trader should read."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _maybe(value: Decimal | None) -> Decimal | None:
    return None if value is None else plain(value)


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _raw(o: Order) -> dict[str, Any]:
    # JSON-safe: the OMS stores it as the event payload.
    return {
        "venue": "paper",
        "time_in_force": o.time_in_force,
        "reduce_only": o.reduce_only,
        "triggered": o.triggered,
        "position_ref": o.position_ref,
        "expires_at": _time(o.expires_at).isoformat() if o.expires_at is not None else None,
    }


def order_status(o: Order) -> OrderStatus:
    return OrderStatus(
        broker_order_id=o.broker_order_id,
        client_order_id=o.client_order_id or None,
        symbol=o.symbol,
        side=o.side,
        order_type=o.order_type,
        qty=plain(o.qty),
        status=o.status,
        filled_qty=plain(o.filled_qty),
        avg_fill_price=_maybe(o.avg_fill_price),
        price=_maybe(o.price),
        stop_price=_maybe(o.stop_price),
        time_in_force=o.time_in_force,
        created_at=_time(o.created_at),
        updated_at=_time(o.updated_at),
        message=o.message,
        raw=_raw(o),
    )


def order_ack(o: Order) -> OrderAck:
    return OrderAck(
        broker_order_id=o.broker_order_id,
        status=o.status,
        filled_qty=plain(o.filled_qty),
        avg_fill_price=_maybe(o.avg_fill_price),
        message=o.message,
        raw=_raw(o),
    )


def fill_of_event(f: FillEvent) -> Fill:
    return Fill(
        broker_trade_id=f.trade_id,
        broker_order_id=f.broker_order_id,
        client_order_id=f.client_order_id or None,
        symbol=f.symbol,
        side=f.side,
        qty=plain(f.qty),
        price=plain(f.price),
        fee=plain(f.fee),
        executed_at=_time(f.time),
        raw={"venue": "paper"},
        fee_currency=f.fee_currency or None,
    )


def fill_of_row(row: PaperFill) -> Fill:
    return Fill(
        broker_trade_id=row.trade_id,
        broker_order_id=row.broker_order_id,
        client_order_id=row.client_order_id or None,
        symbol=row.symbol,
        side=row.side,
        qty=plain(row.qty),
        price=plain(row.price),
        fee=plain(row.fee),
        executed_at=row.executed_at,
        raw={"venue": "paper"},
        fee_currency=row.fee_currency or None,
    )
