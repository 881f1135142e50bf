"""The paper matching core alone: plain objects in, events out, no database."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from brokers.base import OrderRequest
from brokers.paper.book import EngineConfig, FillEvent, InstrumentSpec, OrderRejected, StatusEvent
from brokers.paper.engine import PaperEngine
from marketdata.types import Quote

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_773_151_200.0  # Tuesday 2026-03-10 14:00 UTC = 10:00 in New York (EDT)
STOCK = InstrumentSpec(symbol="AAPL", type="stock", tick_size=D("0.01"))
FUTURE = InstrumentSpec(symbol="ESF", type="future", tick_size=D("0.25"), multiplier=D(50))
NY_STOCK = InstrumentSpec(symbol="NYS", type="stock", session="0930-1600:23456", timezone="America/New_York")
CONFIG = EngineConfig(
    fee_bps=D(1),
    min_fee=D(0),
    slippage_bps=D(2),
    stale_seconds=10.0,
    margin_rates={"stock": D(1), "crypto": D(1), "index": D(1), "future": D("0.1"), "option": D(1)},
)


def engine(cash: str = "1000000", **config) -> PaperEngine:
    cfg = dataclasses.replace(CONFIG, **config)
    return PaperEngine(cfg, cash=D(cash))


def quote(
    bid: str,
    ask: str,
    *,
    bid_size: str | None = "100",
    ask_size: str | None = "100",
    symbol: str = "AAPL",
    t: float = NOW,
    last: str | None = None,
):
    return Quote(
        symbol=symbol,
        time=t,
        last=D(last) if last else (D(bid) + D(ask)) / 2,
        bid=D(bid),
        ask=D(ask),
        bid_size=None if bid_size is None else D(bid_size),
        ask_size=None if ask_size is None else D(ask_size),
    )


_ids = iter(range(1, 10**9))


def order(
    side: str,
    qty: str,
    order_type: str = "market",
    *,
    price: str | None = None,
    stop: str | None = None,
    tif: str = "gtc",
    symbol: str = "AAPL",
    reduce_only: bool = False,
    cid: str | None = None,
):
    return OrderRequest(
        client_order_id=cid or f"c{next(_ids)}",
        symbol=symbol,
        side=side,
        order_type=order_type,
        qty=D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        time_in_force=tif,
        reduce_only=reduce_only,
    )


def fills(events) -> list[FillEvent]:
    return [e for e in events if isinstance(e, FillEvent)]


def status(events) -> StatusEvent:
    return [e for e in events if isinstance(e, StatusEvent)][-1]


def statuses(events, cause: str) -> list[StatusEvent]:
    return [e for e in events if isinstance(e, StatusEvent) and e.cause == cause]


# --- market orders ----------------------------------------------------------------------


def test_market_buy_fills_at_the_ask_plus_slippage_with_the_fee_on_the_notional():
    e = engine()
    events = e.submit(order("buy", "10"), quote("99.99", "100.00"), STOCK, NOW)
    [fill] = fills(events)
    assert fill.price == D("100.02")  # 100.00 * (1 + 2 bps)
    assert fill.qty == D(10)
    assert fill.fee == D("0.10002")  # 1 bp of 1000.20
    assert fill.trade_id == "PF000001" and fill.broker_order_id == "P000001"
    assert status(events).status == "filled"
    assert e.cash == D(1_000_000) - D("1000.20") - D("0.10002")
    e.check_invariants()


def test_market_sell_fills_at_the_bid_minus_slippage():
    e = engine()
    [fill] = fills(e.submit(order("sell", "5"), quote("200.00", "200.02"), STOCK, NOW))
    assert fill.price == D("199.96")
    assert e.positions["AAPL"].qty == D(-5)


def test_market_order_larger_than_the_quote_size_fills_partially_then_on_later_quotes():
    e = engine()
    events = e.submit(order("buy", "250"), quote("99.99", "100.00", ask_size="100"), STOCK, NOW)
    assert [f.qty for f in fills(events)] == [D(100)]
    assert status(events).status == "partially_filled"
    events = e.on_quote(quote("100.00", "100.01", ask_size="100", t=NOW + 1), NOW + 1)
    assert [f.qty for f in fills(events)] == [D(100)]
    assert statuses(events, "fill")[0].status == "partially_filled"
    events = e.on_quote(quote("100.01", "100.02", ask_size="100", t=NOW + 2), NOW + 2)
    assert [f.qty for f in fills(events)] == [D(50)]
    assert statuses(events, "fill")[0].status == "filled"
    o = e.order("P000001")
    assert o.filled_qty == D(250)
    # Average of 100@100.02, 100@100.030002, 50@100.040004.
    assert o.avg_fill_price == ((100 * D("100.02") + 100 * D("100.030002") + 50 * D("100.040004")) / 250).quantize(D("1e-10"))
    e.check_invariants()


def test_market_order_without_sizes_on_the_quote_fills_whole():
    e = engine()
    [fill] = fills(e.submit(order("buy", "5000"), quote("99.99", "100.00", ask_size=None), STOCK, NOW))
    assert fill.qty == D(5000)


def test_market_order_against_a_stale_quote_is_rejected_with_the_reason():
    e = engine()
    events = e.submit(order("buy", "1"), quote("99.99", "100.00", t=NOW - 11), STOCK, NOW)
    assert status(events).status == "rejected"
    assert "stale" in status(events).message and "11.0 s old" in status(events).message
    assert fills(events) == []


def test_market_order_without_any_quote_is_rejected():
    e = engine()
    events = e.submit(order("buy", "1"), None, STOCK, NOW)
    assert status(events).status == "rejected"
    assert "No quote for AAPL" in status(events).message


def test_stale_quotes_fill_nothing_that_is_working():
    e = engine()
    e.submit(order("buy", "1", "limit", price="100.00"), quote("100.04", "100.05"), STOCK, NOW)
    assert fills(e.on_quote(quote("99.90", "99.95", t=NOW + 1), NOW + 12)) == []
    assert fills(e.on_quote(quote("99.90", "99.95", t=NOW + 13), NOW + 13))[0].price == D("99.95")


# --- limit orders ----------------------------------------------------------------------------


def test_limit_buy_rests_then_fills_at_the_better_ask_by_size_across_quotes():
    e = engine()
    events = e.submit(order("buy", "150", "limit", price="100.00"), quote("100.04", "100.05"), STOCK, NOW)
    assert fills(events) == [] and status(events).status == "new"
    assert fills(e.on_quote(quote("100.00", "100.01", t=NOW + 1), NOW + 1)) == []  # ask above the limit
    first = fills(e.on_quote(quote("99.96", "99.97", ask_size="60", t=NOW + 2), NOW + 2))
    assert [(f.qty, f.price) for f in first] == [(D(60), D("99.97"))]  # price improvement, no slippage
    second = fills(e.on_quote(quote("99.99", "100.00", ask_size="500", t=NOW + 3), NOW + 3))
    assert [(f.qty, f.price) for f in second] == [(D(90), D("100.00"))]
    assert e.order("P000001").status == "filled"


def test_limit_sell_fills_when_the_bid_reaches_it():
    e = engine()
    e.submit(order("sell", "10", "limit", price="101.00"), quote("100.00", "100.01"), STOCK, NOW)
    [fill] = fills(e.on_quote(quote("101.20", "101.21", t=NOW + 1), NOW + 1))
    assert fill.price == D("101.20")


def test_marketable_limit_fills_at_once_at_the_quote():
    e = engine()
    events = e.submit(order("buy", "10", "limit", price="101.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert [(f.qty, f.price) for f in fills(events)] == [(D(10), D("100.00"))]


def test_best_price_then_time_takes_a_small_quote_first():
    e = engine()
    e.submit(order("buy", "10", "limit", price="100.00"), quote("100.10", "100.20"), STOCK, NOW)
    e.submit(order("buy", "10", "limit", price="100.05"), quote("100.10", "100.20"), STOCK, NOW)
    e.submit(order("buy", "10", "limit", price="100.05"), quote("100.10", "100.20"), STOCK, NOW)
    events = e.on_quote(quote("99.90", "100.00", ask_size="15", t=NOW + 1), NOW + 1)
    assert [(f.broker_order_id, f.qty) for f in fills(events)] == [("P000002", D(10)), ("P000003", D(5))]
    e.check_invariants()


def test_the_same_quote_twice_never_fills_twice():
    e = engine()
    e.submit(order("buy", "100", "limit", price="100.00"), quote("100.04", "100.05"), STOCK, NOW)
    q = quote("99.99", "100.00", ask_size="30", t=NOW + 1)
    assert sum(f.qty for f in fills(e.on_quote(q, NOW + 1))) == D(30)
    assert fills(e.on_quote(q, NOW + 1)) == []
    assert fills(e.on_quote(quote("99.99", "100.00", ask_size="30", t=NOW + 1), NOW + 2)) == []  # an equal copy too
    assert e.order("P000001").filled_qty == D(30)


def test_a_quote_older_than_the_last_one_seen_is_ignored():
    e = engine()
    e.submit(order("buy", "10", "limit", price="100.00"), quote("100.04", "100.05", t=NOW), STOCK, NOW)
    assert fills(e.on_quote(quote("99.90", "99.95", t=NOW - 1), NOW)) == []


def test_submit_and_then_the_listener_share_one_quote_size():
    e = engine()
    q = quote("99.99", "100.00", ask_size="50")
    e.submit(order("buy", "100", "limit", price="99.98"), q, STOCK, NOW)  # rests
    assert fills(e.submit(order("buy", "40"), q, STOCK, NOW))[0].qty == D(40)
    e.modify("P000001", price=D("100.00"), quote=q, now=NOW)
    assert e.order("P000001").filled_qty == D(10)  # what the market order left of the 50
    assert fills(e.on_quote(q, NOW)) == []


# --- stops ------------------------------------------------------------------------------------


def test_buy_stop_triggers_when_the_ask_reaches_it_then_fills_as_market_with_slippage():
    e = engine()
    events = e.submit(order("buy", "10", "stop", stop="101.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert status(events).status == "new" and not e.order("P000001").triggered
    assert fills(e.on_quote(quote("100.98", "100.99", t=NOW + 1), NOW + 1)) == []
    [fill] = fills(e.on_quote(quote("101.00", "101.01", t=NOW + 2), NOW + 2))
    assert fill.price == (D("101.01") * D("1.0002")).quantize(D("1e-10"))
    assert e.order("P000001").triggered


def test_sell_stop_triggers_when_the_bid_falls_to_it():
    e = engine()
    e.submit(order("sell", "10", "stop", stop="99.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert fills(e.on_quote(quote("99.01", "99.02", t=NOW + 1), NOW + 1)) == []
    [fill] = fills(e.on_quote(quote("98.90", "98.95", t=NOW + 2), NOW + 2))
    assert fill.price == (D("98.90") * D("0.9998")).quantize(D("1e-10"))


def test_stop_limit_triggers_then_waits_as_a_limit():
    e = engine()
    e.submit(order("buy", "10", "stop_limit", price="101.05", stop="101.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert fills(e.on_quote(quote("101.09", "101.10", t=NOW + 1), NOW + 1)) == []  # triggered, ask above the limit
    assert e.order("P000001").triggered and e.order("P000001").status == "new"
    [fill] = fills(e.on_quote(quote("100.99", "101.00", t=NOW + 2), NOW + 2))  # below the stop now: still a limit
    assert fill.price == D("101.00")


def test_a_stop_already_crossed_when_sent_triggers_at_once():
    e = engine()
    [fill] = fills(e.submit(order("buy", "1", "stop", stop="99.00"), quote("99.99", "100.00"), STOCK, NOW))
    assert fill.price == D("100.02")


# --- time in force ------------------------------------------------------------------------------


def test_ioc_fills_what_it_can_and_cancels_the_rest():
    e = engine()
    events = e.submit(order("buy", "150", tif="ioc"), quote("99.99", "100.00", ask_size="100"), STOCK, NOW)
    assert sum(f.qty for f in fills(events)) == D(100)
    final = status(events)
    assert (final.status, final.filled_qty) == ("canceled", D(100))
    assert "IOC" in final.message
    assert fills(e.on_quote(quote("99.99", "100.00", t=NOW + 1), NOW + 1)) == []
    e.check_invariants()


def test_ioc_limit_that_cannot_fill_is_canceled_at_once():
    e = engine()
    events = e.submit(order("buy", "10", "limit", price="99.00", tif="ioc"), quote("99.99", "100.00"), STOCK, NOW)
    assert (status(events).status, status(events).filled_qty) == ("canceled", D(0))


def test_ioc_stop_waits_for_its_trigger_then_the_venue_cancels_the_rest():
    e = engine()
    assert status(e.submit(order("buy", "150", "stop", stop="101.00", tif="ioc"), quote("99.99", "100.00"), STOCK, NOW)).status == "new"
    events = e.on_quote(quote("101.00", "101.01", ask_size="100", t=NOW + 1), NOW + 1)
    assert sum(f.qty for f in fills(events)) == D(100)
    [venue] = statuses(events, "venue")
    assert (venue.status, venue.filled_qty) == ("canceled", D(100))


def test_day_order_expires_at_the_session_close_in_the_instruments_timezone():
    e = engine()
    q = quote("99.99", "100.00", symbol="NYS")
    e.submit(order("buy", "10", "limit", price="90.00", tif="day", symbol="NYS"), q, NY_STOCK, NOW)
    e.submit(order("buy", "10", "limit", price="90.00", tif="gtc", symbol="NYS"), q, NY_STOCK, NOW)
    close = datetime(2026, 3, 10, 20, 0, tzinfo=UTC).timestamp()  # 16:00 EDT
    assert e.order("P000001").expires_at == close
    assert e.expire_day_orders(close - 1) == []
    [expired] = e.expire_day_orders(close)
    assert (expired.broker_order_id, expired.status, expired.cause) == ("P000001", "expired", "venue")
    assert e.order("P000002").status == "new"
    e.check_invariants()


def test_day_order_sent_outside_the_session_lives_until_the_next_close():
    e = engine()
    saturday = datetime(2026, 3, 14, 15, 0, tzinfo=UTC).timestamp()
    e.submit(order("buy", "1", "limit", price="90.00", tif="day", symbol="NYS"), None, NY_STOCK, saturday)
    assert e.order("P000001").expires_at == datetime(2026, 3, 16, 20, 0, tzinfo=UTC).timestamp()  # Monday 16:00 EDT


def test_day_order_on_a_24x7_instrument_expires_at_midnight_utc():
    e = engine()
    e.submit(order("buy", "1", "limit", price="90.00", tif="day"), quote("99.99", "100.00"), STOCK, NOW)
    assert e.order("P000001").expires_at == datetime(2026, 3, 11, 0, 0, tzinfo=UTC).timestamp()


# --- fees, margin, cash ---------------------------------------------------------------------------


def test_min_fee_applies_to_small_fills():
    e = engine(min_fee=D("1.50"))
    [fill] = fills(e.submit(order("buy", "1", "limit", price="100.00"), quote("99.99", "100.00"), STOCK, NOW))
    assert fill.fee == D("1.50")
    [big] = fills(e.submit(order("buy", "200", "limit", price="100.00"), quote("99.99", "100.00", ask_size="1000"), STOCK, NOW))
    assert big.fee == D("2")  # 1 bp of 20000 is above the minimum


def test_future_margin_uses_the_multiplier_and_refuses_what_buying_power_cannot_cover():
    e = engine(cash="100000")
    q = quote("4999.75", "5000.00", symbol="ESF")
    refused = status(e.submit(order("buy", "10", "limit", price="5000.00", symbol="ESF"), q, FUTURE, NOW))
    assert refused.status == "rejected"
    assert "needs 250250" in refused.message  # 10 * 5000 * 50 * 0.1 margin + 250 fee (1 bp of 2.5M)
    accepted = e.submit(order("buy", "3", "limit", price="4990.00", symbol="ESF"), q, FUTURE, NOW)
    assert status(accepted).status == "new"
    assert e.reserved_total == D(3) * 4990 * 50 * D("0.1") + D("74.85")
    # 25075.15 is left: one more contract (24974.95) fits, a second does not.
    assert status(e.submit(order("buy", "1", "limit", price="4990.00", symbol="ESF"), q, FUTURE, NOW)).status == "new"
    one_more = status(e.submit(order("buy", "1", "limit", price="4990.00", symbol="ESF"), q, FUTURE, NOW))
    assert one_more.status == "rejected" and "Insufficient buying power" in one_more.message
    e.check_invariants()


def test_futures_move_cash_only_by_realized_pnl_and_fees():
    e = engine(cash="100000")
    e.submit(order("buy", "2", "limit", price="5000.00", symbol="ESF"), quote("4999.75", "5000.00", symbol="ESF"), FUTURE, NOW)
    assert e.cash == D(100000) - D(50)  # the fee on 2 * 5000 * 50
    e.submit(
        order("sell", "2", "limit", price="5010.00", symbol="ESF"), quote("5010.00", "5010.25", symbol="ESF", t=NOW + 1), FUTURE, NOW + 1
    )
    assert e.positions["ESF"].realized_pnl == D(1000)  # 2 * 10 * 50
    assert e.cash == D(100000) + D(1000) - D(50) - D("50.1")


def test_stock_buying_spends_cash_and_is_refused_beyond_it():
    e = engine(cash="10000")
    assert status(e.submit(order("buy", "101", "limit", price="100.00"), quote("100.10", "100.20"), STOCK, NOW)).status == "rejected"
    assert status(e.submit(order("buy", "99", "limit", price="100.00"), quote("99.99", "100.00"), STOCK, NOW)).status == "filled"
    assert e.cash == D(10000) - D(9900) - D("0.99")


def test_closing_orders_need_no_buying_power():
    e = engine(cash="10000")
    e.submit(order("buy", "99", "limit", price="100.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert e.buying_power() < 100
    events = e.submit(order("sell", "99", "limit", price="120.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert status(events).status == "new"
    # ... but a second sell of the same position would open a short: it needs margin.
    assert status(e.submit(order("sell", "99", "limit", price="120.00"), quote("99.99", "100.00"), STOCK, NOW)).status == "rejected"


def test_cash_plus_position_value_is_conserved_minus_fees_and_slippage():
    e = engine(cash="1000000", slippage_bps=D(0))
    start = D(1_000_000)
    trades = [("buy", "10", "100.00"), ("buy", "10", "102.00"), ("sell", "25", "101.50"), ("buy", "5", "99.00")]
    for n, (side, qty, px) in enumerate(trades):
        bid, ask = (D(px), D(px) + D("0.01")) if side == "sell" else (D(px) - D("0.01"), D(px))
        e.submit(order(side, qty), quote(str(bid), str(ask), t=NOW + n, last=px), STOCK, NOW + n)
    assert e.positions["AAPL"].qty == D(0)
    assert e.positions["AAPL"].realized_pnl == D("22.5")  # 20 * (101.50 - 101) + 5 * (101.50 - 99)
    assert e.cash == start + e.positions["AAPL"].realized_pnl - e.fees_paid
    # Open again and value at a mark: equity = start + realized + unrealized - fees.
    e.submit(order("buy", "7"), quote("109.99", "110.00", t=NOW + 10, last="110.00"), STOCK, NOW + 10)
    funds = e.funds({"AAPL": D("115.00")})
    assert funds.unrealized_pnl == D(35)
    assert funds.equity == e.cash + 7 * D("115.00")
    assert funds.equity == start + funds.realized_pnl + funds.unrealized_pnl - e.fees_paid


@pytest.mark.parametrize("spec", [STOCK, FUTURE], ids=["cash product", "margin product"])
def test_random_trading_keeps_equity_equal_to_start_plus_pnl_minus_fees(spec):
    rng = random.Random(11)
    e = engine(cash="100000000")
    mid = 5000 * 4
    for i in range(400):
        mid += rng.choice((-2, -1, 0, 1, 2))
        tick = spec.tick_size
        q = quote(str((mid - 1) * tick), str((mid + 1) * tick), symbol=spec.symbol, t=NOW + i, bid_size="7", ask_size="7")
        e.on_quote(q, NOW + i)
        kind = rng.choice(("market", "limit", "stop"))
        px = str((mid + rng.randint(-4, 4)) * tick)
        req = order(
            rng.choice(("buy", "sell")),
            str(rng.randint(1, 12)),
            kind,
            price=px if kind == "limit" else None,
            stop=px if kind == "stop" else None,
            symbol=spec.symbol,
        )
        e.submit(req, q, spec, NOW + i)
        if i % 17 == 0 and e.working_orders():
            e.cancel(e.working_orders()[0].broker_order_id, NOW + i)
        e.check_invariants()
    funds = e.funds()
    assert abs(funds.equity - (D(100000000) + funds.realized_pnl + funds.unrealized_pnl - e.fees_paid)) < D("0.000001")


# --- reduce only ----------------------------------------------------------------------------------


def test_reduce_only_is_refused_without_a_position_or_beyond_it():
    e = engine()
    q = quote("99.99", "100.00")
    assert "no position" in status(e.submit(order("sell", "1", reduce_only=True), q, STOCK, NOW)).message
    e.submit(order("buy", "10"), q, STOCK, NOW)
    assert "exceeds the position of 10" in status(e.submit(order("sell", "11", reduce_only=True), q, STOCK, NOW)).message
    assert status(e.submit(order("buy", "1", reduce_only=True), q, STOCK, NOW)).status == "rejected"  # would grow it
    assert status(e.submit(order("sell", "4", reduce_only=True), q, STOCK, NOW)).status == "filled"
    assert e.positions["AAPL"].qty == D(6)


def test_reduce_only_fill_is_capped_to_what_is_left_of_the_position():
    e = engine()
    e.submit(order("buy", "10"), quote("99.99", "100.00"), STOCK, NOW)
    e.submit(order("sell", "10", "limit", price="105.00", reduce_only=True), quote("99.99", "100.00"), STOCK, NOW)
    e.submit(order("sell", "6"), quote("99.99", "100.00", t=NOW + 1), STOCK, NOW + 1)  # the position shrinks to 4
    events = e.on_quote(quote("105.00", "105.01", t=NOW + 2), NOW + 2)
    assert [f.qty for f in fills(events)] == [D(4)]
    [venue] = statuses(events, "venue")
    assert (venue.broker_order_id, venue.status, venue.filled_qty) == ("P000002", "canceled", D(4))
    assert e.positions["AAPL"].qty == D(0)


# --- cancel and modify ------------------------------------------------------------------------------


def test_cancel_a_working_order_and_refuse_to_cancel_a_final_one():
    e = engine()
    e.submit(order("buy", "10", "limit", price="90.00"), quote("99.99", "100.00"), STOCK, NOW)
    assert status(e.cancel("P000001", NOW + 1)).status == "canceled"
    assert e.reserved_total == 0
    with pytest.raises(OrderRejected, match="is canceled"):
        e.cancel("P000001", NOW + 2)
    with pytest.raises(OrderRejected, match="Unknown order"):
        e.cancel("P999999", NOW + 2)
    e.submit(order("buy", "1"), quote("99.99", "100.00"), STOCK, NOW)
    with pytest.raises(OrderRejected, match="is filled: it cannot be modified"):
        e.modify("P000002", qty=D(2), now=NOW)


def test_modify_qty_never_below_the_filled_qty():
    e = engine()
    e.submit(order("buy", "100", "limit", price="100.00"), quote("99.99", "100.00", ask_size="30"), STOCK, NOW)
    with pytest.raises(OrderRejected, match="below the filled qty 30"):
        e.modify("P000001", qty=D(20), now=NOW + 1)
    assert status(e.modify("P000001", qty=D(50), now=NOW + 1)).status == "partially_filled"
    assert e.order("P000001").qty == D(50)
    done = status(e.modify("P000001", qty=D(30), now=NOW + 2))
    assert (done.status, done.filled_qty) == ("filled", D(30))
    e.check_invariants()


def test_modify_price_makes_a_limit_marketable_and_it_fills():
    e = engine()
    e.submit(order("buy", "10", "limit", price="99.00"), quote("99.99", "100.00"), STOCK, NOW)
    events = e.modify("P000001", price=D("100.00"), quote=quote("99.99", "100.00", t=NOW + 1), now=NOW + 1)
    assert fills(events)[0].price == D("100.00")
    assert status(events).status == "filled"


def test_modify_refuses_prices_the_order_does_not_have_or_off_the_tick():
    e = engine()
    e.submit(order("buy", "10", "stop", stop="105.00"), quote("99.99", "100.00"), STOCK, NOW)
    with pytest.raises(OrderRejected, match="no limit price"):
        e.modify("P000001", price=D("100.00"), now=NOW)
    with pytest.raises(OrderRejected, match="tick size"):
        e.modify("P000001", stop_price=D("104.005"), now=NOW)
    e.modify("P000001", stop_price=D("100.00"), quote=quote("99.99", "100.00", t=NOW + 1), now=NOW + 1)
    assert e.order("P000001").status == "filled"  # the new stop is crossed: triggered and filled


def test_modify_that_needs_more_buying_power_than_there_is_changes_nothing():
    e = engine(cash="10000")
    e.submit(order("buy", "50", "limit", price="90.00"), quote("99.99", "100.00"), STOCK, NOW)
    with pytest.raises(OrderRejected, match="Insufficient buying power"):
        e.modify("P000001", qty=D(200), now=NOW + 1)
    assert e.order("P000001").qty == D(50)
    e.check_invariants()


# --- validation, idempotency, positions, determinism -------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (order("buy", "0"), "qty must be positive"),
        (order("buy", "1.5"), "lot size"),
        (order("buy", "1", "limit"), "needs a positive price"),
        (order("buy", "1", "limit", price="100.001"), "tick size"),
        (order("buy", "1", price="100.00"), "takes no price"),
        (order("buy", "1", "stop"), "needs a positive stop_price"),
        (order("buy", "1", tif="fok"), "time_in_force"),
    ],
)
def test_invalid_orders_are_rejected_with_the_reason(request_, reason):
    e = engine()
    final = status(e.submit(request_, quote("99.99", "100.00"), STOCK, NOW))
    assert final.status == "rejected" and reason in final.message


def test_a_client_order_id_seen_before_returns_that_order_and_changes_nothing():
    e = engine()
    q = quote("99.99", "100.00")
    first = e.submit(order("buy", "10", cid="same"), q, STOCK, NOW)
    cash = e.cash
    again = e.submit(order("buy", "10", cid="same"), q, STOCK, NOW + 1)
    assert fills(again) == [] and status(again).broker_order_id == status(first).broker_order_id == "P000001"
    assert e.cash == cash and len(e.orders) == 1


def test_positions_flip_at_the_fill_price_and_realize_with_average_cost():
    e = engine(slippage_bps=D(0))
    e.submit(order("buy", "10"), quote("99.99", "100.00"), STOCK, NOW)
    e.submit(order("buy", "10"), quote("101.99", "102.00", t=NOW + 1), STOCK, NOW + 1)
    assert e.positions["AAPL"].avg_price == D(101)
    e.submit(order("sell", "25"), quote("105.00", "105.01", t=NOW + 2), STOCK, NOW + 2)
    position = e.positions["AAPL"]
    assert (position.qty, position.avg_price, position.realized_pnl) == (D(-5), D(105), D(80))


def _scenario(seed: int) -> list:
    rng = random.Random(seed)
    e = engine()
    out = []
    mid = 10_000
    for i in range(300):
        mid += rng.choice((-3, -1, 0, 1, 3))
        q = quote(
            str((mid - 1) * D("0.01")),
            str((mid + 1) * D("0.01")),
            t=NOW + i,
            bid_size=str(rng.randint(1, 30)),
            ask_size=str(rng.randint(1, 30)),
        )
        out += e.on_quote(q, NOW + i)
        kind = rng.choice(("market", "limit", "stop", "stop_limit"))
        px = str((mid + rng.randint(-5, 5)) * D("0.01"))
        req = OrderRequest(
            client_order_id=f"d{i}",
            symbol="AAPL",
            side=rng.choice(("buy", "sell")),
            order_type=kind,
            qty=D(rng.randint(1, 40)),
            price=D(px) if kind in ("limit", "stop_limit") else None,
            stop_price=D(px) if kind in ("stop", "stop_limit") else None,
            time_in_force=rng.choice(("day", "gtc", "ioc")),
        )
        out += e.submit(req, q, STOCK, NOW + i)
        out += e.expire_day_orders(NOW + i * 300)
    return out + [e.cash, e.fees_paid, dict(e.positions)]


def test_the_same_inputs_give_the_same_outputs():
    assert _scenario(3) == _scenario(3)
    assert _scenario(3) != _scenario(4)


def test_the_engine_imports_no_django():
    code = "import sys, brokers.paper.engine; assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (order("buy", "1.00000000001"), "more than 10 decimal places"),
        (order("buy", "1000000000000"), "out of range"),
        (order("buy", "999999999999", "limit", price="99999.00"), "notional is out of range"),
    ],
)
def test_values_the_saved_book_could_not_hold_exactly_are_refused(request_, reason):
    e = engine()
    spec = InstrumentSpec(symbol="AAPL", lot_size=D(0), tick_size=D(0))
    final = status(e.submit(request_, quote("99.99", "100.00"), spec, NOW))
    assert final.status == "rejected" and reason in final.message


def test_no_fill_without_the_instruments_terms():
    e = engine()
    e.submit(order("buy", "10", "limit", price="99.00"), quote("99.99", "100.00"), STOCK, NOW)
    del e.specs["AAPL"]  # a book loaded while its instrument is gone
    assert e.on_quote(quote("98.99", "99.00", t=NOW + 1), NOW + 1) == []


# --- currencies: rates come in as data -------------------------------------------------------

KRW_STOCK = InstrumentSpec(symbol="KRS", type="stock", tick_size=D(100), currency="KRW")
KRW_FUTURE = InstrumentSpec(symbol="KRF", type="future", tick_size=D("0.05"), multiplier=D(1000), currency="KRW")


def _krw_engine(**config) -> PaperEngine:
    e = PaperEngine(dataclasses.replace(CONFIG, **config), cash=D(10_000), base_currency="USD")
    e.set_rates({"KRW": D("0.0008")})
    return e


def _buy(e: PaperEngine, spec: InstrumentSpec, qty: str, price: str, cid: str):
    request = OrderRequest(client_order_id=cid, symbol=spec.symbol, side="buy", order_type="limit", qty=D(qty), price=D(price))
    return e.submit(request, quote(price, price, symbol=spec.symbol), spec, NOW)


def test_a_fill_in_another_currency_converts_the_shortfall_from_the_base_currency():
    e = _krw_engine()
    (fill, status) = _buy(e, KRW_STOCK, "10", "50000", "k1")
    assert status.status == "filled" and (fill.fee, fill.fee_currency) == (D(50), "KRW")
    # 500,050 won bought for 400.04 dollars (at 0.0008), then spent.
    assert e.balances == {"USD": D("9599.96"), "KRW": D(0)}
    entries = [(x.kind, x.currency, x.amount, x.rate) for x in e.take_changes().entries]
    assert entries == [
        ("fx_conversion", "USD", D("-400.04"), D(1)),
        ("fx_conversion", "KRW", D(500_050), D("0.0008")),
        ("trade", "KRW", D(-500_000), D("0.0008")),
        ("fee", "KRW", D(-50), D("0.0008")),
    ]
    funds = e.funds({"KRS": D(50_000)})
    assert funds.cash == D("9599.96") and funds.equity == D("9599.96") + 400  # the shares, valued once, in dollars
    assert funds.fees_paid == D("0.04")
    e.check_invariants()


def test_refuse_mode_and_a_missing_rate_refuse_the_order_and_book_nothing():
    e = _krw_engine(fx_mode="refuse")
    (status,) = _buy(e, KRW_STOCK, "1", "50000", "r1")
    assert status.status == "rejected" and "PAPER_FX_MODE=refuse" in status.message
    e = PaperEngine(CONFIG, cash=D(10_000))
    (status,) = _buy(e, KRW_STOCK, "1", "50000", "r2")
    assert status.status == "rejected" and status.message == "No FX rate from KRW to USD: the order cannot be valued."
    assert e.take_changes().entries == [] and e.balances == {"USD": D(10_000)}


def test_a_future_moves_its_currency_by_realized_pnl_and_fees_only():
    e = _krw_engine()
    e.adjust("KRW", D(1_000_000), NOW)
    _buy(e, KRW_FUTURE, "2", "300", "f1")
    sell = OrderRequest(client_order_id="f2", symbol="KRF", side="sell", order_type="limit", qty=D(2), price=D(310))
    e.submit(sell, quote("310", "310", symbol="KRF"), KRW_FUTURE, NOW)
    # Fees of 60 and 62 won, 20,000 won realized; the dollars never move.
    assert e.balances == {"USD": D(10_000), "KRW": D(1_000_000) - 60 + 20_000 - 62}
    assert [x.kind for x in e.take_changes().entries] == ["deposit", "fee", "realized_pnl", "fee"]


def test_a_withdrawal_never_takes_a_balance_below_zero():
    from brokers.paper.ledger import LedgerRefused

    e = _krw_engine()
    with pytest.raises(LedgerRefused, match="below zero"):
        e.adjust("USD", D("-10000.01"), NOW)
    e.adjust("USD", D(-10_000), NOW)
    assert e.balances == {"USD": D(0)}


def test_a_debit_left_while_a_rate_was_unknown_is_converted_once_the_rate_is_back():
    e = _krw_engine()
    e.adjust("KRW", D(100), NOW)
    _buy(e, KRW_FUTURE, "1", "300", "d1")  # a fee of 30 won: covered by the won held
    sell = OrderRequest(client_order_id="d2", symbol="KRF", side="sell", order_type="limit", qty=D(1), price=D(299))
    (status,) = e.submit(sell, quote("290", "290", symbol="KRF"), KRW_FUTURE, NOW)
    assert status.status == "new"
    e.ledger.rates.clear()  # the rate goes away: the loss filled below is booked as a debit
    e.on_quote(quote("299", "299", symbol="KRF", t=NOW + 1), NOW + 1)
    assert e.balances["KRW"] == D(100) - 30 - 1000 - D("29.9")
    e.cover_debits(NOW)
    assert e.balances["KRW"] < 0  # still no rate: nothing to convert at
    e.set_rates({"KRW": D("0.0008")})
    e.cover_debits(NOW)
    assert e.balances == {"USD": D(10_000) - D("0.77"), "KRW": D("0.1")}
    assert [x.kind for x in e.take_changes().entries][-2:] == ["fx_conversion", "fx_conversion"]
