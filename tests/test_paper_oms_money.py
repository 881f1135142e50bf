"""End to end through the OMS: a USD paper account buys a KRW stock over
REST; the venue converts the won it lacks, the deal carries its fee currency,
and the account's funds and ledger answer in several currencies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal as D

import pytest

from brokers.registry import broker_for
from brokers.services import broker_account_create
from marketdata.fx import fx_rate
from marketdata.quotes import quote_store, quotes_forget
from marketdata.services import instrument_upsert
from marketdata.types import Quote
from oms.models import Deal

SYMBOLS = ["005930", "USD/KRW"]


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    from config.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture(autouse=True)
def market(db, settings) -> Iterator[None]:
    settings.SIMULATOR_ENABLED = False  # the quotes are the test's own: no simulated lookup of a missing one
    instrument_upsert(symbol="005930", type="stock", currency="KRW", tick_size=D(100), lot_size=D(1), multiplier=D(1))
    now = time.time()
    quote_store(Quote(symbol="USD/KRW", time=now, last=D(1380), bid=D(1380), ask=D(1380)))
    quote_store(Quote(symbol="005930", time=now, last=D(50400), bid=D(50300), ask=D(50400), bid_size=D(1000), ask_size=D(1000)))
    yield
    quotes_forget(SYMBOLS)


def test_a_usd_paper_account_buys_005930_through_the_oms(alice, alice_api, django_capture_on_commit_callbacks):
    account = broker_account_create(owner=alice, label="demo paper")
    payload = {"symbol": "005930", "side": "buy", "order_type": "limit", "qty": "10", "price": "50400"}
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post(f"/api/v1/accounts/{account.pk}/orders", payload, format="json")
    assert response.status_code == 202, response.json()

    deal = Deal.objects.get(account=account)
    assert (deal.qty, deal.price, deal.fee, deal.fee_currency) == (10, 50400, D("50.4"), "KRW")

    # The venue's funds (the OMS's funds API and projection build on them).
    funds = broker_for(account).funds()
    balances = {b.currency: b.cash for b in funds.balances}
    # 504,050.4 won bought with 365.26 dollars: about qty x price x rate, not 504,050 dollars.
    assert funds.currency == "USD" and balances["USD"] == D("999634.74") and D(0) <= balances["KRW"] < 1
    assert funds.rates["KRW"] == fx_rate("KRW", "USD")
    assert D(999_900) < funds.equity < D(1_000_000)

    kinds = [(e["kind"], e["currency"]) for e in alice_api.get(f"/api/v1/accounts/{account.pk}/ledger").json()["results"]]
    assert kinds == [("fee", "KRW"), ("trade", "KRW"), ("fx_conversion", "KRW"), ("fx_conversion", "USD"), ("deposit", "USD")]
