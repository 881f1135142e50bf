"""A batch of orders end to end through the paper venue, on real commits:
written at once, sent as one unit (one venue transaction), every fill booked
once under one account lock, and every stream sequence published gap-free."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from brokers.paper.models import PaperOrder
from brokers.services import broker_account_create
from oms.models import Deal, Order, OrderStatus, Position
from oms.services.lifecycle import order_transition
from oms.services.send import orders_send
from oms.services.tx import AccountTx
from tests.oms_support import NO_LIMITS, make_instruments, order_spec, set_quote, tasks_in_process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SIMULATOR_ENABLED = False
    settings.OMS_RISK = {**NO_LIMITS, "CHECK_BUYING_POWER": True}
    make_instruments()
    set_quote("AAA", "100")
    with tasks_in_process():
        yield


@pytest.fixture
def published(monkeypatch):
    seen: dict[str, list[int]] = defaultdict(list)

    def record(updates, **kwargs):
        for channel, seq, _data in updates:
            seen[channel].append(seq)
        return True

    monkeypatch.setattr("oms.services.tx.publish_many", record)
    return seen


def test_a_batch_of_marketable_orders_is_sent_as_one_unit_and_every_fill_booked_once(alice, published, monkeypatch):
    from brokers.paper import services

    account = broker_account_create(owner=alice, label="paper")
    venue_transactions = []
    real = services.paper_orders_place
    monkeypatch.setattr(services, "paper_orders_place", lambda **kw: venue_transactions.append(len(kw["requests"])) or real(**kw))
    orders = orders_send(
        account=account,
        specs=[order_spec(symbol="AAA", side="buy", order_type="market", qty="1") for _ in range(20)],
        actor=None,
        source="rest",
    )

    assert venue_transactions == [20]  # one call, one transaction at the venue
    ids = [o.pk for o in orders]
    assert set(Order.objects.filter(pk__in=ids).values_list("status", flat=True)) == {OrderStatus.FILLED}
    # At the venue in the order they were accepted.
    by_venue = list(PaperOrder.objects.filter(account_id=account.pk).order_by("seq").values_list("client_order_id", flat=True))
    assert by_venue == [o.client_order_id for o in orders]
    assert Deal.objects.filter(order__in=ids).count() == 20
    assert Position.objects.get(account=account, symbol="AAA").qty == 20
    account.refresh_from_db()
    for channel, counter in (("orders", account.orders_seq), ("positions", account.positions_seq), ("funds", account.funds_seq)):
        assert published[f"{channel}:{account.pk}"] == list(range(1, counter + 1)), channel
    assert account.funds_seq == 1  # the 20 fills moved the funds once


def test_a_batch_sent_and_booked_publishes_once_per_channel(alice, monkeypatch):
    from streams import publish as publishing

    account = broker_account_create(owner=alice, label="paper")
    sent: list[tuple[str, int]] = []  # (channel, updates in the message)
    real = publishing._send

    async def spy(layer, channel, message):
        sent.append((channel, len(message.get("events", [message]))))
        return await real(layer, channel, message)

    monkeypatch.setattr(publishing, "_send", spy)
    monkeypatch.setattr("oms.services.send.enqueue_submit", lambda ids: None)
    orders = orders_send(
        account=account,
        specs=[order_spec(symbol="AAA", side="buy", order_type="market", qty="1") for _ in range(20)],
        actor=None,
        source="rest",
    )
    assert sent == [(f"orders:{account.pk}", 20)]  # accepted: one message, the 20 created updates
    sent.clear()
    from oms.tasks import orders_submit_task

    orders_submit_task.delay([o.pk for o in orders])
    assert set(Order.objects.filter(account=account).values_list("status", flat=True)) == {OrderStatus.FILLED}
    channels = [channel for channel, _ in sent]
    assert sorted(channels) == sorted({f"orders:{account.pk}", f"positions:{account.pk}", f"funds:{account.pk}"})
    account.refresh_from_db()
    counts = dict(sent)
    # Every sequence of the send still went out, in the messages.
    assert counts[f"orders:{account.pk}"] == account.orders_seq - 20
    assert counts[f"positions:{account.pk}"] == account.positions_seq


def test_a_joined_block_that_raises_takes_back_only_its_own_changes(alice, published):
    account = broker_account_create(owner=alice, label="paper")
    a, b = (
        Order.objects.create(
            account=account, client_order_id=c, symbol="AAA", side="buy", order_type="market", qty=Decimal(1), status="new"
        )
        for c in ("a", "b")
    )
    with AccountTx(account.pk) as outer:
        order_transition(outer, a, OrderStatus.CANCELED, source="rest")
        with pytest.raises(RuntimeError), AccountTx(account.pk) as inner:
            assert inner is outer  # joined: no second lock
            order_transition(inner, b, OrderStatus.CANCELED, source="rest")
            inner.funds_changed()
            raise RuntimeError("a bug inside")
        with AccountTx(account.pk) as again:
            again.funds_changed()
    assert Order.objects.get(pk=a.pk).status == OrderStatus.CANCELED
    assert Order.objects.get(pk=b.pk).status == OrderStatus.NEW
    account.refresh_from_db()
    assert (account.orders_seq, account.funds_seq) == (1, 1)
    assert published[f"orders:{account.pk}"] == [1] and published[f"funds:{account.pk}"] == [1]


def test_one_accounts_orders_reach_the_venue_in_order_whichever_task_runs_first(alice, monkeypatch):
    from oms.services import send as send_services
    from oms.tasks import orders_submit_task

    enqueued: list[list[int]] = []
    monkeypatch.setattr(send_services, "enqueue_submit", enqueued.append)  # the tasks run below, in the other order
    account = broker_account_create(owner=alice, label="paper")
    first = orders_send(account=account, specs=[_limit() for _ in range(3)], actor=None, source="rest")
    second = orders_send(account=account, specs=[_limit() for _ in range(2)], actor=None, source="rest")
    assert enqueued == [[o.pk for o in first], [o.pk for o in second]]

    orders_submit_task.delay(enqueued[1])  # the later task first: it sends the earlier orders first
    at_venue = list(PaperOrder.objects.filter(account_id=account.pk).order_by("seq").values_list("client_order_id", flat=True))
    assert at_venue == [o.client_order_id for o in first + second]
    orders_submit_task.delay(enqueued[0])  # nothing left to send: never twice
    assert PaperOrder.objects.filter(account_id=account.pk).count() == 5


def test_an_account_whose_sends_are_busy_does_not_hold_up_another(alice, bob, monkeypatch):
    from brokers.locks import named_lock
    from oms.services import send as send_services

    monkeypatch.setattr(send_services, "SEND_LOCK_WAIT", 0.2)
    monkeypatch.setattr(send_services, "enqueue_submit", lambda ids: None)
    busy = broker_account_create(owner=alice, label="paper")
    free = broker_account_create(owner=bob, label="paper")
    waiting = orders_send(account=busy, specs=[_limit()], actor=None, source="rest")
    going = orders_send(account=free, specs=[_limit()], actor=None, source="rest")
    with named_lock(f"oms:send:{busy.pk}"):  # another worker is sending for this account
        outcomes = send_services.orders_submit_in_order(order_ids=[waiting[0].pk, going[0].pk])
    assert [(o.sent, o.retry) for o in outcomes] == [(False, True), (True, False)]
    assert Order.objects.get(pk=waiting[0].pk).status == OrderStatus.PENDING_NEW  # the task retries it
    assert Order.objects.get(pk=going[0].pk).status == OrderStatus.NEW


def _limit():
    return order_spec(symbol="AAA", side="buy", order_type="limit", qty="1", price="50")


def test_a_batch_of_fills_is_booked_in_bulk_exactly_as_one_by_one(alice, bob):
    """The money rules of a bulk booking: each fill once (a replay in the
    batch and one booked before are skipped), in time order, an order's
    fills adding up on it, and each position the sum of its deals across a
    close and a re-open inside the batch: the same rows as booking the
    fills one at a time."""
    from datetime import UTC, datetime, timedelta

    from brokers.base import Fill
    from oms.services.fills import fill_apply, fills_apply

    t0 = datetime(2026, 1, 5, 15, tzinfo=UTC)

    def fills() -> list[Fill]:
        def fill(n: int, order: str, side: str, qty: str, price: str) -> Fill:
            return Fill(f"t{n}", order, None, "AAA", side, Decimal(qty), Decimal(price), executed_at=t0 + timedelta(seconds=n))

        # Out of time order, with a replay of t2 inside the batch.
        return [
            fill(3, "B1", "sell", "3", "102"),  # closes the long 3 ...
            fill(1, "B0", "buy", "1", "100"),
            fill(2, "B0", "buy", "2", "101"),
            fill(2, "B0", "buy", "2", "101"),
            fill(4, "B1", "sell", "1", "103"),  # ... and opens a short 1
            fill(5, "B2", "buy", "1", "99"),
        ]

    booked = {}
    for owner, bulk in ((alice, True), (bob, False)):
        account = broker_account_create(owner=owner, label=f"paper {bulk}")
        for broker_id, side, qty in (("B0", "buy", 3), ("B1", "sell", 4), ("B2", "buy", 5)):
            Order.objects.create(
                account=account,
                client_order_id=f"c-{broker_id}",
                broker_order_id=broker_id,
                symbol="AAA",
                side=side,
                order_type="market",
                qty=Decimal(qty),
                status="new",
            )
        if bulk:
            fill_apply(account_id=account.pk, fill=fills()[1])  # booked before the batch
            assert len(fills_apply(account.pk, fills())) == 4
            assert fills_apply(account.pk, fills()) == []  # a replay of the batch
        else:
            for f in sorted(fills(), key=lambda f: f.executed_at):
                fill_apply(account_id=account.pk, fill=f)
        booked[bulk] = (
            list(
                Deal.objects.filter(account=account).order_by("executed_at").values_list("broker_trade_id", "qty", "price", "realized_pnl")
            ),
            list(
                Position.objects.filter(account=account)
                .order_by("id")
                .values_list("side", "qty", "status", "open_cost", "realized_pnl", "opened_qty", "closed_qty")
            ),
            list(Order.objects.filter(account=account).order_by("id").values_list("status", "filled_qty", "avg_fill_price")),
            list(
                Order.objects.filter(account=account).order_by("id").values_list("events__kind", "events__to_status").order_by("events__id")
            ),
        )
        for position in Position.objects.filter(account=account):
            deals = Deal.objects.filter(position=position)
            signed = sum(d.qty if d.side == "buy" else -d.qty for d in deals)
            assert abs(signed) == position.qty
    assert booked[True] == booked[False]
    deals, positions, orders, _ = booked[True]
    assert [d[0] for d in deals] == ["t1", "t2", "t3", "t4", "t5"]
    assert [(p[0], p[1], p[2]) for p in positions] == [("long", 0, "closed"), ("short", 0, "closed")]
    assert orders == [("filled", 3, Decimal("100.6666666667")), ("filled", 4, Decimal("102.25")), ("partially_filled", 1, 99)]


def _send_one(account, monkeypatch, **payload) -> Order:
    """Write one order, then run its send (the worker's task) in this thread."""
    from oms.tasks import orders_submit_task

    enqueued: list[list[int]] = []
    monkeypatch.setattr("oms.services.send.enqueue_submit", enqueued.append)
    [order] = orders_send(account=account, specs=[order_spec(symbol="AAA", side="buy", qty="1", **payload)], actor=None, source="rest")
    orders_submit_task.delay(enqueued[0])
    return Order.objects.get(pk=order.pk)


def test_a_venue_that_fills_at_once_is_answered_and_booked_in_one_account_transaction(alice, published, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oms.models import FundsProjection, OrderEvent

    account = broker_account_create(owner=alice, label="paper")
    _send_one(account, monkeypatch, order_type="market")  # the position is open, the funds stored
    with CaptureQueriesContext(connection) as ctx:
        order = _send_one(account, monkeypatch, order_type="limit", price="101")
    # Each account transaction that changes state saves the account's stream sequences once.
    writes = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('UPDATE "brokers_brokeraccount" SET "orders_seq"')]
    assert len(writes) == 2  # the order's write, then its answer and fill together (was three: the answer, then the fill)
    assert (order.status, order.filled_qty, order.broker_order_id) == (OrderStatus.FILLED, 1, order.broker_order_id or "missing")
    # The fill booked once, the answer noted on the order it filled, as before.
    assert [e.kind for e in OrderEvent.objects.filter(order=order).order_by("pk")] == ["created", "fill", "transition", "broker_answer"]
    assert Deal.objects.filter(order=order).count() == 1
    position = Position.objects.get(account=account, symbol="AAA", status="open")
    assert position.qty == 2 == sum(Deal.objects.filter(position=position).values_list("qty", flat=True))
    # The funds after the fill: the venue's book as committed, without reloading it.
    from brokers.paper.selectors import paper_funds
    from brokers.paper.store import _kept

    _kept.book = None  # the book as a fresh reader loads it
    projection = FundsProjection.objects.get(account=account)
    assert projection.buying_power == paper_funds(account_id=account.pk).buying_power
    account.refresh_from_db()
    for channel, counter in (("orders", account.orders_seq), ("positions", account.positions_seq), ("funds", account.funds_seq)):
        assert published[f"{channel}:{account.pk}"] == list(range(1, counter + 1)), channel


def test_a_fill_delivered_with_the_answer_is_booked_even_when_recording_the_answer_fails(alice, published, monkeypatch):
    from oms.services import send as send_services

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(send_services, "orders_answers_and_fills_apply", broken)
    account = broker_account_create(owner=alice, label="paper")
    with pytest.raises(RuntimeError):
        _send_one(account, monkeypatch, order_type="market")
    # The venue filled it: the fill is delivered as before and booked once; the order follows its fill.
    [order] = Order.objects.filter(account=account)
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, 1)
    assert Deal.objects.filter(order=order).count() == 1
    assert Position.objects.get(account=account, symbol="AAA").qty == 1
