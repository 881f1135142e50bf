"""The F&O analytics endpoints: the option calculator, the strike distribution
over the simulator's option chain, the moneyness series, futures buildup
signals and rollover metrics; their shapes and their errors."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache

from marketdata.analytics.pricing import option_value, years_to_expiry
from marketdata.feeds.derivatives import smile_iv
from marketdata.models import Instrument
from marketdata.quotes import quotes_forget, quotes_store
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.sessions import contract_expiry
from marketdata.simulation import demo_instruments_ensure, simulated_quotes
from marketdata.types import Bar, Quote

pytestmark = pytest.mark.django_db


def _json(response):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON")

    return json.loads(response.content, parse_constant=refuse)


def get(client, path, **params):
    response = client.get(f"/api/v1/{path}", params)
    return response.status_code, _json(response)


# --- the calculator ----------------------------------------------------------------------------


def test_calculator_answers_hulls_greeks(alice_api):
    status, body = get(alice_api, "fo/calculator", option_type="call", spot=49, strike=50, time_years=20 / 52, rate=0.05, volatility=0.2)
    assert status == 200, body
    assert round(body["price"], 4) == 2.4005 and round(body["delta"], 4) == 0.5216 and round(body["gamma"], 4) == 0.0655
    assert round(body["theta_per_year"], 4) == -4.3053 and round(body["theta_per_day"], 4) == -0.0118
    assert round(body["vega"], 4) == 0.1211 and round(body["rho"], 4) == 0.0891
    assert round(body["d1"], 4) == 0.0542 and body["reason"] is None


def test_calculator_black76_and_implied_volatility(alice_api):
    status, body = get(
        alice_api, "fo/calculator", model="black76", option_type="put", spot=20, strike=20, time_years=1 / 3, rate=0.09, volatility=0.25
    )
    assert status == 200 and round(body["price"], 4) == 1.1166
    status, body = get(
        alice_api, "fo/calculator", model="black76", option_type="put", spot=20, strike=20, time_years=1 / 3, rate=0.09, price=body["price"]
    )
    assert status == 200 and body["implied_volatility"] == pytest.approx(0.25, abs=1e-9) and body["reason"] is None


def test_calculator_no_solution_is_null_with_a_reason(alice_api):
    base = dict(option_type="call", spot=100, strike=90, time_years=0.5, rate=0.05)
    for price, reason in ((0, "non_positive_price"), (-3, "non_positive_price"), (5, "below_intrinsic"), (150, "above_upper_bound")):
        status, body = get(alice_api, "fo/calculator", price=price, **base)
        assert status == 200 and body["implied_volatility"] is None and body["reason"] == reason


def test_calculator_at_expiry_is_the_intrinsic_limit(alice_api):
    status, body = get(alice_api, "fo/calculator", option_type="call", spot=110, strike=100, time_years=0, rate=0.05, volatility=0.3)
    assert status == 200 and body["price"] == 10.0 and body["d1"] is None and body["gamma"] == 0.0 and body["reason"] == "no_time_value"
    status, body = get(alice_api, "fo/calculator", option_type="call", spot=110, strike=100, time_years=1, rate=0.05, volatility=100)
    assert status == 200 and math.isfinite(body["price"])  # an extreme volatility is still a number


@pytest.mark.parametrize(
    "params,field",
    [
        (dict(spot=0), "spot"),
        (dict(spot=-5), "spot"),
        (dict(strike="nan"), "strike"),
        (dict(time_years=-1), "time_years"),
        (dict(volatility=None), "volatility"),  # neither volatility nor price
        (dict(price=3), "volatility"),  # both
        (dict(option_type="straddle"), "option_type"),
        (dict(model="heston"), "model"),
    ],
)
def test_calculator_refuses_bad_input(alice_api, params, field):
    query = {"option_type": "call", "spot": 100, "strike": 100, "time_years": 1, "rate": 0.05, "volatility": 0.2, **params}
    status, body = get(alice_api, "fo/calculator", **{k: v for k, v in query.items() if v is not None})
    assert status == 422 and field in body["error"]["fields"], body


def test_calculator_needs_credentials(api):
    status, body = get(api, "fo/calculator", option_type="call", spot=1, strike=1, time_years=1, rate=0, volatility=0.2)
    assert status == 401 and "error" in body


# --- the option chain ----------------------------------------------------------------------------


@pytest.fixture
def chain(settings):
    """The demo instruments with the simulator's quotes at this second (stored as the loop would)."""
    settings.SIMULATOR_ENABLED = False
    now = time.time()
    demo_instruments_ensure(now=now)
    symbols = list(Instrument.objects.values_list("symbol", flat=True))
    quotes_store(simulated_quotes(symbols, now=now).values())
    options = Instrument.objects.filter(type="option").order_by("strike")
    yield {"now": now, "expiry": options[0].expiry, "options": list(options), "symbols": symbols}
    quotes_forget(symbols)


def test_strike_distribution_recovers_the_simulators_smile(alice_api, chain):
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry=chain["expiry"].isoformat(), strikes=11)
    assert status == 200, body
    assert body["model"] == "bs" and body["rate"] == 0.04 and len(body["strikes"]) == 11
    spot = float(body["spot"])
    option = chain["options"][0]
    expiry_ts = contract_expiry(option.expiry, option.timezone, option.session)
    assert body["expiry_time"] == datetime.fromtimestamp(expiry_ts, UTC).isoformat().replace("+00:00", "Z")
    forward = spot * math.exp(0.04 * body["years_to_expiry"])
    assert abs(float(body["atm_strike"]) - forward) <= 25  # the strike nearest the forward (50 apart)
    checked = 0
    for row in body["strikes"]:
        for side in ("call", "put"):
            leg = row[side]
            assert leg["moneyness"] == ("ATM" if row["moneyness_steps"] == 0 else leg["moneyness"])
            if leg["iv"] is None or float(leg["price"]) < 1:  # prices of a few ticks carry little IV
                continue
            # The simulator prices at its smile; the mid sits within a spread of that price.
            assert leg["iv"] == pytest.approx(smile_iv(spot, float(row["strike"]), 0.2), abs=0.02)
            assert 0 < abs(leg["delta"]) < 1 and leg["gamma"] > 0 and leg["vega"] > 0 and leg["theta_per_day"] < 0
            assert leg["theta_per_day"] == pytest.approx(leg["theta_per_year"] / 365)
            assert leg["depth"]["spread"] > 0 and 0 <= leg["depth"]["liquidity_score"] <= 100
            checked += 1
    assert checked >= 6
    calls = [r["call"] for r in body["strikes"]]
    assert [c["moneyness"] for c in calls][:5] == ["ITM5", "ITM4", "ITM3", "ITM2", "ITM1"] or body["strikes"][0]["moneyness_steps"] != -5


def test_strike_distribution_aggregates(alice_api, chain):
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry=chain["expiry"].isoformat(), strikes=400)
    assert status == 200
    quotes = simulated_quotes(chain["symbols"], now=chain["now"])
    call_oi = sum(float(quotes[o.symbol].open_interest) for o in chain["options"] if o.option_type == "call")
    put_oi = sum(float(quotes[o.symbol].open_interest) for o in chain["options"] if o.option_type == "put")
    assert body["pcr_oi"] == pytest.approx(put_oi / call_oi)
    assert body["max_pain"] in {r["strike"] for r in body["strikes"]}
    assert len(body["smile"]) == len(body["strikes"]) == 11
    assert body["atm_iv"] == pytest.approx(smile_iv(float(body["spot"]), float(body["atm_strike"]), 0.2), abs=0.02)


def test_strike_distribution_filters_a_side_and_premium_against_the_smile(alice_api, chain):
    status, body = get(
        alice_api,
        "fo/strike-distribution",
        underlying="DEMO:IDX",
        expiry=chain["expiry"].isoformat(),
        option_side="put",
        strikes=3,
        iv_basis="smile",
    )
    assert status == 200 and len(body["strikes"]) == 3
    assert all(r["call"] is None and r["put"] is not None for r in body["strikes"])
    for row in body["strikes"]:
        premium = row["put"]["premium"]
        if premium["model_price"] is not None:
            assert premium["premium"] == pytest.approx(float(row["put"]["price"]) - premium["model_price"])


def test_missing_quotes_are_null_fields_with_a_reason(alice_api, chain):
    quotes_forget([o.symbol for o in chain["options"]])
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry=chain["expiry"].isoformat(), strikes=2)
    assert status == 200
    for row in body["strikes"]:
        assert row["call"]["iv"] is None and row["call"]["iv_reason"] == "no_quote" and row["call"]["delta"] is None
    quotes_forget(["DEMO:IDX"])
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry=chain["expiry"].isoformat(), strikes=2)
    assert status == 200 and body["spot"] is None and body["spot_reason"] == "no_underlying_quote"


def test_chain_errors(alice_api, chain):
    expiry = chain["expiry"].isoformat()
    status, body = get(alice_api, "fo/strike-distribution", underlying="NOPE", expiry=expiry)
    assert status == 404 and body["error"]["code"] == "unknown_symbol"
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry="2020-01-30")
    assert status == 404 and body["error"]["code"] == "unknown_expiry"
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry="not-a-date")
    assert status == 422 and "expiry" in body["error"]["fields"]
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry=expiry, strikes=0)
    assert status == 422 and "strikes" in body["error"]["fields"]
    index = Instrument.objects.get(symbol="DEMO:IDX")
    old = date.today() - timedelta(days=3)
    instrument_upsert(symbol="DEMO:IDX-OLD-C5000", type="option", underlying=index, expiry=old, strike=Decimal(5000), option_type="call")
    status, body = get(alice_api, "fo/strike-distribution", underlying="DEMO:IDX", expiry=old.isoformat())
    assert status == 422 and body["error"]["code"] == "expired_contract"


# --- moneyness series ----------------------------------------------------------------------------


def test_moneyness_series_reselects_the_strike_as_the_underlying_moves(alice_api):
    index = instrument_upsert(
        symbol="SER:IDX", type="index", tick_size=Decimal("0.01"), risk_free_rate=Decimal("0.05"), dividend_yield=Decimal("0.01")
    )
    expiry = date.today() + timedelta(days=40)
    strikes = [90, 95, 100, 105, 110]
    legs = {
        k: instrument_upsert(symbol=f"SER:C{k}", type="option", underlying=index, expiry=expiry, strike=Decimal(k), option_type="call")
        for k in strikes
    }
    expiry_ts = contract_expiry(expiry, "UTC", "24x7")
    start = (int(time.time()) // 3600 - 5) * 3600
    spots = [99.0, 101.0, 104.0, 106.0]  # ATM: 100, 100, 105, 105
    index_bars, option_bars = [], []
    for n, spot in enumerate(spots):
        t = start + n * 3600
        index_bars.append((index.id, Bar(t, Decimal(str(spot)), Decimal(str(spot)), Decimal(str(spot)), Decimal(str(spot)))))
        years = years_to_expiry(expiry_ts, t)
        for k, leg in legs.items():
            price = option_value(
                model="bs", option_type="call", spot=spot, strike=k, years=years, rate=0.05, dividend_yield=0.01, volatility=0.3
            ).price
            close = Decimal(repr(price))
            option_bars.append((leg.id, Bar(t, close, close, close, close, open_interest=Decimal(1000 + n))))
    bars_upsert_many(resolution="60", bars=index_bars + option_bars)
    status, body = get(
        alice_api,
        "fo/moneyness-series",
        underlying="SER:IDX",
        expiry=expiry.isoformat(),
        option_side="call",
        moneyness="atm",
        metric="iv",
        resolution="60",
        **{"from": start, "to": start + 4 * 3600},
    )
    assert status == 200, body
    assert [p["strike"] for p in body["points"]] == ["100", "100", "105", "105"]
    assert all(p["value"] == pytest.approx(0.3, abs=1e-6) for p in body["points"])
    status, body = get(
        alice_api,
        "fo/moneyness-series",
        underlying="SER:IDX",
        expiry=expiry.isoformat(),
        option_side="call",
        moneyness="ITM1",
        metric="delta",
        resolution="60",
        **{"from": start, "to": start + 4 * 3600},
    )
    assert [p["strike"] for p in body["points"]] == ["95", "95", "100", "100"]
    assert all(0.5 < p["value"] < 1 for p in body["points"])
    status, body = get(
        alice_api,
        "fo/moneyness-series",
        underlying="SER:IDX",
        expiry=expiry.isoformat(),
        option_side="call",
        moneyness="OTM2",
        metric="premium",
        resolution="60",
        **{"from": start, "to": start + 4 * 3600},
    )
    assert [p["strike"] for p in body["points"]] == ["110", "110", None, None]
    assert body["points"][2]["reason"] == "no_strike_at_moneyness"
    status, body = get(
        alice_api,
        "fo/moneyness-series",
        underlying="SER:IDX",
        expiry=expiry.isoformat(),
        option_side="call",
        moneyness="ATM7x",
        metric="iv",
    )
    assert status == 422 and "moneyness" in body["error"]["fields"]


# --- futures --------------------------------------------------------------------------------------


def test_position_signals_on_a_hand_computed_series(alice_api):
    index = instrument_upsert(symbol="SIG:IDX", type="index")
    future = instrument_upsert(symbol="SIG:F", type="future", underlying=index, expiry=date.today() + timedelta(days=20))
    start = (int(time.time()) // 60 - 30) * 60
    closes = ["100", "101", "100.5", "100", "100.8", "100.8", "100.85"]
    ois = [1000, 1100, 1200, 1100, 1000, 1000, 1200]
    bars_upsert_many(
        resolution="1",
        bars=[
            (future.id, Bar(start + 60 * n, Decimal(c), Decimal(c), Decimal(c), Decimal(c), open_interest=Decimal(oi)))
            for n, (c, oi) in enumerate(zip(closes, ois, strict=True))
        ],
    )
    status, body = get(
        alice_api,
        "futures/position-signals",
        underlying="SIG:IDX",
        resolution="1",
        threshold_percent=0.1,
        **{"from": start, "to": start + 7 * 60},
    )
    assert status == 200, body
    assert body["contract"] == "SIG:F" and body["bars"] == 7
    assert [i["signal"] for i in body["intervals"]] == [
        "long_buildup",
        "short_buildup",
        "long_unwinding",
        "short_covering",
        "neutral",
        "neutral",
    ]
    first = body["intervals"][0]
    assert (
        first["price_change"] == "1"
        and first["oi_change"] == "100"
        and first["price_change_percent"] == pytest.approx(1.0)
        and first["oi_change_percent"] == pytest.approx(10.0)
    )
    # 100.8 -> 100.85 is +0.0496%: under the 0.1% threshold although OI rose 20%.
    assert body["intervals"][5]["oi_change_percent"] == pytest.approx(20.0)
    status, body = get(
        alice_api,
        "futures/position-signals",
        underlying="SIG:IDX",
        resolution="1",
        threshold_percent=0.01,
        **{"from": start, "to": start + 7 * 60},
    )
    assert body["intervals"][5]["signal"] == "long_buildup"
    status, body = get(alice_api, "futures/position-signals", underlying="NOPE", resolution="1")
    assert status == 404
    status, body = get(alice_api, "futures/position-signals", underlying="SIG:IDX", resolution="7")
    assert status == 422 and body["error"]["code"] == "unsupported_resolution"


def test_rollover_metrics_on_hand_computed_quotes(alice_api):
    index = instrument_upsert(symbol="ROL:IDX", type="index")
    today = date.today()
    near = instrument_upsert(symbol="ROL:F1", type="future", underlying=index, expiry=today + timedelta(days=10))
    instrument_upsert(symbol="ROL:F2", type="future", underlying=index, expiry=today + timedelta(days=40))
    instrument_upsert(symbol="ROL:F0", type="future", underlying=index, expiry=today - timedelta(days=20))  # expired: left out
    now = time.time()
    quotes_store(
        [
            Quote(symbol="ROL:IDX", time=now, last=Decimal("1000")),
            Quote(symbol="ROL:F1", time=now, last=Decimal("1005"), open_interest=Decimal(3000)),
            Quote(symbol="ROL:F2", time=now, last=Decimal("1020"), open_interest=Decimal(1000)),
        ]
    )
    try:
        status, body = get(alice_api, "futures/rollover-metrics", underlying="ROL:IDX")
    finally:
        cache.delete_many(["md:quote:ROL:IDX", "md:quote:ROL:F1", "md:quote:ROL:F2"])
    assert status == 200, body
    assert [c["symbol"] for c in body["contracts"]] == ["ROL:F1", "ROL:F2"]
    assert body["rollover_percent"] == pytest.approx(25.0) and body["calendar_spread"] == pytest.approx(15.0)
    f1 = body["contracts"][0]
    days = (contract_expiry(near.expiry, "UTC", "24x7") - now) / 86_400
    assert f1["days_to_expiry"] == pytest.approx(days, abs=1e-3) and f1["oi_share_percent"] == pytest.approx(75.0)
    assert f1["basis"] == pytest.approx(5.0) and f1["basis_percent"] == pytest.approx(0.5)
    assert f1["annualised_basis_percent"] == pytest.approx(0.5 * 365 / days, rel=1e-4)
    assert f1["cost_of_carry"] == pytest.approx(math.log(1.005) / (days / 365), rel=1e-4)
    assert get(alice_api, "futures/rollover-metrics", underlying="AAPLX")[0] == 404
    instrument_upsert(symbol="BARE", type="stock")
    status, body = get(alice_api, "futures/rollover-metrics", underlying="BARE")
    assert status == 404 and body["error"]["code"] == "no_futures"
