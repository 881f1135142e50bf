"""A scriptable in-process broker for OMS tests (the OMS sees only the protocol).

``FakeVenue`` holds the venue's state and the knobs a test turns; each
``broker(account)`` call (the registry factory) answers through a
``FakeBroker`` over it. Its capabilities are what it really does (the Broker
contract suite, tests/test_broker_contract.py, checks them).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from brokers.base import (
    ALL_ORDER_TYPES,
    ALL_TIMES_IN_FORCE,
    Balance,
    BrokerAuthExpired,
    BrokerPosition,
    BrokerRateLimited,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
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

CASH = Decimal("1000000")


@dataclass
class FakeVenue:
    """Behaviour knobs: what the next place_order does, and what the broker takes."""

    # ack: every order rests (new) | fill: every order fills at once |
    # match: a venue: market and marketable limit orders fill at fill_price, the
    #   rest rest, an IOC remainder is canceled |
    # reject | timeout | lose (executes, then times out) |
    # unavailable | auth_expired | rate_limited (nothing reaches the venue)
    mode: str = "ack"
    orders: dict[str, OrderStatus] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    placed: list[OrderRequest] = field(default_factory=list)
    fill_price: Decimal = Decimal("100")
    account_id: int = 0
    supports_modify: bool = True
    funds: Funds | None = None  # what funds() answers (default: 1,000,000 USD)
    order_types: frozenset[str] = ALL_ORDER_TYPES
    times_in_force: frozenset[str] = ALL_TIMES_IN_FORCE
    # A scripted venue trades whatever the test names (like paper); False:
    # only its account kind's venues (marketdata.venues), as a real broker.
    any_instrument: bool = True

    def broker(self, account):  # the registry factory
        self.account_id = account.pk
        return FakeBroker(self)


class FakeBroker:
    def __init__(self, venue: FakeVenue) -> None:
        self.venue = venue
        self.capabilities = Capabilities(
            supports_modify=venue.supports_modify,
            supports_client_order_id=True,
            order_types=venue.order_types,
            times_in_force=venue.times_in_force,
            any_instrument=venue.any_instrument,
        )

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
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
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

    def _marketable(self, request: OrderRequest) -> bool:
        if request.order_type == "market":
            return True
        if request.order_type != "limit" or request.price is None:
            return False  # stops wait for a trigger this venue never sees
        price = self.venue.fill_price
        return request.price >= price if request.side == "buy" else request.price <= price

    def place_order(self, request: OrderRequest) -> OrderAck:
        self.venue.placed.append(request)
        if request.order_type not in self.capabilities.order_types or request.time_in_force not in self.capabilities.times_in_force:
            raise BrokerRejected(f"{request.order_type}/{request.time_in_force} orders are not taken here (fake).")
        mode = self.venue.mode
        if mode == "reject":
            raise BrokerRejected("Insufficient funds (fake).")
        if mode == "timeout":
            raise BrokerTimeout("No answer (fake).")
        if mode == "unavailable":
            raise BrokerUnavailable("Connection refused (fake).")
        if mode == "auth_expired":
            raise BrokerAuthExpired("Token expired (fake).")
        if mode == "rate_limited":
            raise BrokerRateLimited("Too many requests (fake).", retry_after=1.0)
        if mode in ("fill", "lose") or (mode == "match" and self._marketable(request)):
            if mode == "match":
                request = OrderRequest(**{**request.__dict__, "price": None})  # fills at the venue's price
            broker_id, fills = self.execute(request)
            if mode == "lose":
                raise BrokerTimeout("Executed, but the answer was lost (fake).")
            deliver_fills(self.venue.account_id, fills)
            return OrderAck(broker_order_id=broker_id, status="filled", filled_qty=request.qty)
        broker_id = f"B{next(_ids)}"
        status = "canceled" if mode == "match" and request.time_in_force == "ioc" else "new"
        self.venue.orders[request.client_order_id] = self._status(request, broker_id, status)
        return OrderAck(broker_order_id=broker_id, status=status)

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        for coid, status in self.venue.orders.items():
            if status.broker_order_id == broker_order_id:
                if status.status == "filled":
                    raise BrokerRejected("Already filled (fake).")
                self.venue.orders[coid] = OrderStatus(**{**status.__dict__, "status": "canceled"})
                return OrderAck(broker_order_id=broker_order_id, status="canceled")
        raise BrokerRejected("No such order (fake).")

    def modify_order(self, *, broker_order_id, symbol, qty, price, stop_price) -> OrderAck:
        """Applies the change at the venue (a working order, not below its filled qty)."""
        if not self.capabilities.supports_modify:
            raise BrokerRejected("Orders cannot be changed here (fake).")
        for coid, status in self.venue.orders.items():
            if status.broker_order_id != broker_order_id:
                continue
            if status.status not in ("new", "partially_filled"):
                raise BrokerRejected(f"Order is {status.status} (fake).")
            new_qty = qty if qty is not None else status.qty
            if new_qty <= status.filled_qty:
                raise BrokerRejected("Below the filled quantity (fake).")
            changed = {
                **status.__dict__,
                "qty": new_qty,
                "price": price if price is not None else status.price,
                "stop_price": stop_price if stop_price is not None else status.stop_price,
                "updated_at": datetime.now(UTC),
            }
            self.venue.orders[coid] = OrderStatus(**changed)
            return OrderAck(broker_order_id=broker_order_id, status=status.status)
        raise BrokerRejected("No such order (fake).")

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
        """Net per symbol from the venue's fills, at average cost."""
        books: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed qty, cost of it)
        for fill in self.venue.fills:
            qty, cost = books.get(fill.symbol, (Decimal(0), Decimal(0)))
            signed = fill.qty if fill.side == "buy" else -fill.qty
            if qty == 0 or (qty > 0) == (signed > 0):
                qty, cost = qty + signed, cost + signed * fill.price
            else:
                remaining = qty + signed
                still_same_side = remaining == 0 or (remaining > 0) == (qty > 0)
                cost = cost * remaining / qty if still_same_side else remaining * fill.price  # a flip opens at the fill's price
                qty = remaining
            books[fill.symbol] = (qty, cost)
        return [BrokerPosition(symbol=s, qty=q, avg_price=c / q) for s, (q, c) in sorted(books.items()) if q != 0]

    def holdings(self) -> list[Holding]:
        return []

    def funds(self) -> Funds:
        if self.venue.funds is not None:
            return self.venue.funds
        return Funds(
            currency="USD",
            cash=CASH,
            margin_used=Decimal(0),
            margin_available=CASH,
            equity=CASH,
            balances=(Balance(currency="USD", cash=CASH, available=CASH),),
            buying_power=CASH,
            rates={"USD": Decimal(1)},
        )
