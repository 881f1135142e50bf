"""Telling open WebSocket connections that their credentials are gone.

A connection joins the group of its API key and of its user; revoking a key or
deactivating a user sends one message to those groups after commit, and every
process serving such a connection closes it (4001) at once. Commands are also
re-authorized on arrival, so a lost message never lets one through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# The consumer handles it in ``credentials_revoked``.
CREDENTIALS_REVOKED = "credentials.revoked"


def key_group(api_key_id: int) -> str:
    return f"credentials.key.{api_key_id}"


def user_group(user_id: int) -> str:
    return f"credentials.user.{user_id}"


def credentials_revoked_notify(*, api_key_ids: Iterable[int] = (), user_id: int | None = None) -> None:
    groups = [key_group(pk) for pk in api_key_ids] + ([user_group(user_id)] if user_id is not None else [])
    layer = get_channel_layer()
    if layer is None or not groups:
        return
    try:
        async_to_sync(_send)(layer, groups)
    except Exception:  # committed already; the per-command check still holds the line
        logger.warning("could not tell open connections about revoked credentials", exc_info=True)


async def _send(layer, groups: list[str]) -> None:  # type: ignore[no-untyped-def]
    for group in groups:
        await layer.group_send(group, {"type": CREDENTIALS_REVOKED})
