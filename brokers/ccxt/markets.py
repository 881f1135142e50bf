"""Instruments from a ccxt exchange's markets: ``VENUE:SYMBOL`` with the
market's lot and tick converted from ccxt's precision by the exchange's
``precisionMode`` (DECIMAL_PLACES: a count of decimals; SIGNIFICANT_DIGITS:
no fixed step; TICK_SIZE: the step itself), its minimum amount and minimum
notional (cost), its quote currency and contract size."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

DERIVATIVE = ("swap", "future")


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() and result > 0 else None


def precision_step(value: Any, precision_mode: int) -> Decimal | None:
    """The step of a ccxt precision value: ``10**-value`` for DECIMAL_PLACES,
    the value itself for TICK_SIZE, None otherwise (significant digits have no step)."""
    if value is None:
        return None
    if precision_mode == DECIMAL_PLACES:
        try:
            places = int(value)
        except (TypeError, ValueError):
            return None
        return Decimal(1).scaleb(-places)
    if precision_mode == TICK_SIZE:
        return _dec(value)
    return None


def instrument_fields(market: dict[str, Any], precision_mode: int) -> dict[str, Any]:
    """Instrument fields (marketdata INSTRUMENT_FIELDS) of one ccxt market."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    lot = precision_step(precision.get("amount"), precision_mode)
    tick = precision_step(precision.get("price"), precision_mode)
    contract_size = _dec(market.get("contractSize")) if market.get("contract") else None
    fields: dict[str, Any] = {
        "type": "future" if market.get("type") in DERIVATIVE else "crypto",
        "currency": str(market.get("quote") or "").upper()[:10],
        "min_amount": _dec((limits.get("amount") or {}).get("min")),
        "min_notional": _dec((limits.get("cost") or {}).get("min")),
        "multiplier": contract_size or Decimal(1),
        "segment": str(market.get("type") or "")[:16],
        "active": market.get("active") is not False,
    }
    if lot is not None:
        fields["lot_size"] = lot
    if tick is not None:
        fields["tick_size"] = tick
    return fields


def market_name(market: dict[str, Any]) -> str:
    kind = str(market.get("type") or "spot")
    return f"{market.get('base')}/{market.get('quote')} {kind}"[:200]


def markets_select(exchange: ccxt.Exchange, symbols: list[str] | None) -> list[dict[str, Any]]:
    """The exchange's loaded markets, or those named (ValueError for one it lacks)."""
    markets = exchange.markets or {}
    if not symbols:
        return [markets[s] for s in sorted(markets)]
    missing = [s for s in symbols if s not in markets]
    if missing:
        raise ValueError(f"{exchange.id} has no market {', '.join(missing[:10])}.")
    return [markets[s] for s in symbols]


def ccxt_markets_import(*, venue: str, markets: list[dict[str, Any]], precision_mode: int) -> dict[str, list[str]]:
    """Ensure the instrument of each market under ``venue`` (all or none):
    ``{"created": [...], "updated": [...]}`` symbols (updated: already there,
    its fields refreshed)."""
    from django.db import transaction

    from marketdata.instruments import instrument_ensure_for_venue
    from marketdata.models import Instrument
    from marketdata.venues import symbol_compose

    created: list[str] = []
    updated: list[str] = []
    with transaction.atomic():
        for market in markets:
            symbol = symbol_compose(venue, str(market["symbol"]))
            existed = Instrument.objects.filter(symbol=symbol, venue=venue).exists()
            instrument_ensure_for_venue(venue, str(market["symbol"]), name=market_name(market), **instrument_fields(market, precision_mode))
            (updated if existed else created).append(symbol)
    return {"created": created, "updated": updated}
