"""The Broker contract (tests/broker_contract.py) against KiteBroker, the
official kiteconnect client and the fake Kite server over real sockets. Kite
reports fills by postback, ticker and the trades query: the harness settles
with reconciliation (the polling path)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from oms.services.reconcile import account_reconcile
from tests import kite_support
from tests.broker_contract import BrokerContract, BrokerHarness
from tests.kite_support import PRICE, SYMBOL
from tests.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)

fake_kite = kite_support.fake_kite  # the fixture
kite_account = kite_support.kite_account  # the fixture


class TestKiteBroker(BrokerContract):
    # A TokenException is no "auth expired, retry later": the account needs a
    # person to log in, so the order is refused at once (tests/test_kite_login.py).
    error_kinds = ("rejected", "unavailable", "timeout", "rate_limited")

    @pytest.fixture
    def harness(self, fake_kite, kite_account) -> BrokerHarness:
        @contextlib.contextmanager
        def inject(kind: str) -> Iterator[None]:
            if kind == "rejected":
                fake_kite.exchange.reject_next = "RMS: Margin exceeds, required margin is more than available."
            elif kind == "unavailable":
                with _unreachable():
                    yield
                return
            elif kind == "timeout":
                fake_kite.fault("lose_response", path="/orders/", method="POST")
            elif kind == "rate_limited":
                fake_kite.fault("rate_limit", path="/orders/", method="POST")
            yield

        def settle() -> object:
            now = timezone.now() + timedelta(seconds=settings.OMS_RECONCILE_GRACE_SECONDS + 1)
            return account_reconcile(account=kite_account, now=now)

        return BrokerHarness(
            account=kite_account,
            symbol=SYMBOL,
            price=PRICE,
            error_kinds=frozenset(self.error_kinds),
            inject=inject,
            settle=settle,
        )


@contextlib.contextmanager
def _unreachable() -> Iterator[None]:
    from django.test import override_settings

    with override_settings(KITE_API_URL=f"http://127.0.0.1:{free_port()}"):
        yield
