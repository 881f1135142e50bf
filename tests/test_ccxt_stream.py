"""The CCXT WebSocket feed (ccxt.pro's own Binance client) against the fake
exchange's Binance market streams over real sockets: tickers into quotes and
trades into 1-minute bars, a dropped connection subscribed again, a symbol
no longer wanted unsubscribed, unreadable frames skipped, and polling where
ccxt.pro has no ticker stream for the exchange or the account's URLs leave
the stream pointing elsewhere."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import ccxt.pro
import pytest

from brokers.ccxt.exchange import ccxt_streams_market_data, ccxt_watches_tickers
from brokers.ccxt.feed import CcxtFeedProvider, VenuePoller
from brokers.ccxt.stream import VenueStream
from brokers.health import feed_state_get
from marketdata.feeds.registry import broker_feeds_status, broker_feeds_step, feed_providers, register_feed_provider, runtime_reset
from marketdata.models import Bar
from marketdata.quotes import quote_get, quotes_forget
from marketdata.streaming import subscribers_add
from tests.ccxt_support import PRICE, ccxt_account, ccxt_import, fake_exchange, symbol_of

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOL = symbol_of("spot")  # BINANCE:BTC/USDT
ETH = "BINANCE:ETH/USDT"


def wait_for(condition: Callable[[], Any], *, timeout: float = 8.0) -> Any:
    """Step the market-data loop (as the running loop would) until ``condition``."""
    deadline = time.monotonic() + timeout
    while True:
        broker_feeds_step()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.03)


@contextlib.contextmanager
def subscribed(*symbols: str) -> Iterator[None]:
    for symbol in symbols:
        subscribers_add(f"quotes:{symbol}", 1)
    try:
        yield
    finally:
        for symbol in symbols:
            subscribers_add(f"quotes:{symbol}", -1)


def streams(fake: Any) -> set[str]:
    """Every stream the fake's open connections are subscribed to."""
    return set().union(*fake.streams.subscriptions())


def last_is(symbol: str, price: str) -> Callable[[], bool]:
    return lambda: (q := quote_get(symbol)) is not None and q.last == Decimal(price)


@pytest.fixture
def fast(settings):
    """The feed re-checks every 0.1 s; streaming on."""
    settings.CCXT_FEED_INTERVAL = 0.1
    settings.CCXT_FEED_RELOAD_INTERVAL = 0.2
    settings.CCXT_FEED_IN_USE_REFRESH = 0.2
    settings.CCXT_FEED_WEBSOCKET = True
    settings.CCXT_FEED_RESUBSCRIBE_MIN = 0.0
    settings.BROKER_HTTP_TIMEOUT = 2.0
    return settings


@pytest.fixture
def exchange(fast):
    # USDT only: no held asset in use, only the subscribed symbols stream
    with fake_exchange("spot", streams=True, balances={"USDT": "1000000"}) as fake:
        assert fake.streams is not None
        yield fake


@pytest.fixture
def account(alice, exchange):
    account = ccxt_account(alice, exchange)
    ccxt_import(account)
    quotes_forget([SYMBOL, ETH])
    return account


@contextlib.contextmanager
def provider_registered() -> Iterator[CcxtFeedProvider]:
    """A fresh ccxt feed provider registered (the app's put back after)."""
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


@pytest.fixture
def feed(account) -> Iterator[CcxtFeedProvider]:
    with provider_registered() as provider:
        yield provider


@pytest.fixture
def providing() -> Iterator[CcxtFeedProvider]:
    with provider_registered() as provider:
        yield provider


def stream(provider: CcxtFeedProvider) -> VenueStream:
    connection = wait_for(lambda: provider.connections.get("BINANCE"))
    assert isinstance(connection, VenueStream)
    return connection


def test_streamed_tickers_move_the_quote_and_trades_form_the_bar(feed, exchange, account):
    with subscribed(SYMBOL):
        quote = wait_for(lambda: quote_get(SYMBOL))
        assert quote.last == PRICE and quote.bid == PRICE - Decimal("0.01") and quote.ask == PRICE + Decimal("0.01")
        wait_for(lambda: streams(exchange) == {"btcusdt@ticker", "btcusdt@trade"})
        for price in ("50100", "50300", "49900", "50200"):
            exchange.set_price("BTCUSDT", price)  # one trade of one lot (0.00001 BTC) each
            wait_for(last_is(SYMBOL, price))
        wait_for(lambda: Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1", close=Decimal(50200)).exists())
        bars = Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1")
        assert sum(b.volume for b in bars) == Decimal("0.00004")  # the trades' sizes, not the ticker's
        assert max(b.high for b in bars) == Decimal(50300) and min(b.low for b in bars) == Decimal(49900)
    # ccxt.pro subscribed the full ticker (with the book's prices) and the trades on Binance's protocol; no REST polling
    subscribed_streams = [p for r in exchange.streams.requests if r["method"] == "SUBSCRIBE" for p in r["params"]]
    assert sorted(subscribed_streams) == ["btcusdt@ticker", "btcusdt@trade"]
    assert exchange.calls["GET /api/v3/ticker/24hr"] == 0
    state = feed_state_get(account.pk)
    assert state["connected"] is True and state["subscriptions"] == [f"ticker:{SYMBOL}", f"trades:{SYMBOL}"]
    assert "WebSocket" in state["notices"]
    assert stream(feed).streaming == [SYMBOL]


def test_a_dropped_connection_is_subscribed_again(feed, exchange, account):
    with subscribed(SYMBOL):
        wait_for(lambda: quote_get(SYMBOL))
        connection = stream(feed)
        exchange.streams.drop()
        exchange.set_price("BTCUSDT", "51000")  # sent while the connection is down: lost, as on Binance
        wait_for(lambda: connection.feed.reconnects >= 1 and streams(exchange) == {"btcusdt@ticker", "btcusdt@trade"})
        exchange.set_price("BTCUSDT", "51500")
        wait_for(last_is(SYMBOL, "51500"))
        assert exchange.streams.connects == 4  # ccxt's ticker and trade connections, twice
        wait_for(lambda: (s := broker_feeds_status()) and any(p["name"] == "ccxt" and p["reconnects"] >= 1 for p in s))
        assert feed_state_get(account.pk)["connected"] is True


def test_a_symbol_no_longer_wanted_is_unsubscribed(feed, exchange, account):
    with subscribed(SYMBOL):
        with subscribed(ETH):
            exchange.set_price("ETHUSDT", "3100")
            wait_for(last_is(ETH, "3100"))
            wait_for(lambda: streams(exchange) == {"btcusdt@ticker", "ethusdt@ticker", "btcusdt@trade", "ethusdt@trade"})
        wait_for(lambda: streams(exchange) == {"btcusdt@ticker", "btcusdt@trade"})
        unsubscribed = [p for r in exchange.streams.requests if r["method"] == "UNSUBSCRIBE" for p in r["params"]]
        assert {"ethusdt@ticker", "ethusdt@trade"} <= set(unsubscribed)
        assert stream(feed).streaming == [SYMBOL]
        exchange.set_price("ETHUSDT", "3200")
        exchange.set_price("BTCUSDT", "50700")
        wait_for(last_is(SYMBOL, "50700"))
        broker_feeds_step()
        assert quote_get(ETH).last == Decimal(3100)  # no longer streamed
    assert all(exchange.streams.subscriptions())  # the emptied connections closed


def test_unreadable_frames_are_counted_and_skipped(feed, exchange, account):
    with subscribed(SYMBOL):
        wait_for(lambda: quote_get(SYMBOL))
        connection = stream(feed)
        for frame in ("not json", '{"e": "24hrTicker"}', "[1, 2]", '{"e": "trade"}', '{"e": "24hrTicker", "s": "BTCUSDT", "c": "x"}'):
            exchange.streams.send_raw(frame)
        exchange.set_price("BTCUSDT", "50800")
        wait_for(last_is(SYMBOL, "50800"))
        assert connection.feed.malformed >= 2
        assert connection.feed.reconnects == 0 and exchange.streams.connects == 2


def test_an_exchange_without_a_ticker_stream_is_polled(fast, alice, monkeypatch):
    class NoTickerStream(ccxt.pro.binance):  # type: ignore[misc,name-defined]
        def describe(self) -> Any:
            described = super().describe()
            described["has"] = {**described["has"], "watchTicker": False, "watchTickers": False}
            return described

    monkeypatch.setattr(ccxt.pro, "binance", NoTickerStream)
    ccxt_watches_tickers.cache_clear()
    try:
        with fake_exchange("spot", streams=True, balances={"USDT": "1000000"}) as fake:
            account = ccxt_account(alice, fake)
            ccxt_import(account)
            quotes_forget([SYMBOL])
            with provider_registered() as provider, subscribed(SYMBOL):
                fake.set_price("BTCUSDT", "50600")
                wait_for(last_is(SYMBOL, "50600"))
                assert isinstance(provider.connections["BINANCE"], VenuePoller)
                assert fake.calls["GET /api/v3/ticker/24hr"] >= 1 and fake.streams.connects == 0
    finally:
        ccxt_watches_tickers.cache_clear()


def test_which_accounts_stream(settings):
    settings.CCXT_FEED_WEBSOCKET = True
    ws = {"urls": {"api": {"public": "http://127.0.0.1:1/api/v3", "ws": {"spot": "ws://127.0.0.1:2/stream/ws"}}}}
    assert ccxt_streams_market_data("binance", {}) is True
    assert ccxt_streams_market_data("binance", ws) is True
    # REST moved elsewhere but not the streams: they would reach Binance itself; polled
    assert ccxt_streams_market_data("binance", {"urls": {"api": {"public": "http://127.0.0.1:1/api/v3"}}}) is False
    assert ccxt_streams_market_data("bitstamp", {}) is False  # ccxt.pro's bitstamp has no ticker stream
    assert ccxt_streams_market_data("zaif", {}) is False  # no ccxt.pro class at all
    settings.CCXT_FEED_WEBSOCKET = False
    assert ccxt_streams_market_data("binance", {}) is False


def test_a_futures_account_streams_from_the_usdm_streams(fast, alice, providing):
    symbol = symbol_of("futures")  # BINANCEUSDM:BTC/USDT:USDT
    with fake_exchange("futures", streams=True) as fake:
        account = ccxt_account(alice, fake)
        ccxt_import(account)
        quotes_forget([symbol])
        with subscribed(symbol):
            wait_for(lambda: streams(fake) == {"btcusdt@ticker", "btcusdt@trade"})
            fake.set_price("BTCUSDT", "50500")
            wait_for(last_is(symbol, "50500"))
            wait_for(lambda: Bar.objects.filter(instrument__symbol=symbol, resolution="1", close=Decimal(50500)).exists())
        assert isinstance(providing.connections["BINANCEUSDM"], VenueStream)


def test_without_a_trade_stream_a_tickers_move_is_the_tick(fast, alice, providing, monkeypatch):
    class NoTradeStream(ccxt.pro.binance):  # type: ignore[misc,name-defined]
        def describe(self) -> Any:
            described = super().describe()
            described["has"] = {**described["has"], "watchTradesForSymbols": False}
            return described

    monkeypatch.setattr(ccxt.pro, "binance", NoTradeStream)
    with fake_exchange("spot", streams=True, balances={"USDT": "1000000"}) as fake:
        account = ccxt_account(alice, fake)
        ccxt_import(account)
        quotes_forget([SYMBOL])
        with subscribed(SYMBOL):
            wait_for(lambda: streams(fake) == {"btcusdt@ticker"})
            fake.set_price("BTCUSDT", "50900")
            wait_for(lambda: Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1", close=Decimal(50900)).exists())
        assert feed_state_get(account.pk)["subscriptions"] == [f"ticker:{SYMBOL}"]


def test_a_failing_rest_side_leaves_the_stream_streaming(feed, exchange, account):
    with subscribed(SYMBOL):
        wait_for(lambda: quote_get(SYMBOL))
        connection = stream(feed)
        # the symbols in use are read over REST (open orders, balances): that side fails
        exchange.fault("unavailable", count=1000, path="/api/v3/openOrders")
        failed = exchange.calls["GET /api/v3/openOrders"]
        wait_for(lambda: exchange.calls["GET /api/v3/openOrders"] > failed)
        exchange.set_price("BTCUSDT", "50400")
        wait_for(last_is(SYMBOL, "50400"))
        assert connection.feed.reconnects == 0 and exchange.streams.connects == 2
        exchange.reset()


def test_without_unsubscription_the_old_connections_close(fast, alice, providing, monkeypatch):
    class NoUnwatch(ccxt.pro.binance):  # type: ignore[misc,name-defined]
        def describe(self) -> Any:
            described = super().describe()
            described["has"] = {**described["has"], "unWatchTickers": False, "unWatchTradesForSymbols": False}
            return described

    monkeypatch.setattr(ccxt.pro, "binance", NoUnwatch)
    with fake_exchange("spot", streams=True, balances={"USDT": "1000000"}) as fake:
        account = ccxt_account(alice, fake)
        ccxt_import(account)
        quotes_forget([SYMBOL, ETH])
        with subscribed(SYMBOL):
            with subscribed(ETH):
                wait_for(lambda: streams(fake) == {"btcusdt@ticker", "ethusdt@ticker", "btcusdt@trade", "ethusdt@trade"})
            wait_for(lambda: streams(fake) == {"btcusdt@ticker", "btcusdt@trade"})
            assert not [r for r in fake.streams.requests if r["method"] == "UNSUBSCRIBE"]
            assert len(fake.streams.connections) == 2  # the old set's connections closed
            fake.set_price("BTCUSDT", "50300")
            wait_for(last_is(SYMBOL, "50300"))
