"""FX rates from market data: direct, inverse and cross rates from the latest
quotes of FX instruments; unknown and stale rates are no rate."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.test import override_settings

from marketdata.fx import FxRateUnavailable, fx_convert, fx_rate, fx_rates
from marketdata.models import Instrument
from marketdata.quotes import quote_get, quote_store, quotes_forget
from marketdata.simulation import DEMO_FX, demo_fx_ensure, demo_instruments_ensure, runtime_reset, simulator_step
from marketdata.types import Quote

D = Decimal
FX_SYMBOLS = ["USD/KRW", "KRW/USD", "USD/INR", "INR/USD", "USDT/USD", "USD/USDT", "EUR/USD", "USD/EUR", "BTC/USDT", "KRW/INR", "INR/KRW"]


@pytest.fixture
def quotes(settings):
    """Store quotes for the test, and remove every FX key afterwards (Redis is
    shared by the run). A missing quote stays missing: no simulated lookup."""
    settings.SIMULATOR_ENABLED = False
    quotes_forget(FX_SYMBOLS)

    def store(symbol: str, bid: str, ask: str, *, age: float = 0.0) -> None:
        quote_store(Quote(symbol=symbol, time=time.time() - age, last=D(bid), bid=D(bid), ask=D(ask)))

    yield store
    quotes_forget(FX_SYMBOLS)


def test_same_currency_is_one_without_any_quote(quotes):
    assert fx_rate("KRW", "KRW") == 1
    assert fx_rate("usd", "USD") == 1


def test_direct_pair_is_its_mid(quotes):
    quotes("USD/KRW", "1380.00", "1380.10")
    assert fx_rate("USD", "KRW") == D("1380.05")
    assert fx_convert(D(10), "USD", "KRW") == D("13800.50")


def test_inverse_pair_is_one_over_the_mid(quotes):
    quotes("USD/KRW", "1379.95", "1380.05")
    rate = fx_rate("KRW", "USD")
    assert rate == D("0.000724637681159")  # 1 / 1380 to 12 significant digits
    assert fx_convert(D(504_000), "KRW", "USD").quantize(D("0.01")) == D("365.22")


def test_cross_goes_through_usd(quotes):
    quotes("USD/KRW", "1380", "1380")
    quotes("USD/INR", "83", "83")
    # One rupee = 1/83 dollar = 1380/83 won.
    assert fx_rate("INR", "KRW") == D("16.6265060241")
    assert fx_rate("KRW", "INR") == D("0.0601449275362")


def test_usdt_is_its_own_currency_worth_usdt_usd(quotes):
    quotes("USDT/USD", "0.9990", "0.9992")
    quotes("USD/KRW", "1400", "1400")
    quotes("BTC/USDT", "60000", "60000")
    assert fx_rate("USDT", "USD") == D("0.9991")
    assert fx_rate("USD", "USDT") == D("1.00090081073")
    assert fx_rate("USDT", "KRW") == D("1398.74")
    # A coin pair is a rate too: one bitcoin in dollars goes through USDT.
    assert fx_rate("BTC", "USD") == D("59946")


def test_a_direct_quote_wins_over_the_inverse_of_the_opposite_pair(quotes):
    quotes("USD/KRW", "1380", "1380")
    quotes("KRW/USD", "0.0008", "0.0008")  # inconsistent on purpose
    assert fx_rate("USD", "KRW") == 1380
    assert fx_rate("KRW", "USD") == D("0.0008")


def test_unknown_currency_has_no_rate_and_convert_raises_a_clear_error(quotes):
    quotes("USD/KRW", "1380", "1380")
    assert fx_rate("XYZ", "USD") is None
    assert fx_rate("USD", "INR") is None
    with pytest.raises(FxRateUnavailable) as raised:
        fx_convert(D(1), "XYZ", "KRW")
    assert raised.value.code == "fx_rate_unavailable" and raised.value.status_code == 409
    assert "XYZ" in raised.value.message and "KRW" in raised.value.message


@override_settings(QUOTE_STALE_SECONDS=10)
def test_a_stale_quote_is_no_rate_unless_stale_is_allowed(quotes):
    quotes("USD/KRW", "1380", "1380", age=60)
    assert fx_rate("USD", "KRW") is None
    assert fx_rate("USD", "KRW", allow_stale=True) == 1380
    with pytest.raises(FxRateUnavailable, match="fresh"):
        fx_convert(D(1), "USD", "KRW")
    # A stale leg breaks a cross as well.
    quotes("USD/INR", "83", "83")
    assert fx_rate("INR", "KRW") is None


def test_rates_of_several_currencies_at_once_leave_out_the_unknown(quotes):
    quotes("USD/KRW", "1380", "1380")
    quotes("USD/INR", "83", "83")
    quotes("USDT/USD", "1", "1")
    rates = fx_rates(["KRW", "INR", "USDT", "USD", "XYZ"], "USD")
    assert rates == {"KRW": D("0.000724637681159"), "INR": D("0.0120481927711"), "USDT": D(1), "USD": D(1)}


@pytest.mark.django_db
@override_settings(SIMULATOR_HISTORY_DAYS=0)
def test_the_simulator_quotes_fx_rates_at_plausible_levels(quotes):
    now = time.time()
    demo_instruments_ensure(now=now)
    runtime_reset()
    try:
        simulator_step(now)
    finally:
        runtime_reset()
    assert set(Instrument.objects.filter(type="fx").values_list("symbol", flat=True)) == {"USD/KRW", "USD/INR", "USDT/USD", "EUR/USD"}
    for symbol, low, high in [
        ("USD/KRW", 1000, 2000),
        ("USD/INR", 60, 110),
        ("USDT/USD", D("0.97"), D("1.03")),
        ("EUR/USD", D("0.8"), D("1.4")),
    ]:
        quote = quote_get(symbol)
        assert quote is not None and low < quote.last < high, symbol
    # Rates as of the step's moment: on a loaded machine the step itself may outlast QUOTE_STALE_SECONDS.
    assert D(1000) < fx_rate("USD", "KRW", now=now) < D(2000)
    assert D("0.0005") < fx_rate("KRW", "USD", now=now) < D("0.001")


@pytest.mark.django_db
def test_a_database_seeded_before_fx_gets_the_rates_added_once():
    Instrument.objects.create(symbol="AAPL", currency="USD")
    assert {i.symbol for i in demo_instruments_ensure()} == {spec["symbol"] for spec in DEMO_FX}
    assert demo_fx_ensure() == []
    assert Instrument.objects.get(symbol="USD/KRW").currency == "KRW"


@pytest.mark.django_db
def test_fx_rates_show_in_symbols_the_datafeed_and_quotes(alice_api, quotes):
    demo_fx_ensure()
    quotes("USD/KRW", "1380.00", "1380.10")
    listed = alice_api.get("/api/v1/symbols", {"type": "fx"}).json()["results"]
    assert sorted(s["symbol"] for s in listed) == ["EUR/USD", "USD/INR", "USD/KRW", "USDT/USD"]
    resolved = alice_api.get("/api/v1/datafeed/symbols", {"symbol": "USD/KRW"}).json()
    assert (resolved["name"], resolved["type"], resolved["currency_code"]) == ("USD/KRW", "fx", "KRW")
    (quoted,) = alice_api.get("/api/v1/quotes", {"symbols": "USD/KRW"}).json()["results"]
    assert (quoted["symbol"], quoted["bid"], quoted["ask"], quoted["stale"]) == ("USD/KRW", "1380", "1380.1", False)
