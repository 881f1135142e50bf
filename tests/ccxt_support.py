"""CCXT test helpers: a FakeCcxtExchange on 127.0.0.1 (Binance spot or USD-M
futures) and a CCXT account whose ccxt exchange talks to it over real sockets
(its broker_options point ccxt's URLs at the fake, after sandbox mode).

    def test_x(alice):
        with fake_exchange("spot") as fake:
            account = ccxt_account(alice, fake)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from brokers.ccxt.adapter import CcxtBroker
from brokers.ccxt.exchange import ccxt_cache_clear, ccxt_exchange_for_account, ccxt_markets_load
from brokers.ccxt.fake import FakeCcxtExchange
from brokers.ccxt.markets import ccxt_markets_import, markets_select
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from marketdata.venues import ccxt_venue
from oms.models import Order
from oms.services.commands import command_for, commands_run
from oms.services.reconcile import account_reconcile
from tests.oms_support import NO_LIMITS, set_quote, tasks_in_process
from tests.servers import free_port

API_KEY = "ccxtFakeApiKey0123456789"
SECRET = "ccxt-fake-secret-0123456789abcdef"  # noqa: S105 - a test secret for the fake
# Spot holds BNB: Binance then charges its fees in BNB (a third currency), the bought asset intact.
BALANCES = {"spot": {"USDT": "1000000", "BNB": "100"}, "futures": {"USDT": "1000000"}}
SYMBOLS = {"spot": "BTC/USDT", "futures": "BTC/USDT:USDT"}
MARKET_IDS = {"spot": "BTCUSDT", "futures": "BTCUSDT"}
VENUES = {"spot": "BINANCE", "futures": "BINANCEUSDM"}
PRICE = Decimal(50000)


def symbol_of(kind: str) -> str:
    """Our symbol of the fake's BTC market (venue:ccxt symbol)."""
    return f"{VENUES[kind]}:{SYMBOLS[kind]}"


@contextlib.contextmanager
def fake_exchange(
    kind: str = "spot",
    *,
    latency: float = 0.0,
    api_key: str = API_KEY,
    secret: str = SECRET,
    balances: dict[str, str] | None = None,
    streams: bool = False,
) -> Iterator[FakeCcxtExchange]:
    """A running fake exchange of ``kind`` knowing the test API key (with
    BALANCES[kind]) and BTC at PRICE (``streams``: with Binance's market
    streams, its URLs in ``ccxt_options``); ccxt's caches forgotten around it."""
    ccxt_cache_clear()
    with FakeCcxtExchange(kind, latency=latency, streams=streams) as fake:
        fake.add_account(api_key, secret, BALANCES[kind] if balances is None else balances)
        fake.set_price(MARKET_IDS[kind], PRICE)
        try:
            yield fake
        finally:
            ccxt_cache_clear()


def ccxt_account(
    owner: Any,
    fake: FakeCcxtExchange,
    *,
    label: str = "ccxt",
    api_key: str = API_KEY,
    secret: str = SECRET,
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> BrokerAccount:
    """A CCXT testnet (paper) account of ``owner`` on the fake: exchange id
    the fake's, broker_options its URLs (merged with ``options``)."""
    account = broker_account_create(
        owner=owner,
        kind="ccxt",
        label=label,
        environment=fields.pop("environment", "paper"),
        base_currency=fields.pop("base_currency", "USDT"),
        exchange_id=fields.pop("exchange_id", fake.exchange_id),
        credentials=fields.pop("credentials", {"api_key": api_key, "secret": secret}),
        **fields,
    )
    account.broker_options = {**fake.ccxt_options(), **(options or {})}
    account.save(update_fields=["broker_options"])
    return account


@dataclass
class Ccxt:
    fake: FakeCcxtExchange
    account: BrokerAccount
    kind: str

    @property
    def symbol(self) -> str:
        return symbol_of(self.kind)

    def broker(self) -> CcxtBroker:
        return CcxtBroker(BrokerAccount.objects.get(pk=self.account.pk))

    def send(self, **payload: Any) -> Order:
        """``send_order`` through the OMS (REST's path), the order fresh."""
        body = {"symbol": self.symbol, "side": "buy", "order_type": "market", "qty": "0.01", "time_in_force": "gtc", **payload}
        return self.command("send_order", body)

    def command(self, command: str, payload: dict[str, Any]) -> Order:
        parsed = command_for(account=self.account, command=command, payload=payload)
        outcome = commands_run(account=self.account, commands=[parsed], actor=None, source="rest")
        order_id = outcome.results[0].order_id
        assert order_id is not None, outcome.results[0]
        return Order.objects.get(pk=order_id)

    def reconcile(self, *, later: bool = False) -> Any:
        from django.conf import settings

        now = timezone.now() + timedelta(seconds=(settings.OMS_RECONCILE_GRACE_SECONDS + 1) if later else 0)
        return account_reconcile(account=self.account, now=now)

    def orders_at_fake(self) -> list[dict[str, Any]]:
        return self.fake.orders()

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """The exchange's host refuses connections for the block (a port nobody listens on)."""
        options = dict(self.account.broker_options)
        dead = f"http://127.0.0.1:{free_port()}"
        urls = {name: url.replace(self.fake.url, dead) for name, url in self.fake.api_urls().items()}
        BrokerAccount.objects.filter(pk=self.account.pk).update(broker_options={**options, "urls": {"api": urls}})
        try:
            yield
        finally:
            BrokerAccount.objects.filter(pk=self.account.pk).update(broker_options=options)


def ccxt_import(account: BrokerAccount, symbols: list[str] | None = None) -> dict[str, list[str]]:
    """``import_ccxt_markets``'s service: the account's markets as instruments."""
    exchange = ccxt_exchange_for_account(account)
    ccxt_markets_load(exchange)
    return ccxt_markets_import(
        venue=ccxt_venue(account.exchange_id), markets=markets_select(exchange, symbols), precision_mode=exchange.precisionMode
    )


@contextlib.contextmanager
def ccxt_running(settings: Any, owner: Any, kind: str = "spot") -> Iterator[Ccxt]:
    """``fake_exchange(kind)``, its markets imported as instruments, a quote
    for BTC and a CCXT testnet account of ``owner`` on it (a test module's
    ``ccxt`` fixture)."""
    settings.BROKER_HTTP_TIMEOUT = 2.0  # a lost answer costs the tests 2 s, not 10
    settings.OMS_RISK = dict(NO_LIMITS)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with fake_exchange(kind) as fake:
        # The fake enforces no request weights (its rate-limit answers are faults the
        # tests inject), so ccxt's own limiter waits 1 ms per weight, not Binance's 50.
        account = ccxt_account(owner, fake, label=f"ccxt {kind}", options={"rateLimit": 1})
        ccxt_import(account)
        set_quote(symbol_of(kind), str(PRICE), spread="1")
        with tasks_in_process():
            yield Ccxt(fake=fake, account=account, kind=kind)
