"""One CCXT order end to end in the production setup (PostgreSQL, Redis, the
Procfile's processes): a REST ``send_order`` on daphne on a CCXT testnet
account, sent by a real Celery worker through ccxt to the fake Binance spot
exchange over real sockets, filled there, booked once from the exchange's
trades: one deal (the fee in its own currency), one position, the bought
asset at the exchange."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.conf import settings

from accounts.services import api_key_create
from oms.models import Deal, Order, Position
from tests.ccxt_support import API_KEY, MARKET_IDS, PRICE, ccxt_account, ccxt_import, fake_exchange, symbol_of
from tests.oms_support import set_quote
from tests.servers import run_celery_worker, run_daphne

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only (REDIS_URL unset: embedded default)"),
    pytest.mark.redis,
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
]

TIMEOUT = 60.0
SYMBOL = symbol_of("spot")  # BINANCE:BTC/USDT


def test_a_ccxt_order_goes_rest_worker_exchange_and_comes_back_as_one_deal_and_a_position(alice, tmp_path):
    key = api_key_create(user=alice, name="e2e", scope="trade").key
    with fake_exchange("spot") as fake:
        account = ccxt_account(alice, fake, label="CCXT e2e")
        ccxt_import(account)
        fake.set_price(MARKET_IDS["spot"], PRICE)
        set_quote(SYMBOL, str(PRICE), spread="1")
        env = {
            "SIMULATOR_ENABLED": "false",
            "OMS_SWEEP_INTERVAL": "3600",
            "OMS_RECONCILE_INTERVAL": "3600",
            "BROKER_HTTP_TIMEOUT": "5",
        }
        with (
            run_daphne(tmp_path, RUN_LOOPS_IN_PROCESS="false", CELERY_TASK_ALWAYS_EAGER="false", **env) as web,
            run_celery_worker(tmp_path, **env),
        ):
            sent = requests.post(
                f"{web.url}/api/v1/accounts/{account.pk}/orders",
                headers={"X-API-Key": key},
                json={"symbol": SYMBOL, "side": "buy", "order_type": "market", "qty": "0.01", "time_in_force": "gtc"},
                timeout=30,
            )
            assert sent.status_code == 202, sent.text
            order_id = sent.json()["order_id"]
            deadline = time.monotonic() + TIMEOUT
            while True:
                order = Order.objects.get(pk=order_id)
                if order.status == "filled" and Deal.objects.filter(order=order).exists():
                    break
                assert time.monotonic() < deadline, f"order {order.status}:\n{_logs(tmp_path)}"
                time.sleep(0.25)
            time.sleep(1)  # anything booked twice would show by now
            at_fake = fake.orders()
            bought = fake.balances(API_KEY).get("BTC")

    assert order.filled_qty == Decimal("0.01") and order.broker_order_id
    assert len(at_fake) == 1 and at_fake[0]["status"] in ("FILLED", "filled", "closed"), at_fake
    deals = list(Deal.objects.filter(order=order))
    assert len(deals) == 1, deals
    assert deals[0].qty == Decimal("0.01") and deals[0].price == PRICE
    position = Position.objects.get(account=account, symbol=SYMBOL, status="open")
    assert position.qty == Decimal("0.01") and position.avg_price == PRICE
    assert bought == Decimal("0.01")


def _logs(tmp_dir: Path) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}" for path in sorted(tmp_dir.glob("*.log")))
