"""The Broker contract (tests/broker_contract.py) against KisBroker and the
fake KIS server over real sockets. KIS reports fills by notice or by the
daily-orders query, so the harness settles with reconciliation (the polling
path of an account without an HTS id)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from brokers.kis import protocol
from tests.broker_contract import BrokerContract, BrokerHarness
from tests.kis_support import CANO, PRICE, SYMBOL, Kis, kis_running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kis(settings, alice) -> Iterator[Kis]:
    with kis_running(settings, alice) as running:
        yield running


class TestKisBroker(BrokerContract):
    error_kinds = ("rejected", "unavailable", "timeout", "auth_expired", "rate_limited")

    @pytest.fixture
    def harness(self, kis: Kis) -> BrokerHarness:
        server = kis.server
        kis.broker().client.access_token()  # connected before anything goes wrong

        @contextlib.contextmanager
        def inject(kind: str) -> Iterator[None]:
            if kind == "rejected":
                account = server.exchange.accounts[(CANO, "01")]
                cash, account.cash = account.cash, 0  # KIS refuses: APBK0952, over the orderable amount
                try:
                    yield
                finally:
                    account.cash = cash
                return
            if kind == "unavailable":
                with kis.unreachable():
                    yield
                return
            if kind == "timeout":
                server.fault("lose_response", path=protocol.ORDER_CASH_PATH)
            elif kind == "auth_expired":
                # Expired, and still refused after the one refresh: nothing executed.
                kis.allow_token_issue()
                server.fault("token_expired", count=2, path=protocol.ORDER_CASH_PATH)
            elif kind == "rate_limited":
                server.fault("rate_limit", path=protocol.ORDER_CASH_PATH)
            yield

        return BrokerHarness(
            account=kis.account,
            symbol=SYMBOL,
            price=PRICE,
            error_kinds=frozenset(self.error_kinds),
            inject=inject,
            settle=kis.reconcile,
        )
