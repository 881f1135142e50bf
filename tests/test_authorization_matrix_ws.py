"""The authorization matrix's WebSocket half (issue 8, proving ground): every
registered channel prefix, as classified in ``CHANNELS`` of
``tests/test_authorization_matrix.py`` (which fails on an unclassified one).
Another user's account channel answers an error frame ``not_found`` (as an
account that does not exist), a market channel a snapshot, and a socket
without credentials is refused."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from streams.registry import channel_handlers
from streams.routing import websocket_urlpatterns

ROUTER = URLRouter(websocket_urlpatterns)
NOBODY = 987_654_321  # an account id that names nothing

#: Every registered channel prefix: account channels reach one user's data.
ACCOUNT_CHANNELS = "account"
MARKET_CHANNELS = "market"
CHANNELS: dict[str, str] = {
    "orders": ACCOUNT_CHANNELS,
    "positions": ACCOUNT_CHANNELS,
    "funds": ACCOUNT_CHANNELS,
    "quotes": MARKET_CHANNELS,
    "bars": MARKET_CHANNELS,
    "system": MARKET_CHANNELS,
    "chain": MARKET_CHANNELS,
}
CHAIN_EXPIRY = date.today() + timedelta(days=30)
MARKET_SAMPLES = {"quotes": "quotes:AAPL", "bars": "bars:AAPL:1", "system": "system", "chain": f"chain:AAPL:{CHAIN_EXPIRY.isoformat()}"}


def _app_channels() -> set[str]:
    """The channels the project's apps register (test modules register their own to exercise the gateway)."""
    return {prefix for prefix, handler in channel_handlers().items() if not type(handler).__module__.startswith("tests.")}


def test_every_channel_is_classified() -> None:
    channels = _app_channels()
    assert channels, "no channel registered: the matrix would check nothing"
    unclassified = sorted(channels - set(CHANNELS))
    assert not unclassified, f"WebSocket channels missing from the authorization matrix (CHANNELS in {__name__}): {unclassified}"
    assert not set(CHANNELS) - channels, f"CHANNELS names unregistered prefixes: {sorted(set(CHANNELS) - channels)}"


async def _subscribe(key: str | None, channel: str) -> dict[str, Any] | None:
    """The first frame answering a subscribe, or None when the socket is refused."""
    headers = [(b"host", b"testserver")] + ([(b"x-api-key", key.encode())] if key else [])
    comm = WebsocketCommunicator(ROUTER, "/api/v1/ws", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    try:
        if not connected:
            return None
        await comm.send_json_to({"op": "subscribe", "channel": channel, "request_id": "m1"})
        while True:
            frame = await comm.receive_json_from(timeout=10)
            if frame["type"] not in ("hello", "ping", "subscribed"):
                return frame
    finally:
        await comm.disconnect()


def _run(scenario: Any) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(scenario, 60)
        finally:
            await database_sync_to_async(connections.close_all)()
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()

    return asyncio.run(main())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prefix", sorted(CHANNELS))
def test_channels_refuse_other_users_and_anonymous(alice, alice_read_key, bob_key, prefix: str) -> None:
    aapl = instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    if prefix == "chain":
        instrument_upsert(symbol="AAPL-C200", type="option", underlying=aapl, expiry=CHAIN_EXPIRY, strike=Decimal(200), option_type="call")
    account = broker_account_create(owner=alice, kind="paper", label="paper")
    account_channel = CHANNELS[prefix] == ACCOUNT_CHANNELS
    channel = f"{prefix}:{account.pk}" if account_channel else MARKET_SAMPLES[prefix]

    async def scenario() -> tuple[Any, ...]:
        return (
            await _subscribe(bob_key, channel),
            await _subscribe(bob_key, f"{prefix}:{NOBODY}") if account_channel else None,
            await _subscribe(alice_read_key, channel),
            await _subscribe(None, channel),
        )

    bob, nothing, own, anonymous = _run(scenario())
    assert own and own["type"] == "snapshot", own
    if account_channel:
        assert bob and bob["type"] == "error" and bob["data"]["error"]["code"] == "not_found", bob
        strip = lambda f: {k: v for k, v in f["data"]["error"].items() if k != "request_id"}  # noqa: E731
        assert strip(bob) == strip(nothing), (bob, nothing)
    else:
        assert bob and bob["type"] == "snapshot", bob
    assert anonymous is None or anonymous["type"] == "error", anonymous


# --- the command op: every OMS command reaches an account ---------------------------------------

#: A payload per command of ``oms.specs.commands.PAYLOAD_SPECS``; a new command
#: without one fails ``test_every_command_is_classified``.
COMMAND_PAYLOADS: dict[str, dict[str, Any]] = {
    "send_order": {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"},
    "cancel_order": {"order_id": 1},
    "change_order": {"order_id": 1, "price": "1.01"},
    "close_position": {"position_id": 1},
    "close_by": {"position_id_a": 1, "position_id_b": 2},
    "reassign": {"deal_ids": [1], "target_strategy_id": "s2"},
    "cancel_all": {},
    "flatten_all": {},
}


def test_every_command_is_classified() -> None:
    from oms.specs.commands import PAYLOAD_SPECS

    assert set(PAYLOAD_SPECS) == set(COMMAND_PAYLOADS), (
        f"WebSocket/REST commands missing from the authorization matrix (COMMAND_PAYLOADS in {__name__}): "
        f"{sorted(set(PAYLOAD_SPECS) - set(COMMAND_PAYLOADS))}; stale: {sorted(set(COMMAND_PAYLOADS) - set(PAYLOAD_SPECS))}"
    )


async def _command(key: str, account_id: int, command: str) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"x-api-key", key.encode())]
    comm = WebsocketCommunicator(ROUTER, "/api/v1/ws", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    try:
        frame = {"op": "command", "request_id": "c", "account_id": account_id, "command": command}
        await comm.send_json_to({**frame, "payload": COMMAND_PAYLOADS[command]})
        while True:
            answer = await comm.receive_json_from(timeout=10)
            if answer.get("request_id") == "c":
                return answer
    finally:
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_commands_on_another_users_account_answer_as_no_account(alice, alice_read_key, bob_key) -> None:
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    account = broker_account_create(owner=alice, kind="paper", label="paper")

    async def scenario() -> dict[str, tuple[Any, Any, Any]]:
        return {
            command: (
                await _command(bob_key, account.pk, command),
                await _command(bob_key, NOBODY, command),
                await _command(alice_read_key, account.pk, command),
            )
            for command in sorted(COMMAND_PAYLOADS)
        }

    def error(frame: dict[str, Any]) -> dict[str, Any]:
        assert frame["type"] == "error", frame
        return {k: v for k, v in frame["data"]["error"].items() if k != "request_id"}

    for command, (theirs, nothing, read) in _run(scenario()).items():
        assert error(theirs)["code"] == "not_found", (command, theirs)
        assert error(theirs) == error(nothing), (command, theirs, nothing)
        assert error(read)["code"] == "permission_denied", (command, read)


# --- the upstream Kite backend's order paths (aliases of orders:/positions:) -------------------

#: Every WebSocket path besides the gateway, classified: a new one fails below.
ALIAS_PATHS = {r"^api/v1/ws/orders/?$": "user", r"^api/v1/ws/orders/(?P<account_id>[^/]+)/?$": ACCOUNT_CHANNELS}


def test_every_websocket_path_is_classified() -> None:
    paths = {str(r.pattern) for r in websocket_urlpatterns} - {r"^api/v1/ws/?$", ""}
    assert paths == set(ALIAS_PATHS), f"unclassified WebSocket paths: {sorted(paths - set(ALIAS_PATHS))}"


async def _alias_frames(key: str | None, path: str) -> list[dict[str, Any]]:
    headers = [(b"host", b"testserver")] + ([(b"x-api-key", key.encode())] if key else [])
    comm = WebsocketCommunicator(ROUTER, path, headers=headers)
    connected, _ = await comm.connect(timeout=10)
    frames: list[dict[str, Any]] = []
    try:
        if not connected:
            return frames
        while True:
            message = await comm.receive_output(timeout=10)
            if message["type"] == "websocket.close":
                frames.append({"type": "close", "code": message.get("code")})
                return frames
            frame = json.loads(message["text"])
            frames.append(frame)
            if sum(f["type"] == "snapshot" for f in frames) == 2:
                return frames
    finally:
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_alias_paths_refuse_other_users_and_anonymous(alice, alice_read_key, bob_key, settings) -> None:
    settings.WS_AUTH_TIMEOUT = 0.5
    account = broker_account_create(owner=alice, kind="paper", label="paper")

    async def scenario() -> tuple[Any, ...]:
        path = f"/api/v1/ws/orders/{account.pk}"
        return (
            await _alias_frames(bob_key, path),
            await _alias_frames(bob_key, f"/api/v1/ws/orders/{NOBODY}"),
            await _alias_frames(alice_read_key, path),
            await _alias_frames(None, path),
            await _alias_frames(None, "/api/v1/ws/orders"),
        )

    bob, nothing, own, anonymous, anonymous_all = _run(scenario())
    strip = lambda frames: [(f["type"], f.get("data", {}).get("error", {}).get("code"), f.get("code")) for f in frames[1:]]  # noqa: E731
    assert strip(bob) == strip(nothing) == [("error", "not_found", None), ("close", None, 4004)], bob
    assert [f["type"] for f in own] == ["hello", "snapshot", "snapshot"], own
    for frames in (anonymous, anonymous_all):
        assert [f["type"] for f in frames] == ["error", "close"] and frames[-1]["code"] == 4001, frames
