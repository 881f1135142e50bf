"""Kite postbacks (``POST /api/v1/brokers/kite/postback``) and the ticker's
order updates into the OMS: a good checksum books the order's trades read
from Kite and moves the order, a bad one is refused and changes nothing, a
replay (and the ticker's update of the same change) has no second effect."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from brokers.kite.updates import order_update_deliver
from oms.models import Deal, Order, OrderEvent, Position
from tests import kite_support
from tests.kite_support import API_SECRET, PRICE, SYMBOL, USER_ID, kite_send

fake_kite = kite_support.fake_kite  # the fixture
kite_account = kite_support.kite_account  # the fixture

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/brokers/kite/postback"


def post(body: Any, *, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else json.dumps(body).encode()
    return APIClient(REMOTE_ADDR="203.0.113.20").generic("POST", URL, data, content_type="application/json")


@pytest.fixture
def filled(fake_kite, kite_account) -> tuple[Order, dict[str, Any]]:
    """A market order of 2 sent through the OMS and filled at Kite; the
    postback Kite would send for it (the fake's postbacks go nowhere here)."""
    fake_kite.postback_url = None
    updates: list[dict[str, Any]] = []
    fake_kite.order_listeners.append(updates.append)
    order = kite_send(kite_account, side="buy", order_type="market", qty="2")
    assert fake_kite.wait_idle()
    complete = [u for u in updates if u["status"] == "COMPLETE"]
    assert complete, updates
    # Only the postback may book the fill in these tests.
    Deal.objects.filter(order=order).delete()
    Position.objects.filter(account=kite_account).delete()
    Order.objects.filter(pk=order.pk).update(filled_qty=0, avg_fill_price=None, status="new")
    return Order.objects.get(pk=order.pk), complete[-1]


def trades_calls(fake_kite, order_id: str) -> int:
    return sum(n for name, n in fake_kite.calls.items() if name.endswith(f"/orders/{order_id}/trades"))


def test_a_postback_with_a_good_checksum_books_the_orders_trades_once(fake_kite, kite_account, filled):
    order, body = filled
    answer = post(body)
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"order_id": body["order_id"], "status": "COMPLETE", "accepted": True}
    order.refresh_from_db()
    assert order.status == "filled" and order.filled_qty == Decimal(2)
    deal = Deal.objects.get(order=order)
    assert (deal.qty, deal.price, deal.symbol) == (Decimal(2), PRICE, SYMBOL) and deal.broker_trade_id
    position = Position.objects.get(account=kite_account, symbol=SYMBOL, status="open")
    assert position.qty == Decimal(2)
    assert trades_calls(fake_kite, body["order_id"]) == 1

    # The same postback again (Kite retries, a replay): accepted, nothing more.
    events = OrderEvent.objects.filter(order=order).count()
    again = post(body)
    assert again.status_code == 200
    assert Deal.objects.filter(order=order).count() == 1
    assert OrderEvent.objects.filter(order=order).count() == events
    assert trades_calls(fake_kite, body["order_id"]) == 1  # not even asked again

    # The ticker's update of the same change: nothing more either.
    assert order_update_deliver(kite_account.pk, body, via="ticker") is False
    assert Deal.objects.filter(order=order).count() == 1


def test_the_ticker_first_then_the_postback_book_once(fake_kite, kite_account, filled):
    order, body = filled
    assert order_update_deliver(kite_account.pk, {k: v for k, v in body.items() if k != "checksum"}, via="ticker") is True
    assert post(body).status_code == 200
    assert Deal.objects.filter(order=order).count() == 1
    assert Position.objects.get(account=kite_account, symbol=SYMBOL, status="open").qty == Decimal(2)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: {**b, "checksum": "0" * 64},
        lambda b: {**b, "status": b["status"], "order_timestamp": "2001-01-01 00:00:00"},  # checksum of another time
        lambda b: {**b, "user_id": "ZZ9999"},  # no account of that Kite user
        lambda b: {**b, "checksum": __import__("hashlib").sha256(f"{b['order_id']}{b['order_timestamp']}wrong".encode()).hexdigest()},
    ],
    ids=["zeros", "other-timestamp", "unknown-user", "other-secret"],
)
def test_a_bad_checksum_is_refused_and_changes_nothing(fake_kite, kite_account, filled, tamper):
    order, body = filled
    answer = post(tamper(body))
    assert answer.status_code == 403, answer.content
    assert answer.json()["error"]["code"] == "invalid_checksum"
    order.refresh_from_db()
    assert order.status == "new" and order.filled_qty == 0
    assert not Deal.objects.filter(order=order).exists()
    assert trades_calls(fake_kite, body["order_id"]) == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (json.dumps({"order_id": "1"}).encode(), 422),
        (
            json.dumps(
                {"order_id": "x" * 100, "order_timestamp": "t", "status": "OPEN", "user_id": USER_ID, "checksum": "a" * 64}
            ).encode(),
            422,
        ),
        (b"{" + b" " * (70 * 1024) + b"}", 413),
        (b"[" * 5000, 400),
    ],
    ids=["junk", "array", "fields", "order-id", "too-large", "deep"],
)
def test_hostile_bodies_get_the_error_shape_and_change_nothing(fake_kite, kite_account, filled, raw, status):
    order, _ = filled
    answer = post(None, raw=raw)
    assert answer.status_code == status, answer.content
    assert answer.json()["error"]["code"]
    assert not Deal.objects.filter(order=order).exists()


def test_the_postback_needs_no_credentials_nor_csrf_and_only_takes_post(fake_kite, kite_account, filled):
    order, body = filled
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.post(URL, body, format="json").status_code == 200
    assert browser.get(URL).status_code == 405
    assert Deal.objects.filter(order=order).count() == 1


def test_the_checksum_is_kites(filled):
    import hashlib

    _, body = filled
    assert body["checksum"] == hashlib.sha256(f"{body['order_id']}{body['order_timestamp']}{API_SECRET}".encode()).hexdigest()
