"""Failures that are loud, never silent (issue 7, part 6, OMS side):

- an account whose broker kind has no adapter, or whose required credentials
  are not all set, is ``not_configured`` and its orders are refused at once
  (409 ``broker_not_configured``) on every entry point, never left pending;
- a fill that breaks anything but the (account, broker trade id) uniqueness
  is raised and logged, not taken for a duplicate;
- the raw broker view reconciliation stores is masked;
- ``flatten_all`` refuses as a whole (409 ``flatten_not_possible``) when a
  position cannot be closed for want of a fresh quote, and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connections
from django.utils import timezone

from brokers import registry
from brokers.base import Fill
from brokers.models import BrokerAccount
from brokers.services import broker_account_create, broker_account_set_credentials
from marketdata.quotes import quote_store
from marketdata.types import Quote
from oms.models import Deal, Order, OrderEvent, Position
from oms.services.fills import fill_apply
from oms.services.reconcile import account_reconcile
from oms.services.sweeper import orders_sweep
from tests.fakes import FakeVenue
from tests.oms_support import (
    broker_unregistered,
    send,
    set_quote,
    venue_external_order,
    venue_registered,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("oms_env")]

KIS_PARTIAL = {"app_key": "AK"}  # app_secret unset
LIMIT = {"symbol": "AAA", "side": "buy", "order_type": "limit", "qty": "1", "price": "90"}


@pytest.fixture
def venue():
    with venue_registered(FakeVenue()) as registered:
        yield registered


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code, body
    return body


# --- not_configured ------------------------------------------------------------------------------


def test_a_kite_account_without_api_secret_is_not_configured_until_it_is_set(alice_api):
    with venue_registered(FakeVenue(), "kite"), broker_login_check_off("kite"):
        created = alice_api.post("/api/v1/accounts", {"kind": "kite", "label": "k", "credentials": {"api_key": "K"}}, format="json")
        assert created.status_code == 201, created.content
        body = created.json()
        assert (body["has_credentials"], body["status"], body["missing_credentials"]) == (False, "not_configured", ["api_secret"])
        account_id = body["id"]
        patched = alice_api.patch(f"/api/v1/accounts/{account_id}", {"credentials": {"api_key": "K", "api_secret": "S"}}, format="json")
        assert patched.status_code == 200, patched.content
        assert (patched.json()["has_credentials"], patched.json()["status"]) == (True, "active")
    assert BrokerAccount.objects.get(pk=account_id).status == "active"


def test_an_account_of_a_kind_no_adapter_serves_reads_not_configured(alice, alice_api, no_kite_adapter):
    account = broker_account_create(owner=alice, kind="kite", label="k", credentials={"api_key": "K", "api_secret": "S"})
    body = alice_api.get(f"/api/v1/accounts/{account.pk}").json()
    assert (body["has_credentials"], body["status"]) == (True, "not_configured")


@pytest.fixture
def no_kite_adapter():
    """Kite accounts served by no adapter (the "no adapter" cases)."""
    with broker_unregistered("kite"):
        yield


@contextlib.contextmanager
def broker_login_check_off(kind: str):
    saved = registry.login_check(kind)
    registry.unregister_login_check(kind)
    try:
        yield
    finally:
        if saved is not None:
            registry.register_login_check(kind, saved)


def _unconfigured(alice, why: str) -> BrokerAccount:
    if why == "credential missing":
        return broker_account_create(owner=alice, kind="kis", label="partial", credentials=KIS_PARTIAL)
    return broker_account_create(owner=alice, kind="kite", label="unserved", credentials={"api_key": "K", "api_secret": "S"})


@pytest.mark.parametrize("why", ["credential missing", "no adapter"])
def test_funds_holdings_and_sync_of_an_unconfigured_account_say_so(alice, alice_api, no_kite_adapter, why):
    account = _unconfigured(alice, why)
    for method, path in (("get", "funds"), ("get", "holdings"), ("post", "sync")):
        response = getattr(alice_api, method)(f"/api/v1/accounts/{account.pk}/{path}", format="json")
        _error(response, 409, "broker_not_configured")


def _ws_command(user, frame: dict) -> dict:
    from streams.routing import websocket_urlpatterns

    async def scenario() -> dict:
        comm = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        comm.scope["user"] = user
        try:
            connected, _ = await comm.connect(timeout=5)
            assert connected
            assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
            await comm.send_json_to({"op": "command", **frame})
            return await comm.receive_json_from(timeout=5)
        finally:
            await comm.disconnect()
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("why", ["credential missing", "no adapter"])
@pytest.mark.parametrize("entry", ["rest", "batch", "commands", "ws", "cli"])
def test_an_order_for_an_unconfigured_account_is_refused_at_once_everywhere(alice, alice_api, venue, no_kite_adapter, why, entry):
    account = _unconfigured(alice, why)
    if entry == "rest":
        _error(alice_api.post(f"/api/v1/accounts/{account.pk}/orders", LIMIT, format="json"), 409, "broker_not_configured")
    elif entry == "batch":
        response = alice_api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT, LIMIT]}, format="json")
        _error(response, 409, "broker_not_configured")
    elif entry == "commands":
        envelope = {"account_id": account.pk, "command": "send_order", "request_id": "r1", "payload": LIMIT}
        _error(alice_api.post("/api/v1/oms/commands", envelope, format="json"), 409, "broker_not_configured")
    elif entry == "ws":
        frame = _ws_command(alice, {"account_id": account.pk, "command": "send_order", "request_id": "r1", "payload": LIMIT})
        assert (frame["type"], frame["data"]["error"]["code"]) == ("error", "broker_not_configured"), frame
    else:
        args = ["--symbol", "AAA", "--side", "buy", "--order-type", "limit", "--qty", "1", "--price", "90"]
        with pytest.raises(CommandError, match="not configured"):
            call_command("send_order", "--account-id", str(account.pk), *args, stdout=io.StringIO())
    assert not Order.objects.exists()
    assert venue.placed == []


def test_an_order_accepted_before_its_account_lost_a_credential_is_rejected_not_retried_forever(alice, venue, monkeypatch):
    account = broker_account_create(owner=alice, kind="kis", label="k", credentials={"app_key": "AK", "app_secret": "S"})
    monkeypatch.setattr("oms.services.send.enqueue_submit", lambda ids: None)  # not sent yet
    order = send(account, **{k: v for k, v in LIMIT.items() if k != "symbol"})
    broker_account_set_credentials(account=account, credentials=KIS_PARTIAL, merge=False)
    assert BrokerAccount.objects.get(pk=account.pk).status == "not_configured"
    orders_sweep(now=timezone.now() + timedelta(hours=1))
    order.refresh_from_db()
    assert order.status == "rejected" and "not configured" in order.status_message
    assert venue.placed == []


# --- fills -----------------------------------------------------------------------------------------


def _fill(trade_id: str, qty: str) -> Fill:
    return Fill(
        broker_trade_id=trade_id,
        broker_order_id="",
        client_order_id="",
        symbol="AAA",
        side="buy",
        qty=Decimal(qty),
        price=Decimal(100),
        executed_at=datetime.now(UTC),
    )


def test_a_fill_breaking_another_constraint_is_raised_and_logged_not_taken_for_a_duplicate(alice, caplog):
    account = broker_account_create(owner=alice, kind="paper", label="p")
    with pytest.raises(IntegrityError):
        fill_apply(account_id=account.pk, fill=_fill("T-negative", "-1"))  # a broken fill: a deal's qty is positive
    assert "T-negative" in caplog.text and any(r.levelno == logging.ERROR for r in caplog.records)
    assert not Deal.objects.exists() and not Position.objects.exists()
    # A replay of a booked trade is still the quiet no-op it must be.
    assert fill_apply(account_id=account.pk, fill=_fill("T-1", "1")) is not None
    assert fill_apply(account_id=account.pk, fill=_fill("T-1", "1")) is None
    assert Deal.objects.count() == 1


# --- reconciliation --------------------------------------------------------------------------------


def test_the_raw_broker_view_of_an_imported_order_is_stored_masked(alice, venue):
    account = broker_account_create(owner=alice, kind="kis", label="k", credentials={"app_key": "AK", "app_secret": "S"})
    coid = venue_external_order(venue, fill=False)
    view = venue.orders[coid]
    venue.orders[coid] = type(view)(**{**view.__dict__, "raw": {"ODNO": "1", "access_token": "LEAK-TOKEN", "appsecret": "LEAK-SECRET"}})
    summary = account_reconcile(account=account)
    assert len(summary.imported) == 1
    stored = OrderEvent.objects.get(kind="imported").payload
    assert stored["ODNO"] == "1"
    assert "LEAK" not in str(stored)


# --- flatten_all -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_flatten_without_a_fresh_quote_answers_409_naming_the_symbols_and_changes_nothing(alice, alice_api, venue, settings):
    account = broker_account_create(owner=alice, kind="kis", label="k", credentials={"app_key": "AK", "app_secret": "S"})
    set_quote("AAA", "100")
    set_quote("BBB", "50")
    venue.mode = "fill"
    send(account, symbol="AAA", qty="2")
    send(account, symbol="BBB", qty="3")
    venue.mode = "ack"
    working = send(account, symbol="AAA", order_type="limit", price="90")
    old = time.time() - settings.QUOTE_STALE_SECONDS - 60
    quote_store(Quote(symbol="BBB", time=old, last=Decimal(50), bid=Decimal(49), ask=Decimal(51)))
    orders_before = set(Order.objects.values_list("pk", "status"))

    body = _error(alice_api.post(f"/api/v1/accounts/{account.pk}/flatten", {}, format="json"), 409, "flatten_not_possible")
    assert "BBB" in body["message"] and "AAA" not in body["message"]
    assert body["fields"] == {"symbols": ["BBB"]}
    assert set(Order.objects.values_list("pk", "status")) == orders_before
    assert Order.objects.get(pk=working.pk).status == "new"
    assert Position.objects.filter(status="open").count() == 2

    set_quote("BBB", "50")
    assert alice_api.post(f"/api/v1/accounts/{account.pk}/flatten", {}, format="json").status_code == 202
    assert Order.objects.get(pk=working.pk).status == "canceled"
