"""A metric of the option at a fixed moneyness over time: at each bar the
strike is re-selected from the underlying's price (ATM = the strike nearest
the forward), so the series follows "the ATM call" as the market moves."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import numpy as np

from core.decimals import decimal_str
from core.exceptions import InvalidInput
from marketdata.analytics.chain import atm_index, parse_moneyness, strike_at_moneyness
from marketdata.analytics.implied import chain_implied_volatility
from marketdata.analytics.pricing import SECONDS_PER_YEAR, chain_forward, chain_values
from marketdata.fo.chain import chain_load
from marketdata.fo.futures import open_interest_series
from marketdata.fo.params import num
from marketdata.models import Instrument
from marketdata.selectors import bars_history, instrument_get

Metric = Literal["iv", "delta", "gamma", "theta", "vega", "oi", "premium"]
METRICS: tuple[Metric, ...] = ("iv", "delta", "gamma", "theta", "vega", "oi", "premium")
MAX_POINTS = 5_000


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _closes(instrument: Instrument, resolution: str, start: int, end: int) -> dict[int, Decimal]:
    history = bars_history(instrument=instrument, resolution=resolution, start=start, end=end, convert=Decimal)
    return {int(t): c for t, c in zip(history.columns[0], history.columns[4], strict=True)}


def moneyness_series(
    *,
    underlying: str,
    expiry: date,
    option_side: Literal["call", "put"],
    moneyness: str,
    metric: Metric,
    resolution: str,
    start: int,
    end: int,
) -> dict[str, Any]:
    """``metric`` of the ``option_side`` option at ``moneyness`` (ATM, ITMn, OTMn) per bar of the underlying in [start, end)."""
    parsed = parse_moneyness(moneyness)
    if parsed is None:
        raise InvalidInput("moneyness is ATM, ITM1..ITM99 or OTM1..OTM99.", fields={"moneyness": ["Malformed."]})
    kind, steps = parsed
    spec = chain_load(underlying=underlying, expiry=expiry, now=time.time())
    base = instrument_get(symbol=spec.underlying)
    spot_bars = _closes(base, resolution, start, end)
    if len(spot_bars) > MAX_POINTS:
        raise InvalidInput(
            f"The range holds {len(spot_bars)} bars; at most {MAX_POINTS}.", code="over_cap", fields={"from": ["Narrow the range."]}
        )
    legs = sorted((leg for leg in spec.legs if leg.call == (option_side == "call")), key=lambda leg: leg.strike)
    strikes = [float(leg.strike) for leg in legs]
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=[leg.symbol for leg in legs])}
    times = sorted(spot_bars)
    p = spec.params
    spot = np.array([float(spot_bars[t]) for t in times])
    years = np.maximum(spec.expiry_ts - np.array(times, dtype=np.float64), 0.0) / SECONDS_PER_YEAR
    fwd = chain_forward(p.model, spot, years, np.full(len(times), p.rate), np.full(len(times), p.dividend_yield)) if times else spot
    chosen: list[int | None] = []
    for f in fwd.tolist():
        atm = atm_index(strikes, f)
        chosen.append(strike_at_moneyness(len(legs), atm, option_side, kind, steps))
    needed = sorted({i for i in chosen if i is not None})
    closes = {i: _closes(instruments[legs[i].symbol], resolution, start, end) for i in needed}
    ois: dict[int, dict[int, Decimal | None]] = {}
    if metric == "oi":
        for i in needed:
            series = open_interest_series(instruments[legs[i].symbol], times, end)
            ois[i] = dict(zip(times, series, strict=True))
    price = np.array([float(closes[i].get(t, 0)) if i is not None else 0.0 for i, t in zip(chosen, times, strict=True)])
    strike = np.array([strikes[i] if i is not None else 1.0 for i in chosen])
    values = np.full(len(times), np.nan)
    reasons: list[str | None] = [None] * len(times)
    if metric in ("iv", "delta", "gamma", "theta", "vega") and times:
        iv = chain_implied_volatility(
            model=p.model,
            call=option_side == "call",
            price=price,
            spot=spot,
            strike=strike,
            years=years,
            rate=p.rate,
            dividend_yield=p.dividend_yield,
        )
        ok = np.isfinite(iv.volatility)
        if metric == "iv":
            values = iv.volatility
        else:
            greeks = chain_values(
                model=p.model, call=option_side == "call", spot=spot, strike=strike, years=years, rate=p.rate,
                volatility=np.where(ok, iv.volatility, 0.0), dividend_yield=p.dividend_yield,
            )  # fmt: skip
            values = np.where(ok, getattr(greeks, "theta_per_day" if metric == "theta" else metric), np.nan)
        reasons = [iv.reason(n) for n in range(len(times))]
    points = []
    for n, (t, pick) in enumerate(zip(times, chosen, strict=True)):
        i = pick if pick is not None else -1
        close = closes[i].get(t) if pick is not None else None
        point: dict[str, Any] = {
            "time": _iso(t),
            "spot": decimal_str(spot_bars[t]),
            "strike": decimal_str(legs[i].strike) if pick is not None else None,
            "symbol": legs[i].symbol if pick is not None else None,
            "price": decimal_str(close),
            "value": None,
            "reason": None,
        }
        if pick is None:
            point["reason"] = "no_strike_at_moneyness"
        elif metric == "oi":
            oi = ois[i].get(t)
            point["value"] = num(oi)
            point["reason"] = None if oi is not None else "no_open_interest"
        elif close is None or close <= 0:
            point["reason"] = "no_option_bar"
        elif metric == "premium":
            point["value"] = num(close)
        else:
            point["value"] = num(values[n])
            point["reason"] = None if point["value"] is not None else (reasons[n] or "no_solution")
        points.append(point)
    return {
        "underlying": spec.underlying,
        "expiry": spec.expiry.isoformat(),
        "option_side": option_side,
        "moneyness": moneyness.upper(),
        "metric": metric,
        "metric_unit": {"theta": "per calendar day", "vega": "per vol point", "iv": "decimal (0.2 = 20%)"}.get(metric),
        "resolution": resolution,
        "model": p.model,
        "points": points,
    }
