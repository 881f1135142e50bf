"""Fair values of simulated derivatives from their underlying's price.

Futures: cost of carry, F = S * exp(r * T). Options: Black-Scholes with a
smile (implied volatility rising with |log moneyness|). Scalar and numpy forms.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

YEAR = 365 * 86_400
RATE = 0.04


def years_to(expiry_ts: float, t: float) -> float:
    return max(expiry_ts - t, 0.0) / YEAR


def future_price(spot: float, expiry_ts: float, t: float, rate: float = RATE) -> float:
    return spot * math.exp(rate * years_to(expiry_ts, t))


def smile_iv(spot: float, strike: float, base_iv: float) -> float:
    moneyness = math.log(strike / spot)
    return base_iv + 0.8 * moneyness * moneyness - 0.1 * moneyness


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def option_price(spot: float, strike: float, years: float, iv: float, call: bool, rate: float = RATE) -> float:
    if years <= 0 or iv <= 0:
        return max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * iv * iv) * years) / (iv * sqrt_t)
    d2 = d1 - iv * sqrt_t
    discount = math.exp(-rate * years)
    if call:
        return spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
    return strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def option_prices(spot: np.ndarray, strike: float, years: np.ndarray, base_iv: float, call: bool, rate: float = RATE) -> np.ndarray:
    """Vectorised Black-Scholes with the same smile, for history generation."""
    moneyness = np.log(strike / spot)
    iv = base_iv + 0.8 * moneyness * moneyness - 0.1 * moneyness
    years = np.maximum(years, 1e-9)
    sqrt_t = np.sqrt(years)
    d1 = (np.log(spot / strike) + (rate + 0.5 * iv * iv) * years) / (iv * sqrt_t)
    d2 = d1 - iv * sqrt_t
    discount = np.exp(-rate * years)
    if call:
        return spot * ndtr(d1) - strike * discount * ndtr(d2)
    return strike * discount * ndtr(-d2) - spot * ndtr(-d1)
