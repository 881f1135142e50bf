"""The broker-accounts and keys pages (issue 12): the owner's rows only,
forms that show errors in place and change nothing, htmx partial answers,
login and back, times in the user's time zone, and a fixed number of queries
whatever the number of rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_authenticate, api_key_create
from brokers.connection import broker_account_token_states
from brokers.crypto import encrypt_value
from brokers.models import BrokerAccount, BrokerToken
from brokers.registry import token_keys_for
from brokers.services import broker_account_create
from workspaces.services import user_settings_update

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/broker-accounts"}


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


# --- login and back ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/broker-accounts", "/keys", "/keys/"])
def test_pages_send_anonymous_visitors_to_login_and_back(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url.replace('/', '%2F')}"


def test_an_expired_session_on_an_htmx_action_reloads_the_whole_page_to_login(client, alice):
    account = broker_account_create(owner=alice, label="alice paper")
    response = client.post(f"/broker-accounts/{account.pk}/sync", **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fbroker-accounts"
    assert BrokerAccount.objects.get(pk=account.pk).last_synced_at is None


# --- /broker-accounts ----------------------------------------------------------------------------


def test_accounts_page_shows_the_owners_accounts_with_their_health_only(alice_client, alice, bob):
    broker_account_create(owner=alice, label="alice paper")
    broker_account_create(owner=bob, label="bob paper")
    page = alice_client.get("/broker-accounts").content.decode()
    assert "alice paper" in page and "bob paper" not in page
    row = page[page.index("alice paper") :].split("</tr>")[0]
    assert "active" in row and "never" in row and "enabled" in row and ">Sync<" in row
    assert "htmx" in page and "/static/django_htmx/" in page  # the script is served here, not by a CDN


def test_sync_button_syncs_the_account_and_answers_its_row(alice_client, alice, settings):
    account = broker_account_create(owner=alice, label="alice paper")
    response = alice_client.post(f"/broker-accounts/{account.pk}/sync", **HTMX)
    assert response.status_code == 200
    row = response.content.decode()
    assert row.startswith(f'<tr id="account-{account.pk}"')
    if settings.CELERY_TASK_ALWAYS_EAGER:  # the embedded default syncs in the request
        assert "Synced." in row and "never" not in row
        assert BrokerAccount.objects.get(pk=account.pk).last_synced_at is not None
    else:  # a worker will
        assert "Sync queued." in row


def test_syncing_another_users_account_is_404_and_syncs_nothing(bob_client, alice):
    account = broker_account_create(owner=alice, label="alice paper")
    assert bob_client.post(f"/broker-accounts/{account.pk}/sync", **HTMX).status_code == 404
    assert bob_client.post(f"/broker-accounts/{account.pk}/sync").status_code == 404
    assert BrokerAccount.objects.get(pk=account.pk).last_synced_at is None


def test_an_unconfigured_account_says_why_it_was_not_synced(alice_client, alice):
    account = broker_account_create(owner=alice, kind="kite", label="alice kite")  # no api_key: not configured
    row = alice_client.post(f"/broker-accounts/{account.pk}/sync", **HTMX).content.decode()
    assert "not configured" in row and "not_configured" in row


def test_a_kite_account_links_to_the_kite_login_and_back(alice_client, alice):
    kite = broker_account_create(owner=alice, kind="kite", label="alice kite", credentials={"api_key": "K", "api_secret": "S"})
    broker_account_create(owner=alice, label="alice paper")
    page = alice_client.get("/broker-accounts").content.decode()
    assert page.count("Log in at") == 1  # the paper account needs none
    assert f'href="{reverse("kite_login", kwargs={"pk": kite.pk})}?next=%2Fbroker-accounts"' in page


def test_no_broker_login_link_when_the_project_has_no_login_page(alice_client, alice, monkeypatch):
    from workspaces import selectors

    monkeypatch.setitem(selectors.BROKER_LOGIN_URL_NAMES, "kite", "no_such_login_page")
    broker_account_create(owner=alice, kind="kite", label="alice kite", credentials={"api_key": "K", "api_secret": "S"})
    assert "Log in at" not in alice_client.get("/broker-accounts").content.decode()


def test_adding_a_paper_account(alice_client, alice):
    response = alice_client.post("/broker-accounts", {"label": "Scalping", "base_currency": "eur", "position_mode": "hedging"})
    assert response.status_code == 302 and response["Location"] == "/broker-accounts"
    account = BrokerAccount.objects.get(owner=alice)
    assert (account.kind, account.label, account.base_currency, account.position_mode) == ("paper", "Scalping", "EUR", "hedging")
    htmx = alice_client.post("/broker-accounts", {"label": "Second", "base_currency": "USD", "position_mode": "netting"}, **HTMX)
    assert htmx.status_code == 200 and "Paper account #" in htmx.content.decode() and "Second" in htmx.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label": "", "base_currency": "USD", "position_mode": "netting"}, "This field is required."),
        ({"label": "   ", "base_currency": "USD", "position_mode": "netting"}, "This field is required."),
        ({"label": "x", "base_currency": "U$D", "position_mode": "netting"}, "Two to ten letters, e.g. USD."),
        ({"label": "x", "base_currency": "USD", "position_mode": "sideways"}, "Select a valid choice."),
    ],
)
def test_a_bad_paper_account_shows_errors_in_place_and_adds_nothing(alice_client, alice, data, message):
    for extra in ({}, HTMX):
        response = alice_client.post("/broker-accounts", data, **extra)
        assert response.status_code == 200
        page = response.content.decode()
        assert message in page and 'class="field-error"' in page
        assert f'value="{data["label"]}"' in page or not data["label"].strip()  # what was typed stays
    assert not BrokerAccount.objects.filter(owner=alice).exists()


def test_a_post_without_the_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/broker-accounts", {"label": "x", "base_currency": "USD", "position_mode": "netting"})
    assert response.status_code == 403
    assert not BrokerAccount.objects.filter(owner=alice).exists()


# --- /keys ---------------------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_works_and_is_listed_without_its_secret(alice_client, alice):
    response = alice_client.post("/keys", {"name": "bot", "scope": "trade"}, **HTMX)
    page = response.content.decode()
    assert response.status_code == 200 and 'id="new-key"' in page and "Copy" in page
    secret = page.split('id="new-key" type="text" readonly value="')[1].split('"')[0]
    found = api_key_authenticate(raw_key=secret)
    assert found is not None and found.user_id == alice.pk and found.can_trade and found.name == "bot"
    again = alice_client.get("/keys").content.decode()
    assert "bot" in again and found.prefix in again and secret not in again and 'id="new-key"' not in again


def test_the_keys_page_shows_last_use_and_only_the_owners_keys(alice_client, alice, bob):
    used = api_key_create(user=alice, name="alice used", scope="read").api_key
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    api_key_create(user=bob, name="bob key", scope="read")
    page = alice_client.get("/keys").content.decode()
    assert "alice used" in page and "bob key" not in page
    assert "2026-03-04 05:06:07" in page


def test_revoking_a_key_answers_its_row_and_the_key_stops_working(alice_client, alice):
    issued = api_key_create(user=alice, name="old bot", scope="trade")
    response = alice_client.post(f"/keys/{issued.api_key.pk}/revoke", **HTMX)
    row = response.content.decode()
    assert response.status_code == 200 and row.startswith(f'<tr id="api-key-{issued.api_key.pk}"')
    assert "revoked" in row and ">Revoke<" not in row
    assert api_key_authenticate(raw_key=issued.key) is None


def test_bob_cannot_revoke_alices_key(bob_client, alice):
    issued = api_key_create(user=alice, name="alice bot", scope="read")
    assert bob_client.post(f"/keys/{issued.api_key.pk}/revoke", **HTMX).status_code == 404
    assert api_key_authenticate(raw_key=issued.key) is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "scope": "read"}, "This field is required."),
        ({"name": "x", "scope": "admin"}, "Select a valid choice."),
        ({"name": "x", "scope": "read", "expires_at": "2001-01-01T00:00"}, "Must be in the future."),
        ({"name": "x", "scope": "read", "expires_at": "soon"}, "Enter a valid date/time."),
    ],
)
def test_a_bad_key_shows_errors_in_place_and_creates_nothing(alice_client, alice, data, message):
    for extra in ({}, HTMX):
        page = alice_client.post("/keys", data, **extra).content.decode()
        assert message in page and 'id="new-key"' not in page
    assert not ApiKey.objects.filter(user=alice).exists()


# --- the user's time zone --------------------------------------------------------------------------------


def test_times_are_shown_in_the_users_time_zone(alice_client, alice):
    used = api_key_create(user=alice, name="k", scope="read").api_key
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert alice_client.post("/settings/timezone", {"timezone": "Asia/Seoul"}).status_code == 302
    page = alice_client.get("/keys").content.decode()
    assert "2026-03-04 14:06:07" in page and "Asia/Seoul" in page


def test_an_unknown_time_zone_is_refused_in_place(alice_client, alice):
    user_settings_update(user=alice, timezone="Europe/London")
    page = alice_client.post("/settings/timezone", {"timezone": "Mars/Olympus"}, **HTMX).content.decode()
    assert "Not a known IANA time zone" in page
    assert "Times in Europe/London" in alice_client.get("/broker-accounts").content.decode()


# --- no query per row ------------------------------------------------------------------------------------


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_pages_take_the_same_queries_for_one_row_or_many(alice_client, alice):
    broker_account_create(owner=alice, label="paper 0")
    api_key_create(user=alice, name="key 0", scope="read")
    one = _queries(alice_client, "/broker-accounts"), _queries(alice_client, "/keys")
    for n in range(1, 8):
        broker_account_create(owner=alice, label=f"paper {n}")
        api_key_create(user=alice, name=f"key {n}", scope="read")
    many = _queries(alice_client, "/broker-accounts"), _queries(alice_client, "/keys")
    assert many == one
    assert max(one) <= 6  # session, user, settings, the rows


def _kis(owner, n: int) -> BrokerAccount:
    return broker_account_create(
        owner=owner,
        kind="kis",
        label=f"kis {n}",
        environment="paper",
        base_currency="KRW",
        broker_account_number=f"5000000{n}",
        broker_product_code="01",
        credentials={"app_key": f"KIS-KEY-{n}", "app_secret": "S"},
    )


def _kite(owner, n: int) -> BrokerAccount:
    return broker_account_create(owner=owner, kind="kite", label=f"kite {n}", credentials={"api_key": f"KITE-KEY-{n}", "api_secret": "S"})


def test_broker_tokens_are_read_in_one_query_whatever_the_number_of_kis_and_kite_accounts(alice_client, alice, django_assert_num_queries):
    # One KIS (access token, approval key) and one Kite account (access token: its login) with a stored token each.
    kis, kite = _kis(alice, 0), _kite(alice, 0)
    expires = timezone.now() + timedelta(hours=6)
    for key in [*token_keys_for(kis)[:1], *token_keys_for(kite)]:
        BrokerToken.objects.create(
            kind=key.kind,
            environment=key.environment,
            credential_id=key.credential_id,
            name=key.name,
            value_encrypted=encrypt_value("T"),
            expires_at=expires,
        )
    one = _queries(alice_client, "/broker-accounts")
    for n in range(1, 6):
        _kis(alice, n)
        _kite(alice, n)
    with django_assert_num_queries(one):
        page = alice_client.get("/broker-accounts").content.decode()
    # Still right per account: the Kite account with its token is active, the others need a login;
    # KIS 0 shows its access token's expiry (its approval key is missing), the new ones "no token".
    assert page.count("login_required</span>") == 5
    assert [t["present"] for t in broker_account_token_states(account=kis)] == [True, False]
    assert page.count(f'<time datetime="{expires.isoformat()}') == 2
    assert page.count("no token") == 5 + 5


# --- against a real daphne -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_log_in_create_a_key_and_revoke_it_against_a_real_server(live_server_process):
    import requests

    from accounts.services import user_create
    from tests.test_upstream_paths import assets_of

    user_create(email="live-pages@example.com", password="live-pages-pass-1")
    base = live_server_process.url
    browser = requests.Session()
    browser.get(f"{base}/keys", timeout=10)  # to login, keeping where we were going
    login = browser.post(
        f"{base}/accounts/login/?next=/keys",
        data={"login": "live-pages@example.com", "password": "live-pages-pass-1", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        timeout=10,
    )
    assert login.status_code == 200 and login.url == f"{base}/keys", login.url
    assets = assets_of(login.text)
    assert any("django_htmx" in src for src in assets), assets
    for src in (a for a in assets if not a.startswith("data:")):
        assert src.startswith("/"), src  # this server's, never another host's
        assert browser.get(base + src, timeout=10).status_code == 200, src
    htmx = {"HX-Request": "true", "X-CSRFToken": browser.cookies["csrftoken"]}
    created = browser.post(f"{base}/keys", data={"name": "live", "scope": "read"}, headers=htmx, timeout=10)
    secret = created.text.split('id="new-key" type="text" readonly value="')[1].split('"')[0]
    assert requests.get(f"{base}/api/v1/me", headers={"X-API-Key": secret}, timeout=10).status_code == 200
    pk = created.text.split('<tr id="api-key-')[1].split('"')[0]
    revoked = browser.post(f"{base}/keys/{pk}/revoke", headers=htmx, timeout=10)
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert requests.get(f"{base}/api/v1/me", headers={"X-API-Key": secret}, timeout=10).status_code == 401
