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

from collections.abc import Mapping
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
    avg_price: Decimal
    last_price: Decimal | None = None


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
