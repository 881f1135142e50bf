"""The Kite ticker's wire format (PROTOCOLS.md, Kite): binary market frames
and text messages, parsed into plain typed values. No I/O, no Django.

A binary frame is big-endian: a ``uint16`` packet count, then per packet a
``uint16`` length and that many bytes. The length says the kind: 8 (ltp),
44 (quote), 184 (full: the quote plus last trade time, OI, OI day high and
low, exchange time and 5 bids then 5 asks of 12 bytes: qty int32, price
int32, orders uint16, 2 bytes padding), and for indices 28 (quote) or 32
(full: the same plus the exchange time). A frame of 1 byte is a heartbeat.
Prices are integers in paise (÷100), ÷10,000,000 on the currency segment
(CDS) and ÷10,000 on BSE's currency segment (BCD); the segment is the low
byte of the instrument token.

Index packets: token, last price, high, low, open, close, then (bytes 24-28)
the net change, which the official client ignores (it computes the change
from the close), and in the 32-byte form the exchange time at 28-32.

A packet that cannot be read (unknown length, cut short, a count the frame
does not hold) is skipped and counted in ``ParsedFrame.malformed``; the
packets around it still count. Nothing here raises on hostile bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

MODE_LTP = "ltp"
MODE_QUOTE = "quote"
MODE_FULL = "full"
MODES = (MODE_LTP, MODE_QUOTE, MODE_FULL)

# Segments: the low byte of an instrument token (as the official client's EXCHANGE_MAP).
SEGMENT_NSE = 1
SEGMENT_NFO = 2
SEGMENT_CDS = 3
SEGMENT_BSE = 4
SEGMENT_BFO = 5
SEGMENT_BCD = 6
SEGMENT_MCX = 7
SEGMENT_MCXSX = 8
SEGMENT_INDICES = 9

# Power of ten a segment's integer prices are divided by.
PRICE_EXPONENT = {SEGMENT_CDS: 7, SEGMENT_BCD: 4}
DEFAULT_PRICE_EXPONENT = 2

MAX_TOKENS_PER_CONNECTION = 3000  # Kite's limit of instruments per ticker connection
MAX_TEXT_MESSAGE = 64 * 1024  # a text frame longer than this is not read

LTP_LENGTH = 8
INDEX_QUOTE_LENGTH = 28
INDEX_FULL_LENGTH = 32
QUOTE_LENGTH = 44
FULL_LENGTH = 184
DEPTH_LEVELS = 5

_U16 = struct.Struct(">H")
_LTP = struct.Struct(">Ii")
# token, ltp, high, low, open, close, net change [, exchange time]
_INDEX_QUOTE = struct.Struct(">Iiiiiii")
_INDEX_FULL = struct.Struct(">IiiiiiiI")
# token, ltp, last qty, avg price, volume, buy qty, sell qty, open, high, low, close
_QUOTE = struct.Struct(">IiIiIIIiiii")
# ... then last trade time, oi, oi day high, oi day low, exchange time, 10 x (qty, price, orders, pad)
_FULL = struct.Struct(">IiIiIIIiiiiIIIII" + "IiH2x" * (2 * DEPTH_LEVELS))
_DEPTH_OFFSETS = tuple(range(16, 16 + 3 * 2 * DEPTH_LEVELS, 3))  # each level's (qty, price, orders) in _FULL's values


class DepthLevel(NamedTuple):
    price: Decimal
    quantity: int
    orders: int


@dataclass(slots=True)
class KiteTick:
    """One packet: what its mode carries, the rest None. (Not frozen: a
    frozen dataclass's constructor costs several times more, and the parser
    builds thousands a second.)"""

    instrument_token: int
    mode: str
    tradable: bool
    last_price: Decimal
    last_quantity: int | None = None
    average_price: Decimal | None = None
    volume: int | None = None
    buy_quantity: int | None = None
    sell_quantity: int | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    net_change: Decimal | None = None  # index packets only
    last_trade_time: int | None = None  # unix seconds
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    exchange_timestamp: int | None = None  # unix seconds
    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()

    @property
    def segment(self) -> int:
        return self.instrument_token & 0xFF


@dataclass
class ParsedFrame:
    ticks: list[KiteTick] = field(default_factory=list)
    malformed: int = 0  # packets (or frames) skipped
    heartbeat: bool = False


def price_exponent(token: int) -> int:
    """The power of ten the token's segment divides its prices by."""
    return PRICE_EXPONENT.get(token & 0xFF, DEFAULT_PRICE_EXPONENT)


# Integer prices seen, as Decimals, per exponent: a stream repeats the same
# few prices (an instrument's last price and depth move by ticks), and
# building a Decimal costs several times a dict look-up. Bounded: cleared
# when full. Decimals are immutable, so sharing them is safe.
PRICE_CACHE_MAX = 200_000
_price_cache: dict[int, dict[int, Decimal]] = {}


def _price(value: int, exponent: int) -> Decimal:
    cache = _price_cache.get(exponent)
    if cache is None:
        cache = _price_cache.setdefault(exponent, {})
    price = cache.get(value)
    if price is None:
        if len(cache) >= PRICE_CACHE_MAX:
            cache.clear()
        price = cache[value] = Decimal(value).scaleb(-exponent)
    return price


def parse_packet(packet: bytes | memoryview) -> KiteTick | None:
    """One packet by its length; None for a length no mode has."""
    length = len(packet)
    if length == LTP_LENGTH:
        token, ltp = _LTP.unpack(packet)
        return KiteTick(token, MODE_LTP, token & 0xFF != SEGMENT_INDICES, _price(ltp, price_exponent(token)))
    if length in (INDEX_QUOTE_LENGTH, INDEX_FULL_LENGTH):
        if length == INDEX_QUOTE_LENGTH:
            token, ltp, high, low, open_, close, change = _INDEX_QUOTE.unpack(packet)
            stamp = None
        else:
            token, ltp, high, low, open_, close, change, stamp = _INDEX_FULL.unpack(packet)
        e = price_exponent(token)
        return KiteTick(
            instrument_token=token,
            mode=MODE_QUOTE if length == INDEX_QUOTE_LENGTH else MODE_FULL,
            tradable=token & 0xFF != SEGMENT_INDICES,
            last_price=_price(ltp, e),
            open=_price(open_, e),
            high=_price(high, e),
            low=_price(low, e),
            close=_price(close, e),
            net_change=_price(change, e),
            exchange_timestamp=stamp or None,
        )
    if length == QUOTE_LENGTH:
        token, ltp, last_qty, avg, volume, buy_qty, sell_qty, open_, high, low, close = _QUOTE.unpack(packet)
        e = price_exponent(token)
        return KiteTick(
            token,
            MODE_QUOTE,
            token & 0xFF != SEGMENT_INDICES,
            _price(ltp, e),
            last_qty,
            _price(avg, e),
            volume,
            buy_qty,
            sell_qty,
            _price(open_, e),
            _price(high, e),
            _price(low, e),
            _price(close, e),
        )
    if length == FULL_LENGTH:
        values = _FULL.unpack(packet)
        token = values[0]
        e = price_exponent(token)
        levels = [DepthLevel(_price(values[i + 1], e), values[i], values[i + 2]) for i in _DEPTH_OFFSETS]
        return KiteTick(
            instrument_token=token,
            mode=MODE_FULL,
            tradable=token & 0xFF != SEGMENT_INDICES,
            last_price=_price(values[1], e),
            last_quantity=values[2],
            average_price=_price(values[3], e),
            volume=values[4],
            buy_quantity=values[5],
            sell_quantity=values[6],
            open=_price(values[7], e),
            high=_price(values[8], e),
            low=_price(values[9], e),
            close=_price(values[10], e),
            last_trade_time=values[11] or None,
            oi=values[12],
            oi_day_high=values[13],
            oi_day_low=values[14],
            exchange_timestamp=values[15] or None,
            bids=tuple(levels[:DEPTH_LEVELS]),
            asks=tuple(levels[DEPTH_LEVELS:]),
        )
    return None


def parse_binary(frame: bytes) -> ParsedFrame:
    """A binary frame into ticks. Never raises: what cannot be read is
    skipped and counted (an unknown or cut packet by itself; a count the
    frame does not hold, or bytes past the last packet, as one more)."""
    out = ParsedFrame()
    size = len(frame)
    if size == 1:
        out.heartbeat = True
        return out
    if size < 2:
        out.malformed = 1
        return out
    view = memoryview(frame)
    (count,) = _U16.unpack_from(frame, 0)
    offset = 2
    for _ in range(count):
        if offset + 2 > size:
            out.malformed += 1  # the count names packets the frame does not hold
            return out
        (length,) = _U16.unpack_from(frame, offset)
        offset += 2
        if offset + length > size:
            out.malformed += 1  # cut short (a truncated depth, a lying length)
            return out
        tick = parse_packet(view[offset : offset + length])
        offset += length
        if tick is None:
            out.malformed += 1
        else:
            out.ticks.append(tick)
    if offset != size:
        out.malformed += 1  # bytes past the packets the count names
    return out


# --- text messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TextMessage:
    """A text frame: ``type`` "order" (``data`` the order dict), "error" or
    "message" (``data`` the text), or another type Kite may add."""

    type: str
    data: Any


def parse_text(text: str) -> TextMessage | None:
    """A text frame, or None when it is not a Kite message (not JSON, not an
    object with a string ``type``, too long, an order update whose data is
    not an object with an ``order_id``)."""
    if len(text) > MAX_TEXT_MESSAGE:
        return None
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    kind, data = message["type"], message.get("data")
    if kind == "order" and (not isinstance(data, dict) or not isinstance(data.get("order_id"), str | int)):
        return None
    return TextMessage(kind, data)


# --- requests --------------------------------------------------------------------------------


def subscribe_message(tokens: list[int]) -> str:
    return json.dumps({"a": "subscribe", "v": list(tokens)})


def unsubscribe_message(tokens: list[int]) -> str:
    return json.dumps({"a": "unsubscribe", "v": list(tokens)})


def mode_message(mode: str, tokens: list[int]) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    return json.dumps({"a": "mode", "v": [mode, list(tokens)]})
