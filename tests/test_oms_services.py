"""OMS services against a scripted venue (tests.fakes.FakeVenue): send, ack,
fills, rejects, timeouts, the sweeper after a crash, positions (netting,
hedging, multiplier, flip), close/close_by/reassign, risk limits.

Transactional: sends happen after commit, as in production."""

from __future__ import annotations

import io
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from brokers.base import BrokerUnavailable
from brokers.services import broker_account_set_trading_enabled
from oms.errors import Conflict, InvalidInput, NotFound, RiskRejected, TradingDisabled
from oms.models import Deal, DealKind, Order, OrderEvent, Position, PositionStatus
from oms.services.amend import order_cancel, order_change
from oms.services.closing import position_close
from oms.services.commands import command_for, commands_run
from oms.services.funds import funds_fetch
from oms.services.positions import deals_reassign, position_close_by, positions_rebuild
from oms.services.reconcile import account_reconcile
from oms.services.send import order_send
from oms.services.sweeper import orders_sweep
from tests.fakes import FakeBroker, FakeVenue
from tests.oms_support import (
    NO_LIMITS,
    NoClientIdVenue,
    change_spec,
    make_account,
    oms_setup,
    order_spec,
    placed_counts,
    send,
    set_quote,
    tasks_in_process,
    venue_fill,
    venue_registered,
)

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


@pytest.fixture(autouse=True)
def _setup(settings, request):
    oms_setup(settings)
    if request.node.get_closest_marker("redis"):
        yield  # the real worker sends
        return
    with tasks_in_process():
        yield


@pytest.fixture
def venue():
    venue = FakeVenue()
    with venue_registered(venue):
        yield venue


@pytest.fixture
def account(alice):
    return make_account(alice)


@pytest.fixture
def hedging(alice):
    return make_account(alice, position_mode="hedging", label="hedge")


def later(seconds: float = 0) -> timezone.datetime:
    """A time past the sweeper's threshold (and optionally more)."""
    from django.conf import settings

    return timezone.now() + timedelta(seconds=settings.OMS_SWEEP_AFTER_SECONDS + 1 + seconds)


def events(order: Order) -> list[tuple[str, str, str]]:
    return list(OrderEvent.objects.filter(order=order).values_list("kind", "from_status", "to_status"))


# --- send, ack, fill ---------------------------------------------------------------------------


def test_send_writes_pending_new_then_the_ack_makes_it_new(account, venue):
    order = send(account, order_type="limit", price="99.50", qty="3")
    assert order.status == "new"
    assert order.broker_order_id.startswith("B")
    assert order.sent_at is not None
    assert events(order) == [("created", "", "pending_new"), ("transition", "pending_new", "new")]
    assert placed_counts(venue) == {order.client_order_id: 1}
    request = venue.placed[0]
    assert (request.symbol, request.side, request.qty, request.price) == ("AAA", "buy", D(3), D("99.50"))


def test_a_market_fill_books_one_deal_and_the_position(account, venue):
    venue.mode = "fill"
    order = send(account, qty="5")
    assert (order.status, order.filled_qty, order.avg_fill_price) == ("filled", D(5), D(100))
    deal = Deal.objects.get()
    assert (deal.order_id, deal.qty, deal.price, deal.kind) == (order.pk, D(5), D(100), DealKind.TRADE)
    position = Position.objects.get()
    assert (position.side, position.qty, position.avg_price, position.status) == ("long", D(5), D(100), "open")
    assert deal.position_id == position.pk


def test_partial_fills_move_the_order_to_partially_filled_then_filled(account, venue):
    order = send(account, order_type="limit", price="100", qty="10")
    venue_fill(venue, order.client_order_id, D(4), D(100))
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("partially_filled", D(4))
    venue_fill(venue, order.client_order_id, D(6), D("99"))
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("filled", D(10))
    assert order.avg_fill_price == D("99.4")  # (4*100 + 6*99) / 10
    assert Position.objects.get().qty == D(10)
    kinds = [k for k, _, _ in events(order)]
    assert kinds.count("fill") == 2


def test_a_replayed_fill_is_booked_once(account, venue):
    from brokers.registry import deliver_fills

    order = send(account, order_type="limit", price="100", qty="2")
    fill = venue_fill(venue, order.client_order_id, D(2))
    deliver_fills(account.pk, [fill])
    deliver_fills(account.pk, [fill, fill])
    assert Deal.objects.count() == 1
    order.refresh_from_db()
    assert order.filled_qty == D(2)
    assert Position.objects.get().qty == D(2)


def test_a_broker_reject_rejects_the_order_with_its_message(account, venue):
    venue.mode = "reject"
    order = send(account)
    assert order.status == "rejected"
    assert order.status_message == "Insufficient funds (fake)."
    assert not Deal.objects.exists()
    assert events(order)[-1] == ("transition", "pending_new", "rejected")


def test_a_timeout_makes_the_order_unknown_and_it_is_never_sent_again(account, venue, settings):
    venue.mode = "timeout"
    order = send(account)
    assert order.status == "unknown"
    venue.mode = "ack"
    for minutes in (0, 1, 5):
        orders_sweep(now=later(minutes * 60))
        account_reconcile(account=account)  # inside the grace period: still unknown
    order.refresh_from_db()
    assert order.status == "unknown"
    # The broker never heard of it: after the grace period, rejected; never sent again.
    summary = account_reconcile(account=account, now=timezone.now() + timedelta(seconds=settings.OMS_RECONCILE_GRACE_SECONDS + 5))
    order.refresh_from_db()
    assert (order.status, order.status_message) == ("rejected", "Not found at the broker.")
    assert summary.rejected == [order.pk]
    orders_sweep(now=later(3600))
    assert placed_counts(venue) == {order.client_order_id: 1}


class OfflineBroker(FakeBroker):
    def place_order(self, request):
        raise BrokerUnavailable("Connection refused (fake).")


class OfflineVenue(FakeVenue):
    def broker(self, account):
        return OfflineBroker(self)


def test_an_unavailable_broker_leaves_the_order_for_the_sweeper_without_failing_the_request(account):
    # BrokerUnavailable: surely not sent. Eager Celery used to retry 20 times
    # inside on_commit and raise into the committed request.
    payload = {"symbol": "AAA", "side": "buy", "order_type": "market", "qty": "1"}
    command = command_for(account=account, command="send_order", payload=payload)
    with venue_registered(OfflineVenue()):
        outcome = commands_run(account=account, commands=[command], actor=None, source="rest", idempotency_key="k-1")
    assert outcome.status_code == 202
    order = Order.objects.get()
    assert (order.status, order.sent_at) == ("pending_new", None)
    venue = FakeVenue()
    with venue_registered(venue):
        summary = orders_sweep(now=later())
    order.refresh_from_db()
    assert summary.submitted == [order.pk]
    assert order.status == "new"
    assert placed_counts(venue) == {order.client_order_id: 1}


# --- the sweeper after a crash ---------------------------------------------------------------------


@pytest.fixture
def no_send(monkeypatch):
    """The process dies right after commit: the send is never enqueued."""
    monkeypatch.setattr("oms.services.send.enqueue_submit", lambda ids: None)


def test_crash_before_the_send_the_sweeper_sends_it_once(account, venue, no_send):
    order = send(account)
    assert (order.status, order.sent_at) == ("pending_new", None)
    assert orders_sweep().submitted == []  # too young: its task may still be on the way
    summary = orders_sweep(now=later())
    assert summary.submitted == [order.pk]
    order.refresh_from_db()
    assert order.status == "new"
    orders_sweep(now=later(60))
    assert placed_counts(venue) == {order.client_order_id: 1}


def test_crash_after_the_claim_before_the_call_the_sweeper_asks_then_sends_once(account, venue, no_send):
    order = send(account)
    Order.objects.filter(pk=order.pk).update(sent_at=timezone.now())  # claimed, then the process died
    summary = orders_sweep(now=later())
    assert summary.resent == [order.pk]
    order.refresh_from_db()
    assert order.status == "new"
    assert order.broker_order_id
    orders_sweep(now=later(60))
    assert placed_counts(venue) == {order.client_order_id: 1}
    assert venue.placed[0].client_order_id == order.client_order_id  # the same client order id


@pytest.mark.parametrize("mode", ["ack", "fill"])
def test_crash_after_the_call_the_sweeper_records_what_the_broker_has_and_never_sends(account, venue, no_send, mode):
    order = send(account, qty="2")
    Order.objects.filter(pk=order.pk).update(sent_at=timezone.now())
    # The call reached the broker; the answer (and any fill delivery) died with the process.
    broker = venue.broker(account)
    if mode == "ack":
        broker.place_order(_request(order))
    else:
        venue.placed.append(_request(order))
        broker.execute(_request(order))
    summary = orders_sweep(now=later())
    assert summary.found == [order.pk]
    order.refresh_from_db()
    if mode == "ack":
        assert (order.status, order.filled_qty) == ("new", 0)
    else:
        # Fills are booked from the venue's fills, once.
        assert (order.status, order.filled_qty) == ("filled", D(2))
        assert Deal.objects.count() == 1
    orders_sweep(now=later(60))
    account_reconcile(account=account)
    assert placed_counts(venue) == {order.client_order_id: 1}
    assert Deal.objects.count() == (1 if mode == "fill" else 0)


def _request(order: Order):
    from oms.services.send import order_request

    return order_request(order)


def test_without_client_order_ids_the_sweeper_matches_symbol_side_qty_and_time(account, no_send):
    venue = NoClientIdVenue()
    with venue_registered(venue):
        other = send(account, qty="7")  # another order, also sent before the crash: not ours to match
        mine = send(account, qty="3")
        for order in (other, mine):
            Order.objects.filter(pk=order.pk).update(sent_at=timezone.now())
        FakeBroker(venue).place_order(_request(mine))  # only "mine" reached the broker
        summary = orders_sweep(now=later())
    mine.refresh_from_db()
    other.refresh_from_db()
    assert summary.found == [mine.pk] and summary.resent == [other.pk]
    assert mine.status == "new" and mine.broker_order_id == venue.orders[mine.client_order_id].broker_order_id
    assert other.status == "new" and other.broker_order_id != mine.broker_order_id
    assert placed_counts(venue) == {mine.client_order_id: 1, other.client_order_id: 1}


def test_the_sweeper_leaves_claimed_orders_alone_while_the_broker_is_down(account, venue, no_send, monkeypatch):
    order = send(account)
    Order.objects.filter(pk=order.pk).update(sent_at=timezone.now())

    def down(self, **kwargs):
        raise BrokerUnavailable("down")

    monkeypatch.setattr(FakeBroker, "get_order", down)
    summary = orders_sweep(now=later())
    assert summary.failed == [order.pk]
    order.refresh_from_db()
    assert order.status == "pending_new" and order.sent_at is not None
    assert venue.placed == []


def test_a_canceled_unsent_order_is_never_sent(account, venue, no_send):
    order = send(account)
    order_cancel(order=order, actor=None, source="rest")
    orders_sweep(now=later())
    order.refresh_from_db()
    assert order.status == "canceled"
    assert venue.placed == []


# --- cancel and change ------------------------------------------------------------------------


def test_cancel_and_change_of_a_working_order(account, venue):
    order = send(account, order_type="limit", price="100", qty="5")
    changed = order_change(order=order, actor=None, source="rest", spec=change_spec(order, qty="8", price="101"))
    changed.refresh_from_db()
    assert (changed.status, changed.qty, changed.price) == ("new", D(8), D(101))
    canceled = order_cancel(order=changed, actor=None, source="rest")
    canceled.refresh_from_db()
    assert canceled.status == "canceled"
    with pytest.raises(Conflict):
        order_cancel(order=canceled, actor=None, source="rest")


def test_a_cancel_refused_because_the_order_filled_keeps_the_fill(account, venue):
    order = send(account, order_type="limit", price="100", qty="2")
    venue_fill(venue, order.client_order_id, D(2))
    order.refresh_from_db()
    assert order.status == "filled"
    with pytest.raises(Conflict):
        order_cancel(order=order, actor=None, source="rest")


# --- positions ---------------------------------------------------------------------------------


def _fill_at(account, side: str, qty: str, price: str, symbol: str = "AAA", **extra) -> Order:
    return send(account, symbol=symbol, side=side, order_type="limit", qty=qty, price=price, **extra)


def test_netting_average_cost_realized_pnl_with_a_multiplier_and_a_flip(account, venue):
    venue.mode = "fill"
    _fill_at(account, "buy", "2", "100", symbol="FUT")
    _fill_at(account, "buy", "2", "110", symbol="FUT")
    position = Position.objects.get(symbol="FUT")
    assert (position.side, position.qty, position.avg_price, position.multiplier) == ("long", D(4), D(105), D(50))
    _fill_at(account, "sell", "3", "120", symbol="FUT")
    position.refresh_from_db()
    assert (position.side, position.qty, position.avg_price) == ("long", D(1), D(105))
    assert position.realized_pnl == D(15) * 3 * 50  # 2250
    _fill_at(account, "sell", "2", "100", symbol="FUT")  # closes 1 at a loss, opens 1 short
    position.refresh_from_db()
    assert (position.side, position.qty, position.avg_price) == ("short", D(1), D(100))
    assert position.realized_pnl == D(2250) - D(5) * 50
    _fill_at(account, "buy", "1", "90", symbol="FUT")
    position.refresh_from_db()
    assert (position.status, position.qty) == ("closed", 0)
    assert position.realized_pnl == D(2000) + D(10) * 50
    assert positions_rebuild(account=account) == []
    # Netting: the next deal opens a new position.
    _fill_at(account, "buy", "1", "95", symbol="FUT")
    assert Position.objects.filter(symbol="FUT", status="open").count() == 1
    assert Position.objects.filter(symbol="FUT").count() == 2


def test_rebuild_agrees_when_the_average_cost_does_not_divide_evenly(account, venue):
    # avg = 302/3 does not divide evenly: the cost is kept whole (302), so the
    # full close realizes exactly 306 - 302 = 4, and a rebuild replays it.
    venue.mode = "fill"
    _fill_at(account, "buy", "1", "100")
    _fill_at(account, "buy", "2", "101")
    _fill_at(account, "sell", "3", "102")
    position = Position.objects.get()
    assert (position.status, position.realized_pnl) == ("closed", D(4))
    assert positions_rebuild(account=account) == []


def test_netting_keeps_one_position_per_symbol_and_strategy(account, venue):
    venue.mode = "fill"
    _fill_at(account, "buy", "1", "100")
    _fill_at(account, "buy", "1", "100", strategy_id="s1")
    _fill_at(account, "buy", "1", "102", strategy_id="s1")
    assert Position.objects.filter(status="open").count() == 2
    s1 = Position.objects.get(strategy_id="s1")
    assert (s1.qty, s1.avg_price) == (D(2), D(101))


def test_hedging_opens_a_position_per_order_and_reduces_the_named_one(hedging, venue):
    venue.mode = "fill"
    first = _fill_at(hedging, "buy", "2", "100")
    _fill_at(hedging, "buy", "3", "104")
    positions = list(Position.objects.filter(account=hedging).order_by("id"))
    assert [(p.qty, p.avg_price) for p in positions] == [(D(2), D(100)), (D(3), D(104))]
    first_position = Deal.objects.get(order=first).position
    _fill_at(hedging, "sell", "1", "110", position_id=first_position.pk)
    first_position.refresh_from_db()
    assert (first_position.qty, first_position.realized_pnl) == (D(1), D(10))
    assert Position.objects.get(pk=positions[1].pk).qty == D(3)
    assert positions_rebuild(account=hedging) == []


def test_close_position_sends_one_reduce_only_close_at_a_time(account, venue):
    venue.mode = "fill"
    _fill_at(account, "buy", "4", "100")
    position = Position.objects.get()
    venue.mode = "ack"  # the close rests
    close = position_close(account=account, position_id=position.pk, actor=None, source="rest")
    close.refresh_from_db()
    assert (close.side, close.qty, close.reduce_only, close.order_type, close.status) == ("sell", D(4), True, "market", "new")
    with pytest.raises(Conflict) as second:
        position_close(account=account, position_id=position.pk, actor=None, source="rest")
    assert second.value.status_code == 409
    venue_fill(venue, close.client_order_id, D(4), D(103))
    position.refresh_from_db()
    assert (position.status, position.realized_pnl) == (PositionStatus.CLOSED, D(12))
    with pytest.raises(Conflict):
        position_close(account=account, position_id=position.pk, actor=None, source="rest")
    assert Order.objects.filter(reduce_only=True).count() == 1


def test_close_by_books_two_internal_deals_at_one_price(hedging, venue):
    venue.mode = "fill"
    _fill_at(hedging, "buy", "3", "100")
    _fill_at(hedging, "sell", "2", "104")
    long_, short = Position.objects.order_by("id")
    set_quote("AAA", "102")
    deals = position_close_by(account=hedging, position_id_a=long_.pk, position_id_b=short.pk)
    assert [(d.kind, d.side, d.qty, d.price) for d in deals] == [("close_by", "sell", D(2), D(102)), ("close_by", "buy", D(2), D(102))]
    long_.refresh_from_db()
    short.refresh_from_db()
    assert (long_.qty, long_.realized_pnl, long_.status) == (D(1), D(4), "open")
    assert (short.qty, short.realized_pnl, short.status) == (D(0), D(4), "closed")
    assert positions_rebuild(account=hedging) == []
    with pytest.raises(Conflict):
        position_close_by(account=hedging, position_id_a=long_.pk, position_id_b=short.pk)


def test_reassign_leaves_the_original_deals_untouched_and_positions_agree_with_a_rebuild(account, venue, bob):
    venue.mode = "fill"
    _fill_at(account, "buy", "2", "100")
    _fill_at(account, "buy", "2", "110")
    originals = list(Deal.objects.order_by("id").values())
    booked = deals_reassign(account=account, deal_ids=[originals[1]["id"]], target_strategy_id="swing")
    assert [(d.kind, d.side, d.qty, d.price, d.strategy_id) for d in booked] == [
        ("reassign", "sell", D(2), D(110), ""),
        ("reassign", "buy", D(2), D(110), "swing"),
    ]
    assert all(d.origin_id == originals[1]["id"] for d in booked)
    assert list(Deal.objects.filter(pk__in=[o["id"] for o in originals]).order_by("id").values()) == originals
    default = Position.objects.get(strategy_id="", status="open")
    swing = Position.objects.get(strategy_id="swing")
    assert (default.qty, default.avg_price, default.realized_pnl) == (D(2), D(105), D(10))
    assert (swing.qty, swing.avg_price) == (D(2), D(110))
    assert positions_rebuild(account=account) == []
    # Another user's deal looks like none.
    other = make_account(bob, label="bob")
    with pytest.raises(NotFound):
        deals_reassign(account=other, deal_ids=[originals[0]["id"]], target_strategy_id="x")


def test_rebuild_positions_command_reports_differences_and_fixes_them(account, venue):
    venue.mode = "fill"
    _fill_at(account, "buy", "3", "100")
    out = io.StringIO()
    call_command("rebuild_positions", "--account-id", str(account.pk), stdout=out)
    assert "no differences" in out.getvalue()
    Position.objects.update(qty=D(5))  # corrupted
    with pytest.raises(CommandError, match="1 position"):
        call_command("rebuild_positions", "--account-id", str(account.pk), stdout=io.StringIO())
    assert Position.objects.get().qty == D(5)  # reported, not changed
    out = io.StringIO()
    call_command("rebuild_positions", "--fix", stdout=out)
    assert "fixed" in out.getvalue()
    assert Position.objects.get().qty == D(3)
    assert positions_rebuild(account=account) == []
    with pytest.raises(CommandError):
        call_command("rebuild_positions", "--account-id", "999999")


# --- risk limits and the kill switch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "payload", "code"),
    [
        ({"MAX_ORDER_QTY": "10"}, {"qty": "11"}, "risk_rejected"),
        ({"MAX_ORDER_NOTIONAL": "1000"}, {"qty": "11", "order_type": "limit", "price": "100"}, "risk_rejected"),
        ({"MAX_ORDER_NOTIONAL": "1000"}, {"symbol": "FUT", "qty": "1", "order_type": "limit", "price": "25"}, "risk_rejected"),
        ({"ALLOWED_SYMBOLS": ["BBB"]}, {"symbol": "AAA"}, "risk_rejected"),
    ],
)
def test_risk_limits_refuse_the_order_and_write_nothing(account, venue, settings, limits, payload, code):
    settings.OMS_RISK = {**NO_LIMITS, **limits}
    with pytest.raises(RiskRejected) as refused:
        send(account, **payload)
    assert refused.value.code == code
    assert not Order.objects.exists() and venue.placed == []


def test_risk_limits_let_orders_within_them_through(account, venue, settings):
    settings.OMS_RISK = {**NO_LIMITS, "MAX_ORDER_QTY": "10", "MAX_ORDER_NOTIONAL": "1000", "ALLOWED_SYMBOLS": ["AAA"]}
    assert send(account, qty="10", order_type="limit", price="100").status == "new"


def test_orders_per_second_limit(account, venue, settings):
    settings.OMS_RISK = {**NO_LIMITS, "MAX_ORDERS_PER_SECOND": 2}
    refusals = []
    for _ in range(6):  # well within two calendar seconds: at most 4 can pass
        try:
            send(account)
        except RiskRejected as refused:
            refusals.append(refused)
    assert refusals and {(r.code, r.status_code, r.retry_after) for r in refusals} == {("order_rate_limited", 429, 1)}
    seconds = Counter(int(order.created_at.timestamp()) for order in Order.objects.all())
    assert sum(seconds.values()) == 6 - len(refusals) and max(seconds.values()) <= 2


def test_buying_power_is_checked_against_the_broker_funds(account, venue, settings):
    settings.OMS_RISK = {**NO_LIMITS, "CHECK_BUYING_POWER": True}
    funds_fetch(account)  # the fake venue reports 1,000,000 available
    with pytest.raises(RiskRejected) as refused:
        send(account, qty="10001", order_type="limit", price="100")
    assert refused.value.code == "insufficient_buying_power"
    assert send(account, qty="9999", order_type="limit", price="100").status == "new"
    # Futures are margin products: the broker checks those.
    assert send(account, symbol="FUT", qty="1000", order_type="limit", price="100").status == "new"


def test_the_kill_switch_refuses_sends_but_allows_cancels(account, venue):
    working = send(account, order_type="limit", price="90")
    broker_account_set_trading_enabled(account=account, enabled=False)
    account.refresh_from_db()
    with pytest.raises(TradingDisabled) as refused:
        send(account)
    assert refused.value.status_code == 403
    order_cancel(order=working, actor=None, source="admin")
    working.refresh_from_db()
    assert working.status == "canceled"
    assert len(venue.placed) == 1


def test_invalid_orders_are_refused_before_anything_is_written(account, venue):
    with pytest.raises(InvalidInput):
        order_send(account=account, actor=None, source="rest", spec=order_spec(symbol="AAA", side="buy", order_type="limit", qty="1"))
    with pytest.raises(InvalidInput):
        order_send(account=account, actor=None, source="rest", spec=order_spec(symbol="NOPE", side="buy", order_type="market", qty="1"))
    assert not Order.objects.exists()


# --- wiring ---------------------------------------------------------------------------------------


def test_the_oms_loops_are_registered_and_beat_schedules_the_same_tasks(settings):
    from config.celery import app
    from core.loops import registered_loops

    loops = registered_loops()
    assert {"oms.sweeper", "oms.reconcile", "oms.marks"} <= set(loops)
    assert loops["oms.sweeper"].interval() == settings.OMS_SWEEP_INTERVAL
    settings.OMS_RECONCILE_INTERVAL = 7
    assert loops["oms.reconcile"].interval() == 7
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.PERIODIC_TASKS.values()}
    assert {"oms.orders_sweep", "oms.accounts_reconcile_all", "oms.positions_mark", "oms.accounts_sync_all"} <= scheduled
    assert scheduled <= set(app.tasks)


def test_the_tasks_run_the_services(account, venue):
    from oms.tasks import account_reconcile_task, accounts_reconcile_all_task, orders_sweep_task, positions_mark_task

    order = send(account, order_type="limit", price="100", qty="2")
    assert orders_sweep_task() == {"submitted": [], "found": [], "resent": [], "failed": []}
    assert account_reconcile_task(999999) is None
    assert account.pk in accounts_reconcile_all_task()
    assert positions_mark_task() == 0  # nothing open
    venue_fill(venue, order.client_order_id, D(1), deliver=False)  # only reconciliation finds it
    summary = account_reconcile_task(account.pk)
    assert (summary["ok"], summary["fills_booked"]) == (True, 1)
    set_quote("AAA", "104")
    assert positions_mark_task() == 1
    position = Position.objects.get()
    assert (position.last_price, position.unrealized_pnl) == (D(104), D(4))
    assert positions_mark_task() == 0  # unchanged quote: nothing to publish


def test_the_loops_step_aside_when_beat_schedules_the_work(account, venue, no_send, settings, monkeypatch):
    from oms import loops

    calls = []
    monkeypatch.setattr("oms.services.sweeper.orders_sweep", lambda: calls.append("sweep"))
    settings.CELERY_TASK_ALWAYS_EAGER = False
    loops.sweep_step()
    assert calls == []
    settings.CELERY_TASK_ALWAYS_EAGER = True
    loops.sweep_step()
    assert calls == ["sweep"]


# --- production mode: a real Celery worker sends --------------------------------------------------------


@pytest.mark.redis
def test_a_real_celery_worker_sends_the_order_enqueued_after_commit(celery_worker_process, server_tmp, alice, settings):
    """order_send commits and enqueues to Redis; the worker process (same test
    database) claims and sends it to the paper venue."""
    assert settings.CELERY_TASK_ALWAYS_EAGER is False  # nothing runs in this process
    from brokers.paper.models import PaperOrder

    account = make_account(alice, kind="paper", label="paper")
    set_quote("AAA", "100")
    order = order_send(
        account=account, actor=None, source="rest", spec=order_spec(symbol="AAA", side="buy", order_type="limit", qty="1", price="50")
    )
    assert order.status == "pending_new"  # the answer of the request: sending is the worker's job
    deadline = time.monotonic() + 30
    while order.status == "pending_new" and time.monotonic() < deadline:
        time.sleep(0.2)
        order.refresh_from_db()
    assert order.status == "new", f"still {order.status} after 30 s; worker log:\n{(server_tmp / 'celery-worker.log').read_text()[-3000:]}"
    assert order.sent_at is not None and order.broker_order_id
    paper = PaperOrder.objects.get(client_order_id=order.client_order_id)
    assert paper.broker_order_id == order.broker_order_id
    assert events(order)[-1] == ("transition", "pending_new", "new")
