"""The demo's CCXT account: the fake exchange started as ``serve`` starts it
(``run_fake_ccxt`` in its own process), the demo trader's CCXT testnet
account pointed at it with its markets as BINANCE instruments, made once and
put back when the fake moved; the account reads the fake's price and funds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.ccxt.adapter import CcxtBroker
from brokers.ccxt.exchange import ccxt_cache_clear, ccxt_streams_market_data
from brokers.demo import DEMO_CCXT_LABEL, demo_ccxt_account_ensure, demo_fake_ccxt_start
from brokers.models import BrokerAccount
from marketdata.models import Instrument

pytestmark = pytest.mark.django_db


def test_the_demo_ccxt_account_trades_on_the_fake_exchange_and_is_made_once(alice, settings):
    settings.BROKER_HTTP_TIMEOUT = 3.0
    ccxt_cache_clear()
    fake = demo_fake_ccxt_start()
    try:
        first = demo_ccxt_account_ensure(owner=alice, options=fake.options())
        assert f"created the CCXT demo account #{first.account_id}" in first.changes
        assert "BINANCE:BTC/USDT" in first.symbols
        assert Instrument.objects.get(symbol="BINANCE:BTC/USDT").quote_source == "ccxt"
        account = BrokerAccount.objects.get(pk=first.account_id)
        assert (account.kind, account.environment, account.exchange_id, account.label) == ("ccxt", "paper", "binance", DEMO_CCXT_LABEL)
        assert ccxt_streams_market_data("binance", account.broker_options)  # its tickers stream from the fake's market streams
        broker = CcxtBroker(account)
        assert abs(broker.quote("BINANCE:BTC/USDT").last - Decimal(50000)) < Decimal(1000)  # the demo's prices walk
        assert {b.currency: b.cash for b in broker.funds().balances}["USDT"] == Decimal(1000000)

        again = demo_ccxt_account_ensure(owner=alice, options=fake.options())
        assert again.account_id == first.account_id and again.changes == []
        moved = {"urls": {"api": {"public": "http://127.0.0.1:1/api/v3"}}}
        BrokerAccount.objects.filter(pk=account.pk).update(broker_options=moved)
        back = demo_ccxt_account_ensure(owner=alice, options=fake.options())
        assert back.changes == [f"reset the CCXT demo account #{account.pk} to the fake's demo"]
        assert BrokerAccount.objects.get(pk=account.pk).broker_options == fake.options()
        assert BrokerAccount.objects.filter(owner=alice, label=DEMO_CCXT_LABEL).count() == 1
    finally:
        ccxt_cache_clear()
        fake.proc.terminate()
        fake.proc.wait(timeout=10)
    assert fake.proc.returncode == 0
