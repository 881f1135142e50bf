"""The latest-quote store. Quotes live in the cache (Redis in production), one
key per symbol, so every process reads the same latest value."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.decimals import decimal_str
from core.loops import is_running
from marketdata.types import Quote

_PREFIX = "md:quote:"


def _key(symbol: str) -> str:
    return _PREFIX + symbol


def quote_store(quote: Quote) -> None:
    cache.set(_key(quote.symbol), quote, timeout=None)


def quotes_store(quotes: Iterable[Quote]) -> None:
    cache.set_many({_key(q.symbol): q for q in quotes}, timeout=None)


def _simulated(symbols: list[str]) -> dict[str, Quote]:
    """On the embedded default the cache is per process: a process that does
    not run the simulator loop (the CLI) computes the quotes the loop would
    store from the deterministic simulator, not from a shared store (quote
    writes would compete with orders for SQLite's one writer). Production
    reads only the shared (Redis) cache."""
    if not symbols or settings.PRODUCTION_SERVICES or not settings.SIMULATOR_ENABLED:
        return {}
    from marketdata.simulation import SIMULATOR_LOOP, simulated_quotes  # it stores through this module

    if is_running(SIMULATOR_LOOP):
        return {}
    return simulated_quotes(symbols)


def quote_get(symbol: str) -> Quote | None:
    quote = cache.get(_key(symbol))
    if quote is None:
        quote = _simulated([symbol]).get(symbol)
    return quote


def quotes_get(symbols: Iterable[str]) -> dict[str, Quote]:
    symbols = list(symbols)
    found = cache.get_many([_key(s) for s in symbols])
    quotes = {s: found[_key(s)] for s in symbols if _key(s) in found}
    quotes.update(_simulated([s for s in symbols if s not in quotes]))
    return quotes


def quotes_forget(symbols: Iterable[str]) -> None:
    """Drop the latest quotes of ``symbols`` (tests, a delisted instrument)."""
    cache.delete_many([_key(s) for s in symbols])


def quote_is_stale(quote: Quote, now: float | None = None) -> bool:
    return (now if now is not None else time.time()) - quote.time > settings.QUOTE_STALE_SECONDS


_s = decimal_str


def quote_as_dict(quote: Quote, now: float | None = None) -> dict[str, Any]:
    """The wire form: decimals as strings, ISO time plus unix seconds."""
    change = quote.change
    change_percent = quote.change_percent
    return {
        "symbol": quote.symbol,
        "last": _s(quote.last),
        "bid": _s(quote.bid),
        "ask": _s(quote.ask),
        "bid_size": _s(quote.bid_size),
        "ask_size": _s(quote.ask_size),
        "volume": _s(quote.volume),
        "open_interest": _s(quote.open_interest),
        "change": _s(change),
        "change_percent": None if change_percent is None else decimal_str(round(change_percent, 4)),
        "day_open": _s(quote.day_open),
        "day_high": _s(quote.day_high),
        "day_low": _s(quote.day_low),
        "prev_close": _s(quote.prev_close),
        "time": datetime.fromtimestamp(quote.time, UTC).isoformat().replace("+00:00", "Z"),
        "ts": quote.time,
        "stale": quote_is_stale(quote, now),
        **quote.extra,
    }
