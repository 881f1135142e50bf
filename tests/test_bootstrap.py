"""The demo set-up printed by ``make run``: created once, and what it prints works."""

from __future__ import annotations

import json
import re
import stat
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from brokers.models import BrokerAccount
from workspaces.demo import demo_bootstrap

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:8000/"


def _bootstrap(demo_path) -> dict[str, str]:
    """Run the command and read back what it printed."""
    out = StringIO()
    call_command("bootstrap_demo", file=str(demo_path), url=URL, stdout=out)
    printed = out.getvalue()
    fields = dict(re.findall(r"^  (trader|trader password|staff|staff password|API key|paper account) +(\S+)$", printed, re.MULTILINE))
    assert URL.rstrip("/") in printed
    return fields


def _counts() -> tuple[int, int, int]:
    return User.objects.count(), ApiKey.objects.count(), BrokerAccount.objects.count()


def _assert_printed_credentials_work(printed: dict[str, str]) -> None:
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=printed["API key"])
    me = api.get("/api/v1/me")
    assert me.status_code == 200, me.content
    assert me.json()["email"] == printed["trader"] == "trader@example.com"

    account = BrokerAccount.objects.get(pk=int(printed["paper account"]))
    assert account.kind == "paper"
    assert account.owner.email == "trader@example.com"

    trader = Client()
    response = trader.post("/accounts/login/", {"login": printed["trader"], "password": printed["trader password"]})
    assert response.status_code == 302, response.content
    assert trader.session.get("_auth_user_id") == str(User.objects.get(email=printed["trader"]).pk)

    staff = Client()
    response = staff.post("/admin/login/?next=/admin/", {"username": printed["staff"], "password": printed["staff password"]})
    assert response.status_code == 302, response.content
    assert staff.get("/admin/").status_code == 200


def test_first_run_creates_trader_staff_key_and_paper_account(tmp_path):
    demo_path = tmp_path / "demo.json"

    printed = _bootstrap(demo_path)

    assert _counts() == (2, 1, 1)
    trader = User.objects.get(email="trader@example.com")
    staff = User.objects.get(email="staff@example.com")
    assert not trader.is_staff
    assert staff.is_staff and staff.is_superuser
    key = ApiKey.objects.get()
    assert key.user == trader and key.scope == "trade" and key.is_active
    assert printed["staff"] == "staff@example.com"
    _assert_printed_credentials_work(printed)


def test_demo_file_keeps_the_plaintexts_readable_by_owner_only(tmp_path):
    demo_path = tmp_path / "var" / "demo.json"

    printed = _bootstrap(demo_path)

    assert stat.S_IMODE(demo_path.stat().st_mode) == 0o600
    saved = json.loads(demo_path.read_text())
    assert saved["api_key"] == printed["API key"]
    assert saved["trader_password"] == printed["trader password"]
    assert saved["staff_password"] == printed["staff password"]
    assert saved["account_id"] == int(printed["paper account"])
    # The database keeps only hashes of the secrets.
    assert not ApiKey.objects.filter(secret_hash__contains=printed["API key"]).exists()
    assert User.objects.get(email="trader@example.com").password != printed["trader password"]


def test_second_run_creates_nothing_and_prints_the_same_credentials(tmp_path):
    demo_path = tmp_path / "demo.json"
    first = _bootstrap(demo_path)
    before = _counts()
    file_before = demo_path.read_text()

    second = _bootstrap(demo_path)

    assert _counts() == before
    assert second == first
    assert demo_path.read_text() == file_before
    assert demo_bootstrap(demo_path=demo_path, url=URL).changes == ()
    _assert_printed_credentials_work(second)


def test_lost_demo_file_with_kept_database_resets_passwords_and_issues_a_fresh_key(tmp_path):
    demo_path = tmp_path / "demo.json"
    first = _bootstrap(demo_path)
    demo_path.unlink()

    second = _bootstrap(demo_path)

    assert User.objects.count() == 2
    assert BrokerAccount.objects.count() == 1
    assert second["paper account"] == first["paper account"]
    assert second["trader password"] != first["trader password"]
    assert second["staff password"] != first["staff password"]
    assert second["API key"] != first["API key"]
    # The key whose plaintext was lost is revoked; the fresh one works.
    old = APIClient()
    old.credentials(HTTP_X_API_KEY=first["API key"])
    assert old.get("/api/v1/me").status_code == 401
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
    _assert_printed_credentials_work(second)


def test_kept_demo_file_with_fresh_database_recreates_everything(tmp_path):
    demo_path = tmp_path / "demo.json"
    first = _bootstrap(demo_path)
    User.objects.all().delete()  # cascades to keys and accounts, like a new database

    second = _bootstrap(demo_path)

    assert _counts() == (2, 1, 1)
    assert second["trader password"] == first["trader password"]
    _assert_printed_credentials_work(second)


def test_changed_password_is_reset_so_what_is_printed_works(tmp_path):
    demo_path = tmp_path / "demo.json"
    first = _bootstrap(demo_path)
    staff = User.objects.get(email="staff@example.com")
    staff.set_password("changed-elsewhere-123")
    staff.save()

    credentials = demo_bootstrap(demo_path=demo_path, url=URL)

    assert credentials.staff_password != first["staff password"]
    assert credentials.trader_password == first["trader password"]
    assert credentials.changes == ("reset the password of staff@example.com",)
    assert User.objects.get(email="staff@example.com").check_password(credentials.staff_password)
