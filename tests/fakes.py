"""A scriptable in-process broker for OMS tests (the OMS sees only the protocol)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from brokers.base import (
    BrokerPosition,
    BrokerRejected,
    BrokerTimeout,
    Capabilities,
    Fill,
    Funds,
    Holding,
    OrderAck,
    OrderRequest,
    OrderStatus,
)
from brokers.registry import deliver_fills

_ids = itertools.count(1)


@dataclass
class FakeVenue:
    """Behaviour knobs: what the next place_order does."""

    mode: str = "ack"  # ack | fill | reject | timeout | lose (executes, then times out)
    orders: dict[str, OrderStatus] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    placed: list[OrderRequest] = field(default_factory=list)
    fill_price: Decimal = Decimal("100")
    account_id: int = 0
    supports_modify: bool = True
    funds: Funds | None = None  # what funds() answers (default: 1,000,000 USD)

    def broker(self, account):  # the registry factory
        self.account_id = account.pk
        return FakeBroker(self)


class FakeBroker:
    def __init__(self, venue: FakeVenue) -> None:
        self.venue = venue
        self.capabilities = Capabilities(supports_modify=venue.supports_modify, supports_client_order_id=True)

    def _status(self, request: OrderRequest, broker_id: str, status: str, filled: Decimal = Decimal(0)) -> OrderStatus:
        return OrderStatus(
            broker_order_id=broker_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            qty=request.qty,
            status=status,
            filled_qty=filled,
            price=request.price,
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )

    def execute(self, request: OrderRequest) -> tuple[str, list[Fill]]:
        broker_id = f"B{next(_ids)}"
        fill = Fill(
            broker_trade_id=f"T{next(_ids)}",
            broker_order_id=broker_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            qty=request.qty,
            price=request.price or self.venue.fill_price,
            executed_at=datetime.now(UTC),
        )
        self.venue.fills.append(fill)
        self.venue.orders[request.client_order_id] = self._status(request, broker_id, "filled", request.qty)
        return broker_id, [fill]

    def place_order(self, request: OrderRequest) -> OrderAck:
        self.venue.placed.append(request)
        mode = self.venue.mode
        if mode == "reject":
            raise BrokerRejected("Insufficient funds (fake).")
        if mode == "timeout":
            raise BrokerTimeout("No answer (fake).")
        if mode in ("fill", "lose"):
            broker_id, fills = self.execute(request)
            if mode == "lose":
                raise BrokerTimeout("Executed, but the answer was lost (fake).")
            deliver_fills(self.venue.account_id, fills)
            return OrderAck(broker_order_id=broker_id, status="filled", filled_qty=request.qty)
        broker_id = f"B{next(_ids)}"
        self.venue.orders[request.client_order_id] = self._status(request, broker_id, "new")
        return OrderAck(broker_order_id=broker_id, status="new")

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        for coid, status in self.venue.orders.items():
            if status.broker_order_id == broker_order_id:
                if status.status == "filled":
                    raise BrokerRejected("Already filled (fake).")
                self.venue.orders[coid] = OrderStatus(**{**status.__dict__, "status": "canceled"})
                return OrderAck(broker_order_id=broker_order_id, status="canceled")
        raise BrokerRejected("No such order (fake).")

    def modify_order(self, *, broker_order_id, symbol, qty, price, stop_price) -> OrderAck:
        return OrderAck(broker_order_id=broker_order_id, status="new")

    def get_order(self, *, client_order_id=None, broker_order_id=None, symbol=None):
        if client_order_id in self.venue.orders:
            return self.venue.orders[client_order_id]
        for status in self.venue.orders.values():
            if broker_order_id and status.broker_order_id == broker_order_id:
                return status
        return None

    def open_orders(self):
        return [s for s in self.venue.orders.values() if s.status in ("new", "partially_filled")]

    def orders_since(self, since):
        return list(self.venue.orders.values())

    def fills_since(self, since):
        return list(self.venue.fills)

    def positions(self) -> list[BrokerPosition]:
        return []

    def holdings(self) -> list[Holding]:
        return []

    def funds(self) -> Funds:
        if self.venue.funds is not None:
            return self.venue.funds
        return Funds(
            currency="USD", cash=Decimal("1000000"), margin_used=Decimal(0), margin_available=Decimal("1000000"), equity=Decimal("1000000")
        )
