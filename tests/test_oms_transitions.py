"""The order state machine (DESIGN.md): every legal pair moves with an event,
every illegal pair raises IllegalTransition and changes nothing; final states
stay final; filled_qty never decreases and never exceeds qty."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.base import Fill
from brokers.models import BrokerAccount
from oms.errors import IllegalTransition
from oms.models import FINAL_STATUSES, TRANSITIONS, Order, OrderEvent, OrderStatus
from oms.services.fills import fill_apply
from oms.services.lifecycle import order_apply_result, order_transition
from oms.services.tx import AccountTx
from tests.oms_support import make_account, make_instruments

pytestmark = pytest.mark.django_db

# The table of DESIGN.md, written out again on purpose: the code's table must match it.
DESIGN_TABLE = {
    "pending_new": {"new", "rejected", "unknown", "filled", "partially_filled", "canceled", "expired"},
    "new": {"partially_filled", "filled", "pending_cancel", "pending_change", "canceled", "expired"},
    "partially_filled": {"partially_filled", "filled", "pending_cancel", "pending_change", "canceled", "expired"},
    "pending_cancel": {"canceled", "filled", "partially_filled", "expired", "new"},
    "pending_change": {"new", "partially_filled", "filled", "pending_cancel", "canceled", "expired"},
    "unknown": {"new", "partially_filled", "filled", "rejected", "canceled", "expired"},
    "filled": set(),
    "canceled": set(),
    "rejected": set(),
    "expired": set(),
}
STATUSES = OrderStatus.values
PAIRS = list(itertools.product(STATUSES, STATUSES))
_coids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # alice is created per test


@pytest.fixture
def account(alice):
    make_instruments()
    return make_account(alice)


def make_order(account: BrokerAccount, status: str, *, qty: str = "10", filled: str = "0") -> Order:
    return Order.objects.create(
        account=account,
        client_order_id=f"t{next(_coids)}",
        symbol="AAA",
        side="buy",
        order_type="market",
        qty=Decimal(qty),
        filled_qty=Decimal(filled),
        status=status,
    )


def test_the_code_table_is_the_design_table():
    assert set(TRANSITIONS) == set(STATUSES) == set(DESIGN_TABLE)
    assert {k: set(v) for k, v in TRANSITIONS.items()} == DESIGN_TABLE
    assert {s for s, targets in DESIGN_TABLE.items() if not targets} == FINAL_STATUSES


def _transition(order: Order, to_status: str) -> None:
    with AccountTx(order.account_id) as tx:
        order_transition(tx, order, to_status, source="system", message="test")


@pytest.mark.parametrize(("from_status", "to_status"), [p for p in PAIRS if p[1] in DESIGN_TABLE[p[0]]])
def test_every_legal_transition_moves_and_records_an_event(account, from_status, to_status):
    order = make_order(account, from_status)
    _transition(order, to_status)
    stored = Order.objects.get(pk=order.pk)
    assert stored.status == to_status
    event = OrderEvent.objects.get(order=order)
    assert (event.kind, event.from_status, event.to_status, event.source) == ("transition", from_status, to_status, "system")
    account.refresh_from_db()
    assert account.orders_seq == 1


@pytest.mark.parametrize(("from_status", "to_status"), [p for p in PAIRS if p[1] not in DESIGN_TABLE[p[0]]])
def test_every_illegal_transition_raises_and_changes_nothing(account, from_status, to_status):
    order = make_order(account, from_status)
    before = Order.objects.filter(pk=order.pk).values().get()
    with pytest.raises(IllegalTransition) as refused:
        _transition(order, to_status)
    assert refused.value.status_code == 409
    assert Order.objects.filter(pk=order.pk).values().get() == before
    assert not OrderEvent.objects.filter(order=order).exists()
    account.refresh_from_db()
    assert account.orders_seq == 0


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
@pytest.mark.parametrize("broker_says", ["new", "partially_filled", "filled", "canceled", "rejected", "expired", "unknown"])
def test_a_final_order_ignores_whatever_the_broker_says_later(account, final, broker_says):
    order = make_order(account, final, filled="10" if final == "filled" else "0")
    order_apply_result(order_id=order.pk, status=broker_says)
    assert Order.objects.get(pk=order.pk).status == final
    assert not OrderEvent.objects.filter(order=order).exists()


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES - {"filled"}))
def test_a_fill_after_a_final_state_is_booked_without_leaving_it(account, final):
    # A fill that raced a cancel: the deal is real; the order stays final.
    order = make_order(account, final)
    fill_apply(account_id=account.pk, fill=_fill(order, "4"))
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.filled_qty) == (final, Decimal(4))


def test_filled_qty_is_bounded_by_qty_in_the_database(account):
    order = make_order(account, "new", qty="5")
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(filled_qty=Decimal(6))
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(filled_qty=Decimal(-1))


_trades = itertools.count(1)


def _fill(order: Order, qty: str, trade_id: str | None = None) -> Fill:
    return Fill(
        broker_trade_id=trade_id or f"tt{next(_trades)}",
        broker_order_id="",
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=Decimal(qty),
        price=Decimal(100),
        executed_at=datetime.now(UTC),
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    qty=st.integers(min_value=1, max_value=20),
    start=st.sampled_from(["pending_new", "new", "unknown", "pending_cancel", "pending_change"]),
    fills=st.lists(st.tuples(st.integers(min_value=1, max_value=12), st.booleans()), min_size=1, max_size=8),
)
def test_filled_qty_never_decreases_and_never_exceeds_qty(account, qty, start, fills):
    """Fills of any size (overfills too) and replays, in any order."""
    order = make_order(account, start, qty=str(qty))
    seen: list[str] = []
    previous = Decimal(0)
    for size, replay in fills:
        trade_id = seen[-1] if replay and seen else f"tt{next(_trades)}"
        seen.append(trade_id)
        fill_apply(account_id=account.pk, fill=_fill(order, str(size), trade_id))
        stored = Order.objects.get(pk=order.pk)
        assert previous <= stored.filled_qty <= stored.qty
        previous = stored.filled_qty
        expected = "filled" if stored.filled_qty == stored.qty else "partially_filled"
        assert stored.status == expected
