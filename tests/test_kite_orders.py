"""Kite orders through the terminal's REST paths against the fake Kite:
Kite's field names beside ours, the tag as the client order id, product and
variety (iceberg, TTL, amo) checked against the broker, holdings with P&L
and margins in INR, account sync, historical candles with OI."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from brokers.kite.adapter import KiteBroker
from brokers.models import BrokerAccount
from oms.models import Order
from oms.services.sync import account_sync
from tests import kite_support
from tests.kite_support import TOKEN, USER_ID

pytestmark = pytest.mark.django_db(transaction=True)

fake_kite = kite_support.fake_kite  # the fixtures
kite_account = kite_support.kite_account

RESTING = {"symbol": "NSE:INFY", "side": "buy", "order_type": "limit", "qty": "2", "price": "1400.00", "time_in_force": "day"}


@pytest.fixture
def api(alice_api, django_capture_on_commit_callbacks):
    class Api:
        def post(self, account: BrokerAccount, body: dict):
            with django_capture_on_commit_callbacks(execute=True):
                return alice_api.post(f"/api/v1/accounts/{account.pk}/orders", body, format="json")

        def get(self, path: str):
            return alice_api.get(path)

        def cancel(self, order: Order):
            with django_capture_on_commit_callbacks(execute=True):
                return alice_api.post(f"/api/v1/orders/{order.pk}/cancel", {}, format="json")

    return Api()


def at_kite(fake, order: Order) -> dict:
    return fake.exchange.orders[order.broker_order_id][-1]


def test_kites_field_names_place_the_same_order(api, kite_account, fake_kite):
    answer = api.post(
        kite_account,
        {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "transaction_type": "BUY",
            "quantity": 3,
            "product": "MIS",
            "order_type": "SL",
            "price": "1600.00",
            "trigger_price": "1590.00",
            "validity": "DAY",
        },
    )
    assert answer.status_code in (201, 202), answer.content
    order = Order.objects.get(pk=answer.json()["order_id"])
    assert (order.symbol, order.side, order.order_type, order.qty) == ("NSE:INFY", "buy", "stop_limit", Decimal(3))
    assert (order.price, order.stop_price, order.time_in_force, order.broker_fields) == (
        Decimal(1600),
        Decimal(1590),
        "day",
        {"product": "MIS"},
    )
    sent = at_kite(fake_kite, order)
    assert (sent["order_type"], sent["product"], sent["trigger_price"], sent["price"], sent["quantity"]) == ("SL", "MIS", 1590, 1600, 3)
    assert sent["status"] == "TRIGGER PENDING" and order.status == "new"


def test_our_name_and_kites_for_the_same_thing_are_refused(api, kite_account, fake_kite):
    answer = api.post(kite_account, {**RESTING, "tradingsymbol": "INFY", "exchange": "NSE"})
    assert answer.status_code == 422 and "tradingsymbol" in answer.json()["error"]["fields"], answer.content
    answer = api.post(kite_account, {**RESTING, "quantity": 2})
    assert answer.status_code == 422 and "quantity" in answer.json()["error"]["fields"]
    answer = api.post(kite_account, {**RESTING, "transaction_type": "HOLD", "side": None})
    assert answer.status_code == 422
    assert not Order.objects.exists() and not fake_kite.exchange.orders


def test_a_paper_account_takes_no_kite_field_names(api, alice):
    from brokers.services import broker_account_create
    from marketdata.services import instrument_upsert

    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    paper = broker_account_create(owner=alice, kind="paper", label="p")
    answer = api.post(paper, {"tradingsymbol": "AAPL", "exchange": "NSE", "transaction_type": "BUY", "quantity": 1, "order_type": "MARKET"})
    assert answer.status_code == 422 and answer.json()["error"]["fields"].get("tradingsymbol") == ["Unknown field."]


def test_the_client_order_id_travels_as_kites_tag(api, kite_account, fake_kite):
    generated = Order.objects.get(pk=api.post(kite_account, RESTING).json()["order_id"])
    assert len(generated.client_order_id) <= 20 and generated.client_order_id.isalnum()
    assert at_kite(fake_kite, generated)["tag"] == generated.client_order_id
    named = Order.objects.get(pk=api.post(kite_account, {**RESTING, "client_order_id": "Mine123"}).json()["order_id"])
    assert at_kite(fake_kite, named)["tag"] == "Mine123"
    view = KiteBroker(kite_account).get_order(client_order_id="Mine123")
    assert view is not None and view.broker_order_id == named.broker_order_id


@pytest.mark.parametrize("client_order_id", ["has-a-dash", "under_score", "x" * 21])
def test_a_client_order_id_kite_cannot_carry_is_refused_at_once(api, kite_account, fake_kite, client_order_id):
    answer = api.post(kite_account, {**RESTING, "client_order_id": client_order_id})
    assert answer.status_code == 422, answer.content
    error = answer.json()["error"]
    assert error["code"] == "unsupported_by_broker" and "client_order_id" in error["fields"]
    assert not Order.objects.exists() and not fake_kite.exchange.orders


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"product": "BO"}, "product"),
        ({"variety": "bracket"}, "variety"),
        ({"time_in_force": "gtc"}, "time_in_force"),
        ({"variety": "iceberg"}, "iceberg_legs"),
        ({"iceberg_legs": 3, "iceberg_quantity": 1}, "iceberg_legs"),
        ({"variety": "iceberg", "iceberg_legs": 11, "iceberg_quantity": 1}, "iceberg_legs"),
        ({"variety": "iceberg", "iceberg_legs": 2, "iceberg_quantity": 1}, "iceberg_quantity"),  # 2 legs of 1 do not cover 3
        ({"validity_ttl": 5, "time_in_force": "ioc"}, "validity_ttl"),
        ({"validity_ttl": 0}, "validity_ttl"),
        ({"validity": "TTL", "time_in_force": None}, "validity_ttl"),
    ],
)
def test_product_and_variety_are_checked_before_anything_is_sent(api, kite_account, fake_kite, change, field):
    body = {k: v for k, v in {**RESTING, "qty": "3", **change}.items() if v is not None}
    answer = api.post(kite_account, body)
    assert answer.status_code == 422, answer.content
    assert any(name.endswith(field) for name in answer.json()["error"]["fields"]), answer.json()
    assert not Order.objects.exists() and not fake_kite.exchange.orders


def test_iceberg_ttl_and_amo_orders_reach_kite_as_such(api, kite_account, fake_kite):
    iceberg = api.post(kite_account, {**RESTING, "qty": "10", "variety": "iceberg", "iceberg_legs": 5, "iceberg_quantity": 2})
    assert iceberg.status_code in (201, 202), iceberg.content
    sent = at_kite(fake_kite, Order.objects.get(pk=iceberg.json()["order_id"]))
    assert (sent["variety"], sent["meta"]["iceberg"]["legs"]) == ("iceberg", 5)
    ttl = api.post(kite_account, {**RESTING, "validity_ttl": 15})
    sent = at_kite(fake_kite, Order.objects.get(pk=ttl.json()["order_id"]))
    assert (sent["validity"], sent["validity_ttl"]) == ("TTL", 15)
    kite_ttl = api.post(kite_account, {**{k: v for k, v in RESTING.items() if k != "time_in_force"}, "validity": "TTL", "validity_ttl": 3})
    assert kite_ttl.status_code in (201, 202), kite_ttl.content
    amo = Order.objects.get(pk=api.post(kite_account, {**RESTING, "variety": "amo", "product": "CNC"}).json()["order_id"])
    assert at_kite(fake_kite, amo)["status"] == "AMO REQ RECEIVED" and amo.status == "new"
    assert amo.broker_fields == {"variety": "amo", "product": "CNC"}


def test_holdings_with_pnl_and_t1_and_funds_in_inr(api, kite_account, fake_kite):
    fake_kite.set_holdings(
        USER_ID,
        [
            {
                "tradingsymbol": "INFY",
                "exchange": "NSE",
                "instrument_token": TOKEN,
                "isin": "INE009A01021",
                "product": "CNC",
                "quantity": 10,
                "t1_quantity": 2,
                "average_price": 1400.5,
                "last_price": 1500,
                "close_price": 1490,
                "pnl": 1194.0,
                "day_change": 10,
                "day_change_percentage": 0.67,
            }
        ],
    )
    fake_kite.set_cash(USER_ID, "250000.50", "10000")
    holdings = api.get(f"/api/v1/accounts/{kite_account.pk}/holdings")
    assert holdings.status_code == 200, holdings.content
    [row] = holdings.json()["results"]
    assert row["symbol"] == "NSE:INFY" and Decimal(row["qty"]) == 12 and Decimal(row["t1_qty"]) == 2
    assert Decimal(row["pnl"]) == Decimal("1194") and Decimal(row["avg_price"]) == Decimal("1400.5") and row["currency"] == "INR"
    funds = KiteBroker(kite_account).funds()
    assert funds.currency == "INR" and [b.currency for b in funds.balances] == ["INR"]
    assert funds.cash == Decimal("260000.5") and Decimal(funds.raw["commodity"]["available"]["cash"]) == 10000
    answer = api.get(f"/api/v1/accounts/{kite_account.pk}/funds")
    assert answer.status_code == 200 and answer.json()["currency"] == "INR", answer.content


def test_account_sync_books_what_kite_holds(kite_account, fake_kite):
    fake_kite.set_holdings(
        USER_ID,
        [
            {
                "tradingsymbol": "INFY",
                "exchange": "NSE",
                "instrument_token": TOKEN,
                "quantity": 5,
                "t1_quantity": 0,
                "average_price": 1450,
                "last_price": 1500,
                "pnl": 250,
            }
        ],
    )
    summary = account_sync(account_id=kite_account.pk)
    assert summary.outcome == "ok", summary
    assert summary.held == 1
    from oms.models import Position

    position = Position.objects.get(account=kite_account, symbol="NSE:INFY", status="open")
    assert position.qty == Decimal(5)


def test_positions_net_and_day_from_kite(api, kite_account, fake_kite):
    market = {k: v for k, v in {**RESTING, "order_type": "market", "qty": "4"}.items() if k != "price"}
    assert api.post(kite_account, market).status_code in (201, 202)
    broker = KiteBroker(kite_account)
    rows = broker.position_rows()
    assert rows["net"] and rows["day"] and rows["net"][0]["quantity"] == 4
    [position] = broker.positions()
    assert (position.symbol, position.qty, position.avg_price) == ("NSE:INFY", Decimal(4), Decimal(1500))


def test_historical_candles_with_oi_become_bars_paced(kite_account, fake_kite, settings):
    fake_kite.exchange.candles[(TOKEN, "minute")] = [
        ["2026-12-04T09:15:00+0530", 1500, 1510, 1495, 1505, 1200, 30],
        ["2026-12-04T09:16:00+0530", 1505, 1507, 1500, 1501, 800, 31],
    ]
    settings.KITE_RATE_HISTORICAL = 3.0
    broker = KiteBroker(kite_account)
    start = datetime.fromisoformat("2026-12-04T09:00:00+05:30")
    begun = __import__("time").monotonic()
    bars = []
    for _ in range(4):  # four requests at 3 a second: the fourth waits its slot
        bars = broker.candles(TOKEN, interval="minute", start=start, end=start + timedelta(hours=1))
    assert __import__("time").monotonic() - begun >= 0.9
    assert [(b.open, b.close, b.volume, b.open_interest) for b in bars] == [
        (Decimal(1500), Decimal(1505), Decimal(1200), Decimal(30)),
        (Decimal(1505), Decimal(1501), Decimal(800), Decimal(31)),
    ]
    assert bars[0].time == int(datetime.fromisoformat("2026-12-04T09:15:00+05:30").timestamp())
    with pytest.raises(Exception, match="interval"):
        broker.candles(TOKEN, interval="2minute", start=start, end=start + timedelta(hours=1))


def test_kite_candles_are_stored_as_bars(kite_account, fake_kite):
    from io import StringIO

    from django.core.management import call_command

    from marketdata.models import Bar

    infy = __import__("marketdata.models", fromlist=["Instrument"]).Instrument.objects.get(symbol="NSE:INFY")
    infy.broker_codes = {"kite": TOKEN}
    infy.save()
    now = datetime.now().astimezone()
    day = (now - timedelta(days=1)).strftime("%Y-%m-%dT00:00:00+0530")
    fake_kite.exchange.candles[(TOKEN, "day")] = [[day, 1500, 1520, 1490, 1510, 100000, 0]]
    out = StringIO()
    call_command("import_kite_history", str(kite_account.pk), "NSE:INFY", "--interval", "day", "--days", "5", stdout=out)
    assert "1 bars stored" in out.getvalue(), out.getvalue()
    bar = Bar.objects.get(instrument=infy, resolution="1D")
    assert (bar.close, bar.volume, bar.open_interest) == (Decimal(1510), Decimal(100000), Decimal(0))


# --- cover orders (variety co): a market or limit entry with its stop-loss leg's trigger -----------------------------

COVER = {"symbol": "NSE:INFY", "side": "buy", "order_type": "market", "qty": "2", "time_in_force": "day", "variety": "co"}


def test_a_cover_order_reaches_kite_with_its_stop_loss_trigger(api, kite_account, fake_kite):
    answer = api.post(kite_account, {**COVER, "stop_price": "1480.00"})
    assert answer.status_code in (201, 202), answer.content
    order = Order.objects.get(pk=answer.json()["order_id"])
    assert (order.order_type, order.stop_price, order.broker_fields) == ("market", Decimal(1480), {"variety": "co", "product": "MIS"})
    sent = at_kite(fake_kite, order)
    assert (sent["variety"], sent["order_type"], sent["product"], sent["trigger_price"]) == ("co", "MARKET", "MIS", 1480)
    assert sent["status"] == "COMPLETE" and order.status in ("new", "filled")  # fills come by postback or the ticker
    # Kite places the stop-loss leg once the entry completes.
    [leg] = [h[-1] for h in fake_kite.exchange.orders.values() if h[-1]["parent_order_id"] == order.broker_order_id]
    assert (leg["transaction_type"], leg["order_type"], leg["trigger_price"], leg["status"]) == ("SELL", "SL-M", 1480, "TRIGGER PENDING")


def test_a_cover_order_in_kites_field_names(api, kite_account, fake_kite):
    body = {
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": "SELL",
        "quantity": 1,
        "product": "MIS",
        "order_type": "LIMIT",
        "price": "1520.00",
        "trigger_price": "1530.50",
        "validity": "DAY",
        "variety": "co",
    }
    answer = api.post(kite_account, body)
    assert answer.status_code in (201, 202), answer.content
    order = Order.objects.get(pk=answer.json()["order_id"])
    assert (order.side, order.order_type, order.price, order.stop_price) == ("sell", "limit", Decimal(1520), Decimal("1530.5"))
    sent = at_kite(fake_kite, order)
    assert (sent["variety"], sent["order_type"], sent["price"], sent["trigger_price"], sent["status"]) == (
        "co",
        "LIMIT",
        1520,
        1530.5,
        "OPEN",
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({}, "stop_price"),  # no trigger
        ({"trigger_price": 0}, "stop_price"),  # Kite's clients' "none"
        ({"stop_price": "1510.00"}, "stop_price"),  # a buy's stop-loss above the last price 1500
        ({"side": "sell", "stop_price": "1490.00"}, "stop_price"),  # a sell's below it
        ({"order_type": "limit", "price": "1450.00", "stop_price": "1460.00"}, "stop_price"),  # above the buy's limit
        ({"stop_price": "1480.03"}, "stop_price"),  # off the 0.05 tick
        ({"stop_price": "1480.00", "order_type": "stop"}, "order_type"),
        ({"stop_price": "1480.00", "product": "CNC"}, "product"),
        ({"stop_price": "1480.00", "time_in_force": "ioc"}, "time_in_force"),
    ],
)
def test_a_cover_order_kite_would_refuse_is_refused_at_once(api, kite_account, fake_kite, change, field):
    answer = api.post(kite_account, {**COVER, **change})
    assert answer.status_code == 422, answer.content
    error = answer.json()["error"]
    assert any(name.endswith(field) for name in error["fields"]), error
    assert not Order.objects.exists() and not fake_kite.exchange.orders


def test_the_fake_refuses_a_cover_order_as_kite_does(kite_account, fake_kite):
    from brokers.base import BrokerRejected, OrderRequest

    broker = KiteBroker(kite_account)

    def place(**terms):
        request = OrderRequest(
            client_order_id="Co1", symbol="NSE:INFY", side="buy", order_type="market", qty=Decimal(1), time_in_force="day", **terms
        )
        return broker.client.call(
            lambda kite: kite._post("order.place", url_args={"variety": "co"}, params=broker.order_params(request)[1])
        )

    with pytest.raises(BrokerRejected, match="trigger"):
        place(stop_price=None, extra={"variety": "co", "product": "MIS"})
    with pytest.raises(BrokerRejected, match="below"):
        place(stop_price=Decimal(1510), extra={"variety": "co", "product": "MIS"})
    form = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY", "quantity": 1, "order_type": "MARKET"}
    for wrong in ({"product": "MIS"}, {"product": "CNC", "trigger_price": "1480"}):
        with pytest.raises(BrokerRejected):  # straight to the fake, past our own checks
            broker.client.call(lambda kite, wrong=wrong: kite._post("order.place", url_args={"variety": "co"}, params={**form, **wrong}))
    assert not fake_kite.exchange.orders


def test_a_cover_order_by_the_websocket_command(kite_account, fake_kite, alice):
    import asyncio
    import json

    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.db import connections

    from streams.routing import websocket_urlpatterns

    payload = {**COVER, "stop_price": "1485.00"}

    async def scenario() -> dict:
        comm = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        comm.scope["user"] = alice
        try:
            connected, _ = await comm.connect(timeout=15)
            assert connected
            assert (await comm.receive_json_from(timeout=15))["type"] == "hello"
            frame = {"op": "command", "request_id": "co-1", "account_id": kite_account.pk, "command": "send_order", "payload": payload}
            await comm.send_to(text_data=json.dumps(frame))
            return await comm.receive_json_from(timeout=15)
        finally:
            await comm.disconnect()
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()
            await database_sync_to_async(connections.close_all)()

    answer = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answer["type"] == "ack", answer
    order = Order.objects.get(pk=answer["data"]["order_id"])
    assert (order.stop_price, order.broker_fields["variety"]) == (Decimal(1485), "co")
    assert order.broker_order_id and at_kite(fake_kite, order)["trigger_price"] == 1485


def test_cancelling_a_cover_orders_stop_loss_leg_exits_at_the_market(api, kite_account, fake_kite, django_capture_on_commit_callbacks):
    from oms.services.reconcile import account_reconcile

    entry = Order.objects.get(pk=api.post(kite_account, {**COVER, "stop_price": "1480.00"}).json()["order_id"])
    [leg_id] = [oid for oid, h in fake_kite.exchange.orders.items() if h[-1]["parent_order_id"] == entry.broker_order_id]
    with django_capture_on_commit_callbacks(execute=True):
        account_reconcile(account=kite_account)
    leg = Order.objects.get(account=kite_account, broker_order_id=leg_id)
    assert (leg.source, leg.side, leg.order_type, leg.stop_price, leg.status) == ("external", "sell", "stop", Decimal(1480), "new")
    answer = api.cancel(leg)
    assert answer.status_code == 202, answer.content
    at_fake = fake_kite.exchange.orders[leg_id][-1]
    assert (at_fake["status"], at_fake["order_type"], at_fake["filled_quantity"]) == ("COMPLETE", "MARKET", 2)
    [net] = KiteBroker(kite_account).position_rows()["net"]
    assert net["quantity"] == 0  # the cover order's position is closed
