"""Connection health per account (GET /accounts/{id}/status): tokens with
their expiry but never their value, the live feed, the last sync; only for
the owner; and the base currency a new account gets by kind."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from tests.oms_support import make_account
from tests.registry_support import token_hooks

pytestmark = pytest.mark.django_db

TOKEN_VALUE = "tok-VERY-SECRET-value-123"


@pytest.fixture(autouse=True)
def _forget_feed_states():
    """Account ids come back after a rollback: one test's feed state (in the
    cache) must not show on the next one's account."""
    from brokers.health import feed_state_clear

    yield
    for account_id in BrokerAccount.objects.values_list("pk", flat=True):
        feed_state_clear(account_id)


@pytest.fixture
def account(alice):
    return make_account(alice)  # kind kis, credentials test-app_key / test-app_secret


@pytest.fixture
def kis_tokens():
    """The token keys a KIS adapter registers: the access token and the WS
    approval key of the account's app key."""
    from brokers.services import broker_account_credentials
    from brokers.tokens import TokenKey

    def keys(account: BrokerAccount) -> list[TokenKey]:
        app_key = broker_account_credentials(account=account)["app_key"]
        return [TokenKey("kis", account.environment, app_key, name) for name in ("access_token", "approval_key")]

    with token_hooks("kis", keys=keys):
        yield keys


def test_status_shows_tokens_feed_and_sync_without_a_secret(account, alice_api, kis_tokens):
    from brokers.health import feed_state_set
    from brokers.tokens import IssuedToken, token_get

    expires = timezone.now() + timedelta(hours=20)
    [access, _] = kis_tokens(account)
    assert token_get(access, lambda: IssuedToken(value=TOKEN_VALUE, expires_at=expires)) == TOKEN_VALUE
    now = timezone.now()
    feed_state_set(account.pk, connected=True, subscriptions=["H0STCNT0:005930"], last_message_at=now, notices="polling")
    BrokerAccount.objects.filter(pk=account.pk).update(last_synced_at=now, last_sync_duration=1.25, last_sync_error="")

    response = alice_api.get(f"/api/v1/accounts/{account.pk}/status")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"id", "kind", "environment", "status", "trading_enabled", "tokens", "feed", "sync", "last_error", "last_error_at"}
    assert (body["id"], body["kind"], body["status"], body["trading_enabled"]) == (account.pk, "kis", "active", True)
    tokens = {t["name"]: t for t in body["tokens"]}
    assert tokens["access_token"]["present"] is True and tokens["access_token"]["valid"] is True
    assert tokens["access_token"]["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M"))
    assert tokens["approval_key"]["present"] is False and tokens["approval_key"]["expires_at"] is None
    assert body["feed"]["connected"] is True and body["feed"]["subscriptions"] == ["H0STCNT0:005930"]
    assert body["feed"]["notices"] == "polling" and body["feed"]["last_message_at"] is not None
    assert body["sync"]["duration"] == 1.25 and body["sync"]["last_synced_at"] is not None
    text = response.content.decode()
    for secret in (TOKEN_VALUE, "test-app_key", "test-app_secret"):
        assert secret not in text


def test_status_of_an_account_without_tokens_or_feed(alice, alice_api):
    paper = broker_account_create(owner=alice, label="paper")
    body = alice_api.get(f"/api/v1/accounts/{paper.pk}/status").json()
    assert (body["status"], body["tokens"], body["feed"]) == ("active", [], None)
    assert body["sync"] == {"last_synced_at": None, "initial_synced_at": None, "duration": None, "error": "", "notes": []}


def test_status_answers_when_the_adapter_cannot_name_the_tokens(account, alice_api):
    def keys(acct: BrokerAccount) -> list:
        raise ValueError("no CANO")

    with token_hooks("kis", keys=keys):
        response = alice_api.get(f"/api/v1/accounts/{account.pk}/status")
    assert response.status_code == 200 and response.json()["tokens"] == []


def test_status_is_the_owners_only_and_readable_with_a_read_key(account, bob_api, alice_read_key):
    response = bob_api.get(f"/api/v1/accounts/{account.pk}/status")
    assert response.status_code == 404
    assert set(response.json()["error"]) >= {"code", "message", "fields", "request_id"}
    assert Client(HTTP_X_API_KEY=alice_read_key).get(f"/api/v1/accounts/{account.pk}/status").status_code == 200
    assert Client().get(f"/api/v1/accounts/{account.pk}/status").status_code in (401, 403)
    refused = Client(HTTP_X_API_KEY=alice_read_key).post(f"/api/v1/accounts/{account.pk}/status", content_type="application/json")
    assert refused.status_code in (403, 405)


def test_the_schema_documents_status_and_sync(api):
    import json

    schema = json.loads(api.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    status = schema["paths"]["/api/v1/accounts/{id}/status"]["get"]
    assert "200" in status["responses"]
    sync = schema["paths"]["/api/v1/accounts/{id}/sync"]["post"]
    assert {"200", "202"} <= set(sync["responses"])


# --- base currency by kind -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "extra", "currency"),
    [("paper", {}, "USD"), ("kis", {}, "KRW"), ("kite", {}, "INR"), ("ccxt", {"exchange_id": "binance"}, "USDT")],
)
def test_a_new_account_takes_its_kinds_base_currency(alice, kind, extra, currency):
    assert broker_account_create(owner=alice, kind=kind, label=kind, **extra).base_currency == currency
    assert broker_account_create(owner=alice, kind=kind, label=kind, base_currency="eur", **extra).base_currency == "EUR"


def test_add_broker_account_defaults_the_currency_and_takes_the_one_given(alice):
    out = io.StringIO()
    call_command("add_broker_account", "--email", alice.email, "--kind", "kis", "--label", "kis", stdout=out, stderr=io.StringIO())
    assert BrokerAccount.objects.get(pk=int(out.getvalue().strip())).base_currency == "KRW"
    out = io.StringIO()
    call_command(
        "add_broker_account",
        *("--email", alice.email, "--kind", "ccxt", "--label", "c", "--exchange-id", "binance", "--base-currency", "usdc"),
        stdout=out,
        stderr=io.StringIO(),
    )
    assert BrokerAccount.objects.get(pk=int(out.getvalue().strip())).base_currency == "USDC"


def test_the_api_and_the_admin_default_the_currency_by_kind(alice, alice_api, staff):
    created = alice_api.post("/api/v1/accounts", {"kind": "kite", "label": "kite"}, format="json")
    assert created.status_code == 201 and created.json()["base_currency"] == "INR"
    client = Client()
    client.force_login(staff)
    response = client.post(
        reverse("admin:brokers_brokeraccount_add"),
        {"owner": alice.pk, "kind": "kis", "label": "admin kis", "environment": "paper", "position_mode": "netting", "base_currency": ""},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert BrokerAccount.objects.get(label="admin kis").base_currency == "KRW"
