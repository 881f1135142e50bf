"""One KIS order end to end in the production setup (PostgreSQL, Redis, the
Procfile's processes): a REST ``send_order`` command on daphne, sent by a real
Celery worker through the KIS adapter to the fake KIS server, filled there; the
fill notice comes back over the KIS WebSocket to the feed in the ``marketdata``
process (``run_loops``), which books the deal and the position; a WebSocket
client of ours receives the ``orders:`` and ``positions:`` updates."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from websockets.sync.client import ClientConnection, connect

from accounts.services import api_key_create
from brokers.health import feed_state_clear, feed_state_get
from brokers.kis.fake import FakeKisServer
from marketdata.instruments import instrument_ensure_for_venue
from oms.models import Deal, Order, Position
from tests.kis_support import kis_account
from tests.servers import run_celery_worker, run_daphne, run_loops

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only (REDIS_URL unset: embedded default)"),
    pytest.mark.redis,
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
]

# Fresh per run: a feed connection lease or feed state left by an earlier run
# (in Redis, for up to its TTL) must not stand for this run's feed.
APP_KEY = f"PSe2e{secrets.token_hex(8)}"
APP_SECRET = "e2e-app-secret-0123456789abcdef"
CANO = "50001234"
HTS_ID = "e2etrader"
PRICE = Decimal(71000)
TIMEOUT = 60.0


def recv(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    """The next frame that is not a server ping (pings are answered)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") == "ping":
            ws.send(json.dumps({"op": "pong", "data": frame["data"]}))
            continue
        return frame


def subscribe(ws: ClientConnection, channel: str) -> dict[str, Any]:
    ws.send(json.dumps({"op": "subscribe", "channel": channel, "request_id": f"sub-{channel}"}))
    assert recv(ws, 10)["type"] == "subscribed"
    snapshot = recv(ws, 10)
    assert snapshot["type"] == "snapshot" and snapshot["channel"] == channel, snapshot
    return snapshot


def test_a_kis_order_goes_from_rest_to_the_fake_and_its_fill_back_to_the_streams(alice, tmp_path):
    instrument_ensure_for_venue("KRX", "005930", name="SAMSUNG ELECTRONICS")
    account = kis_account(alice, label="KIS e2e", app_key=APP_KEY, app_secret=APP_SECRET, hts_id=HTS_ID, broker_account_number=CANO)
    key = api_key_create(user=alice, name="e2e", scope="trade").key
    feed_state_clear(account.pk)  # account ids repeat across runs; the feed state lives in Redis

    with FakeKisServer() as fake:
        fake.add_account(APP_KEY, APP_SECRET, CANO, hts_id=HTS_ID, cash_krw=Decimal(100_000_000))
        fake.set_price("005930", PRICE, name="SAMSUNG ELECTRONICS")
        env = {
            "KIS_PAPER_REST_URL": fake.rest_url,
            "KIS_PAPER_WS_URL": fake.ws_url,
            "KIS_RATE_PAPER": "50",
            "SIMULATOR_ENABLED": "false",
            # Only the fill notice may book the fill within the test: no sweep, no reconciliation.
            "OMS_SWEEP_INTERVAL": "3600",
            "OMS_RECONCILE_INTERVAL": "3600",
        }
        with (
            run_daphne(tmp_path, RUN_LOOPS_IN_PROCESS="false", CELERY_TASK_ALWAYS_EAGER="false", **env) as web,
            run_celery_worker(tmp_path, **env),
            run_loops(tmp_path, **env) as marketdata,
        ):
            # The feed is up once it has subscribed to the fill notices (it asked KIS for an approval key).
            deadline = time.monotonic() + TIMEOUT
            while not _notices_subscribed(account.pk):
                assert time.monotonic() < deadline, f"the KIS feed did not subscribe:\n{_logs(tmp_path)}"
                assert marketdata.proc.poll() is None
                time.sleep(0.25)

            with connect(web.ws_url, additional_headers={"X-API-Key": key}, open_timeout=10, close_timeout=2) as ws:
                assert recv(ws, 10)["type"] == "hello"
                orders_snapshot = subscribe(ws, f"orders:{account.pk}")
                positions_snapshot = subscribe(ws, f"positions:{account.pk}")

                sent = requests.post(
                    web.url + "/api/v1/oms/commands",
                    headers={"X-API-Key": key},
                    json={
                        "account_id": account.pk,
                        "command": "send_order",
                        "request_id": "e2e-1",
                        "payload": {"symbol": "KRX:005930", "side": "buy", "order_type": "market", "qty": "2", "time_in_force": "day"},
                    },
                    timeout=30,
                )
                assert sent.status_code == 202, sent.text
                assert sent.json()["ok"] is True
                order_id = sent.json()["order_id"]

                updates: dict[str, list[dict[str, Any]]] = {"orders": [], "positions": []}
                deadline = time.monotonic() + TIMEOUT

                def done() -> bool:
                    filled = any(u["data"].get("status") == "filled" for u in updates["orders"])
                    held = any(Decimal(u["data"].get("qty") or 0) == 2 for u in updates["positions"])
                    return filled and held

                while not done():
                    left = deadline - time.monotonic()
                    frame = None
                    with contextlib.suppress(TimeoutError):
                        frame = recv(ws, left) if left > 0 else None
                    assert frame is not None, f"no fill on the streams: {updates}\n{_logs(tmp_path)}"
                    if frame["type"] == "update":
                        updates[frame["channel"].split(":")[0]].append(frame)

    # The orders: stream went through every state without a gap, ending filled.
    seqs = [u["seq"] for u in updates["orders"]]
    assert seqs == list(range(orders_snapshot["seq"] + 1, orders_snapshot["seq"] + 1 + len(seqs)))
    assert all(u["data"]["id"] == order_id for u in updates["orders"])
    filled = next(u["data"] for u in updates["orders"] if u["data"]["status"] == "filled")
    assert filled["filled_qty"] == "2" and Decimal(filled["avg_fill_price"]) == PRICE
    assert [u["seq"] for u in updates["positions"]][0] == positions_snapshot["seq"] + 1

    # At the broker: one order, sent once; here: one deal, one position of 2 at 71,000 KRW.
    assert fake.calls["/uapi/domestic-stock/v1/trading/order-cash"] == 1
    order = Order.objects.get(pk=order_id)
    assert order.status == "filled" and order.broker_order_id
    deal = Deal.objects.get(order=order)
    assert (deal.qty, deal.price, deal.symbol) == (Decimal(2), PRICE, "KRX:005930")
    position = Position.objects.get(account=account, symbol="KRX:005930", status="open")
    assert (position.qty, position.avg_price) == (Decimal(2), PRICE)


def _notices_subscribed(account_id: int) -> bool:
    """The feed state (written by the marketdata process, read through the shared cache)."""
    state = feed_state_get(account_id) or {}
    return bool(state.get("connected")) and any(name.startswith("H0STCNI9") for name in state.get("subscriptions", []))


def _logs(tmp_dir: Path) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}" for path in sorted(tmp_dir.glob("*.log")))
