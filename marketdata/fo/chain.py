"""The option chain of an underlying and expiry: per-strike quotes, IV,
Greeks, OI, depth metrics and premium/discount, and the chain's aggregates
(put-call ratios, max pain, ATM IV, the smile). Vectorised over the chain:
one implied-volatility solve and one Greeks pass per computation."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import numpy as np
from django.db.models import OuterRef, Subquery

from core.decimals import decimal_str
from core.exceptions import InvalidInput, NotFound
from marketdata.analytics.chain import atm_index, max_pain, moneyness_label, premium_discount, ratio, smile_at
from marketdata.analytics.depth import MAX_LEVELS, depth_metrics
from marketdata.analytics.implied import chain_implied_volatility
from marketdata.analytics.pricing import chain_values, forward, years_to_expiry
from marketdata.fo.params import ModelParams, expiry_moment, model_params, num
from marketdata.models import Bar, Instrument, InstrumentType
from marketdata.quotes import quotes_get
from marketdata.selectors import instrument_get
from marketdata.sessions import trading_day_at
from marketdata.types import Quote

OptionSideFilter = Literal["call", "put", "both"]
IvBasis = Literal["atm", "smile"]
MAX_STRIKES = 400
GREEKS = ("delta", "gamma", "theta_per_year", "theta_per_day", "vega", "rho")


@dataclass(frozen=True)
class Leg:
    symbol: str
    strike: Decimal
    call: bool


@dataclass
class ChainSpec:
    """What a chain computation reads from the database, loaded once (the stream reuses it)."""

    underlying: str
    expiry: date
    expiry_ts: int
    params: ModelParams
    legs: list[Leg]
    previous_oi: dict[str, Decimal] = field(default_factory=dict)  # OI at the end of the previous trading day

    @property
    def symbols(self) -> list[str]:
        return [self.underlying, *(leg.symbol for leg in self.legs)]


def chain_load(*, underlying: str, expiry: date, now: float | None = None) -> ChainSpec:
    """The underlying's active options expiring on ``expiry``; NotFound for an
    unknown underlying or expiry, InvalidInput once the expiry moment has passed."""
    now = now if now is not None else time.time()
    base = instrument_get(symbol=underlying)
    rows = list(
        Instrument.objects.filter(underlying=base, type=InstrumentType.OPTION, expiry=expiry, active=True, strike__isnull=False)
        .exclude(option_type="")
        .order_by("strike", "option_type")
    )
    if not rows:
        raise NotFound(f"No options on '{base.symbol}' expire on {expiry.isoformat()}.", code="unknown_expiry")
    expiry_ts = expiry_moment(rows[0])
    if now >= expiry_ts:
        raise InvalidInput(
            f"The {expiry.isoformat()} options on '{base.symbol}' expired at {_iso(expiry_ts)}.",
            code="expired_contract",
            fields={"expiry": ["Expired."]},
        )
    legs = [Leg(symbol=r.symbol, strike=r.strike, call=r.option_type == "call") for r in rows if r.strike is not None]
    day = trading_day_at(int(now), rows[0].timezone, rows[0].session)
    return ChainSpec(
        underlying=base.symbol,
        expiry=expiry,
        expiry_ts=expiry_ts,
        params=model_params(base),
        legs=legs,
        previous_oi=_open_interest_before([r.id for r in rows], day.open if day is not None else int(now)),
    )


def _open_interest_before(ids: list[int], moment: int) -> dict[str, Decimal]:
    """Each option's last stored OI before ``moment`` (one query)."""
    last = Bar.objects.filter(instrument=OuterRef("pk"), time__lt=datetime.fromtimestamp(moment, UTC), open_interest__isnull=False)
    rows = Instrument.objects.filter(id__in=ids).annotate(oi=Subquery(last.order_by("-time").values("open_interest")[:1]))
    return {symbol: oi for symbol, oi in rows.values_list("symbol", "oi") if oi is not None}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def market_price(quote: Quote | None) -> tuple[Decimal | None, str | None]:
    """The price an IV is solved from: the mid of a two-sided quote, else the last trade."""
    if quote is None:
        return None, "no_quote"
    if quote.bid is not None and quote.ask is not None and 0 < quote.bid <= quote.ask:
        return (quote.bid + quote.ask) / 2, None
    if quote.last is not None and quote.last > 0:
        return quote.last, None
    return None, "non_positive_price"


def _levels(quote: Quote) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Five levels from a broker feed's depth (``extra["depth"]``: ``buy``/``sell`` lists of
    ``{price, quantity}``), else the top of book."""
    depth = quote.extra.get("depth") if isinstance(quote.extra, dict) else None
    if isinstance(depth, dict):
        try:
            bids = [(float(x["price"]), float(x["quantity"])) for x in depth.get("buy", [])[:MAX_LEVELS]]
            asks = [(float(x["price"]), float(x["quantity"])) for x in depth.get("sell", [])[:MAX_LEVELS]]
        except (KeyError, TypeError, ValueError):
            bids = asks = []
        if bids and asks:
            return bids, asks
    bids = [(float(quote.bid), float(quote.bid_size or 0))] if quote.bid is not None else []
    asks = [(float(quote.ask), float(quote.ask_size or 0))] if quote.ask is not None else []
    return bids, asks


def depth_dict(quote: Quote | None) -> dict[str, Any]:
    bids, asks = _levels(quote) if quote is not None else ([], [])
    metrics = depth_metrics(bids=bids, asks=asks)
    return {
        "mid": num(metrics.mid),
        "spread": num(metrics.spread),
        "spread_bps": num(metrics.spread_bps, 4),
        "microprice": num(metrics.microprice),
        "depth_imbalance": num(metrics.depth_imbalance, 6),
        "liquidity_score": num(metrics.liquidity_score, 4),
        "levels": metrics.levels,
        "reason": metrics.reason,
    }


def strike_distribution(
    *,
    underlying: str,
    expiry: date,
    option_side: OptionSideFilter = "both",
    strikes: int = 20,
    iv_basis: IvBasis = "atm",
    now: float | None = None,
) -> dict[str, Any]:
    """``strikes`` strikes nearest the ATM strike, with the whole chain's aggregates."""
    now = now if now is not None else time.time()
    spec = chain_load(underlying=underlying, expiry=expiry, now=now)
    return chain_compute(spec=spec, quotes=quotes_get(spec.symbols), now=now, option_side=option_side, strikes=strikes, iv_basis=iv_basis)


def chain_compute(
    *,
    spec: ChainSpec,
    quotes: dict[str, Quote],
    now: float,
    option_side: OptionSideFilter = "both",
    strikes: int = 20,
    iv_basis: IvBasis = "atm",
) -> dict[str, Any]:
    """The strike distribution from ``spec`` and the latest ``quotes`` (no database access)."""
    p = spec.params
    years = years_to_expiry(spec.expiry_ts, now)
    under = quotes.get(spec.underlying)
    spot = float(under.last) if under is not None and under.last is not None and under.last > 0 else None
    fwd = forward(p.model, spot, years, p.rate, p.dividend_yield) if spot is not None else None
    legs = spec.legs
    n = len(legs)
    strike = np.array([float(leg.strike) for leg in legs])
    is_call = np.array([leg.call for leg in legs], dtype=bool)
    prices: list[Decimal | None] = []
    price_reasons: list[str | None] = []
    for leg in legs:
        price, reason = market_price(quotes.get(leg.symbol))
        prices.append(price)
        price_reasons.append(reason if spot is not None else "no_underlying_quote")
    has_price = np.array([pr is not None for pr in prices], dtype=bool) & (spot is not None)
    market = np.array([float(pr) if pr is not None else 0.0 for pr in prices])
    iv = np.full(n, np.nan)
    iv_reason: list[str | None] = list(price_reasons)
    greeks = {name: np.full(n, np.nan) for name in GREEKS}
    if spot is not None and n:
        solved = chain_implied_volatility(
            model=p.model, call=is_call, price=market, spot=spot, strike=strike, years=years, rate=p.rate, dividend_yield=p.dividend_yield
        )
        for i in range(n):
            if has_price[i]:
                iv_reason[i] = solved.reason(i)
        iv = np.where(has_price, solved.volatility, np.nan)
        ok = np.isfinite(iv)
        values = chain_values(
            model=p.model,
            call=is_call,
            spot=spot,
            strike=strike,
            years=years,
            rate=p.rate,
            volatility=np.where(ok, iv, 0.0),
            dividend_yield=p.dividend_yield,
        )
        for name in GREEKS:
            greeks[name] = np.where(ok, getattr(values, name), np.nan)

    unique = sorted({leg.strike for leg in legs})
    unique_f = [float(k) for k in unique]
    atm = atm_index(unique_f, fwd) if fwd is not None else len(unique) // 2
    by_key = {(leg.strike, leg.call): i for i, leg in enumerate(legs)}

    def leg_iv(k: Decimal, call: bool) -> float | None:
        i = by_key.get((k, call))
        return float(iv[i]) if i is not None and np.isfinite(iv[i]) else None

    atm_ivs = [v for v in (leg_iv(unique[atm], True), leg_iv(unique[atm], False)) if v is not None] if unique else []
    atm_iv = sum(atm_ivs) / len(atm_ivs) if atm_ivs else None
    # The smile from the out-of-the-money side of each strike (the liquid one), else the other.
    smile = []
    for k, kf in zip(unique, unique_f, strict=True):
        otm_call = fwd is None or kf >= fwd
        value = leg_iv(k, otm_call)
        smile.append(value if value is not None else leg_iv(k, not otm_call))

    model_iv = np.full(n, np.nan)
    if iv_basis == "atm" and atm_iv is not None:
        model_iv[:] = atm_iv
    elif iv_basis == "smile":
        for i in range(n):
            value = smile_at(unique_f, smile, strike[i])
            model_iv[i] = np.nan if value is None else value
    model_price = np.full(n, np.nan)
    if spot is not None and np.isfinite(model_iv).any():
        ok_model = np.isfinite(model_iv)
        model_price = np.where(
            ok_model,
            chain_values(
                model=p.model,
                call=is_call,
                spot=spot,
                strike=strike,
                years=years,
                rate=p.rate,
                volatility=np.where(ok_model, model_iv, 0.0),
                dividend_yield=p.dividend_yield,
            ).price,
            np.nan,
        )

    call_oi = dict.fromkeys(unique, 0.0)
    put_oi = dict.fromkeys(unique, 0.0)
    volume = {True: 0.0, False: 0.0}
    oi_total = {True: 0.0, False: 0.0}
    for leg in legs:
        q = quotes.get(leg.symbol)
        if q is None:
            continue
        oi = float(q.open_interest or 0)
        (call_oi if leg.call else put_oi)[leg.strike] += oi
        oi_total[leg.call] += oi
        volume[leg.call] += float(q.volume or 0)

    count = max(1, min(strikes, MAX_STRIKES))
    window = sorted(sorted(range(len(unique)), key=lambda j: (abs(j - atm), j))[:count])
    # Python floats once: per-leg indexing of numpy arrays costs more than the models.
    iv_list, model_iv_list, model_price_list = iv.tolist(), model_iv.tolist(), model_price.tolist()
    greek_lists = {g: greeks[g].tolist() for g in GREEKS}
    rows = []
    for j in window:
        k = unique[j]
        row: dict[str, Any] = {"strike": decimal_str(k), "moneyness_steps": j - atm, "call": None, "put": None}
        for call in (True, False):
            if option_side != "both" and (option_side == "call") != call:
                continue
            found = by_key.get((k, call))
            if found is None:
                continue
            i = found
            row["call" if call else "put"] = _leg(
                spec, legs[i], quotes.get(legs[i].symbol), prices[i], iv_list[i], iv_reason[i], {g: greek_lists[g][i] for g in GREEKS},
                moneyness_label(j, atm, "call" if call else "put"), model_iv_list[i], model_price_list[i], iv_basis,
            )  # fmt: skip
        rows.append(row)
    return {
        "underlying": spec.underlying,
        "expiry": spec.expiry.isoformat(),
        "expiry_time": _iso(spec.expiry_ts),
        "time": _iso(now),
        "model": p.model,
        "rate": p.rate,
        "dividend_yield": p.dividend_yield,
        "years_to_expiry": num(years),
        "days_to_expiry": num(years * 365.0, 6),
        "spot": decimal_str(under.last) if under is not None else None,
        "forward": num(fwd),
        "spot_reason": None if spot is not None else "no_underlying_quote",
        "atm_strike": decimal_str(unique[atm]) if unique else None,
        "atm_iv": num(atm_iv),
        "iv_basis": iv_basis,
        "pcr_oi": num(ratio(oi_total[False], oi_total[True]), 6),
        "pcr_volume": num(ratio(volume[False], volume[True]), 6),
        "max_pain": decimal_str(Decimal(str(mp)))
        if (mp := max_pain(unique_f, [call_oi[k] for k in unique], [put_oi[k] for k in unique])) is not None
        else None,
        "smile": [{"strike": decimal_str(k), "iv": num(v)} for k, v in zip(unique, smile, strict=True)],
        "strikes": rows,
    }


def _leg(
    spec: ChainSpec,
    leg: Leg,
    quote: Quote | None,
    price: Decimal | None,
    iv: float,
    iv_reason: str | None,
    greeks: dict[str, float],
    label: str,
    model_iv: float,
    model_price: float,
    iv_basis: str,
) -> dict[str, Any]:
    oi = quote.open_interest if quote is not None else None
    before = spec.previous_oi.get(leg.symbol)
    solved = math.isfinite(iv)
    premium: dict[str, Any] = {"model_iv": num(model_iv), "model_price": None, "premium": None, "premium_percent": None, "reason": None}
    if not math.isfinite(model_price):
        premium["reason"] = f"no_{iv_basis}_iv" if not math.isfinite(model_iv) else "no_underlying_quote"
    elif price is None:
        premium["reason"] = "no_market_price"
    else:
        pd = premium_discount(market_price=float(price), model_price=float(model_price))
        premium.update(model_price=num(pd.model_price), premium=num(pd.premium), premium_percent=num(pd.premium_percent, 6))
    return {
        "symbol": leg.symbol,
        "moneyness": label,
        "last": decimal_str(quote.last) if quote is not None else None,
        "bid": decimal_str(quote.bid) if quote is not None else None,
        "ask": decimal_str(quote.ask) if quote is not None else None,
        "bid_size": decimal_str(quote.bid_size) if quote is not None else None,
        "ask_size": decimal_str(quote.ask_size) if quote is not None else None,
        "volume": decimal_str(quote.volume) if quote is not None else None,
        "open_interest": decimal_str(oi),
        "oi_change": decimal_str(oi - before) if oi is not None and before is not None else None,
        "price": decimal_str(price),
        "iv": num(iv) if solved else None,
        "iv_reason": None if solved else iv_reason,
        **{name: (num(greeks[name]) if solved else None) for name in GREEKS},
        "greeks_reason": None if solved else iv_reason,
        "depth": depth_dict(quote),
        "premium": premium,
    }
