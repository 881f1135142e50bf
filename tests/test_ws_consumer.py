"""The gateway consumer in process (``WebsocketCommunicator`` on the WS router):
snapshot/update ordering, coalescing, group names and failure paths that are
awkward to provoke over the network.

Each test runs its scenario in a fresh event loop with a fresh channel layer
(in-memory, or Redis in the production mode) and restores the handler registry.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from accounts.models import User
from core.exceptions import NotFound
from streams import registry
from streams.consumer import GatewayConsumer, _origin_allowed
from streams.publish import apublish, group_for
from streams.registry import ChannelHandler
from streams.routing import websocket_urlpatterns

ROUTER = URLRouter(websocket_urlpatterns)
TIMEOUT = 2.0
QUIET = 0.3  # how long "nothing more arrives" is watched


class ScriptedChannel(ChannelHandler):
    """A channel family whose snapshot returns a given seq, optionally only
    once the test opens ``gate``."""

    def __init__(self, prefix: str, *, seq: int, latest_value: bool = False, gated: bool = False) -> None:
        self.prefix = prefix
        self.latest_value = latest_value
        self.seq = seq
        self.gated = gated
        self.building: asyncio.Event | None = None
        self.gate: asyncio.Event | None = None
        self.refuse: Exception | None = None
        self.fail: Exception | None = None
        self.hooks: list[tuple[str, str]] = []

    def canonical(self, channel: str) -> str:
        return channel[:-2] + ":1D" if channel.endswith(":D") else channel

    async def on_subscribe(self, *, channel: str) -> None:
        self.hooks.append(("subscribe", channel))

    async def on_unsubscribe(self, *, channel: str) -> None:
        self.hooks.append(("unsubscribe", channel))

    async def authorize(self, *, user: User, channel: str) -> None:
        if self.refuse is not None:
            raise self.refuse

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        if self.gated:
            self.building, self.gate = self.building or asyncio.Event(), self.gate or asyncio.Event()
            self.building.set()
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.seq, {"state": "snapshot", "channel": channel}


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    # A layer instance is bound to the event loop that first used it; every
    # scenario runs in a new loop.
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture
def register() -> Iterator[Callable[[ChannelHandler], ChannelHandler]]:
    saved = dict(registry._handlers)
    yield registry.register_channel
    registry._handlers.clear()
    registry._handlers.update(saved)


@pytest.fixture
def alice() -> User:
    # Unsaved: the session path needs only the user object, not the database.
    return User(pk=7, email="alice@example.com")


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(scenario(), 15)
        finally:
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):  # channels-redis: pools belong to this loop
                await layer.close_pools()

    return asyncio.run(main())


async def open_gateway(user: User | None, *, origin: bytes = b"http://testserver", host: bytes = b"testserver") -> WebsocketCommunicator:
    comm = WebsocketCommunicator(ROUTER, "/api/v1/ws", headers=[(b"host", host), (b"origin", origin)])
    comm.scope["user"] = user
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    hello = await comm.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "hello" and hello["data"]["auth"] == "session"
    return comm


async def subscribe(comm: WebsocketCommunicator, channel: str) -> dict[str, Any]:
    """Subscribe and return the snapshot frame."""
    await comm.send_json_to({"op": "subscribe", "channel": channel, "request_id": "sub"})
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "subscribed", "channel": channel, "request_id": "sub"}
    snapshot = await comm.receive_json_from(timeout=TIMEOUT)
    assert snapshot["type"] == "snapshot" and snapshot["channel"] == channel
    return snapshot


async def frames_until_quiet(comm: WebsocketCommunicator, quiet: float = QUIET) -> list[dict[str, Any]]:
    # receive_nothing, not a receive timeout: a timed-out receive cancels the app.
    out = []
    while not await comm.receive_nothing(timeout=quiet, interval=0.01):
        out.append(await comm.receive_json_from(timeout=TIMEOUT))
    return out


def update(channel: str, seq: int, data: Any) -> dict[str, Any]:
    return {"type": "update", "channel": channel, "seq": seq, "data": data}


# --- account channels: gap-free, nothing the snapshot already holds ---------------------------


def test_updates_the_snapshot_reflects_are_dropped(register, alice):
    register(ScriptedChannel("testacct", seq=10))

    async def scenario():
        comm = await open_gateway(alice)
        snapshot = await subscribe(comm, "testacct:1")
        for seq in (9, 10, 11, 12):
            assert await apublish("testacct:1", seq, {"n": seq})
        frames = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return snapshot, frames

    snapshot, frames = run(scenario)
    assert snapshot == {
        "type": "snapshot",
        "channel": "testacct:1",
        "seq": 10,
        "request_id": "sub",
        "data": {"state": "snapshot", "channel": "testacct:1"},
    }
    assert frames == [update("testacct:1", 11, {"n": 11}), update("testacct:1", 12, {"n": 12})]


def test_updates_published_while_the_snapshot_is_built_follow_it(register, alice):
    handler = register(ScriptedChannel("testacct", seq=10, gated=True))

    async def scenario():
        handler.building, handler.gate = asyncio.Event(), asyncio.Event()
        comm = await open_gateway(alice)
        await comm.send_json_to({"op": "subscribe", "channel": "testacct:1", "request_id": "sub"})
        subscribed = await comm.receive_json_from(timeout=TIMEOUT)
        await asyncio.wait_for(handler.building.wait(), TIMEOUT)
        for seq in (10, 11, 12):  # 10 races the snapshot and is already in it
            assert await apublish("testacct:1", seq, {"n": seq})
        early = await comm.receive_nothing(timeout=0.1)
        handler.gate.set()
        frames = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return subscribed, early, frames

    subscribed, early, frames = run(scenario)
    assert subscribed["type"] == "subscribed"
    assert early, "nothing may overtake the snapshot"
    assert [(f["type"], f["seq"]) for f in frames] == [("snapshot", 10), ("update", 11), ("update", 12)]


def test_account_channel_delivers_a_burst_in_order_without_gaps(register, alice):
    register(ScriptedChannel("testacct", seq=0))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        for seq in range(1, 201):
            await apublish("testacct:1", seq, {"n": seq})
        frames = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return frames

    assert [f["seq"] for f in run(scenario)] == list(range(1, 201)), "account channels are never coalesced"


def test_resubscribing_starts_over_with_a_fresh_snapshot(register, alice):
    handler = register(ScriptedChannel("testacct", seq=5))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        await apublish("testacct:1", 6, {})
        first = await comm.receive_json_from(timeout=TIMEOUT)
        handler.seq = 20  # the client saw a gap and re-subscribes
        snapshot = await subscribe(comm, "testacct:1")
        await apublish("testacct:1", 20, {})
        await apublish("testacct:1", 21, {})
        frames = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return first, snapshot, frames

    first, snapshot, frames = run(scenario)
    assert first["seq"] == 6
    assert snapshot["seq"] == 20
    assert [f["seq"] for f in frames] == [21]


def test_unsubscribe_stops_updates(register, alice):
    register(ScriptedChannel("testacct", seq=0))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        await comm.send_json_to({"op": "unsubscribe", "channel": "testacct:1", "request_id": "u"})
        unsubscribed = await comm.receive_json_from(timeout=TIMEOUT)
        await apublish("testacct:1", 1, {})
        quiet = await comm.receive_nothing(timeout=QUIET)
        await comm.disconnect(timeout=TIMEOUT)
        return unsubscribed, quiet

    unsubscribed, quiet = run(scenario)
    assert unsubscribed == {"type": "unsubscribed", "channel": "testacct:1", "request_id": "u"}
    assert quiet


# --- market channels: latest value, coalesced per flush -----------------------------------------


def test_latest_value_channel_coalesces_a_burst_ending_with_the_latest(register, alice, settings):
    settings.WS_MARKET_FLUSH_INTERVAL = 0.2
    register(ScriptedChannel("testquotes", seq=100, latest_value=True))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testquotes:BTC/USDT")
        started = time.monotonic()
        for seq in range(101, 301):
            await apublish("testquotes:BTC/USDT", seq, {"last": str(seq)}, latest=True)
        publishing = time.monotonic() - started
        frames = await frames_until_quiet(comm, quiet=0.5)
        await comm.disconnect(timeout=TIMEOUT)
        return frames, publishing

    frames, publishing = run(scenario)
    seqs = [f["seq"] for f in frames]
    assert seqs[-1] == 300 and frames[-1]["data"] == {"last": "300"}, "the latest value always arrives"
    assert seqs == sorted(set(seqs)) and seqs[0] > 100
    assert len(seqs) <= 3 + int(publishing / 0.2), f"{len(seqs)} frames for 200 updates in {publishing:.2f}s"


def test_latest_value_channel_sends_the_trailing_value_one_interval_later(register, alice, settings):
    settings.WS_MARKET_FLUSH_INTERVAL = 0.2
    register(ScriptedChannel("testquotes", seq=100, latest_value=True))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testquotes:ETH/USDT")
        for seq in (101, 102, 103):
            await apublish("testquotes:ETH/USDT", seq, {"n": seq}, latest=True)
        first = await comm.receive_json_from(timeout=TIMEOUT)
        sent_first = time.monotonic()
        second = await comm.receive_json_from(timeout=TIMEOUT)
        gap = time.monotonic() - sent_first
        rest = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return first, second, gap, rest

    first, second, gap, rest = run(scenario)
    assert (first["seq"], second["seq"]) == (101, 103), "102 is superseded"
    assert 0.1 <= gap <= 1.0
    assert rest == []


# --- group names ------------------------------------------------------------------------------------

GROUP_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.mark.parametrize(
    "channel",
    [
        "quotes:BTC/USDT",
        "bars:BTC/USDT:1D",
        "orders:12",
        "system",
        "quotes:005930.KS",
        "quotes:삼성전자",
        "quotes:A B",
        "quotes:" + "X" * 500,
    ],
)
def test_group_names_are_valid_for_the_channel_layer(channel):
    group = group_for(channel)
    assert GROUP_NAME.match(group) and len(group) < 100
    assert group.startswith("ch.")
    assert get_channel_layer().require_valid_group_name(group)


def test_distinct_channels_get_distinct_groups():
    names = ["quotes:BTC/USDT", "quotes:BTC_USDT", "quotes:BTC-USDT", "quotes:btc/usdt", "bars:BTC/USDT:1", "bars:BTC/USDT:1D"]
    assert len({group_for(name) for name in names}) == len(names)


def test_channel_with_colon_and_slash_reaches_only_its_subscribers(register, alice):
    register(ScriptedChannel("testquotes", seq=0, latest_value=True))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testquotes:BTC/USDT")
        await apublish("testquotes:ETH/USDT", 1, {"other": True}, latest=True)
        await apublish("testquotes:BTC/USDT", 1, {"last": "1"}, latest=True)
        frames = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return frames

    assert run(scenario) == [update("testquotes:BTC/USDT", 1, {"last": "1"})]


def test_bars_subscribe_is_subscribe_on_the_bars_channel(register, alice):
    register(ScriptedChannel("bars", seq=3, latest_value=True))

    async def scenario():
        comm = await open_gateway(alice)
        await comm.send_json_to({"op": "bars.subscribe", "symbol": "BTC/USDT", "resolution": "1D", "request_id": "b"})
        subscribed = await comm.receive_json_from(timeout=TIMEOUT)
        snapshot = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.send_json_to({"op": "bars.unsubscribe", "symbol": "BTC/USDT", "resolution": "1D", "request_id": "b2"})
        unsubscribed = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect(timeout=TIMEOUT)
        return subscribed, snapshot, unsubscribed

    subscribed, snapshot, unsubscribed = run(scenario)
    assert subscribed == {"type": "subscribed", "channel": "bars:BTC/USDT:1D", "request_id": "b"}
    assert snapshot["seq"] == 3
    assert unsubscribed == {"type": "unsubscribed", "channel": "bars:BTC/USDT:1D", "request_id": "b2"}


def test_subscriptions_use_the_canonical_name_and_tell_the_handler_once(register, alice):
    handler = register(ScriptedChannel("testbars", seq=1, latest_value=True))

    async def scenario():
        comm = await open_gateway(alice)
        await comm.send_json_to({"op": "subscribe", "channel": "testbars:BTC/USDT:D", "request_id": "a"})
        subscribed = await comm.receive_json_from(timeout=TIMEOUT)
        snapshot = await comm.receive_json_from(timeout=TIMEOUT)
        await subscribe(comm, "testbars:BTC/USDT:1D")  # a re-subscribe, not a second subscriber
        await apublish("testbars:BTC/USDT:1D", 2, {"close": "1"}, latest=True)
        published = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.send_json_to({"op": "unsubscribe", "channel": "testbars:BTC/USDT:D", "request_id": "b"})
        unsubscribed = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect(timeout=TIMEOUT)
        return subscribed, snapshot, published, unsubscribed

    subscribed, snapshot, published, unsubscribed = run(scenario)
    assert subscribed == {"type": "subscribed", "channel": "testbars:BTC/USDT:1D", "request_id": "a"}
    assert snapshot["channel"] == "testbars:BTC/USDT:1D"
    assert published["seq"] == 2
    assert unsubscribed == {"type": "unsubscribed", "channel": "testbars:BTC/USDT:1D", "request_id": "b"}
    assert handler.hooks == [("subscribe", "testbars:BTC/USDT:1D"), ("unsubscribe", "testbars:BTC/USDT:1D")]


def test_the_handler_hears_every_subscription_go_on_disconnect(register, alice):
    handler = register(ScriptedChannel("testacct", seq=0))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        await subscribe(comm, "testacct:2")
        await comm.disconnect(timeout=TIMEOUT)

    run(scenario)
    assert sorted(handler.hooks) == [
        ("subscribe", "testacct:1"),
        ("subscribe", "testacct:2"),
        ("unsubscribe", "testacct:1"),
        ("unsubscribe", "testacct:2"),
    ]


# --- failures stay with the request ----------------------------------------------------------------


def test_refused_authorization_is_an_error_without_subscription(register, alice):
    handler = register(ScriptedChannel("testacct", seq=0))
    handler.refuse = NotFound("No such account.")

    async def scenario():
        comm = await open_gateway(alice)
        await comm.send_json_to({"op": "subscribe", "channel": "testacct:99", "request_id": "x"})
        error = await comm.receive_json_from(timeout=TIMEOUT)
        await apublish("testacct:99", 1, {})
        quiet = await comm.receive_nothing(timeout=QUIET)
        await comm.disconnect(timeout=TIMEOUT)
        return error, quiet

    error, quiet = run(scenario)
    assert handler.hooks == [], "a refused subscription is never counted"
    assert error["type"] == "error" and error["request_id"] == "x"
    assert error["data"]["error"]["code"] == "not_found"
    assert error["data"]["error"]["request_id"] == "x"
    assert quiet


def test_a_failing_snapshot_is_an_internal_error_and_the_connection_survives(register, alice):
    handler = register(ScriptedChannel("testacct", seq=0))
    handler.fail = RuntimeError("boom")

    async def scenario():
        comm = await open_gateway(alice)
        await comm.send_json_to({"op": "subscribe", "channel": "testacct:1", "request_id": "s"})
        subscribed = await comm.receive_json_from(timeout=TIMEOUT)
        error = await comm.receive_json_from(timeout=TIMEOUT)
        await apublish("testacct:1", 1, {})
        quiet = await comm.receive_nothing(timeout=QUIET)
        await comm.send_json_to({"op": "ping", "request_id": "p"})
        pong = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect(timeout=TIMEOUT)
        return subscribed, error, quiet, pong

    subscribed, error, quiet, pong = run(scenario)
    assert subscribed["type"] == "subscribed"
    assert error["type"] == "error" and error["data"]["error"]["code"] == "internal_error"
    assert "boom" not in error["data"]["error"]["message"]
    assert quiet, "the failed subscription left no group behind"
    assert handler.hooks == [("subscribe", "testacct:1"), ("unsubscribe", "testacct:1")]
    assert pong == {"type": "pong", "request_id": "p", "data": None}


# --- heartbeat --------------------------------------------------------------------------------------


async def next_output(comm: WebsocketCommunicator) -> dict[str, Any]:
    return await comm.receive_output(timeout=TIMEOUT)


def test_only_an_echo_of_the_ping_counts_as_pong(alice, settings):
    settings.WS_HEARTBEAT_INTERVAL = 0.2
    settings.WS_PONG_TIMEOUT = 0.2

    async def echoing() -> int:
        comm = await open_gateway(alice)
        pings = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            frame = await comm.receive_json_from(timeout=TIMEOUT)
            assert frame["type"] == "ping", frame
            pings += 1
            await comm.send_json_to({"op": "pong", "data": frame["data"]})
        await comm.disconnect(timeout=TIMEOUT)
        return pings

    async def blind() -> list[dict[str, Any]]:
        comm = await open_gateway(alice)
        outputs = []
        while not outputs or outputs[-1]["type"] != "websocket.close":
            await comm.send_json_to({"op": "pong", "data": {"ts": 0}})  # without reading the ping
            outputs.append(await next_output(comm))
        return outputs

    async def scenario():
        return await asyncio.gather(echoing(), blind())

    pings, outputs = run(scenario)
    assert pings >= 3
    close = outputs[-1]
    assert close["code"] == 4008 and close.get("reason") == "pong timeout"
    error = json.loads(outputs[-2]["text"])
    assert error["type"] == "error" and error["data"]["error"]["code"] == "pong_timeout"


def test_nothing_is_sent_after_the_server_closes(register, alice, settings):
    settings.WS_HEARTBEAT_INTERVAL = 0.2
    settings.WS_PONG_TIMEOUT = 0.2
    register(ScriptedChannel("testacct", seq=0))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        while (output := await next_output(comm))["type"] != "websocket.close":
            pass  # never answers the ping
        # The client has not acknowledged the close yet: events still reach the consumer.
        await apublish("testacct:1", 1, {})
        quiet = await comm.receive_nothing(timeout=QUIET)
        await comm.disconnect(timeout=TIMEOUT)
        return output, quiet

    close, quiet = run(scenario)
    assert close["code"] == 4008
    assert quiet


def test_stream_updates_skip_the_database_connection_check(register, alice, monkeypatch):
    import channels.consumer

    register(ScriptedChannel("testacct", seq=0))
    calls = []
    original = channels.consumer.aclose_old_connections

    async def counting():
        calls.append(1)
        await original()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting)

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        before = len(calls)
        for seq in range(1, 21):
            await apublish("testacct:1", seq, {})
        frames = await frames_until_quiet(comm)
        after = len(calls)
        await comm.disconnect(timeout=TIMEOUT)
        return before, after, frames

    before, after, frames = run(scenario)
    assert before > 0, "client frames still get the check"
    assert len(frames) == 20
    assert after == before


# --- origin -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:9000", "localhost:9000", True),
        ("https://app.example.com", "terminal.internal:8000", True),  # WS_ALLOWED_ORIGINS
        ("http://evil.example", "127.0.0.1:8000", False),
        ("http://evil.example:8000", "evil.example:8000", False),  # DNS rebinding: same origin, foreign host
        ("null", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
    ],
)
def test_origin_rule(settings, origin, host, allowed):
    settings.WS_ALLOWED_ORIGINS = ["https://app.example.com"]
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    assert _origin_allowed(origin, host) is allowed


def test_foreign_origin_is_refused_before_accept(alice):
    async def scenario():
        comm = WebsocketCommunicator(
            GatewayConsumer.as_asgi(), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://evil.example")]
        )
        comm.scope["user"] = alice
        result = await comm.connect(timeout=TIMEOUT)
        await comm.disconnect(timeout=TIMEOUT)
        return result

    assert run(scenario) == (False, 4003)


def test_account_updates_published_out_of_order_arrive_in_order(register, alice):
    # Two transactions of one account may commit 5 then 6 but publish 6 then 5.
    register(ScriptedChannel("testacct", seq=4))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        for seq in (6, 5, 8, 7):
            await apublish("testacct:1", seq, {"n": seq})
        frames = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return frames

    frames = run(scenario)
    assert [(f["type"], f["seq"]) for f in frames] == [("update", 5), ("update", 6), ("update", 7), ("update", 8)]


def test_a_gap_that_is_never_filled_gives_a_fresh_snapshot_not_a_hole(register, alice, settings):
    settings.WS_GAP_TIMEOUT = 0.2
    handler = register(ScriptedChannel("testacct", seq=4))

    async def scenario():
        comm = await open_gateway(alice)
        await subscribe(comm, "testacct:1")
        handler.seq = 7  # the state moved on; update 5 was lost
        await apublish("testacct:1", 6, {"n": 6})
        await apublish("testacct:1", 7, {"n": 7})
        frames = await frames_until_quiet(comm, quiet=0.6)
        await apublish("testacct:1", 8, {"n": 8})
        after = await frames_until_quiet(comm)
        await comm.disconnect(timeout=TIMEOUT)
        return frames, after

    frames, after = run(scenario)
    assert [(f["type"], f["seq"]) for f in frames] == [("snapshot", 7)]
    assert [(f["type"], f["seq"]) for f in after] == [("update", 8)]
