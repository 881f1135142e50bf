"""Process-local fan-out: one channel-layer subscription per channel per process.

Consumers register with the hub of their event loop for each channel they
subscribe to. The hub joins the channel's group once (when the first local
consumer comes, leaving it when the last goes) on a channel-layer channel of
its own, and hands every ``stream.update`` it receives — one pre-encoded frame
(or each of a ``stream.updates``, a batch's updates of one channel) — to each local consumer with a plain (non-async) call: the consumer applies
its per-client ordering (``streams.delivery``) and queues the frame for its
socket. One receive per publish per process, whatever the number of clients;
no consumer's socket can hold up the others (each has its own bounded queue).

When the layer (Redis) fails, the hub tells its consumers (they send an
``error`` frame), retries with back-off, re-joins every group (a restarted
Redis has forgotten them), rewrites this process's subscriber counts and tells
its consumers to send fresh snapshots, since updates published meanwhile are
lost.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from channels.layers import BaseChannelLayer

from streams.frames import StreamEvent
from streams.publish import group_for
from streams.subscribers import subscribers_refresh

logger = logging.getLogger(__name__)


class Member(Protocol):
    def hub_update(self, event: StreamEvent) -> None:
        """One update of a channel the member joined (never blocks)."""

    def hub_down(self) -> None:
        """The layer failed: updates are interrupted."""

    def hub_back(self) -> None:
        """The layer is back: updates published meanwhile are lost."""


class Hub:
    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel_name: str | None = None
        # channel -> its local members, in join order (a dict as an ordered set)
        self.members: dict[str, dict[Member, None]] = {}
        self.joined: set[str] = set()  # channels whose group this hub is in
        self.lock = asyncio.Lock()  # group_add / group_discard, one at a time
        self.task: asyncio.Task | None = None
        self.down = False
        self.received = 0  # stream updates received from the layer

    async def join(self, channel: str, member: Member) -> None:
        """Deliver ``channel``'s updates to ``member`` from now on. Raises when
        the layer cannot be reached (the member is not registered then)."""
        self.members.setdefault(channel, {})[member] = None
        if self.channel_name is None:
            self.channel_name = await self.layer.new_channel()
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._receive_forever())
        if channel in self.joined:
            return
        async with self.lock:
            # Re-checked under the lock: a leave may have discarded the group meanwhile.
            if channel in self.joined or not self.members.get(channel):
                return
            try:
                await self.layer.group_add(group_for(channel), self.channel_name)
            except Exception:
                self._forget(channel, member)
                raise
            self.joined.add(channel)

    async def leave(self, channel: str, member: Member) -> None:
        self._forget(channel, member)
        if self.members.get(channel):
            return
        async with self.lock:
            if self.members.get(channel) or channel not in self.joined:
                return
            # Out of ``joined`` before the await: a join meanwhile adds the group again.
            self.joined.discard(channel)
            try:
                await self.layer.group_discard(group_for(channel), self.channel_name)
            except Exception:
                logger.warning("group_discard failed for %s", channel, exc_info=True)
            if not self.members and self.task is not None:
                # Nothing left to receive for: stop reading (a join starts again).
                # Not awaited: a read cancelled mid-call cleans up in its own time,
                # and the consumer leaving must not wait for it.
                self.task.cancel()
                self.task = None

    def _forget(self, channel: str, member: Member) -> None:
        members = self.members.get(channel)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self.members[channel]

    def local_subscribers(self, channel: str) -> int:
        return len(self.members.get(channel, ()))

    def _all_members(self) -> list[Member]:
        unique: dict[Member, None] = {}
        for members in self.members.values():
            unique.update(members)
        return list(unique)

    async def _receive_forever(self) -> None:
        assert self.channel_name is not None
        delay = 0.2
        failures = 0
        while True:
            if self.down:
                # No read until the groups are re-joined: a restarted Redis has
                # forgotten them, and a read that succeeds before then waits
                # forever on a channel no group names.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                await self._recover()
                failures = 0
                continue
            try:
                message: dict[str, Any] = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                if _cancelling():
                    raise asyncio.CancelledError from None  # the layer turned our cancel into its own error
                failures += 1
                if failures == 1:
                    continue  # one failed read (a timeout) is not an outage: read again at once
                self.down = True
                logger.warning("channel layer receive failed; updates paused", exc_info=True)
                for member in self._all_members():
                    member.hub_down()
                continue
            failures, delay = 0, 0.2
            kind = message.get("type")
            if kind == "stream.update":
                events = [message]
            elif kind == "stream.updates":  # several updates of one channel, in order
                events = message["events"]
            else:
                continue
            self.received += 1
            members = list(self.members.get(message["channel"], ()))
            for event in events:
                for member in members:
                    try:
                        member.hub_update(event)  # type: ignore[arg-type]
                    except Exception:  # one client's bug costs that client, not the others
                        logger.exception("delivery to a consumer failed")

    async def _recover(self) -> None:
        assert self.channel_name is not None
        try:
            for channel in list(self.joined):
                await self.layer.group_add(group_for(channel), self.channel_name)
        except Exception:
            return  # still down
        if not self.down:
            return
        self.down = False
        logger.info("channel layer back; groups re-joined, sending fresh snapshots")
        await asyncio.to_thread(subscribers_refresh)
        for member in self._all_members():
            member.hub_back()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub_for(layer: BaseChannelLayer) -> Hub:
    """The hub of the running event loop for ``layer`` (a new layer, as tests
    make with new settings, gets a new hub)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        if hub is not None and hub.task is not None:
            hub.task.cancel()
        hub = _hubs[loop] = Hub(layer)
    return hub
