"""The WebSocket gateway against a real daphne process (DESIGN.md "Streams").

Every scenario runs in its own event loop with a deadline, every receive has
a timeout, so a broken server fails a test instead of hanging it. Test data is
committed (``transaction=True``) because the server reads it from its own
connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from tests.servers import ServerProcess, run_daphne

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

RECV_TIMEOUT = 5.0
SCENARIO_TIMEOUT = 30.0
HEARTBEAT = 2.0  # WS_HEARTBEAT_INTERVAL and WS_PONG_TIMEOUT of live_server_process
SYSTEM_INTERVAL = 0.5


def run(scenario: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT))


def ws_connect(
    server: ServerProcess,
    *,
    key: str | None = None,
    origin: str | None = None,
    session: str | None = None,
    max_queue: int = 64,
) -> AbstractAsyncContextManager[ClientConnection]:
    headers = {}
    if key is not None:
        headers["X-API-Key"] = key
    if session is not None:
        headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={session}"
    return connect(
        server.ws_url,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=5,
        close_timeout=2,
        max_queue=max_queue,
    )


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))


async def recv(ws: ClientConnection, timeout: float = RECV_TIMEOUT, *, answer_pings: bool = True) -> dict[str, Any]:
    """The next frame; server pings are answered and skipped unless asked for."""
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        frame = json.loads(raw)
        if answer_pings and frame.get("type") == "ping":
            await send(ws, {"op": "pong", "data": frame["data"]})
            continue
        return frame


async def recv_until(ws: ClientConnection, match: Callable[[dict[str, Any]], bool], timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - time.monotonic()))
        if match(frame):
            return frame


async def frames_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every non-ping frame received during ``seconds`` (pings answered)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(await recv(ws, left))
        except TimeoutError:
            break
    return out


async def drain_until_closed(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> list[dict[str, Any]]:
    """Read (without answering pings) until the server closes; the frames read."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while True:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))))
    return out


def assert_error(frame: dict[str, Any], code: str, request_id: Any = None) -> None:
    """The error frame shape: {"type", "request_id", "data": {"error": {code, message, fields, request_id}}}."""
    assert frame["type"] == "error", frame
    assert frame["request_id"] == request_id
    assert set(frame["data"]) == {"error"}
    error = frame["data"]["error"]
    assert set(error) == {"code", "message", "fields", "request_id"}
    assert error["code"] == code, frame
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    assert error["request_id"] == request_id


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


GATEWAY_LOGGERS = ("streams", "daphne", "asyncio", "channels", "django.channels")


@pytest.fixture(autouse=True)
def gateway_logs_no_errors(request) -> Iterator[None]:
    """The servers this test used logged no gateway error while it ran (an
    exception in the consumer would otherwise only show as a closed socket)."""
    names = [name for name in ("live_server_process", "short_auth_server") if name in request.fixturenames]
    servers = [request.getfixturevalue(name) for name in names]
    offsets = [server.log_path.stat().st_size for server in servers]
    yield
    for server, offset in zip(servers, offsets, strict=True):
        with open(server.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        errors = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                if "streams/" in line and "File " in line:  # a bare traceback through our code
                    errors.append(line)
                continue
            if (
                isinstance(record, dict)
                and record.get("level") in ("ERROR", "CRITICAL")
                and str(record.get("logger", "")).startswith(GATEWAY_LOGGERS)
            ):
                errors.append(line)
        assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def short_auth_server(django_db_setup, django_db_blocker, server_tmp) -> Iterator[ServerProcess]:
    """A second server that gives unauthenticated connections one second."""
    with django_db_blocker.unblock(), run_daphne(server_tmp, WS_AUTH_TIMEOUT="1", SYSTEM_STATUS_INTERVAL="0.5") as server:
        yield server


# --- authentication ------------------------------------------------------------------


def test_api_key_header_without_origin_gets_hello(live_server_process, alice, alice_key):
    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            return await recv(ws)

    hello = run(scenario())
    assert hello["type"] == "hello"
    assert hello["request_id"] is None
    assert hello["data"]["server_version"] == settings.VERSION
    assert hello["data"]["user"] == {"id": alice.pk, "email": "alice@example.com"}
    assert hello["data"]["auth"] == "api_key"
    assert hello["data"]["scope"] == "trade"
    assert hello["data"]["heartbeat_interval"] == HEARTBEAT


def test_auth_frame_with_key_gets_hello_echoing_request_id(live_server_process, alice, alice_read_key):
    async def scenario():
        async with ws_connect(live_server_process) as ws:
            await send(ws, {"op": "auth", "api_key": alice_read_key, "request_id": "auth-1"})
            return await recv(ws)

    hello = run(scenario())
    assert hello["type"] == "hello"
    assert hello["request_id"] == "auth-1"
    assert hello["data"]["user"]["id"] == alice.pk
    assert hello["data"]["auth"] == "api_key"
    assert hello["data"]["scope"] == "read"


@pytest.fixture
def refused_key(request, alice) -> str:
    from accounts.services import api_key_create, api_key_revoke

    if request.param == "garbage":
        return "tt_nothing0_notasecret"
    if request.param == "expired":
        return request.getfixturevalue("expired_key")
    issued = api_key_create(user=alice, name="revoked", scope="trade")
    api_key_revoke(api_key=issued.api_key)
    return issued.key


@pytest.mark.parametrize("refused_key", ["garbage", "revoked", "expired"], indirect=True)
def test_auth_frame_with_refused_key_gets_error_then_close_4001(live_server_process, refused_key):
    async def scenario():
        async with ws_connect(live_server_process) as ws:
            await send(ws, {"op": "auth", "api_key": refused_key, "request_id": "auth-2"})
            frames = await drain_until_closed(ws)
            return frames, ws.close_code

    frames, close_code = run(scenario())
    assert len(frames) == 1
    assert_error(frames[0], "authentication_failed", "auth-2")
    assert close_code == 4001


def test_refused_key_header_gets_error_then_close_4001(live_server_process, expired_key):
    async def scenario():
        async with ws_connect(live_server_process, key=expired_key) as ws:
            return await drain_until_closed(ws), ws.close_code

    frames, close_code = run(scenario())
    assert [f["data"]["error"]["code"] for f in frames] == ["authentication_failed"]
    assert close_code == 4001


def test_foreign_origin_is_refused_at_the_handshake(live_server_process, alice_key):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(live_server_process, key=alice_key, origin="http://evil.example"):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403


def test_same_origin_session_cookie_gets_hello(live_server_process, alice):
    cookie = session_cookie(alice)
    origin = f"http://127.0.0.1:{live_server_process.port}"

    async def scenario():
        async with ws_connect(live_server_process, origin=origin, session=cookie) as ws:
            return await recv(ws)

    hello = run(scenario())
    assert hello["type"] == "hello"
    assert hello["data"]["auth"] == "session"
    assert hello["data"]["user"] == {"id": alice.pk, "email": "alice@example.com"}


def test_session_cookie_from_foreign_origin_is_refused(live_server_process, alice):
    cookie = session_cookie(alice)

    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(live_server_process, origin="http://evil.example", session=cookie):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403


def test_session_cookie_without_origin_is_closed_at_the_auth_deadline(short_auth_server, alice):
    cookie = session_cookie(alice)

    async def scenario():
        async with ws_connect(short_auth_server, session=cookie) as ws:
            started = time.monotonic()
            frames = await drain_until_closed(ws, timeout=4)
            return frames, ws.close_code, time.monotonic() - started

    frames, close_code, elapsed = run(scenario())
    assert len(frames) == 1, "no hello before an auth frame"
    assert_error(frames[0], "not_authenticated")
    assert close_code == 4001
    assert 0.8 <= elapsed < 3


def test_auth_frame_before_the_deadline_keeps_the_connection(short_auth_server, alice_key):
    async def scenario():
        async with ws_connect(short_auth_server) as ws:
            await asyncio.sleep(0.3)
            await send(ws, {"op": "auth", "api_key": alice_key, "request_id": "late"})
            hello = await recv(ws)
            await asyncio.sleep(1.2)  # past the one-second deadline
            await send(ws, {"op": "ping", "request_id": "still-here"})
            return hello, await recv(ws)

    hello, pong = run(scenario())
    assert hello["type"] == "hello"
    assert pong == {"type": "pong", "request_id": "still-here", "data": None}


# --- frames and ops ---------------------------------------------------------------------


def test_ops_before_auth_are_refused_and_the_connection_survives(live_server_process, alice_key):
    async def scenario():
        async with ws_connect(live_server_process) as ws:
            await send(ws, {"op": "subscribe", "channel": "system", "request_id": "early"})
            early = await recv(ws)
            await send(ws, {"op": "auth", "api_key": alice_key})
            hello = await recv(ws)
            return early, hello

    early, hello = run(scenario())
    assert_error(early, "not_authenticated", "early")
    assert hello["type"] == "hello"


def test_bad_frames_and_unknown_ops_get_errors_and_the_connection_survives(live_server_process, alice_key):
    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            await recv(ws)  # hello
            replies = []
            for frame in ['{"op": "subscribe", "chan', "[1, 2]", '{"no_op": 1}', {"op": "dance", "request_id": "d-1"}]:
                await send(ws, frame)
                replies.append(await recv(ws))
            await ws.send(b"\x00binary")
            replies.append(await recv(ws))
            await send(ws, {"op": "ping", "request_id": "alive"})
            replies.append(await recv(ws))
            return replies

    *errors, pong = run(scenario())
    for error in errors[:3]:
        assert_error(error, "bad_frame")
    assert_error(errors[3], "unknown_op", "d-1")
    assert_error(errors[4], "bad_frame")
    assert pong["type"] == "pong" and pong["request_id"] == "alive"


def test_ping_op_gets_pong_echoing_data_and_request_id(live_server_process, alice_key):
    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            await recv(ws)
            await send(ws, {"op": "ping", "request_id": "p-1", "data": {"n": 7, "t": "x"}})
            return await recv(ws)

    assert run(scenario()) == {"type": "pong", "request_id": "p-1", "data": {"n": 7, "t": "x"}}


# --- subscriptions ------------------------------------------------------------------------


def test_subscribe_to_unknown_channels_gets_unknown_channel(live_server_process, alice_key):
    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            await recv(ws)
            replies = []
            for i, channel in enumerate(["nosuch:thing", "system:extra", "nosuch"]):
                await send(ws, {"op": "subscribe", "channel": channel, "request_id": f"u-{i}"})
                replies.append(await recv(ws))
            return replies

    for i, reply in enumerate(run(scenario())):
        assert_error(reply, "unknown_channel", f"u-{i}")


def test_system_channel_snapshot_then_increasing_updates_until_unsubscribed(live_server_process, alice_key):
    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            await recv(ws)
            await send(ws, {"op": "subscribe", "channel": "system", "request_id": "s-1"})
            subscribed, snapshot = await recv(ws), await recv(ws)
            updates = [await recv(ws, 2) for _ in range(3)]
            await send(ws, {"op": "unsubscribe", "channel": "system", "request_id": "s-2"})
            unsubscribed = await recv_until(ws, lambda f: f["type"] != "update")
            after = await frames_for(ws, 4 * SYSTEM_INTERVAL)
            await send(ws, {"op": "unsubscribe", "channel": "system", "request_id": "s-3"})
            again = await recv(ws)
            return subscribed, snapshot, updates, unsubscribed, after, again

    subscribed, snapshot, updates, unsubscribed, after, again = run(scenario())
    assert subscribed == {"type": "subscribed", "channel": "system", "request_id": "s-1"}
    assert snapshot["type"] == "snapshot" and snapshot["channel"] == "system" and snapshot["request_id"] == "s-1"
    assert isinstance(snapshot["seq"], int)
    assert snapshot["data"]["status"] == "ok" and snapshot["data"]["version"] == settings.VERSION
    assert [u["type"] for u in updates] == ["update"] * 3
    assert all(u["channel"] == "system" and u["data"]["status"] == "ok" for u in updates)
    seqs = [snapshot["seq"]] + [u["seq"] for u in updates]
    assert seqs == sorted(set(seqs)), f"seq must strictly increase: {seqs}"
    assert unsubscribed == {"type": "unsubscribed", "channel": "system", "request_id": "s-2"}
    assert after == []
    assert_error(again, "not_subscribed", "s-3")


@pytest.mark.redis
@pytest.mark.skipif(not settings.REDIS_URL, reason="cross-process publishing needs the Redis channel layer")
def test_update_published_by_another_process_reaches_subscribers(live_server_process, alice_key):
    from streams.publish import apublish

    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            await recv(ws)
            await send(ws, {"op": "subscribe", "channel": "system"})
            await recv(ws)
            snapshot = await recv(ws)
            # Far ahead of the server's own clock-based seq, so it is never superseded.
            seq = snapshot["seq"] + 10**9
            assert await apublish("system", seq, {"status": "ok", "from": "test"}, latest=True)
            return seq, await recv_until(ws, lambda f: f.get("seq") == seq)

    seq, update = run(scenario())
    assert update == {"type": "update", "channel": "system", "seq": seq, "data": {"status": "ok", "from": "test"}}


# --- heartbeat ---------------------------------------------------------------------------------


def test_server_pings_and_closes_only_the_client_that_stops_answering(live_server_process, alice_key, bob_key):
    """The stalled-client rule: one client that never answers the application
    ping is closed with 4008; another on the same server keeps its stream."""

    async def answering(ws: ClientConnection, seconds: float) -> tuple[list[tuple[float, dict]], float]:
        frames: list[tuple[float, dict]] = []
        connected = time.monotonic()
        await send(ws, {"op": "subscribe", "channel": "system"})
        deadline = connected + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await recv(ws, left, answer_pings=False)
            except TimeoutError:
                break
            if frame["type"] == "ping":
                await send(ws, {"op": "pong", "data": frame["data"]})
            frames.append((time.monotonic(), frame))
        return frames, connected

    async def stalled(ws: ClientConnection) -> tuple[list[dict], float]:
        await send(ws, {"op": "subscribe", "channel": "system"})
        await asyncio.wait_for(ws.wait_closed(), 3 * HEARTBEAT + 2)
        return await drain_until_closed(ws, 1), time.monotonic()

    async def scenario():
        async with (
            ws_connect(live_server_process, key=alice_key) as good,
            ws_connect(live_server_process, key=bob_key, max_queue=4096) as bad,
        ):
            await recv(good, answer_pings=False)
            await recv(bad, answer_pings=False)
            (good_frames, connected), (bad_frames, bad_closed_at) = await asyncio.gather(
                answering(good, 3.5 * HEARTBEAT),
                stalled(bad),
            )
            return good_frames, connected, bad_frames, bad_closed_at, bad.close_code, good.state

    good_frames, connected, bad_frames, bad_closed_at, bad_code, good_state = run(scenario())

    pings = [(t, f) for t, f in good_frames if f["type"] == "ping"]
    assert len(pings) >= 3, "a ping every heartbeat interval"
    assert pings[0][0] - connected <= HEARTBEAT + 0.5
    assert all(set(f) == {"type", "data"} and isinstance(f["data"]["ts"], int | float) for _, f in pings)
    assert good_state is State.OPEN, "a client that answers stays open past several intervals"

    assert bad_code == 4008
    assert bad_closed_at - connected <= 2 * HEARTBEAT + 1.5
    assert any(f["type"] == "ping" for f in bad_frames)
    assert_error(bad_frames[-1], "pong_timeout")

    late = [f["seq"] for t, f in good_frames if f["type"] == "update" and t > bad_closed_at]
    assert len(late) >= 2, "the answering client keeps its updates after the stalled one is closed"
    assert late == sorted(set(late))


# --- commands -------------------------------------------------------------------------------------

COMMAND = {"op": "command", "account_id": 1, "command": "cancel_all", "request_id": "c-1", "payload": {}}


def test_command_with_read_scope_key_is_permission_denied(live_server_process, alice_read_key):
    async def scenario():
        async with ws_connect(live_server_process, key=alice_read_key) as ws:
            await recv(ws)
            await send(ws, COMMAND)
            return await recv(ws)

    assert_error(run(scenario()), "permission_denied", "c-1")


def test_command_without_a_registered_handler_is_unavailable(live_server_process, alice_key):
    from streams.registry import command_handler

    if command_handler() is not None:
        pytest.skip("the OMS has registered its command handler")

    async def scenario():
        async with ws_connect(live_server_process, key=alice_key) as ws:
            await recv(ws)
            await send(ws, COMMAND)
            return await recv(ws)

    assert_error(run(scenario()), "command_unavailable", "c-1")


# --- AsyncAPI ---------------------------------------------------------------------------------------


def test_asyncapi_document_is_public_and_lists_the_endpoint_and_system_channel(live_server_process):
    response = requests.get(f"{live_server_process.url}/api/v1/ws/asyncapi.json", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["asyncapi"].startswith(("2.", "3."))
    assert body["info"]["version"] == settings.VERSION
    assert "/api/v1/ws" in body["channels"]
    assert "system" in body["channels"]
    messages = body["components"]["messages"]
    assert {"op.auth", "op.subscribe", "op.pong", "op.command", "type.hello", "type.snapshot", "type.update", "type.error"} <= set(messages)
