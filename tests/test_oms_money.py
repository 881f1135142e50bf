"""Money in the OMS: positions that read right (history fields, exact average
cost, money rounded only on the wire), netting kept by every command, P&L in
the instrument's and the account's base currency, funds per currency, and the
buying-power check on the part of an order that opens or grows a position.

Against the scriptable venue (tests.fakes); the OMS sees only the protocol."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from marketdata.services import instrument_upsert
from oms.models import Deal, Position, PositionStatus
from oms.services.positions import deals_reassign, positions_rebuild
from tests.fakes import FakeVenue
from tests.oms_support import NO_LIMITS, make_account, oms_setup, send, set_quote, tasks_in_process, venue_registered

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


@pytest.fixture(autouse=True)
def _setup(settings):
    oms_setup(settings)
    instrument_upsert(symbol="MSFT", type="stock", currency="USD", tick_size=D("0.01"), lot_size=D(1), multiplier=D(1))
    with tasks_in_process():
        yield


@pytest.fixture
def venue():
    venue = FakeVenue(mode="fill")
    with venue_registered(venue):
        yield venue


@pytest.fixture
def account(alice):
    return make_account(alice)


@pytest.fixture
def hedging(alice):
    return make_account(alice, position_mode="hedging", label="hedge")


def fill(account, side: str, qty: str, price: str, symbol: str = "AAA", **extra):
    return send(account, symbol=symbol, side=side, order_type="limit", qty=qty, price=price, **extra)


def market_fill(venue, account, side: str, qty: str, price: str, symbol: str):
    """A market order the venue fills at ``price`` (off the tick, as a venue's slippage can)."""
    venue.fill_price = D(price)
    return send(account, symbol=symbol, side=side, order_type="market", qty=qty)


def rest_position(alice_api, position_id: int) -> dict:
    rows = alice_api.get("/api/v1/oms/positions/history", {"limit": 1000}).json()["results"]
    rows += alice_api.get("/api/v1/oms/positions/open", {"limit": 1000}).json()["results"]
    return next(row for row in rows if row["id"] == position_id)


def assert_netting(account) -> None:
    """One open position per (symbol, strategy); no closed position holds a
    quantity; each strategy holds the net of the deals booked to it."""
    opened = defaultdict(list)
    held = defaultdict(Decimal)
    for position in Position.objects.filter(account=account):
        if position.status == PositionStatus.OPEN:
            assert position.qty > 0, position
            opened[(position.symbol, position.strategy_id)].append(position.pk)
            held[(position.symbol, position.strategy_id)] += position.qty if position.side == "long" else -position.qty
        else:
            assert position.qty == 0, f"closed position {position.pk} holds {position.qty}"
    assert all(len(ids) == 1 for ids in opened.values()), dict(opened)
    net = defaultdict(Decimal)
    for symbol, strategy, side, qty in Deal.objects.filter(account=account).values_list("symbol", "position__strategy_id", "side", "qty"):
        net[(symbol, strategy)] += qty if side == "buy" else -qty
    assert {k: v for k, v in net.items() if v} == {k: v for k, v in held.items() if v}
    assert positions_rebuild(account=account) == []


# --- no rounding drift ---------------------------------------------------------------------------------------


def test_buy_3_and_4_sell_7_realizes_the_exact_pnl_and_the_wire_rounds_it_to_cents(account, venue, alice_api):
    market_fill(venue, account, "buy", "3", "420.123458", "MSFT")
    market_fill(venue, account, "buy", "4", "420.200398", "MSFT")
    market_fill(venue, account, "sell", "7", "420", "MSFT")
    position = Position.objects.get(symbol="MSFT")
    # 7 × 420 − (3 × 420.123458 + 4 × 420.200398); the row once said -1.1719660001.
    assert (position.status, position.realized_pnl) == ("closed", D("-1.171966"))
    assert positions_rebuild(account=account) == []
    body = rest_position(alice_api, position.pk)
    assert (body["realized_pnl"], body["currency"]) == ("-1.17", "USD")


def test_partial_closes_realize_in_total_exactly_proceeds_less_cost(account, venue):
    fill(account, "buy", "1", "100")
    fill(account, "buy", "2", "101")  # average 302 / 3, which does not divide evenly
    position = Position.objects.get()
    assert (position.avg_price, position.open_cost) == (D("100.6666666667"), D(302))
    fill(account, "sell", "1", "102")
    fill(account, "sell", "1", "103")
    fill(account, "sell", "1", "99")
    position.refresh_from_db()
    assert (position.status, position.realized_pnl) == ("closed", D(102 + 103 + 99 - 302))
    assert positions_rebuild(account=account) == []


# --- history: max_qty, avg_open_price, avg_close_price, fees, currency ---------------------------------------------


def test_a_closed_position_keeps_its_history(account, venue, alice_api):
    fill(account, "buy", "2", "100")
    fill(account, "buy", "4", "103")
    fill(account, "sell", "5", "110")
    fill(account, "sell", "1", "80")
    position = Position.objects.get()
    assert (position.status, position.side, position.qty) == ("closed", "long", 0)
    assert (position.max_qty, position.avg_open_price, position.avg_close_price) == (D(6), D(102), D(105))
    assert position.realized_pnl == 5 * 110 + 80 - (2 * 100 + 4 * 103)
    body = rest_position(alice_api, position.pk)
    expected = {"qty": "0", "side": "long", "max_qty": "6", "avg_open_price": "102", "avg_close_price": "105"}
    assert {k: body[k] for k in expected} == expected
    assert (body["currency"], body["fees"]) == ("USD", "0")
    assert positions_rebuild(account=account) == []


def test_fees_sum_in_the_positions_currency_and_a_base_asset_fee_at_the_deal_price(account, venue):
    instrument_upsert(symbol="ETH/USDT", type="crypto", currency="USDT", tick_size=D("0.01"), lot_size=D("0.001"))
    from brokers import registry
    from brokers.base import Fill

    for n, (side, qty, price, fee, currency) in enumerate(
        [("buy", "2", "3000", "1.5", None), ("buy", "1", "3100", "0.001", "ETH"), ("sell", "3", "3200", "0.2", "BNB")]
    ):
        registry.deliver_fills(
            account.pk,
            [Fill(f"X{n}", f"XB{n}", None, "ETH/USDT", side, D(qty), D(price), fee=D(fee), fee_currency=currency)],
        )
    position = Position.objects.get(symbol="ETH/USDT")
    # 1.5 USDT + 0.001 ETH × 3100; the BNB fee stays on its deal.
    assert (position.currency, position.fees) == ("USDT", D("4.6"))
    assert list(Deal.objects.order_by("id").values_list("fee_currency", flat=True)) == ["USDT", "ETH", "BNB"]
    assert positions_rebuild(account=account) == []


# --- netting after every command, reassign included ------------------------------------------------------------


def test_reassign_into_a_strategy_holding_the_opposite_side_keeps_one_position_there(account, venue):
    short = fill(account, "sell", "3", "101", strategy_id="s2")
    buy_a = fill(account, "buy", "3", "100", strategy_id="s1")
    buy_b = fill(account, "buy", "2", "102", strategy_id="s1")
    target = Position.objects.get(pk=Deal.objects.get(order=short).position_id)
    moved = [Deal.objects.get(order=o).pk for o in (buy_a, buy_b)]
    # The first repetition closes the short; the second must not land on the closed row.
    deals_reassign(account=account, deal_ids=moved, target_position_id=target.pk)
    assert_netting(account)
    fill(account, "buy", "1", "103", strategy_id="s2")
    assert_netting(account)
    [s2] = Position.objects.filter(strategy_id="s2", status="open")
    assert (s2.side, s2.qty) == ("long", D(3))


@pytest.mark.parametrize("moved", [["a"], ["b"], ["a", "c"], ["a", "b", "c"], ["b", "a"]])
@pytest.mark.parametrize("target", ["s1", "s2", "s3"])
def test_netting_holds_after_any_reassign(account, venue, moved, target):
    orders = {
        "a": fill(account, "buy", "5", "100", strategy_id="s1"),
        "b": fill(account, "sell", "3", "101", strategy_id="s2"),
        "c": fill(account, "buy", "2", "102", strategy_id="s1"),
    }
    ids = [Deal.objects.get(order=orders[name]).pk for name in moved]
    if all(Deal.objects.get(pk=pk).strategy_id == target for pk in ids):
        return  # moving a strategy's deals to itself is refused (covered below)
    deals_reassign(account=account, deal_ids=[pk for pk in ids if Deal.objects.get(pk=pk).strategy_id != target], target_strategy_id=target)
    assert_netting(account)


def test_reassign_of_deals_whose_reversal_would_close_the_old_position_half_way(account, venue):
    a = fill(account, "buy", "3", "100")
    fill(account, "buy", "2", "101")
    c = fill(account, "sell", "2", "102")
    # Reversing a (sell 3) first would close the position of 3 before c's reversal.
    deals_reassign(account=account, deal_ids=[Deal.objects.get(order=o).pk for o in (a, c)], target_strategy_id="x")
    assert_netting(account)
    assert Position.objects.get(strategy_id="", status="open").qty == D(2)
    assert Position.objects.get(strategy_id="x", status="open").qty == D(1)


def test_a_position_reassigned_away_keeps_its_true_side(account, venue):
    buy = fill(account, "buy", "5", "100")
    sell = fill(account, "sell", "3", "104")
    old = Position.objects.get()
    deals_reassign(account=account, deal_ids=[Deal.objects.get(order=o).pk for o in (buy, sell)], target_strategy_id="swing")
    old.refresh_from_db()
    # A long position all of whose deals moved away closes as long (never via a short 3).
    assert (old.status, old.side, old.qty, old.max_qty) == ("closed", "long", 0, D(5))
    swing = Position.objects.get(strategy_id="swing")
    assert (swing.side, swing.qty, swing.max_qty) == ("long", D(2), D(5))
    assert_netting(account)


def test_hedging_reassign_without_a_target_moves_the_deals_into_one_new_position(hedging, venue):
    first = fill(hedging, "buy", "2", "100")
    second = fill(hedging, "buy", "3", "101")
    deals_reassign(account=hedging, deal_ids=[Deal.objects.get(order=o).pk for o in (first, second)], target_strategy_id="x")
    [moved] = Position.objects.filter(account=hedging, status="open")
    assert (moved.strategy_id, moved.qty) == ("x", D(5))
    assert positions_rebuild(account=hedging) == []


def test_the_position_payload_adds_fields_and_keeps_every_old_one(account, venue, alice_api):
    fill(account, "buy", "2", "100")
    set_quote("AAA", "100.5")
    [body] = alice_api.get("/api/v1/oms/positions/open").json()["results"]
    old = {"id", "account_id", "symbol", "strategy_id", "side", "qty", "avg_price", "multiplier", "realized_pnl", "unrealized_pnl"}
    old |= {"last_price", "status", "opened_at", "closed_at", "updated_at"}
    assert old | {"currency", "max_qty", "avg_open_price", "avg_close_price", "fees"} <= set(body)
    assert (body["avg_open_price"], body["avg_close_price"], body["max_qty"]) == ("100", None, "2")


# --- P&L in the instrument's and the base currency --------------------------------------------------------------


def multi_currency_market():
    instrument_upsert(symbol="005930", type="stock", currency="KRW", tick_size=D(100), lot_size=D(1))
    instrument_upsert(symbol="NSE:INFY", type="stock", currency="INR", tick_size=D("0.05"), lot_size=D(1))
    instrument_upsert(symbol="BTC/USDT", type="crypto", currency="USDT", tick_size=D("0.1"), lot_size=D("0.001"))
    for symbol in ("USD/KRW", "USD/INR", "USDT/USD"):
        instrument_upsert(symbol=symbol, type="fx", currency=symbol.split("/")[1], tick_size=D("0.0001"), lot_size=D(1))
    set_quote("USD/KRW", "1350", spread="0")
    set_quote("USD/INR", "80", spread="0")
    set_quote("USDT/USD", "0.999", spread="0")


def test_positions_answer_pnl_in_the_instruments_currency_and_the_base_currency(account, venue, alice_api):
    from oms.services.positions import positions_mark

    multi_currency_market()
    fill(account, "buy", "10", "50400", symbol="005930")
    fill(account, "sell", "4", "51000", symbol="005930")
    fill(account, "buy", "5", "1500", symbol="NSE:INFY")
    fill(account, "sell", "5", "1520", symbol="NSE:INFY")
    fill(account, "buy", "0.5", "60000", symbol="BTC/USDT")
    set_quote("005930", "52000", spread="0")
    set_quote("BTC/USDT", "61000", spread="0")
    positions_mark(account=account)
    by_symbol = {row["symbol"]: row for row in alice_api.get("/api/v1/oms/positions/history").json()["results"]}
    by_symbol |= {row["symbol"]: row for row in alice_api.get("/api/v1/oms/positions/open").json()["results"]}
    samsung, infy, btc = by_symbol["005930"], by_symbol["NSE:INFY"], by_symbol["BTC/USDT"]
    assert samsung["currency"] == "KRW" and samsung["base_currency"] == "USD"
    # 4 × 600 KRW realized at 1,350 KRW a dollar; 6 × 1,600 KRW unrealized.
    assert (samsung["realized_pnl"], samsung["realized_pnl_base"]) == ("2400", "1.78")
    assert (samsung["unrealized_pnl"], samsung["unrealized_pnl_base"]) == ("9600", "7.11")
    assert (infy["status"], infy["realized_pnl"], infy["realized_pnl_base"]) == ("closed", "100", "1.25")
    assert (btc["currency"], btc["unrealized_pnl"], btc["unrealized_pnl_base"], btc["rate"]) == ("USDT", "500", "499.5", "0.999")
    # The closing deal keeps its rate and its base P&L; a later FX move re-marks only what is open.
    closing = Deal.objects.get(symbol="005930", side="sell")
    assert (closing.realized_pnl, closing.currency, closing.base_currency) == (D(2400), "KRW", "USD")
    assert closing.rate == D("0.000740740740741") and closing.realized_pnl_base == D("1.7777777778")
    set_quote("USD/KRW", "1200", spread="0")
    positions_mark(account=account)
    samsung = Position.objects.get(symbol="005930")
    assert (samsung.realized_pnl_base, samsung.unrealized_pnl_base) == (D("1.7777777778"), D(8))
    [deal] = [d for d in alice_api.get("/api/v1/oms/deals").json()["results"] if d["id"] == closing.pk]
    assert (deal["realized_pnl"], deal["realized_pnl_base"], deal["fee_currency"]) == ("2400", "1.78", "KRW")
    assert positions_rebuild(account=account) == []


# --- funds per currency, buying power on what opens or grows, the notional limit in the base currency --------------


def paper_account(alice):
    from brokers.services import broker_account_create

    return broker_account_create(owner=alice, label="paper")


def test_a_sell_reducing_a_long_005930_is_never_refused_for_buying_power(alice, settings):
    from brokers.paper.models import PaperBalance
    from brokers.paper.services import paper_ledger_adjust
    from oms.errors import RiskRejected
    from oms.services.funds import funds_fetch

    settings.OMS_RISK = {**NO_LIMITS, "CHECK_BUYING_POWER": True}
    multi_currency_market()
    set_quote("005930", "50400", spread="0")
    account = paper_account(alice)
    assert fill(account, "buy", "15", "50400", symbol="005930").status == "filled"
    usd = PaperBalance.objects.get(account_id=account.pk, currency="USD").amount
    paper_ledger_adjust(account_id=account.pk, currency="USD", amount=-usd, note="all out")
    funds_fetch(account)  # the projection follows (a sync, a read of the funds)
    with pytest.raises(RiskRejected) as refused:
        fill(account, "buy", "1", "50400", symbol="005930")
    assert refused.value.code == "insufficient_buying_power"
    # Reducing needs no buying power: once refused with insufficient_buying_power.
    assert fill(account, "sell", "8", "50400", symbol="005930").status == "filled"
    assert Position.objects.get(account=account, status="open").qty == D(7)


def test_buying_power_is_checked_on_the_part_that_opens_or_grows_from_the_funds_projection(account, venue, settings):
    from brokers.base import Funds
    from oms.errors import RiskRejected
    from oms.services.funds import funds_fetch

    fill(account, "buy", "15", "100")
    settings.OMS_RISK = {**NO_LIMITS, "CHECK_BUYING_POWER": True}
    venue.funds = Funds(currency="USD", cash=D(1000), margin_used=D(1500), margin_available=D(450), equity=D(2500))
    funds_fetch(account)  # the projection: 450 dollars of buying power
    venue.funds = Funds(currency="USD", cash=D(10**6), margin_used=D(0), margin_available=D(10**6), equity=D(10**6))
    venue.mode = "ack"
    assert fill(account, "sell", "19", "100").status == "new"  # 15 close, 4 (400) open a short
    with pytest.raises(RiskRejected) as refused:
        fill(account, "sell", "20", "100")  # 5 (500) would open: the projection says 450, whatever the broker says now
    assert refused.value.code == "insufficient_buying_power"
    with pytest.raises(RiskRejected):
        fill(account, "buy", "5", "100")  # grows the long
    with pytest.raises(RiskRejected):
        fill(account, "sell", "5", "100")  # the working sell of 19 closes the 15 already: these 5 open
    assert fill(account, "sell", "4", "100").status == "new"


def test_a_plain_close_is_never_checked_for_buying_power(account, venue, settings):
    from brokers.base import Funds
    from oms.services.funds import funds_fetch

    fill(account, "buy", "15", "100")
    settings.OMS_RISK = {**NO_LIMITS, "CHECK_BUYING_POWER": True}
    venue.funds = Funds(currency="USD", cash=D(0), margin_used=D(1500), margin_available=D(0), equity=D(1500))
    funds_fetch(account)
    assert fill(account, "sell", "8", "100").status == "filled"
    assert fill(account, "sell", "7", "100").status == "filled"
    assert Position.objects.get().status == "closed"


def test_the_notional_limit_is_in_the_accounts_base_currency(account, venue, settings):
    from oms.errors import RiskRejected

    multi_currency_market()
    settings.OMS_RISK = {**NO_LIMITS, "MAX_ORDER_NOTIONAL": "1000"}
    venue.mode = "ack"
    # 10 × 50,400 KRW is 373.33 dollars at 1,350: within a limit of 1,000 dollars.
    assert fill(account, "buy", "10", "50400", symbol="005930").status == "new"
    with pytest.raises(RiskRejected) as refused:
        fill(account, "buy", "30", "50400", symbol="005930")  # 1,120 dollars
    assert "1120.00 USD" in refused.value.message
    set_quote("BTC/USDT", "60000", spread="0")
    with pytest.raises(RiskRejected):
        send(account, symbol="BTC/USDT", side="buy", order_type="market", qty="0.02")  # 1,198.8 dollars


def test_funds_totals_are_the_balances_converted_in_rest_and_on_the_stream(alice, alice_api):
    from oms.streams import FundsChannel

    multi_currency_market()
    for symbol, price in (("005930", "50400"), ("NSE:INFY", "1500"), ("BTC/USDT", "60000")):
        set_quote(symbol, price, spread="0")
    account = paper_account(alice)
    fill(account, "buy", "10", "50400", symbol="005930")
    fill(account, "buy", "10", "1500", symbol="NSE:INFY")
    fill(account, "buy", "0.5", "60000", symbol="BTC/USDT")
    funds = alice_api.get(f"/api/v1/accounts/{account.pk}/funds").json()
    assert {
        "account_id",
        "currency",
        "cash",
        "margin_used",
        "margin_available",
        "equity",
        "unrealized_pnl",
        "balances",
        "buying_power",
        "rates",
    } == set(funds)
    assert funds["currency"] == "USD"
    assert {b["currency"] for b in funds["balances"]} == {"USD", "KRW", "INR", "USDT"}
    rates = {c: D(r) for c, r in funds["rates"].items()}
    assert rates["USD"] == 1 and rates["KRW"] == D("0.000740740740741") and rates["INR"] == D("0.0125") and rates["USDT"] == D("0.999")
    converted = sum(D(b["cash"]) * rates[b["currency"]] for b in funds["balances"])
    assert abs(converted - D(funds["cash"])) <= D("0.01")
    # Holdings at market: 504,000 KRW + 15,000 INR + 30,000 USDT in dollars, once.
    holdings = D(504000) / 1350 + D(15000) * D("0.0125") + D(30000) * D("0.999")
    assert abs(D(funds["equity"]) - D(funds["cash"]) - holdings) <= D("0.02")
    assert D(funds["buying_power"]) <= D(funds["margin_available"])
    # One payload function: the funds: stream's snapshot is the same object.
    seq, snapshot = FundsChannel().read_snapshot(alice, account.pk)
    assert snapshot == funds
