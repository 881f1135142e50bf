"""The upstream CCXT OMS's WebSocket frames on the gateway (``streams.upstream``):
``x-account-id`` on the handshake as the default account; ``ping``,
``subscribe``, ``position/command`` and ``ccxt/call`` answered in the
upstream's ``ws_response`` shape, over a real daphne (the protocol matters:
headers on the handshake, the heartbeat). The ccxt calls against the fake
exchange are in ``tests/test_ccxt_passthrough.py``."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from websockets.asyncio.client import ClientConnection, connect

from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from oms.models import Order
from streams.asyncapi import document
from tests.servers import ServerProcess

RECV_TIMEOUT = 15.0
SCENARIO_TIMEOUT = 90.0
RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


def run(scenario: Any) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(scenario, SCENARIO_TIMEOUT)
        finally:
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(main())


def upstream_connect(server: ServerProcess, key: str, account_id: int | str | None) -> AbstractAsyncContextManager[ClientConnection]:
    headers = {"x-api-key": key}
    if account_id is not None:
        headers["x-account-id"] = str(account_id)
    return connect(server.ws_url, additional_headers=headers, open_timeout=5, close_timeout=2)


async def answer(ws: ClientConnection, request_id: Any, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    """The upstream answer to ``request_id`` (the gateway's own frames are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if frame.get("type") == "ws_response" and frame.get("id") == request_id:
            return frame


async def frames_until(ws: ClientConnection, done: Any, timeout: float = RECV_TIMEOUT) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while not any(done(f) for f in seen):
        seen.append(json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))))
    return seen


def assert_upstream_error(frame: dict[str, Any], code: str) -> None:
    assert frame["type"] == "ws_response" and frame["ok"] is False and frame["event"] == "error", frame
    assert frame["payload"]["code"] == code, frame
    assert frame["payload"]["error"]["code"] == code  # the one error shape inside
    assert frame["payload"]["error"]["message"]


@pytest.fixture
def instrument(db) -> None:
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))


@pytest.fixture
def paper(alice, instrument) -> BrokerAccount:
    return broker_account_create(owner=alice, kind="paper", label="paper")


@pytest.fixture
def bobs_paper(bob, instrument) -> BrokerAccount:
    return broker_account_create(owner=bob, kind="paper", label="bob paper")


pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_position_command_with_the_header_account_creates_the_order(live_server_process, alice_key, paper):
    async def scenario() -> dict[str, Any]:
        async with upstream_connect(live_server_process, alice_key, paper.pk) as ws:
            await ws.send(
                json.dumps(
                    {
                        "id": "req-1",
                        "type": "position_command",
                        "namespace": "position",
                        "action": "command",
                        "payload": {"command": "send_order", "request_id": "r-1", "payload": RESTING},
                    }
                )
            )
            return await answer(ws, "req-1")

    frame = run(scenario())
    assert frame["ok"] is True, frame
    assert (frame["type"], frame["namespace"], frame["action"], frame["event"]) == ("ws_response", "position", "command", "command_result")
    result = frame["payload"]
    assert result["command"] == "send_order" and result["request_id"] == "r-1"
    order = Order.objects.get(pk=result["order_id"])
    assert order.account_id == paper.pk and order.source == "ws"
    assert (order.symbol, order.side, order.qty, order.price) == ("AAPL", "buy", Decimal(1), Decimal("1.00"))


def test_position_command_is_authorized_like_the_command_op(live_server_process, alice_key, alice_read_key, paper, bobs_paper):
    """Another user's account (header or payload) answers not_found and sends
    nothing; a read-scope key is refused; no account named is a clear error."""

    async def scenario() -> list[dict[str, Any]]:
        frames = []
        command = {"command": "send_order", "payload": RESTING}
        async with upstream_connect(live_server_process, alice_key, bobs_paper.pk) as ws:
            await ws.send(json.dumps({"id": 1, "namespace": "position", "action": "command", "payload": command}))
            frames.append(await answer(ws, 1))
        async with upstream_connect(live_server_process, alice_key, paper.pk) as ws:
            await ws.send(
                json.dumps({"id": 2, "namespace": "position", "action": "command", "payload": {**command, "account_id": bobs_paper.pk}})
            )
            frames.append(await answer(ws, 2))
        async with upstream_connect(live_server_process, alice_read_key, paper.pk) as ws:
            await ws.send(json.dumps({"id": 3, "namespace": "position", "action": "command", "payload": command}))
            frames.append(await answer(ws, 3))
        async with upstream_connect(live_server_process, alice_key, None) as ws:
            await ws.send(json.dumps({"id": 4, "namespace": "position", "action": "command", "payload": command}))
            frames.append(await answer(ws, 4))
            await ws.send(json.dumps({"id": 5, "namespace": "position", "action": "command", "payload": "send_order"}))
            frames.append(await answer(ws, 5))
            await ws.send(
                json.dumps(
                    {
                        "id": 6,
                        "namespace": "position",
                        "action": "command",
                        "payload": {"command": "send_order", "account_id": paper.pk, "payload": {**RESTING, "qty": "-1"}},
                    }
                )
            )
            frames.append(await answer(ws, 6))
            await ws.send(json.dumps({"id": 7, "namespace": "position", "action": "explode", "payload": {}}))
            frames.append(await answer(ws, 7))
        return frames

    frames = run(scenario())
    assert_upstream_error(frames[0], "not_found")
    assert_upstream_error(frames[1], "not_found")
    assert_upstream_error(frames[2], "permission_denied")
    assert_upstream_error(frames[3], "missing_account_id")
    assert_upstream_error(frames[4], "validation_error")
    assert_upstream_error(frames[5], "validation_error")
    assert frames[5]["payload"]["error"]["fields"]
    assert_upstream_error(frames[6], "unsupported_action")
    assert not Order.objects.exists()


def test_ping_answers_pong_and_keeps_the_connection_past_the_heartbeat(live_server_process, alice_key, paper):
    """An upstream client never sends the pong op: its pings keep it connected
    (the server's heartbeat is 2 s, its pong timeout 2 s on this server)."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with upstream_connect(live_server_process, alice_key, paper.pk) as ws:
            await ws.send(json.dumps({"id": "p-0", "action": "ping"}))
            first = await answer(ws, "p-0")
            deadline = time.monotonic() + 7
            n = 0
            while time.monotonic() < deadline:
                n += 1
                await ws.send(json.dumps({"id": f"p-{n}", "action": "ping"}))
                await answer(ws, f"p-{n}")
                await asyncio.sleep(0.5)
            await ws.send(json.dumps({"id": "last", "namespace": "position", "action": "ping"}))
            return first, await answer(ws, "last")

    first, last = run(scenario())
    assert first == {"id": "p-0", "ok": True, "type": "ws_response", "namespace": "", "action": "ping", "event": "pong", "payload": {}}
    assert last["event"] == "pong" and last["namespace"] == "position"


def test_subscribe_maps_onto_the_account_channels(live_server_process, alice_key, paper, bobs_paper):
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        async with upstream_connect(live_server_process, alice_key, paper.pk) as ws:
            await ws.send(json.dumps({"id": "s-1", "action": "subscribe", "payload": {"namespaces": ["position", "ccxt"]}}))
            subscribed = await answer(ws, "s-1")
            seen: list[dict[str, Any]] = []
            while sum(f.get("type") == "snapshot" for f in seen) < 3:
                seen += await frames_until(ws, lambda f: f.get("type") == "snapshot")
            snapshots = [f for f in seen if f.get("type") == "snapshot"]
            # A command from this connection reaches its orders channel.
            await ws.send(
                json.dumps(
                    {"id": "c-1", "namespace": "position", "action": "command", "payload": {"command": "send_order", "payload": RESTING}}
                )
            )
            seen = await frames_until(ws, lambda f: f.get("type") == "update" and f["channel"] == f"orders:{paper.pk}")
            update = next(f for f in seen if f.get("type") == "update")
            await ws.send(json.dumps({"id": "s-2", "action": "subscribe", "payload": {"account_ids": [paper.pk, bobs_paper.pk]}}))
            refused = await answer(ws, "s-2")
            return subscribed, snapshots, update, refused

    subscribed, snapshots, update, refused = run(scenario())
    assert subscribed["ok"] is True and subscribed["event"] == "subscribed" and subscribed["namespace"] == "system"
    assert subscribed["payload"]["account_ids"] == [paper.pk]
    assert subscribed["payload"]["namespaces"] == ["ccxt", "position"]
    assert {s["channel"] for s in snapshots} == {f"orders:{paper.pk}", f"positions:{paper.pk}", f"funds:{paper.pk}"}
    assert update["data"]["symbol"] == "AAPL"
    assert_upstream_error(refused, "not_found")  # bob's account: none of the two subscribed


def test_ccxt_call_on_a_paper_account_is_a_clear_error(live_server_process, alice_key, alice_read_key, paper):
    async def scenario() -> list[dict[str, Any]]:
        async with upstream_connect(live_server_process, alice_key, paper.pk) as ws:
            await ws.send(
                json.dumps({"id": "x", "namespace": "ccxt", "action": "call", "payload": {"func": "fetch_ticker", "args": ["BTC/USDT"]}})
            )
            not_ccxt = await answer(ws, "x")
            await ws.send(
                json.dumps(
                    {
                        "id": "y",
                        "namespace": "ccxt",
                        "action": "call",
                        "payload": {"func": "create_order", "args": ["BTC/USDT", "market", "buy", 1]},
                    }
                )
            )
            refused = await answer(ws, "y")
        async with upstream_connect(live_server_process, alice_read_key, paper.pk) as ws:
            await ws.send(
                json.dumps({"id": "z", "namespace": "ccxt", "action": "call", "payload": {"func": "fetch_ticker", "args": ["BTC/USDT"]}})
            )
            read_scope = await answer(ws, "z")
        return [not_ccxt, refused, read_scope]

    not_ccxt, refused, read_scope = run(scenario())
    assert_upstream_error(not_ccxt, "not_a_ccxt_account")
    assert_upstream_error(refused, "ccxt_call_refused")
    assert "OMS command" in refused["payload"]["error"]["message"]
    assert_upstream_error(read_scope, "permission_denied")


def test_the_gateway_op_frames_still_work_beside_the_upstream_ones(live_server_process, alice_key, paper):
    async def scenario() -> list[dict[str, Any]]:
        async with upstream_connect(live_server_process, alice_key, paper.pk) as ws:
            await ws.send(json.dumps({"op": "ping", "request_id": "g"}))
            pong = await frames_until(ws, lambda f: f.get("type") == "pong")
            await ws.send(json.dumps({"action": 5}))
            bad = await frames_until(ws, lambda f: f.get("type") == "error")
            return [pong[-1], bad[-1]]

    pong, bad = run(scenario())
    assert pong["request_id"] == "g"
    assert bad["data"]["error"]["code"] == "bad_frame"


def test_asyncapi_documents_the_upstream_frames():
    doc = document()
    messages = doc["components"]["messages"]
    for name in ("upstream.ping", "upstream.subscribe", "upstream.position.command", "upstream.ccxt.call", "upstream.response"):
        assert name in messages, name
    endpoint = doc["channels"]["/api/v1/ws"]
    published = [m["$ref"].rsplit("/", 1)[-1] for m in endpoint["publish"]["message"]["oneOf"]]
    assert "upstream.ccxt.call" in published
    assert "x-account-id" in endpoint["description"]
