"""Kite Connect wire facts the adapter, the specs and the fake share (pure
Python): statuses, products, varieties, the ``tag`` rule, symbols.

Our symbol of a Kite instrument is ``EXCHANGE:tradingsymbol`` (``NSE:INFY``,
``NFO:NIFTY25DEC24000CE``); a space in Kite's index names (``NIFTY 50``) is
written ``_`` (``NSE:NIFTY_50``): symbols hold no spaces."""

from __future__ import annotations

import re
from decimal import Decimal

EXCHANGES = ("NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX", "NCO")
EQUITY_EXCHANGES = ("NSE", "BSE")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF")
VARIETIES = ("regular", "amo", "co", "iceberg")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
VALIDITIES = ("DAY", "IOC", "TTL")
ICEBERG_LEGS = (2, 10)  # Kite: 2 to 10 legs
TTL_MINUTES = (1, 1440)

# A cover order: a MARKET or LIMIT intraday (MIS) entry with a compulsory
# stop-loss leg (SL-M, the other side) triggered at its trigger_price.
COVER = "co"
COVER_PRODUCT = "MIS"

# Broker-specific order fields (OrderRequest.extra, Order.broker_fields).
EXTRA_FIELDS = frozenset({"product", "variety", "iceberg_legs", "iceberg_quantity", "validity_ttl"})

# Kite order_type <-> ours. SL is a stop-limit (trigger + limit), SL-M a stop (trigger, then market).
ORDER_TYPE_TO_KITE = {"market": "MARKET", "limit": "LIMIT", "stop": "SL-M", "stop_limit": "SL"}
ORDER_TYPE_FROM_KITE = {v: k for k, v in ORDER_TYPE_TO_KITE.items()}
TIF_TO_KITE = {"day": "DAY", "ioc": "IOC"}

# Kite statuses -> the OMS's. Final ones and the working ones; anything in
# flight (a request Kite has not finished) counts as what it will most likely be.
STATUS_MAP = {
    "COMPLETE": "filled",
    "CANCELLED": "canceled",
    "CANCELLED AMO": "canceled",
    "REJECTED": "rejected",
    "OPEN": "new",
    "PUT ORDER REQ RECEIVED": "new",
    "VALIDATION PENDING": "new",
    "OPEN PENDING": "new",
    "AMO REQ RECEIVED": "new",
    "TRIGGER PENDING": "new",
    "MODIFY VALIDATION PENDING": "new",
    "MODIFY PENDING": "new",
    "MODIFIED": "new",
    "CANCEL PENDING": "pending_cancel",
    "LAPSED": "expired",
}
FINAL_KITE = ("COMPLETE", "CANCELLED", "CANCELLED AMO", "REJECTED", "LAPSED")

TAG_MAX = 20
TAG_PATTERN = r"[A-Za-z0-9]{1,20}"
_TAG = re.compile(rf"^{TAG_PATTERN}$")


def tag_problem(value: str) -> str | None:
    """Why ``value`` cannot be a Kite ``tag`` (our client order id), or None."""
    if not _TAG.match(value or ""):
        return f"A Kite order's client_order_id is its tag: 1 to {TAG_MAX} letters and digits."
    return None


def cover_problem(side: str, order_type: str, product: str, price: Decimal | None, trigger: Decimal | None) -> str | None:
    """Why Kite refuses a cover order of these terms (ours: side buy/sell,
    order_type market/limit), or None. The trigger stands on the losing side
    of a limit entry (below it for a buy); a market entry's is checked by Kite
    against the last price."""
    if order_type not in ("market", "limit"):
        return "A Kite cover order (variety co) is a market or limit order."
    if product != COVER_PRODUCT:
        return f"A Kite cover order (variety co) is intraday: product {COVER_PRODUCT}."
    if trigger is None:
        return "A Kite cover order (variety co) needs the stop-loss leg's trigger price."
    if order_type == "limit" and price is not None:
        if side == "buy" and not trigger < price:
            return "A buy cover order's trigger price must be below its price."
        if side == "sell" and not trigger > price:
            return "A sell cover order's trigger price must be above its price."
    return None


def oms_status(kite_status: str, filled: int = 0) -> str:
    status = STATUS_MAP.get((kite_status or "").upper().strip(), "new")
    if status == "new" and filled > 0:
        return "partially_filled"
    if status == "canceled" and filled > 0:
        return "canceled"
    return status


def kite_symbol(exchange: str, tradingsymbol: str) -> str:
    return f"{exchange}:{tradingsymbol.replace(' ', '_')}"


def kite_code(tradingsymbol: str) -> str:
    """Our instrument code of a Kite tradingsymbol (no spaces)."""
    return tradingsymbol.replace(" ", "_")


def split_symbol(symbol: str) -> tuple[str, str]:
    """(exchange, tradingsymbol) of ``NSE:INFY``. Raises ValueError."""
    exchange, sep, code = (symbol or "").partition(":")
    if not sep or exchange not in EXCHANGES or not code or len(code) > 60:
        raise ValueError(f"{symbol!r} is not a Kite symbol (EXCHANGE:tradingsymbol, exchange one of {', '.join(EXCHANGES)}).")
    return exchange, code.replace("_", " ")


def default_product(exchange: str) -> str:
    """CNC (delivery) on the cash market, NRML (carry forward) for derivatives."""
    return "CNC" if exchange in EQUITY_EXCHANGES else "NRML"
