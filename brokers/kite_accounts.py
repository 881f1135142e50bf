"""Kite accounts as their owners manage them: logging in to Kite.

Kite allows one redirect URL per app, so the account travels in the login's
``redirect_params`` as a signed, expiring state (``django.core.signing``,
``TimestampSigner``, at most ``KITE_LOGIN_STATE_MAX_AGE`` seconds old) naming
the account and its owner. The callback checks it before anything else,
exchanges the request token for a session (the checksum
``sha256(api_key + request_token + api_secret)``) and stores the access token
encrypted until the next 06:00 in India (``brokers.tokens``). A refused
state or login stores nothing.

The adapter (``brokers.kite``) speaks to Kite; this module picks the account,
checks who may ask, and turns the broker's errors into the one error shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.urls import reverse

from accounts.models import User
from brokers.base import BrokerError, BrokerRejected
from brokers.errors import domain_error_for
from brokers.kite.client import KiteClient, kite_config_for, kite_login_url, kite_token_expiry, kite_token_key
from brokers.models import BrokerAccount, BrokerKind
from brokers.services import broker_account_get_for_user, broker_account_mask, broker_account_status
from brokers.tokens import IssuedToken, token_refresh
from core.exceptions import Conflict, DomainError, InvalidInput, NotFound

logger = logging.getLogger(__name__)

STATE_SALT = "brokers.kite.login"
REQUEST_TOKEN_MAX = 64


class KiteLoginRefused(DomainError):
    status_code = 400
    code = "kite_login_refused"
    default_message = "The Kite login could not be completed."


def kite_account_for_user(*, user: User, account_id: int) -> BrokerAccount:
    """The caller's Kite account ``account_id`` (another user's answers 404)."""
    account = broker_account_get_for_user(user=user, account_id=account_id)
    if account.kind != BrokerKind.KITE:
        raise NotFound(f"Account {account.pk} is a {account.kind} account, not a Kite account.")
    return account


def kite_login_path(account: BrokerAccount) -> str:
    """The terminal's "log in to Kite" link of an account (URL name ``kite_login``)."""
    return reverse("kite_login", kwargs={"pk": account.pk})


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=STATE_SALT)


def kite_login_state(account: BrokerAccount, *, next_path: str = "") -> str:
    """A signed state naming the account and its owner (and where to go after)."""
    return _signer().sign_object({"a": account.pk, "o": account.owner_id, "n": next_path}, compress=True)


def kite_login_redirect(*, account: BrokerAccount, next_path: str = "") -> str:
    """Kite's login page for the account's api_key, the state in ``redirect_params``."""
    if account.missing_credentials:
        raise Conflict(
            f"The account's broker is not configured (credentials missing: {', '.join(account.missing_credentials)}); set them first.",
            code="broker_not_configured",
            fields={"credentials": [f"{name} is not set." for name in account.missing_credentials]},
        )
    if next_path and (not next_path.startswith("/") or next_path.startswith("//") or len(next_path) > 200):
        raise InvalidInput("next must be a path of this site.", fields={"next": ["A path starting with one /."]})
    config = kite_config_for(account)
    return kite_login_url(config.api_key, urlencode({"state": kite_login_state(account, next_path=next_path)}))


@dataclass(frozen=True)
class KiteLogin:
    account: BrokerAccount
    kite_user_id: str
    expires_at: datetime
    next_path: str


def _state(state: str) -> dict[str, Any]:
    if not state or len(state) > 1000:
        raise KiteLoginRefused(
            'The login state is missing: start again from the terminal\'s "log in to Kite" link.', fields={"state": ["Required."]}
        )
    try:
        value = _signer().unsign_object(state, max_age=settings.KITE_LOGIN_STATE_MAX_AGE)
    except signing.SignatureExpired:
        raise KiteLoginRefused(
            'The login took too long: start again from the terminal\'s "log in to Kite" link.',
            code="kite_login_expired",
            fields={"state": ["Expired."]},
        ) from None
    except signing.BadSignature:
        raise KiteLoginRefused("The login state is not one this terminal made.", fields={"state": ["Invalid."]}) from None
    if not isinstance(value, dict) or not isinstance(value.get("a"), int) or not isinstance(value.get("o"), int):
        raise KiteLoginRefused("The login state is not one this terminal made.", fields={"state": ["Invalid."]})
    return value


def kite_login_complete(*, state: str, request_token: str, status: str = "success", user: User | None = None) -> KiteLogin:
    """The callback: check the state, exchange the request token, store the session.

    ``user``: the caller when signed in; a different user than the one who
    started the login is refused. Nothing is stored unless all checks pass."""
    value = _state(state)
    account = BrokerAccount.objects.filter(pk=value["a"], owner_id=value["o"], kind=BrokerKind.KITE).first()
    if account is None:
        raise KiteLoginRefused("The account of this login is gone.", fields={"state": ["No such Kite account."]})
    if user is not None and getattr(user, "is_authenticated", False) and user.pk != account.owner_id:
        raise KiteLoginRefused("This login was started by another user.", fields={"state": ["Not yours."]})
    if status != "success":
        raise KiteLoginRefused(f"Kite answered the login with status {status[:40]!r}.", fields={"status": ["Not success."]})
    if not request_token or len(request_token) > REQUEST_TOKEN_MAX or not request_token.isalnum():
        raise KiteLoginRefused("The request_token is missing or malformed.", fields={"request_token": ["Required: letters and digits."]})
    config = kite_config_for(account)
    client = KiteClient(config)
    expected_user = (account.broker_user_id or "").strip()
    try:
        session = client.generate_session(request_token)
    except BrokerRejected as exc:  # a bad checksum, a used or expired request token
        raise KiteLoginRefused(
            broker_account_mask(account=account, text=exc.message or "Kite refused the login."),
            fields={"request_token": ["Refused by Kite."]},
        ) from None
    except BrokerError as exc:
        raise _masked(account, exc) from None
    kite_user = str(session.get("user_id") or "")
    if expected_user and kite_user and kite_user != expected_user:
        # Never store a session of another Kite user under this account.
        raise KiteLoginRefused(
            f"Kite logged in user {kite_user}, but this account is Kite user {expected_user}.",
            fields={"request_token": ["Another Kite user."]},
        )
    expires_at = kite_token_expiry()
    token_refresh(
        kite_token_key(config),
        lambda: IssuedToken(value=str(session["access_token"]), expires_at=expires_at),
        min_interval=0,
    )
    logger.info("Kite account %s logged in (Kite user %s), session until %s", account.pk, kite_user or "?", expires_at.isoformat())
    return KiteLogin(account=account, kite_user_id=kite_user, expires_at=expires_at, next_path=str(value.get("n") or ""))


def _masked(account: BrokerAccount, exc: BrokerError) -> DomainError:
    error = domain_error_for(exc)
    error.message = broker_account_mask(account=account, text=error.message)
    return error


def kite_login_state_of(account: BrokerAccount) -> dict[str, Any]:
    """What the terminal shows of a Kite account's login: status, link."""
    return {"account_id": account.pk, "status": broker_account_status(account), "login_url": kite_login_path(account)}
