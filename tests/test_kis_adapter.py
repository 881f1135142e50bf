"""KIS adapter against the fake KIS server over real sockets: what a trader
sees (order status, deals, position, KRW funds) when KIS misbehaves, paging,
and cumulative fills booked exactly once."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from brokers import registry
from brokers.base import BrokerRejected, BrokerUnavailable
from brokers.kis import protocol
from brokers.kis.adapter import parse_order_ref
from brokers.kis.client import KisClient, kis_config_for
from oms.models import Deal, Order, Position
from oms.services.sweeper import orders_sweep
from tests.kis_support import APP_SECRET, CANO, CASH, CODE, PRICE, SYMBOL, Kis, kis_account, kis_running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kis(settings, alice) -> Iterator[Kis]:
    with kis_running(settings, alice) as running:
        yield running


def position_qty(kis: Kis) -> Decimal:
    position = Position.objects.filter(account=kis.account, symbol=SYMBOL, status="open").first()
    return position.qty if position else Decimal(0)


def later_sweep():
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    return orders_sweep(now=timezone.now() + timedelta(seconds=settings.OMS_SWEEP_AFTER_SECONDS + 1))


# --- the happy path -----------------------------------------------------------------------------


def test_a_market_buy_fills_and_books_one_deal_a_position_and_krw_funds(kis):
    order = kis.send(side="buy", qty="3")
    assert order.status == "new" and order.broker_order_id
    day, odno = parse_order_ref(order.broker_order_id)
    assert len(day) == 8 and odno
    summary = kis.reconcile()  # the daily-orders query reports the order's progress
    assert summary.ok, summary.error
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.avg_fill_price) == ("filled", Decimal(3), PRICE)
    deal = Deal.objects.get(account=kis.account)
    assert (deal.qty, deal.price, deal.broker_trade_id) == (Decimal(3), PRICE, f"{order.broker_order_id}:3")
    assert position_qty(kis) == Decimal(3)
    funds = kis.broker().funds()
    assert funds.currency == "KRW" and funds.cash == CASH - 3 * PRICE
    assert funds.equity == CASH  # cash plus the holding at the current price
    assert [(h.symbol, h.qty) for h in kis.broker().holdings()] == [(SYMBOL, Decimal(3))]
    assert kis.broker().positions() == []


def test_the_same_fill_reported_by_notice_and_by_the_daily_query_is_booked_once(kis):
    kis.server.configure(partial_fill_qty=1)
    order = kis.send(order_type="limit", price=str(PRICE), qty="3")  # crosses: fills 1 now
    broker = kis.broker()
    view = broker.get_order(broker_order_id=parse_order_ref(order.broker_order_id)[1])  # a notice names the bare ODNO
    assert view is not None and (view.broker_order_id, view.filled_qty, view.status) == (order.broker_order_id, 1, "partially_filled")
    registry.deliver_order_updates(kis.account.pk, [view])  # the fill notice's view
    registry.deliver_order_updates(kis.account.pk, [view])  # the same notice again
    assert kis.reconcile().fills_booked == 0  # the daily query reports the same progress
    assert Deal.objects.filter(account=kis.account).count() == 1
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("partially_filled", Decimal(1))
    kis.server.set_price(CODE, PRICE)  # the price touches the limit again: one more share
    kis.server.set_price(CODE, PRICE)
    assert kis.reconcile().fills_booked == 1  # progress from 1 to 3 in one deal of 2
    late = broker.get_order(broker_order_id=order.broker_order_id)
    registry.deliver_order_updates(kis.account.pk, [view, late])  # a stale notice and a late one
    deals = list(Deal.objects.filter(account=kis.account).order_by("id").values_list("qty", "broker_trade_id"))
    assert deals == [(Decimal(1), f"{order.broker_order_id}:1"), (Decimal(2), f"{order.broker_order_id}:3")]
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("filled", Decimal(3))
    assert position_qty(kis) == Decimal(3)


def test_a_fill_notice_that_outruns_the_order_answer_is_booked_once_the_answer_links_it(kis):
    from brokers.kis.adapter import kis_broker_factory
    from tests.oms_support import broker_registered

    class NoticeFirst:
        """KIS as it may behave: the fill notice (and the feed's look-up)
        reaches the OMS before the order's own answer does."""

        def __init__(self, account):
            self.inner = kis_broker_factory(account)
            self.capabilities = self.inner.capabilities

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def place_order(self, request):
            ack = self.inner.place_order(request)
            view = self.inner.get_order(broker_order_id=parse_order_ref(ack.broker_order_id)[1])
            registry.deliver_order_updates(kis.account.pk, [view])
            return ack

    with broker_registered("kis", NoticeFirst):
        order = kis.send(qty="2")
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("filled", Decimal(2))  # no reconciliation needed
    assert Deal.objects.filter(account=kis.account).count() == 1 and position_qty(kis) == Decimal(2)
    assert kis.reconcile().fills_booked == 0


def test_progress_reported_concurrently_from_several_sources_is_booked_exactly_once(kis):
    """Notices, their repeats and reconciliation deliver views of one order at
    cumulative 1, 2 and 3 at the same time: 3 shares are booked, no more."""
    from tests.test_oms_concurrency import run_threads

    kis.server.configure(partial_fill_qty=1)
    order = kis.send(order_type="limit", price=str(PRICE), qty="3")
    broker = kis.broker()
    views = [broker.get_order(broker_order_id=order.broker_order_id)]
    for _ in range(2):
        kis.server.set_price(CODE, PRICE)  # one more share each time
        views.append(broker.get_order(broker_order_id=order.broker_order_id))
    assert [v.filled_qty for v in views] == [1, 2, 3]
    results = run_threads(12, lambda i: registry.deliver_order_updates(kis.account.pk, [views[(i * 7) % 3]]))
    assert all(outcome == "ok" for outcome, _ in results), results
    deals = Deal.objects.filter(account=kis.account)
    assert sum(d.qty for d in deals) == Decimal(3) and deals.count() <= 3
    assert len({d.broker_trade_id for d in deals}) == deals.count()
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.avg_fill_price) == ("filled", Decimal(3), PRICE)
    assert position_qty(kis) == Decimal(3)


def test_a_resting_limit_order_is_changed_then_canceled_at_kis(kis):
    order = kis.send(order_type="limit", price="60000", qty="3")
    assert order.status == "new"
    kis.command("change_order", {"order_id": order.pk, "qty": "2", "price": "59000"})
    order.refresh_from_db()
    assert (order.status, order.qty, order.price) == ("new", Decimal(2), Decimal(59000))
    view = kis.broker().get_order(broker_order_id=order.broker_order_id, symbol=SYMBOL)
    assert view is not None and (view.qty, view.price, view.status) == (Decimal(2), Decimal(59000), "new")
    kis.command("cancel_order", {"order_id": order.pk})
    order.refresh_from_db()
    assert order.status == "canceled"
    assert kis.broker().open_orders() == []
    # Cash reserved by the order is back.
    assert kis.broker().funds().buying_power == CASH


def test_kis_cannot_raise_an_orders_quantity_and_says_so(kis):
    order = kis.send(order_type="limit", price="60000", qty="2")
    kis.command("change_order", {"order_id": order.pk, "qty": "3"})
    order.refresh_from_db()
    assert (order.status, order.qty) == ("new", Decimal(2))
    assert "cannot raise" in order.status_message


# --- faults ----------------------------------------------------------------------------------------


def test_wrong_credentials_reject_the_order_without_leaking_the_secret(kis, alice, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = kis_account(alice, app_secret="not-the-secret-0123456789", label="wrong")
    # Another app key's account: same fake account number, its own credentials.
    kis.account = wrong
    order = kis.send(qty="1")
    assert order.status == "rejected"
    assert "EGW00105" in order.status_message and "not-the-secret" not in order.status_message
    assert kis.server.calls[protocol.ORDER_CASH_PATH] == 0
    assert not Deal.objects.filter(account=wrong).exists()
    assert "not-the-secret" not in caplog.text and APP_SECRET not in caplog.text


def test_an_expired_token_is_refreshed_once_and_the_order_sent_once(kis):
    kis.send(qty="1")  # a token is issued
    kis.allow_token_issue()
    kis.server.exchange.expire_tokens()
    issued = kis.server.calls[protocol.TOKEN_PATH]
    order = kis.send(qty="2")
    assert order.status == "new"
    assert kis.server.calls[protocol.TOKEN_PATH] == issued + 1
    kis.reconcile()
    order.refresh_from_db()
    assert order.status == "filled"
    assert [o["qty"] for o in kis.orders_at_fake()] == [1, 2]  # the refused attempt executed nothing
    assert position_qty(kis) == Decimal(3)


def test_a_token_refused_again_after_the_refresh_leaves_the_order_unsent(kis):
    kis.send(qty="1")
    kis.allow_token_issue()
    kis.server.fault("token_expired", count=2, path=protocol.ORDER_CASH_PATH)
    order = kis.send(qty="2")
    assert (order.status, order.sent_at) == ("pending_new", None)
    assert len(kis.orders_at_fake()) == 1
    later_sweep()
    kis.reconcile()
    order.refresh_from_db()
    assert order.status == "filled" and len(kis.orders_at_fake()) == 2


def test_rate_limited_order_waits_for_the_sweeper_and_is_sent_once(kis):
    kis.server.fault("rate_limit", path=protocol.ORDER_CASH_PATH)
    order = kis.send(qty="1")
    assert (order.status, order.sent_at) == ("pending_new", None)
    assert kis.orders_at_fake() == []
    assert later_sweep().submitted == [order.pk]
    kis.reconcile()
    order.refresh_from_db()
    assert order.status == "filled" and len(kis.orders_at_fake()) == 1


def test_a_5xx_on_an_order_means_not_sent_and_on_a_read_an_error_on_the_account(kis):
    kis.server.fault("http_500", path=protocol.ORDER_CASH_PATH)  # a gateway error: rt_cd 1, EGW code
    order = kis.send(qty="1")
    assert (order.status, order.sent_at) == ("pending_new", None)
    later_sweep()
    kis.reconcile()
    order.refresh_from_db()
    assert order.status == "filled" and len(kis.orders_at_fake()) == 1
    kis.server.fault("http_500", path=protocol.INQUIRE_DAILY_CCLD_PATH)
    summary = kis.reconcile()
    assert not summary.ok and "BrokerUnavailable" in summary.error
    kis.account.refresh_from_db()
    assert "EGW00500" in kis.account.last_error


def test_a_lost_answer_leaves_the_order_unknown_until_the_daily_query_settles_it(kis):
    kis.server.fault("lose_response", path=protocol.ORDER_CASH_PATH)
    order = kis.send(qty="2")
    assert (order.status, order.broker_order_id) == ("unknown", "")
    later_sweep()  # never resent
    assert len(kis.orders_at_fake()) == 1
    summary = kis.reconcile(later=True)
    assert summary.ok, summary.error
    order.refresh_from_db()
    assert order.status == "filled" and order.broker_order_id
    assert parse_order_ref(order.broker_order_id)[1] == kis.orders_at_fake()[0]["odno"]
    assert Deal.objects.filter(account=kis.account).count() == 1 and position_qty(kis) == Decimal(2)
    assert len(kis.orders_at_fake()) == 1 and not summary.imported


def test_an_order_answered_too_late_is_unknown_and_settled_never_resent(kis, settings):
    kis.send(qty="1")  # connected
    settings.BROKER_HTTP_TIMEOUT = 0.5
    kis.server.fault("slow", path=protocol.ORDER_CASH_PATH, seconds=1.5)
    order = kis.send(qty="2")
    assert order.status == "unknown"
    later_sweep()
    settings.BROKER_HTTP_TIMEOUT = 5.0
    deadline = time.monotonic() + 5  # KIS executes it after we stopped waiting
    while len(kis.orders_at_fake()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    kis.reconcile(later=True)
    order.refresh_from_db()
    assert order.status == "filled" and [o["qty"] for o in kis.orders_at_fake()] == [1, 2]
    assert position_qty(kis) == Decimal(3)


def test_one_kis_order_is_never_tied_to_two_orders_alike(kis):
    """Two orders alike (stock, side, quantity): one claimed by a worker that
    died before it called KIS, the other booked at KIS with its answer lost.
    KIS has no client order ids: the reconciliation ties its order to one of
    them only, and the sweeper sends the other: two orders at KIS, each ours
    once, every share held as bought."""
    from django.utils import timezone

    with kis.unreachable():
        claimed = kis.send(qty="2")
    assert (claimed.status, claimed.sent_at) == ("pending_new", None)
    Order.objects.filter(pk=claimed.pk).update(sent_at=timezone.now())  # a worker claimed it, then died
    kis.server.fault("lose_response", path=protocol.ORDER_CASH_PATH)
    lost = kis.send(qty="2")
    assert lost.status == "unknown" and len(kis.orders_at_fake()) == 1
    kis.reconcile(later=True)
    later_sweep()
    kis.reconcile(later=True)
    claimed.refresh_from_db()
    lost.refresh_from_db()
    at_kis = sorted(f"{o['odno']}" for o in kis.orders_at_fake())
    assert len(at_kis) == 2
    assert sorted(parse_order_ref(o.broker_order_id)[1] for o in (claimed, lost)) == at_kis
    assert (claimed.status, lost.status) == ("filled", "filled")
    assert position_qty(kis) == Decimal(4)
    assert sum(d.qty for d in Deal.objects.filter(account=kis.account)) == Decimal(4)


def test_a_malformed_answer_to_an_order_is_unknown_and_settled_never_resent(kis):
    kis.server.fault("malformed", path=protocol.ORDER_CASH_PATH)
    order = kis.send(qty="1")
    assert order.status == "unknown"
    later_sweep()
    kis.reconcile(later=True)
    order.refresh_from_db()
    assert order.status == "filled" and len(kis.orders_at_fake()) == 1


def test_a_malformed_answer_to_a_read_is_unavailable(kis):
    kis.server.fault("malformed", path=protocol.INQUIRE_BALANCE_PATH)
    with pytest.raises(BrokerUnavailable):
        kis.broker().funds()
    assert kis.broker().funds().cash == CASH


def test_an_unreachable_kis_leaves_the_order_pending_and_sent_later(kis):
    kis.send(qty="1")  # token issued while reachable
    with kis.unreachable():
        order = kis.send(qty="1")
    assert (order.status, order.sent_at) == ("pending_new", None)
    later_sweep()
    kis.reconcile()
    order.refresh_from_db()
    assert order.status == "filled" and len(kis.orders_at_fake()) == 2


def test_an_order_kis_refuses_is_rejected_with_its_message(kis):
    order = kis.send(qty="100000")  # over the cash
    assert order.status == "rejected" and "APBK0952" in order.status_message
    assert kis.orders_at_fake() == []


# --- paging --------------------------------------------------------------------------------------------


def test_balance_pages_through_every_holding(kis):
    for n, code in enumerate(("000660", "035420", "051910"), start=1):
        kis.server.add_holding(CANO, code, 10 * n, 1000 * n)
    kis.server.configure(balance_page_size=1)
    calls = kis.server.calls[protocol.INQUIRE_BALANCE_PATH]
    held = {h.symbol: h.qty for h in kis.broker().holdings()}
    assert held == {"KRX:000660": 10, "KRX:035420": 20, "KRX:051910": 30}
    assert kis.server.calls[protocol.INQUIRE_BALANCE_PATH] - calls == 3


def test_daily_orders_page_through_every_order_and_the_pages_are_bounded(kis, settings):
    for price in (50000, 51000, 52000, 53000, 54000):
        kis.send(order_type="limit", price=str(price), qty="1")
    kis.server.configure(daily_ccld_page_size=2)
    from django.utils import timezone

    views = kis.broker().orders_since(timezone.now())
    assert sorted(v.price for v in views) == [50000, 51000, 52000, 53000, 54000]
    assert all(v.status == "new" for v in views)
    settings.KIS_MAX_PAGES = 2
    with pytest.raises(BrokerUnavailable, match="pages"):
        kis.broker().open_orders()


# --- market data and tokens ----------------------------------------------------------------------------


def test_an_unreachable_token_server_does_not_spend_kis_one_issue_a_minute(kis):
    with kis.unreachable():
        order = kis.send(qty="1")  # no token yet: asking for one fails before reaching KIS
    assert (order.status, order.sent_at) == ("pending_new", None)
    assert kis.server.calls["/oauth2/tokenP"] == 0
    # KIS is back within the minute: the token is asked for at once, not refused as too soon.
    later_sweep()
    kis.reconcile()
    order.refresh_from_db()
    assert order.status == "filled"
    assert kis.server.calls["/oauth2/tokenP"] == 1


def test_price_and_bars(kis):
    quote = kis.broker().price(SYMBOL)
    assert (quote.symbol, quote.last) == (SYMBOL, PRICE)
    minutes = kis.broker().minute_bars(SYMBOL)
    assert minutes and minutes[-1].close == PRICE
    from datetime import timedelta

    from brokers.kis.adapter import kst_today

    days = kis.broker().daily_bars(SYMBOL, start=kst_today() - timedelta(days=10), end=kst_today())
    assert len(days) >= 5 and [b.time for b in days] == sorted({b.time for b in days})  # weekdays, oldest first
    assert all(b.low <= b.close <= b.high for b in days)
    with pytest.raises(BrokerRejected):
        kis.broker().price("NSE:INFY")


def test_token_status_shows_state_and_expiry_never_values(kis):
    client = KisClient(kis_config_for(kis.account))
    token, key = client.access_token(), client.approval_key()
    status = client.token_status()
    assert status["access_token"]["valid"] and status["approval_key"]["valid"]
    assert status["access_token"]["expires_at"]
    assert token not in repr(status) and key not in repr(status)
    assert APP_SECRET not in repr(client.config)


# --- order status from the daily-orders rows -----------------------------------------------------------


def _row(odno: str, *, qty: int, filled: int = 0, price: int = 60000, origin: str = "", cancel: bool = False, **extra: str) -> dict:
    remaining = extra.pop("rmn_qty", str(0 if cancel else qty - filled))
    return {
        "ord_dt": extra.pop("ord_dt", "20261204"), "odno": odno, "orgn_odno": origin, "ord_gno_brno": "91252",
        "sll_buy_dvsn_cd": "02", "pdno": CODE, "ord_qty": str(qty), "ord_unpr": str(price), "ord_tmd": "100000",
        "tot_ccld_qty": str(filled), "tot_ccld_amt": str(filled * price), "avg_prvs": str(price if filled else 0),
        "cncl_yn": "Y" if cancel else "N", "rmn_qty": remaining, "rjct_qty": extra.pop("rjct_qty", "0"), "ord_dvsn_cd": "00",
        **extra,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([_row("1", qty=3)], ("new", 3, 0)),
        ([_row("1", qty=3, filled=1)], ("partially_filled", 3, 1)),
        ([_row("1", qty=3, filled=3)], ("filled", 3, 3)),
        # Canceled whole: the original left with nothing, the cancel order names it.
        ([_row("1", qty=3, rmn_qty="0"), _row("2", qty=3, origin="1", cancel=True)], ("canceled", 3, 0)),
        # Part filled, then the rest canceled.
        ([_row("1", qty=3, filled=1, rmn_qty="0"), _row("2", qty=2, origin="1", cancel=True)], ("canceled", 1, 1)),
        # One of three canceled (a lower quantity), the rest working, then filled:
        # final as canceled (the OMS order of quantity 2 is filled by its deals).
        ([_row("1", qty=3, rmn_qty="2"), _row("2", qty=1, origin="1", cancel=True)], ("new", 2, 0)),
        ([_row("1", qty=3, filled=2, rmn_qty="0"), _row("2", qty=1, origin="1", cancel=True)], ("canceled", 2, 2)),
        # Repriced: the revise order carries the rest; fills of both count.
        ([_row("1", qty=3, filled=1, rmn_qty="0"), _row("2", qty=2, price=59000, origin="1")], ("partially_filled", 3, 1)),
        ([_row("1", qty=3, filled=1, rmn_qty="0"), _row("2", qty=2, filled=2, price=59000, origin="1")], ("filled", 3, 3)),
        # Refused by the exchange.
        ([_row("1", qty=3, rmn_qty="0", rjct_qty="3")], ("rejected", 3, 0)),
        # A day order an earlier day left unfilled.
        ([_row("1", qty=3, ord_dt="20200102")], ("expired", 3, 0)),
    ],
)
def test_order_status_from_the_daily_orders_rows(rows, expected):
    from brokers.kis.adapter import _chain_view, _chains

    [chain] = _chains(rows)
    view = _chain_view(chain, "20261204")
    assert (view.status, view.qty, view.filled_qty) == expected
    assert view.broker_order_id == f"{rows[0]['ord_dt']}-1" and view.symbol == SYMBOL
    assert view.filled_amount == sum(Decimal(r["tot_ccld_amt"]) for r in rows)
