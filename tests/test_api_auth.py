"""Authentication paths of the REST API and the isolation between users."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey
from brokers.models import BrokerAccount
from brokers.services import broker_account_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_keys_api(alice) -> APIClient:
    from accounts.services import api_key_create

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(user=alice, name="alice keys", scope="trade", manage_keys=True).key)
    return client


def _error_code(response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields", "request_id"}
    return body["error"]["code"]


def test_me_with_an_api_key_costs_one_query_for_key_and_user(alice_api, alice, django_assert_num_queries):
    with django_assert_num_queries(2):  # the key and its user; the first use records last_used_at
        first = alice_api.get("/api/v1/me")
    with django_assert_num_queries(1):  # within API_KEY_LAST_USED_RESOLUTION: the key and its user only
        again = alice_api.get("/api/v1/me")
    assert first.status_code == again.status_code == 200
    assert (
        first.json()
        == again.json()
        == {
            "id": alice.pk,
            "email": alice.email,
            "first_name": alice.first_name,
            "last_name": alice.last_name,
            "is_staff": False,
            "date_joined": again.json()["date_joined"],
        }
    )
    assert datetime.fromisoformat(again.json()["date_joined"]) == alice.date_joined
    assert ApiKey.objects.get(user=alice).last_used_at is not None


def test_anonymous_request_is_refused_with_401_in_the_error_shape(api):
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert _error_code(response) == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("ApiKey")


def test_api_key_authenticates_and_me_names_the_user(alice_api, alice):
    response = alice_api.get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["email"] == alice.email
    assert response.json()["id"] == alice.pk


@pytest.mark.parametrize("raw", ["nonsense", "tt_deadbeef_wrongsecretwrongsecret", "tt_", ""])
def test_malformed_or_unknown_api_key_is_401(api, alice_key, raw):
    api.credentials(HTTP_X_API_KEY=raw)
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert _error_code(response) == "authentication_failed"


def test_right_prefix_with_wrong_secret_is_refused(api, alice_key):
    prefix = alice_key.rsplit("_", 1)[0]
    api.credentials(HTTP_X_API_KEY=prefix + "_" + "x" * 43)
    assert api.get("/api/v1/me").status_code == 401


def test_revoked_key_stops_working_at_once(alice_api, alice_key, alice):
    key_id = ApiKey.objects.get(prefix=alice_key.split("_")[1]).pk
    dashboard = APIClient()
    dashboard.force_login(alice)
    assert dashboard.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    response = alice_api.get("/api/v1/me")
    assert response.status_code == 401
    assert _error_code(response) == "authentication_failed"


def test_expired_key_is_refused(api, expired_key):
    api.credentials(HTTP_X_API_KEY=expired_key)
    assert api.get("/api/v1/me").status_code == 401


def test_key_of_an_inactive_user_is_refused(alice_api, alice):
    alice.is_active = False
    alice.save()
    assert alice_api.get("/api/v1/me").status_code == 401


def test_read_scope_key_reads_but_gets_403_on_every_write(api, alice_read_key, alice):
    account = broker_account_create(owner=alice, label="paper")
    api.credentials(HTTP_X_API_KEY=alice_read_key)
    assert api.get("/api/v1/accounts").status_code == 200
    writes = [
        api.post("/api/v1/accounts", {"label": "x"}, format="json"),
        api.patch(f"/api/v1/accounts/{account.pk}", {"label": "y"}, format="json"),
        api.post("/api/v1/api-keys", {"name": "more"}, format="json"),
        api.delete(f"/api/v1/api-keys/{ApiKey.objects.filter(user=alice).first().pk}"),
    ]
    for response in writes:
        assert response.status_code == 403
        assert _error_code(response) == "permission_denied"
    account.refresh_from_db()
    assert account.label == "paper"
    assert BrokerAccount.objects.filter(owner=alice).count() == 1
    assert ApiKey.objects.filter(user=alice, revoked_at__isnull=False).count() == 0


def test_session_authentication_enforces_csrf_on_writes(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/me").status_code == 200
    refused = client.post("/api/v1/api-keys", {"name": "from browser"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    assert not ApiKey.objects.filter(name="from browser").exists()

    # With the token the browser gets from the CSRF cookie, the write goes through.
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    accepted = client.post("/api/v1/api-keys", {"name": "from browser"}, format="json", HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
    assert accepted.status_code == 201
    assert ApiKey.objects.filter(name="from browser", user=alice).exists()


def test_create_api_key_returns_the_secret_once_and_stores_only_a_hash(alice_keys_api, alice):
    alice_api = alice_keys_api
    expires = (timezone.now() + timedelta(days=7)).isoformat()
    response = alice_api.post("/api/v1/api-keys", {"name": "bot", "scopes": ["read", "trade"], "expires_at": expires}, format="json")
    assert response.status_code == 201
    body = response.json()
    key = body["key"]
    assert key.startswith("tt_") and body["scope"] == "trade" and body["status"] == "active"
    row = ApiKey.objects.get(pk=body["id"])
    assert key not in (row.secret_hash, row.prefix) and len(row.secret_hash) == 64
    listed = alice_api.get("/api/v1/api-keys").json()["results"]
    assert all("key" not in item for item in listed)
    assert key not in str(listed)
    # The new key works and carries its scope.
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    assert client.get("/api/v1/me").json()["email"] == alice.email


def test_api_key_last_used_is_recorded(alice_api, alice_key):
    alice_api.get("/api/v1/me")
    row = ApiKey.objects.get(prefix=alice_key.split("_")[1])
    assert row.last_used_at is not None


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "name"),
        ({"name": "x", "scope": "admin"}, "scope"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "scope": "read", "scopes": ["trade"]}, "scopes"),
    ],
)
def test_bad_api_key_requests_are_422_and_create_nothing(alice_keys_api, alice, body, field):
    before = ApiKey.objects.count()
    response = alice_keys_api.post("/api/v1/api-keys", body, format="json")
    assert response.status_code == 422
    assert _error_code(response) == "validation_error"
    assert field in response.json()["error"]["fields"]
    assert ApiKey.objects.count() == before


# --- isolation: alice and bob ------------------------------------------------------------


def test_users_never_see_each_others_accounts_or_keys(alice_api, bob_api, alice, bob):
    alice_account = broker_account_create(owner=alice, label="alice paper")
    bob_account = broker_account_create(owner=bob, label="bob paper")

    alice_ids = [a["id"] for a in alice_api.get("/api/v1/accounts").json()["results"]]
    assert alice_ids == [alice_account.pk]
    bob_key_ids = [k["id"] for k in bob_api.get("/api/v1/api-keys").json()["results"]]
    assert all(ApiKey.objects.get(pk=i).user_id == bob.pk for i in bob_key_ids)

    # Another user's object answers 404, as if it did not exist, and stays unchanged.
    assert alice_api.get(f"/api/v1/accounts/{bob_account.pk}").status_code == 404
    response = alice_api.patch(f"/api/v1/accounts/{bob_account.pk}", {"label": "stolen"}, format="json")
    assert response.status_code == 404
    assert _error_code(response) == "not_found"
    bob_account.refresh_from_db()
    assert bob_account.label == "bob paper"

    bob_key_id = bob_key_ids[0]
    dashboard = APIClient()
    dashboard.force_login(alice)
    assert dashboard.delete(f"/api/v1/api-keys/{bob_key_id}").status_code == 404
    assert ApiKey.objects.get(pk=bob_key_id).revoked_at is None
    assert bob_api.get("/api/v1/me").status_code == 200


# --- broker accounts ---------------------------------------------------------------------


def test_create_and_update_a_broker_account(alice_api):
    created = alice_api.post(
        "/api/v1/accounts",
        {"kind": "ccxt", "label": "binance test", "exchange_id": "binance", "credentials": {"api_key": "K", "secret": "S"}},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["has_credentials"] is True and "credentials" not in body
    assert body["environment"] == "paper" and body["position_mode"] == "netting"
    updated = alice_api.patch(f"/api/v1/accounts/{body['id']}/", {"label": "renamed", "environment": "live"}, format="json")
    assert updated.status_code == 200
    assert updated.json()["label"] == "renamed" and updated.json()["environment"] == "live"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"kind": "nasdaq", "label": "x"}, "kind"),
        ({"label": "x", "environment": "prod"}, "environment"),
        ({"kind": "ccxt", "label": "x"}, "exchange_id"),
        ({"kind": "kis", "label": "x", "credentials": {"password": "p"}}, "credentials"),
        ({"label": "x", "trading_enabled": False}, "trading_enabled"),
        ({"label": "x", "status": "active"}, "status"),
        ({"label": 5, "base_currency": "US-D"}, "base_currency"),
    ],
)
def test_bad_account_requests_are_422_and_create_nothing(alice_api, body, field):
    response = alice_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 422, response.json()
    assert field in response.json()["error"]["fields"]
    assert BrokerAccount.objects.count() == 0


def test_trader_cannot_lift_the_staff_kill_switch(alice_api, alice):
    account = broker_account_create(owner=alice, label="paper")
    BrokerAccount.objects.filter(pk=account.pk).update(trading_enabled=False)
    response = alice_api.patch(f"/api/v1/accounts/{account.pk}", {"trading_enabled": True}, format="json")
    assert response.status_code == 422
    account.refresh_from_db()
    assert account.trading_enabled is False


def test_concurrent_credential_merges_keep_both_fields(alice):
    """Two merges from stale copies of the row (staff in the admin, a token
    refresh) must not drop each other's field: the merge happens under the lock."""
    from brokers.services import broker_account_credentials, broker_account_set_credentials

    account = broker_account_create(owner=alice, kind="kite", label="kite", credentials={"api_key": "K", "api_secret": "S"})
    stale_a = BrokerAccount.objects.get(pk=account.pk)
    stale_b = BrokerAccount.objects.get(pk=account.pk)
    broker_account_set_credentials(account=stale_a, credentials={"access_token": "T1"})
    broker_account_set_credentials(account=stale_b, credentials={"api_secret": "S2"})
    stored = broker_account_credentials(account=BrokerAccount.objects.get(pk=account.pk))
    assert stored == {"api_key": "K", "api_secret": "S2", "access_token": "T1"}


@pytest.mark.parametrize("change", [{"label": "   "}, {"exchange_id": ""}, {"base_currency": "U$"}])
def test_account_updates_keep_their_invariants(alice_api, alice, change):
    account = broker_account_create(owner=alice, kind="ccxt", label="binance", exchange_id="binance")
    response = alice_api.patch(f"/api/v1/accounts/{account.pk}", change, format="json")
    assert response.status_code == 422
    account.refresh_from_db()
    assert (account.label, account.exchange_id, account.base_currency) == ("binance", "binance", "USDT")  # a CCXT account's default


def test_kis_app_key_is_masked_in_logs():
    from core.masking import mask_secrets, mask_text

    assert mask_secrets({"app_key": "AK123", "appkey": "AK456"}) == {"app_key": "***", "appkey": "***"}
    assert "AK123" not in mask_text('{"app_key": "AK123"}')


def test_patching_one_credential_keeps_the_others(alice_api, alice):
    from brokers.services import broker_account_credentials

    account = broker_account_create(owner=alice, kind="kis", label="kis", credentials={"app_key": "K", "app_secret": "S"})
    response = alice_api.patch(f"/api/v1/accounts/{account.pk}", {"credentials": {"app_secret": "S2", "hts_id": "H"}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["has_credentials"] is True and "credentials" not in response.json()
    stored = broker_account_credentials(account=BrokerAccount.objects.get(pk=account.pk))
    assert stored == {"app_key": "K", "app_secret": "S2", "hts_id": "H"}
