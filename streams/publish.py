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
from collections.abc import Iterator
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer, InMemoryChannelLayer, channel_layers, get_channel_layer
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver

from core.loops import run_in_event_loop
from streams.frames import StreamEvent, StreamEvents, encode

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


async def _send(layer: BaseChannelLayer, channel: str, event: StreamEvent | StreamEvents) -> bool:
    try:
        await layer.group_send(group_for(channel), event)
    except Exception:
        logger.exception("publish to %s failed", channel)
        return False
    return True


def build_message(channel: str, events: list[StreamEvent]) -> StreamEvent | StreamEvents:
    """One channel-layer message for a channel's updates: the event itself,
    or several in one ``stream.updates`` (in order), which the hubs hand to
    their consumers one by one."""
    if len(events) == 1:
        return events[0]
    return {"type": "stream.updates", "channel": channel, "events": events}


async def _send_many(layer: BaseChannelLayer, messages: list[tuple[str, StreamEvent | StreamEvents]]) -> bool:
    sent = True
    for channel, message in messages:
        sent = await _send(layer, channel, message) and sent
    return sent


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
        return self.send_many([(channel, event)])

    def send_many(self, messages: list[tuple[str, StreamEvent | StreamEvents]]) -> bool:
        """Send the messages in order, in one hop to the publisher's loop."""
        future = asyncio.run_coroutine_threadsafe(_send_many(self.layer, messages), self.loop)
        try:
            return future.result(timeout=PUBLISH_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.warning("publish to %s dropped: not done within %gs", ", ".join(c for c, _ in messages), PUBLISH_TIMEOUT)
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
    return publish_many([(channel, seq, data)], latest=latest)


# The updates held back by the ``publishing_batched`` block open in this thread.
_batch = threading.local()


def publish_many(updates: list[tuple[str, int, Any]], *, latest: bool = False) -> bool:
    """Publish updates (channel, seq, data) from sync code: one channel-layer
    message per channel (its updates in the given order), all in one hop to
    the process's publisher. Inside ``publishing_batched`` they are held
    until the block ends. False when something was not published."""
    if not updates:
        return True
    held: list[tuple[str, int, Any, bool]] | None = getattr(_batch, "updates", None)
    if held is not None:
        held.extend((channel, seq, data, latest) for channel, seq, data in updates)
        return True
    return _publish_now([(channel, build_event(channel, seq, data, latest=latest)) for channel, seq, data in updates])


def _publish_now(events: list[tuple[str, StreamEvent]]) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    by_channel: dict[str, list[StreamEvent]] = {}
    for channel, event in events:
        by_channel.setdefault(channel, []).append(event)
    messages = [(channel, build_message(channel, group)) for channel, group in by_channel.items()]
    if isinstance(layer, InMemoryChannelLayer):
        # On the server's loop; from a loop iteration the wait is bounded (the
        # loop stops when the server does).
        try:
            return run_in_event_loop(_send_many(layer, messages), timeout=PUBLISH_TIMEOUT)
        except TimeoutError as exc:
            logger.warning("publish to %s dropped: %s", ", ".join(by_channel), exc)
            return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("publish() would block the running event loop: await apublish() instead")
    return _process_publisher().send_many(messages)


@contextlib.contextmanager
def publishing_batched() -> Iterator[None]:
    """Hold this thread's sync publishes until the block ends, then send them
    as one message per channel (a batch of orders sent and booked in several
    transactions: one publish per channel, not one per order or per
    transaction). Each update keeps its sequence number, so subscribers see
    the same frames in the same order. Nested blocks join the outer one; an
    exception still publishes what was held (it was committed)."""
    if getattr(_batch, "updates", None) is not None:
        yield
        return
    _batch.updates = []
    try:
        yield
    finally:
        held: list[tuple[str, int, Any, bool]] = _batch.updates
        _batch.updates = None
        if held:
            _publish_now([(channel, build_event(channel, seq, data, latest=latest)) for channel, seq, data, latest in held])


def publish_on_commit(channel: str, seq: int, data: Any, *, latest: bool = False) -> None:
    """Publish once the surrounding transaction commits; never for a rollback."""
    transaction.on_commit(lambda: publish(channel, seq, data, latest=latest))
