"""The subscriber registry across processes (issue 14, part 4; issue 8, part 4):
concurrent registrations of two processes never drop a channel, a dead
process's subscriptions expire, and a Redis restart neither loses the
subscribers nor their updates. Against a private redis-server on its own port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import override_settings

from marketdata.streaming import subscribed_channels
from streams.publish import apublish
from streams.registry import ChannelHandler, register_channel
from streams.routing import websocket_urlpatterns
from streams.subscribers import subscriber_add, subscriber_totals
from tests.servers import ROOT, free_port, needs_redis_server, run_redis_server

pytestmark = needs_redis_server

PROCESS = """
import os, sys
import django
django.setup()
from marketdata.streaming import subscribers_add
role = sys.argv[1]
for i in range(300):
    subscribers_add(f"bars:{role}{i}:1", 1)
    subscribers_add(f"bars:{role}-churn{i % 3}:1", 1)
    subscribers_add(f"bars:{role}-churn{i % 3}:1", -1)
print("ready", flush=True)
sys.stdin.read()
"""


def _redis_settings(url: str, **extra: Any) -> override_settings:
    return override_settings(
        REDIS_URL=url,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}},
        CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}},
        **extra,
    )


def _start(role: str, url: str, ttl: str) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings", "SUBSCRIBERS_TTL": ttl}
    return subprocess.Popen(
        [sys.executable, "-c", PROCESS, role], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_two_processes_registering_at_once_never_drop_a_channel_and_a_dead_one_expires(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with run_redis_server(port, tmp_path), _redis_settings(url):
        alive, doomed = _start("alive", url, "30"), _start("doomed", url, "1")
        try:
            for proc in (alive, doomed):
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready"
            channels = subscribed_channels("bars:")
            expected = {f"bars:{role}{i}:1" for role in ("alive", "doomed") for i in range(300)}
            assert set(channels) == expected  # none dropped, no churned one left
            doomed.kill()
            doomed.wait(timeout=10)
            time.sleep(1.5)
            assert set(subscribed_channels("bars:")) == {c for c in expected if c.startswith("bars:alive")}
        finally:
            for proc in (alive, doomed):
                proc.kill()
                proc.wait(timeout=10)


class _Market(ChannelHandler):
    """A latest-value channel counted in the registry, as market data's are."""

    prefix = "fanoutmarket"
    latest_value = True

    async def on_subscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscriber_add)(channel, 1)

    async def on_unsubscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscriber_add)(channel, -1)

    async def snapshot(self, *, user: Any, channel: str) -> tuple[int, Any]:
        return 0, {}


register_channel(_Market())


@pytest.mark.django_db(transaction=True)
def test_after_a_redis_restart_market_subscribers_are_counted_again_and_get_updates(alice_key, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    channel = "fanoutmarket:X"
    with _redis_settings(url, SUBSCRIBERS_REFRESH=0.3, WS_HEARTBEAT_INTERVAL=60):
        channel_layers.backends.clear()
        redis_proc_cm = run_redis_server(port, tmp_path)
        redis_proc = redis_proc_cm.__enter__()

        async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
            comm = WebsocketCommunicator(
                URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"x-api-key", alice_key.encode())]
            )
            assert (await comm.connect(timeout=10))[0]
            assert (await comm.receive_json_from(timeout=10))["type"] == "hello"
            await comm.send_json_to({"op": "subscribe", "channel": channel})
            assert [(await comm.receive_json_from(timeout=10))["type"] for _ in range(2)] == ["subscribed", "snapshot"]
            assert channel in await database_sync_to_async(subscriber_totals)()
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
            await asyncio.sleep(1.0)
            with run_redis_server(port, tmp_path):
                # Counted again without any client subscribing anew.
                deadline = time.monotonic() + 10
                while channel not in await database_sync_to_async(subscriber_totals)():
                    assert time.monotonic() < deadline, "the channel's subscribers were lost with Redis"
                    await asyncio.sleep(0.1)
                seen: list[dict[str, Any]] = []
                seq = 1000
                deadline = time.monotonic() + 30  # the hub retries with back-off up to 5 s
                while not any(f["type"] == "update" for f in seen):
                    assert time.monotonic() < deadline, f"no update after the restart: {seen}"
                    seq += 1
                    await apublish(channel, seq, {"n": seq}, latest=True)
                    # (receive_nothing: a timed-out receive would end the application)
                    while not await comm.receive_nothing(timeout=0.5):
                        seen.append(await comm.receive_json_from(timeout=10))
                await comm.disconnect(timeout=10)
            return [f["type"] for f in seen], seen

        async def main() -> Any:
            try:
                return await asyncio.wait_for(scenario(), 90)
            finally:
                await database_sync_to_async(connections.close_all)()

        try:
            kinds, _ = asyncio.run(main())
        finally:
            redis_proc_cm.__exit__(None, None, None)
            channel_layers.backends.clear()
    assert "update" in kinds
