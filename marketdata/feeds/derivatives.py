"""Fair values of simulated derivatives from their underlying's price.

Futures: cost of carry, F = S * exp(r * T). Options: Black-Scholes
(``marketdata.analytics.pricing``, the one implementation the analytics use
too) with a smile (implied volatility rising with |log moneyness|).
"""

from __future__ import annotations

import math

import numpy as np

from marketdata.analytics.pricing import SECONDS_PER_YEAR, chain_values, option_value, years_to_expiry

YEAR = SECONDS_PER_YEAR
RATE = 0.04  # the simulator's risk-free rate; the demo index carries it as Instrument.risk_free_rate


def years_to(expiry_ts: float, t: float) -> float:
    return years_to_expiry(expiry_ts, t)


def future_price(spot: float, expiry_ts: float, t: float, rate: float = RATE) -> float:
    return spot * math.exp(rate * years_to(expiry_ts, t))


def smile_iv(spot: float, strike: float, base_iv: float) -> float:
    moneyness = math.log(strike / spot)
    return base_iv + 0.8 * moneyness * moneyness - 0.1 * moneyness


def option_price(spot: float, strike: float, years: float, iv: float, call: bool, rate: float = RATE) -> float:
    return option_value(
        model="bs",
        option_type="call" if call else "put",
        spot=spot,
        strike=strike,
        years=max(years, 0.0),
        rate=rate,
        volatility=max(iv, 0.0),
    ).price


def option_prices(spot: np.ndarray, strike: float, years: np.ndarray, base_iv: float, call: bool, rate: float = RATE) -> np.ndarray:
    """Vectorised Black-Scholes with the same smile, for history generation."""
    moneyness = np.log(strike / spot)
    iv = np.maximum(base_iv + 0.8 * moneyness * moneyness - 0.1 * moneyness, 0.0)
    return chain_values(model="bs", call=call, spot=spot, strike=strike, years=np.maximum(years, 0.0), rate=rate, volatility=iv).price
