"""Helpers shared by the OMS tests: accounts, instruments, quotes, and a
FakeVenue registered as the adapter of one broker kind for one test.

The OMS sees the venue only through the Broker protocol (``tests.fakes``).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from brokers import registry
from brokers.base import Fill, OrderRequest, OrderStatus
from brokers.models import REQUIRED_CREDENTIALS
from brokers.services import broker_account_create
from marketdata.quotes import quote_store
from marketdata.services import instrument_upsert
from marketdata.types import Quote
from oms.models import Deal, DealKind, Order, Position, PositionSide, PositionStatus, Side
from tests.fakes import FakeBroker, FakeVenue

NO_LIMITS = {
    "MAX_ORDER_QTY": "0",
    "MAX_ORDER_NOTIONAL": "0",
    "ALLOWED_SYMBOLS": [],
    "MAX_ORDERS_PER_SECOND": 0,
    "CHECK_BUYING_POWER": False,
}


def make_instruments() -> None:
    instrument_upsert(symbol="AAA", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1), multiplier=Decimal(1))
    instrument_upsert(symbol="BBB", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1), multiplier=Decimal(1))
    instrument_upsert(symbol="FUT", type="future", tick_size=Decimal("0.25"), lot_size=Decimal(1), multiplier=Decimal(50))


def oms_setup(settings: Any) -> None:
    """What an OMS test starts from: quick password hashing (its users are
    created per test), no risk limits, the instruments AAA, BBB and FUT."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OMS_RISK = dict(NO_LIMITS)
    make_instruments()


def set_quote(symbol: str, last: str, spread: str = "0.02") -> None:
    price = Decimal(last)
    half = Decimal(spread) / 2
    quote_store(Quote(symbol=symbol, time=time.time(), last=price, bid=price - half, ask=price + half))


def make_account(owner: Any, *, kind: str = "kis", position_mode: str = "netting", label: str = "test") -> Any:
    """A configured account of ``kind``: every required credential set (the venue ignores them),
    in USD as the fake venue's funds are (a kind's own default would be KRW, INR...)."""
    credentials = {name: f"test-{name}" for name in REQUIRED_CREDENTIALS[kind]}
    return broker_account_create(
        owner=owner, kind=kind, label=label, position_mode=position_mode, base_currency="USD", credentials=credentials
    )


@contextlib.contextmanager
def venue_registered(venue: FakeVenue, kind: str = "kis") -> Iterator[FakeVenue]:
    """Serve ``kind`` accounts from ``venue`` for the block, then put back
    whatever adapter was registered before."""
    with broker_registered(kind, venue.broker):
        yield venue


@contextlib.contextmanager
def broker_registered(kind: str, factory: registry.BrokerFactory) -> Iterator[None]:
    """Serve ``kind`` accounts from ``factory`` for the block, then put back
    whatever adapter was registered before."""
    saved = registry.broker_factory(kind)
    registry.register_broker(kind, factory)
    try:
        yield
    finally:
        if saved is None:
            registry.unregister_broker(kind)
        else:
            registry.register_broker(kind, saved)


@contextlib.contextmanager
def broker_unregistered(kind: str) -> Iterator[None]:
    """Serve ``kind`` accounts from no adapter for the block (every kind has
    one now): no broker factory and no login check; then put both back."""
    saved = registry.broker_factory(kind)
    saved_check = registry.login_check(kind)
    registry.unregister_broker(kind)
    registry.unregister_login_check(kind)
    try:
        yield
    finally:
        if saved is not None:
            registry.register_broker(kind, saved)
        if saved_check is not None:
            registry.register_login_check(kind, saved_check)


@contextlib.contextmanager
def tasks_in_process() -> Iterator[None]:
    """Run Celery tasks in this process, as the embedded default does, in the
    production mode too: these tests drive the services; one test drives the
    real worker (tests/test_oms_services.py)."""
    from config.celery import app

    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


def order_spec(**payload: Any) -> Any:
    """A send_order payload parsed by its spec, as every entry point does."""
    from oms.specs import SendOrderPayload, spec_parse

    return spec_parse(SendOrderPayload, payload)


def change_spec(order: Any, **payload: Any) -> Any:
    """A change_order payload for ``order``, parsed by its spec."""
    from oms.specs import OrderChangeBody, spec_parse

    return spec_parse(OrderChangeBody, payload, context={"order_id": order.pk})


def send(account: Any, *, actor: Any = None, source: str = "rest", **payload: Any) -> Order:
    from oms.services.send import order_send

    payload.setdefault("symbol", "AAA")
    payload.setdefault("side", "buy")
    payload.setdefault("order_type", "market")
    payload.setdefault("qty", "1")
    order = order_send(account=account, actor=actor, source=source, spec=order_spec(**payload))
    order.refresh_from_db()
    return order


def placed_counts(venue: FakeVenue) -> Counter[str]:
    return Counter(request.client_order_id for request in venue.placed)


# --- driving the venue by hand (fills of resting orders, external orders) -----------------------

_trade_ids = iter(range(1, 10**9))


def venue_fill(venue: FakeVenue, client_order_id: str, qty: Decimal, price: Decimal | None = None, *, deliver: bool = True) -> Fill:
    """The venue fills ``qty`` of a resting order; ``deliver=False`` loses the
    delivery (only reconciliation's fills_since will find it)."""
    status = venue.orders[client_order_id]
    filled = status.filled_qty + qty
    assert filled <= status.qty, "the venue never overfills"
    fill = Fill(
        broker_trade_id=f"VT{next(_trade_ids)}",
        broker_order_id=status.broker_order_id,
        client_order_id=status.client_order_id,
        symbol=status.symbol,
        side=status.side,
        qty=qty,
        price=price if price is not None else (status.price or venue.fill_price),
        executed_at=datetime.now(UTC),
    )
    venue.fills.append(fill)
    venue.orders[client_order_id] = OrderStatus(
        **{**status.__dict__, "filled_qty": filled, "status": "filled" if filled == status.qty else "partially_filled"}
    )
    if deliver:
        registry.deliver_fills(venue.account_id, [fill])
    return fill


def venue_external_order(venue: FakeVenue, *, symbol: str = "AAA", side: str = "buy", qty: Decimal = Decimal(2), fill: bool = True) -> str:
    """An order placed at the broker by someone else (another app, the broker's HTS)."""
    request = OrderRequest(client_order_id=f"EXT{next(_trade_ids)}", symbol=symbol, side=side, order_type="market", qty=qty)
    broker = FakeBroker(venue)
    if fill:
        broker.execute(request)  # recorded at the venue, delivered to nobody
    else:
        status = broker._status(request, f"XB{next(_trade_ids)}", "new")
        venue.orders[request.client_order_id] = status
    return request.client_order_id


# --- invariants -------------------------------------------------------------------------------------


def signed(side: str, qty: Decimal) -> Decimal:
    return qty if side in (Side.BUY, PositionSide.LONG) else -qty


def deals_cash(account_id: int) -> Decimal:
    """Cash implied by the booked deals: what buying cost, what selling brought, minus fees."""
    total = Decimal(0)
    multipliers: dict[str, Decimal] = {}
    for side, qty, price, fee, symbol in Deal.objects.filter(account_id=account_id).values_list("side", "qty", "price", "fee", "symbol"):
        if symbol not in multipliers:
            multipliers[symbol] = Position.objects.filter(account_id=account_id, symbol=symbol).values_list("multiplier", flat=True).first()
        total -= signed(side, qty) * price * multipliers[symbol] + fee
    return total


def fills_cash(fills: list[Fill], multipliers: dict[str, Decimal]) -> Decimal:
    return sum((-(signed(f.side, f.qty) * f.price * multipliers[f.symbol]) - f.fee for f in fills), Decimal(0))


def position_matches_deals(position: Position) -> bool:
    total = Decimal(0)
    for side, qty in position.deals.values_list("side", "qty"):
        total += signed(side, qty)
    stored = position.qty if position.side == PositionSide.LONG else -position.qty
    return total == stored and (position.status == PositionStatus.OPEN) == (total != 0)


def trade_deal_count(account_id: int) -> int:
    return Deal.objects.filter(account_id=account_id, kind=DealKind.TRADE).count()


def traded_qty(order: Order) -> Decimal:
    return order.deals.aggregate(total=Sum("qty"))["total"] or Decimal(0)


# --- venue variants -------------------------------------------------------------------------------------


class NoClientIdBroker(FakeBroker):
    """A broker without client order ids: lookups by id only, lists without our ids."""

    def __init__(self, venue):
        super().__init__(venue)
        self.capabilities = replace(self.capabilities, supports_client_order_id=False)

    def _strip(self, status):
        return OrderStatus(**{**status.__dict__, "client_order_id": None})

    def get_order(self, *, client_order_id=None, broker_order_id=None, symbol=None):
        assert client_order_id is None, "never asked by client order id"
        found = super().get_order(broker_order_id=broker_order_id) if broker_order_id else None
        return self._strip(found) if found else None

    def orders_since(self, since):
        return [self._strip(s) for s in super().orders_since(since)]

    def open_orders(self):
        return [self._strip(s) for s in super().open_orders()]


class NoClientIdVenue(FakeVenue):
    def broker(self, account):
        self.account_id = account.pk
        return NoClientIdBroker(self)
