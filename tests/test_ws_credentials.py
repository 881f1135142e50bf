"""Credentials revoked mean sockets closed (issue 8, part 1): revoking a key,
deactivating a user or a key expiring closes its open WebSocket connections
with 4001, and every command is re-authorized when it arrives. The Origin
check compares scheme, host and port."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke, user_update
from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from oms.models import Order
from streams.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

ROUTER = URLRouter(websocket_urlpatterns)
TIMEOUT = 10.0
RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


def run(scenario: Any) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(scenario, 60)
        finally:
            await database_sync_to_async(connections.close_all)()
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):  # channels-redis: pools belong to this loop
                await layer.close_pools()

    return asyncio.run(main())


@pytest.fixture
def paper(alice):
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    return broker_account_create(owner=alice, kind="paper", label="paper")


def _row(key: str) -> ApiKey:
    return ApiKey.objects.get(prefix=key.split("_")[1])


async def _open(key: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(ROUTER, "/api/v1/ws", headers=[(b"host", b"testserver"), (b"x-api-key", key.encode())])
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    return comm


async def _closed_with(comm: WebsocketCommunicator) -> tuple[list[dict[str, Any]], int]:
    """The frames until the server closes, and its close code (pings ignored)."""
    frames = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        message = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] == "websocket.close":
            await comm.disconnect()  # let the consumer finish before the loop ends
            return frames, message.get("code")
        frame = json.loads(message["text"])
        if frame["type"] != "ping":
            frames.append(frame)


# --- in process: the channel layer of this process carries the announcement --------------------


def test_revoking_a_key_closes_its_open_socket_at_once(alice, alice_key):
    async def scenario():
        comm = await _open(alice_key)
        started = time.monotonic()
        await database_sync_to_async(api_key_revoke)(api_key=await database_sync_to_async(_row)(alice_key))
        frames, code = await _closed_with(comm)
        return frames, code, time.monotonic() - started

    frames, code, took = run(scenario())
    assert code == 4001
    assert [f["data"]["error"]["code"] for f in frames] == ["credentials_revoked"]
    assert took < 5


def test_revoking_a_parent_key_closes_the_sockets_of_the_keys_it_created(alice):
    parent = api_key_create(user=alice, name="parent", scope="trade", manage_keys=True)
    child = api_key_create(user=alice, name="child", scope="read", parent=parent.api_key)

    async def scenario():
        comm = await _open(child.key)
        await database_sync_to_async(api_key_revoke)(api_key=parent.api_key)
        return await _closed_with(comm)

    frames, code = run(scenario())
    assert code == 4001


def test_deactivating_a_user_closes_their_sockets(alice, alice_key):
    async def scenario():
        comm = await _open(alice_key)
        await database_sync_to_async(user_update)(user=alice, is_active=False)
        return await _closed_with(comm)

    frames, code = run(scenario())
    assert code == 4001
    assert frames[-1]["data"]["error"]["code"] == "credentials_revoked"


def test_a_key_expiring_closes_its_socket_when_it_expires(alice):
    issued = api_key_create(user=alice, name="short", scope="trade", expires_at=timezone.now() + timedelta(seconds=1.5))

    async def scenario():
        comm = await _open(issued.key)
        started = time.monotonic()
        frames, code = await _closed_with(comm)
        return frames, code, time.monotonic() - started

    frames, code, took = run(scenario())
    assert code == 4001
    assert 0.5 < took < 5


def test_a_command_is_reauthorized_even_when_the_announcement_was_lost(alice, alice_key, paper):
    async def scenario():
        comm = await _open(alice_key)
        # Revoked behind the announcement's back (another process, a lost message).
        await database_sync_to_async(ApiKey.objects.filter(pk=(await database_sync_to_async(_row)(alice_key)).pk).update)(
            revoked_at=timezone.now()
        )
        await comm.send_json_to({"op": "command", "request_id": "c1", "account_id": paper.pk, "command": "send_order", "payload": RESTING})
        return await _closed_with(comm)

    frames, code = run(scenario())
    assert code == 4001
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["request_id"] == "c1" and frames[0]["data"]["error"]["code"] == "authentication_failed"
    assert not Order.objects.filter(account=paper).exists()


# --- against daphne: both modes; across processes in the production mode ----------------------


@pytest.mark.server
def test_revoked_key_cannot_trade_on_an_open_socket_of_the_server(live_server_process, alice, alice_key, paper):
    """The attack: REST says 401, but the open socket kept acking send_order."""

    async def scenario():
        async with connect(live_server_process.ws_url, additional_headers={"X-API-Key": alice_key}, open_timeout=5) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await database_sync_to_async(api_key_revoke)(api_key=await database_sync_to_async(_row)(alice_key))
            frames = []
            try:
                # In the production mode the server has closed it already (Redis carried the revocation).
                await ws.send(
                    json.dumps({"op": "command", "request_id": "c1", "account_id": paper.pk, "command": "send_order", "payload": RESTING})
                )
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if frame["type"] != "ping":
                        frames.append(frame)
            except ConnectionClosed:
                pass
            return frames, ws.close_code

    frames, code = run(scenario())
    assert code == 4001
    assert "ack" not in [f["type"] for f in frames]
    assert not Order.objects.filter(account=paper).exists()


@pytest.mark.server
def test_revocation_in_another_process_closes_the_socket_without_any_frame_sent(live_server_process, alice, alice_key):
    if not settings.REDIS_URL:
        pytest.skip("across processes the announcement travels through Redis (production mode)")

    async def scenario():
        async with connect(live_server_process.ws_url, additional_headers={"X-API-Key": alice_key}, open_timeout=5) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            started = time.monotonic()
            await database_sync_to_async(api_key_revoke)(api_key=await database_sync_to_async(_row)(alice_key))
            frames = []
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
            except ConnectionClosed:
                pass
            return frames, ws.close_code, time.monotonic() - started

    frames, code, took = run(scenario())
    assert code == 4001 and took < 5
    assert frames[-1]["data"]["error"]["code"] == "credentials_revoked"


# --- Origin: scheme, host and port -----------------------------------------------------------


@pytest.mark.parametrize(
    "origin,host,accepted",
    [
        (b"http://testserver", b"testserver", True),
        (b"http://testserver:80", b"testserver", True),
        (b"https://testserver", b"testserver", False),  # an https page is another origin
        (b"https://testserver:8000", b"testserver:8000", False),
        (b"http://testserver:8001", b"testserver:8000", False),
        (b"http://testserver:8000", b"testserver:8000", True),
        (b"http://evil.example", b"testserver", False),
    ],
)
def test_origin_must_match_scheme_host_and_port(alice_key, origin, host, accepted):
    async def scenario():
        comm = WebsocketCommunicator(
            ROUTER, "/api/v1/ws", headers=[(b"host", host), (b"origin", origin), (b"x-api-key", alice_key.encode())]
        )
        connected, code = await comm.connect(timeout=TIMEOUT)
        await comm.disconnect()
        return connected, code

    connected, code = run(scenario())
    assert connected is accepted, code
    if not accepted:
        assert code == 4003


@pytest.mark.server
def test_https_origin_against_the_http_server_is_refused(live_server_process, alice_key):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                live_server_process.ws_url,
                additional_headers={"X-API-Key": alice_key},
                origin=f"https://127.0.0.1:{live_server_process.port}",  # type: ignore[arg-type]
                open_timeout=5,
            ):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403


def test_failed_websocket_authentications_are_throttled_per_address(settings):
    settings.THROTTLE_AUTH_FAILURES = "2/min"

    async def attempt() -> tuple[list[dict[str, Any]], int]:
        comm = WebsocketCommunicator(ROUTER, "/api/v1/ws", headers=[(b"host", b"testserver"), (b"x-api-key", b"tt_deadbeef_" + b"z" * 43)])
        comm.scope["client"] = ("198.51.100.77", 50000)
        await comm.connect(timeout=TIMEOUT)
        return await _closed_with(comm)

    async def scenario():
        return [await attempt() for _ in range(3)]

    results = run(scenario())
    assert [code for _, code in results] == [4001, 4001, 4001]
    assert [frames[0]["data"]["error"]["code"] for frames, _ in results] == ["authentication_failed", "authentication_failed", "throttled"]
