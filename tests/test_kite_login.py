"""Logging in to Kite against the fake, through the terminal's link and
Kite's redirect: the signed state, the checksum exchange, the session stored
encrypted until 06:00 India time; refusals store nothing; an account without
a session (or whose session Kite ended) refuses orders at once."""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from rest_framework.test import APIClient

from brokers.kite.client import kite_config_for, kite_token_key
from brokers.models import BrokerToken
from brokers.services import broker_account_status
from brokers.tokens import token_state
from oms.models import Order
from tests import kite_support
from tests.kite_support import API_KEY, USER_ID, kite_account_create, kite_send

pytestmark = pytest.mark.django_db(transaction=True)

fake_kite = kite_support.fake_kite  # the fixtures
kite_account = kite_support.kite_account
IST = ZoneInfo("Asia/Kolkata")


def _login_redirect(api: APIClient, account_id: int, **query: str) -> str:
    answer = api.get(f"/api/v1/accounts/{account_id}/kite/login", query)
    assert answer.status_code == 302, answer.content
    return answer["Location"]


def _kite_sends_back(location: str) -> str:
    """The fake's login page: a successful login redirects to the app's URL."""
    answer = requests.get(location, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    return answer.headers["location"]


def _callback(api: APIClient, back: str):
    return api.get("/api/v1/brokers/kite/callback?" + urlsplit(back).query)


def _stored(account) -> bool:
    return token_state(kite_token_key(kite_config_for(account))).valid


def test_a_trader_logs_in_and_the_session_is_stored_encrypted_until_six_in_india(alice, alice_api, fake_kite, settings):
    account = kite_account_create(alice)
    assert broker_account_status(account) == "login_required"
    location = _login_redirect(alice_api, account.pk)
    assert location.startswith(fake_kite.login_url)
    query = parse_qs(urlsplit(location).query)
    assert query["api_key"] == [API_KEY] and query["v"] == ["3"] and "state=" in query["redirect_params"][0]
    back = _kite_sends_back(location)
    answer = _callback(alice_api, back)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["account_id"], body["status"], body["kite_user_id"]) == (account.pk, "active", USER_ID)
    expires = datetime.fromisoformat(body["expires_at"]).astimezone(IST)
    assert (expires.hour, expires.minute) == (6, 0) and 0 < (expires - datetime.now(IST)).total_seconds() <= 86400
    assert broker_account_status(account) == "active" and _stored(account)
    row = BrokerToken.objects.get(kind="kite")
    assert row.value_encrypted.startswith("enc:") and API_KEY not in row.value_encrypted
    assert fake_kite.calls["POST /session/token"] == 1
    # The account now trades.
    settings.OMS_RISK = dict(kite_support.NO_LIMITS)
    from marketdata.instruments import instrument_ensure_for_venue

    instrument_ensure_for_venue("NSE", "INFY", name="INFOSYS", tick_size=kite_support.Decimal("0.05"))
    with kite_support.tasks_in_process():
        order = kite_send(account, order_type="limit", price="1400.00")
    assert order.status == "new" and order.broker_order_id


def test_a_login_can_return_to_a_page_of_the_terminal(alice, alice_api, fake_kite):
    account = kite_account_create(alice)
    answer = _callback(alice_api, _kite_sends_back(_login_redirect(alice_api, account.pk, next="/?panel=accounts")))
    assert answer.status_code == 302 and answer["Location"] == "/?panel=accounts"
    assert _stored(account)
    refused = alice_api.get(f"/api/v1/accounts/{account.pk}/kite/login", {"next": "https://evil.example/"})
    assert refused.status_code == 422


@pytest.mark.parametrize("change", ["tampered", "missing", "foreign"])
def test_a_bad_state_is_refused_and_nothing_is_stored(alice, alice_api, fake_kite, change):
    account = kite_account_create(alice)
    back = _kite_sends_back(_login_redirect(alice_api, account.pk))
    query = parse_qs(urlsplit(back).query)
    state = query["state"][0]
    params = {"request_token": query["request_token"][0], "action": "login", "status": "success"}
    if change == "tampered":
        params["state"] = state[:-3] + ("abc" if not state.endswith("abc") else "xyz")
    elif change == "foreign":
        from django.core import signing

        params["state"] = signing.TimestampSigner(salt="another.purpose").sign_object({"a": account.pk, "o": alice.pk, "n": ""})
    answer = alice_api.get("/api/v1/brokers/kite/callback", params)
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == "kite_login_refused" and "state" in answer.json()["error"]["fields"]
    assert not _stored(account) and fake_kite.calls["POST /session/token"] == 0


def test_an_expired_state_is_refused(alice, alice_api, fake_kite, settings):
    account = kite_account_create(alice)
    back = _kite_sends_back(_login_redirect(alice_api, account.pk))
    settings.KITE_LOGIN_STATE_MAX_AGE = 1
    time.sleep(2.1)
    answer = _callback(alice_api, back)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "kite_login_expired", answer.content
    assert not _stored(account) and fake_kite.calls["POST /session/token"] == 0


def test_a_bad_checksum_is_refused_by_kite_and_nothing_is_stored(alice, alice_api, fake_kite):
    # The account's api_secret is not the app's: the checksum it sends is wrong.
    account = kite_account_create(alice, credentials={"api_key": API_KEY, "api_secret": "not-the-app-secret"})
    answer = _callback(alice_api, _kite_sends_back(_login_redirect(alice_api, account.pk)))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "kite_login_refused", answer.content
    assert "checksum" in answer.json()["error"]["message"]
    assert "not-the-app-secret" not in answer.content.decode()
    assert fake_kite.calls["POST /session/token"] == 1 and not _stored(account)


def test_another_users_login_is_refused(alice, alice_api, bob, bob_api, fake_kite):
    account = kite_account_create(alice)
    assert bob_api.get(f"/api/v1/accounts/{account.pk}/kite/login").status_code == 404
    back = _kite_sends_back(_login_redirect(alice_api, account.pk))
    answer = _callback(bob_api, back)  # Bob signed in, Alice's state
    assert answer.status_code == 400 and not _stored(account)


def test_a_paper_account_has_no_kite_login(alice, alice_api):
    from brokers.services import broker_account_create

    paper = broker_account_create(owner=alice, kind="paper", label="p")
    assert alice_api.get(f"/api/v1/accounts/{paper.pk}/kite/login").status_code == 404


def test_orders_of_an_account_without_a_session_are_refused_at_once(alice, alice_api, fake_kite, settings):
    from marketdata.instruments import instrument_ensure_for_venue

    instrument_ensure_for_venue("NSE", "INFY", name="INFOSYS", tick_size=kite_support.Decimal("0.05"))
    account = kite_account_create(alice)
    answer = alice_api.post(
        f"/api/v1/accounts/{account.pk}/orders",
        {"symbol": "NSE:INFY", "side": "buy", "order_type": "limit", "qty": "1", "price": "1400.00", "time_in_force": "day"},
        format="json",
    )
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "broker_login_required", answer.content
    assert "Log in to Zerodha Kite" in answer.json()["error"]["message"]
    assert not Order.objects.exists() and not any(k.startswith("POST /orders") for k in fake_kite.calls)


def test_kite_ending_the_session_turns_the_account_login_required_and_nothing_retries(kite_account, fake_kite):
    fake_kite.expire_sessions()  # 06:00, or a logout elsewhere
    order = kite_send(kite_account, order_type="limit", price="1400.00")
    order.refresh_from_db()
    # Refused, never left pending; the session is forgotten.
    assert order.status == "rejected" and "log in to Kite" in order.status_message, order.status_message
    assert fake_kite.calls["POST /orders/regular"] == 1
    assert broker_account_status(kite_account) == "login_required"
    assert not _stored(kite_account)
    # Nothing retries: the sweeper has nothing to send, and the next order is refused before any call.
    from datetime import timedelta

    from django.utils import timezone

    from oms.services.sweeper import orders_sweep

    orders_sweep(now=timezone.now() + timedelta(minutes=5))
    with pytest.raises(Exception) as refusal:
        kite_send(kite_account, order_type="limit", price="1400.00")
    assert getattr(refusal.value, "code", "") == "broker_login_required"
    assert sum(n for k, n in fake_kite.calls.items() if k != "GET /orders/" + order.broker_order_id) <= 2, fake_kite.calls
    assert fake_kite.calls["POST /orders/regular"] == 1


def test_the_admin_shows_the_log_in_to_kite_link(alice, fake_kite, client):
    from accounts.services import user_create

    staff = user_create(email="kite-staff@example.com", password="staff-pass-123", is_staff=True, is_superuser=True)
    client.force_login(staff)
    account = kite_account_create(alice)
    page = client.get(f"/admin/brokers/brokeraccount/{account.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="/api/v1/accounts/{account.pk}/kite/login"' in html and "log in to Kite" in html
    assert "login required" in html
