"""ccxt's own parsing (the pinned library, unmodified) of what the fake
exchange answers, for Binance spot and Binance USD-M futures, through an
account's exchange: markets, balances, tickers, candles, orders, trades,
positions, and the errors ccxt raises for the exchange's error codes."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from brokers.base import BrokerRejected
from brokers.ccxt.exchange import ccxt_exchange_build, ccxt_exchange_for_account, ccxt_markets_load
from tests.ccxt_support import API_KEY, SECRET, SYMBOLS, ccxt_account, fake_exchange

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["spot", "futures"])
def test_account_loads_markets_and_balances_from_the_fake(alice, kind):
    with fake_exchange(kind) as fake:
        account = ccxt_account(alice, fake)
        exchange = ccxt_exchange_for_account(account)
        markets = ccxt_markets_load(exchange)
        symbol = SYMBOLS[kind]
        assert symbol in markets
        market = markets[symbol]
        assert market["spot"] is (kind == "spot")
        assert market["limits"]["cost"]["min"] == (5.0 if kind == "spot" else 100.0)
        balance = exchange.fetch_balance()
        assert balance["total"]["USDT"] == 1000000.0
        # the same account and credentials: the same exchange, its markets kept
        assert ccxt_exchange_for_account(account) is exchange
        assert fake.calls[("GET /api/v3/exchangeInfo" if kind == "spot" else "GET /fapi/v1/exchangeInfo")] == 1


def test_sandbox_urls_are_replaced_by_the_options_urls():
    exchange = ccxt_exchange_build(
        exchange_id="binance",
        credentials={"api_key": "k", "secret": "s", "password": "p"},
        sandbox=True,
        options={"urls": {"api": {"public": "http://127.0.0.1:9/api/v3"}}, "options": {"defaultType": "spot"}},
    )
    assert exchange.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert exchange.urls["api"]["private"] == "https://testnet.binance.vision/api/v3"  # the sandbox's, kept
    assert (exchange.apiKey, exchange.secret, exchange.password) == ("k", "s", "p")
    assert exchange.enableRateLimit and exchange.timeout <= 60_000
    assert exchange.options["defaultType"] == "spot"


def test_options_may_not_carry_credentials_or_unknown_keys():
    with pytest.raises(BrokerRejected, match="apiKey"):
        ccxt_exchange_build(exchange_id="binance", credentials={}, sandbox=False, options={"apiKey": "x"})
    with pytest.raises(BrokerRejected, match="no exchange"):
        ccxt_exchange_build(exchange_id="nosuchexchange", credentials={}, sandbox=False, options={})


@pytest.mark.parametrize("kind", ["spot", "futures"])
def test_ccxt_parses_orders_trades_and_fees_from_the_fake(kind):
    with fake_exchange(kind) as fake:
        exchange = ccxt_exchange_build(
            exchange_id=fake.exchange_id, credentials={"api_key": API_KEY, "secret": SECRET}, sandbox=True, options=fake.ccxt_options()
        )
        symbol = SYMBOLS[kind]
        bought = exchange.create_order(symbol, "market", "buy", 0.01, params={"clientOrderId": "c-1"})
        assert (bought["clientOrderId"], bought["status"], bought["filled"], bought["average"]) == ("c-1", "closed", 0.01, 50000.0)
        resting = exchange.create_order(symbol, "limit", "buy", 0.01, 49000, params={"clientOrderId": "c-2"})
        assert resting["status"] == "open"
        assert [o["id"] for o in exchange.fetch_open_orders(symbol)] == [resting["id"]]
        assert exchange.fetch_order(None, symbol, params={"origClientOrderId": "c-2"})["id"] == resting["id"]
        fake.set_price("BTCUSDT", "48900")  # the limit is reached: it fills at its price
        assert exchange.fetch_order(resting["id"], symbol)["status"] == "closed"
        trades = exchange.fetch_my_trades(symbol)
        assert [t["order"] for t in trades] == [bought["id"], resting["id"]]
        assert trades[1]["price"] == 49000.0
        # spot charges the fee in BNB while the account holds some; futures in USDT
        assert trades[0]["fee"]["currency"] == ("BNB" if kind == "spot" else "USDT")
        if kind == "futures":
            (position,) = exchange.fetch_positions()
            assert (position["symbol"], position["side"], position["contracts"]) == (symbol, "long", 0.02)
            closed = exchange.create_order(symbol, "market", "sell", 0.02, params={"reduceOnly": True})
            assert closed["reduceOnly"] is True and closed["status"] == "closed"
            assert exchange.fetch_positions() == []
            # nothing left to reduce: -2022, which ccxt maps by the exchange's futures host
            # only (a local fake's URL is not it), so a plain ExchangeError here
            with pytest.raises(ccxt.ExchangeError, match="ReduceOnly"):
                exchange.create_order(symbol, "market", "sell", 0.01, params={"reduceOnly": True})


@pytest.mark.parametrize("kind", ["spot", "futures"])
def test_the_fakes_errors_map_to_ccxts_exceptions(kind):
    with fake_exchange(kind) as fake:
        build = lambda **kw: ccxt_exchange_build(  # noqa: E731
            exchange_id=fake.exchange_id,
            credentials={"api_key": API_KEY, "secret": SECRET, **kw},
            sandbox=True,
            options=fake.ccxt_options(),
        )
        exchange = build()
        symbol = SYMBOLS[kind]
        exchange.load_markets()
        fake.fault("auth")
        with pytest.raises(ccxt.AuthenticationError):
            exchange.fetch_balance()
        fake.fault("rate_limit")
        with pytest.raises(ccxt.DDoSProtection):
            exchange.fetch_balance()
        # spot: -2010 with Binance's message, which ccxt maps exactly; futures: -2019,
        # mapped to InsufficientFunds for Binance's futures host only (a plain ExchangeError elsewhere)
        with pytest.raises(ccxt.InsufficientFunds if kind == "spot" else ccxt.ExchangeError, match="nsufficient"):
            exchange.create_order(symbol, "market", "buy", 900)
        with pytest.raises(ccxt.OrderNotFound):
            exchange.fetch_order("424242", symbol)
        with pytest.raises(ccxt.BadSymbol):
            exchange.fetch_ticker("NOPE/USDT")
        # a wrong secret: -1022, the signature does not match
        with pytest.raises(ccxt.AuthenticationError, match="Signature"):
            build(secret="wrong").fetch_balance()
        exchange.create_order(symbol, "market", "buy", 0.01, params={"clientOrderId": "dup-1"})
        with pytest.raises(ccxt.ExchangeError, match="uplicate"):
            exchange.create_order(symbol, "market", "buy", 0.01, params={"clientOrderId": "dup-1"})
        exchange.timeout = 500
        fake.fault("timeout_after_accept", seconds=1.5)
        with pytest.raises(ccxt.RequestTimeout):
            exchange.create_order(symbol, "market", "buy", 0.01, params={"clientOrderId": "lost-1"})
        assert [o["client_order_id"] for o in fake.orders()][-1] == "lost-1"  # booked all the same
        assert Decimal(str(exchange.fetch_ticker(symbol)["last"])) == Decimal(50000)
        assert len(exchange.fetch_ohlcv(symbol, "1m", limit=5)) == 5
