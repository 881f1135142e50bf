"""Publishing updates to channel subscribers through the channel layer.

Each event is encoded once, here, and forwarded as text by every consumer.
Account channels publish after commit (``publish_on_commit``) with the
sequence number taken in the transaction that changed the state.

Publishing from sync code (services after commit, Celery tasks, sync loops)
reuses one event loop per process: channels-redis keeps its Redis connections
per event loop, so running each publish in a fresh loop (``async_to_sync``
outside a server) would open a new loop and a new Redis connection every time.
The in-memory layer of the embedded default belongs to the server's own loop,
so publishes there still run on that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import threading
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer, InMemoryChannelLayer, channel_layers, get_channel_layer
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver

from core.loops import run_in_event_loop
from streams.frames import StreamEvent, encode

logger = logging.getLogger(__name__)

# A sync publish waits at most this long: the caller is a request, a task or a
# loop iteration, which must not hang on a stuck Redis or a stopped event loop;
# the update is dropped (clients heal a gap with a fresh snapshot).
PUBLISH_TIMEOUT = 5.0


def group_for(channel: str) -> str:
    """Group names allow only [A-Za-z0-9._-] under 100 characters."""
    return "ch." + hashlib.sha1(channel.encode(), usedforsecurity=False).hexdigest()


def build_event(channel: str, seq: int, data: Any, *, latest: bool = False) -> StreamEvent:
    frame = encode({"type": "update", "channel": channel, "seq": seq, "data": data})
    return {"type": "stream.update", "channel": channel, "seq": seq, "latest": latest, "frame": frame}


async def _send(layer: BaseChannelLayer, channel: str, event: StreamEvent) -> bool:
    try:
        await layer.group_send(group_for(channel), event)
    except Exception:
        logger.exception("publish to %s failed", channel)
        return False
    return True


async def apublish(channel: str, seq: int, data: Any, *, latest: bool = False) -> bool:
    """Send one update to the channel's group. False when the layer failed."""
    layer = get_channel_layer()
    if layer is None:
        return False
    return await _send(layer, channel, build_event(channel, seq, data, latest=latest))


class _Publisher:
    """This process's event loop for sync publishes, in a daemon thread, with
    its own instance of the default channel layer (same configuration, so
    the same groups): one Redis connection pool for the process's lifetime.

    Callers wait for their own publish, so at most one publish per calling
    thread is in flight: nothing queues up behind a slow Redis."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.layer: BaseChannelLayer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stream-publisher", daemon=True)
        self.thread.start()

    def usable(self) -> bool:
        # A forked child (a Celery prefork worker) inherits the object, not the thread.
        return self.pid == os.getpid() and self.thread.is_alive()

    def close(self) -> None:
        if not self.usable():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=PUBLISH_TIMEOUT)
        # channels-redis closes the loop's connections when the loop closes
        # (which cannot happen from a thread that runs another loop).
        with contextlib.suppress(RuntimeError):
            self.loop.close()

    def send(self, channel: str, event: StreamEvent) -> bool:
        future = asyncio.run_coroutine_threadsafe(_send(self.layer, channel, event), self.loop)
        try:
            return future.result(timeout=PUBLISH_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.warning("publish to %s dropped: not done within %gs", channel, PUBLISH_TIMEOUT)
            return False


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def _process_publisher() -> _Publisher:
    global _publisher
    with _publisher_lock:
        if _publisher is None or not _publisher.usable():
            _publisher = _Publisher()
        return _publisher


@receiver(setting_changed)
def _reset_publisher(*, setting: str, **kwargs: Any) -> None:
    """A new channel layer configuration (tests) gets a new publisher, as
    channels itself drops its layers then."""
    global _publisher
    if setting != "CHANNEL_LAYERS":
        return
    with _publisher_lock:
        if _publisher is not None:
            _publisher.close()
        _publisher = None


def publish(channel: str, seq: int, data: Any, *, latest: bool = False) -> bool:
    """``apublish`` for sync code (never call it on an event loop's thread).
    False when the update was not published."""
    layer = get_channel_layer()
    if layer is None:
        return False
    if isinstance(layer, InMemoryChannelLayer):
        # On the server's loop; from a loop iteration the wait is bounded (the
        # loop stops when the server does).
        try:
            return run_in_event_loop(apublish(channel, seq, data, latest=latest), timeout=PUBLISH_TIMEOUT)
        except TimeoutError as exc:
            logger.warning("publish to %s dropped: %s", channel, exc)
            return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("publish() would block the running event loop: await apublish() instead")
    return _process_publisher().send(channel, build_event(channel, seq, data, latest=latest))


def publish_on_commit(channel: str, seq: int, data: Any, *, latest: bool = False) -> None:
    """Publish once the surrounding transaction commits; never for a rollback."""
    transaction.on_commit(lambda: publish(channel, seq, data, latest=latest))
