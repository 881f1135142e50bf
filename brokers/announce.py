"""Telling a user's open connections that a broker account became theirs.

The all-accounts order stream (``WS /api/v1/ws/orders``) joins its user's
group; creating an account sends one message there after commit, and every
process serving such a connection subscribes it to the new account's
channels (the connection checks the owner again: the message only says
which account to look at). A lost message costs only that stream: the
account is there on the next connection.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# The consumer handles it in ``account_added``.
ACCOUNT_ADDED = "account.added"


def owner_group(user_id: int) -> str:
    """The channel-layer group of ``user_id``'s all-accounts streams."""
    return f"accounts.owner.{user_id}"


def account_added_notify(*, owner_id: int, account_id: int) -> None:
    """Tell the owner's open all-accounts streams (call after commit)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(owner_group(owner_id), {"type": ACCOUNT_ADDED, "account_id": account_id})
    except Exception:  # committed already; a new connection sees the account
        logger.warning("could not tell open streams of user %s about account %s", owner_id, account_id, exc_info=True)
