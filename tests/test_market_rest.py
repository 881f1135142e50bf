"""Market data for programs other than TradingView: /symbols, /quotes and
/history-bars in the project's conventions (decimal strings, ISO times, the
error shape, cursor lists)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import override_settings

from marketdata.quotes import quote_store
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.types import Bar, Quote

pytestmark = pytest.mark.django_db

SYMBOLS = ("AAPL", "BTC/USDT", "NSE:INFY", "OLD", "DEMO:IDX", "DEMO:IDX-F2406")


@pytest.fixture(autouse=True)
def _no_stray_quotes():
    """The cache may be a shared Redis: start and end without quotes for our symbols."""
    keys = [f"md:quote:{symbol}" for symbol in SYMBOLS]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


START = int(datetime(2024, 3, 4, 14, 30, tzinfo=UTC).timestamp())


@pytest.fixture
def instruments(db):
    index = instrument_upsert(symbol="DEMO:IDX", description="Demo index", exchange="DEMO", type="index", tick_size=Decimal("0.05"))
    return {
        "AAPL": instrument_upsert(
            symbol="AAPL", description="Apple Inc.", exchange="NASDAQ", type="stock", tick_size=Decimal("0.01"), timezone="America/New_York"
        ),
        "BTC/USDT": instrument_upsert(
            symbol="BTC/USDT", description="Bitcoin / Tether", exchange="SIMEX", type="crypto", currency="USDT", tick_size=Decimal("0.1"),
            lot_size=Decimal("0.0001"),
        ),
        "NSE:INFY": instrument_upsert(symbol="NSE:INFY", description="Infosys", exchange="NSE", type="stock", currency="INR", tick_size=Decimal("0.05")),
        "OLD": instrument_upsert(symbol="OLD", description="Delisted", exchange="NASDAQ", type="stock", active=False),
        "DEMO:IDX": index,
        "DEMO:IDX-F2406": instrument_upsert(
            symbol="DEMO:IDX-F2406", exchange="DEMO", type="future", multiplier=Decimal(50), underlying=index, expiry=datetime(2024, 6, 27).date()
        ),
    }  # fmt: skip


@pytest.fixture
def quotes(instruments):
    stored = [
        Quote(
            symbol="AAPL", time=time.time(), last=Decimal("190.12"), bid=Decimal("190.11"), ask=Decimal("190.13"), prev_close=Decimal(189)
        ),
        Quote(symbol="BTC/USDT", time=time.time() - 3600, last=Decimal("60000.5")),
    ]
    for quote in stored:
        quote_store(quote)
    yield stored
    cache.delete_many([f"md:quote:{q.symbol}" for q in stored])


# --- /symbols ---------------------------------------------------------------------------


def test_symbols_lists_every_instrument_with_its_fields_by_cursor(alice_api, instruments):
    seen = []
    url = "/api/v1/symbols?limit=4"
    while url:
        response = alice_api.get(url)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"results", "next"}
        seen += body["results"]
        url = f"/api/v1/symbols?limit=4&cursor={body['next']}" if body["next"] else None
    assert [i["symbol"] for i in seen] == sorted(instruments)
    btc = next(i for i in seen if i["symbol"] == "BTC/USDT")
    assert btc["id"] == instruments["BTC/USDT"].id
    assert (btc["tick_size"], btc["lot_size"], btc["multiplier"], btc["strike"]) == ("0.1", "0.0001", "1", None)
    assert {"exchange", "type", "currency", "session", "timezone", "expiry", "option_type", "underlying", "broker_codes", "active"} <= set(
        btc
    )
    future = next(i for i in seen if i["symbol"] == "DEMO:IDX-F2406")
    assert (future["underlying"], future["multiplier"], future["expiry"]) == ("DEMO:IDX", "50", "2024-06-27")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=stock", ["AAPL", "NSE:INFY", "OLD"]),
        ("exchange=nasdaq", ["AAPL", "OLD"]),
        ("active=false", ["OLD"]),
        ("active=true&type=stock", ["AAPL", "NSE:INFY"]),
        ("search=coin", ["BTC/USDT"]),
        ("search=demo&type=future", ["DEMO:IDX-F2406"]),
    ],
)
def test_symbols_filters(alice_api, instruments, query, expected):
    response = alice_api.get(f"/api/v1/symbols?{query}")
    assert response.status_code == 200
    assert [i["symbol"] for i in response.json()["results"]] == expected


def test_symbols_refuses_an_unknown_type(alice_api, instruments):
    response = alice_api.get("/api/v1/symbols?type=bond")
    assert response.status_code == 422
    assert "type" in response.json()["error"]["fields"]


@pytest.mark.parametrize("path", ["BTC/USDT", "BTC/USDT/", "NSE:INFY", "NSE:INFY/", "AAPL"])
def test_one_symbol_with_its_latest_quote(alice_api, quotes, path):
    response = alice_api.get(f"/api/v1/symbols/{path}")
    assert response.status_code == 200
    body = response.json()
    assert body["symbol"] == path.rstrip("/")
    quote = body["quote"]
    if body["symbol"] == "NSE:INFY":
        assert quote is None
    else:
        assert quote["symbol"] == body["symbol"] and isinstance(quote["last"], str)
        assert quote["stale"] is (body["symbol"] == "BTC/USDT")


def test_unknown_symbol_is_404_in_the_error_shape(alice_api, instruments):
    response = alice_api.get("/api/v1/symbols/NOPE/X")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_symbol"


# --- /quotes ----------------------------------------------------------------------------


def test_quotes_are_decimal_strings_with_a_stale_flag(alice_api, quotes):
    response = alice_api.get("/api/v1/quotes?symbols=AAPL,BTC/USDT,NSE:INFY,NOPE")
    assert response.status_code == 200
    body = response.json()
    aapl, btc = body["results"]
    assert (aapl["symbol"], aapl["last"], aapl["bid"], aapl["ask"], aapl["change"]) == ("AAPL", "190.12", "190.11", "190.13", "1.12")
    assert aapl["stale"] is False and btc["stale"] is True
    assert btc["last"] == "60000.5"
    assert body["missing"] == ["NSE:INFY", "NOPE"]


@override_settings(DATAFEED_MAX_QUOTE_SYMBOLS=2)
def test_too_many_quotes_is_422_in_the_error_shape(alice_api, instruments):
    response = alice_api.get("/api/v1/quotes?symbols=A,B,C")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_many_symbols"
    assert alice_api.get("/api/v1/quotes").json()["error"]["fields"] == {"symbols": ["This field is required."]}


# --- /history-bars ----------------------------------------------------------------------


@pytest.fixture
def minutes(instruments):
    aapl = instruments["AAPL"]
    # Prices and volumes a float would not keep exact.
    rows = [
        (START + 60 * i, Decimal("100.1") + i, Decimal("100.35") + i, Decimal("99.95") + i, Decimal("100.2") + i, Decimal("0.1"))
        for i in range(12)
    ]
    bars_upsert_many(resolution="1", bars=[(aapl.id, Bar(time=t, open=o, high=h, low=lo, close=c, volume=v)) for t, o, h, lo, c, v in rows])
    return rows


def test_history_bars_are_decimal_strings_at_iso_times(alice_api, minutes):
    response = alice_api.get(f"/api/v1/history-bars?symbol=AAPL&resolution=1&from={START}&to={START + 180}")
    assert response.status_code == 200
    body = response.json()
    assert (body["symbol"], body["resolution"], body["next_time"]) == ("AAPL", "1", None)
    assert body["bars"] == [
        {"time": "2024-03-04T14:30:00Z", "open": "100.1", "high": "100.35", "low": "99.95", "close": "100.2", "volume": "0.1"},
        {"time": "2024-03-04T14:31:00Z", "open": "101.1", "high": "101.35", "low": "100.95", "close": "101.2", "volume": "0.1"},
        {"time": "2024-03-04T14:32:00Z", "open": "102.1", "high": "102.35", "low": "101.95", "close": "102.2", "volume": "0.1"},
    ]


def test_history_bars_aggregate_exactly_and_take_iso_times(alice_api, minutes):
    response = alice_api.get("/api/v1/history-bars?symbol=AAPL&resolution=5&from=2024-03-04T14:30:00Z&to=2024-03-04T14:40:00%2B00:00")
    assert response.status_code == 200
    assert response.json()["bars"] == [
        {"time": "2024-03-04T14:30:00Z", "open": "100.1", "high": "104.35", "low": "99.95", "close": "104.2", "volume": "0.5"},
        {"time": "2024-03-04T14:35:00Z", "open": "105.1", "high": "109.35", "low": "104.95", "close": "109.2", "volume": "0.5"},
    ]


def test_history_bars_countback_wins_and_resolution_aliases(alice_api, minutes):
    body = alice_api.get(f"/api/v1/history-bars?symbol=AAPL&resolution=D&countback=1&from={START + 10**6}&to={START + 86_400}").json()
    assert body["resolution"] == "1D"
    ((day,),) = [body["bars"]]
    assert (day["time"], day["open"], day["close"], day["volume"]) == ("2024-03-04T05:00:00Z", "100.1", "111.2", "1.2")


def test_history_bars_no_data_names_the_previous_bar(alice_api, minutes):
    body = alice_api.get(f"/api/v1/history-bars?symbol=AAPL&resolution=1&from={START + 3600}&to={START + 7200}").json()
    assert body["bars"] == [] and body["next_time"] == "2024-03-04T14:41:00Z"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("symbol=NOPE&resolution=1&countback=5", 404, "unknown_symbol"),
        ("symbol=AAPL&resolution=2&countback=5", 422, "unsupported_resolution"),
        ("symbol=AAPL&resolution=1&from=2024-03-05&to=2024-03-04", 422, "validation_error"),
        ("symbol=AAPL&resolution=1&countback=250001", 422, "over_cap"),
        ("symbol=AAPL&resolution=1&from=soon", 422, "validation_error"),
    ],
)
def test_history_bars_errors_use_the_error_shape(alice_api, minutes, query, status, code):
    response = alice_api.get(f"/api/v1/history-bars?{query}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


# --- auth and schema ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/symbols", "/api/v1/symbols/AAPL", "/api/v1/quotes?symbols=AAPL", "/api/v1/history-bars?symbol=AAPL"]
)
def test_rest_market_data_requires_auth_even_with_a_public_datafeed(api, instruments, path):
    with override_settings(DATAFEED_PUBLIC=True):
        response = api.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_schema_builds_and_documents_the_rest_paths(api):
    response = api.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    for path in ["/api/v1/symbols", "/api/v1/symbols/{symbol}", "/api/v1/quotes", "/api/v1/history-bars"]:
        assert "200" in paths[path]["get"]["responses"], path
    symbols = {p["name"] for p in paths["/api/v1/symbols"]["get"]["parameters"]}
    assert {"type", "exchange", "active", "search", "cursor", "limit"} <= symbols
