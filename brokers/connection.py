"""Connection health of broker accounts: broker tokens (state, refresh ahead of
expiry, refresh on demand), the live feed and the last sync — everything the
status endpoint and the admin show, never a secret.

Tokens and feeds belong to the adapters: this module reaches them only through
the registry's hooks (``register_token_keys``, ``register_token_refresher``)
and ``brokers.tokens`` / ``brokers.health``, so it serves every broker kind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import cache

from brokers.base import BrokerError
from brokers.models import AccountStatus, BrokerAccount
from brokers.registry import token_keys_for, token_refresher
from brokers.services import broker_account_mask, broker_account_status
from core.exceptions import Conflict

if TYPE_CHECKING:
    from brokers.tokens import TokenKey

logger = logging.getLogger(__name__)

# Accounts whose tokens are kept fresh: those a broker may be asked about.
REFRESHED_STATUSES = (AccountStatus.ACTIVE, AccountStatus.ERROR)


def _token_keys_shown(account: BrokerAccount) -> list[TokenKey]:
    try:
        return token_keys_for(account)
    except Exception as exc:  # an account its adapter cannot configure (no CANO...): no tokens to show
        logger.info("token keys of account %s unknown: %s", account.pk, type(exc).__name__)
        return []


@contextlib.contextmanager
def broker_accounts_tokens_preloaded(accounts: Iterable[BrokerAccount]) -> Iterator[None]:
    """Within the block, the token states and login checks of ``accounts``
    read their tokens from one query (a page listing many KIS and Kite
    accounts), not one per token."""
    from brokers.tokens import token_reads_preloaded

    with token_reads_preloaded(key for account in accounts for key in _token_keys_shown(account)):
        yield


def broker_account_token_states(*, account: BrokerAccount) -> list[dict[str, Any]]:
    """The state of each broker token of the account's credential: present,
    valid, issued, expiring, last attempt and error — never the value."""
    from brokers.tokens import token_state

    states = []
    for key in _token_keys_shown(account):
        try:
            state = token_state(key)
        except Exception:  # a storage hiccup must not break the status page
            logger.exception("token state %s of account %s not read", key.name, account.pk)
            continue
        states.append(
            {
                "name": key.name,
                "present": state.present,
                "valid": state.valid,
                "issued_at": state.issued_at,
                "expires_at": state.expires_at,
                "last_attempt_at": state.last_attempt_at,
                "last_error": broker_account_mask(account=account, text=state.last_error or ""),
            }
        )
    return states


def broker_account_feed_state(*, account: BrokerAccount) -> dict[str, Any] | None:
    """The live feed of the account as its feed last reported it (None: no
    feed is running for it)."""
    from brokers.health import feed_state_get

    try:
        state = feed_state_get(account.pk)
    except Exception:  # the cache is down: say nothing rather than fail
        logger.warning("feed state of account %s not read", account.pk, exc_info=True)
        return None
    if not state:
        return None
    last = state.get("last_message_at")
    if isinstance(last, str):
        try:
            last = datetime.fromisoformat(last)
        except ValueError:
            last = None
    return {
        "connected": bool(state.get("connected")),
        "last_message_at": last if isinstance(last, datetime) else None,
        "subscriptions": [str(s) for s in (state.get("subscriptions") or [])][:1000],
        "notices": str(state.get("notices") or ""),
        "error": broker_account_mask(account=account, text=str(state.get("error") or "")),
    }


_NOTES_KEY = "account-sync:notes:{}"
NOTES_TTL = 7 * 86400  # seconds a sync's notes stay shown when no sync replaces them


def broker_account_sync_notes_set(*, account: BrokerAccount, notes: list[str]) -> None:
    """What the last sync saw that staff should know (drift between the broker
    and the terminal, holdings that moved while it ran), masked, bounded."""
    masked = [broker_account_mask(account=account, text=note)[:500] for note in notes[:50]]
    try:
        cache.set(_NOTES_KEY.format(account.pk), masked, NOTES_TTL)
    except Exception:
        logger.warning("sync notes of account %s not stored", account.pk, exc_info=True)


def broker_account_sync_notes(*, account: BrokerAccount) -> list[str]:
    try:
        return list(cache.get(_NOTES_KEY.format(account.pk)) or [])
    except Exception:
        return []


def broker_account_connection(*, account: BrokerAccount) -> dict[str, Any]:
    """The account's connection health (the status endpoint's object)."""
    account.refresh_from_db()
    return {
        "id": account.pk,
        "kind": account.kind,
        "environment": account.environment,
        "status": broker_account_status(account),
        "trading_enabled": account.trading_enabled,
        "tokens": broker_account_token_states(account=account),
        "feed": broker_account_feed_state(account=account),
        "sync": {
            "last_synced_at": account.last_synced_at,
            "initial_synced_at": account.initial_synced_at,
            "duration": account.last_sync_duration,
            "error": account.last_sync_error,
            "notes": broker_account_sync_notes(account=account),
        },
        "last_error": account.last_error,
        "last_error_at": account.last_error_at,
    }


def broker_account_token_refresh(*, account: BrokerAccount, force: bool = True) -> list[str]:
    """Refresh the account's broker tokens now ("refresh token now"); the
    names refreshed. Raises the broker's errors (``TokenIssueTooSoon``, a
    ``BrokerRateLimited``, inside the broker's issue-rate rule) and
    ``Conflict`` when its kind has no tokens."""
    refresher = token_refresher(account.kind)
    if refresher is None:
        raise Conflict(f"{account.get_kind_display()} accounts have no broker tokens to refresh.", code="no_broker_tokens")
    return list(refresher(account, force=force))


@dataclass
class TokenRefreshSummary:
    refreshed: dict[int, list[str]] = field(default_factory=dict)  # account id -> token names
    failed: dict[int, str] = field(default_factory=dict)  # account id -> masked error

    def as_dict(self) -> dict[str, Any]:
        return {"refreshed": {str(k): v for k, v in self.refreshed.items()}, "failed": {str(k): v for k, v in self.failed.items()}}


def broker_tokens_refresh() -> TokenRefreshSummary:
    """Refresh, ahead of expiry, the tokens of every active account whose kind
    has a refresher. Accounts sharing a credential share its tokens, so the
    refresher of the second finds them fresh. One account's failure does not
    stop the others."""
    summary = TokenRefreshSummary()
    for account in BrokerAccount.objects.filter(status__in=REFRESHED_STATUSES).order_by("id"):
        if token_refresher(account.kind) is None or account.missing_credentials:
            continue
        try:
            names = broker_account_token_refresh(account=account, force=False)
        except BrokerError as exc:
            summary.failed[account.pk] = broker_account_mask(account=account, text=f"{type(exc).__name__}: {exc.message}")
            logger.warning("token refresh of account %s failed: %s", account.pk, summary.failed[account.pk])
            continue
        except Exception as exc:
            summary.failed[account.pk] = broker_account_mask(account=account, text=f"{type(exc).__name__}: {exc}")
            logger.exception("token refresh of account %s failed", account.pk)
            continue
        if names:
            summary.refreshed[account.pk] = names
    return summary
