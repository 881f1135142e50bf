"""The KIS WebSocket feed against the fake KIS server, over real sockets:
trades into the quote and 1-minute bars of KRX:005930, encrypted fill
notices into order look-ups booked once with the daily-orders query,
PINGPONG, reconnects, malformed frames, the feed state, one connection per
credential."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
import websockets
from django.conf import settings

from brokers.health import feed_state_get
from brokers.kis import protocol
from brokers.kis.ws import NOTICES_POLLING, NOTICES_WS, KisFeedProvider, KisSession, approval_key_for, order_lookup_deliver, plan_sessions
from marketdata.feeds.registry import BROKER_FEEDS_LOOP, broker_feeds_step, feed_providers, register_feed_provider, runtime_reset
from marketdata.instruments import instrument_ensure_for_venue
from marketdata.models import Bar
from marketdata.quotes import quote_get, quotes_forget
from marketdata.selectors import datafeed_health
from oms.models import Deal, Position
from tests.kis_support import APP_KEY, APP_SECRET, CODE, PRICE, SYMBOL, Kis, kis_running
from tests.servers import run_daphne, run_loops

pytestmark = pytest.mark.django_db(transaction=True)

HTS_ID = "feeduser"
NOTICE_TR = protocol.PAPER_TR.fills_notice
TRADES = f"{protocol.TRADES_TR}:{CODE}"


@pytest.fixture(autouse=True)
def _no_feed_status_left():
    """The feed's status is shared through the cache (Redis in the production
    mode, where the processes these tests start write it too)."""
    yield
    runtime_reset()


def wait_for(condition: Callable[[], Any], *, timeout: float = 10.0, pump: bool = True) -> Any:
    """Step the market-data loop (as the running loop would) until ``condition``."""
    deadline = time.monotonic() + timeout
    while True:
        if pump:
            broker_feeds_step()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Recorder:
    """The notice's look-up as the feed does it, recording what it asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, bool]] = []

    def __call__(self, account_id: int, order_no: str) -> bool:
        delivered = order_lookup_deliver(account_id, order_no)
        self.calls.append((account_id, order_no, delivered))
        return delivered


@pytest.fixture
def kis(settings, alice) -> Iterator[Kis]:
    """The fake KIS server, a KRX instrument quoted by KIS and a KIS paper
    account with an HTS id, as a staff member sets them up."""
    with kis_running(settings, alice, hts_id=HTS_ID) as running:
        settings.KIS_WS_BACKOFF_INITIAL = 0.1
        settings.KIS_WS_BACKOFF_MAX = 0.5
        settings.KIS_WS_RELOAD_INTERVAL = 0.2
        # The orders' access token and the feed's approval key are issued within the minute.
        running.server.configure(ping_interval=0.3, token_interval=0)
        quotes_forget([SYMBOL])
        yield running


@contextlib.contextmanager
def provider_registered(provider: KisFeedProvider) -> Iterator[KisFeedProvider]:
    """``provider`` in place of the registered KIS provider, stopped afterwards."""
    runtime_reset()
    original = {p.name: p for p in feed_providers()}.get("kis")
    register_feed_provider(provider)
    try:
        yield provider
    finally:
        provider.stop()
        if original is not None:
            register_feed_provider(original)
        runtime_reset()


@pytest.fixture
def feed(kis) -> Iterator[KisFeedProvider]:
    with provider_registered(KisFeedProvider(lookup=Recorder())) as provider:
        yield provider


def only_session(provider: KisFeedProvider) -> KisSession:
    assert len(provider.sessions) == 1
    return next(iter(provider.sessions.values()))


def subscribed(provider: KisFeedProvider, *names: str) -> bool:
    return bool(provider.sessions) and set(names) <= set(only_session(provider).subscriptions())


def last_is(price: int) -> Callable[[], Any]:
    return lambda: (q := quote_get(SYMBOL)) is not None and q.last == Decimal(price) and q


def test_trades_stream_into_the_quote_and_the_minute_bars_of_the_krx_symbol(feed, kis):
    wait_for(lambda: subscribed(feed, TRADES))
    kis.server.set_prices(CODE, [70100, 70500, 69800])  # three trades in one frame
    kis.server.set_price(CODE, 70200)
    quote = wait_for(last_is(70200))
    assert quote.symbol == SYMBOL and quote.day_high == Decimal(70500) and quote.day_low == Decimal(69800)
    assert abs(quote.time - time.time()) < 60  # the trade's Korea time, in unix seconds
    bars = list(Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1").order_by("time"))
    assert bars and Decimal(bars[-1].close) == Decimal(70200)
    assert max(Decimal(b.high) for b in bars) == Decimal(70500) and min(Decimal(b.low) for b in bars) == Decimal(69800)
    assert sum(Decimal(b.volume) for b in bars) == 4  # one share a print
    assert bars[-1].time <= datetime.now(UTC)
    assert only_session(feed).stats.trades == 4 and only_session(feed).stats.malformed == 0


def test_the_feed_state_shows_connection_subscriptions_last_message_and_notices(feed, kis):
    wait_for(lambda: subscribed(feed, TRADES, NOTICE_TR))
    state = wait_for(lambda: (s := feed_state_get(kis.account.pk)) is not None and s["connected"] and len(s["subscriptions"]) == 2 and s)
    assert state["subscriptions"] == [NOTICE_TR, TRADES]
    assert state["notices"] == NOTICES_WS and state["error"] == ""
    assert datetime.fromisoformat(state["last_message_at"]) > datetime.fromtimestamp(time.time() - 30, UTC)
    assert APP_KEY not in json.dumps(state) and APP_SECRET not in json.dumps(state)


def test_without_an_hts_id_there_is_no_notice_subscription_and_fills_are_polled(feed, kis):
    kis.account.broker_user_id = ""
    kis.account.save(update_fields=["broker_user_id"])
    wait_for(lambda: subscribed(feed, TRADES))
    state = wait_for(lambda: (s := feed_state_get(kis.account.pk)) is not None and s["connected"] and s["subscriptions"] and s)
    assert state["notices"] == NOTICES_POLLING and state["subscriptions"] == [TRADES]
    assert not [s for s in only_session(feed).plan.wanted() if s[0] == NOTICE_TR]


def deals(kis: Kis) -> list[tuple[Decimal, str]]:
    return list(Deal.objects.filter(account=kis.account).order_by("id").values_list("qty", "broker_trade_id"))


def test_a_fill_notice_books_the_fill_once_with_the_daily_orders_query(feed, kis):
    wait_for(lambda: subscribed(feed, NOTICE_TR))
    order = kis.send(side="buy", order_type="market", qty="3")  # KIS acknowledges, fills, and notices both
    recorder = feed.lookup
    assert isinstance(recorder, Recorder)
    wait_for(lambda: deals(kis) and recorder.calls)  # the notice's look-up delivered the order's progress
    odno = order.broker_order_id.rpartition("-")[2]
    assert {(a, o, d) for a, o, d in recorder.calls} == {(kis.account.pk, odno, True)}
    assert deals(kis) == [(Decimal(3), f"{order.broker_order_id}:3")]
    assert kis.reconcile().fills_booked == 0  # the daily query reports the same fill: booked once
    assert len(deals(kis)) == 1
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("filled", Decimal(3))
    assert Position.objects.get(account=kis.account, symbol=SYMBOL, status="open").qty == Decimal(3)
    assert only_session(feed).stats.malformed == 0


def test_partial_fill_notices_book_each_step_once_whatever_reports_first(feed, kis):
    wait_for(lambda: subscribed(feed, NOTICE_TR))
    kis.server.configure(partial_fill_qty=1)
    order = kis.send(side="buy", order_type="limit", price=str(PRICE), qty="3")  # crosses: 1 fills now
    wait_for(lambda: deals(kis))
    assert kis.reconcile().fills_booked == 0
    odno = order.broker_order_id.rpartition("-")[2]
    kis.server.fill(odno, 1)
    kis.server.fill(odno, 1)  # two notices: looked up once or twice, the progress is booked once
    wait_for(lambda: sum(q for q, _ in deals(kis)) == 3)
    assert kis.reconcile().fills_booked == 0
    booked = deals(kis)
    assert booked[0] == (Decimal(1), f"{order.broker_order_id}:1") and booked[-1][1] == f"{order.broker_order_id}:3"
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("filled", Decimal(3))


def test_a_refused_approval_key_is_issued_anew_and_the_feed_subscribes(kis):
    asked: list[bool] = []

    def approval_key(account_id: int, refresh: bool) -> str:
        asked.append(refresh)
        return approval_key_for(account_id, True) if refresh else "an-approval-key-kis-no-longer-knows"

    with provider_registered(KisFeedProvider(approval_key=approval_key, lookup=Recorder())) as feed:
        wait_for(lambda: subscribed(feed, TRADES, NOTICE_TR))
        assert asked[:2] == [False, True] and only_session(feed).stats.connects == 2


def test_pingpong_is_answered(feed, kis):
    wait_for(lambda: subscribed(feed, TRADES))
    wait_for(lambda: kis.server.pongs_received >= 2, pump=False)
    assert only_session(feed).stats.pingpongs >= 1


def test_a_dropped_connection_reconnects_with_backoff_and_subscribes_again(feed, kis):
    wait_for(lambda: subscribed(feed, TRADES, NOTICE_TR))
    session = only_session(feed)
    kis.server.fault("ws_drop")
    wait_for(lambda: session.stats.connects >= 2 and subscribed(feed, TRADES, NOTICE_TR))
    assert session.stats.failures >= 1
    kis.server.set_price(CODE, 71000)
    wait_for(last_is(71000))
    assert wait_for(lambda: kis_health().get("reconnects", 0) >= 1)  # what /datafeed/health shows


def kis_health() -> dict[str, Any]:
    """The KIS provider's entry of the datafeed health (empty until the loop polled it)."""
    return {f["name"]: f for f in datafeed_health()["feeds"]}.get("kis", {})


def test_a_malformed_frame_is_counted_and_the_feed_goes_on(feed, kis):
    wait_for(lambda: subscribed(feed, TRADES))
    session = only_session(feed)
    # A trade frame whose price is no number, sent by the fake's WebSocket side.
    bad = {name: "" for name in protocol.TRADE_FIELDS} | {"MKSC_SHRN_ISCD": CODE, "STCK_PRPR": "7O,OOO"}
    listener = kis.server.exchange.listener
    assert listener is not None
    listener([("trade", {"code": CODE, "record": bad})])
    wait_for(lambda: session.stats.malformed >= 1)
    kis.server.set_price(CODE, 70700)
    wait_for(last_is(70700))
    assert session.stats.connects == 1 and session.connected
    assert wait_for(lambda: kis_health().get("malformed") == 1) and kis_health()["reconnects"] == 0


def test_one_connection_per_credential_across_providers(feed, kis):
    wait_for(lambda: subscribed(feed, TRADES))
    other = KisFeedProvider()  # a second market-data process
    try:
        assert other.feeds() == [] and other.sessions == {}
    finally:
        other.stop()


def test_an_unreachable_server_is_retried_without_a_crash(feed, kis, settings):
    settings.KIS_PAPER_WS_URL = "ws://127.0.0.1:9"  # nothing listens
    wait_for(lambda: feed.sessions and only_session(feed).stats.failures >= 2)
    state = wait_for(lambda: (s := feed_state_get(kis.account.pk)) is not None and s["error"] and s)
    assert state["connected"] is False and APP_KEY not in state["error"]


def test_the_backoff_grows_with_jitter_and_stays_bounded(settings):
    settings.KIS_WS_BACKOFF_INITIAL = 1.0
    settings.KIS_WS_BACKOFF_MAX = 30.0
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (60, 30.0)):
        delays = [KisSession.backoff(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


# --- production: the marketdata process holds the connection -----------------------------------


@pytest.mark.redis
@pytest.mark.server
@pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only: the processes share quotes and state through Redis")
def test_the_marketdata_processes_hold_one_connection_and_share_quotes_and_state(kis, tmp_path):
    env = {
        "KIS_PAPER_REST_URL": kis.server.rest_url,
        "KIS_PAPER_WS_URL": kis.server.ws_url,
        "KIS_WS_RELOAD_INTERVAL": "0.5",
        "KIS_WS_BACKOFF_INITIAL": "0.2",
        "KIS_WS_BACKOFF_MAX": "1",
        "BROKER_FEEDS_INTERVAL": "0.1",
    }
    with (
        run_loops(tmp_path, BROKER_FEEDS_LOOP, log_name="marketdata-1", **env) as first,
        run_loops(tmp_path, BROKER_FEEDS_LOOP, log_name="marketdata-2", **env) as second,
    ):
        state = wait_for(
            lambda: (s := feed_state_get(kis.account.pk)) is not None and s["connected"] and len(s["subscriptions"]) == 2 and s,
            timeout=60,
            pump=False,
        )
        assert state["subscriptions"] == [NOTICE_TR, TRADES] and state["notices"] == NOTICES_WS
        kis.server.set_price(CODE, 70900)
        wait_for(last_is(70900), timeout=30, pump=False)  # stored by the process holding the connection
        time.sleep(2)  # the other process has re-planned several times meanwhile
        logs = {p.log_path.name: p.log_path.read_text(errors="replace") for p in (first, second)}
        connected = [name for name, text in logs.items() if "KIS feed paper:" in text and ": connected" in text]
        assert len(connected) == 1, connected  # one connection per credential across the processes
        assert first.proc.poll() is None and second.proc.poll() is None
    assert Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1", close=Decimal(70900)).exists()


def test_instruments_past_the_subscription_limit_are_not_streamed_and_the_state_says_so(kis):
    for n in range(protocol.MAX_SUBSCRIPTIONS + 5):
        instrument_ensure_for_venue("KRX", f"{100000 + n:06d}", name=f"TEST {n}")
    (plan,) = plan_sessions()
    streamed = {code for code, _ in plan.codes}
    assert len(plan.wanted()) == protocol.MAX_SUBSCRIPTIONS  # the notice subscription counts
    assert len(streamed) == protocol.MAX_SUBSCRIPTIONS - 1 and CODE in streamed
    assert len(plan.over_limit) == protocol.MAX_SUBSCRIPTIONS + 6 - len(streamed) and not streamed & {
        s.rpartition(":")[2] for s in plan.over_limit
    }
    with ThreadPoolExecutor(max_workers=1) as pool:
        KisSession(plan=plan, approval_key=lambda *_: "", lookup=lambda *_: None, executor=pool).state_write()
    state = feed_state_get(kis.account.pk)
    assert (
        state is not None
        and f"{len(plan.over_limit)} instruments over the {protocol.MAX_SUBSCRIPTIONS}-subscription limit" in state["error"]
    )


# --- the embedded default: the web process's in-process loops hold the connection -----------------


@pytest.mark.server
def test_the_web_process_streams_a_kis_symbol_and_shows_the_feed_on_the_account(kis, alice_key, tmp_path):
    env = {
        "KIS_PAPER_REST_URL": kis.server.rest_url,
        "KIS_PAPER_WS_URL": kis.server.ws_url,
        "KIS_WS_RELOAD_INTERVAL": "0.5",
        "SIMULATOR_HISTORY_DAYS": "0",
        "QUOTE_THROTTLE_INTERVAL": "0",
    }
    headers = {"X-API-Key": alice_key}
    with run_daphne(tmp_path, **env) as server:

        def feed_shown() -> dict[str, Any] | None:
            status = requests.get(f"{server.url}/api/v1/accounts/{kis.account.pk}/status", headers=headers, timeout=5).json()
            feed = status.get("feed")
            return feed if feed and feed["connected"] and len(feed["subscriptions"]) == 2 else None

        feed = wait_for(feed_shown, timeout=60, pump=False)
        assert feed["subscriptions"] == [NOTICE_TR, TRADES] and feed["notices"] == NOTICES_WS and feed["last_message_at"]

        async def stream() -> dict[str, Any]:
            async with websockets.connect(server.ws_url, additional_headers=headers, open_timeout=10) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
                await ws.send(json.dumps({"op": "subscribe", "channel": f"quotes:{SYMBOL}"}))
                deadline = time.monotonic() + 30
                price = 70000
                while time.monotonic() < deadline:
                    price += 100
                    kis.server.set_price(CODE, price)  # a trade at KIS
                    with contextlib.suppress(TimeoutError):
                        while True:
                            frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                            if frame["type"] == "update" and frame["channel"] == f"quotes:{SYMBOL}":
                                return frame["data"]
                raise AssertionError("no quote update")

        update = asyncio.run(stream())
        assert update["symbol"] == SYMBOL and Decimal(update["last"]) > PRICE
        quotes = requests.get(f"{server.url}/api/v1/quotes", params={"symbols": SYMBOL}, headers=headers, timeout=5).json()
        assert quotes["missing"] == [] and Decimal(quotes["results"][0]["last"]) >= Decimal(update["last"])
