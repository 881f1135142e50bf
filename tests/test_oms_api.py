"""The OMS REST API end to end, against a scriptable broker (``FakeVenue``
registered as the ``kis`` adapter): commands, account routes, lists with
filters, CSV export, chart marks, and every refusal with nothing changed.

Celery runs eagerly (in both modes) and the on-commit callbacks of each
request run as it returns, as they would at commit: the send to the broker
happens after the 202.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from brokers.base import BrokerUnavailable, Capabilities
from brokers.models import REQUIRED_CREDENTIALS, BrokerAccount
from brokers.services import broker_account_create
from marketdata.quotes import quote_store
from marketdata.services import instrument_upsert
from marketdata.types import Quote
from oms.models import Deal, IdempotencyKey, Order, OrderEvent, Position
from oms.payloads import deal_payload, order_payload, position_payload
from oms.services.commands import command_for, fingerprint
from oms.services.send import order_submit
from tests.fakes import FakeVenue
from tests.oms_support import broker_registered, venue_registered

pytestmark = pytest.mark.django_db


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    """The production mode queues to Redis; here every task runs in process."""
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
    instrument_upsert(symbol="BTC/USDT", type="crypto", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))
    quote_store(Quote(symbol="AAPL", time=time.time(), last=Decimal(100), bid=Decimal("99.99"), ask=Decimal("100.01")))


def make_account(owner: Any, *, kind: str = "kis", position_mode: str = "netting", label: str = "main") -> BrokerAccount:
    credentials = {name: f"test-{name}" for name in REQUIRED_CREDENTIALS[kind]}
    return broker_account_create(
        owner=owner, kind=kind, label=label, position_mode=position_mode, base_currency="USD", credentials=credentials
    )


@pytest.fixture
def account(alice, venue) -> BrokerAccount:
    return make_account(alice)


@pytest.fixture
def bob_account(bob, venue) -> BrokerAccount:
    return make_account(bob, label="bob's")


class Api:
    """An API client whose POSTs run the on-commit callbacks (the eager send)."""

    def __init__(self, client: APIClient, capture: Callable[..., Any]) -> None:
        self.client = client
        self.capture = capture

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.client.get(path, params or {})

    def post(self, path: str, data: Any = None, **headers: str) -> Any:
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        with self.capture(execute=True):
            return self.client.post(path, data, format="json", **extra)


@pytest.fixture
def api(alice_api, django_capture_on_commit_callbacks) -> Api:
    return Api(alice_api, django_capture_on_commit_callbacks)


@pytest.fixture
def bob_client(bob_api, django_capture_on_commit_callbacks) -> Api:
    return Api(bob_api, django_capture_on_commit_callbacks)


LIMIT = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "10", "price": "90.00"}
MARKET = {"symbol": "AAPL", "side": "buy", "order_type": "market", "qty": "10"}


def send(api: Api, account: BrokerAccount, payload: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    response = api.post(f"/api/v1/accounts/{account.pk}/orders", payload or LIMIT, **headers)
    assert response.status_code == 202, response.json()
    return response.json()


def filled_position(api: Api, venue: FakeVenue, account: BrokerAccount, **payload: Any) -> Position:
    venue.mode = "fill"
    result = send(api, account, {**MARKET, **payload})
    venue.mode = "ack"
    order = Order.objects.get(pk=result["order_id"])
    assert order.status == "filled"
    return order.deals.get().position


def error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields", "request_id"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def snapshot_rows() -> tuple[int, int, int, int, int]:
    return Order.objects.count(), OrderEvent.objects.count(), Deal.objects.count(), Position.objects.count(), IdempotencyKey.objects.count()


# --- sending and the order's life ------------------------------------------------------------------


def test_send_answers_202_pending_new_then_the_fill_books_a_deal_and_a_position(api, venue, account):
    venue.mode = "fill"
    result = send(api, account, {**MARKET, "client_order_id": "my-1"})
    assert result == {
        "request_id": None,
        "command": "send_order",
        "ok": True,
        "order_id": result["order_id"],
        "client_order_id": "my-1",
        "status": "pending_new",  # committed before the send; the fill came after the answer
        "error": None,
    }
    detail = api.get(f"/api/v1/orders/{result['order_id']}").json()
    assert detail["status"] == "filled" and detail["filled_qty"] == "10" and detail["avg_fill_price"] == "100"
    assert [(e["kind"], e["from_status"], e["to_status"]) for e in detail["events"]][0] == ("created", "", "pending_new")
    assert detail["events"][0]["actor"] == "alice@example.com" and detail["events"][0]["source"] == "rest"
    assert detail["events"][-1]["to_status"] == "filled"
    # the detail also shows the broker's raw answer of each event (masked; {} for the paper broker's own)
    assert set(detail["events"][0]) == {"id", "kind", "from_status", "to_status", "actor", "source", "message", "created_at", "payload"}
    [deal] = detail["deals"]
    assert deal["side"] == "buy" and deal["qty"] == "10" and deal["kind"] == "trade"
    positions = api.get(f"/api/v1/accounts/{account.pk}/positions").json()
    assert [(p["symbol"], p["side"], p["qty"]) for p in positions["results"]] == [("AAPL", "long", "10")]
    assert positions["next"] is None


def test_an_order_shows_sent_at_null_until_the_sender_hands_it_to_the_broker(alice_api, venue, account):
    # No on-commit callbacks run: the order is committed and waits to be sent.
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/orders", {**MARKET}, format="json")
    assert response.status_code == 202, response.content
    order_id = response.json()["order_id"]
    waiting = alice_api.get(f"/api/v1/orders/{order_id}").json()
    assert waiting["status"] == "pending_new" and waiting["sent_at"] is None and waiting["broker_fields"] == {}
    order_submit(order_id=order_id)
    sent = alice_api.get(f"/api/v1/orders/{order_id}").json()
    assert sent["sent_at"] is not None and sent["status"] != "pending_new"


def test_rest_bodies_are_the_stream_payloads(api, venue, account):
    position = filled_position(api, venue, account)
    order = Order.objects.get()
    detail = api.get(f"/api/v1/orders/{order.pk}").json()
    assert {k: v for k, v in detail.items() if k not in ("events", "deals")} == order_payload(order)
    deal = order.deals.get()
    assert detail["deals"] == [{**deal_payload(deal), "payload": deal.payload}]  # the detail adds the raw trade
    assert api.get("/api/v1/oms/orders/history").json()["results"] == [order_payload(order)]
    assert api.get("/api/v1/oms/deals").json()["results"] == [deal_payload(order.deals.get())]
    position.refresh_from_db()
    assert api.get("/api/v1/oms/positions/open").json()["results"] == [position_payload(position)]


def test_limit_order_works_then_cancel_answers_202_and_cancels(api, venue, account):
    result = send(api, account)
    order = Order.objects.get(pk=result["order_id"])
    assert order.status == "new" and order.broker_order_id
    response = api.post(f"/api/v1/orders/{order.pk}/cancel")
    assert response.status_code == 202
    assert response.json()["command"] == "cancel_order" and response.json()["status"] == "pending_cancel"
    order.refresh_from_db()
    assert order.status == "canceled"
    cancel_event = order.events.get(to_status="pending_cancel")
    assert cancel_event.actor.email == "alice@example.com" and cancel_event.source == "rest"


def test_cancel_accepts_an_empty_object_and_refuses_fields(api, venue, account):
    order_id = send(api, account)["order_id"]
    error(api.post(f"/api/v1/orders/{order_id}/cancel", {"order_id": 5}), 422, "validation_error")
    assert Order.objects.get(pk=order_id).status == "new"
    assert api.post(f"/api/v1/orders/{order_id}/cancel/", {}).status_code == 202


def test_change_moves_the_price_of_a_working_order(api, venue, account):
    order_id = send(api, account)["order_id"]
    response = api.post(f"/api/v1/orders/{order_id}/change", {"price": "91.50"})
    assert response.status_code == 202 and response.json()["status"] == "pending_change"
    order = Order.objects.get(pk=order_id)
    assert order.status == "new" and order.price == Decimal("91.50")
    error(api.post(f"/api/v1/orders/{order_id}/change", {}), 422)
    error(api.post(f"/api/v1/orders/{order_id}/change", {"price": "91.505"}), 422)
    error(api.post(f"/api/v1/orders/{order_id}/change", {"order_id": order_id, "price": "92"}), 422)
    assert Order.objects.get(pk=order_id).price == Decimal("91.50")


def test_close_position_sends_a_reduce_only_market_order(api, venue, account):
    position = filled_position(api, venue, account)
    venue.mode = "fill"
    response = api.post(
        "/api/v1/oms/commands",
        {"account_id": account.pk, "command": "close_position", "request_id": "c1", "payload": {"position_id": position.pk}},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["request_id"] == "c1" and body["ok"] and body["status"] == "pending_new"
    close = Order.objects.get(pk=body["order_id"])
    assert close.reduce_only and close.side == "sell" and close.status == "filled"
    position.refresh_from_db()
    assert position.status == "closed"
    assert api.get("/api/v1/oms/positions/open").json()["results"] == []
    assert [p["id"] for p in api.get("/api/v1/oms/positions/history").json()["results"]] == [position.pk]


def test_close_by_books_two_internal_deals_on_a_hedging_account(api, venue, alice):
    hedging = make_account(alice, position_mode="hedging", label="hedge")
    long = filled_position(api, venue, hedging)
    short = filled_position(api, venue, hedging, side="sell", qty="4")
    assert long.pk != short.pk
    response = api.post(
        "/api/v1/oms/commands",
        {"account_id": hedging.pk, "command": "close_by", "payload": {"position_id_a": long.pk, "position_id_b": short.pk}},
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["ok"] and body["status"] == "done" and len(body["deal_ids"]) == 2
    assert set(Deal.objects.filter(pk__in=body["deal_ids"]).values_list("kind", flat=True)) == {"close_by"}
    long.refresh_from_db()
    short.refresh_from_db()
    assert (long.status, long.qty, short.status) == ("open", Decimal(6), "closed")


def test_close_by_of_same_side_positions_is_422_and_books_nothing(api, venue, alice):
    hedging = make_account(alice, position_mode="hedging", label="hedge")
    a = filled_position(api, venue, hedging)
    b = filled_position(api, venue, hedging, qty="3")
    before = snapshot_rows()
    response = api.post(
        "/api/v1/oms/commands", {"account_id": hedging.pk, "command": "close_by", "payload": {"position_id_a": a.pk, "position_id_b": b.pk}}
    )
    error(response, 422)
    assert snapshot_rows() == before


def test_reassign_moves_deals_to_another_strategy(api, venue, account):
    position = filled_position(api, venue, account, strategy_id="s1")
    deal = Deal.objects.get()
    response = api.post("/api/v1/oms/reassign", {"account_id": account.pk, "deal_ids": [deal.pk], "target_strategy_id": "s2"})
    assert response.status_code == 202, response.json()
    assert response.json()["command"] == "reassign" and len(response.json()["deal_ids"]) == 2
    position.refresh_from_db()
    assert position.status == "closed"
    [moved] = api.get("/api/v1/oms/positions/open", {"strategy_id": "s2"}).json()["results"]
    assert moved["qty"] == "10"
    kinds = [d["kind"] for d in api.get("/api/v1/oms/deals", {"kind": "reassign"}).json()["results"]]
    assert kinds == ["reassign", "reassign"]


def test_reassign_of_another_accounts_deals_is_404_and_books_nothing(api, bob_client, venue, account, bob_account):
    filled_position(bob_client, venue, bob_account)
    bob_deal = Deal.objects.get()
    before = snapshot_rows()
    error(api.post("/api/v1/oms/reassign", {"account_id": account.pk, "deal_ids": [bob_deal.pk], "target_strategy_id": "x"}), 404)
    error(api.post("/api/v1/oms/reassign", {"account_id": bob_account.pk, "deal_ids": [bob_deal.pk]}), 404)
    error(api.post("/api/v1/oms/reassign", {"account_id": account.pk, "deal_ids": [], "extra": 1}), 422)
    assert snapshot_rows() == before


def test_cancel_all_cancels_every_working_order(api, venue, account):
    ids = [send(api, account)["order_id"] for _ in range(2)]
    response = api.post(f"/api/v1/accounts/{account.pk}/cancel-all")
    assert response.status_code == 202
    assert response.json()["command"] == "cancel_all" and sorted(response.json()["order_ids"]) == sorted(ids)
    assert set(Order.objects.values_list("status", flat=True)) == {"canceled"}
    assert api.get("/api/v1/oms/orders/open").json()["results"] == []


def test_flatten_cancels_working_orders_and_closes_positions(api, venue, account):
    position = filled_position(api, venue, account)
    working = send(api, account)["order_id"]
    venue.mode = "fill"
    response = api.post(f"/api/v1/accounts/{account.pk}/flatten", {})
    assert response.status_code == 202
    assert response.json()["command"] == "flatten_all" and len(response.json()["order_ids"]) == 1
    assert Order.objects.get(pk=working).status == "canceled"
    position.refresh_from_db()
    assert position.status == "closed"


# --- batches, idempotency, mixed accounts ------------------------------------------------------------


def test_batch_orders_are_atomic_one_invalid_none_written(api, venue, account):
    bad = {**LIMIT, "qty": "0"}
    body = error(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, LIMIT, bad]}), 422)
    assert "orders[2].qty" in body["fields"]
    assert Order.objects.count() == 0
    response = api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, {**LIMIT, "side": "sell", "price": "110.00"}]})
    assert response.status_code == 202
    results = response.json()
    assert isinstance(results, list) and [r["status"] for r in results] == ["pending_new", "pending_new"]
    assert set(Order.objects.values_list("status", flat=True)) == {"new"}


def test_batch_orders_shape_errors(api, account):
    error(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": []}), 422)
    error(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT], "extra": True}), 422)
    body = error(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [{**LIMIT, "colour": "red"}]}), 422)
    assert "orders[0].colour" in body["fields"]
    assert Order.objects.count() == 0


def test_commands_array_answers_an_array(api, venue, account):
    commands = [{"account_id": account.pk, "command": "send_order", "request_id": f"r{i}", "payload": LIMIT} for i in range(2)]
    response = api.post("/api/v1/oms/commands", commands)
    assert response.status_code == 202
    assert [r["request_id"] for r in response.json()] == ["r0", "r1"]
    assert Order.objects.count() == 2


def test_commands_body_must_be_an_object_or_array(api, account):
    error(api.post("/api/v1/oms/commands", "send_order"), 422)
    error(api.post("/api/v1/oms/commands", []), 422)
    error(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "launch", "payload": {}}), 422)
    assert Order.objects.count() == 0


def test_mixed_accounts_are_422_and_nothing_runs(api, venue, alice, account):
    other = make_account(alice, label="second")
    commands = [
        {"account_id": account.pk, "command": "send_order", "payload": LIMIT},
        {"account_id": other.pk, "command": "send_order", "payload": LIMIT},
    ]
    error(api.post("/api/v1/oms/commands", commands), 422, "mixed_accounts")
    assert Order.objects.count() == 0


def test_idempotency_key_replays_the_first_answer_once(api, venue, account):
    first = api.post(f"/api/v1/accounts/{account.pk}/orders", LIMIT, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first
    again = api.post(f"/api/v1/accounts/{account.pk}/orders", LIMIT, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Order.objects.count() == 1 and len(venue.placed) == 1
    error(
        api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "qty": "11"}, **{"Idempotency-Key": "k-1"}), 422, "idempotency_mismatch"
    )
    assert Order.objects.count() == 1


def test_idempotency_key_on_the_commands_route_and_in_flight(api, venue, account):
    command = {"account_id": account.pk, "command": "send_order", "payload": LIMIT}
    first = api.post("/api/v1/oms/commands", command, **{"Idempotency-Key": "cmd-1"})
    replay = api.post("/api/v1/oms/commands", command, **{"Idempotency-Key": "cmd-1"})
    assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    # A key claimed by a request that has not finished yet.
    claimed = fingerprint([command_for(account=account, command="send_order", payload=dict(LIMIT))], "object")
    IdempotencyKey.objects.create(account=account, key="cmd-2", fingerprint=claimed)
    error(api.post("/api/v1/oms/commands", command, **{"Idempotency-Key": "cmd-2"}), 409, "idempotency_in_flight")
    assert Order.objects.count() == 1


def test_client_order_id_is_an_idempotency_key_too(api, venue, account):
    first = send(api, account, {**LIMIT, "client_order_id": "abc-1"})
    response = api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "client_order_id": "abc-1"})
    assert response.status_code == 202 and response["Idempotent-Replayed"] == "true" and response.json() == first
    assert Order.objects.count() == 1


# --- refusals: the right status and nothing changed -------------------------------------------------------

BAD_ORDERS = [
    pytest.param({**LIMIT, "symbol": "NOPE"}, "unknown_symbol", id="unknown-symbol"),
    pytest.param({**LIMIT, "qty": "0"}, "validation_error", id="qty-zero"),
    pytest.param({**LIMIT, "qty": "-1"}, "validation_error", id="qty-negative"),
    pytest.param({**LIMIT, "qty": "1.5"}, "validation_error", id="qty-off-lot"),
    pytest.param({**LIMIT, "symbol": "BTC/USDT", "qty": "0.0015"}, "validation_error", id="qty-off-lot-crypto"),
    pytest.param({**LIMIT, "price": "90.005"}, "validation_error", id="price-off-tick"),
    pytest.param({k: v for k, v in LIMIT.items() if k != "price"}, "validation_error", id="limit-without-price"),
    pytest.param({**MARKET, "price": "100.00"}, "validation_error", id="market-with-price"),
    pytest.param({**LIMIT, "leverage": 5}, "validation_error", id="unknown-field"),
    pytest.param({**LIMIT, "side": "hold"}, "validation_error", id="bad-side"),
    pytest.param({**LIMIT, "qty": "ten"}, "validation_error", id="qty-not-a-number"),
]


@pytest.mark.parametrize(("payload", "code"), BAD_ORDERS)
def test_bad_orders_are_422_on_every_route_and_nothing_is_written(api, venue, account, payload, code):
    before = snapshot_rows()
    error(api.post(f"/api/v1/accounts/{account.pk}/orders", payload), 422, code)
    error(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "send_order", "payload": payload}), 422, code)
    error(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, payload]}), 422)
    assert snapshot_rows() == before and venue.placed == []


def test_unknown_field_is_named_as_sent(api, account):
    body = error(api.post(f"/api/v1/accounts/{account.pk}/orders", {**LIMIT, "leverage": 5}), 422)
    assert body["fields"] == {"leverage": ["Unknown field."]}


def test_cancel_of_a_filled_order_is_409(api, venue, account):
    filled_position(api, venue, account)
    order = Order.objects.get()
    before = snapshot_rows()
    error(api.post(f"/api/v1/orders/{order.pk}/cancel"), 409, "order_final")
    assert snapshot_rows() == before


def test_change_of_a_canceled_order_is_409(api, venue, account):
    order_id = send(api, account)["order_id"]
    api.post(f"/api/v1/orders/{order_id}/cancel")
    before = snapshot_rows()
    error(api.post(f"/api/v1/orders/{order_id}/change", {"qty": "5"}), 409, "order_final")
    assert snapshot_rows() == before


def test_close_of_a_closed_position_is_409(api, venue, account):
    position = filled_position(api, venue, account)
    venue.mode = "fill"
    api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "close_position", "payload": {"position_id": position.pk}})
    before = snapshot_rows()
    response = api.post(
        "/api/v1/oms/commands", {"account_id": account.pk, "command": "close_position", "payload": {"position_id": position.pk}}
    )
    error(response, 409, "position_closed")
    assert snapshot_rows() == before


def test_another_users_account_order_and_position_are_404_everywhere(api, bob_client, venue, account, bob_account):
    position = filled_position(bob_client, venue, bob_account)
    bob_order = Order.objects.get()
    working = send(bob_client, bob_account)["order_id"]
    before = snapshot_rows()
    a = bob_account.pk
    for path, body in [
        (f"/api/v1/accounts/{a}/orders", LIMIT),
        (f"/api/v1/accounts/{a}/batch-orders", {"orders": [LIMIT]}),
        (f"/api/v1/accounts/{a}/cancel-all", {}),
        (f"/api/v1/accounts/{a}/flatten", {}),
        (f"/api/v1/accounts/{a}/sync", {}),
        (f"/api/v1/orders/{working}/cancel", {}),
        (f"/api/v1/orders/{working}/change", {"price": "91.00"}),
        ("/api/v1/oms/commands", {"account_id": a, "command": "send_order", "payload": LIMIT}),
        ("/api/v1/oms/commands", {"account_id": a, "command": "cancel_order", "payload": {"order_id": working}}),
        ("/api/v1/oms/commands", {"account_id": a, "command": "close_position", "payload": {"position_id": position.pk}}),
        ("/api/v1/oms/commands", {"account_id": a, "command": "flatten_all"}),
        ("/api/v1/oms/commands", {"account_id": account.pk, "command": "cancel_order", "payload": {"order_id": working}}),
        ("/api/v1/oms/commands", {"account_id": account.pk, "command": "close_position", "payload": {"position_id": position.pk}}),
    ]:
        error(api.post(path, body), 404)
    for path in [f"/api/v1/orders/{bob_order.pk}", f"/api/v1/accounts/{a}/orders", f"/api/v1/accounts/{a}/positions"]:
        error(api.get(path), 404)
    for path in [f"/api/v1/accounts/{a}/funds", f"/api/v1/accounts/{a}/holdings"]:
        error(api.get(path), 404)
    for path in ["/api/v1/oms/orders/open", "/api/v1/oms/orders/history", "/api/v1/oms/deals", "/api/v1/oms/positions/open"]:
        assert api.get(path).json()["results"] == []
        error(api.get(path, {"account_id": a}), 404)
    assert snapshot_rows() == before


READ_SCOPE_POSTS = [
    "/api/v1/oms/commands",
    "/api/v1/oms/reassign",
    "/api/v1/accounts/{a}/orders",
    "/api/v1/accounts/{a}/batch-orders",
    "/api/v1/accounts/{a}/cancel-all",
    "/api/v1/accounts/{a}/flatten",
    "/api/v1/accounts/{a}/sync",
    "/api/v1/orders/{o}/cancel",
    "/api/v1/orders/{o}/change",
]


def test_read_scope_key_gets_403_on_every_post(api, alice_read_key, django_capture_on_commit_callbacks, venue, account):
    order_id = send(api, account)["order_id"]
    reader = APIClient()
    reader.credentials(HTTP_X_API_KEY=alice_read_key)
    before = snapshot_rows()
    for path in READ_SCOPE_POSTS:
        url = path.format(a=account.pk, o=order_id)
        body = {"account_id": account.pk, "command": "cancel_all"} if "commands" in url else {}
        error(reader.post(url, body, format="json"), 403, "permission_denied")
    assert reader.get(f"/api/v1/orders/{order_id}").status_code == 200
    assert snapshot_rows() == before


def test_kill_switch_refuses_sends_but_allows_cancels(api, venue, account):
    order_id = send(api, account)["order_id"]
    BrokerAccount.objects.filter(pk=account.pk).update(trading_enabled=False)
    before = snapshot_rows()
    error(api.post(f"/api/v1/accounts/{account.pk}/orders", LIMIT), 403, "trading_disabled")
    error(api.post("/api/v1/oms/commands", {"account_id": account.pk, "command": "send_order", "payload": LIMIT}), 403, "trading_disabled")
    error(api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, LIMIT]}), 403, "trading_disabled")
    assert snapshot_rows() == before
    assert api.post(f"/api/v1/orders/{order_id}/cancel").status_code == 202
    assert Order.objects.get(pk=order_id).status == "canceled"


# --- lists, filters, CSV -------------------------------------------------------------------------------


def test_lists_filter_by_field_and_time(api, venue, alice, account):
    other = make_account(alice, label="second")
    send(api, account, {**LIMIT, "strategy_id": "alpha"})
    send(api, account, {**LIMIT, "side": "sell", "price": "120.00"})
    send(api, other, {**LIMIT, "symbol": "BTC/USDT", "qty": "0.5", "price": "50000.00"})

    def ids(params: dict[str, Any], path: str = "/api/v1/oms/orders/open") -> int:
        response = api.get(path, params)
        assert response.status_code == 200, response.content
        return len(response.json()["results"])

    assert ids({}) == 3
    assert ids({"account_id": account.pk}) == 2
    assert ids({"symbol": "BTC/USDT"}) == 1
    assert ids({"side": "sell"}) == 1
    assert ids({"strategy_id": "alpha"}) == 1
    assert ids({"status": "new"}) == 3
    assert ids({"status": "filled"}) == 0
    now = timezone.now()
    assert ids({"from": (now - timedelta(minutes=5)).isoformat()}) == 3
    assert ids({"to": (now - timedelta(minutes=5)).isoformat()}) == 0
    assert ids({"from": "2020-01-01T00:00:00Z", "to": (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")}) == 3
    assert ids({"account_id": account.pk}, f"/api/v1/accounts/{other.pk}/orders") == 0
    assert ids({}, f"/api/v1/accounts/{other.pk}/orders") == 1
    assert ids({"limit": 1}) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2024-13-01T00:00:00Z"}, "to"),
        ({"status": "sleeping"}, "status"),
        ({"side": "up"}, "side"),
        ({"account_id": "one"}, "account_id"),
    ],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/oms/orders/open", "/api/v1/oms/orders/history", "/api/v1/oms/deals", "/api/v1/oms/positions/open"]
)
def test_bad_filter_values_are_422_in_the_error_shape(api, params, field, path):
    if field == "status" and "orders" not in path:
        return  # deals have no status; positions are split by route (open/history)
    body = error(api.get(path, params), 422, "validation_error")
    assert field in body["fields"]


def test_bad_filter_values_are_422_for_csv_too(api):
    response = api.get("/api/v1/oms/deals", {"format": "csv", "from": "nope"})
    error(response, 422)
    assert response["Content-Type"].startswith("application/json")


def csv_rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response).decode())))


def test_csv_export_of_orders_and_deals_streams_every_matching_row(api, venue, account, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 1}
    filled_position(api, venue, account, strategy_id="=cmd|calc")
    filled_position(api, venue, account, symbol="BTC/USDT", qty="0.001")
    send(api, account)
    rows = csv_rows(api.get("/api/v1/oms/orders/history", {"format": "csv"}))
    header, body = rows[0], rows[1:]
    assert header == list(order_payload(Order.objects.first()))
    assert len(body) == 2  # not paginated
    first = dict(zip(header, body[0], strict=True))
    order = Order.objects.filter(status="filled").order_by("id").first()
    assert first["id"] == str(order.pk) and first["qty"] == "10" and first["price"] == ""
    assert first["reduce_only"] == "false" and first["created_at"] == order_payload(order)["created_at"]
    assert first["strategy_id"] == "'=cmd|calc"  # never a spreadsheet formula
    assert len(csv_rows(api.get("/api/v1/oms/orders/history", {"format": "csv", "symbol": "BTC/USDT"}))) == 2
    assert len(csv_rows(api.get("/api/v1/oms/orders/open", {"format": "csv"}))) == 2
    assert len(csv_rows(api.get(f"/api/v1/accounts/{account.pk}/orders", {"format": "csv"}))) == 4
    deals = csv_rows(api.get("/api/v1/oms/deals", {"format": "csv"}))
    assert deals[0] == list(deal_payload(Deal.objects.first())) and len(deals) == 3
    assert dict(zip(deals[0], deals[2], strict=True))["qty"] == "0.001"


def test_csv_export_shows_only_the_callers_rows(api, bob_client, venue, bob_account):
    filled_position(bob_client, venue, bob_account)
    assert len(csv_rows(api.get("/api/v1/oms/deals", {"format": "csv"}))) == 1  # the header alone


# --- funds, holdings, sync ----------------------------------------------------------------------------


def test_funds_and_holdings_come_from_the_broker(api, account):
    funds = api.get(f"/api/v1/accounts/{account.pk}/funds")
    assert funds.status_code == 200
    assert funds.json() == {
        "account_id": account.pk,
        "currency": "USD",
        "cash": "1000000",
        "margin_used": "0",
        "margin_available": "1000000",
        "equity": "1000000",
        "unrealized_pnl": None,
        # A broker reporting one currency: that is the one balance.
        "balances": [{"currency": "USD", "cash": "1000000", "available": "1000000"}],
        "buying_power": "1000000",
        "rates": {"USD": "1"},
    }
    assert api.get(f"/api/v1/accounts/{account.pk}/holdings").json() == {"results": [], "next": None}


def test_funds_and_holdings_answer_502_when_the_broker_is_unavailable(api, alice):
    class OfflineBroker:
        capabilities = Capabilities()

        def funds(self) -> Any:
            raise BrokerUnavailable("Connection refused (fake).")

        def holdings(self) -> Any:
            raise BrokerUnavailable("Connection refused (fake).")

    offline = make_account(alice, kind="kite", label="broker down")
    with broker_registered("kite", lambda account: OfflineBroker()):
        error(api.get(f"/api/v1/accounts/{offline.pk}/funds"), 502, "broker_unavailable")
        error(api.get(f"/api/v1/accounts/{offline.pk}/holdings"), 502, "broker_unavailable")


def test_sync_queues_the_account_sync_in_production(api, account, monkeypatch):
    import oms.tasks
    from config.celery import app

    queued: list[int] = []
    monkeypatch.setattr(oms.tasks.account_sync_task, "delay", queued.append)
    app.conf.task_always_eager = False
    try:
        response = api.post(f"/api/v1/accounts/{account.pk}/sync")
        assert response.status_code == 202
        assert response.json() == {"account_id": account.pk, "status": "queued"}
        assert queued == [account.pk]
        error(api.post(f"/api/v1/accounts/{account.pk}/sync", {"now": True}), 422)
    finally:
        app.conf.task_always_eager = True
    assert queued == [account.pk]


# --- marks, schema, paths ------------------------------------------------------------------------------


def test_fills_are_marks_on_the_datafeed(api, bob_client, venue, account, bob_account):
    filled_position(api, venue, account)
    filled_position(api, venue, account, side="sell", qty="4")
    filled_position(bob_client, venue, bob_account)
    assert api.get("/api/v1/datafeed/config").json()["supports_marks"] is True
    now = int(time.time())
    marks = api.get("/api/v1/datafeed/marks", {"symbol": "AAPL", "from": now - 3600, "to": now + 60, "resolution": "1"}).json()
    assert [(m["label"], m["color"]) for m in marks] == [("B", "green"), ("S", "red")]
    deal = Deal.objects.filter(account=account).order_by("id").first()
    assert marks[0] == {
        "id": f"deal-{deal.pk}",
        "time": int(deal.executed_at.timestamp()),
        "color": "green",
        "text": f"Buy 10 @ 100 (order #{deal.order_id}, account #{account.pk})",
        "label": "B",
        "labelFontColor": "white",
        "minSize": 14,
    }
    assert api.get("/api/v1/datafeed/marks", {"symbol": "AAPL", "from": now + 3600, "to": now + 7200, "resolution": "1"}).json() == []
    assert api.get("/api/v1/datafeed/marks", {"symbol": "BTC/USDT", "from": 0, "to": now + 60, "resolution": "1D"}).json() == []
    bob_marks = bob_client.get("/api/v1/datafeed/marks", {"symbol": "AAPL", "from": now - 3600, "to": now + 60, "resolution": "1"}).json()
    assert len(bob_marks) == 1


def test_schema_documents_the_oms_paths(api):
    response = api.client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    import json

    schema = json.loads(response.content)
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/oms/commands", "post"),
        ("/api/v1/oms/orders/open", "get"),
        ("/api/v1/oms/orders/history", "get"),
        ("/api/v1/oms/deals", "get"),
        ("/api/v1/oms/positions/open", "get"),
        ("/api/v1/oms/positions/history", "get"),
        ("/api/v1/oms/reassign", "post"),
        ("/api/v1/accounts/{id}/orders", "post"),
        ("/api/v1/accounts/{id}/batch-orders", "post"),
        ("/api/v1/orders/{id}", "get"),
        ("/api/v1/orders/{id}/cancel", "post"),
        ("/api/v1/orders/{id}/change", "post"),
        ("/api/v1/accounts/{id}/positions", "get"),
        ("/api/v1/accounts/{id}/holdings", "get"),
        ("/api/v1/accounts/{id}/funds", "get"),
        ("/api/v1/accounts/{id}/sync", "post"),
        ("/api/v1/accounts/{id}/cancel-all", "post"),
        ("/api/v1/accounts/{id}/flatten", "post"),
    ]:
        operation = paths[path][method]
        assert operation["responses"], path
        ok = operation["responses"].get("200") or operation["responses"].get("202")
        assert ok and ok.get("content"), (path, method)
    assert "oneOf" in schema["components"]["schemas"]["CommandOrBatchRequest"]
    assert "text/csv" in paths["/api/v1/oms/deals"]["get"]["responses"]["200"]["content"]


@pytest.mark.parametrize(
    "path", ["/api/v1/oms/orders/open", "/api/v1/oms/orders/history/", "/api/v1/oms/deals/", "/api/v1/oms/positions/history"]
)
def test_list_paths_answer_with_and_without_a_slash(api, path):
    assert api.get(path).status_code == 200
    assert api.get(path.rstrip("/") if path.endswith("/") else path + "/").status_code == 200


def test_lists_need_authentication(db):
    error(APIClient().get("/api/v1/oms/orders/open"), 401, "not_authenticated")
    error(APIClient().post("/api/v1/oms/commands", {}, format="json"), 401)


def test_flatten_under_the_kill_switch_refuses_before_canceling_anything(api, account, venue):
    """Flatten sends closing orders, which the kill switch refuses; it must not
    cancel the working orders first and then report a refusal."""
    working = send(api, account)
    assert Order.objects.get(pk=working["order_id"]).status == "new"
    BrokerAccount.objects.filter(pk=account.pk).update(trading_enabled=False)
    response = api.post(f"/api/v1/accounts/{account.pk}/flatten")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "trading_disabled"
    assert Order.objects.get(pk=working["order_id"]).status == "new"
