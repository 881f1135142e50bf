"""Broker tokens: issued once per credential across processes, never more
than once a minute, never shown, and a caller with a valid token never waits.

Runs in both modes: file locks and SQLite on the embedded default, Redis
locks and PostgreSQL when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from brokers.base import BrokerAuthExpired
from brokers.errors import domain_error_for
from brokers.kis import protocol
from brokers.kis.fake import FakeKisServer
from brokers.locks import LockNotAcquired
from brokers.models import BrokerToken
from brokers.tokens import (
    IssuedToken,
    TokenIssueTooSoon,
    TokenKey,
    credential_id,
    token_get,
    token_invalidate,
    token_refresh,
    token_state,
)
from core.exceptions import exception_handler
from tests.servers import ROOT, server_env
from tests.token_callers import kis_token_issuer, run_callers

APP_SECRET = "secret-" + secrets.token_hex(20)


@pytest.fixture
def app_key() -> str:
    return "PS" + secrets.token_hex(17)


@pytest.fixture
def kis(app_key) -> Iterator[FakeKisServer]:
    """The fake KIS server: one access token a minute per app key (EGW00133
    inside it), as KIS; a new token on each issue, so a renewal shows."""
    with FakeKisServer() as server:
        server.configure(reuse_token=False)
        server.add_account(app_key, APP_SECRET, "50000001")
        yield server


def _key(app_key: str) -> TokenKey:
    return TokenKey(kind="kis", environment="paper", credential=app_key, name="access_token")


def _callers_env() -> dict[str, str]:
    # A small pool per caller process (PostgreSQL): its 50 threads share it,
    # and the shared server's connections are left to the other suites.
    return server_env(VAR_DIR=str(settings.VAR_DIR), DJANGO_SETTINGS_MODULE="config.settings", DB_POOL_MAX_SIZE="4")


def _age_last_attempt(key: TokenKey, seconds: float, kis: FakeKisServer | None = None) -> None:
    """As if ``seconds`` had passed since the last issue attempt (here and at the fake)."""
    if kis is not None:
        for app in kis.exchange.apps.values():
            app.last_issue = 0.0
    row = BrokerToken.objects.get(credential_id=key.credential_id, name=key.name)
    BrokerToken.objects.filter(pk=row.pk).update(last_attempt_at=row.last_attempt_at - timedelta(seconds=seconds))


def _token_get_in_threads(key: TokenKey, issue, count: int) -> tuple[list[str], list[BaseException]]:  # type: ignore[no-untyped-def]
    """``count`` threads call ``token_get`` at once; their tokens and errors."""
    start = threading.Barrier(count)
    got: list[str] = []
    failed: list[BaseException] = []

    def call() -> None:
        start.wait()
        try:
            got.append(token_get(key, issue))
        except BaseException as exc:
            failed.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return got, failed


@pytest.mark.django_db(transaction=True)
def test_200_callers_in_4_processes_get_one_token_from_one_issue(kis, app_key):
    kis.latency = 0.2  # the issue is in flight while the others arrive
    results = run_callers(kis.rest_url, app_key, APP_SECRET, processes=4, threads=50, env=_callers_env(), cwd=str(ROOT))

    errors = [e for r in results for e in r["errors"]]
    assert errors == []
    assert sum(len(r["latencies"]) for r in results) == 200
    values = {v for r in results for v in r["values"]}
    assert len(values) == 1  # every caller got the same token
    assert kis.calls[protocol.TOKEN_PATH] == 1

    # Within the minute: more callers take the stored token, a forced refresh is refused.
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    assert token_get(key, issue) == values.pop()
    with pytest.raises(TokenIssueTooSoon):
        token_refresh(key, issue)
    assert kis.calls[protocol.TOKEN_PATH] == 1


@pytest.mark.django_db(transaction=True)
def test_200_threads_of_one_process_issue_once(kis, app_key):
    kis.latency = 0.1
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    got, failed = _token_get_in_threads(key, issue, 200)
    assert failed == []
    assert len(got) == 200 and len(set(got)) == 1
    assert kis.calls[protocol.TOKEN_PATH] == 1


@pytest.mark.django_db
def test_forced_refresh_inside_the_minute_answers_503_with_retry_after(kis, app_key):
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    first = token_get(key, issue)

    with pytest.raises(TokenIssueTooSoon) as refused:
        token_refresh(key, issue)
    assert 0 < refused.value.retry_after <= 60
    assert kis.calls[protocol.TOKEN_PATH] == 1  # the broker was not asked
    assert token_get(key, issue) == first  # the valid token still serves

    response = exception_handler(domain_error_for(refused.value), {})
    assert response is not None and response.status_code == 503
    assert response.data["error"]["code"] == "broker_busy"
    assert 1 <= int(response["Retry-After"]) <= 60

    _age_last_attempt(key, 61, kis)
    renewed = token_refresh(key, issue)
    assert renewed.value != first and token_get(key, issue) == renewed.value
    assert kis.calls[protocol.TOKEN_PATH] == 2


@pytest.mark.django_db(transaction=True)
def test_a_valid_token_is_returned_while_another_process_holds_the_lock(kis, app_key, settings):
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    value = token_get(key, issue)
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.token_callers", "--hold-lock", key.lock_name, "--seconds", "20"],
        cwd=ROOT, env=_callers_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        assert token_get(key, issue) == value
        assert time.monotonic() - started < 0.5

        # Once the token has expired, the caller waits for the holder, up to the setting, then 503.
        BrokerToken.objects.filter(credential_id=key.credential_id).update(expires_at=timezone.now() - timedelta(seconds=1))
        settings.BROKER_TOKEN_LOCK_WAIT = 0.5
        started = time.monotonic()
        with pytest.raises(LockNotAcquired) as busy:
            token_get(key, issue)
        assert 0.4 < time.monotonic() - started < 3
        error = domain_error_for(busy.value)
        assert error.status_code == 503 and error.retry_after and error.retry_after >= 1
    finally:
        holder.kill()
        holder.communicate(timeout=10)  # reaped, pipes closed
    assert kis.calls[protocol.TOKEN_PATH] == 1


@pytest.mark.django_db
def test_invalidate_drops_only_the_token_the_broker_refused(kis, app_key):
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    old = token_get(key, issue)

    token_invalidate(key, "some-other-token")
    assert token_state(key).present and token_get(key, issue) == old

    token_invalidate(key, old)
    state = token_state(key)
    assert not state.present and not state.valid
    with pytest.raises(TokenIssueTooSoon):  # the broker's minute still applies
        token_get(key, issue)

    _age_last_attempt(key, 61, kis)
    new = token_get(key, issue)
    assert new != old
    token_invalidate(key, old)  # a late caller with the old token
    assert token_get(key, issue) == new
    assert kis.calls[protocol.TOKEN_PATH] == 2


@pytest.mark.django_db
def test_a_failed_issue_is_recorded_without_the_secret(app_key):
    key = _key(app_key)
    calls = 0

    def refused() -> IssuedToken:
        nonlocal calls
        calls += 1
        raise BrokerAuthExpired(f'EGW00103 invalid {{"appkey": "{app_key}", "appsecret": "{APP_SECRET}"}} for {app_key}')

    with pytest.raises(BrokerAuthExpired):
        token_get(key, refused)
    state = token_state(key)
    assert not state.present and state.last_attempt_at is not None
    assert "BrokerAuthExpired" in state.last_error and "EGW00103" in state.last_error
    assert app_key not in state.last_error and APP_SECRET not in state.last_error

    with pytest.raises(TokenIssueTooSoon):  # the failed attempt counts for the broker too
        token_get(key, refused)
    assert calls == 1
    error = domain_error_for(BrokerAuthExpired(f"bad appsecret='{APP_SECRET}'"))
    assert error.status_code == 409 and error.code == "broker_auth" and APP_SECRET not in error.message


@pytest.mark.django_db
def test_the_token_value_and_app_key_are_never_shown(kis, app_key):
    key = _key(app_key)
    value = token_get(key, kis_token_issuer(kis.rest_url, app_key, APP_SECRET))
    state = token_state(key)
    assert state.present and state.valid and state.expires_at > timezone.now() + timedelta(hours=23)
    assert value not in repr(state) and value not in json.dumps(asdict(state), default=str)
    assert app_key not in repr(key) and app_key not in key.lock_name
    row = BrokerToken.objects.get(credential_id=credential_id(app_key))
    assert value not in row.value_encrypted and row.value_encrypted.startswith("enc:v1:")
    assert row.credential_id != app_key and app_key not in str(row)
    assert value not in repr(IssuedToken(value=value, expires_at=timezone.now()))


@pytest.mark.django_db
def test_a_token_near_expiry_is_renewed_and_kept_if_renewal_fails(kis, app_key):
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    old = token_get(key, issue)
    BrokerToken.objects.filter(credential_id=key.credential_id).update(expires_at=timezone.now() + timedelta(minutes=5))

    # Inside the minute: no renewal is attempted, the old token still serves.
    assert token_get(key, issue) == old
    assert kis.calls[protocol.TOKEN_PATH] == 1

    def down() -> IssuedToken:
        raise BrokerAuthExpired("upstream down")

    _age_last_attempt(key, 61)
    assert token_get(key, down) == old  # renewal failed: recorded, the old token serves
    assert "upstream down" in token_state(key).last_error

    _age_last_attempt(key, 61, kis)
    new = token_get(key, issue)
    assert new != old and token_state(key).last_error == ""
    assert kis.calls[protocol.TOKEN_PATH] == 2


@pytest.mark.django_db(transaction=True)
def test_callers_waiting_on_a_failed_issue_get_its_error_and_no_second_attempt(app_key):
    key = _key(app_key)
    calls = 0

    def refused() -> IssuedToken:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        raise BrokerAuthExpired("EGW00103 invalid app key")

    got, failed = _token_get_in_threads(key, refused, 20)
    outcomes = [type(exc).__name__ for exc in failed]
    assert calls == 1 and got == []
    # The callers that waited for the failed issue share its error, or (arriving
    # after it) are told to retry after the broker's minute: never a second call.
    assert len(outcomes) == 20 and set(outcomes) <= {"BrokerAuthExpired", "TokenIssueTooSoon"}


@pytest.mark.django_db
def test_a_valid_token_costs_one_read_and_no_write(kis, app_key, django_assert_num_queries):
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    value = token_get(key, issue)
    with django_assert_num_queries(1) as captured:
        assert token_get(key, issue) == value
    assert captured.captured_queries[0]["sql"].lstrip().upper().startswith("SELECT")


@pytest.mark.django_db
def test_a_token_stored_under_a_retired_key_is_issued_anew(kis, app_key):
    key = _key(app_key)
    issue = kis_token_issuer(kis.rest_url, app_key, APP_SECRET)
    old = token_get(key, issue)
    # As if BROKER_ENCRYPTION_KEYS had dropped the key it was encrypted with.
    BrokerToken.objects.filter(credential_id=key.credential_id).update(value_encrypted="enc:v1:" + "A" * 100)
    _age_last_attempt(key, 61, kis)
    new = token_get(key, issue)
    assert new != old and token_get(key, issue) == new
    assert kis.calls[protocol.TOKEN_PATH] == 2
