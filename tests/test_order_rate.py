"""``RISK_MAX_ORDERS_PER_SECOND`` holds: every order of a batch is counted, a
batch that would pass the limit is refused whole (429, nothing written,
nothing counted), and concurrent senders never put more than the limit of
one account's orders into one second (issue 8, part 3)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from django.db import connection
from rest_framework.test import APIClient

from core.ratelimit import rate_take
from oms.models import Order
from oms.services.order_rate import OrderRateLimited
from oms.services.send import order_send
from tests.fakes import FakeVenue
from tests.oms_support import NO_LIMITS, make_account, make_instruments, order_spec, tasks_in_process, venue_registered


@pytest.fixture
def venue() -> Iterator[FakeVenue]:
    with venue_registered(FakeVenue()) as registered, tasks_in_process():
        yield registered


def _limit(settings, per_second: int) -> None:
    settings.OMS_RISK = {**NO_LIMITS, "MAX_ORDERS_PER_SECOND": per_second}


LIMIT_ORDER = {"symbol": "AAA", "side": "buy", "order_type": "limit", "qty": "1", "price": "90"}


@pytest.mark.django_db
def test_a_batch_over_the_limit_is_refused_whole_and_writes_nothing(alice, alice_key, venue, settings):
    _limit(settings, 50)
    make_instruments()
    account = make_account(alice)
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=alice_key)
    response = api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT_ORDER] * 200}, format="json")
    assert response.status_code == 429, response.content[:300]
    assert response.json()["error"]["code"] == "order_rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert not Order.objects.exists() and venue.placed == []
    # The refused batch counted nothing: a batch of exactly the limit goes through.
    response = api.post(f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": [LIMIT_ORDER] * 50}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert Order.objects.count() == 50


@pytest.mark.django_db
def test_a_take_that_would_pass_the_limit_counts_nothing():
    key = f"test-take:{uuid.uuid4().hex}"
    assert rate_take(key, 60, amount=30, limit=50).taken
    refused = rate_take(key, 60, amount=30, limit=50)
    assert not refused.taken and refused.count == 30 and 1 <= refused.retry_after <= 60
    filled = rate_take(key, 60, amount=20, limit=50)
    assert filled.taken and filled.count == 50
    assert not rate_take(key, 60, amount=1, limit=50).taken


def _concurrent_single_orders(account, threads: int) -> tuple[list[Order], list[Exception]]:
    barrier = threading.Barrier(threads)
    refused: list[Exception] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            order_send(account=account, spec=order_spec(**LIMIT_ORDER), actor=None, source="rest")
        except Exception as exc:
            with lock:
                refused.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a sender hung"
    return list(Order.objects.filter(account=account)), refused


def _per_second(orders: list[Order]) -> Counter[int]:
    return Counter(int(order.created_at.timestamp()) for order in orders)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL (and Redis) here")
# 50 is the setting; this machine writes few more than 50 orders a
# second, so 10 is the limit the burst really presses against.
@pytest.mark.parametrize("per_second", [50, 10])
def test_150_concurrent_single_orders_never_put_more_than_the_limit_in_one_second(alice, venue, settings, per_second):
    _limit(settings, per_second)
    make_instruments()
    account = make_account(alice)
    accepted, refused = _concurrent_single_orders(account, 150)
    assert [e for e in refused if not isinstance(e, OrderRateLimited)] == []
    assert len(accepted) + len(refused) == 150
    assert len(accepted) >= per_second
    assert max(_per_second(accepted).values()) <= per_second


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="the embedded default")
def test_concurrent_single_orders_on_the_embedded_default_keep_the_limit(alice, venue, settings):
    _limit(settings, 5)
    make_instruments()
    account = make_account(alice)
    accepted, refused = _concurrent_single_orders(account, 20)
    assert [e for e in refused if not isinstance(e, OrderRateLimited)] == []
    assert len(accepted) + len(refused) == 20
    assert len(accepted) >= 5
    assert max(_per_second(accepted).values()) <= 5
