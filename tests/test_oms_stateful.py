"""Hypothesis stateful test of the OMS against a scripted venue.

Random sequences of send (answered, filled, rejected, timed out, answer lost,
or crashing before/after the claim or after the call), cancel, change, venue
fills (delivered or lost), external orders, close_position, reconciliation,
time passing and crash-restart (in-memory state dropped, the sweeper run).
After every step:

* a final order stays final; filled_qty never decreases, never exceeds qty,
  and equals the quantity of its deals;
* every position's qty is the signed sum of its deals, and positions_rebuild
  finds no differences;
* no order reached the venue twice (venue.placed per client order id);
* one deal per broker trade id, each one a fill the venue made;
* cash is conserved: -sum(signed qty * price * multiplier) - fees over the
  deals equals what the venue's fills for those trades imply.

After a reconciliation every venue fill is booked and final venue states
are ours.
"""

from __future__ import annotations

import itertools
from collections import Counter
from contextlib import ExitStack, suppress
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from brokers.base import BrokerError
from oms.errors import Conflict, InvalidInput, NotFound
from oms.models import FINAL_STATUSES, Deal, Order, Position, PositionStatus
from oms.services.amend import order_cancel, order_change
from oms.services.closing import position_close
from oms.services.positions import positions_rebuild
from oms.services.reconcile import account_reconcile
from oms.services.send import order_request
from oms.services.sweeper import orders_sweep
from tests.fakes import FakeVenue
from tests.oms_support import (
    NO_LIMITS,
    change_spec,
    deals_cash,
    fills_cash,
    make_account,
    make_instruments,
    position_matches_deals,
    send,
    tasks_in_process,
    venue_external_order,
    venue_fill,
    venue_registered,
)

D = Decimal
MULTIPLIERS = {"AAA": D(1), "FUT": D(50)}
PRICES = {"AAA": [D("99.5"), D(100), D("100.75"), D(102)], "FUT": [D("4999.75"), D(5000), D("5001.25")]}
_users = itertools.count(1)


class OmsMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.venue = FakeVenue()
        self.registration = ExitStack()
        self.registration.enter_context(venue_registered(self.venue))
        self.offset = timedelta(0)  # simulated time passing, for the sweeper and the grace period
        self.last: dict[int, tuple[str, Decimal]] = {}
        self.account = None

    def teardown(self) -> None:
        self.registration.close()

    def now(self) -> timezone.datetime:
        return timezone.now() + self.offset

    # --- set-up ------------------------------------------------------------------------------

    @initialize(position_mode=st.sampled_from(["netting", "hedging"]))
    def open_account(self, position_mode: str) -> None:
        from accounts.services import user_create

        user = user_create(email=f"machine{next(_users)}@example.com", password="machine-pass-123")
        self.account = make_account(user, position_mode=position_mode, label=f"machine {position_mode}")

    # --- commands ----------------------------------------------------------------------------

    @rule(
        target=orders,
        symbol=st.sampled_from(["AAA", "FUT"]),
        side=st.sampled_from(["buy", "sell"]),
        qty=st.integers(min_value=1, max_value=5),
        limit=st.booleans(),
        price_index=st.integers(min_value=0, max_value=2),
        mode=st.sampled_from(["ack", "ack", "fill", "reject", "timeout", "lose"]),
    )
    def send_order(self, symbol, side, qty, limit, price_index, mode):
        self.venue.mode = mode
        self.venue.fill_price = PRICES[symbol][price_index]
        payload = {"symbol": symbol, "side": side, "qty": str(qty), "order_type": "market"}
        if limit:
            payload.update(order_type="limit", price=str(PRICES[symbol][price_index]))
        order = send(self.account, **payload)
        return order.pk

    @rule(
        target=orders,
        qty=st.integers(min_value=1, max_value=5),
        crash=st.sampled_from(["before_claim", "after_claim", "after_call"]),
        mode=st.sampled_from(["ack", "fill", "lose"]),
    )
    def send_then_crash(self, qty, crash, mode):
        """The process dies after the commit: before the claim, after it, or
        after the call reached the venue (its answer lost with the process)."""
        with mock.patch("oms.services.send.enqueue_submit", lambda ids: None):
            order = send(self.account, symbol="AAA", qty=str(qty), order_type="limit", price="100")
        if crash == "before_claim":
            return order.pk
        Order.objects.filter(pk=order.pk).update(sent_at=timezone.now())
        if crash == "after_call":
            self.venue.mode = mode
            self.venue.fill_price = D(100)
            with suppress(BrokerError):  # "lose": executed, the answer timed out
                self.venue.broker(self.account).place_order(order_request(Order.objects.get(pk=order.pk)))
        return order.pk

    @rule(order_id=orders)
    def cancel(self, order_id):
        with suppress(Conflict):  # final, in flight, or a cancel pending already
            order_cancel(order=Order.objects.get(pk=order_id), actor=None, source="rest")

    @rule(order_id=orders, qty=st.integers(min_value=1, max_value=8), price_index=st.integers(min_value=0, max_value=2))
    def change(self, order_id, qty, price_index):
        order = Order.objects.get(pk=order_id)
        price = str(PRICES[order.symbol][price_index]) if order.order_type == "limit" else None
        with suppress(Conflict, InvalidInput):
            order_change(order=order, actor=None, source="rest", spec=change_spec(order, qty=str(qty), price=price))

    @rule(mode=st.sampled_from(["ack", "fill"]))
    def close_a_position(self, mode):
        position = Position.objects.filter(account=self.account, status=PositionStatus.OPEN).order_by("id").first()
        if position is None:
            return
        self.venue.mode = mode
        self.venue.fill_price = PRICES[position.symbol][1]
        with suppress(Conflict, InvalidInput, NotFound):
            position_close(account=self.account, position_id=position.pk, actor=None, source="rest")

    # --- the venue on its own ------------------------------------------------------------------

    @rule(
        order_id=orders, qty=st.integers(min_value=1, max_value=5), price_index=st.integers(min_value=0, max_value=2), deliver=st.booleans()
    )
    def venue_fills(self, order_id, qty, price_index, deliver):
        order = Order.objects.get(pk=order_id)
        at_venue = self.venue.orders.get(order.client_order_id)
        if at_venue is None or at_venue.status not in ("new", "partially_filled"):
            return
        size = min(D(qty), at_venue.qty - at_venue.filled_qty)
        price = at_venue.price if at_venue.price is not None else PRICES[order.symbol][price_index]
        venue_fill(self.venue, order.client_order_id, size, price, deliver=deliver)

    @rule(side=st.sampled_from(["buy", "sell"]), qty=st.integers(min_value=1, max_value=3), fill=st.booleans())
    def external_order(self, side, qty, fill):
        self.venue.fill_price = D(100)
        self.venue.broker(self.account)  # the venue learns the account id
        venue_external_order(self.venue, side=side, qty=D(qty), fill=fill)

    # --- time, restarts, reconciliation ------------------------------------------------------------

    @rule()
    def time_passes(self):
        self.offset += timedelta(seconds=max(django_settings.OMS_SWEEP_AFTER_SECONDS, django_settings.OMS_RECONCILE_GRACE_SECONDS) + 1)

    @rule(mode=st.sampled_from(["ack", "fill", "timeout", "reject"]))
    def crash_restart(self, mode):
        """Everything in memory is gone; the new process's sweeper runs."""
        connection.close()
        if "LocMem" in django_settings.CACHES["default"]["BACKEND"]:
            cache.clear()  # process memory; Redis outlives the process
        self.venue.mode = mode
        self.venue.fill_price = D(100)
        self.offset += timedelta(seconds=django_settings.OMS_SWEEP_AFTER_SECONDS + 1)
        orders_sweep(now=self.now())

    @precondition(lambda self: self.account is not None)
    @rule()
    def reconcile(self):
        summary = account_reconcile(account=self.account, now=self.now())
        assert summary.ok, summary.error
        booked = set(Deal.objects.filter(account=self.account).exclude(broker_trade_id=None).values_list("broker_trade_id", flat=True))
        assert {f.broker_trade_id for f in self.venue.fills} == booked, "a venue fill is not booked after reconciliation"
        for order in Order.objects.filter(account=self.account):
            at_venue = self.venue.orders.get(order.client_order_id)
            if at_venue is not None and at_venue.status in FINAL_STATUSES:
                assert order.status == at_venue.status, (order, at_venue.status)

    # --- invariants ---------------------------------------------------------------------------------

    @invariant()
    def orders_move_forward_only(self):
        if self.account is None:
            return
        for order in Order.objects.filter(account=self.account):
            previous = self.last.get(order.pk)
            if previous is not None:
                status, filled = previous
                assert not (status in FINAL_STATUSES and order.status != status), f"{order} left final {status}"
                assert order.filled_qty >= filled, f"{order}: filled_qty went down from {filled}"
            assert 0 <= order.filled_qty <= order.qty
            traded = sum((d.qty for d in order.deals.all()), D(0))
            assert order.filled_qty == traded, f"{order}: filled {order.filled_qty}, deals {traded}"
            self.last[order.pk] = (order.status, order.filled_qty)

    @invariant()
    def positions_are_their_deals(self):
        if self.account is None:
            return
        for position in Position.objects.filter(account=self.account):
            assert position_matches_deals(position), position
        assert positions_rebuild(account=self.account) == []

    @invariant()
    def nothing_reached_the_venue_twice(self):
        twice = {coid: n for coid, n in Counter(r.client_order_id for r in self.venue.placed).items() if n > 1}
        assert not twice, twice

    @invariant()
    def deals_are_venue_fills_once_and_cash_is_conserved(self):
        if self.account is None:
            return
        trade_ids = list(Deal.objects.filter(account=self.account).exclude(broker_trade_id=None).values_list("broker_trade_id", flat=True))
        assert len(trade_ids) == len(set(trade_ids))
        fills = {f.broker_trade_id: f for f in self.venue.fills}
        assert set(trade_ids) <= set(fills), "a deal the venue never made"
        booked = [fills[t] for t in trade_ids]
        assert deals_cash(self.account.pk) == fills_cash(booked, MULTIPLIERS)


@pytest.mark.django_db(transaction=True)
def test_oms_state_machine(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OMS_RISK = dict(NO_LIMITS)
    make_instruments()
    with tasks_in_process():
        run_state_machine_as_test(
            OmsMachine,
            settings=hypothesis_settings(
                max_examples=30,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
