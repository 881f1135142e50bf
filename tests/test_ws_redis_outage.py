"""Redis going away under a running gateway (production mode): clients get an
``error`` frame instead of silence, and the streams resume by themselves when
Redis returns. Uses a private redis-server on its own port, never the CI
machine's."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.servers import free_port, needs_redis_server, run_daphne, run_redis_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    needs_redis_server,
]


async def _frames(ws, seconds: float, *, until=None) -> list[dict]:
    """The frames received within ``seconds``, or until ``until(frames)`` holds."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
        if until is not None and until(out):
            break
    return out


def _resumed(frames: list[dict]) -> bool:
    """A fresh snapshot, then an update."""
    kinds = [f["type"] for f in frames]
    return "snapshot" in kinds and "update" in kinds[kinds.index("snapshot") :]


def test_streams_survive_redis_going_away_and_coming_back(alice_key, tmp_path):
    port = free_port()
    with (
        run_redis_server(port, tmp_path) as redis_proc,
        run_daphne(
            tmp_path,
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            RUN_LOOPS_IN_PROCESS="true",
            SYSTEM_STATUS_INTERVAL="0.3",
            WS_HEARTBEAT_INTERVAL="30",
            SIMULATOR_ENABLED="false",
        ) as server,
    ):

        async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
            async with websockets.connect(server.ws_url, additional_headers={"X-API-Key": alice_key}, open_timeout=10) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert hello["type"] == "hello"
                await ws.send(json.dumps({"op": "subscribe", "channel": "system"}))
                before = await _frames(ws, 2.0)
                redis_proc.terminate()
                redis_proc.wait(timeout=10)
                during = await _frames(ws, 3.0)
                with run_redis_server(port, tmp_path):
                    # The hub retries with a back-off of up to 5 s: allow a loaded machine 25 s.
                    after = await _frames(ws, 25.0, until=_resumed)
                    await ws.send(json.dumps({"op": "ping", "data": 1}))
                    pong = await _frames(ws, 1.0)
                    assert any(f["type"] == "pong" for f in pong)
                return before, during, after

        before, during, after = asyncio.run(scenario())

    assert [f["type"] for f in before[:2]] == ["subscribed", "snapshot"]
    assert any(f["type"] == "update" for f in before)
    errors = [f for f in during if f["type"] == "error"]
    assert errors, f"silence during the outage: {during}"
    assert errors[0]["data"]["error"]["code"] == "stream_unavailable"
    # An update already in flight at the kill may still land; none after the error.
    assert not [f for f in during[during.index(errors[0]) :] if f["type"] == "update"]
    # Back: a fresh snapshot, then updates again, on the same connection.
    kinds = [f["type"] for f in after]
    assert "snapshot" in kinds, after
    assert "update" in kinds[kinds.index("snapshot") :], after
