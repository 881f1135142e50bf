"""Black-Scholes (continuous dividend yield) and Black-76 prices and Greeks,
scalar and numpy-vectorised over a chain.

Both models are one formula on the forward: ``F = S*exp((r-q)T)`` for
Black-Scholes, ``F`` = the futures price for Black-76, discounted at
``exp(-rT)``. Conventions: ``theta_per_year`` is dPrice/dt in calendar years
(negative when time decay costs the holder), ``theta_per_day`` that over 365;
``vega`` is the change for 1 volatility point (0.01), ``rho`` for 1 rate point
(0.01). Rates, yields and volatilities are decimals (0.05 = 5%). Time in
years, ACT/365.

Limits: with no time left (T = 0) or no volatility the price is the
(discounted) intrinsic value, gamma and vega are 0 and ``d1``/``d2`` are
undefined (None in the scalar result, NaN in the arrays); nothing divides by zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import erfcx, ndtr

Model = Literal["bs", "black76"]
OptionSide = Literal["call", "put"]
MODELS: tuple[Model, ...] = ("bs", "black76")
SECONDS_PER_YEAR = 365 * 86_400  # ACT/365
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)


def years_to_expiry(expiry_ts: float, now: float) -> float:
    """ACT/365 years from ``now`` to the expiry moment (unix seconds), never negative."""
    return max(expiry_ts - now, 0.0) / SECONDS_PER_YEAR


@dataclass(frozen=True, slots=True)
class OptionValue:
    price: float
    delta: float
    gamma: float
    theta_per_year: float
    theta_per_day: float
    vega: float  # per 1 volatility point
    rho: float  # per 1 rate point
    d1: float | None
    d2: float | None


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / _SQRT_2PI


def black(call: bool, f: float, strike: float, sd: float) -> float:
    """Undiscounted Black price for ``sd`` = sigma*sqrt(T) > 0, accurate far out
    of the money too: there ``F*N(d1) - K*N(d2)`` cancels to noise, so the two
    terms are written with the scaled complementary error function
    (``F*n(d1) = K*n(d2)``) and only their small difference is taken."""
    d1 = (math.log(f / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if call and d1 < 0:
        return 0.5 * strike * math.exp(-0.5 * d2 * d2) * float(erfcx(-d1 / _SQRT2) - erfcx(-d2 / _SQRT2))
    if not call and d2 > 0:
        return 0.5 * strike * math.exp(-0.5 * d2 * d2) * float(erfcx(d2 / _SQRT2) - erfcx(d1 / _SQRT2))
    if call:
        return f * norm_cdf(d1) - strike * norm_cdf(d2)
    return strike * norm_cdf(-d2) - f * norm_cdf(-d1)


def forward(model: Model, spot: float, years: float, rate: float, dividend_yield: float) -> float:
    """The forward the model prices on: the futures price itself for Black-76."""
    return spot if model == "black76" else spot * math.exp((rate - dividend_yield) * years)


def _check(spot: float, strike: float, years: float, volatility: float) -> None:
    if not (spot > 0 and strike > 0 and math.isfinite(spot) and math.isfinite(strike)):
        raise ValueError("spot and strike must be positive numbers")
    if not (years >= 0 and volatility >= 0 and math.isfinite(years) and math.isfinite(volatility)):
        raise ValueError("time and volatility must be non-negative numbers")


def option_value(
    *,
    model: Model,
    option_type: OptionSide,
    spot: float,
    strike: float,
    years: float,
    rate: float,
    volatility: float,
    dividend_yield: float = 0.0,
) -> OptionValue:
    """Price and Greeks of one European option (``spot`` is the futures price for Black-76)."""
    _check(spot, strike, years, volatility)
    call = option_type == "call"
    carry = rate if model == "black76" else dividend_yield  # Black-76 is Black-Scholes with q = r on S = F
    f = forward(model, spot, years, rate, dividend_yield)
    df = math.exp(-rate * years)
    spot_df = df * f / spot  # exp(-qT) for Black-Scholes, exp(-rT) for Black-76
    sd = volatility * math.sqrt(years)
    if sd > 0:
        d1: float | None = (math.log(f / strike) + 0.5 * sd * sd) / sd
        d2: float | None = d1 - sd  # type: ignore[operator]
        n1, n2, pdf1 = norm_cdf(d1), norm_cdf(d2), norm_pdf(d1)  # type: ignore[arg-type]
    else:  # the deterministic limit: the option ends in or out of the money for sure
        d1 = d2 = None
        n1 = n2 = 1.0 if f > strike else (0.0 if f < strike else 0.5)
        pdf1 = 0.0
    sign = 1.0 if call else -1.0
    nd1, nd2 = (n1, n2) if call else (1.0 - n1, 1.0 - n2)
    price = df * black(call, f, strike, sd) if sd > 0 else sign * df * (f * nd1 - strike * nd2)
    delta = sign * spot_df * nd1
    gamma = spot_df * pdf1 / (spot * sd) if sd > 0 else 0.0
    decay = -df * f * pdf1 * volatility / (2.0 * math.sqrt(years)) if sd > 0 else 0.0
    theta = decay + sign * (carry * df * f * nd1 - rate * df * strike * nd2)
    vega = df * f * pdf1 * math.sqrt(years)
    rho = -years * price if model == "black76" else sign * strike * years * df * nd2
    return OptionValue(
        price=price,
        delta=delta,
        gamma=gamma,
        theta_per_year=theta,
        theta_per_day=theta / 365.0,
        vega=vega / 100.0,
        rho=rho / 100.0,
        d1=d1,
        d2=d2,
    )


@dataclass(frozen=True, slots=True)
class ChainValues:
    """Arrays of the same length, one entry per option; ``d1``/``d2`` NaN where undefined."""

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta_per_year: np.ndarray
    theta_per_day: np.ndarray
    vega: np.ndarray
    rho: np.ndarray
    d1: np.ndarray
    d2: np.ndarray


def _arrays(*values: float | np.ndarray) -> list[np.ndarray]:
    return list(np.broadcast_arrays(*[np.asarray(v, dtype=np.float64) for v in values]))


def chain_forward(model: Model, spot: np.ndarray, years: np.ndarray, rate: np.ndarray, dividend_yield: np.ndarray) -> np.ndarray:
    return spot if model == "black76" else spot * np.exp((rate - dividend_yield) * years)


def black_prices(call: np.ndarray, f: np.ndarray, strike: np.ndarray, sd: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``df`` times the Black prices of ``black``, over arrays; ``sd`` > 0."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        d1 = (np.log(f / strike) + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        sign = np.where(call, 1.0, -1.0)
        return _black_arrays(call, f, strike, d1, d2, ndtr(sign * d1), ndtr(sign * d2), df)


def _black_arrays(
    call: np.ndarray, f: np.ndarray, strike: np.ndarray, d1: np.ndarray, d2: np.ndarray, nd1: np.ndarray, nd2: np.ndarray, df: np.ndarray
) -> np.ndarray:
    """``df * black`` from d1, d2 and N(+-d1), N(+-d2) of each option's side."""
    with np.errstate(over="ignore", invalid="ignore"):
        plain = np.where(call, 1.0, -1.0) * (f * nd1 - strike * nd2)
        # Far out of the money (call: d1 < 0, put: d2 > 0) both erfcx arguments are >= 0.
        tail = np.where(call, d1 < 0, d2 > 0)
        a = np.where(tail, np.where(call, -d1, d2), 0.0) / _SQRT2
        b = np.where(tail, np.where(call, -d2, d1), 0.0) / _SQRT2
        scaled = 0.5 * strike * np.exp(-0.5 * d2 * d2) * (erfcx(a) - erfcx(b))
    return df * np.where(tail, scaled, plain)


def chain_values(
    *,
    model: Model,
    call: np.ndarray | bool,
    spot: np.ndarray | float,
    strike: np.ndarray | float,
    years: np.ndarray | float,
    rate: np.ndarray | float,
    volatility: np.ndarray | float,
    dividend_yield: np.ndarray | float = 0.0,
) -> ChainValues:
    """``option_value`` over arrays (broadcast together): a whole chain in one pass.
    Inputs are assumed valid (positive spot and strike, T and volatility >= 0)."""
    flag, spot_a, strike_a, t, r, vol, q = _arrays(call, spot, strike, years, rate, volatility, dividend_yield)
    is_call = flag != 0
    f = chain_forward(model, spot_a, t, r, q)
    carry = r if model == "black76" else q
    df = np.exp(-r * t)
    spot_df = df * f / spot_a
    sqrt_t = np.sqrt(t)
    sd = vol * sqrt_t
    live = sd > 0
    safe_sd = np.where(live, sd, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.where(live, (np.log(f / strike_a) + 0.5 * sd * sd) / safe_sd, np.nan)
    d2 = d1 - sd
    limit = np.where(f > strike_a, 1.0, np.where(f < strike_a, 0.0, 0.5))
    sign = np.where(is_call, 1.0, -1.0)
    nd1 = np.where(live, ndtr(sign * np.where(live, d1, 0.0)), np.where(is_call, limit, 1.0 - limit))
    nd2 = np.where(live, ndtr(sign * np.where(live, d2, 0.0)), np.where(is_call, limit, 1.0 - limit))
    pdf1 = np.where(live, np.exp(-0.5 * np.where(live, d1, 0.0) ** 2) / _SQRT_2PI, 0.0)
    price = np.where(live, _black_arrays(is_call, f, strike_a, d1, d2, nd1, nd2, df), sign * df * (f * nd1 - strike_a * nd2))
    gamma = np.where(live, spot_df * pdf1 / (spot_a * safe_sd), 0.0)
    decay = np.where(live, -df * f * pdf1 * vol / (2.0 * np.where(live, sqrt_t, 1.0)), 0.0)
    theta = decay + sign * (carry * df * f * nd1 - r * df * strike_a * nd2)
    rho = -t * price if model == "black76" else sign * strike_a * t * df * nd2
    return ChainValues(
        price=price,
        delta=sign * spot_df * nd1,
        gamma=gamma,
        theta_per_year=theta,
        theta_per_day=theta / 365.0,
        vega=df * f * pdf1 * sqrt_t / 100.0,
        rho=rho / 100.0,
        d1=d1,
        d2=d2,
    )
