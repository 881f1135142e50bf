"""Fan-out through the process hub (issue 14, part 4): one channel-layer
subscription and one receive per channel per process, whatever the number of
local clients; every client still gets its own ordered, gap-free stream; a
client that cannot keep up is closed without holding up the others."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from streams.hub import hub_for
from streams.publish import apublish, group_for
from streams.registry import ChannelHandler, register_channel
from streams.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

ROUTER = URLRouter(websocket_urlpatterns)
TIMEOUT = 10.0


class _Counter(ChannelHandler):
    """A gap-free channel whose snapshot says ``seq`` (set by the test)."""

    prefix = "fanouttest"
    latest_value = False
    seq = 0

    async def snapshot(self, *, user: Any, channel: str) -> tuple[int, Any]:
        return self.seq, {"n": self.seq}


COUNTER = register_channel(_Counter())


def run(scenario: Any) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(scenario, 60)
        finally:
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(main())


async def _open(key: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(ROUTER, "/api/v1/ws", headers=[(b"host", b"testserver"), (b"x-api-key", key.encode())])
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    return comm


async def _subscribe(comm: WebsocketCommunicator, channel: str) -> int:
    await comm.send_json_to({"op": "subscribe", "channel": channel})
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "subscribed"
    snapshot = await comm.receive_json_from(timeout=TIMEOUT)
    assert snapshot["type"] == "snapshot"
    return snapshot["seq"]


async def _updates(comm: WebsocketCommunicator, count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        frame = await comm.receive_json_from(timeout=TIMEOUT)
        if frame["type"] == "update":
            seqs.append(frame["seq"])
    return seqs


def test_two_clients_of_one_process_share_one_subscription_and_get_every_update_in_order(alice_key):
    channel = "fanouttest:a"
    COUNTER.seq = 10

    async def scenario() -> tuple[list[int], list[int], int, int, int]:
        one, two = await _open(alice_key), await _open(alice_key)
        assert await _subscribe(one, channel) == 10
        assert await _subscribe(two, channel) == 10
        layer = get_channel_layer()
        hub = hub_for(layer)
        before = hub.received
        # Published out of order (two commits racing): each client still gets 11..30 in order.
        order = [12, 11, *range(13, 31)]
        for seq in order:
            assert await apublish(channel, seq, {"n": seq})
        first, second = await _updates(one, 20), await _updates(two, 20)
        members = await _group_members(layer, group_for(channel))
        received = hub.received - before
        for comm in (one, two):
            await comm.disconnect(timeout=10)
        return first, second, members, received, len(order)

    first, second, members, received, published = run(scenario())
    assert first == second == list(range(11, 31))
    assert members == 1  # one subscription for the process, not one per client
    assert received == published  # one receive (and one encoded frame) per publish


async def _group_members(layer: Any, group: str) -> int:
    if hasattr(layer, "groups"):  # the in-memory layer of the embedded default
        return len(layer.groups.get(group, {}))
    connection = layer.connection(layer.consistent_hash(group))
    return int(await connection.zcard(layer._group_key(group)))


def test_a_gap_free_client_that_joins_later_starts_at_its_own_snapshot(alice_key):
    channel = "fanouttest:b"

    async def scenario() -> tuple[list[int], list[int]]:
        COUNTER.seq = 0
        early = await _open(alice_key)
        await _subscribe(early, channel)
        for seq in (1, 2, 3):
            await apublish(channel, seq, {"n": seq})
        COUNTER.seq = 3
        late = await _open(alice_key)
        assert await _subscribe(late, channel) == 3
        for seq in (4, 5):
            await apublish(channel, seq, {"n": seq})
        seen_early, seen_late = await _updates(early, 5), await _updates(late, 2)
        for comm in (early, late):
            await comm.disconnect(timeout=10)
        return seen_early, seen_late

    seen_early, seen_late = run(scenario())
    assert seen_early == [1, 2, 3, 4, 5]
    assert seen_late == [4, 5]


def test_a_client_that_stops_reading_is_closed_and_the_others_keep_their_updates(alice_key, settings):
    settings.WS_SEND_QUEUE = 5
    channel = "fanouttest:c"
    COUNTER.seq = 0

    async def scenario() -> tuple[list[int], dict[str, Any]]:
        reader = await _open(alice_key)
        stalled_reading = asyncio.Event()

        async def stalled_app(scope: Any, receive: Any, send: Any) -> None:
            async def send_until_stalled(message: dict[str, Any]) -> None:
                if stalled_reading.is_set() and message["type"] == "websocket.send":
                    await asyncio.Event().wait()  # the client's transport never drains again
                await send(message)

            await ROUTER(scope, receive, send_until_stalled)

        stalled = WebsocketCommunicator(stalled_app, "/api/v1/ws", headers=[(b"host", b"testserver"), (b"x-api-key", alice_key.encode())])
        assert (await stalled.connect(timeout=TIMEOUT))[0]
        assert (await stalled.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
        await _subscribe(reader, channel)
        await _subscribe(stalled, channel)
        stalled_reading.set()
        started = time.monotonic()
        for seq in range(1, 21):
            await apublish(channel, seq, {"n": seq})
        seen = await _updates(reader, 20)
        assert time.monotonic() - started < 5
        closed = await stalled.receive_output(timeout=TIMEOUT)
        for comm in (reader, stalled):
            await comm.disconnect(timeout=10)
        return seen, closed

    seen, closed = run(scenario())
    assert seen == list(range(1, 21))
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4008


def test_update_frames_keep_their_wire_shape(alice_key):
    channel = "fanouttest:d"
    COUNTER.seq = 0

    async def scenario() -> dict[str, Any]:
        comm = await _open(alice_key)
        await _subscribe(comm, channel)
        await apublish(channel, 1, {"n": 1})
        while True:
            message = await comm.receive_output(timeout=TIMEOUT)
            frame = json.loads(message["text"])
            if frame["type"] == "update":
                await comm.disconnect(timeout=10)
                return frame

    assert run(scenario()) == {"type": "update", "channel": channel, "seq": 1, "data": {"n": 1}}


def test_a_batch_held_by_publishing_batched_goes_out_as_one_message_per_channel_and_every_frame_arrives(alice_key, monkeypatch):
    from asgiref.sync import sync_to_async

    from streams import publish as publishing

    one, other = "fanouttest:e", "fanouttest:f"
    COUNTER.seq = 10
    sent: list[str] = []
    real = publishing._send

    async def spy(layer: Any, channel: str, message: Any) -> bool:
        sent.append(channel)
        return await real(layer, channel, message)

    monkeypatch.setattr(publishing, "_send", spy)

    def batch() -> None:  # what a worker's send does with its transactions' updates
        with publishing.publishing_batched():
            for seq in range(11, 21):
                publishing.publish_many([(one, seq, {"n": seq})])
                publishing.publish_many([(other, seq, {"n": seq})])
            assert sent == []  # held until the block ends

    async def scenario() -> tuple[list[int], list[int], int]:
        a, b = await _open(alice_key), await _open(alice_key)
        await _subscribe(a, one)
        await _subscribe(b, other)
        hub = hub_for(get_channel_layer())
        before = hub.received
        await sync_to_async(batch, thread_sensitive=False)()
        seen_a, seen_b = await _updates(a, 10), await _updates(b, 10)
        received = hub.received - before
        for comm in (a, b):
            await comm.disconnect(timeout=10)
        return seen_a, seen_b, received

    seen_a, seen_b, received = run(scenario())
    assert seen_a == seen_b == list(range(11, 21))  # every frame, in order, each its own update
    assert sorted(sent) == [one, other]  # one publish per channel
    assert received == 2


def test_clients_that_come_and_go_leave_nothing_behind_in_the_process(alice_key, settings):
    """A soak keeps its clients connected; a real server sees them come and go.
    Every connect/subscribe/disconnect must give back what it took: the hub's
    members and groups, the subscriber counts, the channel layer's per-channel
    buffers and the event loop's tasks stay where they were after 3 rounds of
    20 clients (a leak here grows with every reconnect, for ever)."""
    from streams.subscribers import subscriber_totals

    settings.WS_HEARTBEAT_INTERVAL = 600  # the test's clients answer no ping, however slow the machine
    channel = "fanouttest:churn"

    def layer_channels(layer: Any) -> int:
        # Per-channel state the layer keeps in this process: the in-memory
        # layer's queues, channels-redis's receive buffers.
        return len(getattr(layer, "channels", None) or getattr(layer, "receive_buffer", {}))

    async def scenario() -> list[tuple[int, int, int, int, int]]:
        layer = get_channel_layer()
        COUNTER.seq = 0
        after_each_round = []
        for round_ in range(3):
            clients = [await _open(alice_key) for _ in range(10)]
            for comm in clients:
                await _subscribe(comm, channel)
            await apublish(channel, round_ + 1, {"n": round_ + 1})
            for comm in clients:
                assert await _updates(comm, 1) == [round_ + 1]
            COUNTER.seq = round_ + 1
            for comm in clients:
                await comm.disconnect(timeout=TIMEOUT)
            await asyncio.sleep(0.2)  # cancelled reads finish unwinding
            hub = hub_for(layer)
            totals = await database_sync_to_async(subscriber_totals)()
            after_each_round.append(
                (
                    sum(len(m) for m in hub.members.values()) + len(hub.joined),
                    totals.get(channel, 0) + totals.get("ws-connections:gateway", 0),
                    await _group_members(layer, group_for(channel)),
                    layer_channels(layer),
                    len(asyncio.all_tasks()),
                )
            )
        return after_each_round

    rounds = run(scenario())
    hub_state, counts, group_members, _, _ = rounds[-1]
    assert (hub_state, counts, group_members) == (0, 0, 0), rounds
    # The layer's per-channel state and the loop's tasks do not grow with the rounds.
    assert rounds[-1][3] <= rounds[0][3], rounds
    assert rounds[-1][4] <= rounds[0][4], rounds
