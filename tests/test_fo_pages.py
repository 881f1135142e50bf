"""The option-chain page: calls | strike | puts with IV, Greeks, OI bars and the smile."""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal

import pytest

from marketdata.models import Instrument
from marketdata.quotes import quotes_forget, quotes_store
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.simulation import demo_instruments_ensure, runtime_reset, simulated_quotes, simulator_step
from marketdata.types import Bar

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, alice, settings):
    settings.SIMULATOR_ENABLED = False
    client.post("/accounts/login/", {"login": "alice@example.com", "password": "alice-pass-123"})
    return client


def test_anonymous_visitors_go_to_login(client):
    response = client.get("/fo/chain")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_chain_page_shows_both_sides_and_the_smile(logged_in):
    now = time.time()
    demo_instruments_ensure(now=now)
    symbols = list(Instrument.objects.values_list("symbol", flat=True))
    quotes_store(simulated_quotes(symbols, now=now).values())
    try:
        response = logged_in.get("/fo/chain")
    finally:
        quotes_forget(symbols)
    body = response.content.decode()
    assert response.status_code == 200
    assert "DEMO:IDX" in body and 'class="atm"' in body and "<polyline" in body
    assert body.count("<tr") >= 12  # the header and the 11 strikes of the demo chain
    assert 'class="oi-bar"' in body


def test_bad_chains_answer_with_a_message(logged_in):
    response = logged_in.get("/fo/chain", {"underlying": "NOPE", "expiry": "2030-01-31"})
    assert response.status_code == 404 and "NOPE" in response.content.decode()
    response = logged_in.get("/fo/chain", {"underlying": "NOPE", "expiry": "31/01/2030"})
    assert response.status_code == 422


# --- the futures page: buildup signals and rollover ------------------------------------------------


def test_anonymous_visitors_go_to_login_from_the_futures_page(client):
    response = client.get("/fo/futures")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.fixture
def fresh_runtime():
    runtime_reset()
    yield
    runtime_reset()


def test_the_futures_page_shows_the_simulators_rollover_and_signals(logged_in, settings, fresh_runtime, django_assert_max_num_queries):
    settings.SIMULATOR_HISTORY_DAYS = 0
    now = time.time()
    demo_instruments_ensure(now=now)
    futures = list(Instrument.objects.filter(type="future", underlying__symbol="DEMO:IDX").order_by("expiry"))
    symbols = list(Instrument.objects.values_list("symbol", flat=True))
    # The simulator's live loop for 5 minutes: 1-minute bars carrying its open interest.
    for minutes_ago in range(5, -1, -1):
        simulator_step(now - minutes_ago * 60)
    quotes = simulated_quotes(symbols, now=now)
    quotes_store(quotes.values())
    try:
        with django_assert_max_num_queries(20):
            response = logged_in.get("/fo/futures", {"resolution": "1", "range": "1h"})
    finally:
        quotes_forget(symbols)
    body = response.content.decode()
    assert response.status_code == 200, body
    assert '<option value="DEMO:IDX" selected>' in body
    # One row per live future, with its OI bar and its quoted OI; the near month holds the most OI.
    assert body.count('class="oi-bar"') == len(futures) == 3
    for f in futures:
        assert f.symbol in body and str(quotes[f.symbol].open_interest) in body
    assert "rollover <strong>" in body and "calendar spread <strong>" in body
    assert 'href="/fo/futures"' in body  # the nav links the page
    assert "Price / OI signals" in body and futures[0].symbol + " (front month)" in body
    rows = [r for r in body.split("<tr")[1:] if "signal-" in r]
    assert len(rows) >= 4  # one per minute after the first, latest first
    labels = ("Long buildup", "Short buildup", "Long unwinding", "Short covering", "Neutral")
    assert all(sum(label in r for label in labels) == 1 for r in rows)


def _signal_series(underlying: str, contract: str) -> int:
    index = instrument_upsert(symbol=underlying, type="index")
    future = instrument_upsert(symbol=contract, type="future", underlying=index, expiry=date.today() + timedelta(days=20))
    start = (int(time.time()) // 60 - 30) * 60
    closes = ["100", "101", "100.5", "100", "100.8", "100.8"]
    ois = [1000, 1100, 1200, 1100, 1000, 1000]
    bars_upsert_many(
        resolution="1",
        bars=[
            (future.id, Bar(start + 60 * n, Decimal(c), Decimal(c), Decimal(c), Decimal(c), open_interest=Decimal(oi)))
            for n, (c, oi) in enumerate(zip(closes, ois, strict=True))
        ],
    )
    return start


def test_the_futures_page_labels_each_signal_in_text(logged_in, settings, django_assert_max_num_queries):
    settings.FO_SIGNAL_THRESHOLD_PERCENT = 0.1
    _signal_series("SIGP:IDX", "SIGP:F")
    # Many intervals, still a bounded number of queries (none per row).
    with django_assert_max_num_queries(20):
        response = logged_in.get("/fo/futures", {"underlying": "SIGP:IDX", "resolution": "1", "range": "1h"})
    body = response.content.decode()
    assert response.status_code == 200, body
    rows = [r for r in body.split("<tr")[1:] if "signal-" in r]
    # Latest first: neutral, short covering, long unwinding, short buildup, long buildup.
    labels = [
        next(label for label in ("Long buildup", "Short buildup", "Long unwinding", "Short covering", "Neutral") if label in r)
        for r in rows
    ]
    assert labels == ["Neutral", "Short covering", "Long unwinding", "Short buildup", "Long buildup"]
    first = rows[-1]  # 100 -> 101, OI 1000 -> 1100: the sizes and arrows, not only a colour
    assert "▲</span> 1<" in first and "1.000%" in first and "▲</span> 100<" in first and "10.000%" in first
    assert "▼ price, ▲ OI" in rows[-2]
    # No quotes stored: the rollover says so instead of failing.
    assert "SIGP:F" in body and "no_quote" in body


def test_bad_futures_requests_answer_with_a_message(logged_in):
    response = logged_in.get("/fo/futures", {"underlying": "NOPE"})
    assert response.status_code == 404 and "NOPE" in response.content.decode()
    instrument_upsert(symbol="BARE:IDX", type="index")
    response = logged_in.get("/fo/futures", {"underlying": "BARE:IDX"})
    assert response.status_code == 404 and "No live futures" in response.content.decode()
    _signal_series("SIGQ:IDX", "SIGQ:F")
    response = logged_in.get("/fo/futures", {"underlying": "SIGQ:IDX", "resolution": "7"})
    assert response.status_code == 422 and "Unsupported resolution" in response.content.decode()
    response = logged_in.get("/fo/futures", {"underlying": "SIGQ:IDX", "range": "99y"})
    assert response.status_code == 422 and "Unknown range" in response.content.decode()
    response = logged_in.get("/fo/futures", {"underlying": "SIGQ:IDX", "resolution": "1", "range": "30d"})
    assert response.status_code == 422 and "coarser resolution" in response.content.decode()


def test_the_futures_page_without_any_futures(logged_in):
    response = logged_in.get("/fo/futures")
    assert response.status_code == 404 and "No underlying has live futures" in response.content.decode()


def test_the_futures_page_reads_a_long_series_in_a_fixed_number_of_queries(logged_in, django_assert_max_num_queries):
    index = instrument_upsert(symbol="SIGL:IDX", type="index")
    future = instrument_upsert(symbol="SIGL:F", type="future", underlying=index, expiry=date.today() + timedelta(days=20))
    start = (int(time.time()) // 60 - 50) * 60
    bars_upsert_many(
        resolution="1",
        bars=[
            (
                future.id,
                Bar(
                    start + 60 * n,
                    Decimal(100 + n % 3),
                    Decimal(100 + n % 3),
                    Decimal(100 + n % 3),
                    Decimal(100 + n % 3),
                    open_interest=Decimal(1000 + 50 * (n % 2)),
                ),
            )
            for n in range(40)
        ],
    )
    with django_assert_max_num_queries(15):  # the session, the user, the picker, the services: none per row
        response = logged_in.get("/fo/futures", {"underlying": "SIGL:IDX", "resolution": "1", "range": "1h"})
    assert response.status_code == 200 and response.content.decode().count('class="signal-') == 39
