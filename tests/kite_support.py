"""Kite test helpers: a FakeKiteServer on 127.0.0.1 with Kite's settings
pointing at it, and a Kite account of ``alice`` logged in to it.

    from tests import kite_support
    fake_kite, kite_account = kite_support.fake_kite, kite_support.kite_account  # the fixtures

    def test_x(fake_kite, kite_account):
        fake_kite.set_price("NSE", "INFY", 1510)
        order = kite_send(kite_account, side="buy", order_type="market", qty="2")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from brokers.kite.client import kite_config_for, kite_token_expiry, kite_token_key
from brokers.kite.fake import FakeKiteServer, Instrument
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from brokers.tokens import IssuedToken, token_refresh
from marketdata.instruments import instrument_ensure_for_venue
from oms.models import Order
from oms.services.commands import command_for, commands_run
from tests.oms_support import NO_LIMITS, set_quote, tasks_in_process

API_KEY = "kitetestapikey0123"
API_SECRET = "kite-test-api-secret-0123456789"  # noqa: S105 - a test secret for the fake
USER_ID = "AB1234"
SYMBOL = "NSE:INFY"
TOKEN = 408065  # INFY's instrument token
PRICE = Decimal(1500)
CASH = Decimal(1_000_000)
NIFTY_TOKEN = 256265  # the NIFTY 50 index
CALLBACK = "http://testserver/api/v1/brokers/kite/callback"


@contextlib.contextmanager
def fake_kite_running(settings: Any) -> Iterator[FakeKiteServer]:
    """The fake Kite knowing the app API_KEY of user USER_ID, INFY at PRICE and
    the NIFTY 50 index; Kite's URLs pointing at it."""
    with FakeKiteServer() as server:
        settings.KITE_API_URL = server.api_url
        settings.KITE_LOGIN_URL = server.login_url
        # The fake answers at once; Kite's published rates would only slow the tests.
        settings.KITE_RATE_ORDERS = 1000.0
        settings.KITE_RATE_OTHER = 1000.0
        settings.KITE_RATE_HISTORICAL = 1000.0
        settings.BROKER_HTTP_TIMEOUT = 5.0
        server.add_app(API_KEY, API_SECRET, USER_ID, redirect_url=CALLBACK, cash=CASH)
        server.add_instrument(Instrument(TOKEN, "NSE", "INFY", name="INFOSYS", last_price=PRICE, tick_size=Decimal("0.05"), segment="NSE"))
        server.add_instrument(
            Instrument(NIFTY_TOKEN, "NSE", "NIFTY 50", name="NIFTY 50", last_price=Decimal(24000), tick_size=Decimal(0), segment="INDICES")
        )
        yield server


@pytest.fixture
def fake_kite(settings) -> Iterator[FakeKiteServer]:
    with fake_kite_running(settings) as server:
        yield server


def kite_account_create(owner: Any, *, label: str = "kite", **fields: Any) -> BrokerAccount:
    """A Kite account of ``owner`` on the fake's app (not logged in)."""
    return broker_account_create(
        owner=owner,
        kind="kite",
        label=label,
        environment=fields.pop("environment", "live"),
        base_currency="INR",
        broker_user_id=fields.pop("broker_user_id", USER_ID),
        credentials=fields.pop("credentials", {"api_key": API_KEY, "api_secret": API_SECRET}),
        **fields,
    )


def kite_log_in(account: BrokerAccount, server: FakeKiteServer) -> str:
    """Store a session the fake issued, as the login callback does; the token."""
    value = server.issue_session(API_KEY)
    token_refresh(
        kite_token_key(kite_config_for(account)),
        lambda: IssuedToken(value=value, expires_at=kite_token_expiry(timezone.now())),
        min_interval=0,
    )
    return value


@pytest.fixture
def kite_account(settings, alice, fake_kite) -> Iterator[BrokerAccount]:
    """A Kite account of ``alice``, logged in to the fake, NSE:INFY known and priced."""
    settings.OMS_RISK = dict(NO_LIMITS)
    instrument_ensure_for_venue("NSE", "INFY", name="INFOSYS", lot_size=Decimal(1), multiplier=Decimal(1), tick_size=Decimal("0.05"))
    set_quote(SYMBOL, str(PRICE), spread="0.10")
    account = kite_account_create(alice)
    kite_log_in(account, fake_kite)
    with tasks_in_process():
        yield account


def kite_send(account: BrokerAccount, command: str = "send_order", **payload: Any) -> Order:
    """A command through the OMS (REST's path); the order it names, fresh."""
    body = (
        {"symbol": SYMBOL, "side": "buy", "order_type": "market", "qty": "1", "time_in_force": "day", **payload}
        if command == "send_order"
        else payload
    )
    parsed = command_for(account=account, command=command, payload=body)
    outcome = commands_run(account=account, commands=[parsed], actor=None, source="rest")
    order_id = outcome.results[0].order_id
    assert order_id is not None, outcome.results[0]
    return Order.objects.get(pk=order_id)
