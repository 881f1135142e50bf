"""Option prices, Greeks and implied volatility (marketdata.analytics): against
Hull's worked examples, put-call parity, finite differences, the limits, and
the implied-volatility round trip with brentq as the vectorised solver's oracle."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from marketdata.analytics.implied import chain_implied_volatility, implied_volatility
from marketdata.analytics.pricing import chain_values, option_value, years_to_expiry
from marketdata.feeds.derivatives import option_price, option_prices


def value(model="bs", side="call", **kw):
    return option_value(model=model, option_type=side, **kw)


# --- Hull, Options, Futures and Other Derivatives: the worked examples -------------------


def test_hull_black_scholes_example_stock_at_42():
    # S=42, K=40, r=10%, sigma=20%, six months: c = 4.76, p = 0.81, d1 = 0.7693, d2 = 0.6278.
    kw = dict(spot=42, strike=40, years=0.5, rate=0.10, volatility=0.20)
    call, put = value(side="call", **kw), value(side="put", **kw)
    assert round(call.price, 4) == 4.7594 and round(call.price, 2) == 4.76
    assert round(put.price, 4) == 0.8086 and round(put.price, 2) == 0.81
    assert round(call.d1, 4) == 0.7693 and round(call.d2, 4) == 0.6278


def test_hull_greeks_example_stock_at_49():
    # S=49, K=50, r=5%, sigma=20%, 20 weeks: delta 0.522, gamma 0.066, theta -4.31 a year
    # (-0.0118 a calendar day), vega 12.1 per unit of volatility, rho 8.91 per unit of rate.
    call = value(spot=49, strike=50, years=20 / 52, rate=0.05, volatility=0.20)
    assert round(call.price, 4) == 2.4005
    assert round(call.delta, 4) == 0.5216 and round(call.delta, 3) == 0.522
    assert round(call.gamma, 4) == 0.0655 and round(call.gamma, 3) == 0.066
    assert round(call.theta_per_year, 4) == -4.3053 and round(call.theta_per_year, 2) == -4.31
    assert round(call.theta_per_day, 4) == -0.0118
    assert round(call.vega, 4) == 0.1211 and round(call.vega * 100, 1) == 12.1  # per vol point
    assert round(call.rho, 4) == 0.0891 and round(call.rho * 100, 2) == 8.91  # per rate point


def test_hull_index_option_with_dividend_yield():
    # Index 930, strike 900, r=8%, sigma=20%, two months, dividend yield 3%: c = 51.83
    # (Hull prints d1 = 0.5444 truncated; it is 0.544479).
    call = value(spot=930, strike=900, years=2 / 12, rate=0.08, volatility=0.20, dividend_yield=0.03)
    assert round(call.price, 4) == 51.8330 and round(call.price, 2) == 51.83
    assert round(call.d1, 4) == 0.5445 and round(call.d2, 4) == 0.4628


def test_hull_black76_futures_put():
    # Futures 20, strike 20, r=9%, sigma=25%, four months: p = 1.12.
    put = value(model="black76", side="put", spot=20, strike=20, years=4 / 12, rate=0.09, volatility=0.25)
    assert round(put.price, 4) == 1.1166 and round(put.price, 2) == 1.12
    assert round(put.d1, 4) == 0.0722 and round(put.d2, 4) == -0.0722


# --- identities over a grid ------------------------------------------------------------------

GRID = list(itertools.product(("bs", "black76"), (60, 95, 100, 130), (1 / 365, 0.25, 2.0), (0.05, 0.3, 1.5)))


@pytest.mark.parametrize("model,strike,years,vol", GRID)
def test_put_call_parity(model, strike, years, vol):
    kw = dict(model=model, spot=100, strike=strike, years=years, rate=0.06, volatility=vol, dividend_yield=0.02)
    call, put = value(side="call", **kw), value(side="put", **kw)
    df = math.exp(-0.06 * years)
    carry = df if model == "black76" else math.exp(-0.02 * years)  # exp(-qT), or exp(-rT) on a future
    assert call.price - put.price == pytest.approx(100 * carry - strike * df, abs=1e-9 * 100)
    assert call.delta - put.delta == pytest.approx(carry, abs=1e-12)
    assert call.gamma == pytest.approx(put.gamma, rel=1e-12) and call.vega == pytest.approx(put.vega, rel=1e-12)


@pytest.mark.parametrize("model,strike,years,vol", GRID)
@pytest.mark.parametrize("side", ["call", "put"])
def test_greeks_are_the_price_derivatives(model, side, strike, years, vol):
    base = dict(model=model, side=side, spot=100.0, strike=strike, years=years, rate=0.06, volatility=vol, dividend_yield=0.02)

    def price(**bump):
        return value(**{**base, **bump}).price

    g = value(**base)
    h = 100 * vol * math.sqrt(years) * 1e-3  # bumps small against the price's scale of change
    assert g.delta == pytest.approx((price(spot=100 + h) - price(spot=100 - h)) / (2 * h), rel=1e-5, abs=1e-7)
    gamma = (price(spot=100 + 10 * h) - 2 * g.price + price(spot=100 - 10 * h)) / (10 * h) ** 2
    assert g.gamma == pytest.approx(gamma, rel=1e-3, abs=1e-7)
    dt = years * 1e-4
    assert g.theta_per_year == pytest.approx(-(price(years=years + dt) - price(years=years - dt)) / (2 * dt), rel=1e-5, abs=1e-6)
    assert g.theta_per_day == pytest.approx(g.theta_per_year / 365)
    assert g.vega == pytest.approx((price(volatility=vol + 1e-5) - price(volatility=vol - 1e-5)) / 2e-5 / 100, rel=1e-5, abs=1e-8)
    assert g.rho == pytest.approx((price(rate=0.06 + 1e-6) - price(rate=0.06 - 1e-6)) / 2e-6 / 100, rel=1e-5, abs=1e-8)


def test_vectorised_values_equal_the_scalar_ones():
    strikes = np.array([50.0, 80, 100, 120, 200] * 2)
    calls = np.array([True] * 5 + [False] * 5)
    for model in ("bs", "black76"):
        chain = chain_values(model=model, call=calls, spot=100, strike=strikes, years=0.3, rate=0.05, volatility=0.4, dividend_yield=0.01)
        for i in range(10):
            one = value(
                model=model,
                side="call" if calls[i] else "put",
                spot=100,
                strike=strikes[i],
                years=0.3,
                rate=0.05,
                volatility=0.4,
                dividend_yield=0.01,
            )
            for name in ("price", "delta", "gamma", "theta_per_year", "theta_per_day", "vega", "rho", "d1", "d2"):
                assert getattr(chain, name)[i] == pytest.approx(getattr(one, name), rel=1e-10, abs=1e-13), name


# --- limits ----------------------------------------------------------------------------------


def test_zero_time_to_expiry_is_the_intrinsic_limit():
    itm = value(spot=110, strike=100, years=0.0, rate=0.05, volatility=0.3)
    otm = value(side="put", spot=110, strike=100, years=0.0, rate=0.05, volatility=0.3)
    assert (itm.price, itm.delta, itm.gamma, itm.vega, itm.d1, itm.d2) == (10.0, 1.0, 0.0, 0.0, None, None)
    assert (otm.price, otm.delta, otm.gamma, otm.vega) == (0.0, 0.0, 0.0, 0.0)
    chain = chain_values(model="bs", call=[True, False], spot=110, strike=100, years=0.0, rate=0.05, volatility=0.3)
    assert list(chain.price) == [10.0, 0.0] and np.isnan(chain.d1).all()
    assert all(np.isfinite(getattr(chain, n)).all() for n in ("price", "delta", "gamma", "theta_per_year", "vega", "rho"))


def test_zero_volatility_is_the_discounted_forward_intrinsic():
    call = value(spot=100, strike=90, years=1.0, rate=0.05, volatility=0.0)
    assert call.price == pytest.approx(100 - 90 * math.exp(-0.05))
    assert call.delta == pytest.approx(1.0) and call.gamma == 0.0 and call.d1 is None


def test_extreme_volatility_tends_to_the_upper_bound():
    call = value(spot=100, strike=100, years=2.0, rate=0.05, volatility=50.0, dividend_yield=0.02)
    assert call.price == pytest.approx(100 * math.exp(-0.04), rel=1e-9)
    assert all(math.isfinite(getattr(call, n)) for n in ("delta", "gamma", "theta_per_year", "vega", "rho"))


def test_bad_inputs_are_refused():
    for bad in (dict(spot=0.0), dict(strike=-1.0), dict(years=-0.1), dict(volatility=float("nan"))):
        with pytest.raises(ValueError):
            value(**{**dict(spot=100.0, strike=100.0, years=1.0, rate=0.05, volatility=0.2), **bad})


def test_act_365_to_the_expiry_moment():
    assert years_to_expiry(1_000_000 + 365 * 86_400, 1_000_000) == 1.0
    assert years_to_expiry(1_000_000, 1_000_000 + 5) == 0.0


def test_the_simulator_prices_with_the_same_implementation():
    assert option_price(5000, 5100, 0.1, 0.2, call=True) == value(spot=5000, strike=5100, years=0.1, rate=0.04, volatility=0.2).price
    spots = np.array([4900.0, 5000.0])
    smile = [0.2 + 0.8 * math.log(5100 / s) ** 2 - 0.1 * math.log(5100 / s) for s in spots]
    prices = option_prices(spots, 5100, np.array([0.1, 0.1]), 0.2, call=False)
    for got, spot, iv in zip(prices, spots, smile, strict=True):
        assert got == pytest.approx(value(side="put", spot=spot, strike=5100, years=0.1, rate=0.04, volatility=iv).price, rel=1e-12)


# --- implied volatility ----------------------------------------------------------------------

MONEYNESS = (0.5, 0.6, 0.8, 0.95, 1.0, 1.05, 1.25, 1.5, 2.0)
EXPIRIES = (1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 2.0)
VOLS = (0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0)


def _round_trip_cases(model):
    for m, years, vol, side in itertools.product(MONEYNESS, EXPIRIES, VOLS, ("call", "put")):
        kw = dict(model=model, spot=100.0, strike=100.0 * m, years=years, rate=0.05, dividend_yield=0.02)
        price = value(side=side, volatility=vol, **kw).price
        f = 100.0 if model == "black76" else 100.0 * math.exp(0.03 * years)
        time_value = value(side="call" if kw["strike"] >= f else "put", volatility=vol, **kw).price  # the OTM side's price
        yield side, kw, vol, price, time_value >= 1e-8 * price and price >= sys.float_info.min


@pytest.mark.parametrize("model", ["bs", "black76"])
def test_implied_volatility_round_trip(model):
    solved = refused = 0
    for side, kw, vol, price, recoverable in _round_trip_cases(model):
        iv = implied_volatility(option_type=side, price=price, **kw)
        if recoverable:
            assert iv.volatility == pytest.approx(vol, abs=1e-6), (side, kw, vol, price, iv)
            solved += 1
        else:  # the time value is rounding: no volatility is the right answer
            assert iv.volatility is None and iv.reason in ("time_value_lost", "below_intrinsic", "non_positive_price"), (side, kw, vol, iv)
            refused += 1
    assert solved > 600 and refused > 50  # deep in and out of the money are both in the grid


@pytest.mark.parametrize("model", ["bs", "black76"])
def test_vectorised_solver_agrees_with_brentq(model):
    cases = list(_round_trip_cases(model))
    chain = chain_implied_volatility(
        model=model,
        call=np.array([side == "call" for side, *_ in cases]),
        price=np.array([price for *_, price, _ in cases]),
        spot=100.0,
        strike=np.array([kw["strike"] for _, kw, *_ in cases]),
        years=np.array([kw["years"] for _, kw, *_ in cases]),
        rate=0.05,
        dividend_yield=0.02,
    )
    for (side, kw, vol, price, _), got in zip(cases, chain.results(), strict=True):
        oracle = implied_volatility(option_type=side, price=price, **kw)
        assert got.reason == oracle.reason, (side, kw, vol)
        if oracle.volatility is not None:
            assert got.volatility == pytest.approx(oracle.volatility, abs=1e-9), (side, kw, vol)


def test_no_solution_reasons():
    kw = dict(model="bs", spot=100.0, strike=90.0, years=0.5, rate=0.05)
    assert implied_volatility(option_type="call", price=0.0, **kw).reason == "non_positive_price"
    assert implied_volatility(option_type="call", price=-1.0, **kw).reason == "non_positive_price"
    assert implied_volatility(option_type="call", price=5.0, **kw).reason == "below_intrinsic"  # intrinsic ~12.2
    assert implied_volatility(option_type="call", price=100.0, **kw).reason == "above_upper_bound"
    assert implied_volatility(option_type="put", price=95.0, **kw).reason == "above_upper_bound"
    assert implied_volatility(option_type="call", price=12.0, **{**kw, "years": 0.0}).reason == "expired"
    intrinsic = 100 - 90 * math.exp(-0.025)
    assert implied_volatility(option_type="call", price=intrinsic * (1 + 1e-12), **kw).reason == "time_value_lost"
    assert implied_volatility(option_type="call", price=float("nan"), **kw).reason == "invalid_input"
    result = chain_implied_volatility(
        model="bs", call=True, price=np.array([0.0, 5.0, 100.0, 15.0]), spot=100, strike=90, years=0.5, rate=0.05
    )
    assert [r.reason for r in result.results()] == ["non_positive_price", "below_intrinsic", "above_upper_bound", None]
    assert result.results()[3].volatility == pytest.approx(implied_volatility(option_type="call", price=15.0, **kw).volatility, abs=1e-10)


def test_the_analytics_are_pure_python_without_django():
    code = "import sys, marketdata.analytics.pricing, marketdata.analytics.implied; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
