"""The upstream Kite backend's order WebSocket paths (``/api/v1/ws/orders``
and ``/api/v1/ws/orders/{account_id}``) and ``GET /api/v1/ws/status``,
answered by a real daphne: an order placed over REST arrives as the
upstream's ``order_update``, a text ``ping`` gets ``pong``, another user's
account is closed as no account."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from streams.frames import CLOSE_NOT_FOUND

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 40))


def alias(server: Any, path: str, key: str) -> Any:
    url = f"ws://127.0.0.1:{server.port}/api/v1/ws/orders{path}"
    return connect(url, additional_headers={"X-API-Key": key}, open_timeout=5, close_timeout=2)


async def next_json(ws: ClientConnection, want: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            text = await ws.recv()
            frame = json.loads(text)
            if isinstance(frame, dict) and frame.get("type") == want:
                return frame


def place(server: Any, key: str, account_id: int) -> dict[str, Any]:
    response = requests.post(f"{server.url}/api/v1/accounts/{account_id}/orders", json=RESTING, headers={"X-API-Key": key}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture
def world(alice, bob) -> dict[str, Any]:
    instrument_upsert(symbol="AAPL", type="stock", tick_size="0.01", lot_size=1)
    return {
        "first": broker_account_create(owner=alice, kind="paper", label="one").pk,
        "second": broker_account_create(owner=alice, kind="paper", label="two").pk,
        "bob": broker_account_create(owner=bob, kind="paper", label="bob").pk,
    }


def test_an_order_placed_over_rest_arrives_as_order_update_and_ping_gets_pong(live_server_process, world, alice_key) -> None:
    server = live_server_process

    async def scenario() -> tuple[Any, ...]:
        async with alias(server, f"/{world['first']}", alice_key) as ws:
            snapshots = [await next_json(ws, "snapshot"), await next_json(ws, "snapshot")]
            await ws.send("ping")
            async with asyncio.timeout(10):
                while (pong := await ws.recv()) != "pong":
                    pass
            placed = await asyncio.to_thread(place, server, alice_key, world["first"])
            update = await next_json(ws, "order_update")
            status = await asyncio.to_thread(requests.get, f"{server.url}/api/v1/ws/status", headers={"X-API-Key": alice_key}, timeout=10)
            return snapshots, pong, placed, update, status.json()

    snapshots, pong, placed, update, status = run(scenario())
    assert sorted(s["channel"] for s in snapshots) == sorted([f"orders:{world['first']}", f"positions:{world['first']}"])
    assert pong == "pong"
    assert update["account_id"] == world["first"]
    assert update["data"]["id"] == placed["order_id"] and update["data"]["symbol"] == "AAPL"
    assert status["endpoints"]["orders"] >= 1
    counts = {a["account_id"]: a["connections"] for a in status["accounts"]}
    assert counts == {world["first"]: 1, world["second"]: 0}  # alice's accounts only, never bob's
    assert status["connections"] >= status["endpoints"]["orders"]


def test_the_all_accounts_path_streams_every_account_of_the_caller(live_server_process, world, alice_key) -> None:
    server = live_server_process

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        async with alias(server, "", alice_key) as ws:
            channels = [(await next_json(ws, "snapshot"))["channel"] for _ in range(4)]
            placed = await asyncio.to_thread(place, server, alice_key, world["second"])
            update = await next_json(ws, "order_update")
            assert update["data"]["id"] == placed["order_id"]
            return channels, update

    channels, update = run(scenario())
    assert sorted(channels) == sorted(f"{p}:{world[a]}" for p in ("orders", "positions") for a in ("first", "second"))
    assert update["account_id"] == world["second"] and update["type"] == "order_update"


def test_an_account_added_after_connecting_streams_on_the_open_all_accounts_socket(live_server_process, world, alice_key, bob_key) -> None:
    server = live_server_process

    def add_account(key: str, label: str) -> int:
        response = requests.post(
            f"{server.url}/api/v1/accounts", json={"kind": "paper", "label": label}, headers={"X-API-Key": key}, timeout=30
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def scenario() -> tuple[int, int, list[str], dict[str, Any], list[dict[str, Any]]]:
        async with alias(server, "", alice_key) as ws:
            for _ in range(4):
                await next_json(ws, "snapshot")
            bobs = await asyncio.to_thread(add_account, bob_key, "bob's new")
            added = await asyncio.to_thread(add_account, alice_key, "three")
            channels = [(await next_json(ws, "snapshot"))["channel"] for _ in range(2)]
            placed = await asyncio.to_thread(place, server, alice_key, added)
            update = await next_json(ws, "order_update")
            assert update["data"]["id"] == placed["order_id"]
            await asyncio.to_thread(place, server, bob_key, bobs)
            await asyncio.to_thread(place, server, alice_key, world["first"])
            later = [await next_json(ws, "order_update")]
            while later[-1]["account_id"] != world["first"]:
                later.append(await next_json(ws, "order_update"))
            status = await asyncio.to_thread(requests.get, f"{server.url}/api/v1/ws/status", headers={"X-API-Key": alice_key}, timeout=10)
            counts = {a["account_id"]: a["connections"] for a in status.json()["accounts"]}
            assert counts[added] == 1
            return added, bobs, channels, update, later

    added, bobs, channels, update, later = run(scenario())
    assert sorted(channels) == [f"orders:{added}", f"positions:{added}"]
    assert update["account_id"] == added and update["type"] == "order_update"
    assert bobs not in {u["account_id"] for u in later}  # bob's new account's order never arrives here


@pytest.mark.parametrize("whose", ["bob", "nobody", "junk"])
def test_another_users_account_is_closed_as_no_account(live_server_process, world, alice_key, whose) -> None:
    server = live_server_process
    path = {"bob": f"/{world['bob']}", "nobody": "/987654321", "junk": "/x1"}[whose]

    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        frames = []
        async with alias(server, path, alice_key) as ws:
            try:
                async with asyncio.timeout(10):
                    while True:
                        frames.append(json.loads(await ws.recv()))
            except ConnectionClosed:
                pass
            return frames, ws.close_code

    frames, code = run(scenario())
    errors = [f["data"]["error"]["code"] for f in frames if f["type"] == "error"]
    assert errors == ["not_found"], frames
    assert not [f for f in frames if f["type"] in ("snapshot", "order_update")]
    assert code == CLOSE_NOT_FOUND


def test_ws_status_needs_credentials(live_server_process) -> None:
    response = requests.get(f"{live_server_process.url}/api/v1/ws/status", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_closed_connection_is_no_longer_counted(live_server_process, world, alice_key) -> None:
    server = live_server_process

    async def scenario() -> None:
        async with alias(server, f"/{world['second']}", alice_key) as ws:
            await next_json(ws, "snapshot")

    run(scenario())
    deadline = time.monotonic() + 10
    while True:
        status = requests.get(f"{server.url}/api/v1/ws/status", headers={"X-API-Key": alice_key}, timeout=10).json()
        counts = {a["account_id"]: a["connections"] for a in status["accounts"]}
        if counts[world["second"]] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts[world["second"]] == 0
