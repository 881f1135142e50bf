"""Query budgets of the order path on the paper venue (issue 14, part 2).

Counted with pytest-django's ``django_assert_num_queries`` inside the test's
transaction, so each transaction of the code counts its SAVEPOINT and
RELEASE too. What a user notices: the cost of a request or of a worker's
send does not grow with the size of the batch (beyond the stated per-order
writes) nor with the number of orders resting at the venue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers.services import broker_account_create
from marketdata.quotes import quote_store, quotes_forget
from marketdata.services import instrument_upsert
from marketdata.types import Quote
from oms.models import Deal, Order, OrderEvent, Position
from oms.tasks import orders_submit_task

SYMBOL = "QB1"

# The budgets (see README, "Performance"). A request's figures include the
# API key's look-up and the idempotency claim of a named client order id.
POST_ORDER = 15
POST_BATCH = 10  # any size up to the batch limit, on PostgreSQL (SQLite splits inserts of 48+ orders)
CANCEL = 10
CHANGE = 11
ORDERS_LIST = 2
SUBMIT_ONE_RESTING = 19  # was 24 (21 before the venue's totals, 20 before the instrument cache)
SUBMIT_BATCH = 19  # resting orders, any size (was 19 + 2 per order: each order's update and event)
SUBMIT_AND_BOOK_FILL = 39  # a marketable order: sent, filled, the deal and the position booked (was 55, then 43)
# The same on real commits (BEGIN and COMMIT counted), as a worker runs it: the
# answer and the fill in one account transaction, the funds from the book the
# venue saved (was 38: the answer and the fill in two, the book reloaded).
SUBMIT_AND_BOOK_FILL_COMMITTED = 29
SUBMIT_AND_BOOK_BATCH = 36  # marketable orders into an open position, any size (was about 12 more per fill, then 40)


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    # The worker's side counted in process (a real worker: bench/order_e2e_bench.py).
    from config.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture(autouse=True)
def market(db, settings) -> Iterator[None]:
    settings.SIMULATOR_ENABLED = False
    settings.OMS_RISK = {**settings.OMS_RISK, "MAX_ORDERS_PER_SECOND": 100_000}  # the other risk checks stay on
    instrument_upsert(symbol=SYMBOL, type="stock", currency="USD", tick_size=D("0.01"), lot_size=D(1), multiplier=D(1))
    quote_store(Quote(symbol=SYMBOL, time=time.time(), last=D(100), bid=D("99.99"), ask=D("100.01"), bid_size=D(10**6), ask_size=D(10**6)))
    yield
    quotes_forget([SYMBOL])


@pytest.fixture
def account(alice, alice_api, django_capture_on_commit_callbacks):
    account = broker_account_create(owner=alice, label="paper")
    # Warm: the paper book exists, the instrument is in the process cache.
    _post(alice_api, account, [_limit()], django_capture_on_commit_callbacks, send=True)
    return account


_seq = iter(range(10**9))


def _limit(price: str = "50", side: str = "buy") -> dict:
    return {"symbol": SYMBOL, "side": side, "order_type": "limit", "qty": "1", "price": price, "client_order_id": f"qb-{next(_seq)}"}


def _post(api, account, orders: list[dict], capture, *, send: bool = False) -> list[int]:
    with capture(execute=send):
        if len(orders) == 1:
            response = api.post(f"/api/v1/accounts/{account.pk}/orders", orders[0], format="json")
        else:
            response = api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": orders}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    return [r["order_id"] for r in (body if isinstance(body, list) else [body])]


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_sending_one_order_costs_its_budget(account, alice_api, django_capture_on_commit_callbacks, django_assert_num_queries):
    with django_assert_num_queries(POST_ORDER):
        _post(alice_api, account, [_limit()], django_capture_on_commit_callbacks)


def test_a_batch_costs_the_same_queries_whatever_its_size(account, alice_api, django_capture_on_commit_callbacks):
    counts = [
        _queries(lambda n=n: _post(alice_api, account, [_limit() for _ in range(n)], django_capture_on_commit_callbacks))
        for n in (2, 20, 40)
    ]
    assert counts == [POST_BATCH] * 3
    ids = Order.objects.filter(account=account).order_by("pk").values_list("pk", flat=True)
    assert OrderEvent.objects.filter(order__in=ids, kind="created").count() == len(ids) == 63  # one event each, none lost


def test_the_worker_sends_a_batch_in_a_fixed_budget_whatever_its_size(account, alice_api, django_capture_on_commit_callbacks):
    one = _post(alice_api, account, [_limit()], django_capture_on_commit_callbacks)
    small = _post(alice_api, account, [_limit() for _ in range(2)], django_capture_on_commit_callbacks)
    big = _post(alice_api, account, [_limit() for _ in range(40)], django_capture_on_commit_callbacks)
    assert _queries(lambda: orders_submit_task.delay(one)) == SUBMIT_ONE_RESTING
    assert _queries(lambda: orders_submit_task.delay(small)) == SUBMIT_BATCH
    assert _queries(lambda: orders_submit_task.delay(big)) == SUBMIT_BATCH
    orders = Order.objects.filter(pk__in=one + small + big)
    assert {o.status for o in orders} == {"new"} and all(o.broker_order_id for o in orders)
    # The orders went to the venue in the order they were accepted.
    assert [o.broker_order_id for o in orders.order_by("pk")] == sorted(o.broker_order_id for o in orders)


def test_a_placement_costs_the_same_with_resting_orders_on_its_symbol(account, alice_api, django_capture_on_commit_callbacks, monkeypatch):
    from brokers.paper import store

    loaded: list[str] = []
    real = store.order_from_row
    monkeypatch.setattr(store, "order_from_row", lambda row: loaded.append(row.broker_order_id) or real(row))
    counts = []
    for resting in (0, 200):
        if resting:
            _post(alice_api, account, [_limit("40") for _ in range(resting)], django_capture_on_commit_callbacks, send=True)
        [order_id] = _post(alice_api, account, [_limit()], django_capture_on_commit_callbacks)
        loaded.clear()
        counts.append(_queries(lambda order_id=order_id: orders_submit_task.delay([order_id])))
        assert loaded == []  # no resting order was read
    assert counts == [SUBMIT_ONE_RESTING] * 2


def test_cancel_change_and_the_orders_list_cost_their_budgets(
    account, alice_api, django_capture_on_commit_callbacks, django_assert_num_queries
):
    ids = _post(alice_api, account, [_limit() for _ in range(3)], django_capture_on_commit_callbacks, send=True)
    with django_capture_on_commit_callbacks(execute=False), django_assert_num_queries(CANCEL):
        assert alice_api.post(f"/api/v1/orders/{ids[0]}/cancel", {}, format="json").status_code == 202
    with django_capture_on_commit_callbacks(execute=False), django_assert_num_queries(CHANGE):
        assert alice_api.post(f"/api/v1/orders/{ids[1]}/change", {"price": "51"}, format="json").status_code == 202
    with django_assert_num_queries(ORDERS_LIST):
        assert len(alice_api.get("/api/v1/oms/orders/open").json()["results"]) == 4  # and the warm-up order
    _post(alice_api, account, [_limit() for _ in range(20)], django_capture_on_commit_callbacks, send=True)
    with django_assert_num_queries(ORDERS_LIST):  # a page, whatever the number of orders
        alice_api.get("/api/v1/oms/orders/open")


def test_a_marketable_order_is_sent_and_its_fill_booked_in_its_budget(account, alice_api, django_capture_on_commit_callbacks):
    [order_id] = _post(alice_api, account, [_limit("101")], django_capture_on_commit_callbacks)
    with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=True):
        orders_submit_task.delay([order_id])
    assert len(ctx.captured_queries) == SUBMIT_AND_BOOK_FILL
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.filled_qty) == ("filled", 1)
    deal = Deal.objects.get(order=order)
    assert deal.position_id and Position.objects.get(pk=deal.position_id).qty == 1


def test_a_marketable_batch_is_sent_and_its_fills_booked_in_a_fixed_budget_whatever_its_size(
    account, alice_api, django_capture_on_commit_callbacks
):
    _post(alice_api, account, [_limit("101")], django_capture_on_commit_callbacks, send=True)  # the position is open
    counts = []
    for size in (2, 20, 40):
        ids = _post(alice_api, account, [_limit("101") for _ in range(size)], django_capture_on_commit_callbacks)
        with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=True):
            orders_submit_task.delay(ids)
        counts.append(len(ctx.captured_queries))
        # Every fill booked once, on its order, its deal in the one position.
        assert set(Order.objects.filter(pk__in=ids).values_list("status", "filled_qty")) == {("filled", 1)}
        assert Deal.objects.filter(order__in=ids).count() == size
        assert OrderEvent.objects.filter(order__in=ids, kind="fill").count() == size
    position = Position.objects.get(account=account, symbol=SYMBOL, status="open")
    assert position.qty == 63 == sum(Deal.objects.filter(position=position).values_list("qty", flat=True))
    assert counts == [SUBMIT_AND_BOOK_BATCH] * 3


@pytest.mark.django_db(transaction=True)
def test_on_real_commits_a_marketable_order_is_sent_and_booked_in_its_budget(alice, alice_api, monkeypatch):
    # Committed transactions run their after-commit steps at once, as in a worker:
    # the venue's fill reaches the send, which books it with the answer.
    enqueued: list[list[int]] = []
    monkeypatch.setattr("oms.services.send.enqueue_submit", enqueued.append)
    account = broker_account_create(owner=alice, label="paper")
    for _ in range(2):  # warm: the position is open, the funds stored
        response = alice_api.post(f"/api/v1/accounts/{account.pk}/orders", _limit("101"), format="json")
        assert response.status_code == 202
        orders_submit_task.delay(enqueued.pop())
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/orders", _limit("101"), format="json")
    order_id = response.json()["order_id"]
    with CaptureQueriesContext(connection) as ctx:
        orders_submit_task.delay(enqueued.pop())
    assert len(ctx.captured_queries) == SUBMIT_AND_BOOK_FILL_COMMITTED
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.filled_qty) == ("filled", 1)
    assert Deal.objects.filter(order=order).count() == 1
    position = Position.objects.get(account=account, symbol=SYMBOL, status="open")
    assert position.qty == 3 == sum(Deal.objects.filter(position=position).values_list("qty", flat=True))
