"""The command specs parse strictly on every entry point: REST (object,
array, account routes), the WebSocket ``command`` op and the CLI answer a
422 in the error shape (an error frame, a CommandError) for every hostile
input, never a 500, and write nothing.

Decimals are plain ASCII strings within the column (18 digits before the
point, 10 after); ids are JSON integers within bigint; text has no control
characters or lone surrogates and fits its column; booleans are booleans.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from rest_framework.test import APIClient

from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from marketdata.quotes import quote_store
from marketdata.services import instrument_upsert
from marketdata.types import Quote
from oms.models import Deal, IdempotencyKey, Order, OrderEvent, Position
from tests.fakes import FakeVenue
from tests.oms_support import venue_registered

pytestmark = pytest.mark.django_db

BIG = 2**63  # one past the largest bigint
LIMIT = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "10", "price": "90.00"}
MARKET = {"symbol": "AAPL", "side": "buy", "order_type": "market", "qty": "10"}


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    from config.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def venue() -> Iterator[FakeVenue]:
    with venue_registered(FakeVenue()) as registered:
        yield registered


@pytest.fixture(autouse=True)
def instruments(db) -> None:
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    instrument_upsert(symbol="BTC/USDT", type="crypto", tick_size=Decimal("0.0000000001"), lot_size=Decimal("0.0000000001"))
    quote_store(Quote(symbol="AAPL", time=time.time(), last=Decimal(100), bid=Decimal("99.99"), ask=Decimal("100.01")))


@pytest.fixture
def account(alice, venue) -> BrokerAccount:
    return broker_account_create(
        owner=alice, kind="kis", base_currency="USD", label="main", credentials={"app_key": "AK", "app_secret": "SECRET"}
    )


class Api:
    """Posts raw JSON text (so lone surrogates and float literals reach the
    server as a client would send them) and runs the on-commit callbacks."""

    def __init__(self, client: APIClient, capture: Any) -> None:
        self.client, self.capture = client, capture

    def post(self, path: str, body: Any) -> Any:
        with self.capture(execute=True):
            return self.client.post(path, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def api(alice_api, django_capture_on_commit_callbacks) -> Api:
    return Api(alice_api, django_capture_on_commit_callbacks)


def rows() -> tuple[int, ...]:
    return (
        Order.objects.count(),
        OrderEvent.objects.count(),
        Deal.objects.count(),
        Position.objects.count(),
        IdempotencyKey.objects.count(),
    )


def refused(response: Any, field: str | None = None, code: str = "validation_error") -> dict[str, Any]:
    assert response.status_code == 422, response.content[:500]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields", "request_id"}, body
    assert body["error"]["code"] == code, body
    if field is not None:
        assert any(name == field or name.endswith("." + field) for name in body["error"]["fields"]), body
    return body["error"]


# --- send_order ----------------------------------------------------------------------------------------

BAD_SEND = [
    pytest.param({"qty": "١"}, "qty", id="qty-arabic-indic-digit"),
    pytest.param({"qty": " 1"}, "qty", id="qty-leading-space"),
    pytest.param({"qty": "1\n"}, "qty", id="qty-trailing-newline"),
    pytest.param({"qty": "1e28"}, "qty", id="qty-exponent-string"),
    pytest.param({"qty": 1e28}, "qty", id="qty-1e28-number"),
    pytest.param({"qty": 1e308}, "qty", id="qty-1e308-number"),
    pytest.param({"qty": "9" * 30}, "qty", id="qty-30-digits"),
    pytest.param({"qty": 10**39}, "qty", id="qty-40-digit-integer"),
    pytest.param({"qty": "NaN"}, "qty", id="qty-nan"),
    pytest.param({"qty": 10.000000000000002}, "qty", id="qty-json-number-rounded-on-the-way"),
    pytest.param({"price": 1e308}, "price", id="price-1e308"),
    pytest.param({"price": "9" * 40}, "price", id="price-40-digits"),
    pytest.param({"symbol": "BTC/USDT", "qty": "1.00000000001", "price": "1"}, "qty", id="qty-11-decimal-places"),
    pytest.param({"symbol": "\ud800"}, "symbol", id="symbol-lone-surrogate"),
    pytest.param({"symbol": "AA\x00PL"}, "symbol", id="symbol-nul"),
    pytest.param({"strategy_id": "s\x00"}, "strategy_id", id="strategy-nul"),
    pytest.param({"strategy_id": [7]}, "strategy_id", id="strategy-not-a-string"),
    pytest.param({"strategy_id": 2**63}, "strategy_id", id="strategy-integer-beyond-bigint"),
    pytest.param({"position_id": BIG}, "position_id", id="position-id-2**63"),
    pytest.param({"reduce_only": 1}, "reduce_only", id="reduce-only-one"),
    pytest.param({"side": "buy\x00"}, "side", id="side-nul"),
]


@pytest.mark.parametrize(("change", "field"), BAD_SEND)
def test_bad_send_order_payloads_are_422_on_every_rest_route_and_nothing_is_written(api, venue, account, change, field):
    payload = {**LIMIT, **change}
    before = rows()
    refused(api.post(f"/api/v1/accounts/{account.pk}/orders", payload), field)
    refused(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "send_order", "payload": payload}), f"payload.{field}")
    good = {"account_id": account.pk, "command": "send_order", "payload": LIMIT}
    batch = refused(api.post("/api/v1/oms/commands", [good, {**good, "payload": payload}]), f"[1].payload.{field}")
    assert all(name.startswith("[1].") for name in batch["fields"]), batch
    orders = refused(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, payload]}))
    assert any(name == f"orders[1].{field}" for name in orders["fields"]), orders
    assert rows() == before and venue.placed == []


def test_a_json_integer_and_a_plain_string_are_the_same_decimal(api, venue, account):
    first = api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "qty": 10})
    second = api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "qty": "010.000"})
    assert first.status_code == second.status_code == 202
    assert [o.qty for o in Order.objects.order_by("id")] == [Decimal(10), Decimal(10)]


def test_a_json_number_a_float_holds_exactly_is_the_decimal_the_client_wrote(api, venue, account):
    response = api.post(
        f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "symbol": "BTC/USDT", "qty": 0.1, "price": 50000.5, "strategy_id": 7}
    )
    assert response.status_code == 202, response.content
    order = Order.objects.get()
    assert (order.qty, order.price, order.strategy_id) == (Decimal("0.1"), Decimal("50000.5"), "7")


# --- the envelope, ids and the other commands ------------------------------------------------------------------


def test_account_id_beyond_bigint_is_422_not_a_500(api, venue, account):
    for account_id in (BIG, 99999999999999999999):
        refused(api.post("/api/v1/oms/commands", {"account_id": account_id, "command": "cancel_all"}), "account_id")
        refused(api.post("/api/v1/oms/reassign", {"account_id": account_id, "deal_ids": [1]}), "account_id")


def working_order(api: Api, account: BrokerAccount) -> int:
    response = api.post(f"/api/v1/accounts/{account.pk}/orders", LIMIT)
    assert response.status_code == 202, response.content
    return response.json()["order_id"]


BAD_CHANGES = [
    pytest.param({"qty": "1e28"}, "qty", id="qty-exponent"),
    pytest.param({"qty": 1e308}, "qty", id="qty-1e308"),
    pytest.param({"qty": "9" * 30}, "qty", id="qty-30-digits"),
    pytest.param({"price": 10**39}, "price", id="price-40-digits"),
    pytest.param({"price": "٩٠"}, "price", id="price-arabic-indic"),
]


@pytest.mark.parametrize(("change", "field"), BAD_CHANGES)
def test_bad_change_order_values_are_422_and_the_order_is_untouched(api, venue, account, change, field):
    order_id = working_order(api, account)
    before = rows()
    refused(api.post(f"/api/v1/orders/{order_id}/change", change), field)
    command = {"account_id": account.pk, "command": "change_order", "payload": {"order_id": order_id, **change}}
    refused(api.post("/api/v1/oms/commands", command), f"payload.{field}")
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.qty, order.price) == ("new", Decimal(10), Decimal(90))
    assert rows() == before


BAD_IDS = [
    pytest.param("cancel_order", {"order_id": 99999999999999999999}, "order_id", id="cancel-order-id-20-digits"),
    pytest.param("cancel_order", {"order_id": 1e30}, "order_id", id="cancel-order-id-1e30"),
    pytest.param("change_order", {"order_id": BIG, "qty": "5"}, "order_id", id="change-order-id-2**63"),
    pytest.param("close_position", {"position_id": BIG}, "position_id", id="close-position-2**63"),
    pytest.param("close_by", {"position_id_a": BIG, "position_id_b": 1}, "position_id_a", id="close-by-2**63"),
    pytest.param("reassign", {"deal_ids": [BIG]}, "deal_ids[0]", id="reassign-deal-id-2**63"),
    pytest.param("reassign", {"deal_ids": [1], "target_position_id": BIG}, "target_position_id", id="reassign-target-2**63"),
]


@pytest.mark.parametrize(("command", "payload", "field"), BAD_IDS)
def test_ids_beyond_bigint_are_422_on_sqlite_too(api, venue, account, command, payload, field):
    before = rows()
    refused(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": command, "payload": payload}), f"payload.{field}")
    assert rows() == before


@pytest.fixture
def filled_deal(api, venue, account) -> Deal:
    venue.mode = "fill"
    response = api.post(f"/api/v1/accounts/{account.pk}/orders", MARKET)
    venue.mode = "ack"
    assert response.status_code == 202, response.content
    return Deal.objects.get()


def test_reassign_to_a_strategy_longer_than_the_column_is_422_and_books_nothing(api, venue, account, filled_deal):
    before = rows()
    payload = {"deal_ids": [filled_deal.pk], "target_strategy_id": "s" * 10_000}
    refused(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "reassign", "payload": payload}), "target_strategy_id")
    refused(api.post("/api/v1/oms/reassign", {"account_id": account.pk, **payload}), "target_strategy_id")
    refused(api.post("/api/v1/oms/reassign", {"account_id": account.pk, "deal_ids": [filled_deal.pk], "target_strategy_id": "a\x00"}))
    assert rows() == before
    assert Position.objects.get().strategy_id == ""


# --- the WebSocket command op ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_channel_layer() -> Iterator[None]:
    from channels.layers import DEFAULT_CHANNEL_LAYER

    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.mark.django_db(transaction=True)
def test_ws_command_refuses_the_same_payloads_with_error_frames(fresh_channel_layer, venue, alice, day_only):
    from streams.routing import websocket_urlpatterns

    day_venue, day_account = day_only
    stop = {**LIMIT, "order_type": "stop", "price": None, "stop_price": "95.00"}

    account = broker_account_create(
        owner=alice, kind="kis", base_currency="USD", label="ws", credentials={"app_key": "AK", "app_secret": "SECRET"}
    )
    order = Order.objects.create(account=account, client_order_id="w1", symbol="AAPL", side="buy", order_type="limit", qty=1, price=90)
    frames = {
        "qty-1e28": {"command": "send_order", "payload": {**LIMIT, "qty": 1e28}},
        "qty-1e308": {"command": "send_order", "payload": {**LIMIT, "qty": "1e308"}},
        "qty-arabic": {"command": "send_order", "payload": {**LIMIT, "qty": "١"}},
        "qty-40": {"command": "send_order", "payload": {**LIMIT, "qty": "9" * 40}},
        "symbol-surrogate": {"command": "send_order", "payload": {**LIMIT, "symbol": "\udfff"}},
        "strategy-nul": {"command": "send_order", "payload": {**LIMIT, "strategy_id": "\x00"}},
        "change-1e28": {"command": "change_order", "payload": {"order_id": order.pk, "qty": "1e28"}},
        "change-id": {"command": "change_order", "payload": {"order_id": BIG, "qty": "2"}},
        "close-by": {"command": "close_by", "payload": {"position_id_a": BIG, "position_id_b": BIG}},
        "account": {"command": "cancel_all", "account_id": BIG},
        "unsupported": {"command": "send_order", "account_id": day_account.pk, "payload": stop},
    }

    async def scenario() -> dict[str, dict[str, Any]]:
        comm = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        comm.scope["user"] = alice
        answers = {}
        try:
            connected, _ = await comm.connect(timeout=15)
            assert connected
            assert (await comm.receive_json_from(timeout=15))["type"] == "hello"
            for request_id, frame in frames.items():
                body = {"op": "command", "request_id": request_id, "account_id": account.pk, **frame}
                await comm.send_to(text_data=json.dumps(body))  # ASCII JSON: "\udfff" stays an escape
                answers[request_id] = await comm.receive_json_from(timeout=15)
            return answers
        finally:
            await comm.disconnect()
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()
            await database_sync_to_async(connections.close_all)()

    answers = asyncio.run(asyncio.wait_for(scenario(), 90))
    # The gateway's JSON decoder refuses a lone surrogate before any op runs.
    assert answers.pop("symbol-surrogate")["data"]["error"]["code"] in ("bad_frame", "validation_error")
    assert answers.pop("unsupported")["data"]["error"]["code"] == "unsupported_by_broker"
    for request_id, answer in answers.items():
        assert answer["type"] == "error" and answer["request_id"] == request_id, answer
        assert answer["data"]["error"]["code"] == "validation_error", answer
    assert Order.objects.count() == 1 and Order.objects.get().qty == 1 and venue.placed == day_venue.placed == []


# --- the CLI ----------------------------------------------------------------------------------------------------------


def cli(*args: Any) -> str:
    out = StringIO()
    call_command(*[str(a) for a in args], stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--qty", "١"], id="qty-arabic-indic"),
        pytest.param(["--qty", " 1"], id="qty-leading-space"),
        pytest.param(["--qty", "1e28"], id="qty-exponent"),
        pytest.param(["--qty", "9" * 40], id="qty-40-digits"),
    ],
)
def test_cli_send_order_refuses_what_the_api_refuses(venue, account, args):
    base = ["send_order", "--account-id", account.pk, "--symbol", "AAPL", "--side", "buy", "--order-type", "market", "--qty", "1"]
    with pytest.raises(CommandError):
        cli(*base, *args)
    assert not Order.objects.exists()


def test_cli_ids_are_ascii_digits_within_bigint(venue, account, api):
    order_id = working_order(api, account)
    with pytest.raises(CommandError):
        cli("cancel_order", "--account-id", account.pk, "--order-id", "١")  # int() reads it as 1
    with pytest.raises(CommandError):
        cli("change_order", "--account-id", account.pk, "--order-id", "99999999999999999999", "--qty", "5")
    with pytest.raises(CommandError):
        cli("change_order", "--account-id", account.pk, "--order-id", order_id, "--qty", "1e28")
    with pytest.raises(CommandError):
        cli("cancel_all", "--account-id", str(BIG))
    assert Order.objects.get(pk=order_id).status == "new"


# --- what the account's broker takes --------------------------------------------------------------------------


class DayOnlyVenue(FakeVenue):
    """A broker as KIS: market and limit orders, day orders only, and one
    broker-specific field (``product``, when a spec registers it)."""

    def broker(self, account):  # the registry factory
        broker = super().broker(account)
        broker.capabilities = replace(
            broker.capabilities,
            order_types=frozenset({"market", "limit"}),
            times_in_force=frozenset({"day"}),
            extra_order_fields=frozenset({"product"}),
        )
        return broker


@pytest.fixture
def day_only(alice) -> Iterator[tuple[DayOnlyVenue, BrokerAccount]]:
    with venue_registered(DayOnlyVenue(), kind="ccxt") as registered:
        yield (
            registered,
            broker_account_create(
                owner=alice,
                kind="ccxt",
                label="day only",
                exchange_id="binance",
                base_currency="USD",
                credentials={"api_key": "K", "secret": "S"},
            ),
        )


@pytest.fixture
def product_field(monkeypatch) -> None:
    from oms.specs import EXTRA_ORDER_FIELDS
    from oms.specs.fields import ChoiceField

    monkeypatch.setitem(EXTRA_ORDER_FIELDS, "product", lambda: ChoiceField(choices=["CNC", "MIS"], required=False))


UNSUPPORTED = [
    pytest.param({"order_type": "stop", "price": None, "stop_price": "95.00"}, "order_type", id="stop-order"),
    pytest.param({"order_type": "stop_limit", "stop_price": "95.00"}, "order_type", id="stop-limit-order"),
    pytest.param({"time_in_force": "gtc"}, "time_in_force", id="gtc"),
    pytest.param({"time_in_force": "ioc"}, "time_in_force", id="ioc"),
]


@pytest.mark.parametrize(("change", "field"), UNSUPPORTED)
def test_what_the_accounts_broker_does_not_take_is_refused_at_once(api, day_only, change, field):
    venue, account = day_only
    payload = {**LIMIT, **change}
    code = "unsupported_by_broker"
    refused(api.post(f"/api/v1/accounts/{account.pk}/orders", payload), field, code=code)
    refused(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "send_order", "payload": payload}), field, code=code)
    refused(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, payload]}), code=code)
    assert not Order.objects.exists() and venue.placed == []


def test_an_omitted_time_in_force_is_day_for_a_broker_without_gtc(api, venue, account, day_only):
    _, day_account = day_only
    for target in (account, day_account):
        assert api.post(f"/api/v1/accounts/{target.pk}/orders", LIMIT).status_code == 202
    assert dict(Order.objects.values_list("account_id", "time_in_force")) == {account.pk: "gtc", day_account.pk: "day"}


def test_broker_specific_fields_reach_the_broker_that_takes_them_and_no_other(api, venue, account, day_only, product_field):
    day_venue, day_account = day_only
    response = api.post(f"/api/v1/accounts/{day_account.pk}/orders", {**LIMIT, "product": "MIS"})
    assert response.status_code == 202, response.content
    assert Order.objects.get().broker_fields == {"product": "MIS"}
    assert [request.extra for request in day_venue.placed] == [{"product": "MIS"}]
    refused(api.post(f"/api/v1/accounts/{day_account.pk}/orders", {**LIMIT, "product": "XYZ"}), "product")
    refused(api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "product": "MIS"}), "product", code="unsupported_by_broker")
    assert Order.objects.count() == 1 and venue.placed == []
    out = cli(
        "send_order",
        "--account-id",
        day_account.pk,
        "--symbol",
        "AAPL",
        "--side",
        "buy",
        "--order-type",
        "market",
        "--qty",
        "1",
        "--product",
        "CNC",
    )
    assert json.loads(out)["ok"] is True
    assert Order.objects.latest("id").broker_fields == {"product": "CNC"}


def test_a_broker_specific_field_no_spec_registers_is_an_unknown_field(api, day_only):
    _, account = day_only
    body = refused(api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "disclosed_quantity": 5}), "disclosed_quantity")
    assert body["fields"] == {"disclosed_quantity": ["Unknown field."]}


def test_a_registered_broker_field_its_broker_does_not_take_is_refused(api, day_only):
    _, account = day_only  # takes product only
    body = refused(api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "variety": "amo"}), "variety", code="unsupported_by_broker")
    assert "does not take variety" in body["fields"]["variety"][0]


# --- the documents derive from the specs ------------------------------------------------------------------------


def test_openapi_request_bodies_and_the_asyncapi_command_message_come_from_the_specs(api):
    response = api.client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    components = schema["components"]["schemas"]
    send_order = components["SendOrderPayloadRequest"]
    assert set(send_order["required"]) == {"symbol", "side", "order_type", "qty"}
    assert send_order["properties"]["qty"]["type"] == "string" and "pattern" in send_order["properties"]["qty"]
    assert send_order["properties"]["strategy_id"]["maxLength"] == 64
    assert send_order["properties"]["position_id"]["maximum"] == 2**63 - 1
    body = schema["paths"]["/api/v1/accounts/{id}/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SendOrderPayloadRequest"}
    change = schema["paths"]["/api/v1/orders/{id}/change"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(components[change["$ref"].rsplit("/", 1)[1]]["properties"]) == {"qty", "price", "stop_price"}
    one = components["CommandOrBatchRequest"]["oneOf"][0]
    assert set(one["discriminator"]["mapping"]) == {
        "send_order",
        "cancel_order",
        "change_order",
        "close_position",
        "close_by",
        "reassign",
        "cancel_all",
        "flatten_all",
    }

    asyncapi = api.client.get("/api/v1/ws/asyncapi.json").json()
    command = asyncapi["components"]["messages"]["op.command"]["payload"]
    envelopes = {e["properties"]["command"]["enum"][0]: e for e in command["allOf"][1]["oneOf"]}
    assert set(envelopes) == set(one["discriminator"]["mapping"])
    ws_send = envelopes["send_order"]["properties"]["payload"]
    assert ws_send["properties"]["qty"]["pattern"] == send_order["properties"]["qty"]["pattern"]
    assert set(ws_send["properties"]) == set(send_order["properties"])


def test_an_order_for_an_expired_contract_is_refused_at_once(api, venue, account):
    from datetime import date, timedelta

    expired = date.today() - timedelta(days=2)
    live = date.today() + timedelta(days=30)
    instrument_upsert(symbol="DEMO:IDX-OLD", type="future", expiry=expired, session="0930-1600", timezone="America/New_York")
    instrument_upsert(symbol="DEMO:IDX-NEXT", type="future", expiry=live, session="0930-1600", timezone="America/New_York")
    before = rows()
    body = refused(api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "symbol": "DEMO:IDX-OLD"}), "symbol")
    assert "expired" in body["fields"]["symbol"][0] and rows() == before and venue.placed == []
    response = api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "symbol": "DEMO:IDX-NEXT"})
    assert response.status_code == 202, response.content
