"""Management commands: thin wrappers over the services, clear errors, no secrets printed."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from accounts.models import ApiKey
from accounts.services import api_key_authenticate, api_key_create
from brokers.crypto import PREFIX, decrypt_json, decrypt_value, generate_key
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from tests import kis_support

pytestmark = pytest.mark.django_db


def run(*args: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def kis_account(alice) -> BrokerAccount:
    return kis_support.kis_account(alice, app_key="AK-1", app_secret="SECRET-1")


# --- create_api_key ----------------------------------------------------------------


def test_create_api_key_prints_only_the_key_and_it_authenticates(alice):
    out, err = run("create_api_key", "--email", "Alice@Example.com", "--name", "cli bot", "--scope", "trade", "--expires-days", "30")
    key = out.strip()
    assert "\n" not in key
    api_key = api_key_authenticate(raw_key=key)
    assert api_key is not None and api_key.user == alice
    assert (api_key.name, api_key.scope) == ("cli bot", "trade")
    assert api_key.expires_at is not None
    assert api_key.prefix in err and key not in err


def test_create_api_key_defaults_to_read_scope_without_expiry(alice):
    out, _ = run("create_api_key", "--email", "alice@example.com", "--name", "reader")
    api_key = api_key_authenticate(raw_key=out.strip())
    assert api_key is not None
    assert (api_key.scope, api_key.expires_at) == ("read", None)


@pytest.mark.parametrize(
    "args",
    [
        ["--email", "nobody@example.com", "--name", "x"],
        ["--email", "alice@example.com", "--name", "x", "--scope", "admin"],
        ["--email", "alice@example.com", "--name", "x", "--expires-days", "0"],
        ["--email", "alice@example.com", "--name", "   "],
    ],
)
def test_create_api_key_refuses_bad_input_and_creates_nothing(alice, args):
    with pytest.raises(CommandError):
        run("create_api_key", *args)
    assert not ApiKey.objects.exists()


def test_create_api_key_names_the_unknown_email(alice):
    with pytest.raises(CommandError, match="No user with this email"):
        run("create_api_key", "--email", "nobody@example.com", "--name", "x")


# --- revoke_api_key ----------------------------------------------------------------


def test_revoke_api_key_by_id(alice):
    issued = api_key_create(user=alice, name="k", scope="trade")
    out, _ = run("revoke_api_key", "--id", str(issued.api_key.pk))
    assert "revoked" in out
    assert api_key_authenticate(raw_key=issued.key) is None


@pytest.mark.parametrize("form", ["{prefix}", "tt_{prefix}"])
def test_revoke_api_key_by_prefix(alice, form):
    issued = api_key_create(user=alice, name="k", scope="trade")
    run("revoke_api_key", "--prefix", form.format(prefix=issued.api_key.prefix))
    assert api_key_authenticate(raw_key=issued.key) is None


def test_revoke_api_key_twice_is_harmless(alice):
    issued = api_key_create(user=alice, name="k")
    run("revoke_api_key", "--id", str(issued.api_key.pk))
    first = ApiKey.objects.get().revoked_at
    out, _ = run("revoke_api_key", "--id", str(issued.api_key.pk))
    assert "already revoked" in out
    assert ApiKey.objects.get().revoked_at == first


@pytest.mark.parametrize("args", [["--id", "999999"], ["--prefix", "00000000"], [], ["--id", "1", "--prefix", "abc"]])
def test_revoke_api_key_refuses_unknown_or_ambiguous_keys_and_revokes_nothing(alice, args):
    issued = api_key_create(user=alice, name="k")
    with pytest.raises(CommandError):
        run("revoke_api_key", *args)
    assert api_key_authenticate(raw_key=issued.key) is not None


# --- generate_master_key / encrypt_value ------------------------------------------------


def test_generate_master_key_prints_a_fernet_key_and_a_hint():
    out, err = run("generate_master_key")
    key = out.strip()
    Fernet(key.encode())  # a valid key, or this raises
    assert "BROKER_ENCRYPTION_KEYS" in err and "rotate_broker_keys" in err


def test_encrypt_value_from_the_argument():
    out, _ = run("encrypt_value", "--value", "plain-1")
    assert out.startswith(PREFIX)
    assert decrypt_value(out.strip()) == "plain-1"


def test_encrypt_value_from_stdin_keeps_inner_lines(monkeypatch):
    pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    out, _ = run("encrypt_value", stdin=pem + "\n", monkeypatch=monkeypatch)
    assert decrypt_value(out.strip()) == pem


def test_encrypt_value_refuses_an_empty_value(monkeypatch):
    with pytest.raises(CommandError, match="empty"):
        run("encrypt_value", stdin="\n", monkeypatch=monkeypatch)


def test_encrypt_value_reports_a_malformed_key_setting():
    with override_settings(BROKER_ENCRYPTION_KEYS=["not-a-fernet-key"]), pytest.raises(CommandError, match="malformed"):
        run("encrypt_value", "--value", "x")


# --- add_broker_account ----------------------------------------------------------------


def test_add_broker_account_prints_the_new_id(alice):
    out, err = run(
        "add_broker_account",
        *("--email", "alice@example.com", "--kind", "kis", "--label", "KIS main", "--environment", "live"),
        *("--position-mode", "hedging", "--base-currency", "krw", "--account-number", "50000000", "--product-code", "01"),
    )
    account = BrokerAccount.objects.get(pk=int(out.strip()))
    assert account.owner == alice
    assert (account.kind, account.label, account.environment, account.position_mode, account.base_currency) == (
        "kis",
        "KIS main",
        "live",
        "hedging",
        "KRW",
    )
    assert (account.broker_account_number, account.broker_product_code) == ("50000000", "01")
    assert account.credentials_encrypted == ""
    assert "set_broker_credentials" in err and "app_secret" in err


def test_add_broker_account_for_ccxt_and_kite(alice):
    out, _ = run("add_broker_account", "--email", "alice@example.com", "--kind", "ccxt", "--label", "bn", "--exchange-id", "binance")
    assert BrokerAccount.objects.get(pk=int(out)).exchange_id == "binance"
    out, _ = run("add_broker_account", "--email", "alice@example.com", "--kind", "kite", "--label", "z", "--broker-user-id", "AB1234")
    assert BrokerAccount.objects.get(pk=int(out)).broker_user_id == "AB1234"


@pytest.mark.parametrize(
    "args",
    [
        ["--email", "nobody@example.com", "--kind", "paper", "--label", "x"],
        ["--email", "alice@example.com", "--kind", "ib", "--label", "x"],
        ["--email", "alice@example.com", "--kind", "paper", "--label", "x", "--environment", "prod"],
        ["--email", "alice@example.com", "--kind", "paper", "--label", "x", "--position-mode", "fifo"],
        ["--email", "alice@example.com", "--kind", "ccxt", "--label", "x"],
    ],
)
def test_add_broker_account_refuses_bad_input_and_creates_nothing(alice, args):
    with pytest.raises(CommandError):
        run("add_broker_account", *args)
    assert not BrokerAccount.objects.exists()


# --- set_broker_credentials ----------------------------------------------------------------


def test_set_broker_credentials_merges_and_prints_names_only(kis_account):
    out, _ = run("set_broker_credentials", "--account-id", str(kis_account.pk), "--field", "app_secret=SECRET-2", "--field", "hts_id=me")
    assert "app_key, app_secret, hts_id" in out
    assert "SECRET" not in out and "AK-1" not in out
    kis_account.refresh_from_db()
    assert decrypt_json(kis_account.credentials_encrypted) == {"app_key": "AK-1", "app_secret": "SECRET-2", "hts_id": "me"}


def test_set_broker_credentials_from_stdin_json(alice, monkeypatch):
    account = broker_account_create(owner=alice, kind="ccxt", label="bn", exchange_id="binance")
    out, err = run(
        "set_broker_credentials",
        *("--account-id", str(account.pk), "--stdin-json"),
        stdin='{"api_key": "K-9", "secret": "S-9"}',
        monkeypatch=monkeypatch,
    )
    assert "api_key, secret" in out and "S-9" not in out + err
    account.refresh_from_db()
    assert account.credentials_encrypted.startswith(PREFIX)
    assert decrypt_json(account.credentials_encrypted) == {"api_key": "K-9", "secret": "S-9"}


def test_set_broker_credentials_reads_unvalued_fields_from_stdin_one_per_line(kis_account, monkeypatch):
    run(
        "set_broker_credentials",
        *("--account-id", str(kis_account.pk), "--field", "app_key", "--field", "app_secret"),
        stdin="AK-3\nSECRET-3\n",
        monkeypatch=monkeypatch,
    )
    kis_account.refresh_from_db()
    assert decrypt_json(kis_account.credentials_encrypted) == {"app_key": "AK-3", "app_secret": "SECRET-3"}


def test_set_broker_credentials_replace_drops_other_fields(kis_account):
    out, err = run("set_broker_credentials", "--account-id", str(kis_account.pk), "--replace", "--field", "app_key=AK-4")
    kis_account.refresh_from_db()
    assert decrypt_json(kis_account.credentials_encrypted) == {"app_key": "AK-4"}
    assert "missing" in err and "app_secret" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--account-id", "999999", "--field", "app_key=x"],
        ["--account-id", "{id}", "--field", "bogus=x"],
        ["--account-id", "{id}", "--field", "app_key="],
        ["--account-id", "{id}", "--field", "=x"],
        ["--account-id", "{id}"],
    ],
)
def test_set_broker_credentials_refuses_bad_input_and_keeps_the_secrets(kis_account, args):
    before = kis_account.credentials_encrypted
    with pytest.raises(CommandError) as excinfo:
        run("set_broker_credentials", *[a.format(id=kis_account.pk) for a in args])
    assert "SECRET-1" not in str(excinfo.value)
    kis_account.refresh_from_db()
    assert kis_account.credentials_encrypted == before


def test_set_broker_credentials_refuses_bad_json_without_echoing_it(kis_account, monkeypatch):
    before = kis_account.credentials_encrypted
    for stdin in ('{"app_secret": "LEAK-ME"', '["LEAK-ME"]'):
        with pytest.raises(CommandError) as excinfo:
            run("set_broker_credentials", "--account-id", str(kis_account.pk), "--stdin-json", stdin=stdin, monkeypatch=monkeypatch)
        assert "LEAK-ME" not in str(excinfo.value)
    kis_account.refresh_from_db()
    assert kis_account.credentials_encrypted == before


def test_set_broker_credentials_cannot_merge_into_undecryptable_secrets(alice):
    account = broker_account_create(owner=alice, kind="kis", label="lost")
    BrokerAccount.objects.filter(pk=account.pk).update(credentials_encrypted=PREFIX + Fernet(generate_key()).encrypt(b"{}").decode())
    with pytest.raises(CommandError, match="--replace"):
        run("set_broker_credentials", "--account-id", str(account.pk), "--field", "app_key=x")
    run("set_broker_credentials", "--account-id", str(account.pk), "--field", "app_key=x", "--replace")
    account.refresh_from_db()
    assert decrypt_json(account.credentials_encrypted) == {"app_key": "x"}


# --- set_broker_environment ----------------------------------------------------------------


def test_set_broker_environment_switches_to_live(kis_account):
    out, _ = run("set_broker_environment", "--account-id", str(kis_account.pk), "--environment", "live")
    assert "paper -> live" in out
    kis_account.refresh_from_db()
    assert kis_account.environment == "live"


@pytest.mark.parametrize("args", [["--account-id", "999999", "--environment", "live"], ["--account-id", "{id}", "--environment", "prod"]])
def test_set_broker_environment_refuses_bad_input_and_changes_nothing(kis_account, args):
    with pytest.raises(CommandError):
        run("set_broker_environment", *[a.format(id=kis_account.pk) for a in args])
    kis_account.refresh_from_db()
    assert kis_account.environment == "paper"


# --- rotate_broker_keys ----------------------------------------------------------------


def test_rotate_broker_keys_reports_counts(settings, kis_account):
    new = generate_key()
    with override_settings(BROKER_ENCRYPTION_KEYS=[new, *settings.BROKER_ENCRYPTION_KEYS]):
        out, _ = run("rotate_broker_keys")
    assert "Rotated: 1. Failed: 0." in out


def test_rotate_broker_keys_fails_when_a_row_cannot_be_decrypted(alice, kis_account):
    stray = PREFIX + Fernet(generate_key()).encrypt(b'{"app_key":"x"}').decode()
    lost = broker_account_create(owner=alice, kind="kis", label="lost")
    BrokerAccount.objects.filter(pk=lost.pk).update(credentials_encrypted=stray)
    with pytest.raises(CommandError, match="1 account"):
        run("rotate_broker_keys")
    lost.refresh_from_db()
    assert lost.credentials_encrypted == stray
