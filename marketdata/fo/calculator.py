"""The option calculator: price and Greeks at a volatility, or the implied
volatility of a price, straight from the pure models."""

from __future__ import annotations

from typing import Any

from marketdata.analytics.implied import implied_volatility
from marketdata.analytics.pricing import Model, OptionSide, option_value
from marketdata.fo.params import num


def option_calculate(
    *,
    model: Model,
    option_type: OptionSide,
    spot: float,
    strike: float,
    time_years: float,
    rate: float,
    dividend_yield: float = 0.0,
    volatility: float | None = None,
    price: float | None = None,
) -> dict[str, Any]:
    """With ``volatility``: price, delta, gamma, theta_per_year, theta_per_day,
    vega (per vol point), rho (per rate point), d1, d2. With ``price``: the
    implied volatility, or null with a reason. ``spot`` is the futures price for Black-76."""
    q = 0.0 if model == "black76" else dividend_yield
    inputs = {
        "model": model,
        "option_type": option_type,
        "spot": spot,
        "strike": strike,
        "time_years": time_years,
        "rate": rate,
        "dividend_yield": q,
    }
    if price is not None:
        iv = implied_volatility(
            model=model, option_type=option_type, price=price, spot=spot, strike=strike, years=time_years, rate=rate, dividend_yield=q
        )
        return {**inputs, "price": price, "implied_volatility": num(iv.volatility), "reason": iv.reason}
    assert volatility is not None
    v = option_value(
        model=model, option_type=option_type, spot=spot, strike=strike, years=time_years, rate=rate, volatility=volatility, dividend_yield=q
    )
    return {
        **inputs,
        "volatility": volatility,
        "price": num(v.price),
        "delta": num(v.delta),
        "gamma": num(v.gamma),
        "theta_per_year": num(v.theta_per_year),
        "theta_per_day": num(v.theta_per_day),
        "vega": num(v.vega),
        "rho": num(v.rho),
        "d1": num(v.d1),
        "d2": num(v.d2),
        "reason": None if v.d1 is not None else "no_time_value",  # d1 and d2 are undefined at expiry or zero volatility
    }
