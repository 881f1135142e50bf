"""Venues: where an instrument trades, and the rules that follow from it.

Pure Python (no Django, no database): the OMS, the paper venue and the
broker adapters' fake servers (``brokers.kis.fake``) all import it.

An instrument belongs to one venue: ``SIM`` (the simulator) or a broker's
market (``KRX``, ``NSE``, ``BSE``, ``NFO``, a CCXT exchange id upper-cased).
``symbol`` stays the one unique wire name; a broker's instruments are named
``VENUE:CODE`` (``KRX:005930``, ``NSE:INFY``, ``BINANCE:BTC/USDT``), where
``code`` is the broker's own name. The simulator's instruments keep the
symbols they always had (``AAPL``, ``NSE:INFY``) with ``code`` = ``symbol``;
one moved aside for a broker's instrument of the same name becomes
``SIM:<symbol>`` (``marketdata.instruments``), so for every instrument
``symbol_compose(venue, code)`` is its symbol, or its symbol is its code (SIM).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

SIM = "SIM"
#: The tick rules: the instrument's own ``tick_size``, or KRX's price bands.
TICK_FIXED = "fixed"
TICK_KRX = "krx"

_VENUE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
# A broker code: printable, no spaces (CCXT's may hold "/" and ":", BTC/USDT:USDT).
_CODE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,60}$")


@dataclass(frozen=True)
class Venue:
    """A market and what its instruments share by default."""

    name: str
    #: The broker kind that trades it ("" for SIM: only paper accounts).
    broker_kind: str
    #: The default currency of its instruments ("" when each says: CCXT pairs are priced in their quote currency).
    currency: str
    timezone: str
    #: A UDF session (``marketdata.sessions``).
    session: str
    tick_rule: str = TICK_FIXED
    #: The tick size of a new instrument under the fixed rule.
    tick_size: Decimal = Decimal("0.01")
    instrument_type: str = "stock"
    #: A code must match this (the broker's format), when set.
    code_pattern: str = ""
    description: str = ""


VENUES: dict[str, Venue] = {
    SIM: Venue(SIM, "", "", "UTC", "24x7", description="The built-in simulator (paper accounts only)."),
    # KRX regular session 09:00-15:30 KST. Codes: the 6-character short code (005930, 0001A0).
    "KRX": Venue(
        "KRX",
        "kis",
        "KRW",
        "Asia/Seoul",
        "0900-1530",
        TICK_KRX,
        Decimal(1),
        code_pattern=r"^[0-9A-Z]{6}$",
        description="Korea Exchange (KOSPI, KOSDAQ) through KIS.",
    ),
    "NSE": Venue("NSE", "kite", "INR", "Asia/Kolkata", "0915-1530", tick_size=Decimal("0.05"), description="NSE equities through Kite."),
    "BSE": Venue("BSE", "kite", "INR", "Asia/Kolkata", "0915-1530", tick_size=Decimal("0.05"), description="BSE equities through Kite."),
    "NFO": Venue(
        "NFO",
        "kite",
        "INR",
        "Asia/Kolkata",
        "0915-1530",
        tick_size=Decimal("0.05"),
        instrument_type="future",
        description="NSE futures and options through Kite.",
    ),
    "BFO": Venue(
        "BFO",
        "kite",
        "INR",
        "Asia/Kolkata",
        "0915-1530",
        tick_size=Decimal("0.05"),
        instrument_type="future",
        description="BSE futures and options through Kite.",
    ),
    "CDS": Venue(
        "CDS",
        "kite",
        "INR",
        "Asia/Kolkata",
        "0900-1700",
        tick_size=Decimal("0.0025"),
        instrument_type="future",
        description="NSE currency derivatives through Kite.",
    ),
    "BCD": Venue(
        "BCD",
        "kite",
        "INR",
        "Asia/Kolkata",
        "0900-1700",
        tick_size=Decimal("0.0025"),
        instrument_type="future",
        description="BSE currency derivatives through Kite.",
    ),
    "MCX": Venue(
        "MCX",
        "kite",
        "INR",
        "Asia/Kolkata",
        "0900-2330",
        tick_size=Decimal(1),
        instrument_type="future",
        description="MCX commodity derivatives through Kite.",
    ),
    "NCO": Venue(
        "NCO",
        "kite",
        "INR",
        "Asia/Kolkata",
        "0900-2330",
        tick_size=Decimal(1),
        instrument_type="future",
        description="NSE commodity derivatives through Kite.",
    ),
}

#: The broker kind whose venues are its accounts' exchange ids, upper-cased.
CCXT = "ccxt"


class TickSized(Protocol):
    """Anything with a venue and a fixed tick size: an ``Instrument`` row, the
    paper venue's ``InstrumentSpec``."""

    @property
    def venue(self) -> str: ...

    @property
    def tick_size(self) -> Decimal: ...


# --- names ---------------------------------------------------------------------------------------


def venue_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a venue name, or None."""
    if not _VENUE_NAME.match(name):
        return "A venue is 2-32 capital letters, digits or _ starting with a letter (KRX, NSE, BINANCE)."
    return None


def ccxt_venue(exchange_id: str) -> str:
    """The venue of a CCXT exchange id: ``binance`` -> ``BINANCE``."""
    return exchange_id.strip().upper()


def venue_get(name: str) -> Venue:
    """The venue named ``name`` (upper case). Any other well-formed name is a
    CCXT exchange's (crypto, 24x7, UTC, priced in each pair's quote currency).
    Raises ValueError for a malformed name."""
    venue = VENUES.get(name)
    if venue is not None:
        return venue
    problem = venue_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return Venue(
        name,
        CCXT,
        "",
        "UTC",
        "24x7",
        tick_size=Decimal("0.00000001"),
        instrument_type="crypto",
        description=f"The {name.lower()} exchange through CCXT.",
    )


def code_problem(venue: Venue, code: str) -> str | None:
    """Why ``code`` cannot name an instrument of ``venue``, or None."""
    if not _CODE.match(code):
        return "A code is 1-60 printable characters without spaces."
    if venue.code_pattern and not re.match(venue.code_pattern, code):
        return f"Not a {venue.name} code (expected {venue.code_pattern})."
    if len(symbol_compose(venue.name, code)) > 64:
        return "Too long: the symbol VENUE:CODE holds at most 64 characters."
    return None


def symbol_compose(venue: str, code: str) -> str:
    """A broker instrument's symbol: ``VENUE:CODE`` (``KRX:005930``)."""
    return f"{venue}:{code}"


def symbol_split(symbol: str) -> tuple[str, str] | None:
    """``(venue, code)`` of a ``VENUE:CODE`` symbol (split at the first ``:``,
    a CCXT code may hold more), or None when the part before it cannot be a
    venue name. Syntax only: the simulator's ``NSE:INFY`` splits too; the
    instrument's ``venue`` says where it really trades."""
    venue, sep, code = symbol.partition(":")
    if not sep or not code or venue_name_problem(venue) is not None:
        return None
    return venue, code


def moved_aside_symbol(symbol: str) -> str:
    """The symbol a simulated instrument takes when a broker's instrument
    claims its name: ``NSE:INFY`` -> ``SIM:NSE:INFY``."""
    return symbol_compose(SIM, symbol)


# --- ticks ---------------------------------------------------------------------------------------

# KRX stock tick sizes (KOSPI and KOSDAQ alike) since the tick-size reform of
# 25 January 2023 (KRX Business Regulation, "호가가격단위"; the KRX global site's
# older table, with bands at 1,000 / 10,000 / 100,000, predates it). The band
# is chosen by the price itself: 1,999 is on a 1 won grid, 2,000 on 5.
# ETFs/ETNs trade on a flat 5 won tick (not covered: KIS domestic stocks only).
KRX_TICK_BANDS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(2_000), Decimal(1)),
    (Decimal(5_000), Decimal(5)),
    (Decimal(20_000), Decimal(10)),
    (Decimal(50_000), Decimal(50)),
    (Decimal(200_000), Decimal(100)),
    (Decimal(500_000), Decimal(500)),
)
KRX_TOP_TICK = Decimal(1_000)


def krx_tick_size(price: Decimal) -> Decimal:
    """The KRX stock tick size at ``price`` (KRW): below 2,000 -> 1, below
    5,000 -> 5, below 20,000 -> 10, below 50,000 -> 50, below 200,000 -> 100,
    below 500,000 -> 500, else 1,000."""
    for upper, tick in KRX_TICK_BANDS:
        if price < upper:
            return tick
    return KRX_TOP_TICK


def tick_size_at(venue: str, tick_size: Decimal, price: Decimal | None) -> Decimal:
    """The tick size of an instrument of ``venue`` (whose own is ``tick_size``)
    at ``price``. Without a price (a market order), its own."""
    if price is not None and VENUES.get(venue, VENUES[SIM]).tick_rule == TICK_KRX:
        return krx_tick_size(price)
    return tick_size


def tick_size_for(instrument: TickSized, price: Decimal | None) -> Decimal:
    """The one tick rule: the tick size a price of ``instrument`` must be a
    multiple of (the OMS's order checks, the paper venue's)."""
    return tick_size_at(instrument.venue, instrument.tick_size, price)


# --- who trades what ---------------------------------------------------------------------------


def venue_broker_kind(venue: str) -> str:
    """The broker kind that trades ``venue`` ("" for SIM and malformed names)."""
    try:
        return venue_get(venue).broker_kind
    except ValueError:
        return ""


def venue_traded_by(venue: str, *, kind: str, exchange_id: str = "") -> bool:
    """Whether a real account (``kind`` kis, kite, ccxt with its
    ``exchange_id``) trades instruments of ``venue``: only its broker's.
    Paper accounts are not asked here: they trade any instrument with quotes."""
    broker_kind = venue_broker_kind(venue)
    if not broker_kind or broker_kind != kind:
        return False
    if kind == CCXT:
        return bool(exchange_id) and ccxt_venue(exchange_id) == venue
    return True


def venues_of(*, kind: str, exchange_id: str = "") -> list[str]:
    """The venues a real account of ``kind`` trades (for messages and filters)."""
    if kind == CCXT:
        return [ccxt_venue(exchange_id)] if exchange_id else []
    return [v.name for v in VENUES.values() if v.broker_kind == kind]
