"""Concurrency on PostgreSQL (row locks are real there; SQLite serializes
every writer): idempotency keys, one close at a time, gap-free stream
sequences, and a cancel racing the sender's claim."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from brokers.base import Fill
from oms.errors import Conflict
from oms.models import Order, Position
from oms.services.amend import order_cancel
from oms.services.closing import position_close
from oms.services.commands import command_for, commands_run
from oms.services.fills import fill_apply
from oms.services.send import order_send, order_submit
from tests.fakes import FakeVenue
from tests.oms_support import make_account, order_spec, venue_registered

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks and concurrent writers need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
    # Sends run here, on this module's fake venue: a real worker another test
    # started would take them to an adapter that has never heard of it.
    pytest.mark.usefixtures("oms_env"),
]


@pytest.fixture
def venue():
    venue = FakeVenue()
    with venue_registered(venue):
        yield venue


@pytest.fixture
def account(alice):
    return make_account(alice)


def run_threads(count: int, work: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run ``work(i)`` in ``count`` threads released together; each closes its
    own database connection. Returns ("ok", result) or ("error", exception)."""
    barrier = threading.Barrier(count)
    results: list[tuple[str, Any]] = [("missing", None)] * count

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = ("ok", work(i))
        except Exception as exc:
            results[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


def test_fifty_requests_with_one_idempotency_key_make_exactly_one_order(account, venue):
    def request(i: int):
        payload = {"symbol": "AAA", "side": "buy", "order_type": "limit", "qty": "1", "price": "90"}
        command = command_for(account=account, command="send_order", payload=payload)
        return commands_run(account=account, commands=[command], actor=None, source="rest", idempotency_key="same-key")

    results = run_threads(50, request)
    assert Order.objects.filter(account=account).count() == 1
    order = Order.objects.get(account=account)
    fresh = [r for kind, r in results if kind == "ok" and not r.replayed]
    replayed = [r for kind, r in results if kind == "ok" and r.replayed]
    in_flight = [r for kind, r in results if kind == "error" and isinstance(r, Conflict) and r.code == "idempotency_in_flight"]
    others = [r for kind, r in results if kind != "ok" and r not in in_flight]
    assert others == []
    assert len(fresh) == 1 and fresh[0].body["order_id"] == order.pk
    assert len(fresh) + len(replayed) + len(in_flight) == 50
    assert all(r.status_code == 202 and r.body == fresh[0].body for r in replayed)
    assert Counter(r.client_order_id for r in venue.placed) <= Counter({order.client_order_id: 1})


def test_twenty_closes_of_one_position_make_exactly_one_closing_order(account, venue):
    fill_apply(
        account_id=account.pk,
        fill=Fill(
            broker_trade_id="T-open",
            broker_order_id="",
            client_order_id=None,
            symbol="AAA",
            side="buy",
            qty=Decimal(5),
            price=Decimal(100),
            executed_at=datetime.now(UTC),
        ),
    )
    position = Position.objects.get(account=account)
    results = run_threads(20, lambda i: position_close(account=account, position_id=position.pk, actor=None, source="rest"))
    closes = [r for kind, r in results if kind == "ok"]
    refused = [r for kind, r in results if kind == "error"]
    assert len(closes) == 1
    assert len(refused) == 19 and all(isinstance(e, Conflict) and e.status_code == 409 for e in refused)
    assert Order.objects.filter(account=account, reduce_only=True).count() == 1
    close = Order.objects.get(account=account, reduce_only=True)
    assert (close.side, close.qty, close.position_id) == ("sell", Decimal(5), position.pk)


def test_orders_from_twenty_threads_take_gap_free_stream_sequences(account, venue, monkeypatch):
    published: list[tuple[str, int]] = []
    lock = threading.Lock()

    def record(updates, **kwargs):
        with lock:
            published.extend((channel, seq) for channel, seq, _data in updates)
        return True

    monkeypatch.setattr("oms.services.tx.publish_many", record)
    monkeypatch.setattr("oms.services.send.enqueue_submit", lambda ids: None)  # only the writes count here
    per_thread = 3

    def sender(i: int):
        return [
            order_send(
                account=account,
                actor=None,
                source="rest",
                spec=order_spec(symbol="AAA", side="buy", order_type="limit", qty="1", price="90"),
            )
            for _ in range(per_thread)
        ]

    results = run_threads(20, sender)
    assert [kind for kind, _ in results] == ["ok"] * 20
    total = 20 * per_thread
    account.refresh_from_db()
    assert Order.objects.filter(account=account).count() == total
    assert account.orders_seq == total
    seqs = sorted(seq for channel, seq in published if channel == f"orders:{account.pk}")
    assert seqs == list(range(1, total + 1))


def test_a_cancel_racing_the_senders_claim_never_leaves_a_canceled_order_live_at_the_broker(account, venue, monkeypatch):
    monkeypatch.setattr("oms.services.send.enqueue_submit", lambda ids: None)
    orders = [
        order_send(
            account=account, actor=None, source="rest", spec=order_spec(symbol="AAA", side="buy", order_type="limit", qty="1", price="90")
        )
        for _ in range(25)
    ]

    def race(i: int):
        order = orders[i // 2]
        if i % 2:
            return order_submit(order_id=order.pk)
        try:
            return order_cancel(order=order, actor=None, source="rest")
        except Conflict:
            return None  # in flight: the sender won

    results = run_threads(50, race)
    assert [kind for kind, _ in results] == ["ok"] * 50
    placed = Counter(r.client_order_id for r in venue.placed)
    for order in orders:
        order.refresh_from_db()
        if placed[order.client_order_id]:
            assert placed[order.client_order_id] == 1
            assert order.status != "canceled" or venue.orders[order.client_order_id].status == "canceled", order
        else:
            assert (order.status, order.sent_at) == ("canceled", None), order
