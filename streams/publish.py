"""Publishing updates to channel subscribers through the channel layer.

Each event is encoded once, here, and forwarded as text by every consumer.
Account channels publish after commit (``publish_on_commit``) with the
sequence number taken in the transaction that changed the state.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from core.loops import run_in_event_loop
from streams.frames import StreamEvent, encode

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0  # seconds a loop thread waits for its publish


def group_for(channel: str) -> str:
    """Group names allow only [A-Za-z0-9._-] under 100 characters."""
    return "ch." + hashlib.sha1(channel.encode(), usedforsecurity=False).hexdigest()


def build_event(channel: str, seq: int, data: Any, *, latest: bool = False) -> StreamEvent:
    frame = encode({"type": "update", "channel": channel, "seq": seq, "data": data})
    return {"type": "stream.update", "channel": channel, "seq": seq, "latest": latest, "frame": frame}


async def apublish(channel: str, seq: int, data: Any, *, latest: bool = False) -> bool:
    """Send one update to the channel's group. False when the layer failed."""
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        await layer.group_send(group_for(channel), build_event(channel, seq, data, latest=latest))
    except Exception:
        logger.exception("publish to %s failed", channel)
        return False
    return True


def publish(channel: str, seq: int, data: Any, *, latest: bool = False) -> bool:
    """From sync code. In a loop iteration the wait is bounded: a stopped event
    loop (the server is shutting down) or a layer that stopped answering costs
    this update (clients heal a gap with a fresh snapshot), never a thread."""
    try:
        return run_in_event_loop(apublish(channel, seq, data, latest=latest), timeout=PUBLISH_TIMEOUT)
    except TimeoutError as exc:
        logger.warning("publish to %s dropped: %s", channel, exc)
        return False


def publish_on_commit(channel: str, seq: int, data: Any, *, latest: bool = False) -> None:
    """Publish once the surrounding transaction commits; never for a rollback."""
    transaction.on_commit(lambda: publish(channel, seq, data, latest=latest))
