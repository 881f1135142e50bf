"""KIS test helpers: a FakeKisServer on 127.0.0.1 and a KIS paper account
whose adapter talks to it over real sockets.

    def test_x(kis):            # the fixture (tests/test_kis_*.py import it)
        kis.server.set_price("005930", 71000)
        order = kis.send(side="buy", order_type="market", qty="2")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.test import override_settings
from django.utils import timezone

from brokers.kis.adapter import KisBroker
from brokers.kis.fake import FakeKisServer
from brokers.models import BrokerAccount, BrokerToken
from brokers.services import broker_account_create
from marketdata.instruments import instrument_ensure_for_venue
from oms.models import Order
from oms.services.commands import command_for, commands_run
from oms.services.reconcile import account_reconcile
from tests.oms_support import NO_LIMITS, set_quote, tasks_in_process
from tests.servers import free_port

APP_KEY = "PSkisAppKey0123456789"
APP_SECRET = "kis-app-secret-0123456789abcdef"  # noqa: S105 - a test secret for the fake
CANO = "50000001"
CODE = "005930"
SYMBOL = "KRX:005930"
PRICE = Decimal(70000)
CASH = Decimal(100_000_000)
HTS_ID = "alicehts"


@dataclass
class Kis:
    server: FakeKisServer
    account: BrokerAccount

    def broker(self) -> KisBroker:
        return KisBroker(BrokerAccount.objects.get(pk=self.account.pk))

    def send(self, **payload: Any) -> Order:
        """``send_order`` through the OMS (REST's path), the order fresh."""
        body = {"symbol": SYMBOL, "side": "buy", "order_type": "market", "qty": "1", "time_in_force": "day", **payload}
        return self.command("send_order", body)

    def command(self, command: str, payload: dict[str, Any]) -> Order:
        parsed = command_for(account=self.account, command=command, payload=payload)
        outcome = commands_run(account=self.account, commands=[parsed], actor=None, source="rest")
        order_id = outcome.results[0].order_id
        assert order_id is not None, outcome.results[0]
        return Order.objects.get(pk=order_id)

    def reconcile(self, *, later: float = 0.0) -> Any:
        from django.conf import settings

        now = timezone.now() + timedelta(seconds=(settings.OMS_RECONCILE_GRACE_SECONDS + 1) if later else 0)
        return account_reconcile(account=self.account, now=now)

    def orders_at_fake(self) -> list[dict[str, Any]]:
        return [o for o in self.server.exchange.orders_snapshot() if not o["is_cancel"]]

    def allow_token_issue(self) -> None:
        """As if the last token was issued over a minute ago (ours and the fake's rule)."""
        BrokerToken.objects.update(last_attempt_at=timezone.now() - timedelta(minutes=5))
        self.server.configure(token_interval=0)

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """The KIS host refuses connections for the block."""
        with override_settings(KIS_PAPER_REST_URL=f"http://127.0.0.1:{free_port()}"):
            yield


def kis_account(
    owner: Any,
    *,
    label: str = "kis",
    app_key: str = APP_KEY,
    app_secret: str = APP_SECRET,
    hts_id: str = "",
    **fields: Any,
) -> BrokerAccount:
    """A KIS paper account of ``owner`` on the fake's account CANO (with the
    HTS id ``hts_id`` for the fill notices, as staff set it)."""
    return broker_account_create(
        owner=owner,
        kind="kis",
        label=label,
        environment="paper",
        base_currency="KRW",
        broker_account_number=fields.pop("broker_account_number", CANO),
        broker_product_code="01",
        broker_user_id=hts_id,
        credentials=fields.pop("credentials", {"app_key": app_key, "app_secret": app_secret}),
        **fields,
    )


@contextlib.contextmanager
def fake_kis(settings: Any, *, hts_id: str = "") -> Iterator[FakeKisServer]:
    """The fake KIS server knowing the account CANO (with ``hts_id``) and the
    price of CODE, KIS's paper URLs pointing at it."""
    with FakeKisServer() as server:
        settings.KIS_PAPER_REST_URL = server.rest_url
        settings.KIS_PAPER_WS_URL = server.ws_url
        # The fake answers at once; KIS's 2/s paper rate would only slow the tests.
        settings.KIS_RATE_PAPER = 1000.0
        settings.KIS_RATE_BURST = 100
        settings.BROKER_HTTP_TIMEOUT = 5.0
        server.add_account(APP_KEY, APP_SECRET, CANO, hts_id=hts_id, cash_krw=CASH)
        server.set_price(CODE, PRICE, name="SAMSUNG ELECTRONICS")
        yield server


@contextlib.contextmanager
def kis_running(settings: Any, owner: Any, *, hts_id: str = "") -> Iterator[Kis]:
    """``fake_kis``, a KRX instrument and a KIS paper account of ``owner``
    (a test module's ``kis`` fixture)."""
    with fake_kis(settings, hts_id=hts_id) as server:
        settings.OMS_RISK = dict(NO_LIMITS)
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        instrument_ensure_for_venue("KRX", CODE, name="SAMSUNG ELECTRONICS", lot_size=Decimal(1), multiplier=Decimal(1))
        set_quote(SYMBOL, str(PRICE), spread="100")
        account = kis_account(owner, hts_id=hts_id)
        with tasks_in_process():
            yield Kis(server=server, account=account)
