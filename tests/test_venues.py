"""Venues and instrument identity: VENUE:CODE names, the venue registry, the
KRX tick bands, who may trade what (REST and the WebSocket command op), the
KIS instrument import, and a simulated instrument moved aside (with its bars,
orders, deals, positions, paper book and quote) when a broker's claims its name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal as D
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.db import connections

from brokers.paper.book import InstrumentSpec, Order
from brokers.paper.models import PaperAccount, PaperFill, PaperOrder, PaperPosition
from brokers.paper.rules import new_order_refusal
from brokers.services import broker_account_create
from marketdata.instruments import instrument_ensure_for_venue, instruments_import_for_venue
from marketdata.models import Bar, Instrument
from marketdata.quotes import quote_get, quote_store, quotes_forget
from marketdata.services import bars_upsert, instrument_upsert
from marketdata.simulation import simulated_quotes
from marketdata.types import Bar as BarData
from marketdata.types import Quote
from marketdata.venues import (
    krx_tick_size,
    symbol_compose,
    symbol_split,
    tick_size_for,
    venue_get,
    venue_traded_by,
    venues_of,
)
from oms.models import Deal, Position
from oms.models import Order as OmsOrder
from tests.fakes import FakeVenue
from tests.kis_support import kis_account
from tests.oms_support import broker_registered, tasks_in_process

NOW = time.time()


def quote(symbol: str, last: str) -> None:
    price = D(last)
    quote_store(Quote(symbol=symbol, time=time.time(), last=price, bid=price, ask=price, bid_size=D(1000), ask_size=D(1000)))


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture
def no_simulator(settings) -> Iterator[None]:
    settings.SIMULATOR_ENABLED = False  # the quotes are the test's own
    yield
    quotes_forget(["AAPL", "KRX:005930", "NSE:INFY", "SIM:NSE:INFY"])


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Orders are sent in this process in the production mode too (no worker here)."""
    with tasks_in_process():
        yield


@pytest.fixture
def kis_venue() -> Iterator[FakeVenue]:
    """KIS accounts served by a scripted venue that trades as a real broker:
    only its own venue's (KRX's) instruments."""
    venue = FakeVenue(mode="ack", any_instrument=False)
    with broker_registered("kis", venue.broker):
        yield venue


@pytest.fixture
def aapl(db) -> Instrument:
    return instrument_upsert(symbol="AAPL", type="stock", tick_size=D("0.01"), lot_size=D(1))


@pytest.fixture
def samsung(db) -> Instrument:
    return instrument_ensure_for_venue("KRX", "005930", name="Samsung Electronics")


# --- names and the venue registry ------------------------------------------------------------------


def test_broker_instruments_are_named_venue_colon_code():
    assert symbol_compose("KRX", "005930") == "KRX:005930"
    assert symbol_split("KRX:005930") == ("KRX", "005930")
    assert symbol_split("NFO:NIFTY25DECFUT") == ("NFO", "NIFTY25DECFUT")
    # A CCXT code may hold "/" and ":" itself: the venue ends at the first ":".
    assert symbol_split("BINANCE:BTC/USDT:USDT") == ("BINANCE", "BTC/USDT:USDT")
    assert symbol_split("SIM:NSE:INFY") == ("SIM", "NSE:INFY")
    assert symbol_split("AAPL") is None and symbol_split("BTC/USDT") is None and symbol_split("nse:INFY") is None


def test_the_venue_registry_says_currency_timezone_session_tick_rule_and_broker():
    krx = venue_get("KRX")
    assert (krx.currency, krx.timezone, krx.session, krx.tick_rule, krx.broker_kind) == ("KRW", "Asia/Seoul", "0900-1530", "krx", "kis")
    assert {venue_get(v).broker_kind for v in ("NSE", "BSE", "NFO")} == {"kite"}
    binance = venue_get("BINANCE")  # any CCXT exchange id, upper-cased
    assert (binance.broker_kind, binance.instrument_type, binance.session) == ("ccxt", "crypto", "24x7")
    with pytest.raises(ValueError):
        venue_get("bad venue")
    assert venues_of(kind="kis") == ["KRX"] and venues_of(kind="kite") == ["NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX", "NCO"]
    assert venues_of(kind="ccxt", exchange_id="binance") == ["BINANCE"]


def test_which_broker_kind_trades_which_venue():
    assert venue_traded_by("KRX", kind="kis")
    assert not venue_traded_by("KRX", kind="kite") and not venue_traded_by("NSE", kind="kis")
    assert venue_traded_by("NFO", kind="kite")
    assert venue_traded_by("BINANCE", kind="ccxt", exchange_id="binance")
    assert not venue_traded_by("OKX", kind="ccxt", exchange_id="binance")
    assert not venue_traded_by("SIM", kind="kis")  # the simulator's: paper accounts only


def test_simulated_instruments_keep_their_symbols_in_venue_sim(db):
    instrument = instrument_upsert(symbol="NSE:INFY", type="stock", currency="INR", tick_size=D("0.05"))
    assert (instrument.venue, instrument.code, instrument.quote_source) == ("SIM", "NSE:INFY", "simulator")


def test_an_instrument_of_a_broker_venue_must_be_named_venue_colon_code(db):
    from core.exceptions import InvalidInput

    with pytest.raises(InvalidInput):
        instrument_upsert(symbol="005930", venue="KRX", code="005930")
    with pytest.raises(InvalidInput):
        instrument_ensure_for_venue("KRX", "5930")  # KRX codes have 6 characters
    with pytest.raises(InvalidInput):
        instrument_ensure_for_venue("SIM", "AAPL")  # the simulator's are not imported


# --- ticks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("1", 1),
        ("1999", 1),
        ("2000", 5),
        ("4995", 5),
        ("5000", 10),
        ("19990", 10),
        ("20000", 50),
        ("49950", 50),
        ("50000", 100),
        ("199900", 100),
        ("200000", 500),
        ("499500", 500),
        ("500000", 1000),
        ("2500000", 1000),
    ],
)
def test_krx_tick_size_follows_the_price_bands(price, tick):
    assert krx_tick_size(D(price)) == D(tick)


def test_other_venues_use_the_instruments_own_tick_size():
    krx = InstrumentSpec(symbol="KRX:005930", tick_size=D(1), venue="KRX")
    nse = InstrumentSpec(symbol="NSE:INFY", tick_size=D("0.05"), venue="NSE")
    assert tick_size_for(krx, D(70_000)) == D(100) and tick_size_for(krx, None) == D(1)
    assert tick_size_for(nse, D(70_000)) == D("0.05")


def test_the_paper_venue_checks_krx_prices_on_the_band_tick():
    spec = InstrumentSpec(symbol="KRX:005930", tick_size=D(1), currency="KRW", venue="KRX")

    def refusal(price: str) -> str | None:
        order = Order(
            no=1, broker_order_id="P1", client_order_id="c", symbol=spec.symbol, side="buy", order_type="limit", qty=D(1), price=D(price)
        )
        return new_order_refusal(order, spec, None, now=NOW, stale_seconds=10, reducible=D(0))

    assert refusal("70100") is None and refusal("1999") is None
    assert "tick size 100" in (refusal("70050") or "") and "tick size 5" in (refusal("2001") or "")


@pytest.mark.django_db(transaction=True)
def test_the_oms_refuses_a_krx_price_off_the_band_tick(alice_api, alice, kis_venue, samsung, no_simulator, eager_tasks):
    account = kis_account(alice)
    order = {"symbol": "KRX:005930", "side": "buy", "order_type": "limit", "qty": "1"}
    body = error(
        alice_api.post(f"/api/v1/accounts/{account.pk}/orders", {**order, "price": "70050"}, format="json"), 422, "validation_error"
    )
    assert body["fields"]["price"] == ["Must be on the tick size 100."]
    accepted = alice_api.post(f"/api/v1/accounts/{account.pk}/orders", {**order, "price": "70100"}, format="json")
    assert accepted.status_code == 202, accepted.json()
    order_id = accepted.json()["order_id"]
    assert OmsOrder.objects.get().price == D(70100)
    # A change is checked on the band of its new price: 49,950 is on the 50 won grid, 49,960 is not.
    body = error(alice_api.post(f"/api/v1/orders/{order_id}/change", {"price": "49960"}, format="json"), 422, "validation_error")
    assert body["fields"]["price"] == ["Must be on the tick size 50."]
    assert alice_api.post(f"/api/v1/orders/{order_id}/change", {"price": "49950"}, format="json").status_code in (200, 202)


# --- who may trade what ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_paper_account_trades_a_krx_instrument_on_its_quotes(alice_api, alice, samsung, no_simulator, eager_tasks):
    paper = broker_account_create(owner=alice, kind="paper", label="paper", base_currency="KRW")
    market = {"symbol": "KRX:005930", "side": "buy", "order_type": "market", "qty": "3"}
    # No quote has arrived from KIS yet: nothing to trade on.
    body = error(alice_api.post(f"/api/v1/accounts/{paper.pk}/orders", market, format="json"), 422, "instrument_not_tradable")
    assert "no quotes" in body["message"] and OmsOrder.objects.count() == 0
    quote("KRX:005930", "70000")
    assert alice_api.post(f"/api/v1/accounts/{paper.pk}/orders", market, format="json").status_code == 202
    order = OmsOrder.objects.get()
    assert (order.status, order.filled_qty) == ("filled", D(3))
    assert Position.objects.get(account=paper).symbol == "KRX:005930"


def test_a_kis_account_may_not_trade_a_simulated_instrument_over_rest(alice_api, alice, kis_venue, aapl, samsung, no_simulator):
    account = kis_account(alice)
    quote("AAPL", "190")
    response = alice_api.post(
        f"/api/v1/accounts/{account.pk}/orders",
        {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "190"},
        format="json",
    )
    body = error(response, 422, "instrument_not_tradable")
    assert body["fields"]["symbol"] == ["AAPL trades on SIM: a kis account trades KRX instruments only."]
    assert OmsOrder.objects.count() == 0 and kis_venue.placed == []


@pytest.mark.django_db(transaction=True)
def test_a_kis_account_may_not_trade_a_simulated_instrument_over_the_ws_command(alice, kis_venue, aapl, no_simulator):
    from streams.routing import websocket_urlpatterns

    account = kis_account(alice)
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)

    async def scenario() -> dict[str, Any]:
        comm = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        comm.scope["user"] = alice
        try:
            connected, _ = await comm.connect(timeout=10)
            assert connected
            assert (await comm.receive_json_from(timeout=10))["type"] == "hello"
            payload = {"symbol": "AAPL", "side": "buy", "order_type": "market", "qty": "1"}
            await comm.send_json_to(
                {"op": "command", "request_id": "r1", "account_id": account.pk, "command": "send_order", "payload": payload}
            )
            return await comm.receive_json_from(timeout=10)
        finally:
            await comm.disconnect()
            await database_sync_to_async(connections.close_all)()

    frame = asyncio.run(asyncio.wait_for(scenario(), 30))
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    assert frame["type"] == "error" and frame["request_id"] == "r1", frame
    assert frame["data"]["error"]["code"] == "instrument_not_tradable", frame
    assert OmsOrder.objects.count() == 0


# --- the KIS import ----------------------------------------------------------------------------------


def test_import_kis_instruments_creates_krx_instruments_without_network(alice):
    account = kis_account(alice)
    out = StringIO()
    call_command("import_kis_instruments", str(account.pk), "005930=Samsung Electronics", "000660", stdout=out)
    assert "Created: KRX:005930, KRX:000660" in out.getvalue()
    samsung = Instrument.objects.get(symbol="KRX:005930")
    assert (samsung.venue, samsung.code, samsung.quote_source, samsung.exchange) == ("KRX", "005930", "kis", "KRX")
    assert (samsung.type, samsung.currency, samsung.timezone, samsung.session) == ("stock", "KRW", "Asia/Seoul", "0900-1530")
    assert samsung.description == "Samsung Electronics" and samsung.sim_params == {} and samsung.broker_codes == {"kis": "005930"}
    assert Instrument.objects.get(symbol="KRX:000660").description == ""
    out = StringIO()
    call_command("import_kis_instruments", str(account.pk), "005930", "000660=SK hynix", stdout=out)
    assert "Updated: KRX:000660" in out.getvalue() and "Unchanged: KRX:005930" in out.getvalue()


def test_import_kis_instruments_refuses_bad_codes_and_other_accounts(alice):
    account = kis_account(alice)
    with pytest.raises(CommandError, match="Not a KRX code"):
        call_command("import_kis_instruments", str(account.pk), "005930", "59-30")
    assert not Instrument.objects.filter(venue="KRX").exists()  # all or none
    paper = broker_account_create(owner=alice, kind="paper", label="paper")
    with pytest.raises(CommandError, match="not a KIS one"):
        call_command("import_kis_instruments", str(paper.pk), "005930")
    with pytest.raises(CommandError, match="venue"):
        call_command("import_instruments", "--venue", "KRX X", "005930")
    with pytest.raises(CommandError, match="at most 200"):
        call_command("import_instruments", "--venue", "KRX", "005930=" + "x" * 201)
    with pytest.raises(CommandError, match="printable"):
        call_command("import_instruments", "--venue", "BINANCE", "BTC USDT")


def test_the_api_and_the_chart_show_the_venue(alice_api, aapl, samsung):
    listed = alice_api.get("/api/v1/symbols", {"venue": "krx"}).json()["results"]
    assert [(i["symbol"], i["venue"], i["code"], i["quote_source"]) for i in listed] == [("KRX:005930", "KRX", "005930", "kis")]
    info = alice_api.get("/api/v1/datafeed/symbols", {"symbol": "KRX:005930"}).json()
    assert (info["exchange"], info["listed_exchange"], info["currency_code"], info["timezone"]) == ("KRX", "KRX", "KRW", "Asia/Seoul")


# --- moving a simulated instrument aside ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_broker_import_moves_the_simulated_instrument_aside_with_its_rows(alice_api, alice, no_simulator, eager_tasks):
    simulated = instrument_upsert(
        symbol="NSE:INFY",
        description="Infosys Ltd (simulated)",
        exchange="NSE",
        type="stock",
        currency="INR",
        tick_size=D("0.05"),
        sim_params={"price": 1500.0},
    )
    bars_upsert(
        instrument=simulated,
        resolution="1",
        bars=[
            BarData(time=int(NOW) // 60 * 60 - 60 * k, open=D(1500), high=D(1501), low=D(1499), close=D(1500), volume=D(10))
            for k in range(1, 4)
        ],
    )
    paper = broker_account_create(owner=alice, kind="paper", label="paper", base_currency="INR")
    quote("NSE:INFY", "1500")
    orders = f"/api/v1/accounts/{paper.pk}/orders"
    assert (
        alice_api.post(orders, {"symbol": "NSE:INFY", "side": "buy", "order_type": "market", "qty": "2"}, format="json").status_code == 202
    )
    resting = alice_api.post(
        orders, {"symbol": "NSE:INFY", "side": "buy", "order_type": "limit", "qty": "1", "price": "1000"}, format="json"
    ).json()

    out = StringIO()
    call_command("import_instruments", "--venue", "NSE", "INFY=Infosys", stdout=out)

    said = out.getvalue()
    assert "The simulated NSE:INFY was moved aside to SIM:NSE:INFY with 3 bars" in said and "2 orders" in said and "1 positions" in said
    assert "Created: NSE:INFY" in said
    moved = Instrument.objects.get(symbol="SIM:NSE:INFY")
    assert moved.pk == simulated.pk and moved.venue == "SIM" and moved.code == "NSE:INFY"
    assert Bar.objects.filter(instrument=moved).count() == 3
    broker = Instrument.objects.get(symbol="NSE:INFY")
    assert (broker.venue, broker.code, broker.quote_source, broker.sim_params, broker.description) == ("NSE", "INFY", "kite", {}, "Infosys")
    assert not Bar.objects.filter(instrument=broker).exists()
    for model in (OmsOrder, Deal, Position, PaperOrder, PaperFill, PaperPosition):
        assert not model.objects.filter(symbol="NSE:INFY").exists(), model
        assert model.objects.filter(symbol="SIM:NSE:INFY").exists(), model
    state = PaperAccount.objects.get(pk=paper.pk).market_state
    assert "SIM:NSE:INFY" in state and "NSE:INFY" not in state
    # The quote moved with it: the broker's instrument has none until its feed sends one.
    assert quote_get("SIM:NSE:INFY").symbol == "SIM:NSE:INFY" and quote_get("NSE:INFY") is None

    # The trader carries on under the new name: the resting order cancels, the position closes.
    assert alice_api.post(f"/api/v1/orders/{resting['order_id']}/cancel", format="json").status_code in (200, 202)
    assert OmsOrder.objects.get(pk=resting["order_id"]).status == "canceled"
    sell = {"symbol": "SIM:NSE:INFY", "side": "sell", "order_type": "market", "qty": "2"}
    assert alice_api.post(orders, sell, format="json").status_code == 202
    position = Position.objects.get(account=paper)
    assert (position.symbol, position.status, position.qty) == ("SIM:NSE:INFY", "closed", D(0))


def test_a_moved_aside_instrument_keeps_its_simulated_prices(db):
    instrument_upsert(symbol="NSE:INFY", type="stock", currency="INR", tick_size=D("0.05"), sim_params={"price": 1500.0, "volatility": 0.3})
    before = simulated_quotes(["NSE:INFY"], now=NOW)["NSE:INFY"]
    result = instruments_import_for_venue(venue="NSE", items=[("INFY", "")])
    assert [(m.old_symbol, m.new_symbol) for m in result.moved_aside] == [("NSE:INFY", "SIM:NSE:INFY")]
    after = simulated_quotes(["SIM:NSE:INFY", "NSE:INFY"], now=NOW)
    assert set(after) == {"SIM:NSE:INFY"}  # the broker's NSE:INFY is never simulated
    assert after["SIM:NSE:INFY"].last == before.last
    # One quote source per instrument: sim params set on the broker's by hand do not make it simulated.
    instrument_upsert(symbol="NSE:INFY", sim_params={"price": 1500.0})
    assert set(simulated_quotes(["SIM:NSE:INFY", "NSE:INFY"], now=NOW)) == {"SIM:NSE:INFY"}


def test_a_broker_feed_takes_quotes_of_a_just_imported_instrument_at_the_next_step(db, no_simulator):
    from marketdata.feeds.base import Feed
    from marketdata.feeds.registry import PushFeed, broker_feeds_step, register_feed_provider, runtime_reset, unregister_feed_provider

    class KisQuotes:
        name, source = "kis-test", "kis"

        def __init__(self) -> None:
            self.feed = PushFeed("kis-test:0")

        def feeds(self) -> list[Feed]:
            return [self.feed]

        def stop(self) -> None:
            pass

    provider = KisQuotes()
    runtime_reset()
    register_feed_provider(provider)
    try:
        instrument_ensure_for_venue("KRX", "000660")  # the feed's runtime holds an instrument already
        tick_quote = Quote(symbol="KRX:005930", time=time.time(), last=D(70000), bid=D(69900), ask=D(70000))
        provider.feed.push(quotes=[tick_quote])
        broker_feeds_step()
        assert quote_get("KRX:005930") is None  # no such instrument yet: not stored
        instrument_ensure_for_venue("KRX", "005930")
        provider.feed.push(quotes=[tick_quote])
        broker_feeds_step()
        assert quote_get("KRX:005930").last == D(70000)
    finally:
        unregister_feed_provider(provider.name)
        runtime_reset()


def test_the_simulator_ticks_a_moved_aside_instrument_under_its_new_name_at_once(db, settings, django_capture_on_commit_callbacks):
    from marketdata.simulation import runtime_reset, simulator_step

    settings.SIMULATOR_HISTORY_DAYS = 0
    instrument_upsert(symbol="NSE:INFY", type="stock", currency="INR", tick_size=D("0.05"), sim_params={"price": 1500.0})
    runtime_reset()
    try:
        quotes, _ = simulator_step(NOW)
        assert {q.symbol for q in quotes} == {"NSE:INFY"}
        with django_capture_on_commit_callbacks(execute=True):
            instruments_import_for_venue(venue="NSE", items=[("INFY", "Infosys")])
        quotes, touched = simulator_step(NOW + 1)
        assert {q.symbol for q in quotes} == {"SIM:NSE:INFY"} and {symbol for symbol, _ in touched} <= {"SIM:NSE:INFY"}
        assert quote_get("NSE:INFY") is None  # the broker's instrument waits for its feed
        assert Bar.objects.filter(instrument__symbol="NSE:INFY").count() == 0
    finally:
        runtime_reset()
        quotes_forget(["NSE:INFY", "SIM:NSE:INFY"])
