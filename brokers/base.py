"""The Broker protocol: what the OMS may ask of any broker, in plain data.

Adapters (paper, kis, ccxt, kite) turn their wire formats into these types.
The OMS depends on this module and the registry only, never on an adapter.
Errors say what is known about the order's fate:

* ``BrokerRejected``: the broker refused it; nothing happened (permanent).
* ``BrokerUnavailable``: the request surely did not reach the broker; it
  is safe to try again later.
* ``BrokerTimeout``: the request may have reached the broker; the order's
  state is unknown until someone asks the broker. Never send it again.
* ``BrokerAuthExpired``: the token is gone; refresh and retry.
* ``BrokerRateLimited``: too fast; retry after ``retry_after`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

# --- plain data -------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: str  # buy | sell
    order_type: str  # market | limit | stop | stop_limit
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = "gtc"  # day | gtc | ioc
    reduce_only: bool = False
    position_ref: str | None = None  # broker-side position of hedging accounts
    # Broker-specific fields (Kite: product, variety) named by the broker's
    # Capabilities.extra_order_fields; the OMS refuses any other before sending.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderAck:
    """The broker's answer to place/modify/cancel."""

    broker_order_id: str
    status: str  # one of the OMS order statuses
    filled_qty: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderStatus:
    """An order as the broker sees it (open orders, lookups, reconciliation)."""

    broker_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    status: str
    filled_qty: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = "gtc"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    # The cumulative executed amount (qty x price summed), where the broker
    # reports it: brokers whose fills carry no trade id (KIS) are booked from
    # the cumulative quantity and amount (see Capabilities.cumulative_fills).
    filled_amount: Decimal | None = None


@dataclass(frozen=True)
class Fill:
    broker_trade_id: str
    broker_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    executed_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # The currency the fee was charged in (exchanges charge in the base asset
    # or their own coin); None means the instrument's currency.
    fee_currency: str | None = None


@dataclass(frozen=True)
class BrokerPosition:
    symbol: str
    qty: Decimal  # signed: long > 0, short < 0
    avg_price: Decimal
    unrealized_pnl: Decimal | None = None


@dataclass(frozen=True)
class Holding:
    symbol: str
    qty: Decimal
    avg_price: Decimal | None  # None: the broker cannot tell what the holding cost (never 0)
    last_price: Decimal | None = None
    name: str = ""  # the broker's name of the instrument (KIS prdt_name), where it gives one
    # Where the broker reports them (Kite): P&L and today's change in the
    # holding's currency, and the part bought but not yet settled (T+1), included in qty.
    pnl: Decimal | None = None
    day_change: Decimal | None = None
    t1_qty: Decimal = Decimal(0)
    currency: str = ""


@dataclass(frozen=True)
class Balance:
    """One currency's line of a multi-currency cash ledger."""

    currency: str
    cash: Decimal  # the ledger balance in ``currency``
    available: Decimal | None = None  # free to trade, where the broker says


@dataclass(frozen=True)
class Funds:
    """An account's money: per-currency balances, and totals in the account's
    base currency (``currency``) converted at ``rates``.

    ``rates[c]`` is the value of one unit of currency ``c`` in the base
    currency (the base currency itself is 1). ``cash`` is the balances'
    total in the base currency; ``margin_available`` is what may still be
    committed (equity less margin in use); ``buying_power`` further deducts
    what working orders reserve, where the broker knows it."""

    currency: str
    cash: Decimal
    margin_used: Decimal
    margin_available: Decimal
    equity: Decimal
    balances: tuple[Balance, ...] = ()
    buying_power: Decimal | None = None
    rates: Mapping[str, Decimal] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # Open positions' unrealized P&L in the base currency, where the broker
    # reports it apart from cash (derivatives exchanges): equity = cash + it.
    unrealized_pnl: Decimal | None = None


ALL_ORDER_TYPES = frozenset({"market", "limit", "stop", "stop_limit"})
ALL_TIMES_IN_FORCE = frozenset({"day", "gtc", "ioc"})


@dataclass(frozen=True)
class Capabilities:
    """What a broker accepts, so the OMS refuses at once what it cannot take
    (KIS: no stop orders, day orders only; Kite: no gtc)."""

    supports_modify: bool = True
    supports_client_order_id: bool = True
    supports_reduce_only: bool = False
    hedging: bool = False
    order_types: frozenset[str] = ALL_ORDER_TYPES
    times_in_force: frozenset[str] = ALL_TIMES_IN_FORCE
    # Broker-specific optional send_order fields this broker takes (Kite:
    # ``product``, ``variety``); any other broker refuses them.
    extra_order_fields: frozenset[str] = frozenset()
    # Fills carry no trade id (KIS): the OMS books the difference between the
    # order's cumulative filled quantity at the broker and what it has booked,
    # keyed (broker order id, cumulative quantity), whichever source reports
    # it first; ``fills_since`` returns nothing and orders carry the progress.
    cumulative_fills: bool = False
    # The venue trades any instrument that has quotes, on their prices (the
    # paper venue). Otherwise an account trades only its broker's venues'
    # instruments (marketdata.venues: KRX for KIS, NSE/BSE/NFO for Kite, the
    # exchange id for CCXT), checked by the OMS before anything is written.
    any_instrument: bool = False
    # A client order id the broker carries must fully match this (Kite's tag:
    # 1-20 letters and digits); "" takes the OMS's one rule. A generated id
    # always fits (20 letters and digits); a caller's that does not is refused.
    client_order_id_pattern: str = ""
    # Another broker's field names the order spec also takes (``"kite"``:
    # tradingsymbol, exchange, transaction_type, quantity, trigger_price,
    # validity, tag and Kite's order types), translated to ours.
    order_dialect: str = ""


# --- errors ------------------------------------------------------------------------


class BrokerError(Exception):
    permanent = False

    def __init__(self, message: str = "", *, raw: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.raw = raw or {}


class BrokerRejected(BrokerError):
    permanent = True


class BrokerUnavailable(BrokerError):
    pass


class BrokerTimeout(BrokerError):
    """The request may have been executed: the state is unknown."""


class BrokerAuthExpired(BrokerError):
    pass


class BrokerRateLimited(BrokerError):
    def __init__(self, message: str = "", *, retry_after: float = 1.0, raw: dict[str, Any] | None = None) -> None:
        super().__init__(message, raw=raw)
        self.retry_after = retry_after


# --- the protocol --------------------------------------------------------------------


@runtime_checkable
class Broker(Protocol):
    capabilities: Capabilities

    def place_order(self, request: OrderRequest) -> OrderAck:
        """Send a new order. Raises BrokerRejected, BrokerUnavailable (not
        sent), BrokerTimeout (maybe sent), BrokerAuthExpired, BrokerRateLimited."""
        ...

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        """Ask to cancel; the ack's status is ``pending_cancel`` or final."""
        ...

    def modify_order(
        self, *, broker_order_id: str, symbol: str, qty: Decimal | None, price: Decimal | None, stop_price: Decimal | None
    ) -> OrderAck:
        """Change quantity/prices of a working order (``supports_modify``)."""
        ...

    def get_order(
        self, *, client_order_id: str | None = None, broker_order_id: str | None = None, symbol: str | None = None
    ) -> OrderStatus | None:
        """The broker's view of one order, or None when it has no such order."""
        ...

    def open_orders(self) -> list[OrderStatus]:
        """Every working order of the account."""
        ...

    def orders_since(self, since: datetime) -> list[OrderStatus]:
        """Orders created or changed since ``since`` (for reconciliation)."""
        ...

    def fills_since(self, since: datetime) -> list[Fill]:
        """Every fill executed since ``since``."""
        ...

    def positions(self) -> list[BrokerPosition]: ...

    def holdings(self) -> list[Holding]: ...

    def funds(self) -> Funds: ...


FINAL_STATUSES = frozenset({"filled", "canceled", "rejected", "expired"})


# --- sending several orders ----------------------------------------------------------


def place_orders(broker: Broker, requests: Sequence[OrderRequest]) -> list[OrderAck | BrokerError]:
    """Send several orders of one account, in the given order: for each, its
    ack or the BrokerError its send raised (as ``place_order`` would have:
    BrokerRejected, BrokerUnavailable for not sent, BrokerTimeout for maybe
    sent...). An adapter may define ``place_orders(requests)`` with this
    contract to send two or more in one unit of work (the paper venue: one
    lock, one load, one save); otherwise, and for a single order, each is
    sent with ``place_order``, one failing never stopping the next."""
    batch = getattr(broker, "place_orders", None) if len(requests) > 1 else None
    if batch is not None:
        answers: list[OrderAck | BrokerError] = batch(list(requests))
        if len(answers) != len(requests):
            raise BrokerError(f"The adapter answered {len(answers)} of {len(requests)} orders.")
        return answers
    answers = []
    for request in requests:
        try:
            answers.append(broker.place_order(request))
        except BrokerError as exc:
            answers.append(exc)
    return answers
