"""Implied volatility: scalar (scipy's brentq on a proper bracket) and
vectorised over a chain (safeguarded Newton on arrays).

Both solve on the time value, priced as the out-of-the-money option of the
strike (put-call parity turns an in-the-money option's time value into the
other side's price), which keeps deep in-the-money options well conditioned.
A price with no volatility answers ``ImpliedVol(volatility=None, reason=...)``:

- ``non_positive_price``: the price is zero or negative;
- ``expired``: no time left, the price carries no volatility;
- ``below_intrinsic``: the price is at or under the no-arbitrage lower bound
  (the discounted intrinsic value);
- ``above_upper_bound``: at or over the upper bound (the discounted forward
  for a call, the discounted strike for a put), or needing a volatility over
  ``MAX_VOLATILITY``;
- ``time_value_lost``: the time value is under ``MIN_TIME_VALUE_RATIO`` of the
  price: what is left of it is rounding, and so would any volatility be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import erfcx

from marketdata.analytics.pricing import Model, OptionSide, black, chain_forward, forward

NoSolution = Literal["non_positive_price", "expired", "below_intrinsic", "above_upper_bound", "time_value_lost", "invalid_input"]
MIN_VOLATILITY = 1e-9
MAX_VOLATILITY = 100.0
MIN_TIME_VALUE_RATIO = 1e-8
NEWTON_MAX_ITERATIONS = 100
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True, slots=True)
class ImpliedVol:
    volatility: float | None
    reason: NoSolution | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    otm_call: bool  # solve on the out-of-the-money call (strike >= forward) or put
    f: float
    df: float
    time_value: float


def _target(
    model: Model, call: bool, price: float, spot: float, strike: float, years: float, rate: float, dividend_yield: float
) -> _Target | NoSolution:
    values = (price, spot, strike, years, rate, dividend_yield)
    if not all(math.isfinite(v) for v in values) or spot <= 0 or strike <= 0:
        return "invalid_input"
    if price <= 0:
        return "non_positive_price"
    if years <= 0:
        return "expired"
    f = forward(model, spot, years, rate, dividend_yield)
    df = math.exp(-rate * years)
    lower = df * max(f - strike, 0.0) if call else df * max(strike - f, 0.0)
    upper = df * f if call else df * strike
    if price >= upper:
        return "above_upper_bound"
    time_value = price - lower
    if time_value <= 0:
        return "below_intrinsic"
    if time_value < MIN_TIME_VALUE_RATIO * price:
        return "time_value_lost"
    return _Target(otm_call=strike >= f, f=f, df=df, time_value=time_value)


def _otm_price(target: _Target, strike: float, years: float, volatility: float) -> float:
    return target.df * black(target.otm_call, target.f, strike, volatility * math.sqrt(years))


def implied_volatility(
    *,
    model: Model,
    option_type: OptionSide,
    price: float,
    spot: float,
    strike: float,
    years: float,
    rate: float,
    dividend_yield: float = 0.0,
) -> ImpliedVol:
    """The volatility at which the model prices the option at ``price``, or no solution with a reason."""
    target = _target(model, option_type == "call", price, spot, strike, years, rate, dividend_yield)
    if isinstance(target, str):
        return ImpliedVol(volatility=None, reason=target)

    def excess(volatility: float) -> float:
        return _otm_price(target, strike, years, volatility) - target.time_value

    lo, hi = MIN_VOLATILITY, 4.0
    if excess(lo) >= 0:
        return ImpliedVol(volatility=None, reason="time_value_lost")
    while excess(hi) < 0:
        if hi >= MAX_VOLATILITY:
            return ImpliedVol(volatility=None, reason="above_upper_bound")
        lo, hi = hi, min(hi * 4.0, MAX_VOLATILITY)
    root = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-13, maxiter=300)
    return ImpliedVol(volatility=float(root))


# --- vectorised ------------------------------------------------------------------------

_REASONS: tuple[NoSolution, ...] = (
    "non_positive_price",
    "expired",
    "below_intrinsic",
    "above_upper_bound",
    "time_value_lost",
    "invalid_input",
)
SOLVED = -1  # ChainImpliedVol.reason_code of a solved entry


@dataclass(frozen=True, slots=True)
class ChainImpliedVol:
    """``volatility`` is NaN exactly where ``reason_code`` is not ``SOLVED``;
    ``results()`` turns both into typed answers (None plus a reason)."""

    volatility: np.ndarray
    reason_code: np.ndarray  # index into REASONS, or SOLVED

    def reason(self, i: int) -> NoSolution | None:
        code = int(self.reason_code[i])
        return None if code == SOLVED else _REASONS[code]

    def results(self) -> list[ImpliedVol]:
        return [
            ImpliedVol(volatility=float(v)) if c == SOLVED else ImpliedVol(volatility=None, reason=_REASONS[c])
            for v, c in zip(self.volatility.tolist(), self.reason_code.tolist(), strict=True)
        ]


def _code(reason: NoSolution) -> int:
    return _REASONS.index(reason)


def chain_implied_volatility(
    *,
    model: Model,
    call: np.ndarray | bool,
    price: np.ndarray | float,
    spot: np.ndarray | float,
    strike: np.ndarray | float,
    years: np.ndarray | float,
    rate: np.ndarray | float,
    dividend_yield: np.ndarray | float = 0.0,
    tolerance: float = 1e-12,
) -> ChainImpliedVol:
    """``implied_volatility`` over arrays: Newton steps on log(price) for every
    unsolved option at once, inside a bracket kept per option; a step leaving
    its bracket is replaced by bisection, so each option converges."""
    flag, p, s, k, t, r, q = np.broadcast_arrays(
        *[np.asarray(v, dtype=np.float64) for v in (call, price, spot, strike, years, rate, dividend_yield)]
    )
    is_call = flag != 0
    n = p.shape
    code = np.full(n, SOLVED, dtype=np.int64)
    vol = np.full(n, np.nan)
    with np.errstate(all="ignore"):
        finite = np.isfinite(p) & np.isfinite(s) & np.isfinite(k) & np.isfinite(t) & np.isfinite(r) & np.isfinite(q)
        code[~finite | (s <= 0) | (k <= 0)] = _code("invalid_input")
        open_ = code == SOLVED
        code[open_ & (p <= 0)] = _code("non_positive_price")
        code[(code == SOLVED) & (t <= 0)] = _code("expired")
        f = chain_forward(model, s, t, r, q)
        df = np.exp(-r * t)
        lower = np.where(is_call, df * np.maximum(f - k, 0.0), df * np.maximum(k - f, 0.0))
        upper = np.where(is_call, df * f, df * k)
        tv = p - lower
        code[(code == SOLVED) & (p >= upper)] = _code("above_upper_bound")
        code[(code == SOLVED) & (tv <= 0)] = _code("below_intrinsic")
        code[(code == SOLVED) & (tv < MIN_TIME_VALUE_RATIO * p)] = _code("time_value_lost")
    idx = np.flatnonzero(code.ravel() == SOLVED)
    if idx.size:
        flat = code.ravel()
        roots, failed = _newton(f.ravel()[idx], k.ravel()[idx], t.ravel()[idx], df.ravel()[idx], tv.ravel()[idx], tolerance)
        vol.ravel()[idx] = roots
        flat[idx[failed]] = _code("above_upper_bound")
        vol.ravel()[idx[failed]] = np.nan
    return ChainImpliedVol(volatility=vol, reason_code=code)


def _newton(f: np.ndarray, k: np.ndarray, t: np.ndarray, df: np.ndarray, tv: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    otm_call = k >= f
    sqrt_t = np.sqrt(t)
    log_fk = np.log(f / k)
    log_target = np.log(tv)
    vega_scale = df * f * sqrt_t / math.sqrt(2.0 * math.pi)
    lo = np.full(f.shape, MIN_VOLATILITY)
    hi = np.full(f.shape, MAX_VOLATILITY)
    x = _first_guess(otm_call, f, k, sqrt_t, df, tv)
    with np.errstate(all="ignore"):
        failed = _otm_prices(otm_call, log_fk, k, MAX_VOLATILITY * sqrt_t, df) <= tv
        active = ~failed
        # Whole arrays each step (converged entries are frozen): fewer, larger
        # numpy operations than gathering the unsolved ones.
        for _ in range(NEWTON_MAX_ITERATIONS):
            sd = x * sqrt_t
            d1 = (log_fk + 0.5 * sd * sd) / sd
            price = _otm_prices(otm_call, log_fk, k, sd, df)
            slope = vega_scale * np.exp(-0.5 * d1 * d1) / price  # d log(price) / d sigma
            g = np.log(price) - log_target  # -inf where the price underflows: below the root
            lo = np.where(active & (g < 0), x, lo)
            hi = np.where(active & (g > 0), x, hi)
            # Halley's step on log(price); its curvature from volga = vega * d1 * d2 / sigma.
            newton = g / slope
            damping = 1.0 - 0.5 * newton * (d1 * (d1 - sd) / x - slope)
            step = x - np.where(damping > 0.5, newton / damping, newton)
            step = np.where(np.isfinite(step) & (step >= lo) & (step <= hi), step, (lo + hi) * 0.5)
            step = np.where(active & (g != 0), step, x)
            active &= (np.abs(step - x) > tolerance * (1.0 + x)) & (hi - lo > tolerance * (1.0 + x))
            x = step
            if not active.any():
                break
    return x, failed


def _otm_prices(otm_call: np.ndarray, log_fk: np.ndarray, k: np.ndarray, sd: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``black_prices`` of out-of-the-money options in its scaled form, valid
    for them at every volatility: two erfcx calls instead of four special
    functions. Past sigma*sqrt(T) = 50 the price no longer moves in a double
    (it is the discounted forward or strike), and erfcx would overflow."""
    sd = np.minimum(sd, 50.0)
    d1 = (log_fk + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    a = np.where(otm_call, -d1, d2) / _SQRT2
    b = np.where(otm_call, -d2, d1) / _SQRT2
    return 0.5 * df * k * np.exp(-0.5 * d2 * d2) * (erfcx(a) - erfcx(b))


def _first_guess(otm_call: np.ndarray, f: np.ndarray, k: np.ndarray, sqrt_t: np.ndarray, df: np.ndarray, tv: np.ndarray) -> np.ndarray:
    """Corrado-Miller's approximation where it has a real value, else the
    inflection point of the Black price (sqrt(2|ln F/K| / T))."""
    with np.errstate(all="ignore"):
        fwd, strike = df * f, df * k
        call = np.where(otm_call, tv, tv + fwd - strike)
        half = call - (fwd - strike) / 2.0
        disc = half * half - (fwd - strike) ** 2 / math.pi
        guess = math.sqrt(2.0 * math.pi) / (fwd + strike) * (half + np.sqrt(disc)) / sqrt_t
        inflection = np.sqrt(2.0 * np.abs(np.log(f / k))) / sqrt_t
    guess = np.where((disc > 0) & np.isfinite(guess) & (guess > MIN_VOLATILITY), guess, inflection)
    return np.where((guess > MIN_VOLATILITY) & (guess < MAX_VOLATILITY), guess, 0.5)
