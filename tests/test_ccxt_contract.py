"""The Broker contract (tests/broker_contract.py) against CcxtBroker and the
fake exchange over real sockets, as Binance spot and as Binance USD-M
futures, with ccxt (pinned, unmodified) in between. Fills come with the
order's answer (delivered at once) and by reconciliation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.broker_contract import BrokerContract, BrokerHarness
from tests.ccxt_support import PRICE, Ccxt, ccxt_running

pytestmark = pytest.mark.django_db(transaction=True)

ORDER_PATHS = {"spot": "/api/v3/order", "futures": "/fapi/v1/order"}


def _harness(ccxt: Ccxt) -> BrokerHarness:
    fake = ccxt.fake
    path = ORDER_PATHS[ccxt.kind]
    ccxt.broker().funds()  # connected (markets loaded) before anything goes wrong

    @contextlib.contextmanager
    def inject(kind: str) -> Iterator[None]:
        if kind == "unavailable":
            with ccxt.unreachable():
                yield
            return
        if kind == "rejected":
            fake.fault("insufficient_funds" if ccxt.kind == "spot" else "margin_insufficient", path=path, method="POST")
        elif kind == "timeout":
            fake.fault("timeout_after_accept", path=path, method="POST", seconds=3)
        elif kind == "auth_expired":
            fake.fault("api_key_invalid", path=path, method="POST")
        elif kind == "rate_limited":
            fake.fault("rate_limit", path=path, method="POST")
        yield

    return BrokerHarness(
        account=ccxt.account,
        symbol=ccxt.symbol,
        price=PRICE,
        error_kinds=frozenset(("rejected", "unavailable", "timeout", "auth_expired", "rate_limited")),
        inject=inject,
        settle=ccxt.reconcile,
    )


class TestCcxtSpotBroker(BrokerContract):
    error_kinds = ("rejected", "unavailable", "timeout", "auth_expired", "rate_limited")

    @pytest.fixture
    def harness(self, settings, alice) -> Iterator[BrokerHarness]:
        with ccxt_running(settings, alice, "spot") as ccxt:
            yield _harness(ccxt)


class TestCcxtFuturesBroker(BrokerContract):
    error_kinds = ("rejected", "unavailable", "timeout", "auth_expired", "rate_limited")

    @pytest.fixture
    def harness(self, settings, alice) -> Iterator[BrokerHarness]:
        with ccxt_running(settings, alice, "futures") as ccxt:
            yield _harness(ccxt)
