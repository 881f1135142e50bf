"""A KIS account's tokens on its status page and under the scheduled and
staff-asked refresh: the KIS access token and approval key, state and expiry,
never their values."""

from __future__ import annotations

import pytest

from brokers.connection import broker_account_token_refresh, broker_tokens_refresh
from brokers.crypto import decrypt_value
from brokers.models import BrokerToken
from brokers.tokens import TokenIssueTooSoon
from tests.kis_support import kis_running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kis(settings, alice):
    with kis_running(settings, alice) as running:
        yield running


def _tokens(api, account_id):
    answer = api.get(f"/api/v1/accounts/{account_id}/status")
    assert answer.status_code == 200, answer.content
    return {token["name"]: token for token in answer.json()["tokens"]}, answer.content.decode()


def test_the_status_names_both_kis_tokens_and_shows_them_once_issued(kis, alice_api):
    tokens, _ = _tokens(alice_api, kis.account.pk)
    assert set(tokens) == {"access_token", "approval_key"}
    assert not tokens["access_token"]["present"]

    assert sorted(broker_account_token_refresh(account=kis.account, force=True)) == ["access_token", "approval_key"]
    tokens, body = _tokens(alice_api, kis.account.pk)
    assert tokens["access_token"]["present"] and tokens["access_token"]["valid"]
    assert tokens["access_token"]["expires_at"]
    issued = [decrypt_value(row.value_encrypted) for row in BrokerToken.objects.all()]
    assert len(issued) == 2
    for value in issued:
        assert value not in body


def test_refresh_now_inside_kis_minute_is_refused_with_the_time_to_wait(kis):
    broker_account_token_refresh(account=kis.account, force=True)
    with pytest.raises(TokenIssueTooSoon) as refused:
        broker_account_token_refresh(account=kis.account, force=True)
    assert 0 < refused.value.retry_after <= 60
    assert kis.server.calls["/oauth2/tokenP"] == 1


def test_the_scheduled_refresh_issues_missing_tokens_once_then_leaves_valid_ones(kis):
    first = broker_tokens_refresh()
    assert kis.server.calls["/oauth2/tokenP"] == 1
    assert kis.server.calls["/oauth2/Approval"] == 1
    second = broker_tokens_refresh()
    assert kis.server.calls["/oauth2/tokenP"] == 1, (first, second)
