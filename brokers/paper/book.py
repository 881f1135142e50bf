"""Plain data of the paper venue's book: configuration, instrument specs,
orders, positions, the per-symbol market state, and the events the matching
core emits. Pure Python, no Django: the engine and the benchmark use it alone.

Every amount the engine keeps is quantized to ``SCALE`` (10 decimal places,
the scale of the paper models' decimal columns) at the moment it is computed,
so a book saved to the database and loaded again is bit-for-bit the book that
was saved, and a restarted venue matches exactly as the running one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

SCALE = Decimal("0.0000000001")
ZERO = Decimal(0)
BPS = Decimal(10_000)

BUY, SELL = "buy", "sell"
MARKET, LIMIT, STOP, STOP_LIMIT = "market", "limit", "stop", "stop_limit"
DAY, GTC, IOC = "day", "gtc", "ioc"
NEW, PARTIALLY_FILLED, FILLED = "new", "partially_filled", "filled"
CANCELED, REJECTED, EXPIRED = "canceled", "rejected", "expired"

SIDES = frozenset({BUY, SELL})
ORDER_TYPES = frozenset({MARKET, LIMIT, STOP, STOP_LIMIT})
TIMES_IN_FORCE = frozenset({DAY, GTC, IOC})
WORKING = frozenset({NEW, PARTIALLY_FILLED})
FINAL = frozenset({FILLED, CANCELED, REJECTED, EXPIRED})

# Ledger entry kinds: every change of a currency's balance is one entry.
DEPOSIT, WITHDRAWAL, TRADE, FEE, FX_CONVERSION, REALIZED_PNL = "deposit", "withdrawal", "trade", "fee", "fx_conversion", "realized_pnl"
ENTRY_KINDS = (DEPOSIT, WITHDRAWAL, TRADE, FEE, FX_CONVERSION, REALIZED_PNL)
# What the venue does with an order in a currency the account lacks:
# convert the shortfall from the base currency, or refuse the order.
FX_CONVERT, FX_REFUSE = "convert", "refuse"
FX_MODES = (FX_CONVERT, FX_REFUSE)

# Margin products: a position moves cash only through realized P&L and fees.
# Everything else is a cash product: buying spends the notional, selling
# returns it (see engine.py for the whole cash/margin model).
MARGIN_PRODUCT_TYPES = frozenset({"future"})


def q(value: Decimal) -> Decimal:
    """``value`` at the book's scale (banker's rounding, as Decimal's default)."""
    return value.quantize(SCALE)


class OrderRejected(Exception):
    """The venue refuses a cancel or a modification (unknown or final order,
    bad new values). New orders are not refused by raising: they are recorded
    with status ``rejected`` and the reason, as a real venue does."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class EngineConfig:
    fee_bps: Decimal = Decimal(1)
    min_fee: Decimal = ZERO
    slippage_bps: Decimal = Decimal(2)
    stale_seconds: float = 10.0
    margin_rates: dict[str, Decimal] = field(default_factory=dict)
    default_margin_rate: Decimal = Decimal(1)
    fx_mode: str = FX_CONVERT

    def margin_rate(self, instrument_type: str) -> Decimal:
        return self.margin_rates.get(instrument_type, self.default_margin_rate)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    symbol: str
    type: str = "stock"
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal(1)
    multiplier: Decimal = Decimal(1)
    session: str = "24x7"
    timezone: str = "UTC"
    currency: str = "USD"  # prices, fees and P&L are in it
    venue: str = "SIM"  # its tick rule (marketdata.venues.tick_size_for)

    @property
    def is_margin_product(self) -> bool:
        return self.type in MARGIN_PRODUCT_TYPES


@dataclass(slots=True)
class Order:
    """One order at the venue. ``no`` is the account-wide sequence number
    (time priority); ``version`` invalidates stale book entries after a change
    and is not persisted."""

    no: int
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = GTC
    reduce_only: bool = False
    position_ref: str | None = None
    status: str = NEW
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    triggered: bool = False
    reserved: Decimal = ZERO
    expires_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    message: str = ""
    version: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_working(self) -> bool:
        return self.status in WORKING

    @property
    def is_stop(self) -> bool:
        return self.order_type == STOP or self.order_type == STOP_LIMIT

    @property
    def acts_as_market(self) -> bool:
        return self.order_type == MARKET or (self.order_type == STOP and self.triggered)

    @property
    def acts_as_limit(self) -> bool:
        return self.order_type == LIMIT or (self.order_type == STOP_LIMIT and self.triggered)


@dataclass(slots=True)
class Position:
    symbol: str
    qty: Decimal = ZERO  # signed: long > 0, short < 0
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO


@dataclass(slots=True)
class MarketState:
    """The last quote the book saw for a symbol and how much of its size the
    book's orders have taken already. The same quote seen again (the listener
    running twice, or a submit and then the listener) keeps what is left, so
    a quote's size is never filled twice. ``None`` sizes mean the feed gives no
    size: the whole order may fill."""

    time: float
    last: Decimal
    bid: Decimal | None
    ask: Decimal | None
    bid_size: Decimal | None
    ask_size: Decimal | None
    bid_left: Decimal | None
    ask_left: Decimal | None

    def same_quote(
        self, time: float, last: Decimal, bid: Decimal | None, ask: Decimal | None, bid_size: Decimal | None, ask_size: Decimal | None
    ) -> bool:
        return (
            self.time == time
            and self.last == last
            and self.bid == bid
            and self.ask == ask
            and self.bid_size == bid_size
            and self.ask_size == ask_size
        )


@dataclass(frozen=True, slots=True)
class FillEvent:
    trade_id: str
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    time: float
    fee_currency: str = ""  # the instrument's currency


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One change of one currency's balance. ``rate``: the value of one unit
    of ``currency`` in the account's base currency when it was booked (None
    when no rate was known); ``trade_id``: the fill it belongs to."""

    currency: str
    amount: Decimal
    kind: str
    rate: Decimal | None
    time: float
    trade_id: str = ""
    note: str = ""


Cause = Literal["request", "fill", "venue"]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """An order's state after a change. ``cause``: ``request`` answers a
    submit/cancel/modify; ``fill`` follows fills on a quote; ``venue`` is a
    change the venue made on its own (expiry, IOC or reduce-only remainder
    canceled) that nobody asked for and must be reported."""

    broker_order_id: str
    client_order_id: str
    symbol: str
    status: str
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    message: str
    time: float
    cause: Cause


Event = FillEvent | StatusEvent


@dataclass(frozen=True, slots=True)
class FundsView:
    """The account's money; every total in the base currency, converted at ``rates``
    (currencies without a rate count for nothing and are named in ``unvalued``)."""

    cash: Decimal
    equity: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    position_margin: Decimal
    order_margin: Decimal
    buying_power: Decimal
    fees_paid: Decimal
    base_currency: str = "USD"
    balances: dict[str, Decimal] = field(default_factory=dict)
    rates: dict[str, Decimal] = field(default_factory=dict)
    unvalued: tuple[str, ...] = ()

    @property
    def margin_used(self) -> Decimal:
        return self.position_margin + self.order_margin


@dataclass(slots=True)
class Changes:
    """What changed since the last ``take_changes()``: the storage layer
    writes exactly these rows."""

    orders: list[Order]
    fills: list[FillEvent]
    positions: list[Position]
    markets: dict[str, MarketState]
    entries: list[LedgerEntry] = field(default_factory=list)
    balances: dict[str, Decimal] = field(default_factory=dict)  # currency -> its new balance
