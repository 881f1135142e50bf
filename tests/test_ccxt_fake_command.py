"""``manage.py run_fake_ccxt`` in another process: a CCXT account pointed at
it with the broker_options it prints reads BTC's price and its balances
through ccxt; SIGTERM stops it cleanly; bad arguments are refused."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.ccxt.adapter import CcxtBroker
from brokers.ccxt.exchange import ccxt_cache_clear, ccxt_pro_exchange_for_account
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from tests.servers import free_port

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


async def watch_ticker(account: BrokerAccount, symbol: str) -> dict[str, Any]:
    exchange = ccxt_pro_exchange_for_account(account)
    try:
        return await asyncio.wait_for(exchange.watch_ticker(symbol), 10)
    finally:
        await exchange.close()


def test_run_fake_ccxt_serves_a_ccxt_account_and_stops_on_sigterm(alice, settings) -> None:
    settings.BROKER_HTTP_TIMEOUT = 3.0
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "run_fake_ccxt", "--port", str(port), "--api-key", "k-123", "--secret", "s-456", "--price", "42000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first and "binance" in first, first + (proc.stderr.read() if proc.stderr else "")
        options = json.loads(proc.stdout.readline().split("broker_options: ", 1)[1])
        account = broker_account_create(
            owner=alice,
            kind="ccxt",
            label="fake",
            environment="paper",
            base_currency="USDT",
            exchange_id="binance",
            credentials={"api_key": "k-123", "secret": "s-456"},
        )
        BrokerAccount.objects.filter(pk=account.pk).update(broker_options=options)
        ccxt_cache_clear()
        broker = CcxtBroker(BrokerAccount.objects.get(pk=account.pk))
        assert broker.quote("BINANCE:BTC/USDT").last == Decimal(42000)
        assert {b.currency: b.cash for b in broker.funds().balances}.get("USDT") == Decimal(1000000)
        # its market streams, through ccxt.pro's own Binance client on the same options
        ticker = asyncio.run(watch_ticker(BrokerAccount.objects.get(pk=account.pk), "BTC/USDT"))
        assert ticker["symbol"] == "BTC/USDT" and ticker["last"] == 42000
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "fake exchange stopped" in out
    finally:
        ccxt_cache_clear()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_run_fake_ccxt_refuses_a_bad_price() -> None:
    done = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "run_fake_ccxt", "--price", "-1"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0 and "--price must be positive" in done.stderr
