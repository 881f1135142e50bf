"""A request that fails with a 500 never leaves its Idempotency-Key stuck in
flight (issue 8, part 2): failed before any side effect, the key is released
and a retry runs afresh; failed after one, the failure is stored and replayed,
never sent twice."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from marketdata.services import instrument_upsert
from oms.models import IdempotencyKey, Order
from oms.services import commands
from tests.fakes import FakeVenue
from tests.oms_support import make_account, venue_registered

pytestmark = pytest.mark.django_db

ORDER = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    from config.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def account(alice):
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    with venue_registered(FakeVenue()):
        yield make_account(alice)


def _fail_send(monkeypatch, *, after_writing: bool) -> None:
    real = commands.COMMANDS["send_order"]

    def run(account, spec, actor, source):
        if after_writing:
            real.run(account, spec, actor, source)  # the order is committed ...
        raise RuntimeError("injected fault")  # ... or not, and then the request fails

    monkeypatch.setitem(commands.COMMANDS, "send_order", commands.CommandHandler(spec=real.spec, run=run))


def _post(alice_api, account, key: str):
    return alice_api.post(f"/api/v1/accounts/{account.pk}/orders", ORDER, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_500_before_any_side_effect_releases_the_key(alice_api, account, monkeypatch):
    _fail_send(monkeypatch, after_writing=False)
    failed = _post(alice_api, account, "retry-me")
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert not IdempotencyKey.objects.filter(account=account, key="retry-me").exists()
    monkeypatch.undo()
    retried = _post(alice_api, account, "retry-me")
    assert retried.status_code == 202, retried.json()
    assert Order.objects.filter(account=account).count() == 1
    replayed = _post(alice_api, account, "retry-me")
    assert replayed.status_code == 202 and replayed["Idempotent-Replayed"] == "true"
    assert Order.objects.filter(account=account).count() == 1


def test_a_500_after_a_side_effect_is_stored_and_replayed_never_sent_twice(alice_api, account, monkeypatch):
    _fail_send(monkeypatch, after_writing=True)
    failed = _post(alice_api, account, "once")
    assert failed.status_code == 500
    assert Order.objects.filter(account=account).count() == 1
    monkeypatch.undo()
    for _ in range(2):
        retried = _post(alice_api, account, "once")
        assert retried.status_code == 500, retried.json()  # not 409 idempotency_in_flight, forever
        assert retried["Idempotent-Replayed"] == "true"
        assert retried.json()["error"]["code"] == "internal_error"
    assert Order.objects.filter(account=account).count() == 1
