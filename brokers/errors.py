"""Broker failures in the project's one error shape: views call
``domain_error_for(exc)`` on a ``BrokerError`` and raise what it returns.

| broker error | status | code |
|---|---|---|
| ``BrokerRateLimited`` (incl. ``TokenIssueTooSoon``), ``LockNotAcquired`` | 503 + Retry-After | ``broker_busy`` |
| ``BrokerUnavailable`` | 503 | ``broker_unavailable`` |
| ``BrokerTimeout`` (the request may have been executed) | 504 | ``broker_unavailable`` |
| ``BrokerRejected`` | 422 | ``broker_rejected`` |
| ``BrokerAuthExpired`` (credentials refused) | 409 | ``broker_auth`` |

Messages pass through ``mask_text``: a broker's answer may echo a key.
"""

from __future__ import annotations

import math

from brokers.base import BrokerAuthExpired, BrokerError, BrokerRateLimited, BrokerRejected, BrokerTimeout
from brokers.locks import LockNotAcquired
from core.exceptions import DomainError
from core.masking import mask_text

MESSAGE_MAX = 300
LOCK_RETRY_AFTER = 1  # seconds: the lock holder is issuing a token or syncing


class BrokerBusy(DomainError):
    status_code = 503
    code = "broker_busy"
    default_message = "The broker is busy; retry after the time in Retry-After."
    permanent = False


class BrokerDown(DomainError):
    status_code = 503
    code = "broker_unavailable"
    default_message = "The broker could not be reached."
    permanent = False


class BrokerRefused(DomainError):
    status_code = 422
    code = "broker_rejected"
    default_message = "The broker rejected the request."


class BrokerAuthFailed(DomainError):
    status_code = 409
    code = "broker_auth"
    default_message = "The broker refused the account's credentials or token."
    permanent = False


def _message(exc: BrokerError, default: str) -> str:
    text = mask_text(exc.message or str(exc) or "").strip()
    if not text:
        return default
    return f"{default} {text}"[:MESSAGE_MAX] if text != default else default


def domain_error_for(exc: BrokerError) -> DomainError:
    if isinstance(exc, BrokerRateLimited):
        retry_after = max(1, math.ceil(exc.retry_after))
        return BrokerBusy(_message(exc, BrokerBusy.default_message), retry_after=retry_after)
    if isinstance(exc, LockNotAcquired):
        return BrokerBusy(_message(exc, BrokerBusy.default_message), retry_after=LOCK_RETRY_AFTER)
    if isinstance(exc, BrokerTimeout):
        return BrokerDown(_message(exc, "The broker did not answer in time; the request may have been executed."), status_code=504)
    if isinstance(exc, BrokerRejected):
        return BrokerRefused(_message(exc, BrokerRefused.default_message))
    if isinstance(exc, BrokerAuthExpired):
        return BrokerAuthFailed(_message(exc, BrokerAuthFailed.default_message))
    return BrokerDown(_message(exc, BrokerDown.default_message))
