"""TradingView UDF wire shapes, built from instruments, quotes and history
columns. Numbers are JSON numbers here (UDF wants them), never strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from core.decimals import plain_decimal
from marketdata.models import Instrument, InstrumentType
from marketdata.selectors import History
from marketdata.types import INTRADAY_RESOLUTIONS, SUPPORTED_RESOLUTIONS, Quote
from marketdata.venues import SIM

# TradingView knows "Etc/UTC", not "UTC".
_TIMEZONES = {"UTC": "Etc/UTC", "GMT": "Etc/UTC", "": "Etc/UTC"}


def price_format(tick_size: Decimal) -> tuple[int, int]:
    """(pricescale, minmov) for a tick size: 0.01 -> (100, 1), 0.05 -> (100, 5),
    100 -> (1, 100). The chart's price step is minmov / pricescale."""
    tick = plain_decimal(Decimal(tick_size))
    if tick <= 0:
        return 100, 1
    exponent = tick.as_tuple().exponent
    assert isinstance(exponent, int)
    pricescale = 10 ** max(0, -exponent)
    return pricescale, int(tick * pricescale)


def _decimals(value: Decimal) -> int:
    exponent = plain_decimal(Decimal(value)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def config_body(*, exchanges: list[str], supports_marks: bool, supports_timescale_marks: bool) -> dict[str, Any]:
    return {
        "supported_resolutions": list(SUPPORTED_RESOLUTIONS),
        "supports_search": True,
        "supports_group_request": False,
        "supports_marks": supports_marks,
        "supports_timescale_marks": supports_timescale_marks,
        "supports_time": True,
        "exchanges": [{"value": "", "name": "All exchanges", "desc": ""}] + [{"value": e, "name": e, "desc": e} for e in exchanges],
        "symbols_types": [{"name": "All types", "value": ""}]
        + [{"name": label, "value": value} for value, label in InstrumentType.choices],
    }


def venue_label(instrument: Instrument) -> str:
    """What the chart shows as the exchange: a broker instrument's venue
    (KRX, NSE, BINANCE); a simulated one's exchange as seeded (NASDAQ...)."""
    return instrument.exchange if instrument.venue == SIM else instrument.venue


def symbol_info(instrument: Instrument) -> dict[str, Any]:
    pricescale, minmov = price_format(instrument.tick_size)
    return {
        "name": instrument.symbol,
        "ticker": instrument.symbol,
        "description": instrument.description or instrument.symbol,
        "type": instrument.type,
        "session": instrument.session,
        "exchange": venue_label(instrument),
        "listed_exchange": venue_label(instrument),
        "timezone": _TIMEZONES.get(instrument.timezone, instrument.timezone),
        "minmov": minmov,
        "pricescale": pricescale,
        "has_intraday": True,
        "has_daily": True,
        "has_weekly_and_monthly": True,
        "supported_resolutions": list(SUPPORTED_RESOLUTIONS),
        "intraday_multipliers": list(INTRADAY_RESOLUTIONS),
        "volume_precision": _decimals(instrument.lot_size),
        "data_status": "streaming",
        "currency_code": instrument.currency,
    }


def search_item(instrument: Instrument) -> dict[str, Any]:
    return {
        "symbol": instrument.symbol,
        "full_name": instrument.symbol,
        "description": instrument.description or instrument.symbol,
        "exchange": venue_label(instrument),
        "ticker": instrument.symbol,
        "type": instrument.type,
    }


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def quote_entry(name: str, instrument: Instrument | None, quote: Quote | None) -> dict[str, Any]:
    if instrument is None or quote is None:
        return {"s": "error", "n": name, "v": {}}
    spread = quote.ask - quote.bid if quote.ask is not None and quote.bid is not None else None
    return {
        "s": "ok",
        "n": name,
        "v": {
            "ch": _f(quote.change),
            "chp": _f(quote.change_percent),
            "short_name": instrument.symbol,
            "exchange": venue_label(instrument),
            "description": instrument.description or instrument.symbol,
            "lp": float(quote.last),
            "ask": _f(quote.ask),
            "bid": _f(quote.bid),
            "spread": _f(spread),
            "open_price": _f(quote.day_open),
            "high_price": _f(quote.day_high),
            "low_price": _f(quote.day_low),
            "prev_close_price": _f(quote.prev_close),
            "volume": float(quote.volume),
        },
    }


def history_body(history: History) -> bytes:
    """The UDF history body, encoded straight from the float columns."""
    t, o, h, low, c, v = history.columns
    if t:
        return orjson.dumps({"s": "ok", "t": t, "o": o, "h": h, "l": low, "c": c, "v": v})
    if history.next_time is not None:
        return orjson.dumps({"s": "no_data", "nextTime": history.next_time})
    return b'{"s":"no_data"}'


def error_body(message: str) -> dict[str, str]:
    return {"s": "error", "errmsg": message}
