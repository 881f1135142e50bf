"""The CCXT ticker feed against the fake exchange over real sockets: the
tickers of the venue's instruments in use (subscribed, traded) polled into
the quote store and the 1-minute bars, nothing polled for instruments not in
use, a failing exchange shown in the account's feed state, the symbols per
poll bounded."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from brokers.ccxt.feed import CcxtFeedProvider, VenuePoller
from brokers.health import feed_state_get
from marketdata.feeds.registry import broker_feeds_step, feed_providers, register_feed_provider, runtime_reset
from marketdata.models import Bar
from marketdata.quotes import quote_get, quotes_forget
from marketdata.streaming import subscribers_add
from tests.ccxt_support import MARKET_IDS, PRICE, ccxt_account, ccxt_import, fake_exchange, symbol_of

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOL = symbol_of("spot")  # BINANCE:BTC/USDT


def wait_for(condition: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Step the market-data loop (as the running loop would) until ``condition``."""
    deadline = time.monotonic() + timeout
    while True:
        broker_feeds_step()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@contextlib.contextmanager
def subscribed(symbol: str) -> Iterator[None]:
    subscribers_add(f"quotes:{symbol}", 1)
    try:
        yield
    finally:
        subscribers_add(f"quotes:{symbol}", -1)


@pytest.fixture
def exchange(settings):
    settings.CCXT_FEED_INTERVAL = 0.1
    settings.CCXT_FEED_RELOAD_INTERVAL = 0.2
    settings.CCXT_FEED_IN_USE_REFRESH = 0.2
    settings.BROKER_HTTP_TIMEOUT = 2.0
    with fake_exchange("spot") as fake:
        yield fake


@pytest.fixture
def account(alice, exchange):
    account = ccxt_account(alice, exchange)
    ccxt_import(account)
    quotes_forget([SYMBOL])
    return account


@pytest.fixture
def feed(account) -> Iterator[CcxtFeedProvider]:
    runtime_reset()
    original = {p.name: p for p in feed_providers()}.get("ccxt")
    provider = CcxtFeedProvider()
    register_feed_provider(provider)
    try:
        yield provider
    finally:
        provider.stop()
        if original is not None:
            register_feed_provider(original)
        runtime_reset()


def poller(provider: CcxtFeedProvider) -> VenuePoller:
    assert list(provider.connections) == ["BINANCE"]
    return provider.connections["BINANCE"]


def test_a_subscribed_instruments_ticker_becomes_its_quote_and_its_bar(feed, exchange, alice_api):
    with subscribed(SYMBOL):
        quote = wait_for(lambda: quote_get(SYMBOL))
        assert quote.last == PRICE
        exchange.set_price(MARKET_IDS["spot"], "51000")
        wait_for(lambda: (q := quote_get(SYMBOL)) is not None and q.last == Decimal(51000))
        wait_for(lambda: Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1", close=Decimal(51000)).exists())
    answer = alice_api.get("/api/v1/quotes", {"symbols": SYMBOL})
    assert answer.status_code == 200
    body = answer.json()
    assert body["missing"] == [] and Decimal(body["results"][0]["last"]) == Decimal(51000)


def test_a_held_asset_is_polled_and_an_instrument_nobody_uses_is_not(feed, exchange, account):
    # The account holds BNB at the exchange (and USDT, the quote currency): BNB/USDT is in use, BTC/USDT is not.
    wait_for(lambda: feed.connections.get("BINANCE") is not None and poller(feed).polls >= 2)
    assert poller(feed).polling == ["BINANCE:BNB/USDT"]
    assert quote_get(SYMBOL) is None
    state = feed_state_get(account.pk)
    assert state is not None and state["connected"] is True and state["subscriptions"] == ["ticker:BINANCE:BNB/USDT"]
    assert "no WebSocket" in state["notices"]


def test_an_instrument_traded_through_us_is_polled(feed, exchange, account, settings):
    from tests.ccxt_support import Ccxt
    from tests.oms_support import NO_LIMITS, set_quote, tasks_in_process

    settings.OMS_RISK = dict(NO_LIMITS)
    set_quote(SYMBOL, str(PRICE), spread="1")
    with tasks_in_process():
        Ccxt(fake=exchange, account=account, kind="spot").send()
    quotes_forget([SYMBOL])
    wait_for(lambda: quote_get(SYMBOL))
    assert SYMBOL in poller(feed).polling
    assert f"ticker:{SYMBOL}" in feed_state_get(account.pk)["subscriptions"]


def test_a_failing_exchange_shows_in_the_feed_state_and_the_feed_recovers(feed, exchange, account):
    with subscribed(SYMBOL):
        wait_for(lambda: quote_get(SYMBOL))
        exchange.fault("unavailable", count=100, path="/api/v3/ticker/24hr")
        state = wait_for(lambda: (s := feed_state_get(account.pk)) is not None and not s["connected"] and s)
        assert state["error"] and "ccxtFakeApiKey" not in state["error"]
        exchange.reset()
        wait_for(lambda: (s := feed_state_get(account.pk)) is not None and s["connected"], timeout=15.0)


def test_the_symbols_per_poll_are_bounded(feed, exchange, account, settings):
    settings.CCXT_FEED_MAX_SYMBOLS = 1
    from marketdata.models import Instrument

    others = list(
        Instrument.objects.filter(venue="BINANCE", quote_source="ccxt").exclude(symbol=SYMBOL).values_list("symbol", flat=True)[:2]
    )
    with contextlib.ExitStack() as stack:
        for symbol in [SYMBOL, *others]:
            stack.enter_context(subscribed(symbol))
        wait_for(lambda: feed.connections.get("BINANCE") is not None and poller(feed).polls >= 1 and poller(feed).polling)
        assert len(poller(feed).polling) == 1


def test_a_venue_is_polled_through_a_live_account_before_a_testnet_one(alice, exchange, account):
    from brokers.ccxt.feed import plan_venues

    live = ccxt_account(alice, exchange, label="live", environment="live")
    (plan,) = plan_venues()
    assert plan.key == "BINANCE" and plan.account_id == live.pk
    assert {a.account_id for a in plan.accounts} == {account.pk, live.pk}
