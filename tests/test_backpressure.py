"""Back-pressure per web process (issue 8, part 3): a burst of order requests
against a real uvicorn, as the Procfile runs it, with a small
``WEB_LIMIT_CONCURRENCY``: every answer is 2xx, 429 or 503 (never a 500, never
a reset connection), each 503 is the error shape with ``Retry-After``, and
exactly the orders answered 2xx exist."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from accounts.services import api_key_create
from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from oms.models import Order
from tests.servers import run_uvicorn

BURST = 150
RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_150_orders_gets_back_pressure_not_errors(alice, tmp_path):
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    account = broker_account_create(owner=alice, kind="paper", label="paper")
    key = api_key_create(user=alice, name="burst", scope="trade").key
    url_path = f"/api/v1/accounts/{account.pk}/orders"

    with run_uvicorn(tmp_path, "--limit-concurrency", "1000", WEB_LIMIT_CONCURRENCY="3", WEB_LIMIT_WAIT="0.2") as server:

        def send(i: int) -> tuple[int, Any, dict]:
            headers = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}
            response = requests.post(server.url + url_path, json=RESTING, headers=headers, timeout=30)
            return response.status_code, response.headers, response.json()

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            answers = list(pool.map(send, range(BURST)))  # a reset connection raises here
        took = time.monotonic() - started

        statuses = Counter(status for status, _, _ in answers)
        assert set(statuses) <= {201, 202, 429, 503}, (statuses, server.log())
        busy = [(headers, body) for status, headers, body in answers if status == 503]
        assert busy, f"no request was held back: {statuses}"
        for headers, body in busy:
            assert int(headers.get("Retry-After", 0)) >= 1, (headers, body)
            assert body["error"]["code"] in ("server_busy", "service_unavailable"), body
        created = sum(n for status, n in statuses.items() if 200 <= status < 300)
        assert created, statuses
        assert Order.objects.filter(account=account).count() == created, statuses
        # The server still answers at once after the burst.
        assert requests.get(server.url + "/api/v1/health/live", timeout=5).status_code == 200
        print(f"burst of {BURST}: {dict(statuses)} in {took:.1f}s")
    assert took < 60


# --- the middleware's rules, in process -------------------------------------------------------


def _limited(limit: int, wait: float) -> tuple[Any, asyncio.Event, list[str]]:
    from core.asgi_limits import ConcurrencyLimit

    release = asyncio.Event()
    served: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        served.append(scope.get("path", scope["type"]))
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return ConcurrencyLimit(app, limit=limit, wait=wait), release, served


async def _request(app: Any, path: str = "/api/v1/me", kind: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    await app({"type": kind, "path": path}, receive, send)
    return sent


def test_a_request_over_the_limit_waits_for_a_slot_then_gets_503() -> None:
    async def scenario() -> None:
        app, release, served = _limited(limit=1, wait=0.3)
        first = asyncio.ensure_future(_request(app))
        await asyncio.sleep(0.05)
        refused = await _request(app)  # waits 0.3 s, no slot frees
        assert refused[0]["status"] == 503
        headers = dict(refused[0]["headers"])
        assert headers[b"retry-after"] == b"1" and headers[b"content-type"] == b"application/json"
        assert json.loads(refused[1]["body"])["error"]["code"] == "server_busy"
        waiting = asyncio.ensure_future(_request(app))  # a slot frees while it waits: served
        await asyncio.sleep(0.05)
        release.set()
        assert (await first)[0]["status"] == 200 and (await waiting)[0]["status"] == 200
        assert served == ["/api/v1/me", "/api/v1/me"]  # the refused one never reached the app
        assert app.in_flight == 0

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_websockets_and_the_liveness_probe_are_not_held_back() -> None:
    async def scenario() -> None:
        app, release, served = _limited(limit=1, wait=0.05)
        busy = asyncio.ensure_future(_request(app))
        await asyncio.sleep(0.01)
        socket = asyncio.ensure_future(_request(app, "/api/v1/ws", kind="websocket"))
        live = asyncio.ensure_future(_request(app, "/api/v1/health/live"))
        await asyncio.sleep(0.1)
        assert served == ["/api/v1/me", "/api/v1/ws", "/api/v1/health/live"]
        release.set()
        await asyncio.gather(busy, socket, live)

    asyncio.run(asyncio.wait_for(scenario(), 10))
