"""Redis going away under a running gateway (production mode): clients get an
``error`` frame instead of silence, and the streams resume by themselves when
Redis returns. Uses a private redis-server on its own port, never the CI
machine's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.servers import free_port, run_daphne

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


@contextlib.contextmanager
def private_redis(port: int, workdir: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("private redis-server did not start")
        time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _frames(ws, seconds: float) -> list[dict]:
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return out


def test_streams_survive_redis_going_away_and_coming_back(alice_key, tmp_path):
    port = free_port()
    with (
        private_redis(port, tmp_path) as redis_proc,
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
                with private_redis(port, tmp_path):
                    after = await _frames(ws, 8.0)
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
