"""FX rates: the one place the project turns an amount of one currency into another.

A rate is an instrument like any other: the pair ``BASE/QUOTE`` (``USD/KRW``,
``USDT/USD``, also a coin pair such as ``BTC/USDT``) is quoted in QUOTE, and its
latest quote (the mid of bid and ask, else the last price) is the value of one
BASE in QUOTE. ``fx_rate`` takes the direct pair, else the inverse pair, else a
cross through the pivot currencies (USD, then USDT and EUR): ``USDT`` is its own
currency, worth ``USDT/USD`` dollars, never assumed equal to USD.

A quote older than ``QUOTE_STALE_SECONDS`` is no rate unless ``allow_stale``:
trading converts only at fresh rates; valuing a balance may accept the last one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from decimal import Context, Decimal

from django.conf import settings

from core.decimals import plain_decimal
from core.exceptions import Conflict
from marketdata.quotes import quotes_get
from marketdata.types import Quote

# Currencies a cross rate may go through, in order of preference.
PIVOTS: tuple[str, ...] = ("USD", "USDT", "EUR")
# Significant digits a rate keeps: far finer than any price, and exact through
# every database column (SQLite keeps 15 digits).
RATE_DIGITS = 12
_RATE_CONTEXT = Context(prec=RATE_DIGITS)
ONE = Decimal(1)


class FxRateUnavailable(Conflict):
    """No fresh quote links the two currencies (directly, inversely or through a pivot)."""

    code = "fx_rate_unavailable"
    default_message = "No FX rate is known for this currency."


def pair_symbol(base: str, quote: str) -> str:
    """The instrument symbol of the rate of one ``base`` in ``quote``: ``USD/KRW``."""
    return f"{base}/{quote}"


def _quote_price(quote: Quote) -> Decimal | None:
    if quote.bid is not None and quote.ask is not None and quote.bid > 0 and quote.ask > 0:
        return (quote.bid + quote.ask) / 2
    if quote.last is not None and quote.last > 0:
        return quote.last
    return None


def _edges(nodes: Iterable[str], *, allow_stale: bool, now: float | None) -> dict[tuple[str, str], Decimal]:
    """Every usable rate between ``nodes``, both ways, read in one cache round trip."""
    names = sorted(set(nodes))
    symbols = {pair_symbol(a, b): (a, b) for a in names for b in names if a != b}
    found = quotes_get(symbols)
    now = time.time() if now is None else now
    edges: dict[tuple[str, str], Decimal] = {}
    for symbol, (a, b) in symbols.items():
        quote = found.get(symbol)
        if quote is None or (not allow_stale and now - quote.time > settings.QUOTE_STALE_SECONDS):
            continue
        price = _quote_price(quote)
        if price is None:
            continue
        # A direct quote wins over the inverse of the opposite pair.
        edges[(a, b)] = price
        edges.setdefault((b, a), ONE / price)
    return edges


def _path_rate(edges: dict[tuple[str, str], Decimal], source: str, target: str) -> Decimal | None:
    """The product of rates along the shortest path (fewest legs) from ``source`` to ``target``."""
    if source == target:
        return ONE
    queue: deque[tuple[str, Decimal]] = deque([(source, ONE)])
    seen = {source}
    while queue:
        node, value = queue.popleft()
        # Pivots in their order of preference, the target first: a direct leg wins.
        for nxt in (target, *PIVOTS):
            rate = edges.get((node, nxt))
            if rate is None or nxt in seen:
                continue
            if nxt == target:
                return value * rate
            seen.add(nxt)
            queue.append((nxt, value * rate))
    return None


def _normalize(currency: str) -> str:
    return currency.strip().upper()


def _rounded(rate: Decimal) -> Decimal:
    return plain_decimal(_RATE_CONTEXT.plus(rate))


def fx_rate(from_currency: str, to_currency: str, *, allow_stale: bool = False, now: float | None = None) -> Decimal | None:
    """The value of one unit of ``from_currency`` in ``to_currency`` (1 for the
    same currency), or None when no usable quote links them."""
    source, target = _normalize(from_currency), _normalize(to_currency)
    if source == target:
        return ONE
    edges = _edges({source, target, *PIVOTS}, allow_stale=allow_stale, now=now)
    rate = _path_rate(edges, source, target)
    return None if rate is None else _rounded(rate)


def fx_rates(currencies: Iterable[str], base: str, *, allow_stale: bool = False, now: float | None = None) -> dict[str, Decimal]:
    """``{currency: value of one unit in base}`` for each currency with a known
    rate (``base`` itself maps to 1); currencies without one are left out."""
    target = _normalize(base)
    wanted = {_normalize(c) for c in currencies}
    edges = _edges(wanted | {target, *PIVOTS}, allow_stale=allow_stale, now=now)
    rates: dict[str, Decimal] = {}
    for currency in sorted(wanted):
        rate = _path_rate(edges, currency, target)
        if rate is not None:
            rates[currency] = _rounded(rate)
    return rates


def fx_convert(amount: Decimal, from_currency: str, to_currency: str, *, allow_stale: bool = False, now: float | None = None) -> Decimal:
    """``amount`` of ``from_currency`` in ``to_currency``, unrounded (quantize at
    the edge with ``core.money.money_quantize``). Raises ``FxRateUnavailable``."""
    rate = fx_rate(from_currency, to_currency, allow_stale=allow_stale, now=now)
    if rate is None:
        raise FxRateUnavailable(
            f"No {'' if allow_stale else 'fresh '}FX rate from {_normalize(from_currency)} to {_normalize(to_currency)}.",
            fields={"currency": [_normalize(from_currency)]},
        )
    return amount * rate
