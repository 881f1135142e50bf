"""The Broker contract (tests/broker_contract.py) run against each broker we
have: the paper broker, and the scripted fake in three shapes (everything
taken; KIS-like market and limit day orders only; no order changes).

A new adapter adds one class here: subclass ``BrokerContract`` and give it a
``harness`` fixture that starts its fake server on 127.0.0.1, registers the
adapter against it, and says how to make the server answer each error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import DatabaseError

from brokers.services import broker_account_create
from marketdata.quotes import quote_store
from marketdata.types import Quote
from tests.broker_contract import ERROR_KINDS, BrokerContract, BrokerHarness
from tests.fakes import FakeVenue
from tests.oms_support import make_account, oms_setup, set_quote, tasks_in_process, venue_registered

pytestmark = pytest.mark.django_db(transaction=True)

PRICE = Decimal(100)


@pytest.fixture(autouse=True)
def _setup(settings):
    oms_setup(settings)
    set_quote("AAA", str(PRICE))
    with tasks_in_process():
        yield


class TestPaperBroker(BrokerContract):
    """The simulated venue: it refuses (a market order against a stale quote)
    and, when its database fails during a change, cannot say what happened."""

    error_kinds = ("rejected", "timeout")

    @pytest.fixture
    def harness(self, alice):
        account = broker_account_create(owner=alice, kind="paper", label="paper")

        @contextlib.contextmanager
        def inject(kind: str) -> Iterator[None]:
            if kind == "rejected":
                stale = time.time() - 3600
                quote_store(Quote(symbol="AAA", time=stale, last=PRICE, bid=PRICE, ask=PRICE))
                try:
                    yield
                finally:
                    set_quote("AAA", str(PRICE))
                return
            assert kind == "timeout"

            def database_down(**kwargs):
                raise DatabaseError("connection lost during commit")

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("brokers.paper.services.paper_order_place", database_down)
                yield

        return BrokerHarness(account=account, symbol="AAA", price=PRICE, error_kinds=frozenset(TestPaperBroker.error_kinds), inject=inject)


def _scripted(alice, venue: FakeVenue) -> Iterator[BrokerHarness]:
    @contextlib.contextmanager
    def inject(kind: str) -> Iterator[None]:
        venue.mode = {"rejected": "reject"}.get(kind, kind)
        try:
            yield
        finally:
            venue.mode = "match"

    with venue_registered(venue):
        account = make_account(alice, label="scripted")
        yield BrokerHarness(account=account, symbol="AAA", price=venue.fill_price, error_kinds=frozenset(ERROR_KINDS), inject=inject)


class TestScriptedBroker(BrokerContract):
    """The scripted fake taking every order type and time in force."""

    @pytest.fixture
    def harness(self, alice):
        yield from _scripted(alice, FakeVenue(mode="match", fill_price=PRICE))


class TestScriptedBrokerKisLike(BrokerContract):
    """Market and limit orders, day orders only (as KIS)."""

    @pytest.fixture
    def harness(self, alice):
        venue = FakeVenue(mode="match", fill_price=PRICE, order_types=frozenset({"market", "limit"}), times_in_force=frozenset({"day"}))
        yield from _scripted(alice, venue)


class TestScriptedBrokerWithoutChanges(BrokerContract):
    """No order changes (cancel and send again), no day orders."""

    @pytest.fixture
    def harness(self, alice):
        venue = FakeVenue(mode="match", fill_price=PRICE, supports_modify=False, times_in_force=frozenset({"gtc", "ioc"}))
        yield from _scripted(alice, venue)
