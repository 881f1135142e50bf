"""``manage.py kis_check``: what works for a KIS account against its configured
server, one line each, exit status 1 on a failure, never a secret."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from brokers.kis.fake import FakeKisServer
from brokers.services import broker_account_create
from tests.kis_support import APP_KEY, APP_SECRET, CANO, HTS_ID, fake_kis, kis_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(settings) -> Iterator[FakeKisServer]:
    with fake_kis(settings, hts_id=HTS_ID) as server:
        yield server


def run(*args: str) -> tuple[str, str | None]:
    out = io.StringIO()
    try:
        call_command("kis_check", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_every_check_passes_against_the_fake(alice, fake):
    fake.add_holding(CANO, "005930", Decimal(10), Decimal("70000"), "삼성전자")
    account = kis_account(alice, hts_id=HTS_ID)
    out, error = run(str(account.pk))
    assert error is None, out
    for line in ("✓ credentials", "✓ account number", "✓ access token", "✓ approval key", "✓ price: 005930 last 70000", "✓ balance"):
        assert line in out, out
    assert "1 holding(s)" in out
    assert "KRW 100000000" in out.replace(",", "")
    assert "All checks passed." in out
    from brokers.kis.client import KisClient, kis_config_for

    client = KisClient(kis_config_for(account))
    token, approval = client.access_token(), client.approval_key()  # the ones kis_check got (no new issue)
    assert fake.calls["/oauth2/tokenP"] == 1 and fake.calls["/oauth2/Approval"] == 1
    for secret in (APP_KEY, APP_SECRET, token, approval):
        assert secret not in out


def test_the_price_query_takes_another_code(alice, fake):
    fake.set_price("000660", Decimal("182500"))
    account = kis_account(alice, hts_id=HTS_ID)
    out, error = run(str(account.pk), "--code", "000660")
    assert error is None, out
    assert "✓ price: 000660 last 182500" in out


def test_wrong_credentials_fail_the_token_and_skip_the_rest(alice, fake):
    wrong = "wrong-secret-" + "w" * 100
    account = kis_account(alice, hts_id=HTS_ID, app_secret=wrong)
    out, error = run(str(account.pk))
    assert error is not None and "access token" in error
    assert "✗ access token" in out
    assert "✗ price: skipped" in out
    assert wrong not in out and wrong not in error and APP_KEY not in out


def test_an_unreachable_server_fails_quickly(alice, settings):
    from tests.servers import closed_port

    settings.KIS_PAPER_REST_URL = f"http://127.0.0.1:{closed_port()}"
    account = kis_account(alice, hts_id=HTS_ID)
    out, error = run(str(account.pk))
    assert error is not None
    assert "✗ access token" in out
    assert f"127.0.0.1:{settings.KIS_PAPER_REST_URL.rsplit(':', 1)[1]}" in out  # names the server it tried


def test_missing_credentials_and_a_bad_account_number_are_named(alice):
    account = kis_account(alice, hts_id=HTS_ID, credentials=None, broker_account_number="123")
    out, error = run(str(account.pk))
    assert error is not None
    assert "✗ credentials: missing: app_key, app_secret" in out
    assert "✗ account number" in out


def test_a_paper_account_or_no_account_is_refused(alice):
    paper = broker_account_create(owner=alice, label="paper")
    out, error = run(str(paper.pk))
    assert error is not None and "not a KIS account" in out
    _, error = run("987654")
    assert error == "No such account."
    _, error = run(str(paper.pk), "--code", "x; rm")
    assert error is not None and "--code" in error
