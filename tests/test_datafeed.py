"""The TradingView UDF datafeed under /api/v1/datafeed: shapes, history
semantics, aggregation checked against bars computed here from the same
1-minute data, quotes, auth, and the upstream paths."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.test import override_settings

import marketdata.api as marks_registry
from marketdata.quotes import quote_store
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.simulation import FEED_STATUS_KEY
from marketdata.types import Bar, Quote

pytestmark = pytest.mark.django_db

SYMBOLS = ("AAPL", "BTC/USDT", "NSE:INFY", "SPY", "005930")


@pytest.fixture(autouse=True)
def _no_stray_quotes():
    """The cache may be a shared Redis: start and end without quotes for our symbols."""
    keys = [f"md:quote:{symbol}" for symbol in SYMBOLS]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


NY = ZoneInfo("America/New_York")
UDF_ERROR = {"s", "errmsg"}
# 1 March 2024 00:00 UTC; the data runs past the US DST switch of 10 March.
START = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())


def _rows(times: list[int], seed: int = 7) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    rng = random.Random(seed)
    price = Decimal("100.00")
    rows = []
    for t in times:
        o = price
        c = max(Decimal("1.00"), o + Decimal(rng.randint(-50, 50)) / 100)
        h = max(o, c) + Decimal(rng.randint(0, 20)) / 100
        lo = min(o, c) - Decimal(rng.randint(0, 20)) / 100
        rows.append((t, o, h, lo, c, Decimal(rng.randint(1, 500))))
        price = c
    return rows


def _store(instrument, rows) -> None:
    bars_upsert_many(
        resolution="1", bars=[(instrument.id, Bar(time=t, open=o, high=h, low=lo, close=c, volume=v)) for t, o, h, lo, c, v in rows]
    )


def _sample_times() -> list[int]:
    """400 consecutive minutes, then a bar every 47 minutes for 17 days."""
    dense = [START + 60 * i for i in range(400)]
    sparse = list(range(START + 400 * 60, START + 17 * 86_400, 47 * 60))
    return dense + sparse


@pytest.fixture
def aapl(db):
    return instrument_upsert(
        symbol="AAPL",
        description="Apple Inc.",
        exchange="NASDAQ",
        type="stock",
        currency="USD",
        tick_size=Decimal("0.01"),
        timezone="America/New_York",
        session="24x7",
    )


@pytest.fixture
def infy(db):
    return instrument_upsert(
        symbol="NSE:INFY",
        description="Infosys",
        exchange="NSE",
        type="stock",
        currency="INR",
        tick_size=Decimal("0.05"),
        timezone="Asia/Kolkata",
    )


@pytest.fixture
def btc(db):
    return instrument_upsert(
        symbol="BTC/USDT",
        description="Bitcoin / Tether",
        exchange="SIMEX",
        type="crypto",
        currency="USDT",
        tick_size=Decimal("0.1"),
        lot_size=Decimal("0.0001"),
        timezone="UTC",
    )


@pytest.fixture
def aapl_rows(aapl):
    rows = _rows(_sample_times())
    _store(aapl, rows)
    return rows


@pytest.fixture
def clean_cache():
    keys: list[str] = []
    yield keys
    cache.delete_many(keys)


def _history(client, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/api/v1/datafeed/history?{query}")


def _columns(body: dict) -> list[tuple]:
    return list(zip(body["t"], body["o"], body["h"], body["l"], body["c"], body["v"], strict=True))


def _expected(rows, key) -> list[tuple]:
    """Aggregate by hand: open of the first, max high, min low, close of the last, summed volume."""
    buckets: dict[int, list] = {}
    for t, o, h, lo, c, v in sorted(rows):
        k = key(t)
        if k is None:
            continue
        if k not in buckets:
            buckets[k] = [o, h, lo, c, v]
        else:
            b = buckets[k]
            b[1], b[2], b[3], b[4] = max(b[1], h), min(b[2], lo), c, b[4] + v
    return [(k, *(float(x) for x in b)) for k, b in sorted(buckets.items())]


def _ny_midnight(day) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=NY).timestamp())


# --- config, symbols, search, time ----------------------------------------------------------


def test_config_has_the_udf_shape_and_no_marks_until_the_oms_registers(alice_api, aapl, infy, monkeypatch):
    monkeypatch.setattr(marks_registry, "marks_provider", None)
    monkeypatch.setattr(marks_registry, "timescale_marks_provider", None)
    response = alice_api.get("/api/v1/datafeed/config")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "supported_resolutions",
        "supports_search",
        "supports_group_request",
        "supports_marks",
        "supports_timescale_marks",
        "supports_time",
        "exchanges",
        "symbols_types",
    }
    assert body["supported_resolutions"] == ["1", "5", "15", "30", "60", "240", "1D", "1W", "1M"]
    assert body["supports_search"] is True and body["supports_time"] is True and body["supports_group_request"] is False
    assert body["supports_marks"] is False and body["supports_timescale_marks"] is False
    assert {"value": "NASDAQ", "name": "NASDAQ", "desc": "NASDAQ"} in body["exchanges"]
    assert {e["value"] for e in body["exchanges"]} == {"", "NASDAQ", "NSE"}
    assert {"name": "Stock", "value": "stock"} in body["symbols_types"]
    assert alice_api.get("/api/v1/datafeed/marks?symbol=AAPL&from=0&to=2000000000&resolution=1D").json() == []
    assert alice_api.get("/api/v1/datafeed/timescale_marks?symbol=AAPL&from=0&to=2000000000&resolution=1D").json() == []


def test_marks_come_from_a_registered_provider(alice_api, alice, aapl, monkeypatch):
    calls = []

    def provider(*, user, symbol, start, end, resolution):
        calls.append((user, symbol, start, end, resolution))
        return [{"id": 1, "time": start, "color": "green", "text": "Bought 1", "label": "B", "labelFontColor": "white", "minSize": 14}]

    monkeypatch.setattr(marks_registry, "marks_provider", provider)
    assert alice_api.get("/api/v1/datafeed/config").json()["supports_marks"] is True
    response = alice_api.get("/api/v1/datafeed/marks?symbol=AAPL&from=100&to=200&resolution=D")
    assert response.status_code == 200
    assert response.json()[0]["text"] == "Bought 1"
    assert calls == [(alice, "AAPL", 100, 200, "1D")]
    assert alice_api.get("/api/v1/datafeed/marks?symbol=NOPE&from=100&to=200&resolution=D").status_code == 404


@pytest.mark.parametrize(
    ("symbol", "pricescale", "minmov", "timezone", "volume_precision"),
    [("AAPL", 100, 1, "America/New_York", 0), ("NSE:INFY", 100, 5, "Asia/Kolkata", 0), ("BTC/USDT", 10, 1, "Etc/UTC", 4)],
)
def test_symbol_info_has_the_udf_shape(alice_api, aapl, infy, btc, symbol, pricescale, minmov, timezone, volume_precision):
    response = alice_api.get("/api/v1/datafeed/symbols", {"symbol": symbol})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "name",
        "ticker",
        "description",
        "type",
        "session",
        "exchange",
        "listed_exchange",
        "timezone",
        "minmov",
        "pricescale",
        "has_intraday",
        "has_daily",
        "has_weekly_and_monthly",
        "supported_resolutions",
        "intraday_multipliers",
        "volume_precision",
        "data_status",
        "currency_code",
    }
    assert body["name"] == body["ticker"] == symbol
    assert (body["pricescale"], body["minmov"]) == (pricescale, minmov)
    assert body["timezone"] == timezone and body["session"] == "24x7"
    assert body["has_intraday"] is True and body["data_status"] == "streaming"
    assert body["supported_resolutions"] == ["1", "5", "15", "30", "60", "240", "1D", "1W", "1M"]
    assert body["volume_precision"] == volume_precision


def test_symbol_info_takes_a_whole_number_tick_and_an_exchange_prefix(alice_api):
    instrument_upsert(symbol="005930", exchange="KRX", tick_size=Decimal("100"), timezone="Asia/Seoul", session="0900-1530:23456")
    body = alice_api.get("/api/v1/datafeed/symbols?symbol=KRX:005930").json()
    assert (body["name"], body["pricescale"], body["minmov"], body["session"]) == ("005930", 1, 100, "0900-1530:23456")


def test_unknown_symbol_is_404_in_udf_shape(alice_api, aapl):
    response = alice_api.get("/api/v1/datafeed/symbols?symbol=NOPE")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == UDF_ERROR and body["s"] == "error" and "NOPE" in body["errmsg"]
    missing = alice_api.get("/api/v1/datafeed/symbols")
    assert missing.status_code == 400 and set(missing.json()) == UDF_ERROR


def test_search_answers_a_bare_array(alice_api, aapl, infy, btc):
    response = alice_api.get("/api/v1/datafeed/search?query=infy&type=&exchange=&limit=10")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [item["symbol"] for item in body] == ["NSE:INFY"]
    assert body[0] == {
        "symbol": "NSE:INFY",
        "full_name": "NSE:INFY",
        "description": "Infosys",
        "exchange": "NSE",
        "ticker": "NSE:INFY",
        "type": "stock",
    }
    assert [i["symbol"] for i in alice_api.get("/api/v1/datafeed/search?query=&type=crypto").json()] == ["BTC/USDT"]
    assert [i["symbol"] for i in alice_api.get("/api/v1/datafeed/search?query=&exchange=nasdaq").json()] == ["AAPL"]
    assert len(alice_api.get("/api/v1/datafeed/search?query=&limit=2").json()) == 2
    assert len(alice_api.get("/api/v1/datafeed/search?query=&limit=1000").json()) == 3  # capped at 200, not refused
    assert alice_api.get("/api/v1/datafeed/search?query=&limit=0").status_code == 400


def test_time_is_plain_unix_seconds(alice_api):
    response = alice_api.get("/api/v1/datafeed/time")
    assert response.status_code == 200
    assert abs(int(response.content) - time.time()) < 5
    assert isinstance(response.json(), int)


# --- history ----------------------------------------------------------------------------


def test_history_ok_returns_the_stored_minutes_as_number_columns(alice_api, aapl_rows, django_assert_max_num_queries):
    rows = aapl_rows[10:20]
    with django_assert_max_num_queries(6):
        response = _history(alice_api, symbol="AAPL", resolution="1", **{"from": rows[0][0], "to": rows[-1][0] + 60})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"s", "t", "o", "h", "l", "c", "v"}
    assert body["s"] == "ok"
    assert _columns(body) == [(t, float(o), float(h), float(lo), float(c), float(v)) for t, o, h, lo, c, v in rows]
    assert all(isinstance(x, float) for x in body["o"] + body["v"])
    assert all(isinstance(x, int) for x in body["t"])


def test_history_to_is_exclusive_and_from_inclusive(alice_api, aapl_rows):
    t0, t1 = aapl_rows[0][0], aapl_rows[5][0]
    body = _history(alice_api, symbol="AAPL", resolution="1", **{"from": t0, "to": t1}).json()
    assert body["t"] == [row[0] for row in aapl_rows[:5]]


def test_countback_wins_over_from(alice_api, aapl_rows):
    end = aapl_rows[100][0]
    body = _history(alice_api, symbol="AAPL", resolution="1", countback=30, **{"from": end - 60, "to": end}).json()
    assert body["s"] == "ok"
    assert body["t"] == [row[0] for row in aapl_rows[70:100]]
    # Even a from after to does not matter once countback is given.
    body = _history(alice_api, symbol="AAPL", resolution="5", countback=3, **{"from": end + 10_000, "to": end}).json()
    assert body["t"] == [end - 900, end - 600, end - 300]


def test_no_data_points_at_the_previous_bar(alice_api, aapl_rows):
    last = aapl_rows[-1][0]
    body = _history(alice_api, symbol="AAPL", resolution="1", **{"from": last + 3600, "to": last + 7200}).json()
    assert body == {"s": "no_data", "nextTime": last}
    body = _history(alice_api, symbol="AAPL", resolution="60", **{"from": last + 7200, "to": last + 9000}).json()
    assert body == {"s": "no_data", "nextTime": last - last % 3600}


def test_no_data_without_an_older_bar_has_no_next_time(alice_api, aapl_rows):
    response = _history(alice_api, symbol="AAPL", resolution="1", **{"from": START - 7200, "to": START})
    assert response.status_code == 200
    assert response.json() == {"s": "no_data"}
    assert _history(alice_api, symbol="AAPL", resolution="1D", countback=5, to=START).json() == {"s": "no_data"}


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"symbol": "NOPE", "resolution": "1", "from": 0, "to": 100}, 404, "Unknown symbol"),
        ({"symbol": "AAPL", "resolution": "7", "from": 0, "to": 100}, 422, "resolution"),
        ({"symbol": "AAPL", "resolution": "1", "from": 200, "to": 100}, 422, "from must be before to"),
        ({"symbol": "AAPL", "resolution": "1", "countback": 0, "to": 100}, 422, "countback"),
        ({"symbol": "AAPL", "resolution": "1", "countback": -5, "to": 100}, 422, "countback"),
        ({"symbol": "AAPL", "resolution": "1", "countback": 250_001, "to": 100}, 422, "cap"),
        ({"symbol": "AAPL", "resolution": "1", "from": 100, "to": 100 + 250_001 * 60}, 422, "cap"),
        ({"resolution": "1", "from": 0, "to": 100}, 400, "symbol"),
        ({"symbol": "AAPL", "resolution": "1", "from": "yesterday", "to": 100}, 400, "from"),
        ({"symbol": "AAPL", "resolution": "1", "to": 100}, 422, "from"),
    ],
)
def test_history_errors_are_udf_errors_with_4xx(alice_api, aapl, params, status, needle):
    response = _history(alice_api, **params)
    assert response.status_code == status
    body = response.json()
    assert set(body) == UDF_ERROR
    assert body["s"] == "error"
    assert needle in body["errmsg"]


def test_over_cap_follows_the_setting(alice_api, aapl_rows):
    with override_settings(HISTORY_MAX_BARS=50):
        response = _history(alice_api, symbol="AAPL", resolution="1", countback=51, to=START + 86_400)
        assert response.status_code == 422
        assert response.json()["errmsg"] == "countback 51 is over the cap of 50 bars."
        assert len(_history(alice_api, symbol="AAPL", resolution="1", countback=50, to=START + 86_400).json()["t"]) == 50


def test_the_fast_history_read_gives_the_same_numbers_as_float_of_decimal(aapl):
    """On PostgreSQL ``convert=float`` decodes numerics as floats in the cursor;
    any other callable takes the generic path through Decimal."""
    from marketdata.selectors import bars_history

    awkward = ["0.1000000001", "12345678901234.1234567891", "99999.9999999999", "0.0000000001", "190.1", "1E-10", "7"]
    rows = [
        (START + 60 * i, Decimal(p), Decimal(p), Decimal(p), Decimal(p), Decimal(p) if Decimal(p) < 10**12 else Decimal("0.12345678"))
        for i, p in enumerate(awkward)
    ]
    _store(aapl, rows)
    for resolution in ("1", "5", "1D"):
        fast = bars_history(instrument=aapl, resolution=resolution, end=START + 86_400, countback=100)
        generic = bars_history(instrument=aapl, resolution=resolution, end=START + 86_400, countback=100, convert=lambda x: float(x))
        assert fast.columns == generic.columns
        assert all(type(x) is int for x in fast.columns[0])
        assert all(type(x) is float for col in fast.columns[1:] for x in col)


@pytest.mark.parametrize(
    ("resolution", "key"),
    [
        ("5", lambda t: t // 300 * 300),
        ("60", lambda t: t // 3600 * 3600),
        ("1D", lambda t: _ny_midnight(datetime.fromtimestamp(t, NY).date())),
        (
            "1W",
            lambda t: _ny_midnight(datetime.fromtimestamp(t, NY).date() - timedelta(days=datetime.fromtimestamp(t, NY).weekday())),
        ),
    ],
)
def test_aggregated_history_matches_bars_built_here(alice_api, aapl_rows, resolution, key):
    params = {"symbol": "AAPL", "resolution": resolution, "from": START - 14 * 86_400, "to": START + 30 * 86_400}
    body = _history(alice_api, **params).json()
    assert body["s"] == "ok"
    expected = _expected(aapl_rows, key)
    assert len(expected) >= 3
    assert _columns(body) == expected


def test_aggregated_countback_returns_the_last_buckets(alice_api, aapl_rows):
    end = START + 10 * 86_400
    expected = _expected([r for r in aapl_rows if r[0] < end], lambda t: t // 3600 * 3600)[-4:]
    body = _history(alice_api, symbol="AAPL", resolution="60", countback=4, to=end).json()
    assert _columns(body) == expected


def test_daily_bars_keep_only_the_session(alice_api):
    spy = instrument_upsert(symbol="SPY", exchange="ARCA", timezone="America/New_York", session="0930-1600:23456")
    # Every 20 minutes around the clock for 9 days (a weekend included).
    rows = _rows(list(range(START, START + 9 * 86_400, 20 * 60)), seed=11)
    _store(spy, rows)

    def key(t: int):
        local = datetime.fromtimestamp(t, NY)
        if local.weekday() >= 5 or not (dtime(9, 30) <= local.time() < dtime(16, 0)):
            return None
        return _ny_midnight(local.date())

    expected = _expected(rows, key)
    body = _history(alice_api, symbol="SPY", resolution="D", **{"from": START - 86_400, "to": START + 10 * 86_400}).json()
    assert _columns(body) == expected
    days = [datetime.fromtimestamp(t, NY) for t in body["t"]]
    assert all(d.weekday() < 5 and d.hour == 0 for d in days)
    # Thursday 29 February (New York) has data only after the close; Friday,
    # then Monday to Friday: the weekend is dropped.
    assert [d.day for d in days] == [1, 4, 5, 6, 7, 8]
    in_session_volume = sum(float(r[5]) for r in rows if key(r[0]) is not None)
    assert sum(body["v"]) == in_session_volume < sum(float(r[5]) for r in rows)


def test_a_request_may_return_200000_bars(alice_api, aapl):
    times = [START + 60 * i for i in range(200_000)]
    bars_upsert_many(
        resolution="1",
        bars=[
            (aapl.id, Bar(time=t, open=Decimal(100), high=Decimal(101), low=Decimal(99), close=Decimal(i % 1000), volume=Decimal(1)))
            for i, t in enumerate(times)
        ],
    )
    response = _history(alice_api, symbol="AAPL", resolution="1", countback=200_000, to=times[-1] + 60)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["s"] == "ok" and len(body["t"]) == 200_000
    assert (body["t"][0], body["t"][-1]) == (times[0], times[-1])
    assert (body["c"][0], body["c"][-1]) == (0.0, float(199_999 % 1000))
    ranged = _history(alice_api, symbol="AAPL", resolution="1", **{"from": times[0], "to": times[-1] + 60})
    assert len(json.loads(ranged.content)["t"]) == 200_000
    over = _history(alice_api, symbol="AAPL", resolution="1", **{"from": times[0] - 60 * 60_000, "to": times[-1] + 60})
    assert over.status_code == 422
    assert "over the cap of 250000" in over.json()["errmsg"]


# --- quotes -------------------------------------------------------------------------------


@pytest.fixture
def aapl_quote(aapl, clean_cache):
    quote = Quote(
        symbol="AAPL",
        time=time.time(),
        last=Decimal("190.12"),
        bid=Decimal("190.11"),
        ask=Decimal("190.14"),
        volume=Decimal(12345),
        day_open=Decimal("188.50"),
        day_high=Decimal("191.00"),
        day_low=Decimal("188.00"),
        prev_close=Decimal("189.00"),
    )
    quote_store(quote)
    clean_cache.append("md:quote:AAPL")
    return quote


def test_quotes_have_the_udf_shape_and_an_error_entry_for_unknown_symbols(alice_api, aapl_quote, infy):
    response = alice_api.get("/api/v1/datafeed/quotes?symbols=AAPL,NOPE,NSE:INFY")
    assert response.status_code == 200
    body = response.json()
    assert body["s"] == "ok"
    ok, unknown, no_quote = body["d"]
    assert ok == {
        "s": "ok",
        "n": "AAPL",
        "v": {
            "ch": 1.12,
            "chp": float((Decimal("1.12") / Decimal(189)) * 100),
            "short_name": "AAPL",
            "exchange": "NASDAQ",
            "description": "Apple Inc.",
            "lp": 190.12,
            "ask": 190.14,
            "bid": 190.11,
            "spread": 0.03,
            "open_price": 188.5,
            "high_price": 191.0,
            "low_price": 188.0,
            "prev_close_price": 189.0,
            "volume": 12345.0,
        },
    }
    assert unknown == {"s": "error", "n": "NOPE", "v": {}}
    assert no_quote == {"s": "error", "n": "NSE:INFY", "v": {}}


def test_post_quotes_is_the_same_as_get(alice_api, aapl_quote):
    posted = alice_api.post("/api/v1/datafeed/quotes", {"symbols": ["AAPL", "NOPE"]}, format="json")
    assert posted.status_code == 200
    assert posted.json() == alice_api.get("/api/v1/datafeed/quotes?symbols=AAPL,NOPE").json()


@override_settings(DATAFEED_MAX_QUOTE_SYMBOLS=2)
def test_too_many_quote_symbols_is_422(alice_api, aapl):
    response = alice_api.get("/api/v1/datafeed/quotes?symbols=A,B,C")
    assert response.status_code == 422
    assert set(response.json()) == UDF_ERROR and "at most 2" in response.json()["errmsg"]
    posted = alice_api.post("/api/v1/datafeed/quotes", {"symbols": ["A", "B", "C"]}, format="json")
    assert posted.status_code == 422 and set(posted.json()) == UDF_ERROR
    assert alice_api.get("/api/v1/datafeed/quotes?symbols=").status_code == 400


# --- auth ---------------------------------------------------------------------------------

UDF_PATHS = [
    "/api/v1/datafeed/config",
    "/api/v1/datafeed/symbols?symbol=AAPL",
    "/api/v1/datafeed/search?query=A",
    "/api/v1/datafeed/history?symbol=AAPL&resolution=1&countback=5&to=2000000000",
    "/api/v1/datafeed/quotes?symbols=AAPL",
    "/api/v1/datafeed/time",
    "/api/v1/datafeed/marks?symbol=AAPL&from=0&to=1&resolution=1D",
    "/api/v1/datafeed/resolve/AAPL",
    "/api/v1/datafeed/bars?symbol=AAPL&resolution=1&countback=5&to=2000000000",
    "/api/v1/datafeed/health",
]


@pytest.mark.parametrize("path", UDF_PATHS)
def test_the_datafeed_requires_auth_in_udf_shape(api, aapl, path):
    response = api.get(path)
    assert response.status_code == 401
    assert set(response.json()) == UDF_ERROR


@pytest.mark.parametrize("path", UDF_PATHS)
def test_a_public_datafeed_needs_no_auth(api, aapl, path):
    with override_settings(DATAFEED_PUBLIC=True):
        response = api.get(path)
    assert response.status_code == 200, response.content


def test_session_auth_works_too(client, alice, aapl):
    client.force_login(alice)
    assert client.get("/api/v1/datafeed/config").status_code == 200


def test_udf_paths_never_answer_the_project_error_shape(alice_api):
    wrong_method = alice_api.post("/api/v1/datafeed/history", {}, format="json")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == UDF_ERROR
    unknown_path = alice_api.get("/api/v1/datafeed/nope")
    assert unknown_path.status_code == 404 and set(unknown_path.json()) == UDF_ERROR
    bad_json = alice_api.generic("POST", "/api/v1/datafeed/quotes", "{", content_type="application/json")
    assert bad_json.status_code == 400 and set(bad_json.json()) == UDF_ERROR


# --- upstream paths -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["BTC/USDT", "BTC/USDT/", "BTC%2FUSDT", "NSE:INFY", "NSE:INFY/"])
def test_resolve_takes_symbols_with_colon_and_slash(alice_api, btc, infy, path):
    response = alice_api.get(f"/api/v1/datafeed/resolve/{path}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == path.replace("%2F", "/").rstrip("/")
    assert body == alice_api.get("/api/v1/datafeed/symbols", {"symbol": body["name"]}).json()
    assert alice_api.get("/api/v1/datafeed/resolve/NOPE/X").status_code == 404


def test_bars_is_the_same_as_history(alice_api, aapl_rows):
    params = {"symbol": "AAPL", "resolution": "15", "from": START, "to": START + 86_400}
    query = "&".join(f"{k}={v}" for k, v in params.items())
    bars = alice_api.get(f"/api/v1/datafeed/bars?{query}")
    assert bars.status_code == 200
    assert bars.content == _history(alice_api, **params).content
    assert alice_api.get("/api/v1/datafeed/bars?symbol=AAPL&resolution=1&from=9&to=1").status_code == 422


def test_health_lists_feeds_and_stream_counters(alice_api, clean_cache):
    now = time.time()
    cache.set(FEED_STATUS_KEY, {"last_tick_time": now, "symbols": 7, "steps": 3}, timeout=None)
    clean_cache.append(FEED_STATUS_KEY)
    response = alice_api.get("/api/v1/datafeed/health")
    assert response.status_code == 200
    body = response.json()
    assert {"status", "time", "feeds", "subscribers", "broadcasts_sent", "broadcasts_skipped"} <= set(body)
    (feed,) = body["feeds"]
    assert feed["name"] == "simulator" and feed["last_tick_time"] == now and feed["symbols"] == 7
    assert set(body["subscribers"]) >= {"quotes", "bars"}
    assert isinstance(body["broadcasts_sent"], int)


def test_schema_documents_the_datafeed(api):
    response = api.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    for path in [
        "/api/v1/datafeed/config",
        "/api/v1/datafeed/symbols",
        "/api/v1/datafeed/search",
        "/api/v1/datafeed/history",
        "/api/v1/datafeed/quotes",
        "/api/v1/datafeed/time",
        "/api/v1/datafeed/marks",
        "/api/v1/datafeed/resolve/{symbol}",
        "/api/v1/datafeed/bars",
        "/api/v1/datafeed/health",
    ]:
        assert path in paths, path
        for operation in paths[path].values():
            assert "200" in operation["responses"] and "422" in operation["responses"]
    history = paths["/api/v1/datafeed/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"symbol", "resolution", "from", "to", "countback"}
    assert "requestBody" in paths["/api/v1/datafeed/quotes"]["post"]
