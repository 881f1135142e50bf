"""AccountTx: every state change of an account is published once it commits,
whichever way the block is left; a write that raises publishes nothing.

Transactional: publication runs on the real commit."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from django.db import transaction

from oms.models import Order, OrderStatus
from oms.services.amend import order_cancel
from oms.services.closing import position_close
from oms.services.lifecycle import order_transition
from oms.services.tx import AccountTx
from tests.fakes import FakeVenue
from tests.oms_support import (
    make_account,
    send,
    set_quote,
    venue_fill,
    venue_registered,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("oms_env")]


@pytest.fixture
def published(monkeypatch):
    seen: dict[str, list[int]] = defaultdict(list)

    def record(updates, **kwargs):
        for channel, seq, _data in updates:
            seen[channel].append(seq)
        return True

    monkeypatch.setattr("oms.services.tx.publish_many", record)
    return seen


@pytest.fixture
def account(alice):
    return make_account(alice)


def test_a_return_from_inside_the_block_still_publishes_after_commit(account, published, monkeypatch):
    monkeypatch.setattr("oms.services.send.enqueue_submit", lambda ids: None)  # stays unsent
    with venue_registered(FakeVenue()):
        order = send(account, order_type="limit", price="90")
    # Canceling an order not sent yet returns from inside the locked block.
    with transaction.atomic():
        order_cancel(order=order, actor=None, source="rest")
        assert published[f"orders:{account.pk}"] == [1], "nothing is published before the commit"
    assert published[f"orders:{account.pk}"] == [1, 2]
    account.refresh_from_db()
    assert account.orders_seq == 2


def test_a_block_that_raises_publishes_nothing_and_changes_nothing(account, published):
    order = Order.objects.create(
        account=account, client_order_id="c1", symbol="AAA", side="buy", order_type="market", qty=Decimal(1), status=OrderStatus.NEW
    )
    with pytest.raises(RuntimeError), AccountTx(account.pk) as tx:
        order_transition(tx, order, OrderStatus.CANCELED, source="rest")
        tx.funds_changed()
        raise RuntimeError("a bug after the write")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW
    account.refresh_from_db()
    assert (account.orders_seq, account.funds_seq) == (0, 0)
    assert dict(published) == {}


def test_every_sequence_the_account_row_takes_is_published_without_gaps(account, published):
    """Sends, acks, fills, a cancel and a close through the real services:
    each channel's published sequences are exactly 1..the row's counter."""
    venue = FakeVenue(mode="fill")
    set_quote("AAA", "100")
    with venue_registered(venue):
        bought = send(account, qty="3")
        venue.mode = "ack"
        resting = send(account, order_type="limit", price="90", qty="2")
        venue_fill(venue, resting.client_order_id, Decimal(1))
        order_cancel(order=Order.objects.get(pk=resting.pk), actor=None, source="rest")
        venue.mode = "fill"
        position_close(account=account, position_id=bought.deals.get().position_id, actor=None, source="rest")
    account.refresh_from_db()
    assert account.orders_seq >= 8 and account.positions_seq >= 3 and account.funds_seq >= 3
    assert published[f"orders:{account.pk}"] == list(range(1, account.orders_seq + 1))
    assert published[f"positions:{account.pk}"] == list(range(1, account.positions_seq + 1))
    assert published[f"funds:{account.pk}"] == list(range(1, account.funds_seq + 1))
