"""Live-feed state per broker account, shared through the cache.

The process holding an account's broker WebSocket (the ``marketdata``
process in production, the in-process loops on the embedded default) writes
the state every few seconds; ``GET /accounts/{id}/status`` and the admin read
it from any process. The entry expires when the feed stops refreshing it, so
a dead process never leaves an account shown as connected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.cache import cache

FEED_STATE_TTL = 30.0  # seconds an entry outlives its last refresh
_PREFIX = "brokers:feed:"


def _key(account_id: int) -> str:
    return f"{_PREFIX}{int(account_id)}"


def feed_state_set(
    account_id: int,
    *,
    connected: bool,
    subscriptions: list[str] | None = None,
    last_message_at: datetime | None = None,
    error: str = "",
    notices: str = "",
) -> None:
    """Record the account's feed state (``error`` must already be free of
    secrets: feeds pass masked messages). Expires after ``FEED_STATE_TTL``."""
    cache.set(
        _key(account_id),
        {
            "connected": bool(connected),
            "subscriptions": sorted(subscriptions or []),
            "last_message_at": last_message_at.isoformat() if last_message_at is not None else None,
            "error": error[:500],
            "notices": notices,
        },
        timeout=FEED_STATE_TTL,
    )


def feed_state_get(account_id: int) -> dict[str, Any] | None:
    """The account's feed state: ``connected``, ``subscriptions`` (sorted
    ``TR_ID:key`` names), ``last_message_at`` (ISO 8601 or None), ``error``,
    ``notices`` (how fills arrive); None when no feed runs for it."""
    state = cache.get(_key(account_id))
    return dict(state) if isinstance(state, dict) else None


def feed_state_clear(account_id: int) -> None:
    """A feed that stops on purpose (account disabled) says so at once."""
    cache.delete(_key(account_id))
