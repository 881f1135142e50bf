"""The process hub comes back after a channel-layer outage whatever moment
the layer returns at. A restarted Redis has forgotten the hub's groups, so a
read that succeeds before the groups are re-joined waits forever on a channel
nothing is sent to: the hub must re-join before it reads again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.hub import Hub


class _RestartingLayer:
    """A channel layer over a Redis that goes away and comes back empty: two
    reads fail (the outage), the first re-join fails (still down), and from
    then on it is back: a read waits for a message. A hub that reads before it
    has re-joined waits for good, as no group names its channel any more."""

    def __init__(self) -> None:
        self.reads = 0
        self.group_adds = 0
        self.groups: set[str] = set()

    async def new_channel(self) -> str:
        return "hub-channel"

    async def receive(self, channel: str) -> dict[str, Any]:
        self.reads += 1
        if self.reads <= 2:
            raise ConnectionError("Redis went away")
        # Back: a read waits for a message. None comes in this test; to a hub
        # that read before re-joining, none would ever come (no group names its channel).
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def group_add(self, group: str, channel: str) -> None:
        self.group_adds += 1
        if self.group_adds == 2:  # the first re-join, during the outage
            raise ConnectionError("Redis is still away")
        self.groups.add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        self.groups.discard(group)


class _Member:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.back = asyncio.Event()

    def hub_update(self, event: Any) -> None:
        self.events.append("update")

    def hub_down(self) -> None:
        self.events.append("down")

    def hub_back(self) -> None:
        self.events.append("back")
        self.back.set()


@pytest.mark.django_db(transaction=True)
def test_the_hub_rejoins_its_groups_when_the_layer_returns_between_a_failed_rejoin_and_a_read(monkeypatch):
    monkeypatch.setattr("streams.hub.subscribers_refresh", lambda: None)  # no registry behind this layer

    async def scenario() -> list[str]:
        layer = _RestartingLayer()
        hub = Hub(layer)  # type: ignore[arg-type]
        member = _Member()
        await hub.join("system", member)  # type: ignore[arg-type]
        layer.groups.clear()  # the restart forgets the groups
        try:
            await asyncio.wait_for(member.back.wait(), 10)
        finally:
            if hub.task is not None:
                hub.task.cancel()
        return member.events

    events = asyncio.run(scenario())
    assert events[:2] == ["down", "back"]
