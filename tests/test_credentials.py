"""Broker credentials: encrypted at rest, rotatable, never returned or logged."""

from __future__ import annotations

import io
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from brokers.crypto import PREFIX, CredentialError, decrypt_json, decrypt_value, encrypt_value, generate_key, rotate_value
from brokers.models import BrokerAccount
from brokers.services import broker_account_create, broker_account_credentials

OLD = generate_key()
NEW = generate_key()
STRAY = generate_key()


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


KIS_BODY = {"kind": "kis", "label": "k", "credentials": {"app_key": "AK", "app_secret": "SECRET-VALUE"}}


# --- crypto ------------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip():
    stored = encrypt_value("s3cret ✓")
    assert stored.startswith(PREFIX)
    assert "s3cret" not in stored
    assert decrypt_value(stored) == "s3cret ✓"


def test_each_encryption_is_a_different_token():
    assert encrypt_value("same") != encrypt_value("same")


def test_decrypt_refuses_a_value_not_in_the_stored_form():
    with pytest.raises(CredentialError):
        decrypt_value("plaintext")


def test_a_value_under_the_old_key_decrypts_once_a_new_key_is_prepended():
    with override_settings(BROKER_ENCRYPTION_KEYS=[OLD]):
        stored = encrypt_value("under old")
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW, OLD]):
        assert decrypt_value(stored) == "under old"
        fresh = encrypt_value("under new")
    # The newest key encrypts: the old one alone cannot read it.
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW]):
        assert decrypt_value(fresh) == "under new"
        with pytest.raises(CredentialError):
            decrypt_value(stored)


def test_rotate_value_moves_a_value_to_the_newest_key():
    with override_settings(BROKER_ENCRYPTION_KEYS=[OLD]):
        stored = encrypt_value("v")
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW, OLD]):
        rotated = rotate_value(stored)
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW]):
        assert decrypt_value(rotated) == "v"


def test_no_key_or_a_malformed_key_is_a_credential_error():
    for keys in ([], ["  "], ["not-a-key"]):
        with override_settings(BROKER_ENCRYPTION_KEYS=keys), pytest.raises(CredentialError):
            encrypt_value("x")


# --- stored form -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_credentials_are_stored_encrypted(alice):
    account = broker_account_create(owner=alice, kind="kis", label="k", credentials={"app_key": "AK", "app_secret": "SECRET-VALUE"})
    stored = BrokerAccount.objects.values_list("credentials_encrypted", flat=True).get(pk=account.pk)
    assert stored.startswith(PREFIX)
    assert "SECRET-VALUE" not in stored and "app_secret" not in stored
    assert decrypt_json(stored) == {"app_key": "AK", "app_secret": "SECRET-VALUE"}


@pytest.mark.django_db
def test_rotate_broker_keys_re_encrypts_so_the_old_key_can_be_dropped(alice, bob):
    with override_settings(BROKER_ENCRYPTION_KEYS=[OLD]):
        kis = broker_account_create(owner=alice, kind="kis", label="k", credentials={"app_key": "AK", "app_secret": "S1"})
        ccxt = broker_account_create(owner=bob, kind="ccxt", label="c", exchange_id="binance", credentials={"api_key": "K", "secret": "S2"})
        paper = broker_account_create(owner=bob, label="p")
    before = dict(BrokerAccount.objects.values_list("pk", "credentials_encrypted"))

    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW, OLD]):
        out = _run("rotate_broker_keys")
    assert "Rotated: 2. Failed: 0." in out

    after = dict(BrokerAccount.objects.values_list("pk", "credentials_encrypted"))
    assert after[kis.pk] != before[kis.pk] and after[ccxt.pk] != before[ccxt.pk]
    assert after[paper.pk] == ""  # nothing to rotate
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW]):
        assert broker_account_credentials(account=BrokerAccount.objects.get(pk=kis.pk)) == {"app_key": "AK", "app_secret": "S1"}
        assert broker_account_credentials(account=BrokerAccount.objects.get(pk=ccxt.pk)) == {"api_key": "K", "secret": "S2"}


@pytest.mark.django_db
def test_rotate_broker_keys_counts_a_row_under_an_unknown_key_as_failed_and_leaves_it(alice):
    with override_settings(BROKER_ENCRYPTION_KEYS=[OLD]):
        good = broker_account_create(owner=alice, kind="kis", label="good", credentials={"app_key": "AK", "app_secret": "S1"})
    with override_settings(BROKER_ENCRYPTION_KEYS=[STRAY]):
        lost = broker_account_create(owner=alice, kind="kis", label="lost", credentials={"app_key": "AK", "app_secret": "S2"})
    lost_before = lost.credentials_encrypted

    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW, OLD]), pytest.raises(CommandError) as excinfo:
        _run("rotate_broker_keys")
    assert "1 account(s)" in str(excinfo.value)

    lost.refresh_from_db()
    assert lost.credentials_encrypted == lost_before
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW]):
        assert decrypt_json(BrokerAccount.objects.get(pk=good.pk).credentials_encrypted)["app_secret"] == "S1"
    with override_settings(BROKER_ENCRYPTION_KEYS=[STRAY]):
        assert decrypt_json(lost.credentials_encrypted)["app_secret"] == "S2"


# --- REST API and logs -----------------------------------------------------------------------


def _assert_no_secret(text: str) -> None:
    assert "SECRET-VALUE" not in text
    assert PREFIX not in text


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    # Everything a handler could write: the message and every extra attribute.
    return "\n".join(f"{record.getMessage()} {record.__dict__!r}" for record in caplog.records)


@pytest.mark.django_db
def test_rest_api_never_returns_credentials_or_their_token(alice_api, caplog):
    caplog.set_level(logging.DEBUG)
    created = alice_api.post("/api/v1/accounts", KIS_BODY, format="json")
    assert created.status_code == 201, created.content
    account_id = created.json()["id"]
    assert BrokerAccount.objects.get(pk=account_id).credentials_encrypted.startswith(PREFIX)

    responses = [
        created,
        alice_api.get(f"/api/v1/accounts/{account_id}"),
        alice_api.get("/api/v1/accounts"),
        alice_api.patch(f"/api/v1/accounts/{account_id}", {"label": "k2"}, format="json"),
    ]
    for response in responses:
        assert response.status_code in (200, 201)
        _assert_no_secret(response.content.decode())
        assert '"AK"' not in response.content.decode()
        assert '"credentials"' not in response.content.decode()

    detail = responses[1].json()
    assert detail["has_credentials"] is True
    assert detail["required_credentials"] == ["app_key", "app_secret"]

    request_lines = [r for r in caplog.records if r.name == "terminal.request"]
    assert any(r.getMessage() == "POST /api/v1/accounts 201" for r in request_lines)
    assert any(r.getMessage() == f"GET /api/v1/accounts/{account_id} 200" for r in request_lines)
    _assert_no_secret(_log_text(caplog))


@pytest.mark.django_db
def test_a_refused_credentials_body_is_not_echoed_or_logged(alice_api, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"kind": "kis", "label": "k", "credentials": {"app_key": "AK", "bogus": "SECRET-VALUE"}}
    response = alice_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 422
    assert "bogus" in response.content.decode()
    _assert_no_secret(response.content.decode())
    assert any(r.name == "terminal.request" for r in caplog.records)
    _assert_no_secret(_log_text(caplog))
    assert not BrokerAccount.objects.exists()


@pytest.mark.django_db
def test_another_users_account_is_not_found(alice_api, bob):
    account = broker_account_create(owner=bob, kind="kis", label="b", credentials={"app_key": "AK", "app_secret": "SECRET-VALUE"})
    response = alice_api.get(f"/api/v1/accounts/{account.pk}")
    assert response.status_code == 404
    _assert_no_secret(response.content.decode())


def test_a_token_from_a_foreign_key_is_refused():
    foreign = PREFIX + Fernet(STRAY.encode()).encrypt(b"x").decode()
    with override_settings(BROKER_ENCRYPTION_KEYS=[NEW, OLD]), pytest.raises(CredentialError):
        decrypt_value(foreign)
