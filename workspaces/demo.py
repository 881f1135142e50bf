"""The demo set-up printed on every start of the embedded default
(``manage.py serve`` / ``make run``)."""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.db import transaction

from accounts.models import ApiKey, ApiKeyScope, User
from accounts.services import api_key_authenticate, api_key_create, api_key_revoke, user_create
from brokers.models import BrokerAccount, BrokerKind, Environment
from brokers.services import broker_account_create

logger = logging.getLogger(__name__)

DEMO_TRADER_EMAIL = "trader@example.com"
DEMO_STAFF_EMAIL = "staff@example.com"
DEMO_API_KEY_NAME = "demo (bootstrap)"
DEMO_ACCOUNT_LABEL = "Demo paper account"


@dataclass(frozen=True)
class DemoCredentials:
    """What a person needs to try the terminal. The plaintexts live only here
    and in the demo file: the database keeps password and key hashes."""

    url: str
    trader_email: str
    trader_password: str
    staff_email: str
    staff_password: str
    api_key: str
    account_id: int
    # What this run created or repaired; empty when everything was in place.
    changes: tuple[str, ...] = ()


def demo_bootstrap(
    *,
    demo_path: Path,
    url: str,
    trader_email: str = DEMO_TRADER_EMAIL,
    staff_email: str = DEMO_STAFF_EMAIL,
) -> DemoCredentials:
    """Make sure the demo trader, the staff superuser, a trade-scope API key and
    a paper account exist, and return credentials that work right now.

    Idempotent: a second run with ``demo_path`` intact changes nothing. Whatever
    the saved plaintexts no longer open (the file was lost while the database
    was kept, a password was changed, the key revoked) is reset or reissued, so
    the printed credentials always work. The file is written with mode 0600."""
    saved = _read_saved(demo_path)
    changes: list[str] = []
    with transaction.atomic():
        trader, trader_password = _ensure_user(email=trader_email, password=saved.get("trader_password"), superuser=False, changes=changes)
        _, staff_password = _ensure_user(email=staff_email, password=saved.get("staff_password"), superuser=True, changes=changes)
        api_key = _ensure_api_key(trader=trader, saved_key=saved.get("api_key"), changes=changes)
        account = _ensure_paper_account(trader=trader, saved_id=saved.get("account_id"), changes=changes)
    credentials = DemoCredentials(
        url=url,
        trader_email=trader.email,
        trader_password=trader_password,
        staff_email=staff_email.strip().lower(),
        staff_password=staff_password,
        api_key=api_key,
        account_id=account.pk,
        changes=tuple(changes),
    )
    record = {k: v for k, v in asdict(credentials).items() if k not in ("url", "changes")}
    if record != saved:
        _write_saved(demo_path, record)
    return credentials


def _new_password() -> str:
    return secrets.token_urlsafe(12)


def _ensure_user(*, email: str, password: str | None, superuser: bool, changes: list[str]) -> tuple[User, str]:
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user is None:
        password = password or _new_password()
        user = user_create(email=email, password=password, is_staff=superuser, is_superuser=superuser)
        changes.append(f"created {email}")
        return user, password
    usable = user.is_active and (not superuser or (user.is_staff and user.is_superuser))
    if password and usable and user.check_password(password):
        return user, password
    # The saved plaintext is gone or stale: the database alone cannot tell us the
    # password, so set a new one (this is a demo user, never a real trader).
    password = _new_password()
    user.set_password(password)
    user.is_active = True
    if superuser:
        user.is_staff = user.is_superuser = True
    user.save(update_fields=["password", "is_active", "is_staff", "is_superuser"])
    changes.append(f"reset the password of {email}")
    return user, password


def _ensure_api_key(*, trader: User, saved_key: str | None, changes: list[str]) -> str:
    if saved_key:
        found = api_key_authenticate(raw_key=saved_key)
        if found is not None and found.user_id == trader.pk and found.can_trade:
            return saved_key
    # Earlier demo keys whose plaintext was lost can never be printed again.
    for stale in ApiKey.objects.filter(user=trader, name=DEMO_API_KEY_NAME, revoked_at__isnull=True):
        api_key_revoke(api_key=stale)
    issued = api_key_create(user=trader, name=DEMO_API_KEY_NAME, scope=ApiKeyScope.TRADE)
    changes.append(f"issued a trade API key for {trader.email}")
    return issued.key


def _ensure_paper_account(*, trader: User, saved_id: int | None, changes: list[str]) -> BrokerAccount:
    paper = BrokerAccount.objects.filter(owner=trader, kind=BrokerKind.PAPER)
    account = paper.filter(pk=saved_id).first() if saved_id else None
    if account is None:
        account = paper.filter(label=DEMO_ACCOUNT_LABEL).order_by("pk").first()
    if account is None:
        account = broker_account_create(owner=trader, kind=BrokerKind.PAPER, label=DEMO_ACCOUNT_LABEL, environment=Environment.PAPER)
        changes.append(f"created paper account #{account.pk}")
    return account


def _read_saved(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable demo file %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_saved(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    os.chmod(path, 0o600)
