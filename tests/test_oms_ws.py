"""The OMS account channels and the WebSocket ``command`` op.

Most scenarios run against a real daphne process (``live_server_process``) on
the shared test database. Its channel layer is its own in the embedded mode,
so every state change a subscriber must see is caused through that server
(the WS ``command`` op, or REST with requests), never by services called in
this process. The accounts are ``paper`` accounts: whether or not the paper
broker is installed, a buy limit far below the market either works (``new``)
or stays ``pending_new`` unsent, and the scenarios follow either path.

One scenario runs the gateway in process (``WebsocketCommunicator``) with the
scriptable FakeVenue, to see fills move the positions channel gap-free.

Every receive has a timeout; every scenario runs under a deadline.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest
import requests
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from websockets.asyncio.client import ClientConnection, connect

from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from oms.models import TRANSITIONS, Order
from oms.services.send import order_send
from oms.streams import FundsChannel, OrdersChannel, PositionsChannel
from streams.asyncapi import document
from tests.fakes import FakeVenue
from tests.oms_support import broker_registered, order_spec
from tests.servers import ServerProcess


def _send_market(account, actor, market):
    return order_send(account=account, actor=actor, source="rest", spec=order_spec(**market))


# Upper bounds for a loaded 2-core CI machine, where the Celery worker may take
# seconds to send; a healthy run finishes far sooner.
RECV_TIMEOUT = 15.0
SCENARIO_TIMEOUT = 90.0

# A buy far below any market: it works at a venue, it never fills.
RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


def run(scenario: Any) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(scenario, SCENARIO_TIMEOUT)
        finally:
            # The thread that ran database_sync_to_async keeps its connection
            # (CONN_MAX_AGE); close it, or the test database cannot be dropped.
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(main())


def ws_connect(server: ServerProcess, key: str) -> AbstractAsyncContextManager[ClientConnection]:
    return connect(server.ws_url, additional_headers={"X-API-Key": key}, open_timeout=5, close_timeout=2)


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def recv(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    """The next frame that is not a server ping (pings are answered)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if frame.get("type") == "ping":
            await send(ws, {"op": "pong", "data": frame["data"]})
            continue
        return frame


async def hello(ws: ClientConnection) -> None:
    frame = await recv(ws)
    assert frame["type"] == "hello", frame


async def subscribe(ws: ClientConnection, channel: str) -> dict[str, Any]:
    await send(ws, {"op": "subscribe", "channel": channel, "request_id": f"sub-{channel}"})
    subscribed = await recv(ws)
    assert subscribed["type"] == "subscribed" and subscribed["channel"] == channel, subscribed
    snapshot = await recv(ws)
    assert snapshot["type"] == "snapshot" and snapshot["channel"] == channel, snapshot
    return snapshot


class Inbox:
    """Frames of one connection, sorted: acks/errors by request id, updates in arrival order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.updates: list[dict[str, Any]] = []
        self.answers: dict[Any, dict[str, Any]] = {}

    async def pump(self, timeout: float = RECV_TIMEOUT) -> None:
        frame = await recv(self.ws, timeout)
        if frame["type"] == "update":
            self.updates.append(frame)
        else:
            self.answers[frame.get("request_id")] = frame

    async def answer(self, request_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + RECV_TIMEOUT
        while request_id not in self.answers:
            await self.pump(max(0.01, deadline - time.monotonic()))
        return self.answers.pop(request_id)

    async def command(self, request_id: str, **frame: Any) -> dict[str, Any]:
        await send(self.ws, {"op": "command", "request_id": request_id, **frame})
        return await self.answer(request_id)

    async def updates_until(self, done: Any, timeout: float = RECV_TIMEOUT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not any(done(u) for u in self.updates):
            await self.pump(max(0.01, deadline - time.monotonic()))
        return self.updates

    async def quiet(self, seconds: float = 0.5) -> None:
        """Collect whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await self.pump(left)
            except TimeoutError:
                return


def assert_error(frame: dict[str, Any], code: str, request_id: Any) -> None:
    assert frame["type"] == "error", frame
    assert frame["request_id"] == request_id
    assert frame["data"]["error"]["code"] == code, frame


def assert_gap_free(snapshot_seq: int, updates: list[dict[str, Any]]) -> None:
    assert [u["seq"] for u in updates] == list(range(snapshot_seq + 1, snapshot_seq + 1 + len(updates))), [u["seq"] for u in updates]


def assert_legal(statuses: list[str]) -> None:
    for before, after in zip(statuses, statuses[1:], strict=False):
        assert after in TRANSITIONS[before] or after == before, statuses


def settled(order_id: int, timeout: float = 20.0) -> Order:
    """The order once no send is in flight (unsent, or the broker has answered)."""
    deadline = time.monotonic() + timeout
    while True:
        order = Order.objects.get(pk=order_id)
        if order.status != "pending_new" or order.sent_at is None or time.monotonic() > deadline:
            return order
        time.sleep(0.05)


@pytest.fixture
def instrument(db) -> None:
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))


@pytest.fixture
def paper(alice, instrument) -> BrokerAccount:
    return broker_account_create(owner=alice, kind="paper", label="paper")


@pytest.fixture
def bobs_paper(bob, instrument) -> BrokerAccount:
    return broker_account_create(owner=bob, kind="paper", label="bob paper")


# --- against daphne ----------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_orders_channel_snapshot_then_ws_commands_give_gap_free_updates(live_server_process, alice_key, paper):
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with ws_connect(live_server_process, alice_key) as ws:
            await hello(ws)
            snapshot = await subscribe(ws, f"orders:{paper.pk}")
            inbox = Inbox(ws)
            sent = await inbox.command("send-1", account_id=paper.pk, command="send_order", payload=RESTING)
            assert sent["type"] == "ack", sent
            await inbox.updates_until(lambda u: u["data"]["id"] == sent["data"]["order_id"])
            order = await database_sync_to_async(settled)(sent["data"]["order_id"])
            canceled = await inbox.command("cancel-1", account_id=paper.pk, command="cancel_order", payload={"order_id": order.pk})
            await inbox.updates_until(lambda u: u["data"]["status"] == "canceled")
            await inbox.quiet()
            again = await subscribe(ws, f"orders:{paper.pk}")
            return snapshot, inbox.updates, sent, canceled, again

    snapshot, updates, sent, canceled, again = run(scenario())
    assert snapshot["data"] == [] and isinstance(snapshot["seq"], int)
    assert sent["data"] == {
        "request_id": "send-1",
        "command": "send_order",
        "ok": True,
        "order_id": sent["data"]["order_id"],
        "client_order_id": sent["data"]["client_order_id"],
        "status": "pending_new",
        "error": None,
    }
    assert canceled["type"] == "ack" and canceled["data"]["command"] == "cancel_order"
    assert_gap_free(snapshot["seq"], updates)
    statuses = [u["data"]["status"] for u in updates]
    assert statuses[0] == "pending_new" and statuses[-1] == "canceled"
    assert_legal(statuses)
    assert {u["data"]["id"] for u in updates} == {sent["data"]["order_id"]}
    assert updates[0]["data"]["source"] == "ws" and updates[0]["channel"] == f"orders:{paper.pk}"
    # A fresh snapshot continues where the updates ended: nothing open, the same seq.
    assert again["seq"] == updates[-1]["seq"] and again["data"] == []
    assert BrokerAccount.objects.get(pk=paper.pk).orders_seq == updates[-1]["seq"]


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_rest_commands_through_the_server_reach_the_subscriber(live_server_process, alice_key, paper):
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], list[int]]:
        async with ws_connect(live_server_process, alice_key) as ws:
            await hello(ws)
            snapshot = await subscribe(ws, f"orders:{paper.pk}")
            inbox = Inbox(ws)
            ids = []
            for index in range(3):
                response = await asyncio.to_thread(
                    requests.post,
                    f"{live_server_process.url}/api/v1/accounts/{paper.pk}/orders",
                    json={**RESTING, "client_order_id": f"rest-{index}"},
                    headers={"X-API-Key": alice_key},
                    timeout=10,
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["order_id"])
            await inbox.updates_until(lambda u: u["data"]["id"] == ids[-1])
            await inbox.quiet()
            return snapshot, inbox.updates, ids

    snapshot, updates, ids = run(scenario())
    assert_gap_free(snapshot["seq"], updates)
    assert [u["data"]["id"] for u in updates if u["data"]["status"] == "pending_new"] == ids
    for order_id in ids:
        assert_legal([u["data"]["status"] for u in updates if u["data"]["id"] == order_id])


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_snapshot_holds_the_open_orders_at_its_seq(live_server_process, alice_key, paper):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with ws_connect(live_server_process, alice_key) as ws:
            await hello(ws)
            inbox = Inbox(ws)
            sent = await inbox.command("s", account_id=paper.pk, command="send_order", payload=RESTING)
            await database_sync_to_async(settled)(sent["data"]["order_id"])
            orders = await subscribe(ws, f"orders:{paper.pk}")
            positions = await subscribe(ws, f"positions:{paper.pk}")
            funds = await subscribe(ws, f"funds:{paper.pk}")
            return orders, positions, funds

    orders, positions, funds = run(scenario())
    account = BrokerAccount.objects.get(pk=paper.pk)
    assert orders["seq"] == account.orders_seq and orders["seq"] >= 1
    [order] = orders["data"]
    assert order["status"] in ("pending_new", "new") and order["price"] == "1"
    assert positions["seq"] == account.positions_seq and positions["data"] == []
    assert funds["seq"] == account.funds_seq
    assert funds["data"] is None or funds["data"]["account_id"] == paper.pk  # null while no paper broker answers


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_another_users_account_channels_and_commands_are_refused(live_server_process, alice_key, paper, bobs_paper):
    async def scenario() -> list[dict[str, Any]]:
        async with ws_connect(live_server_process, alice_key) as ws:
            await hello(ws)
            frames = []
            for channel in (
                f"orders:{bobs_paper.pk}",
                f"positions:{bobs_paper.pk}",
                f"funds:{bobs_paper.pk}",
                "orders:abc",
                "orders:999999",
            ):
                await send(ws, {"op": "subscribe", "channel": channel, "request_id": channel})
                frames.append(await recv(ws))
            await send(ws, {"op": "command", "request_id": "c", "account_id": bobs_paper.pk, "command": "send_order", "payload": RESTING})
            frames.append(await recv(ws))
            return frames

    frames = run(scenario())
    for frame, channel in zip(frames[:3], ("orders", "positions", "funds"), strict=True):
        assert_error(frame, "not_found", f"{channel}:{bobs_paper.pk}")
    assert_error(frames[3], "unknown_channel", "orders:abc")
    assert_error(frames[4], "not_found", "orders:999999")
    assert_error(frames[5], "not_found", "c")
    assert Order.objects.count() == 0


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_read_scope_key_command_is_an_error_and_sends_nothing(live_server_process, alice_read_key, paper):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ws_connect(live_server_process, alice_read_key) as ws:
            await hello(ws)
            snapshot = await subscribe(ws, f"orders:{paper.pk}")  # reading is allowed
            await send(ws, {"op": "command", "request_id": "r", "account_id": paper.pk, "command": "send_order", "payload": RESTING})
            return snapshot, await recv(ws)

    snapshot, frame = run(scenario())
    assert snapshot["data"] == []
    assert_error(frame, "permission_denied", "r")
    assert Order.objects.count() == 0


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_ws_command_refusals_and_idempotency(live_server_process, alice_key, paper):
    async def scenario() -> dict[str, dict[str, Any]]:
        async with ws_connect(live_server_process, alice_key) as ws:
            await hello(ws)
            inbox = Inbox(ws)
            frames = {
                "bad-qty": await inbox.command("bad-qty", account_id=paper.pk, command="send_order", payload={**RESTING, "qty": "0"}),
                "unknown": await inbox.command("unknown", account_id=paper.pk, command="send_order", payload={**RESTING, "x": 1}),
                "no-such": await inbox.command("no-such", account_id=paper.pk, command="fly", payload={}),
                "bad-key": await inbox.command("bad-key", account_id=paper.pk, command="cancel_all", idempotency_key=5),
                "first": await inbox.command("first", account_id=paper.pk, command="send_order", payload=RESTING, idempotency_key="ws-1"),
                "replay": await inbox.command("first", account_id=paper.pk, command="send_order", payload=RESTING, idempotency_key="ws-1"),
                "other": await inbox.command(
                    "first", account_id=paper.pk, command="send_order", payload={**RESTING, "qty": "2"}, idempotency_key="ws-1"
                ),
            }
            return frames

    frames = run(scenario())
    assert_error(frames["bad-qty"], "validation_error", "bad-qty")
    assert "payload.qty" in frames["bad-qty"]["data"]["error"]["fields"]  # the path in the frame
    assert_error(frames["unknown"], "validation_error", "unknown")
    assert_error(frames["no-such"], "validation_error", "no-such")
    assert_error(frames["bad-key"], "validation_error", "bad-key")
    assert frames["first"]["type"] == "ack" and frames["replay"] == frames["first"]
    assert_error(frames["other"], "idempotency_mismatch", "first")
    assert Order.objects.count() == 1


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_csv_export_streams_through_daphne(live_server_process, alice_key, paper):
    for index in range(3):
        response = requests.post(
            f"{live_server_process.url}/api/v1/accounts/{paper.pk}/orders",
            json={**RESTING, "client_order_id": f"csv-{index}"},
            headers={"X-API-Key": alice_key},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    response = requests.get(
        f"{live_server_process.url}/api/v1/accounts/{paper.pk}/orders",
        params={"format": "csv"},
        headers={"X-API-Key": alice_key},
        timeout=10,
        stream=True,
    )
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:3] == ["id", "account_id", "client_order_id"]
    assert [row[2] for row in rows[1:]] == ["csv-0", "csv-1", "csv-2"]


def test_asyncapi_documents_the_account_channels():
    channels = document()["channels"]
    for prefix in ("orders", "positions", "funds"):
        entry = channels[f"{prefix}:{{account_id}}"]
        assert "gap-free" in entry["description"].lower()
        assert entry["subscribe"]["message"]["oneOf"]


def test_account_channel_names_are_canonical():
    assert OrdersChannel().canonical("orders:007") == "orders:7"
    assert PositionsChannel().canonical("positions:12") == "positions:12"
    assert FundsChannel().canonical("funds:x") == "funds:x"  # refused at authorize


# --- in process, with fills ------------------------------------------------------------------------


@pytest.fixture
def fresh_channel_layer() -> Iterator[None]:
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture
def venue() -> Iterator[FakeVenue]:
    from config.celery import app

    venue = FakeVenue(mode="fill")
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    with broker_registered("kis", venue.broker):
        yield venue
    app.conf.task_always_eager = eager


@pytest.mark.django_db(transaction=True)
def test_fills_move_the_positions_and_funds_channels_gap_free(fresh_channel_layer, venue, alice, instrument):
    from streams.routing import websocket_urlpatterns

    account = broker_account_create(
        owner=alice, kind="kis", base_currency="USD", label="fake", credentials={"app_key": "AK", "app_secret": "SECRET"}
    )
    market = {"symbol": "AAPL", "side": "buy", "order_type": "market", "qty": "2"}

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        comm = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        comm.scope["user"] = alice
        try:
            connected, _ = await comm.connect(timeout=RECV_TIMEOUT)
            assert connected
            assert (await comm.receive_json_from(timeout=RECV_TIMEOUT))["type"] == "hello"
            snapshots = {}
            for channel in (f"positions:{account.pk}", f"funds:{account.pk}"):
                await comm.send_json_to({"op": "subscribe", "channel": channel})
                assert (await comm.receive_json_from(timeout=RECV_TIMEOUT))["type"] == "subscribed"
                snapshots[channel] = await comm.receive_json_from(timeout=RECV_TIMEOUT)
            for _ in range(3):
                await database_sync_to_async(_send_market)(account, alice, market)
            frames = []
            while not await comm.receive_nothing(timeout=0.5, interval=0.01):
                frames.append(await comm.receive_json_from(timeout=RECV_TIMEOUT))
            return snapshots[f"positions:{account.pk}"], snapshots[f"funds:{account.pk}"], frames
        finally:
            await comm.disconnect()
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()

    positions, funds, frames = run(scenario())
    assert positions["data"] == [] and funds["data"]["cash"] == "1000000"
    position_updates = [f for f in frames if f["channel"] == f"positions:{account.pk}"]
    funds_updates = [f for f in frames if f["channel"] == f"funds:{account.pk}"]
    assert_gap_free(positions["seq"], position_updates)
    assert [u["data"]["qty"] for u in position_updates] == ["2", "4", "6"]
    assert_gap_free(funds["seq"], funds_updates)
    assert len(funds_updates) == 3
