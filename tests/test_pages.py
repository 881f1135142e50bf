"""The server-rendered entry pages: login by email, signup, MFA, home."""

from __future__ import annotations

import pytest

from brokers.services import broker_account_create

pytestmark = pytest.mark.django_db


def test_home_redirects_anonymous_visitors_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_page_asks_for_email(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="login"' in response.content
    assert b"email" in response.content.lower()


def test_user_logs_in_by_email_and_sees_only_own_accounts(client, alice, bob):
    broker_account_create(owner=alice, label="alice paper")
    broker_account_create(owner=bob, label="bob paper")
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "alice-pass-123"})
    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 200
    assert b"alice paper" in home.content
    assert b"bob paper" not in home.content


def test_wrong_password_does_not_log_in(client, alice):
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "wrong"})
    assert response.status_code == 200  # the form again, with an error
    assert client.get("/").status_code == 302


def test_signup_by_email_creates_a_user(client, django_user_model):
    response = client.post(
        "/accounts/signup/", {"email": "carol@example.com", "password1": "c4rol-long-pass!", "password2": "c4rol-long-pass!"}
    )
    assert response.status_code == 302
    assert django_user_model.objects.filter(email="carol@example.com").exists()


def test_totp_setup_page_is_available_to_a_logged_in_user(client, alice):
    client.post("/accounts/login/", {"login": "alice@example.com", "password": "alice-pass-123"})
    # MFA changes ask for the password again first.
    reauth = client.post("/accounts/reauthenticate/?next=/accounts/2fa/totp/activate/", {"password": "alice-pass-123"})
    assert reauth.status_code == 302
    response = client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 200
    assert b"svg" in response.content  # the QR code of the TOTP secret
    assert b'name="code"' in response.content


def test_the_dashboard_shows_an_accounts_status_as_the_api_reads_it(client, alice):
    from brokers.services import broker_account_create, broker_account_status

    account = broker_account_create(owner=alice, kind="kite", label="alice kite", credentials={"api_key": "K", "api_secret": "S"})
    status = broker_account_status(account)
    assert status != "active"  # a Kite account before its login (or without an adapter)
    client.post("/accounts/login/", {"login": "alice@example.com", "password": "alice-pass-123"})
    home = client.get("/").content.decode()
    row = home[home.index("alice kite") :].split("</option>")[0]
    assert status in row
