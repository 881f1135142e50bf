"""Paths that are not there answer cleanly: an unknown WebSocket path gets a
not_found error frame and close 4004 (never a 500 with a traceback), Google
login without Google configured is a 404 (never a 500)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import websockets
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from streams.frames import CLOSE_NOT_FOUND
from streams.routing import websocket_urlpatterns
from tests.servers import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


async def _unknown_path_over_the_network(url: str) -> tuple[dict, int | None]:
    async with websockets.connect(url, open_timeout=5) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        return frame, ws.close_code


@pytest.mark.parametrize("path", ["/", "/ws", "/api/v1/ws/extra", "/api/v2/ws", "/nothing/here?x=1"])
def test_unknown_websocket_path_gets_not_found_and_close_4004_from_daphne(live_server_process, path):
    url = f"ws://127.0.0.1:{live_server_process.port}{path}"
    frame, code = asyncio.run(_unknown_path_over_the_network(url))
    assert frame["type"] == "error"
    assert frame["data"]["error"]["code"] == "not_found"
    assert code == CLOSE_NOT_FOUND
    assert "Traceback" not in live_server_process.log()
    assert "No route found" not in live_server_process.log()


def test_unknown_websocket_path_in_the_websocket_router():
    # The WebSocket side of config.asgi, without the in-process loops it starts.
    application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

    async def scenario() -> tuple[bool, dict, dict]:
        communicator = WebsocketCommunicator(application, "/api/v1/nope")
        connected, _ = await communicator.connect(timeout=5)
        frame = await communicator.receive_json_from(timeout=5)
        closed = await communicator.receive_output(timeout=5)
        await communicator.wait()
        return connected, frame, closed

    connected, frame, closed = asyncio.run(scenario())
    assert connected
    assert frame["data"]["error"]["code"] == "not_found"
    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}


@pytest.mark.parametrize("path", ["/accounts/google/login/", "/accounts/google/login/callback/"])
def test_google_login_without_google_configured_is_404(path):
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code == 404


def test_google_login_is_routed_when_google_is_configured():
    code = "import django; django.setup(); from django.urls import reverse; print(reverse('google_login'))"
    env = {
        "GOOGLE_CLIENT_ID": "id.apps.googleusercontent.com",
        "GOOGLE_CLIENT_SECRET": "secret",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/accounts/google/login/"
