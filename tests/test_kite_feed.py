"""The Kite ticker feed against the fake ticker over real sockets: full-mode
packets into the quote (depth, OI) and the 1-minute bars of NSE:INFY,
order-update text frames handed on, reconnect and resubscribe after a drop
or a silence, malformed frames counted, the 3,000-instrument limit, the feed
state."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from brokers.health import feed_state_get
from brokers.kite.fake.ticker import FakeKiteTicker
from brokers.kite.ticker import MODE_FULL
from brokers.kite.ticker_feed import KiteTickerProvider, TickerConnection, plan_connections
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from marketdata.feeds.registry import broker_feeds_step, feed_providers, register_feed_provider, runtime_reset
from marketdata.models import Bar, Instrument
from marketdata.quotes import quote_get, quotes_forget
from marketdata.services import instrument_upsert

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY, ACCESS_TOKEN, USER_ID = "kitekey", "kitetoken", "AB1234"
INFY, RELIANCE = 408065, 738561
SYMBOL = "NSE:INFY"


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


def kite_instrument(symbol: str, token: int) -> Instrument:
    return instrument_upsert(
        symbol=symbol,
        type="stock",
        currency="INR",
        tick_size=Decimal("0.05"),
        lot_size=Decimal(1),
        venue="NSE",
        code=symbol.split(":")[1],
        quote_source="kite",
        broker_codes={"kite": token},
    )


class Orders:
    """The order-update handler, recording what the ticker handed on."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, Any]]] = []

    def __call__(self, account_id: int, order: dict[str, Any]) -> None:
        self.calls.append((account_id, order))


@pytest.fixture
def ticker(settings) -> Iterator[FakeKiteTicker]:
    with FakeKiteTicker() as fake:
        fake.allow(API_KEY, ACCESS_TOKEN, USER_ID)
        fake.heartbeat_interval = 0.2
        settings.KITE_TICKER_URL = fake.url
        settings.KITE_TICKER_BACKOFF_INITIAL = 0.1
        settings.KITE_TICKER_BACKOFF_MAX = 0.5
        settings.KITE_TICKER_RELOAD_INTERVAL = 0.2
        settings.KITE_TICKER_READ_TIMEOUT = 2.0
        yield fake


@pytest.fixture
def account(alice) -> BrokerAccount:
    account = broker_account_create(owner=alice, kind="kite", label="kite", broker_user_id=USER_ID)
    # As a logged-in Kite account is (the credentials are the provider's, below).
    BrokerAccount.objects.filter(pk=account.pk).update(status="active")
    kite_instrument(SYMBOL, INFY)
    quotes_forget([SYMBOL])
    return account


def logged_in(account: BrokerAccount) -> tuple[str, str] | None:
    return (API_KEY, ACCESS_TOKEN) if account.broker_user_id == USER_ID else None


@contextlib.contextmanager
def provider_registered(provider: KiteTickerProvider) -> Iterator[KiteTickerProvider]:
    runtime_reset()
    original = {p.name: p for p in feed_providers()}.get("kite")
    register_feed_provider(provider)
    try:
        yield provider
    finally:
        provider.stop()
        if original is not None:
            register_feed_provider(original)
        runtime_reset()


@pytest.fixture
def orders() -> Orders:
    return Orders()


@pytest.fixture
def feed(ticker, account, orders) -> Iterator[KiteTickerProvider]:
    with provider_registered(KiteTickerProvider(credentials=logged_in, on_order=orders)) as provider:
        yield provider


def only(provider: KiteTickerProvider) -> TickerConnection:
    assert len(provider.connections) == 1
    return next(iter(provider.connections.values()))


def subscribed_full(ticker: FakeKiteTicker, *tokens: int) -> bool:
    return any(all(subs.get(t) == MODE_FULL for t in tokens) for subs in ticker.subscriptions())


def move(ticker: FakeKiteTicker, price: str, volume: int) -> None:
    now = int(time.time())
    ticker.tick(
        INFY,
        last_price=price,
        last_quantity=5,
        volume=volume,
        close="1500",
        open="1505",
        high="1530",
        low="1499",
        average_price="1512.25",
        last_trade_time=now,
        exchange_timestamp=now,
        oi=0,
        bids=[(Decimal(price) - Decimal("0.05"), 40, 3), (Decimal(price) - Decimal("0.10"), 80, 5)],
        asks=[(Decimal(price) + Decimal("0.05"), 30, 2)],
    )


def test_full_packets_stream_into_the_quote_with_depth_and_the_minute_bars(feed, ticker):
    wait_for(lambda: subscribed_full(ticker, INFY))
    move(ticker, "1523.45", 1000)
    quote = wait_for(lambda: (q := quote_get(SYMBOL)) is not None and q.last == Decimal("1523.45") and q)
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (Decimal("1523.40"), Decimal("1523.50"), Decimal(40), Decimal(30))
    assert quote.prev_close == Decimal("1500.00") and quote.volume == Decimal(1000)
    assert quote.extra["depth"]["buy"][1] == {"price": "1523.35", "quantity": 80, "orders": 5}
    assert quote.extra["average_price"] == "1512.25"
    move(ticker, "1524.00", 1250)
    wait_for(lambda: (q := quote_get(SYMBOL)) is not None and q.last == Decimal("1524.00"))
    bar = wait_for(lambda: Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1", close=Decimal("1524.00")).first())
    assert bar.high == Decimal("1524.00") and bar.volume >= Decimal(250)


def test_the_feed_state_shows_the_connection_and_full_mode_subscriptions(feed, ticker, account):
    wait_for(lambda: subscribed_full(ticker, INFY))
    state = wait_for(lambda: (s := feed_state_get(account.pk)) is not None and s["connected"] and s["subscriptions"] and s)
    assert state["subscriptions"] == [f"full:{INFY}"] and state["error"] == ""
    assert ACCESS_TOKEN not in str(state) and API_KEY not in str(state)


def test_order_update_frames_are_handed_on_with_the_account(feed, ticker, account, orders):
    wait_for(lambda: subscribed_full(ticker, INFY))
    order = {"order_id": "250101000000001", "status": "COMPLETE", "user_id": USER_ID, "filled_quantity": 1}
    ticker.order_update(order)
    ticker.order_update({"order_id": "2", "status": "OPEN", "user_id": "SOMEONE"})  # another user's: not sent here
    wait_for(lambda: orders.calls)
    time.sleep(0.3)
    assert orders.calls == [(account.pk, order)]


def test_a_dropped_connection_reconnects_with_backoff_and_subscribes_again(feed, ticker):
    wait_for(lambda: subscribed_full(ticker, INFY))
    connection = only(feed)
    ticker.drop()
    wait_for(lambda: connection.stats.connects >= 2 and subscribed_full(ticker, INFY))
    assert connection.stats.failures >= 1 and ticker.connects >= 2
    move(ticker, "1530.00", 2000)
    wait_for(lambda: (q := quote_get(SYMBOL)) is not None and q.last == Decimal("1530.00"))
    assert connection.feed.reconnects >= 1


def test_a_silent_connection_is_reopened(feed, ticker, settings):
    settings.KITE_TICKER_READ_TIMEOUT = 0.5
    ticker.heartbeat_interval = 0  # no heartbeats: the feed must not trust the socket
    wait_for(lambda: subscribed_full(ticker, INFY))
    connection = only(feed)
    wait_for(lambda: connection.stats.connects >= 2, timeout=10)
    assert "heartbeat" in connection.error or connection.stats.failures >= 1


def test_malformed_frames_are_counted_and_the_feed_goes_on(feed, ticker):
    wait_for(lambda: subscribed_full(ticker, INFY))
    connection = only(feed)
    ticker.send_raw(b"\x00\x02\x00\x08\x00\x06")  # two packets announced, one cut short
    ticker.send_raw(b"\x00\x01\x00\x2c" + b"\x00" * 10)  # a quote packet cut short
    ticker.send_raw("not json")
    wait_for(lambda: connection.stats.malformed >= 3)
    move(ticker, "1525.00", 3000)
    wait_for(lambda: (q := quote_get(SYMBOL)) is not None and q.last == Decimal("1525.00"))
    assert connection.stats.connects == 1 and connection.connected
    assert connection.feed.malformed >= 3


def test_a_refused_token_is_retried_and_shown_without_secrets(ticker, account, orders):
    ticker.revoke(API_KEY, ACCESS_TOKEN)
    with provider_registered(KiteTickerProvider(credentials=logged_in, on_order=orders)) as provider:
        wait_for(lambda: provider.connections and only(provider).stats.failures >= 2)
        state = wait_for(lambda: (s := feed_state_get(account.pk)) is not None and s["error"] and s)
    assert state["connected"] is False and "403" in state["error"]
    assert ACCESS_TOKEN not in state["error"] and API_KEY not in state["error"]


def test_instruments_past_the_per_connection_limit_take_more_connections_then_are_refused(ticker, account, settings, orders):
    settings.KITE_TICKER_MAX_TOKENS = 2
    settings.KITE_TICKER_MAX_CONNECTIONS = 2
    for i in range(4):
        kite_instrument(f"NSE:X{i}", 1000 + i * 256 + 1)
    plans = plan_connections(logged_in)  # INFY and X0..X3: 5 instruments, room for 4
    assert [len(p.tokens) for p in plans] == [2, 2] and all(p.over_limit == 1 for p in plans)
    assert [len(p.accounts) for p in plans] == [1, 0]  # order updates arrive once, on the first
    with provider_registered(KiteTickerProvider(credentials=logged_in, on_order=orders)) as provider:
        wait_for(lambda: len(ticker.connections) == 2 and all(len(s) == 2 for s in ticker.subscriptions()))
        state = wait_for(lambda: (s := feed_state_get(account.pk)) is not None and s["connected"] and s)
        assert "1 instruments over" in state["error"]
        assert len(provider.connections) == 2


def test_never_more_than_3000_instruments_on_one_connection(account, settings):
    settings.KITE_TICKER_MAX_TOKENS = 10_000  # a setting above Kite's limit is capped
    Instrument.objects.bulk_create(
        [
            Instrument(symbol=f"NSE:B{i}", venue="NSE", code=f"B{i}", quote_source="kite", broker_codes={"kite": 10_000 + i}, type="stock")
            for i in range(3000)
        ]
    )
    plans = plan_connections(logged_in)
    assert [len(p.tokens) for p in plans] == [3000, 1]
    assert len({t for p in plans for t, _ in p.tokens}) == 3001


def test_a_second_process_leaves_the_connection_to_the_first(feed, ticker):
    wait_for(lambda: subscribed_full(ticker, INFY))
    other = KiteTickerProvider(credentials=logged_in, on_order=Orders())
    try:
        assert other.feeds() == [] and other.connections == {}
    finally:
        other.stop()
    assert len(ticker.connections) == 1


def test_the_backoff_grows_with_jitter_and_stays_bounded(settings):
    settings.KITE_TICKER_BACKOFF_INITIAL = 1.0
    settings.KITE_TICKER_BACKOFF_MAX = 8.0
    for failures, (low, high) in {1: (0.5, 1.0), 3: (2.0, 4.0), 10: (4.0, 8.0)}.items():
        delays = [TickerConnection.backoff(failures) for _ in range(50)]
        assert all(low <= d <= high for d in delays), (failures, delays)
