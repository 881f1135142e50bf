"""The official ``kiteconnect`` client for one Kite account, and Kite's errors
as the Broker protocol's.

* The api_key and api_secret are the account's encrypted credentials; the
  access token is the one the login stored (``brokers.tokens``, kind ``kite``,
  name ``access_token``), valid until the next 06:00 in India. No token: the
  account is ``login_required`` and every call raises ``KiteLoginRequired``
  at once, without a request.
* A ``TokenException`` from any call forgets the token (the account turns
  ``login_required``) and raises ``KiteLoginRequired``; nothing retries.
* Requests are paced per api_key (``brokers.pacing``): orders, historical
  candles (3/s) and everything else in their own buckets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from django.utils import timezone
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from brokers.base import BrokerRateLimited, BrokerRejected, BrokerTimeout, BrokerUnavailable
from brokers.crypto import CredentialError, decrypt_json
from brokers.pacing import pace
from brokers.tokens import TokenKey, credential_id, token_invalidate, token_peek

if TYPE_CHECKING:
    from brokers.models import BrokerAccount

T = TypeVar("T")

IST = ZoneInfo("Asia/Kolkata")
KIND = "kite"
ACCESS_TOKEN = "access_token"  # noqa: S105 - the token's name, not a secret
TOKEN_EXPIRES_AT = dtime(6, 0)  # Kite's access tokens end at 06:00 the next morning (India)
PACE_WAIT = 2.0  # seconds a call may wait for its pacing slot before BrokerRateLimited

# Pacing buckets and the setting holding each one's rate.
BUCKET_RATES = {"orders": "KITE_RATE_ORDERS", "historical": "KITE_RATE_HISTORICAL", "other": "KITE_RATE_OTHER"}


class KiteLoginRequired(BrokerRejected):
    """The account has no valid Kite session: someone must log in to Kite.
    Permanent for an order (refused at once, never left pending)."""

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message or "Log in to Kite: the account has no valid Kite session.", **kwargs)


@dataclass(frozen=True)
class KiteConfig:
    account_id: int
    environment: str
    api_key: str
    api_secret: str = field(repr=False)
    user_id: str = ""


def kite_config_for(account: BrokerAccount) -> KiteConfig:
    """The account's Kite credentials; ``BrokerUnavailable`` when unset or unreadable."""
    try:
        creds = decrypt_json(account.credentials_encrypted) if account.credentials_encrypted else {}
    except CredentialError as exc:
        raise BrokerUnavailable("The account's Kite credentials cannot be read.") from exc
    api_key, api_secret = str(creds.get("api_key") or ""), str(creds.get("api_secret") or "")
    if not api_key or not api_secret:
        raise BrokerUnavailable("The account's Kite api_key and api_secret are not set.")
    return KiteConfig(
        account_id=account.pk,
        environment=account.environment,
        api_key=api_key,
        api_secret=api_secret,
        user_id=(account.broker_user_id or "").strip(),
    )


def kite_token_key(config: KiteConfig) -> TokenKey:
    return TokenKey(kind=KIND, environment=config.environment, credential=config.api_key, name=ACCESS_TOKEN)


def kite_token_expiry(now: datetime | None = None) -> datetime:
    """The next 06:00 in India after ``now``: when a token issued now ends."""
    local = (now or timezone.now()).astimezone(IST)
    end = local.replace(hour=TOKEN_EXPIRES_AT.hour, minute=TOKEN_EXPIRES_AT.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end


def kite_checksum(*parts: str) -> str:
    """Kite's checksums: sha256 hex of the parts joined (session: api_key +
    request_token + api_secret; postback: order_id + order_timestamp + api_secret)."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def kite_connect(config: KiteConfig, access_token: str | None = None) -> KiteConnect:
    """The official client on the configured root (``KITE_API_URL``)."""
    return KiteConnect(config.api_key, access_token=access_token, root=settings.KITE_API_URL, timeout=settings.BROKER_HTTP_TIMEOUT)


def kite_login_url(api_key: str, redirect_params: str = "") -> str:
    """Kite's login page for ``api_key`` (``KITE_LOGIN_URL``), ``redirect_params``
    coming back to the app's redirect URL with the request token."""
    from urllib.parse import urlencode

    query = {"v": "3", "api_key": api_key}
    if redirect_params:
        query["redirect_params"] = redirect_params
    return f"{settings.KITE_LOGIN_URL}?{urlencode(query)}"


class KiteClient:
    """Calls of one account through ``kiteconnect``, paced, its errors translated."""

    def __init__(self, config: KiteConfig) -> None:
        self.config = config
        self.token_key = kite_token_key(config)

    def access_token(self) -> str:
        token = token_peek(self.token_key)
        if not token:
            raise KiteLoginRequired()
        return token

    def logged_in(self) -> bool:
        return bool(token_peek(self.token_key))

    def call(self, fn: Callable[[KiteConnect], T], *, bucket: str = "other", sends: bool = False) -> T:
        """``fn(kite)`` with the account's session. ``sends``: the call changes
        something at Kite (an order), so an answer lost after the request left
        is ``BrokerTimeout`` (maybe done), never "not sent"."""
        token = self.access_token()
        self._pace(bucket)
        kite = kite_connect(self.config, token)
        try:
            return fn(kite)
        except kite_errors.TokenException as exc:
            # The session is gone (expired, logged out elsewhere): forget it so
            # the account shows login_required; nothing is retried.
            token_invalidate(self.token_key, token)
            raise KiteLoginRequired(f"Kite ended the session ({_text(exc)}); log in to Kite again.") from None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError) as exc:
            if isinstance(exc, requests.exceptions.ConnectTimeout) or not sends or _never_sent(exc):
                raise BrokerUnavailable(f"Kite could not be reached: {type(exc).__name__}.") from None
            raise BrokerTimeout(f"Kite's answer was lost: {type(exc).__name__}.") from None
        except requests.exceptions.Timeout as exc:
            if sends:
                raise BrokerTimeout("Kite did not answer in time; the request may have been executed.") from None
            raise BrokerUnavailable(f"Kite did not answer in time: {type(exc).__name__}.") from None
        except requests.exceptions.RequestException as exc:
            raise BrokerUnavailable(f"Kite could not be reached: {type(exc).__name__}.") from None
        except kite_errors.KiteException as exc:
            raise _translate(exc, sends=sends) from None

    def _pace(self, bucket: str) -> None:
        rate = float(getattr(settings, BUCKET_RATES.get(bucket, BUCKET_RATES["other"])))
        pace(f"kite:{credential_id(self.config.api_key)[:16]}:{bucket}", rate=rate, burst=1, max_wait=PACE_WAIT)

    def generate_session(self, request_token: str) -> dict[str, Any]:
        """Exchange a login's request token for a session (``POST /session/token``
        with the checksum); Kite's refusal is ``BrokerRejected``."""
        self._pace("other")
        kite = kite_connect(self.config)
        try:
            data = kite.generate_session(request_token, api_secret=self.config.api_secret)
        except kite_errors.KiteException as exc:
            raise BrokerRejected(f"Kite refused the login: {_text(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise BrokerUnavailable(f"Kite could not be reached: {type(exc).__name__}.") from None
        if not isinstance(data, dict) or not data.get("access_token"):
            raise BrokerUnavailable("Kite answered the login without an access token.")
        return data


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """A refused connection (nothing listening) surely never carried the request."""
    text = repr(exc)
    return "Connection refused" in text or "NewConnectionError" in text or "Name or service not known" in text


def _text(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc)[:300]


def _translate(exc: kite_errors.KiteException, *, sends: bool) -> Exception:
    code = int(getattr(exc, "code", 0) or 0)
    message = _text(exc)
    if code == 429:
        return BrokerRateLimited(f"Kite: too many requests ({message}).", retry_after=1.0)
    if isinstance(exc, kite_errors.NetworkException):
        # Kite could not reach its order system: an order may or may not have gone.
        return BrokerTimeout(f"Kite: {message}") if sends else BrokerUnavailable(f"Kite: {message}")
    if isinstance(exc, kite_errors.DataException | kite_errors.GeneralException) and code >= 500:
        return BrokerTimeout(f"Kite: {message}") if sends else BrokerUnavailable(f"Kite: {message}")
    return BrokerRejected(f"Kite: {message}", raw={"error_type": type(exc).__name__})
