"""The CCXT adapter against the fake exchange over real sockets, through the
OMS: each ccxt error's outcome, an order whose answer was lost settled
without a second order, a resent client order id resolved to the order the
exchange has, the exchange's minimums refused before sending, raw payloads
kept with the order's events and deals, money in every currency."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import ccxt as ccxt_lib
import pytest
from django.core.management import call_command
from django.utils import timezone

from brokers.base import BrokerAuthExpired, BrokerRateLimited, BrokerRejected, BrokerTimeout, BrokerUnavailable, OrderRequest
from brokers.ccxt.adapter import CcxtBroker, average_cost, error_for
from brokers.ccxt.markets import instrument_fields, precision_step
from core.exceptions import DomainError
from marketdata.models import Instrument
from oms.models import Deal, Order, Position
from oms.services.sweeper import orders_sweep
from tests.ccxt_support import PRICE, Ccxt, ccxt_running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spot(settings, alice) -> Iterator[Ccxt]:
    with ccxt_running(settings, alice, "spot") as running:
        yield running


@pytest.fixture
def futures(settings, alice) -> Iterator[Ccxt]:
    with ccxt_running(settings, alice, "futures") as running:
        yield running


def _later(settings):
    return timezone.now() + timedelta(seconds=settings.OMS_SWEEP_AFTER_SECONDS + 1)


def test_ccxt_errors_map_to_the_protocol():
    assert isinstance(error_for(ccxt_lib.AuthenticationError("x"), sent=True), BrokerAuthExpired)
    assert isinstance(error_for(ccxt_lib.PermissionDenied("x"), sent=False), BrokerAuthExpired)
    assert isinstance(error_for(ccxt_lib.RateLimitExceeded("x"), sent=True), BrokerRateLimited)
    assert isinstance(error_for(ccxt_lib.DDoSProtection("x"), sent=True), BrokerRateLimited)
    for exc in (ccxt_lib.RequestTimeout("x"), ccxt_lib.ExchangeNotAvailable("x"), ccxt_lib.NetworkError("x"), ccxt_lib.BadResponse("x")):
        assert isinstance(error_for(exc, sent=True), BrokerTimeout), exc  # it may have been executed
        assert isinstance(error_for(exc, sent=False), BrokerUnavailable), exc
    refused = ccxt_lib.NetworkError("x")
    refused.__cause__ = ConnectionRefusedError("Connection refused")
    assert isinstance(error_for(refused, sent=True), BrokerUnavailable)  # surely never sent
    for exc in (ccxt_lib.InsufficientFunds("x"), ccxt_lib.BadSymbol("x"), ccxt_lib.InvalidOrder("x"), ccxt_lib.ExchangeError("x")):
        assert isinstance(error_for(exc, sent=True), BrokerRejected), exc


def test_a_market_buy_fills_with_its_fee_in_bnb_and_the_raw_trade_kept(spot):
    order = spot.send(qty="0.5")
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.avg_fill_price) == ("filled", Decimal("0.5"), PRICE)
    (deal,) = Deal.objects.filter(order=order)
    # Binance charges 0.075% in BNB while the account holds BNB: the fee in its own currency
    assert deal.fee_currency == "BNB" and deal.fee == (Decimal("0.5") * PRICE * Decimal("0.00075") / 600).quantize(Decimal("1e-8"))
    assert deal.payload["commissionAsset"] == "BNB" and deal.payload["tradeId"]  # the exchange's own trade
    assert deal.broker_trade_id.startswith("BTC/USDT#")
    # the exchange's answer to the order, with the order's events
    answers = [e.payload for e in order.events.all() if e.payload.get("clientOrderId")]
    assert answers and answers[0]["clientOrderId"] == order.client_order_id and answers[0]["status"] == "FILLED"
    position = Position.objects.get(account=spot.account, symbol=spot.symbol, status="open")
    assert position.qty == Decimal("0.5")


def test_funds_list_every_currency_the_exchange_reports(spot):
    spot.send(qty="0.5")
    funds = spot.broker().funds()
    balances = {b.currency: b.cash for b in funds.balances}
    assert balances["BTC"] == Decimal("0.5") and balances["BNB"] < Decimal(100) and balances["USDT"] == Decimal(1000000) - 25000
    assert funds.rates["BTC"] == PRICE and funds.rates["BNB"] == Decimal(600)
    assert funds.cash == sum((c * funds.rates[k] for k, c in balances.items()), Decimal(0))


def test_an_order_whose_answer_is_lost_is_settled_without_a_second_order(spot, settings):
    spot.fake.fault("timeout_after_accept", path="/api/v3/order", method="POST", seconds=3)
    order = spot.send(qty="0.2")
    order.refresh_from_db()
    assert order.status == "unknown"
    assert len(spot.orders_at_fake()) == 1  # the exchange booked it
    orders_sweep(now=_later(settings))
    spot.reconcile(later=True)
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("filled", Decimal("0.2"))
    assert order.broker_order_id == str(spot.orders_at_fake()[0]["order_id"])
    assert len(spot.orders_at_fake()) == 1  # never sent again
    assert Deal.objects.filter(order=order).count() == 1


def test_a_resent_client_order_id_is_resolved_to_the_order_the_exchange_has(spot):
    broker = spot.broker()
    request = OrderRequest(
        client_order_id="resend-1", symbol=spot.symbol, side="buy", order_type="limit", qty=Decimal("0.1"), price=Decimal(40000)
    )
    first = broker.place_order(request)
    again = broker.place_order(request)  # Binance answers -2010 "Duplicate order sent."
    assert again.broker_order_id == first.broker_order_id and again.status == "new"
    assert "client order id" in again.message
    assert len(spot.orders_at_fake()) == 1


@pytest.mark.parametrize(
    "fault,expected",
    [
        ("insufficient_funds", BrokerRejected),
        ("rate_limit", BrokerRateLimited),
        ("api_key_invalid", BrokerAuthExpired),
        ("server_error", BrokerTimeout),
    ],
)
def test_each_exchange_error_on_a_new_order(spot, fault, expected):
    broker = spot.broker()
    spot.fake.fault(fault, path="/api/v3/order", method="POST")
    request = OrderRequest(client_order_id=f"e-{fault}", symbol=spot.symbol, side="buy", order_type="market", qty=Decimal("0.1"))
    with pytest.raises(expected):
        broker.place_order(request)


def test_a_symbol_the_exchange_lacks_and_an_unreachable_exchange(spot):
    broker = spot.broker()
    with pytest.raises(BrokerRejected, match="no market"):
        broker.place_order(OrderRequest(client_order_id="x1", symbol="BINANCE:DOGE/USDT", side="buy", order_type="market", qty=Decimal(1)))
    with spot.unreachable():
        unreachable = CcxtBroker(type(spot.account).objects.get(pk=spot.account.pk))
        with pytest.raises(BrokerUnavailable):
            unreachable.place_order(
                OrderRequest(client_order_id="x2", symbol=spot.symbol, side="buy", order_type="market", qty=Decimal("0.1"))
            )
    assert spot.orders_at_fake() == []


def test_the_exchanges_minimums_are_refused_before_sending(spot):
    instrument = Instrument.objects.get(symbol=spot.symbol)
    assert (instrument.min_amount, instrument.min_notional) == (Decimal("0.00001"), Decimal(5))
    with pytest.raises(DomainError) as small:
        spot.send(order_type="limit", price="50000", qty="0.00009")  # 4.5 USDT < 5
    assert small.value.code == "below_exchange_minimum" and small.value.status_code == 422
    assert "minimum order value 5" in str(small.value.fields["qty"])
    with pytest.raises(DomainError) as tiny:
        spot.send(qty="0.000001")
    assert tiny.value.code in ("below_exchange_minimum", "validation_error")
    assert spot.orders_at_fake() == [] and not Order.objects.filter(account=spot.account).exists()


def test_import_converts_precision_by_the_precision_mode(spot, futures):
    btc = Instrument.objects.get(symbol=spot.symbol)
    assert (btc.lot_size, btc.tick_size, btc.currency, btc.type) == (Decimal("0.00001"), Decimal("0.01"), "USDT", "crypto")
    perp = Instrument.objects.get(symbol=futures.symbol)
    assert (perp.lot_size, perp.tick_size, perp.min_notional, perp.type, perp.segment) == (
        Decimal("0.001"),
        Decimal("0.1"),
        Decimal(100),
        "future",
        "swap",
    )
    # DECIMAL_PLACES exchanges give a count of decimals: 3 -> 0.001
    fields = instrument_fields(
        {"precision": {"amount": 3, "price": 2}, "limits": {}, "quote": "EUR", "type": "spot"}, ccxt_lib.DECIMAL_PLACES
    )
    assert (fields["lot_size"], fields["tick_size"]) == (Decimal("0.001"), Decimal("0.01"))
    assert precision_step(4, ccxt_lib.SIGNIFICANT_DIGITS) is None
    out = io.StringIO()
    call_command("import_ccxt_markets", str(spot.account.pk), "--symbols", "ETH/BTC", stdout=out)
    assert "0 created, 1 refreshed" in out.getvalue()  # imported with the account already
    assert Instrument.objects.get(symbol="BINANCE:ETH/BTC").currency == "BTC"


def test_futures_reduce_only_positions_and_amend(futures):
    bought = futures.send(qty="0.02")
    bought.refresh_from_db()
    assert bought.status == "filled"
    (position,) = futures.broker().positions()
    assert (position.symbol, position.qty, position.avg_price) == (futures.symbol, Decimal("0.02"), PRICE)
    resting = futures.send(order_type="limit", price="40000", qty="0.01")
    changed = futures.command("change_order", {"order_id": resting.pk, "price": "41000", "qty": "0.02"})
    changed.refresh_from_db()
    assert (changed.status, changed.price, changed.qty) == ("new", Decimal(41000), Decimal("0.02"))
    assert futures.fake.orders()[-1]["price"] == Decimal(41000)
    closing = futures.send(side="sell", qty="0.02", reduce_only=True)
    closing.refresh_from_db()
    assert closing.status == "filled" and futures.fake.orders()[-1]["reduce_only"] is True
    assert futures.broker().positions() == []
    # nothing left to reduce: refused (by the OMS, or by the exchange's -2022), nothing opened
    try:
        order = futures.send(side="sell", qty="0.02", reduce_only=True)
    except DomainError:
        pass
    else:
        order.refresh_from_db()
        assert order.status == "rejected" and "ReduceOnly" in order.status_message
    assert futures.broker().positions() == []


# --- money: a holding's cost, a futures account's cash -------------------------------------------


def _trade(side: str, amount: str, price: str, fee: str = "0", fee_currency: str = "BNB", ts: int = 0) -> dict:
    return {"id": str(ts), "timestamp": ts, "side": side, "amount": amount, "price": price, "fee": {"cost": fee, "currency": fee_currency}}


def test_a_holdings_average_cost_comes_from_its_trades_or_is_unknown():
    cost = average_cost
    # two buys, a sell (the average stays), the fee in the asset bought shrinks what is held
    trades = [_trade("buy", "1", "100", ts=1), _trade("buy", "1", "200", ts=2), _trade("sell", "1", "300", ts=3)]
    assert cost(trades, Decimal(1), base="BTC", quote="USDT", dust=Decimal("0.001")) == Decimal(150)
    fee_in_base = [_trade("buy", "1", "100", fee="0.001", fee_currency="BTC", ts=1)]
    assert cost(fee_in_base, Decimal("0.999"), base="BTC", quote="USDT", dust=Decimal(0)) == (Decimal(100) / Decimal("0.999")).quantize(
        Decimal("1e-10")
    )
    fee_in_quote = [_trade("buy", "2", "100", fee="1", fee_currency="USDT", ts=1)]
    assert cost(fee_in_quote, Decimal(2), base="BTC", quote="USDT", dust=Decimal(0)) == Decimal("100.5")
    # sold out, then bought again: only the trades since the account held none count
    again = [_trade("buy", "1", "100", ts=1), _trade("sell", "1", "150", ts=2), _trade("buy", "1", "300", ts=3)]
    assert cost(again, Decimal(1), base="BTC", quote="USDT", dust=Decimal(0)) == Decimal(300)
    # more held than the trades explain (a deposit, older history): unknown, never 0
    assert cost(trades, Decimal(5), base="BTC", quote="USDT", dust=Decimal(0)) is None
    assert cost([], Decimal(1), base="BTC", quote="USDT", dust=Decimal(0)) is None


def test_spot_holdings_carry_their_cost_and_an_unknown_cost_is_null(spot, alice_api):
    spot.send(qty="0.5")
    spot.fake.set_price("BTCUSDT", Decimal(60000))
    spot.send(qty="0.5")
    spot.send(side="sell", qty="0.5")
    held = {h.symbol: h for h in spot.broker().holdings()}
    # bought 0.5 at 50,000 and 0.5 at 60,000, sold 0.5: the rest cost 55,000 each (fees in BNB)
    btc, bnb = held["BINANCE:BTC/USDT"], held["BINANCE:BNB/USDT"]
    assert (btc.qty, btc.avg_price, btc.last_price, btc.pnl) == (Decimal("0.5"), Decimal(55000), Decimal(60000), Decimal(2500))
    # the BNB came in by deposit: no trade tells its cost, so no P&L either
    assert (bnb.avg_price, bnb.last_price, bnb.pnl) == (None, Decimal(600), None)
    asked = spot.fake.calls["GET /api/v3/myTrades"]
    assert {h.symbol: h.avg_price for h in spot.broker().holdings()}["BINANCE:BTC/USDT"] == Decimal(55000)
    assert spot.fake.calls["GET /api/v3/myTrades"] == asked  # the same quantities: their costs asked for once
    body = alice_api.get(f"/api/v1/accounts/{spot.account.pk}/holdings").json()
    rows = {r["symbol"]: r for r in body["results"]}
    assert rows["BINANCE:BNB/USDT"]["avg_price"] is None and Decimal(rows["BINANCE:BTC/USDT"]["avg_price"]) == Decimal(55000)


def test_futures_cash_is_the_wallet_and_unrealized_pnl_is_apart(futures):
    futures.send(qty="1")
    futures.fake.set_price("BTCUSDT", Decimal(51000))
    funds = futures.broker().funds()
    fee = PRICE * Decimal("0.0004")
    wallet = Decimal(1_000_000) - fee
    assert (funds.cash, funds.unrealized_pnl, funds.equity) == (wallet, Decimal(1000), wallet + Decimal(1000))
    assert {b.currency: b.cash for b in funds.balances}["USDT"] == wallet


# --- stop orders ------------------------------------------------------------------------------------


def test_a_spot_stop_waits_at_the_exchange_and_fills_when_the_price_falls_to_it(spot):
    spot.send(qty="0.5")
    stop = spot.send(side="sell", order_type="stop", stop_price="45000", qty="0.5")
    stop.refresh_from_db()
    assert stop.status == "new" and stop.broker_order_id
    at_fake = spot.orders_at_fake()[-1]
    assert (at_fake["type"], at_fake["stop_price"], at_fake["status"]) == ("STOP_LOSS", Decimal(45000), "NEW")
    view = spot.broker().get_order(broker_order_id=stop.broker_order_id, symbol=spot.symbol)
    assert (view.order_type, view.stop_price, view.price) == ("stop", Decimal(45000), None)
    spot.fake.set_price("BTCUSDT", Decimal(44000))  # falls through the stop: a market sell
    spot.reconcile(later=True)
    stop.refresh_from_db()
    assert (stop.status, stop.filled_qty, stop.avg_fill_price) == ("filled", Decimal("0.5"), Decimal(44000))


def test_a_spot_stop_limit_is_stop_loss_limit_and_rests_at_its_price_once_triggered(spot):
    order = spot.send(order_type="stop_limit", stop_price="55000", price="55100", qty="0.1")
    order.refresh_from_db()
    assert order.status == "new"
    at_fake = spot.orders_at_fake()[-1]
    assert (at_fake["type"], at_fake["stop_price"], at_fake["price"]) == ("STOP_LOSS_LIMIT", Decimal(55000), Decimal(55100))
    spot.fake.set_price("BTCUSDT", Decimal(54000))
    assert spot.orders_at_fake()[-1]["status"] == "NEW"  # not triggered below its stop
    spot.fake.set_price("BTCUSDT", Decimal(55050))
    spot.reconcile(later=True)
    order.refresh_from_db()
    assert (order.status, order.avg_fill_price) == ("filled", Decimal(55050))


def test_a_stop_that_would_trigger_at_once_is_refused_and_a_resting_one_cancels(spot):
    # a buy stop below the market would trigger at once: Binance refuses it
    refused = spot.send(order_type="stop", stop_price="40000", qty="0.1")
    refused.refresh_from_db()
    assert refused.status == "rejected" and "trigger immediately" in refused.status_message
    resting = spot.send(order_type="stop", stop_price="60000", qty="0.1")
    canceled = spot.command("cancel_order", {"order_id": resting.pk})
    canceled.refresh_from_db()
    assert canceled.status == "canceled" and spot.orders_at_fake()[-1]["status"] == "CANCELED"


def test_futures_stops_are_refused_before_sending(futures):
    with pytest.raises(DomainError) as refusal:
        futures.send(order_type="stop", stop_price="60000")
    assert refusal.value.code == "unsupported_by_broker"
    assert not [o for o in futures.orders_at_fake() if o["type"] != "MARKET"]
