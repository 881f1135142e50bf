"""One Kite order end to end in the production setup (PostgreSQL, Redis, the
Procfile's processes): a REST ``send_order`` on daphne, sent by a real Celery
worker through kiteconnect to the fake Kite, filled there; Kite's order
update comes back twice, over the ticker to the ``marketdata`` process
(``run_loops``) and as a postback to daphne (applied by the worker), and the
fill is booked once, from Kite's trades of the order: one deal, one
position. The upstream's ``/api/v1/ws/orders/{id}`` path streams the
``order_update`` and the ticker's packets become the symbol's quote."""

from __future__ import annotations

import contextlib
import json
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
from brokers.kite.fake.ticker import FakeKiteTicker
from marketdata.models import Instrument
from marketdata.quotes import quote_get, quotes_forget
from oms.models import Deal, Order, Position
from tests.kite_support import API_KEY, PRICE, SYMBOL, TOKEN, USER_ID, fake_kite_running, kite_account_create, kite_log_in
from tests.servers import run_celery_worker, run_daphne, run_loops

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only (REDIS_URL unset: embedded default)"),
    pytest.mark.redis,
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
]

TIMEOUT = 60.0


def recv(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def test_a_kite_order_is_filled_once_from_the_ticker_and_the_postback(alice, tmp_path, settings):
    key = api_key_create(user=alice, name="e2e", scope="trade").key
    with fake_kite_running(settings) as fake, FakeKiteTicker() as ticker:
        account = kite_account_create(alice, label="Kite e2e")
        access_token = kite_log_in(account, fake)
        ticker.allow(API_KEY, access_token, USER_ID)
        ticker.heartbeat_interval = 0.5
        fake.order_listeners.append(ticker.order_update)  # Kite's order updates over the ticker
        Instrument.objects.update_or_create(
            symbol=SYMBOL,
            defaults={
                "venue": "NSE",
                "code": "INFY",
                "type": "stock",
                "currency": "INR",
                "tick_size": Decimal("0.05"),
                "lot_size": Decimal(1),
                "quote_source": "kite",
                "broker_codes": {"kite": TOKEN},
                "active": True,
            },
        )
        quotes_forget([SYMBOL])
        feed_state_clear(account.pk)
        env = {
            "KITE_API_URL": fake.api_url,
            "KITE_LOGIN_URL": fake.login_url,
            "KITE_TICKER_URL": ticker.url,
            "KITE_RATE_ORDERS": "1000",
            "KITE_RATE_OTHER": "1000",
            "KITE_TICKER_RELOAD_INTERVAL": "0.5",
            "SIMULATOR_ENABLED": "false",
            "OMS_SWEEP_INTERVAL": "3600",
            "OMS_RECONCILE_INTERVAL": "3600",
        }
        with (
            run_daphne(tmp_path, RUN_LOOPS_IN_PROCESS="false", CELERY_TASK_ALWAYS_EAGER="false", **env) as web,
            run_celery_worker(tmp_path, **env),
            run_loops(tmp_path, **env) as marketdata,
        ):
            fake.postback_url = web.url + "/api/v1/brokers/kite/postback"
            deadline = time.monotonic() + TIMEOUT
            while not (feed_state_get(account.pk) or {}).get("subscriptions"):
                assert time.monotonic() < deadline, f"the Kite ticker did not subscribe:\n{_logs(tmp_path)}"
                assert marketdata.proc.poll() is None, _logs(tmp_path)
                time.sleep(0.25)
            assert ticker.subscriptions() == [{TOKEN: "full"}]
            ticker.tick(TOKEN, last_price=PRICE, volume=100, close=Decimal(1490), bids=[(PRICE - 1, 10, 1)], asks=[(PRICE + 1, 12, 2)])

            url = f"ws://127.0.0.1:{web.port}/api/v1/ws/orders/{account.pk}"
            with connect(url, additional_headers={"X-API-Key": key}, open_timeout=10, close_timeout=2) as ws:
                assert recv(ws, 10)["type"] == "hello"
                sent = requests.post(
                    f"{web.url}/api/v1/accounts/{account.pk}/orders",
                    headers={"X-API-Key": key},
                    json={"symbol": SYMBOL, "side": "buy", "order_type": "market", "qty": "2", "time_in_force": "day"},
                    timeout=30,
                )
                assert sent.status_code == 202, sent.text
                order_id = sent.json()["order_id"]
                statuses: list[str] = []
                deadline = time.monotonic() + TIMEOUT
                while "filled" not in statuses:
                    left = deadline - time.monotonic()
                    assert left > 0, f"no fill on the stream: {statuses}\n{_logs(tmp_path)}"
                    frame = None
                    with contextlib.suppress(TimeoutError):
                        frame = recv(ws, left)
                    if frame and frame["type"] == "order_update" and frame["data"]["id"] == order_id:
                        statuses.append(frame["data"]["status"])
            assert fake.wait_idle(10)
            assert fake.postbacks_sent, "the fake sent no postback"
            # Both paths have delivered; give the worker a moment to apply the postback's task.
            time.sleep(2)
            quote = quote_get(SYMBOL)

    order = Order.objects.get(pk=order_id)
    assert order.status == "filled" and order.filled_qty == Decimal(2) and order.broker_order_id
    deals = list(Deal.objects.filter(order=order))
    assert len(deals) == 1 and (deals[0].qty, deals[0].price) == (Decimal(2), PRICE), deals
    position = Position.objects.get(account=account, symbol=SYMBOL, status="open")
    assert (position.qty, position.avg_price) == (Decimal(2), PRICE)
    assert quote is not None and quote.last == PRICE and quote.bid == PRICE - 1
    assert "filled" in statuses


def _logs(tmp_dir: Path) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}" for path in sorted(tmp_dir.glob("*.log")))
