"""Broker accounts and their credentials: every write goes through here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from brokers.announce import account_added_notify
from brokers.crypto import CredentialError, decrypt_json, encrypt_json, rotate_value
from brokers.models import (
    LOGIN_REQUIRED,
    OPTIONAL_CREDENTIALS,
    REQUIRED_CREDENTIALS,
    AccountStatus,
    BrokerAccount,
    BrokerKind,
    Environment,
    PositionMode,
)
from brokers.registry import adapter_registered, login_required
from core.exceptions import InvalidInput, NotFound
from core.masking import MASK, mask_text

logger = logging.getLogger(__name__)

# The names the admin, the management commands and the API have used (the rule is in brokers.models).
CREDENTIAL_FIELDS = REQUIRED_CREDENTIALS
OPTIONAL_CREDENTIAL_FIELDS = OPTIONAL_CREDENTIALS

# The base currency of a new account when none is given: the currency its
# broker settles in (a CCXT account's: the quote currency it trades against).
DEFAULT_BASE_CURRENCY: dict[str, str] = {
    BrokerKind.PAPER: "USD",
    BrokerKind.KIS: "KRW",
    BrokerKind.KITE: "INR",
    BrokerKind.CCXT: "USDT",
}

EDITABLE_FIELDS = (
    "label",
    "environment",
    "position_mode",
    "base_currency",
    "broker_account_number",
    "broker_product_code",
    "broker_user_id",
    "exchange_id",
    "broker_options",
)


def _check_credentials(kind: str, credentials: dict[str, Any]) -> dict[str, str]:
    allowed = set(CREDENTIAL_FIELDS[kind]) | set(OPTIONAL_CREDENTIAL_FIELDS[kind])
    unknown = sorted(set(credentials) - allowed)
    errors: dict[str, list[str]] = {}
    if unknown:
        errors["credentials"] = [f"Unknown credential field(s) for {kind}: {', '.join(unknown)}."]
    for key, value in credentials.items():
        if not isinstance(value, str) or not value:
            errors[f"credentials.{key}"] = ["Must be a non-empty string."]
    if errors:
        raise InvalidInput(fields=errors)
    return dict(credentials)


def broker_account_create(
    *,
    owner: User,
    kind: str = BrokerKind.PAPER,
    label: str,
    environment: str = Environment.PAPER,
    position_mode: str = PositionMode.NETTING,
    base_currency: str | None = None,
    credentials: dict[str, Any] | None = None,
    **broker_fields: str,
) -> BrokerAccount:
    """Create an account. Without ``base_currency`` it takes its kind's
    (``DEFAULT_BASE_CURRENCY``: KRW for KIS, INR for Kite, USDT for CCXT, USD
    for paper)."""
    if kind not in BrokerKind.values:
        raise InvalidInput(fields={"kind": [f"Must be one of {', '.join(BrokerKind.values)}."]})
    if environment not in Environment.values:
        raise InvalidInput(fields={"environment": [f"Must be one of {', '.join(Environment.values)}."]})
    if position_mode not in PositionMode.values:
        raise InvalidInput(fields={"position_mode": [f"Must be one of {', '.join(PositionMode.values)}."]})
    unknown = set(broker_fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(fields={k: ["Unknown field."] for k in unknown})
    if not base_currency:
        base_currency = DEFAULT_BASE_CURRENCY[kind]
    _validate_common(label=label, base_currency=base_currency)
    _validate_options(kind, broker_fields)
    if kind == BrokerKind.CCXT and not broker_fields.get("exchange_id"):
        raise InvalidInput(fields={"exchange_id": ["Required for a CCXT account."]})
    if kind == BrokerKind.CCXT:
        _validate_exchange_id(str(broker_fields["exchange_id"]))
    account = BrokerAccount(
        owner=owner,
        kind=kind,
        label=label.strip(),
        environment=environment,
        position_mode=position_mode,
        base_currency=base_currency.upper(),
        **broker_fields,
    )
    if credentials:
        account.credentials_encrypted = encrypt_json(_check_credentials(kind, credentials))
    account.status = _configured(account, AccountStatus.ACTIVE)
    account.save()
    owner_id, account_id = owner.pk, account.pk
    # The owner's open all-accounts order streams take it in (brokers.announce).
    transaction.on_commit(lambda: account_added_notify(owner_id=owner_id, account_id=account_id))
    return account


def _configured(account: BrokerAccount, status: str) -> str:
    """The status to store once credentials or kind change: not_configured
    while a required credential is unset, back to active once all are."""
    if account.missing_credentials:
        return AccountStatus.NOT_CONFIGURED if status in (AccountStatus.ACTIVE, AccountStatus.NOT_CONFIGURED) else status
    return AccountStatus.ACTIVE if status == AccountStatus.NOT_CONFIGURED else status


def broker_account_status(account: BrokerAccount) -> str:
    """The account's status as the API and the OMS see it. Adapters register
    when a process starts, so an account whose kind no adapter serves is
    ``not_configured`` on reading, whatever is stored; an active one whose
    broker needs a person to log in first (Kite without a valid session) is
    ``login_required``."""
    if account.status == AccountStatus.ACTIVE and not adapter_registered(account.kind):
        return AccountStatus.NOT_CONFIGURED
    if account.status == AccountStatus.ACTIVE and login_required(account):
        return LOGIN_REQUIRED
    return account.status


def broker_options_problem(kind: str, options: Any) -> str | None:
    """Why ``options`` cannot be an account's broker options, or None (CCXT:
    the keys ccxt's constructor takes, never credentials)."""
    if not isinstance(options, dict):
        return "The broker options must be a JSON object."
    if kind == BrokerKind.CCXT:
        from brokers.ccxt_options import broker_options_problem as ccxt_options_problem

        return ccxt_options_problem(options)
    if options:
        return f"{kind} accounts take no broker options."
    return None


def _validate_exchange_id(exchange_id: str) -> None:
    from brokers.ccxt_options import ccxt_exchange_ids

    if exchange_id not in ccxt_exchange_ids():
        raise InvalidInput(
            fields={"exchange_id": [f"ccxt has no exchange '{exchange_id[:40]}' (ids are lower case: binance, okx, bybit...)."]}
        )


def _validate_options(kind: str, changes: dict[str, Any]) -> None:
    if "broker_options" in changes:
        problem = broker_options_problem(kind, changes["broker_options"])
        if problem:
            raise InvalidInput(problem, fields={"broker_options": [problem]})


def _validate_common(*, label: str | None = None, base_currency: str | None = None) -> None:
    if label is not None and not label.strip():
        raise InvalidInput(fields={"label": ["This field may not be blank."]})
    if base_currency is not None and not (base_currency.isalpha() and 2 <= len(base_currency) <= 10):
        raise InvalidInput(fields={"base_currency": ["Two to ten letters, e.g. USD."]})


def broker_account_update(
    *,
    account: BrokerAccount,
    credentials: dict[str, Any] | None = None,
    merge_credentials: bool = False,
    **changes: Any,
) -> BrokerAccount:
    """Change an account's fields and/or secrets under the account row lock.

    ``merge_credentials`` merges into the stored secrets read inside the lock,
    so two concurrent writers (staff in the admin, a token refresh) never
    lose each other's fields."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(fields={k: ["Unknown or read-only field."] for k in unknown})
    if "environment" in changes and changes["environment"] not in Environment.values:
        raise InvalidInput(fields={"environment": [f"Must be one of {', '.join(Environment.values)}."]})
    if "position_mode" in changes and changes["position_mode"] not in PositionMode.values:
        raise InvalidInput(fields={"position_mode": [f"Must be one of {', '.join(PositionMode.values)}."]})
    _validate_common(label=changes.get("label"), base_currency=changes.get("base_currency"))
    _validate_options(account.kind, changes)
    with transaction.atomic():
        locked = BrokerAccount.objects.select_for_update().get(pk=account.pk)
        for key, value in changes.items():
            setattr(locked, key, value.upper() if key == "base_currency" else value.strip() if key == "label" else value)
        if locked.kind == BrokerKind.CCXT and not locked.exchange_id:
            raise InvalidInput(fields={"exchange_id": ["Required for a CCXT account."]})
        if locked.kind == BrokerKind.CCXT and "exchange_id" in changes:
            _validate_exchange_id(locked.exchange_id)
        if credentials is not None:
            if merge_credentials and locked.credentials_encrypted:
                credentials = {**decrypt_json(locked.credentials_encrypted), **credentials}
            locked.credentials_encrypted = encrypt_json(_check_credentials(locked.kind, credentials)) if credentials else ""
            locked.status = _configured(locked, locked.status)
        locked.save()
    return locked


def broker_account_set_credentials(*, account: BrokerAccount, credentials: dict[str, Any], merge: bool = True) -> BrokerAccount:
    """Replace (or merge into) the stored secrets of ``account``."""
    return broker_account_update(account=account, credentials=credentials, merge_credentials=merge)


def broker_account_set_environment(*, account: BrokerAccount, environment: str) -> BrokerAccount:
    return broker_account_update(account=account, environment=environment)


def broker_account_set_trading_enabled(*, account: BrokerAccount, enabled: bool) -> BrokerAccount:
    """The staff kill switch. Off: new orders refused, cancels still allowed."""
    BrokerAccount.objects.filter(pk=account.pk).update(trading_enabled=enabled, updated_at=timezone.now())
    account.refresh_from_db(fields=["trading_enabled", "updated_at"])
    return account


def broker_account_set_status(*, account: BrokerAccount, status: str, error: str = "") -> BrokerAccount:
    if status not in AccountStatus.values:
        raise InvalidInput(fields={"status": [f"Must be one of {', '.join(AccountStatus.values)}."]})
    status = _configured(account, status)  # staff cannot activate an account missing its credentials
    fields: dict[str, Any] = {"status": status, "updated_at": timezone.now()}
    if error:
        fields.update(last_error=error, last_error_at=timezone.now())
    BrokerAccount.objects.filter(pk=account.pk).update(**fields)
    account.refresh_from_db()
    return account


def broker_account_record_sync(*, account: BrokerAccount, at: datetime, error: str = "", reconciled_until: datetime | None = None) -> None:
    """Record a sync with the broker (reconciliation): its time, or its error.
    The checkpoint only moves forward (two runs may finish out of order)."""
    if error:
        BrokerAccount.objects.filter(pk=account.pk).update(last_error=error[:2000], last_error_at=at)
        return
    BrokerAccount.objects.filter(pk=account.pk).update(last_synced_at=at)
    if reconciled_until is not None:
        BrokerAccount.objects.filter(pk=account.pk).filter(
            Q(reconciled_until__isnull=True) | Q(reconciled_until__lt=reconciled_until)
        ).update(reconciled_until=reconciled_until)


def broker_account_record_sync_run(*, account: BrokerAccount, at: datetime, duration: float, error: str = "") -> None:
    """Record one account sync's outcome: its length, and its time (success)
    or its error (masked: no secret of the account is ever stored in it)."""
    fields: dict[str, Any] = {"last_sync_duration": round(duration, 3)}
    if error:
        masked = broker_account_mask(account=account, text=error)[:2000]
        fields.update(last_sync_error=masked, last_error=masked, last_error_at=at)
    else:
        fields.update(last_sync_error="", last_synced_at=at)
    BrokerAccount.objects.filter(pk=account.pk).update(**fields)


def broker_account_record_initial_sync(*, account: BrokerAccount, at: datetime) -> None:
    """The first sync has booked what the broker held: later syncs compare only."""
    BrokerAccount.objects.filter(pk=account.pk, initial_synced_at__isnull=True).update(initial_synced_at=at)


def broker_account_mask(*, account: BrokerAccount, text: str) -> str:
    """``text`` without the account's secrets: the generic patterns, and any
    stored credential value that appears in it verbatim (a broker echoing an
    app key in its error)."""
    text = mask_text(text)
    try:
        secrets = decrypt_json(account.credentials_encrypted) if account.credentials_encrypted else {}
    except CredentialError:
        secrets = {}
    for value in secrets.values():
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, MASK)
    return text


def broker_account_credentials(*, account: BrokerAccount) -> dict[str, Any]:
    """Decrypted secrets, for adapters only. Never return these from an API."""
    return decrypt_json(account.credentials_encrypted)


def broker_account_credential_names(*, account: BrokerAccount) -> list[str]:
    """The names of the stored secrets (never their values), sorted. Raises
    ``CredentialError`` when no configured key decrypts them."""
    return sorted(broker_account_credentials(account=account))


def broker_account_get(*, account_id: int) -> BrokerAccount:
    """Any account by id, for staff tools (admin, management commands)."""
    account = BrokerAccount.objects.select_related("owner").filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such account.")
    return account


def broker_account_get_for_user(*, user: User, account_id: int) -> BrokerAccount:
    account = BrokerAccount.objects.filter(owner=user, pk=account_id).first()
    if account is None:
        raise NotFound("No such account.")
    return account


@dataclass
class RotationResult:
    rotated: int = 0
    failed_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failed_ids)


def broker_keys_rotate() -> RotationResult:
    """Re-encrypt every stored credential under the newest key.

    A row no configured key decrypts is left untouched (never lost) and its
    id reported in ``failed_ids``."""
    result = RotationResult()
    for pk in BrokerAccount.objects.exclude(credentials_encrypted="").values_list("pk", flat=True).iterator():
        with transaction.atomic():
            account = BrokerAccount.objects.select_for_update().get(pk=pk)
            try:
                account.credentials_encrypted = rotate_value(account.credentials_encrypted)
            except CredentialError:
                logger.warning("credentials of broker account %s cannot be decrypted by any configured key", pk)
                result.failed_ids.append(pk)
                continue
            account.save(update_fields=["credentials_encrypted"])
            result.rotated += 1
    return result
