"""The Django admin: staff only, writes through services, secrets never rendered."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate, api_key_create, hash_secret
from brokers.crypto import PREFIX, decrypt_json
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from tests import kis_support

pytestmark = pytest.mark.django_db

KIS_SECRET = "kis-app-secret-VALUE-42"
KIS_APP_KEY = "kis-app-key-VALUE-17"


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def kis_account(alice) -> BrokerAccount:
    return kis_support.kis_account(alice, label="kis main", app_key=KIS_APP_KEY, app_secret=KIS_SECRET)


@pytest.fixture
def alice_api_key(alice) -> ApiKey:
    return api_key_create(user=alice, name="alice bot", scope="trade").api_key


def _admin_urls(alice, alice_api_key, kis_account) -> list[str]:
    return [
        reverse("admin:index"),
        reverse("admin:accounts_user_changelist"),
        reverse("admin:accounts_user_add"),
        reverse("admin:accounts_user_change", args=[alice.pk]),
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_add"),
        reverse("admin:accounts_apikey_change", args=[alice_api_key.pk]),
        reverse("admin:brokers_brokeraccount_changelist"),
        reverse("admin:brokers_brokeraccount_add"),
        reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk]),
        reverse("admin:brokers_brokeraccount_history", args=[kis_account.pk]),
    ]


def _account_form(account: BrokerAccount, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "label": account.label,
        "environment": account.environment,
        "position_mode": account.position_mode,
        "base_currency": account.base_currency,
        "broker_account_number": account.broker_account_number,
        "broker_product_code": account.broker_product_code,
        "broker_user_id": account.broker_user_id,
        "exchange_id": account.exchange_id,
        "status": account.status,
    }
    if account.trading_enabled:
        data["trading_enabled"] = "on"
    data.update(overrides)
    return data


# --- access -----------------------------------------------------------------------


def test_admin_pages_render_for_staff(staff_client, alice, alice_api_key, kis_account):
    for url in _admin_urls(alice, alice_api_key, kis_account):
        assert staff_client.get(url).status_code == 200, url


def test_admin_pages_refuse_a_non_staff_user(alice_client, alice, alice_api_key, kis_account):
    for url in _admin_urls(alice, alice_api_key, kis_account):
        response = alice_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_admin_search_and_filters_answer(staff_client, alice_api_key, kis_account):
    keys = reverse("admin:accounts_apikey_changelist")
    accounts = reverse("admin:brokers_brokeraccount_changelist")
    for url, query in [
        (keys, {"q": "alice@example.com"}),
        (keys, {"q": alice_api_key.prefix}),
        (keys, {"status": "active"}),
        (keys, {"status": "revoked"}),
        (keys, {"status": "expired"}),
        (accounts, {"q": "kis main"}),
        (accounts, {"kind__exact": "kis", "trading_enabled__exact": "1"}),
    ]:
        response = staff_client.get(url, query)
        assert response.status_code == 200, (url, query)
    assert alice_api_key.prefix in staff_client.get(keys, {"status": "active"}).content.decode()
    assert alice_api_key.prefix not in staff_client.get(keys, {"status": "revoked"}).content.decode()


# --- users --------------------------------------------------------------------------


def test_user_admin_adds_a_user_by_email_without_username(staff_client):
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {"email": "Carol@Example.com", "usable_password": "true", "password1": "carol-pass-8812", "password2": "carol-pass-8812"},
    )
    assert response.status_code == 302
    carol = User.objects.get(email="carol@example.com")
    assert carol.check_password("carol-pass-8812")
    assert not carol.is_staff


def test_user_admin_refuses_an_email_that_differs_only_in_case(staff_client, alice):
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {"email": "ALICE@example.com", "usable_password": "true", "password1": "alice-pass-9913", "password2": "alice-pass-9913"},
    )
    assert response.status_code == 200
    assert "A user with this email exists." in response.content.decode()
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_user_admin_changes_profile_and_flags(staff_client, alice):
    response = staff_client.post(
        reverse("admin:accounts_user_change", args=[alice.pk]),
        {"email": "alice@example.com", "first_name": "Alice", "last_name": "Liddell", "is_active": "on", "is_staff": "on"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name, alice.is_staff) == ("Alice", "Liddell", True)
    assert alice.check_password("alice-pass-123")  # untouched by the change form


# --- API keys -------------------------------------------------------------------------


def test_api_key_pages_never_show_the_secret_hash(staff_client, alice_api_key):
    for url in (
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_change", args=[alice_api_key.pk]),
    ):
        html = staff_client.get(url).content.decode()
        assert alice_api_key.prefix in html
        assert alice_api_key.secret_hash not in html


def test_adding_a_key_shows_it_once_and_stores_only_its_hash(staff_client, alice):
    response = staff_client.post(
        reverse("admin:accounts_apikey_add"),
        {"user": alice.pk, "name": "desk bot", "scope": "trade", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    api_key = ApiKey.objects.get(name="desk bot")
    html = response.content.decode()
    messagelist = html.split('class="messagelist"', 1)[1].split("</ul>", 1)[0]
    key = messagelist.split("<code>", 1)[1].split("</code>", 1)[0]
    assert key.startswith(f"tt_{api_key.prefix}_")
    # Only the hash of the secret is stored, and it authenticates.
    secret = key[len(f"tt_{api_key.prefix}_") :]
    assert api_key.secret_hash == hash_secret(secret)
    assert api_key_authenticate(raw_key=key) == api_key
    assert api_key.scope == "trade"
    # Never again: not on the list, not on the key's page.
    for url in (
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_change", args=[api_key.pk]),
    ):
        assert key not in staff_client.get(url).content.decode()


def test_adding_a_key_refuses_a_past_expiry(staff_client, alice):
    response = staff_client.post(
        reverse("admin:accounts_apikey_add"),
        {"user": alice.pk, "name": "late", "scope": "read", "expires_at_0": "2000-01-01", "expires_at_1": "00:00:00"},
    )
    assert response.status_code == 200
    assert "Must be in the future." in response.content.decode()
    assert not ApiKey.objects.filter(name="late").exists()


def test_a_key_is_not_editable_after_creation(staff_client, alice_api_key, bob):
    url = reverse("admin:accounts_apikey_change", args=[alice_api_key.pk])
    html = staff_client.get(url).content.decode()
    assert 'name="name"' not in html and 'name="_save"' not in html
    staff_client.post(url, {"user": bob.pk, "name": "renamed", "scope": "read"})
    alice_api_key.refresh_from_db()
    assert (alice_api_key.user_id, alice_api_key.name, alice_api_key.scope) != (bob.pk, "renamed", "read")
    assert alice_api_key.name == "alice bot"


def test_revoke_action_revokes_the_selected_keys(staff_client, alice, bob):
    kept = api_key_create(user=bob, name="kept", scope="read")
    revoked = [api_key_create(user=alice, name=f"old {i}", scope="trade") for i in range(2)]
    response = staff_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [issued.api_key.pk for issued in revoked]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 2 API key(s)." in response.content.decode()
    for issued in revoked:
        issued.api_key.refresh_from_db()
        assert issued.api_key.revoked_at is not None
        assert api_key_authenticate(raw_key=issued.key) is None
    assert api_key_authenticate(raw_key=kept.key) == kept.api_key


def test_api_keys_have_no_bulk_delete_action(staff_client):
    response = staff_client.get(reverse("admin:accounts_apikey_changelist"))
    assert "delete_selected" not in response.content.decode()


# --- broker accounts ----------------------------------------------------------------------


def test_account_pages_never_show_credentials_or_their_token(staff_client, kis_account):
    token = kis_account.credentials_encrypted
    for url in (
        reverse("admin:brokers_brokeraccount_changelist"),
        reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk]),
        reverse("admin:brokers_brokeraccount_history", args=[kis_account.pk]),
        reverse("admin:brokers_brokeraccount_delete", args=[kis_account.pk]),
    ):
        html = staff_client.get(url).content.decode()
        assert KIS_SECRET not in html, url
        assert KIS_APP_KEY not in html, url
        assert PREFIX not in html and token[len(PREFIX) :] not in html, url


def test_account_change_page_names_the_stored_fields_masked(staff_client, kis_account):
    html = staff_client.get(reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk])).content.decode()
    assert "app_key=***, app_secret=***" in html
    # Inputs for the kind's fields, empty and write-only.
    assert 'name="credential_app_secret"' in html
    assert 'type="password" name="credential_app_secret"' in html
    assert 'name="credential_api_secret"' not in html  # a kite field


def test_saving_new_credentials_in_the_admin_encrypts_them(staff_client, kis_account):
    response = staff_client.post(
        reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk]),
        _account_form(kis_account, credential_app_secret="rotated-SECRET-99", credential_hts_id="hts-user"),
        follow=True,
    )
    assert response.status_code == 200
    assert "rotated-SECRET-99" not in response.content.decode()
    kis_account.refresh_from_db()
    assert kis_account.credentials_encrypted.startswith(PREFIX)
    assert "rotated-SECRET-99" not in kis_account.credentials_encrypted
    assert decrypt_json(kis_account.credentials_encrypted) == {
        "app_key": KIS_APP_KEY,
        "app_secret": "rotated-SECRET-99",
        "hts_id": "hts-user",
    }
    # The audit trail names the changed fields, never their values.
    history = staff_client.get(reverse("admin:brokers_brokeraccount_history", args=[kis_account.pk])).content.decode()
    assert "app_secret" in history
    assert "rotated-SECRET-99" not in history


def test_blank_credential_inputs_keep_the_stored_secrets(staff_client, kis_account):
    before = kis_account.credentials_encrypted
    response = staff_client.post(
        reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk]),
        _account_form(kis_account, label="kis renamed", credential_app_key="", credential_app_secret=""),
    )
    assert response.status_code == 302
    kis_account.refresh_from_db()
    assert kis_account.label == "kis renamed"
    assert kis_account.credentials_encrypted == before
    assert decrypt_json(kis_account.credentials_encrypted) == {"app_key": KIS_APP_KEY, "app_secret": KIS_SECRET}


def test_replace_credentials_with_no_inputs_clears_them(staff_client, kis_account):
    response = staff_client.post(
        reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk]),
        _account_form(kis_account, replace_credentials="on"),
    )
    assert response.status_code == 302
    kis_account.refresh_from_db()
    assert kis_account.credentials_encrypted == ""


def test_a_refused_form_does_not_echo_the_secret(staff_client, alice):
    response = staff_client.post(
        reverse("admin:brokers_brokeraccount_add"),
        {
            "owner": alice.pk,
            "kind": "paper",
            "label": "paper with a secret",
            "environment": "paper",
            "position_mode": "netting",
            "base_currency": "USD",
            "credential_app_secret": "echo-me-NOT-123",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not used by paper accounts." in html
    assert "echo-me-NOT-123" not in html
    assert not BrokerAccount.objects.filter(label="paper with a secret").exists()


def test_adding_an_account_in_the_admin_encrypts_its_credentials(staff_client, alice):
    response = staff_client.post(
        reverse("admin:brokers_brokeraccount_add"),
        {
            "owner": alice.pk,
            "kind": "ccxt",
            "label": "binance test",
            "environment": "paper",
            "position_mode": "hedging",
            "base_currency": "usdt",
            "exchange_id": "binance",
            "credential_api_key": "ccxt-KEY-1",
            "credential_secret": "ccxt-SECRET-2",
        },
    )
    assert response.status_code == 302
    account = BrokerAccount.objects.get(label="binance test")
    assert (account.owner, account.kind, account.position_mode, account.base_currency) == (alice, "ccxt", "hedging", "USDT")
    assert account.credentials_encrypted.startswith(PREFIX)
    assert decrypt_json(account.credentials_encrypted) == {"api_key": "ccxt-KEY-1", "secret": "ccxt-SECRET-2"}


def test_adding_a_ccxt_account_without_exchange_id_is_refused(staff_client, alice):
    response = staff_client.post(
        reverse("admin:brokers_brokeraccount_add"),
        {
            "owner": alice.pk,
            "kind": "ccxt",
            "label": "no exchange",
            "environment": "paper",
            "position_mode": "netting",
            "base_currency": "USD",
        },
    )
    assert response.status_code == 200
    assert "Required for a CCXT account." in response.content.decode()
    assert not BrokerAccount.objects.filter(label="no exchange").exists()


def test_kill_switch_actions_flip_trading_enabled(staff_client, kis_account, alice):
    other = broker_account_create(owner=alice, label="paper")
    url = reverse("admin:brokers_brokeraccount_changelist")
    ids = [kis_account.pk, other.pk]

    response = staff_client.post(url, {"action": "disable_trading", "_selected_action": ids}, follow=True)
    assert "Trading disabled on 2 account(s)." in response.content.decode()
    assert list(BrokerAccount.objects.filter(pk__in=ids).values_list("trading_enabled", flat=True)) == [False, False]

    response = staff_client.post(url, {"action": "enable_trading", "_selected_action": [kis_account.pk]}, follow=True)
    assert "Trading enabled on 1 account(s)." in response.content.decode()
    kis_account.refresh_from_db()
    other.refresh_from_db()
    assert kis_account.trading_enabled is True
    assert other.trading_enabled is False


def test_the_change_form_toggles_trading_and_status_through_services(staff_client, kis_account):
    data = _account_form(kis_account, status="disabled")
    data.pop("trading_enabled")
    response = staff_client.post(reverse("admin:brokers_brokeraccount_change", args=[kis_account.pk]), data)
    assert response.status_code == 302
    kis_account.refresh_from_db()
    assert (kis_account.trading_enabled, kis_account.status) == (False, "disabled")
