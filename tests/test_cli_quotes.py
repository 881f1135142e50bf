"""On the embedded default the quote cache is per process: a process that does
not run the simulator loop (the CLI) computes the current quote from the
deterministic simulator. Production reads only the shared cache."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.core.cache import cache

from brokers.services import broker_account_create
from marketdata.feeds.simulated import SimulatedFeed
from marketdata.quotes import quote_get, quote_is_stale, quotes_get
from marketdata.simulation import demo_instruments_ensure, runtime_reset, sim_instruments
from oms.models import Order, Position
from tests.servers import ROOT, server_env

SYMBOL = "BTC/USDT"  # 24x7: always in session


@pytest.fixture
def demo_market(db, settings):
    settings.SIMULATOR_ENABLED = True
    demo_instruments_ensure()
    cache.clear()
    runtime_reset()
    yield
    runtime_reset()


def manage(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server_env(SIMULATOR_ENABLED="true"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.django_db(transaction=True)
def test_cli_market_order_and_close_position_on_the_embedded_default(demo_market, alice, settings):
    if settings.PRODUCTION_SERVICES:
        pytest.skip("embedded default only: in production the marketdata process fills the shared cache")
    account = broker_account_create(owner=alice, kind="paper", label="cli")

    sent = manage(
        "send_order", "--account-id", str(account.pk), "--symbol", SYMBOL, "--side", "buy", "--order-type", "market", "--qty", "0.01"
    )
    assert sent["ok"], sent
    order = Order.objects.get(pk=sent["order_id"])
    assert order.status == "filled", order.status
    position = Position.objects.get(account=account, symbol=SYMBOL, status="open")

    closed = manage("close_position", "--account-id", str(account.pk), "--position-id", str(position.pk))
    assert closed["ok"], closed
    position.refresh_from_db()
    assert position.status == "closed"


def test_a_process_without_the_simulator_loop_gets_the_simulators_current_quote(demo_market, settings):
    settings.PRODUCTION_SERVICES = False
    before = time.time()
    quote = quote_get(SYMBOL)
    assert quote is not None and not quote_is_stale(quote)
    # The same pure function the loop's feed evaluates, at the quote's second.
    expected = SimulatedFeed(sim_instruments(), settings.SIMULATOR_SEED).quote(SYMBOL, int(quote.time))
    assert int(before) <= quote.time <= time.time()
    assert (quote.last, quote.bid, quote.ask) == (expected.last, expected.bid, expected.ask)
    assert set(quotes_get([SYMBOL, "ETH/USDT", "NOPE"])) == {SYMBOL, "ETH/USDT"}
    assert cache.get("md:quote:" + SYMBOL) is None  # nothing is written


def test_a_stored_quote_wins(demo_market, settings):
    from marketdata.quotes import quote_store
    from marketdata.types import Quote

    stored = Quote(symbol=SYMBOL, time=time.time(), last=Decimal("1.0"), bid=Decimal("0.9"), ask=Decimal("1.1"))
    quote_store(stored)
    assert quote_get(SYMBOL) == stored


def test_production_reads_only_the_shared_cache(demo_market, settings):
    settings.PRODUCTION_SERVICES = True
    assert quote_get(SYMBOL) is None
    assert quotes_get([SYMBOL]) == {}


def test_the_process_running_the_simulator_loop_reads_only_its_cache(demo_market, settings, monkeypatch):
    from marketdata import quotes

    settings.PRODUCTION_SERVICES = False
    monkeypatch.setattr(quotes, "is_running", lambda name: name == "marketdata.simulator")
    assert quote_get(SYMBOL) is None


def test_no_simulated_quote_when_the_simulator_is_off(demo_market, settings):
    settings.PRODUCTION_SERVICES = False
    settings.SIMULATOR_ENABLED = False
    assert quote_get(SYMBOL) is None
