"""The paper broker behind the Broker protocol: its book in the database,
matching on quotes from the cache, fills delivered after commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from brokers import registry
from brokers.base import Broker, BrokerRejected, OrderRequest
from brokers.paper import services
from brokers.paper.adapter import PaperBroker
from brokers.paper.models import PaperAccount, PaperFill, PaperOrder, PaperPosition
from brokers.paper.services import paper_quotes_match
from brokers.paper.store import book_load
from brokers.services import broker_account_create, broker_account_set_trading_enabled
from marketdata.quotes import quote_store
from marketdata.services import instrument_upsert
from marketdata.types import Quote

pytestmark = pytest.mark.django_db(transaction=True)

NOW = 1_773_151_200.0  # Tuesday 2026-03-10 14:00 UTC = 10:00 in New York (EDT)
NY_CLOSE = datetime(2026, 3, 10, 20, 0, tzinfo=UTC).timestamp()
SYMBOLS = ("PAPL", "PFUT", "PNYS")


@pytest.fixture(autouse=True)
def instruments(db):
    instrument_upsert(symbol="PAPL", type="stock", tick_size=D("0.01"), lot_size=D(1), multiplier=D(1))
    instrument_upsert(symbol="PFUT", type="future", tick_size=D("0.25"), lot_size=D(1), multiplier=D(50))
    instrument_upsert(symbol="PNYS", type="stock", session="0930-1600:23456", timezone="America/New_York")
    cache.delete_many([f"md:quote:{s}" for s in SYMBOLS])
    yield
    cache.delete_many([f"md:quote:{s}" for s in SYMBOLS])


class Sink:
    def __init__(self) -> None:
        self.fills: list = []
        self.updates: list = []
        self.calls = 0

    def on_fills(self, account_id, fills) -> None:
        self.calls += 1
        self.fills += [(account_id, f) for f in fills]

    def on_updates(self, account_id, updates) -> None:
        self.updates += [(account_id, u) for u in updates]


@pytest.fixture
def sink():
    saved = (registry._fill_sink, registry._order_sink)
    captured = Sink()
    registry.register_sinks(fills=captured.on_fills, orders=captured.on_updates)
    yield captured
    registry._fill_sink, registry._order_sink = saved


@pytest.fixture
def account(alice):
    return broker_account_create(owner=alice, label="alice paper")


@pytest.fixture
def broker(account) -> PaperBroker:
    return PaperBroker(account, clock=lambda: NOW)


def put_quote(
    bid: str, ask: str, *, symbol: str = "PAPL", t: float = NOW, bid_size: str = "100", ask_size: str = "100", last: str | None = None
) -> Quote:
    quote = Quote(
        symbol=symbol,
        time=t,
        last=D(last) if last else (D(bid) + D(ask)) / 2,
        bid=D(bid),
        ask=D(ask),
        bid_size=D(bid_size),
        ask_size=D(ask_size),
    )
    quote_store(quote)
    return quote


def req(
    side: str,
    qty: str,
    order_type: str = "market",
    *,
    cid: str,
    symbol: str = "PAPL",
    price: str | None = None,
    stop: str | None = None,
    tif: str = "gtc",
    reduce_only: bool = False,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        order_type=order_type,
        qty=D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        time_in_force=tif,
        reduce_only=reduce_only,
    )


# --- the adapter --------------------------------------------------------------------------------


def test_paper_accounts_get_the_paper_broker_from_the_registry(account):
    broker = registry.broker_for(account)
    assert isinstance(broker, PaperBroker) and isinstance(broker, Broker)
    assert broker.capabilities.supports_modify and broker.capabilities.supports_reduce_only
    assert broker.capabilities.supports_client_order_id and not broker.capabilities.hedging


def test_hedging_accounts_say_so_in_the_capabilities(alice):
    hedging = broker_account_create(owner=alice, label="hedge", position_mode="hedging")
    assert PaperBroker(hedging).capabilities.hedging


def test_a_market_order_fills_at_once_and_its_fills_are_delivered_after_commit(broker, account, sink):
    put_quote("99.99", "100.00", ask_size="100")
    ack = broker.place_order(req("buy", "10", cid="m1"))
    assert (ack.broker_order_id, ack.status, ack.filled_qty, ack.avg_fill_price) == ("P000001", "filled", D(10), D("100.02"))
    [(account_id, fill)] = sink.fills
    assert account_id == account.pk
    assert (fill.broker_trade_id, fill.broker_order_id, fill.client_order_id) == ("PF000001", "P000001", "m1")
    assert (fill.qty, fill.price, fill.fee) == (D(10), D("100.02"), D("0.10002"))
    assert fill.executed_at == datetime.fromtimestamp(NOW, UTC)
    paper = PaperAccount.objects.get(pk=account.pk)
    assert paper.starting_cash == D(1_000_000)  # created lazily from PAPER_STARTING_CASH
    assert paper.cash == D(1_000_000) - D("1000.2") - D("0.10002")
    assert PaperFill.objects.get().trade_id == "PF000001"


def test_a_refused_order_raises_broker_rejected_and_is_recorded(broker, sink):
    put_quote("99.99", "100.00", t=NOW - 60)
    with pytest.raises(BrokerRejected, match="stale"):
        broker.place_order(req("buy", "1", cid="stale-1"))
    status = broker.get_order(client_order_id="stale-1")
    assert status.status == "rejected" and "stale" in status.message
    with pytest.raises(BrokerRejected, match="stale"):  # the same client id: the same answer
        broker.place_order(req("buy", "1", cid="stale-1"))
    assert PaperOrder.objects.count() == 1 and sink.fills == []


def test_unknown_symbols_and_disabled_accounts_are_refused(broker, account):
    with pytest.raises(BrokerRejected, match="Unknown symbol"):
        broker.place_order(req("buy", "1", cid="u1", symbol="NOPE"))
    broker_account_set_trading_enabled(account=account, enabled=False)
    put_quote("99.99", "100.00")
    with pytest.raises(BrokerRejected, match="disabled"):
        PaperBroker(account, clock=lambda: NOW).place_order(req("buy", "1", cid="u2"))


def test_a_duplicate_client_order_id_returns_the_first_ack_and_sends_nothing(broker, sink):
    put_quote("99.99", "100.00")
    first = broker.place_order(req("buy", "5", "limit", cid="dup", price="99.00"))
    again = broker.place_order(req("buy", "5", "limit", cid="dup", price="99.00"))
    assert again.broker_order_id == first.broker_order_id and again.status == "new"
    assert PaperOrder.objects.count() == 1


def test_future_margin_refusal_counts_the_multiplier(broker):
    put_quote("4999.75", "5000.00", symbol="PFUT")
    with pytest.raises(BrokerRejected, match="Insufficient buying power"):
        broker.place_order(req("buy", "41", "limit", cid="f1", symbol="PFUT", price="5000.00"))  # 41 * 25000 margin > 1M
    ack = broker.place_order(req("buy", "39", "limit", cid="f2", symbol="PFUT", price="4990.00"))  # 973050 + 973.05 fee
    assert ack.status == "new"


def test_reduce_only_is_refused_without_a_position(broker):
    put_quote("99.99", "100.00")
    with pytest.raises(BrokerRejected, match="reduce_only"):
        broker.place_order(req("sell", "1", cid="r1", reduce_only=True))
    broker.place_order(req("buy", "3", cid="r2"))
    assert broker.place_order(req("sell", "3", cid="r3", reduce_only=True)).status == "filled"


def test_cancel_and_modify_working_orders_and_refuse_final_ones(broker, sink):
    put_quote("99.99", "100.00", ask_size="30")
    working = broker.place_order(req("buy", "100", "limit", cid="cm1", price="99.00"))
    changed = broker.modify_order(broker_order_id=working.broker_order_id, symbol="PAPL", qty=D(50), price=D("100.00"), stop_price=None)
    assert (changed.status, changed.filled_qty) == ("partially_filled", D(30))
    with pytest.raises(BrokerRejected, match="below the filled qty"):
        broker.modify_order(broker_order_id=working.broker_order_id, symbol="PAPL", qty=D(10), price=None, stop_price=None)
    canceled = broker.cancel_order(broker_order_id=working.broker_order_id, symbol="PAPL")
    assert (canceled.status, canceled.filled_qty) == ("canceled", D(30))
    with pytest.raises(BrokerRejected, match="is canceled"):
        broker.cancel_order(broker_order_id=working.broker_order_id, symbol="PAPL")
    with pytest.raises(BrokerRejected, match="is canceled"):
        broker.modify_order(broker_order_id=working.broker_order_id, symbol="PAPL", qty=D(60), price=None, stop_price=None)
    with pytest.raises(BrokerRejected, match="Unknown order"):
        broker.cancel_order(broker_order_id="P999999", symbol="PAPL")
    assert [f.qty for _, f in sink.fills] == [D(30)]
    assert broker.open_orders() == []


def test_order_lookups_open_orders_and_reconciliation_reads(broker):
    put_quote("99.99", "100.00")
    broker.place_order(req("buy", "10", cid="l1"))
    broker.place_order(req("buy", "10", "limit", cid="l2", price="90.00"))
    by_client = broker.get_order(client_order_id="l2")
    by_broker = broker.get_order(broker_order_id="P000002")
    assert by_client == by_broker and by_client.status == "new" and by_client.price == D(90)
    assert broker.get_order(client_order_id="nope") is None
    assert [o.client_order_id for o in broker.open_orders()] == ["l2"]
    since = datetime.fromtimestamp(NOW - 1, UTC)
    assert [o.broker_order_id for o in broker.orders_since(since)] == ["P000001", "P000002"]
    assert broker.orders_since(since + timedelta(seconds=5)) == []
    [fill] = broker.fills_since(since)
    assert (fill.broker_trade_id, fill.qty, fill.price) == ("PF000001", D(10), D("100.02"))
    assert broker.fills_since(since + timedelta(seconds=5)) == []


def test_funds_positions_and_holdings_at_the_latest_quotes(broker):
    put_quote("99.99", "100.00")
    put_quote("4999.75", "5000.00", symbol="PFUT")
    broker.place_order(req("buy", "10", "limit", cid="h1", price="100.00"))  # 1000 cash out, fee 0.10
    broker.place_order(req("buy", "2", "limit", cid="h2", symbol="PFUT", price="5000.00"))  # fee 50, no cash out
    broker.place_order(req("buy", "10", "limit", cid="h3", price="90.00"))  # working: 900 + 0.09 reserved
    put_quote("109.99", "110.01", t=NOW + 1, last="110.00")
    put_quote("5009.75", "5010.25", symbol="PFUT", t=NOW + 1, last="5010.00")
    funds = broker.funds()
    cash = D(1_000_000) - D(1000) - D("0.1") - D(50)
    assert funds.currency == "USD" and funds.cash == cash
    assert funds.equity == cash + 10 * D(110) + 2 * 10 * 50  # stock at market value, future by its P&L
    position_margin = 10 * D(110) + 2 * D(5010) * 50 * D("0.1")
    assert funds.margin_used == position_margin + D("900.09")
    assert funds.margin_available == funds.equity - funds.margin_used
    positions = {p.symbol: p for p in broker.positions()}
    assert (positions["PAPL"].qty, positions["PAPL"].avg_price, positions["PAPL"].unrealized_pnl) == (D(10), D(100), D(100))
    assert (positions["PFUT"].qty, positions["PFUT"].unrealized_pnl) == (D(2), D(1000))
    [holding] = broker.holdings()
    assert (holding.symbol, holding.qty, holding.last_price) == ("PAPL", D(10), D(110))


def test_funds_right_after_a_change_come_from_the_saved_book_while_it_is_current(broker, account):
    from brokers.paper import store

    def fresh():  # as a reader that saved nothing loads them
        store._kept.book = None
        return broker.funds()

    put_quote("99.99", "100.00")
    broker.place_order(req("buy", "10", cid="k1"))
    with CaptureQueriesContext(connection) as ctx:
        kept = broker.funds()
    assert len(ctx.captured_queries) == 1  # the book's version, no lock and no reload
    assert kept == fresh()
    broker.place_order(req("buy", "10", "limit", cid="k2", price="90.00"))  # rests: its reservation counts
    assert broker.funds() == fresh()

    # Another process changes the book: the kept one is stale and not used.
    def deposit() -> None:
        try:
            services.paper_ledger_adjust(account_id=account.pk, currency="USD", amount=D(1000), now=NOW)
        finally:
            connection.close()

    broker.place_order(req("buy", "1", cid="k3"))
    before = broker.funds()
    worker = threading.Thread(target=deposit)
    worker.start()
    worker.join()
    assert broker.funds().cash == before.cash + 1000
    # A change that rolls back is never kept.
    broker.place_order(req("buy", "1", cid="k4"))
    before = broker.funds()
    with pytest.raises(RuntimeError), transaction.atomic():
        broker.place_order(req("buy", "5", cid="k5"))
        raise RuntimeError("rolled back")
    assert broker.funds() == before == fresh()


def test_buying_power_counts_orders_resting_on_other_symbols_exactly(account, settings):
    # 1,000,100 = 1.0001 * 1,000,000: with the 1 bps fee, orders of 1,000,000
    # notional in all use up the buying power to the cent.
    settings.PAPER_STARTING_CASH = "1000100"
    broker = PaperBroker(account, clock=lambda: NOW)
    for i in range(50):  # 500,050 reserved on PNYS (10,000 + 1 fee each), half of it day orders
        ack = broker.place_order(req("buy", "100", "limit", cid=f"b{i}", symbol="PNYS", price="100.00", tif="day" if i % 2 else "gtc"))
        assert ack.status == "new"
    assert broker.funds().margin_available == D(500_050)
    paper = PaperAccount.objects.get(pk=account.pk)
    full = book_load(paper).engine
    # What a load of one symbol's (or of due) orders counts of the others is what a full load counts.
    for scoped in (
        book_load(paper, orders_of=["PAPL"]).engine,
        book_load(paper, orders_of=["PAPL"], expiring_by=NOW).engine,
        book_load(paper, orders_of=[], expiring_by=NY_CLOSE).engine,  # the 25 day orders loaded, 25 gtc summed
        book_load(paper, orders_of=["PNYS"]).engine,
    ):
        assert (scoped.buying_power(), scoped.funds(), scoped.order_margin) == (full.buying_power(), full.funds(), D(500_050))
    with pytest.raises(BrokerRejected, match="needs 500100.005 USD, 500050 USD is available"):  # a tick over
        broker.place_order(req("buy", "5000", "limit", cid="a-over", price="100.01"))
    assert broker.place_order(req("buy", "5000", "limit", cid="a-exact", price="100.00")).status == "new"  # 500,050: all that is left
    funds = broker.funds()
    assert (funds.margin_available, funds.margin_used) == (D(0), D(1_000_100))
    with pytest.raises(BrokerRejected, match="Insufficient buying power"):
        broker.place_order(req("buy", "1", "limit", cid="a-more", price="0.01"))
    # Canceling on one symbol frees buying power for the other, as before.
    broker.cancel_order(broker_order_id=broker.get_order(client_order_id="b0").broker_order_id, symbol="PNYS")
    assert broker.place_order(req("buy", "100", "limit", cid="a-again", price="100.00")).status == "new"


def test_placing_costs_the_same_queries_however_many_orders_rest_on_other_symbols(alice, bob, monkeypatch):
    from brokers.paper import store

    loaded: list[str] = []
    real = store.order_from_row

    def counting(row):
        loaded.append(row.broker_order_id)
        return real(row)

    monkeypatch.setattr(store, "order_from_row", counting)
    counts = []
    for owner, resting in ((alice, 1), (bob, 200)):
        broker = PaperBroker(broker_account_create(owner=owner, label="paper"), clock=lambda: NOW)
        for i in range(resting):
            broker.place_order(req("buy", "1", "limit", cid=f"r{i}", symbol="PNYS", price="90.00"))
        broker.place_order(req("buy", "1", "limit", cid="warm", price="90.00"))  # PAPL in the instrument cache
        loaded.clear()
        with CaptureQueriesContext(connection) as queries:
            ack = broker.place_order(req("buy", "1", "limit", cid="new", price="90.00"))
        assert ack.status == "new" and loaded == []  # no resting PNYS order was read into the book
        counts.append(len(queries.captured_queries))
        with CaptureQueriesContext(connection) as queries:
            broker.modify_order(broker_order_id=ack.broker_order_id, symbol="PAPL", qty=D(2), price=None, stop_price=None)
        counts.append(len(queries.captured_queries))
        with CaptureQueriesContext(connection) as queries:
            broker.cancel_order(broker_order_id=ack.broker_order_id, symbol="PAPL")
        counts.append(len(queries.captured_queries))
        assert loaded == [ack.broker_order_id] * 2  # the PAPL order only
    assert counts[:3] == counts[3:]


def _working_totals_stored(account_id: int) -> dict:
    from brokers.paper.store import totals_from_json

    return totals_from_json(PaperAccount.objects.get(pk=account_id).working_totals)


def _working_totals_summed(account_id: int) -> dict:
    """The working orders' totals summed over their rows, as the book keeps them."""
    from django.db.models import Sum

    rows = (
        PaperOrder.objects.filter(account_id=account_id, working=True)
        .order_by()
        .values_list("symbol", "side")
        .annotate(Sum("reserved"), Sum("qty"), Sum("filled_qty"))
    )
    return {(symbol, side): [D(r), D(q) - D(f)] for symbol, side, r, q, f in rows}


def test_a_placement_reads_no_resting_order_and_the_books_working_totals_stay_exact(account, sink):
    broker = PaperBroker(account, clock=lambda: NOW)
    put_quote("99.99", "100.00", ask_size="5")
    for i in range(30):  # resting, on two symbols and both sides, some of them day orders
        symbol, side, price = ("PNYS", "buy", "90.00") if i % 3 else ("PAPL", "sell", "110.00")
        broker.place_order(req(side, "2", "limit", cid=f"r{i}", symbol=symbol, price=price, tif="day" if i % 2 else "gtc"))
    partly = broker.place_order(req("buy", "8", "limit", cid="partly", price="100.00"))  # 5 filled at once, 3 rest
    assert partly.status == "partially_filled"
    broker.modify_order(
        broker_order_id=broker.get_order(client_order_id="r1").broker_order_id, symbol="PNYS", qty=D(3), price=None, stop_price=None
    )
    broker.cancel_order(broker_order_id=broker.get_order(client_order_id="r2").broker_order_id, symbol="PNYS")
    put_quote("99.99", "100.00", ask_size="1", t=NOW + 1)
    paper_quotes_match([], now=NOW + 1)  # no quote batch: nothing matches
    services.paper_quotes_match([put_quote("99.99", "100.00", ask_size="1", t=NOW + 2)], now=NOW + 2)  # 1 more of "partly"
    paper_quotes_match([], now=NY_CLOSE + 1)  # the PNYS day orders expire
    stored = _working_totals_stored(account.pk)
    assert stored == _working_totals_summed(account.pk) != {}
    assert stored["PAPL", "buy"] == [D("200.02"), 2]  # "partly": 2 left of 8, reserving 2 x 100.01 with the fee
    with CaptureQueriesContext(connection) as queries:
        broker.place_order(req("buy", "1", "limit", cid="new", price="90.00"))
    # Nothing of the resting orders is read or summed: the book's totals serve.
    asked = [q["sql"].partition(" WHERE ")[2] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not [where for where in asked if '"paper_paperorder"."working"' in where]
    assert _working_totals_stored(account.pk) == _working_totals_summed(account.pk)


# --- the quote listener ------------------------------------------------------------------------


def test_the_listener_fills_working_orders_by_size_and_never_twice_on_one_quote(broker, account, sink):
    put_quote("100.04", "100.05")
    broker.place_order(req("buy", "100", "limit", cid="q1", price="100.00"))
    quote = put_quote("99.98", "99.99", t=NOW + 1, ask_size="40")
    assert paper_quotes_match([quote], now=NOW + 1) == 1
    assert paper_quotes_match([quote], now=NOW + 1) == 1
    assert [(f.qty, f.price) for _, f in sink.fills] == [(D(40), D("99.99"))]
    quote = put_quote("99.99", "100.00", t=NOW + 2, ask_size="100")
    paper_quotes_match([quote], now=NOW + 2)
    assert [f.qty for _, f in sink.fills] == [D(40), D(60)]
    assert [f.broker_trade_id for _, f in sink.fills] == ["PF000001", "PF000002"]
    assert broker.get_order(client_order_id="q1").status == "filled"
    assert PaperPosition.objects.get(account_id=account.pk).qty == D(100)


def test_the_listener_costs_one_query_when_nothing_is_working(broker, django_assert_num_queries):
    quote = put_quote("99.98", "99.99", t=NOW + 1)
    with django_assert_num_queries(1):
        assert paper_quotes_match([quote], now=NOW + 1) == 0


def test_the_listener_processes_each_account_once_however_many_orders_it_has(broker, monkeypatch):
    put_quote("100.04", "100.05")
    for i in range(3):
        broker.place_order(req("buy", "10", "limit", cid=f"o{i}", price="99.00"))
    runs: list[int] = []
    real = services.book_load
    monkeypatch.setattr(services, "book_load", lambda paper, **kw: runs.append(paper.pk) or real(paper, **kw))
    assert paper_quotes_match([put_quote("100.01", "100.02", t=NOW + 1)], now=NOW + 1) == 1
    assert len(runs) == 1


def test_a_quote_that_fills_nothing_writes_nothing(broker):
    put_quote("100.04", "100.05")
    broker.place_order(req("buy", "10", "limit", cid="w1", price="100.00"))
    with CaptureQueriesContext(connection) as queries:
        assert paper_quotes_match([put_quote("100.01", "100.02", t=NOW + 1)], now=NOW + 1) == 1
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
    assert writes == []


def test_stop_orders_trigger_on_the_listeners_quotes(broker, sink):
    put_quote("99.99", "100.00")
    broker.place_order(req("sell", "5", "stop", cid="s1", stop="99.00"))
    broker.place_order(req("buy", "5", "stop_limit", cid="s2", stop="101.00", price="101.00"))
    paper_quotes_match([put_quote("101.00", "101.01", t=NOW + 1)], now=NOW + 1)
    assert sink.fills == []  # the buy stop-limit triggered, its limit is below the ask
    assert broker.get_order(client_order_id="s2").raw["triggered"] is True
    paper_quotes_match([put_quote("98.90", "98.95", t=NOW + 2)], now=NOW + 2)
    assert sorted((f.client_order_id, f.price) for _, f in sink.fills) == [
        ("s1", (D("98.90") * D("0.9998")).normalize()),
        ("s2", D("98.95")),
    ]


def test_day_orders_expire_at_the_session_close_and_the_oms_hears_it(account, sink):
    broker = PaperBroker(account, clock=lambda: NOW)
    put_quote("99.99", "100.00", symbol="PNYS")
    broker.place_order(req("buy", "10", "limit", cid="d1", symbol="PNYS", price="95.00", tif="day"))
    broker.place_order(req("buy", "10", "limit", cid="d2", symbol="PNYS", price="95.00", tif="gtc"))
    assert paper_quotes_match([], now=NY_CLOSE - 1) == 0
    assert paper_quotes_match([], now=NY_CLOSE) == 1  # no quotes after the close: expiry still runs
    [(account_id, update)] = sink.updates
    assert (account_id, update.client_order_id, update.status) == (account.pk, "d1", "expired")
    assert [o.client_order_id for o in broker.open_orders()] == ["d2"]


def test_ioc_stop_remainder_canceled_by_the_venue_is_reported(broker, sink):
    put_quote("99.99", "100.00")
    broker.place_order(req("buy", "150", "stop", cid="i1", stop="101.00", tif="ioc"))
    paper_quotes_match([put_quote("101.00", "101.01", t=NOW + 1, ask_size="100")], now=NOW + 1)
    assert sum(f.qty for _, f in sink.fills) == D(100)
    [(_, update)] = sink.updates
    assert (update.status, update.filled_qty) == ("canceled", D(100))


def test_one_accounts_failure_does_not_stop_the_others(alice, bob, sink, monkeypatch):
    a = broker_account_create(owner=alice, label="a")
    b = broker_account_create(owner=bob, label="b")
    put_quote("100.04", "100.05")
    for acc in (a, b):
        PaperBroker(acc, clock=lambda: NOW).place_order(req("buy", "10", "limit", cid="x", price="100.00"))
    real = services.book_load

    def flaky(paper, **kwargs):
        if paper.pk == a.pk:
            raise RuntimeError("boom")
        return real(paper, **kwargs)

    monkeypatch.setattr(services, "book_load", flaky)
    assert paper_quotes_match([put_quote("99.99", "100.00", t=NOW + 1)], now=NOW + 1) == 1
    assert [account_id for account_id, _ in sink.fills] == [b.pk]


# --- persistence, transactions, concurrency ------------------------------------------------------


def test_the_book_survives_a_restart_and_matching_continues(broker, account, sink):
    put_quote("99.99", "100.00", ask_size="30")
    broker.place_order(req("buy", "100", "limit", cid="p1", price="100.00"))
    broker.place_order(req("sell", "5", "stop", cid="p2", stop="95.00", tif="day"))
    # A "restart": nothing of the venue lives in memory between calls; load the
    # book the way a fresh process does and compare it with what was saved.
    engine = book_load(PaperAccount.objects.get(pk=account.pk)).engine
    assert [(o.broker_order_id, o.status, o.filled_qty) for o in engine.working_orders()] == [
        ("P000001", "partially_filled", D(30)),
        ("P000002", "new", D(0)),
    ]
    assert engine.positions["PAPL"].qty == D(30) and engine.next_trade_no == 2 and engine.next_order_no == 3
    assert engine.markets["PAPL"].ask_left == D(0)
    engine.check_invariants()
    # The same quote after the restart fills nothing more; a new one continues.
    paper_quotes_match(
        [Quote(symbol="PAPL", time=NOW, last=D("99.995"), bid=D("99.99"), ask=D("100.00"), bid_size=D(100), ask_size=D(30))], now=NOW
    )
    assert len(sink.fills) == 1
    paper_quotes_match([put_quote("99.99", "100.00", t=NOW + 1, ask_size="500")], now=NOW + 1)
    assert [(f.broker_trade_id, f.qty) for _, f in sink.fills] == [("PF000001", D(30)), ("PF000002", D(70))]
    paper_quotes_match([put_quote("94.00", "94.01", t=NOW + 2)], now=NOW + 2)
    assert [f.broker_trade_id for _, f in sink.fills][-1] == "PF000003"
    assert PaperPosition.objects.get(account_id=account.pk).qty == D(95)


def test_fills_are_delivered_only_after_commit_and_never_on_rollback(broker, sink):
    put_quote("99.99", "100.00")
    with pytest.raises(RuntimeError), transaction.atomic():
        broker.place_order(req("buy", "10", cid="t1"))
        assert sink.fills == []  # not yet: the outer transaction has not committed
        raise RuntimeError("the caller fails")
    assert sink.fills == [] and PaperOrder.objects.count() == 0 and PaperFill.objects.count() == 0
    with transaction.atomic():
        broker.place_order(req("buy", "10", cid="t2"))
        assert sink.fills == []
    assert [f.client_order_id for _, f in sink.fills] == ["t2"]


def test_a_failing_sink_does_not_undo_the_venues_fill(broker):
    def broken(account_id, fills):
        raise RuntimeError("OMS down")

    saved = (registry._fill_sink, registry._order_sink)
    registry.register_sinks(fills=broken, orders=lambda *a: None)
    try:
        put_quote("99.99", "100.00")
        assert broker.place_order(req("buy", "1", cid="b1")).status == "filled"
    finally:
        registry._fill_sink, registry._order_sink = saved
    assert broker.fills_since(datetime.fromtimestamp(NOW - 1, UTC))[0].client_order_id == "b1"


def test_concurrent_senders_and_the_listener_keep_one_consistent_book(account, sink):
    put_quote("99.99", "100.00", ask_size="1000000", bid_size="1000000")
    errors: list[BaseException] = []

    def send(prefix: str) -> None:
        try:
            broker = PaperBroker(account, clock=lambda: NOW)
            for i in range(8):
                broker.place_order(req("buy", "1", cid=f"{prefix}{i}"))
                paper_quotes_match([], now=NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert PaperOrder.objects.filter(account_id=account.pk).count() == 24
    assert sorted(PaperFill.objects.values_list("trade_id", flat=True)) == [f"PF{n:06d}" for n in range(1, 25)]
    paper = PaperAccount.objects.get(pk=account.pk)
    assert paper.cash == D(1_000_000) - 24 * (D("100.02") + D("0.010002"))
    assert PaperPosition.objects.get(account_id=account.pk).qty == D(24)


def test_the_app_registers_the_quote_listener_with_the_simulator():
    from brokers.paper.services import paper_on_quotes
    from marketdata import simulation

    assert simulation._quote_listeners.count(paper_on_quotes) == 1
