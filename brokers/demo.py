"""The demo's second broker (``DEMO_FAKE_BROKERS``): the fake KIS server run
beside ``manage.py serve``, a KIS paper account of the demo trader against it,
and the KRX instruments it quotes, so a newcomer sees a real broker's adapter
connect, stream and trade without credentials.

The fake is a subprocess (``manage.py run_fake_kis --demo``) started before
``serve`` replaces itself with daphne; it dies with that process (Linux:
the parent-death signal; everywhere: Ctrl-C reaches the whole process group).
Its accounts, orders, tokens and prices are kept in ``VAR_DIR/fake_kis_demo.json``
across restarts, as our database keeps what it booked; the first start seeds
it (``brokers.kis.fake.demo``). Delete both together to start afresh.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import transaction

from accounts.models import User
from brokers.kis import protocol
from brokers.kis.fake.demo import DEMO_APP_KEY, DEMO_APP_SECRET, DEMO_CANO, DEMO_HTS_ID, DEMO_PRODUCT_CODE, DEMO_STOCKS
from brokers.models import BrokerAccount, BrokerKind, Environment
from brokers.services import broker_account_create, broker_account_credentials, broker_account_update
from marketdata.instruments import instruments_import_for_venue

logger = logging.getLogger(__name__)

DEMO_KIS_LABEL = "KIS demo (fake server)"
DEMO_STATE_FILE = "fake_kis_demo.json"
START_TIMEOUT = 20.0  # seconds for the fake to answer its control API


@dataclass
class DemoKis:
    account_id: int
    symbols: list[str]
    changes: list[str] = field(default_factory=list)


def _demo_account_ensure(
    *,
    owner: User,
    kind: str,
    name: str,
    label: str,
    base_currency: str,
    credentials: dict[str, str],
    fields: dict[str, Any],
    changes: list[str],
) -> BrokerAccount:
    """The owner's demo account of ``kind`` named ``label``: created, or put
    back to ``credentials`` and ``fields`` when someone changed them (each
    change said in ``changes``)."""
    with transaction.atomic():
        account = BrokerAccount.objects.filter(owner=owner, kind=kind, label=label).order_by("pk").first()
        if account is None:
            account = broker_account_create(
                owner=owner, kind=kind, label=label, base_currency=base_currency, credentials=credentials, **fields
            )
            changes.append(f"created the {name} demo account #{account.pk}")
            return account
        stale = {field: value for field, value in fields.items() if getattr(account, field) != value}
        stored = broker_account_credentials(account=account) if account.credentials_encrypted else {}
        if stale or {k: stored.get(k) for k in credentials} != credentials:
            account = broker_account_update(account=account, credentials=credentials, merge_credentials=True, **stale)
            changes.append(f"reset the {name} demo account #{account.pk} to the fake's demo")
    return account


def _fake_start(argv: list[str], *, what: str, probe: str, up: int, ports: str) -> subprocess.Popen[bytes]:
    """Start ``manage.py`` with ``argv`` (a fake broker, its output going to
    ours, dying with this process) and wait until ``probe`` answers ``up``.
    Raises RuntimeError when it exits or does not answer in time."""
    proc = subprocess.Popen(  # noqa: S603 - our own command, fixed argv
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *argv],
        cwd=settings.BASE_DIR,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509 - serve has no other thread
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} ({ports} taken?)")
        with contextlib.suppress(requests.RequestException):
            # Kite's API wants its version header; the others ignore it.
            if requests.get(probe, headers={"X-Kite-Version": "3"}, timeout=1).status_code == up:
                return proc
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"{what} did not answer on {probe} within {START_TIMEOUT:g} s")
        time.sleep(0.1)


def demo_kis_account_ensure(*, owner: User) -> DemoKis:
    """The demo trader's KIS paper account on the fake's demo account, and the
    demo's KRX instruments quoted by KIS. Idempotent: a second run changes
    nothing; credentials or account fields someone changed are put back."""
    changes: list[str] = []
    account = _demo_account_ensure(
        owner=owner,
        kind=BrokerKind.KIS,
        name="KIS",
        label=DEMO_KIS_LABEL,
        base_currency="KRW",
        credentials={"app_key": DEMO_APP_KEY, "app_secret": DEMO_APP_SECRET},
        fields={
            "broker_account_number": DEMO_CANO,
            "broker_product_code": DEMO_PRODUCT_CODE,
            "broker_user_id": DEMO_HTS_ID,
            "environment": Environment.PAPER,
        },
        changes=changes,
    )
    symbols = demo_kis_instruments_ensure(changes=changes)
    return DemoKis(account_id=account.pk, symbols=symbols, changes=changes)


def demo_kis_instruments_ensure(*, changes: list[str]) -> list[str]:
    """The fake's demo stocks as KRX instruments (quoted by the KIS feed)."""
    result = instruments_import_for_venue(venue="KRX", items=[(code, name) for code, (name, _price) in DEMO_STOCKS.items()])
    if result.created or result.moved_aside:
        changes.extend(result.messages())
    return [protocol.kis_symbol(code) for code in DEMO_STOCKS]


# --- the fake server process ---------------------------------------------------------------------


@dataclass
class FakeKisProcess:
    proc: subprocess.Popen[bytes]
    rest_url: str
    ws_url: str

    def env(self) -> dict[str, str]:
        """What points this process's KIS paper accounts at the fake."""
        return {"KIS_PAPER_REST_URL": self.rest_url, "KIS_PAPER_WS_URL": self.ws_url}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the fake when its parent (serve, then daphne) ends."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def demo_fake_kis_start(*, rest_port: int = 0, ws_port: int = 0) -> FakeKisProcess:
    """Start ``manage.py run_fake_kis --demo`` on 127.0.0.1 (free ports for 0;
    its output goes to ours) and wait until it answers. Raises RuntimeError
    when it does not."""
    rest_port = rest_port or _free_port()
    ws_port = ws_port or _free_port()
    rest_url, ws_url = f"http://127.0.0.1:{rest_port}", f"ws://127.0.0.1:{ws_port}"
    argv = ["run_fake_kis", "--demo", "--port", str(rest_port), "--ws-port", str(ws_port)]
    argv += ["--state", str(Path(settings.VAR_DIR) / DEMO_STATE_FILE)]
    proc = _fake_start(argv, what="the fake KIS server", probe=rest_url + "/_fake/calls", up=200, ports=f"ports {rest_port}, {ws_port}")
    return FakeKisProcess(proc=proc, rest_url=rest_url, ws_url=ws_url)


# --- the CCXT demo account (the fake Binance spot exchange) ---------------------------------------

DEMO_CCXT_LABEL = "CCXT demo (fake Binance testnet)"
DEMO_CCXT_EXCHANGE = "binance"
DEMO_CCXT_API_KEY = "fake-ccxt-demo-key"
DEMO_CCXT_SECRET = "fake-ccxt-demo-secret"  # noqa: S105 - the fake's public demo secret


DEMO_CCXT_WALK = "0.0005"  # the fake's prices move up to 5 bp a second: the demo's tickers stream


@dataclass
class FakeCcxtProcess:
    proc: subprocess.Popen[bytes]
    url: str
    ws_url: str = ""

    def options(self) -> dict[str, Any]:
        """The broker_options pointing ccxt's Binance URLs at the fake (its
        market streams too: the account's tickers stream over WebSocket)."""
        from brokers.ccxt.fake import fake_api_urls, stream_ws_urls

        return {"urls": {"api": fake_api_urls(self.url, ws=stream_ws_urls(self.ws_url, "spot") if self.ws_url else None)}}


def demo_fake_ccxt_start(*, port: int = 0, ws_port: int = 0) -> FakeCcxtProcess:
    """Start ``manage.py run_fake_ccxt`` (Binance spot and its market
    streams, the demo key, prices walking) on 127.0.0.1 and wait until it
    answers. Raises RuntimeError when it does not. It keeps no state: a
    restart starts the fake's book afresh."""
    port = port or _free_port()
    ws_port = ws_port or _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["run_fake_ccxt", "--port", str(port), "--ws-port", str(ws_port), "--walk", DEMO_CCXT_WALK]
    argv += ["--api-key", DEMO_CCXT_API_KEY, "--secret", DEMO_CCXT_SECRET]
    proc = _fake_start(argv, what="the fake exchange", probe=url + "/api/v3/ping", up=200, ports=f"ports {port}, {ws_port}")
    return FakeCcxtProcess(proc=proc, url=url, ws_url=f"ws://127.0.0.1:{ws_port}")


@dataclass
class DemoCcxt:
    account_id: int
    symbols: list[str]
    changes: list[str] = field(default_factory=list)


def demo_ccxt_account_ensure(*, owner: User, options: dict[str, Any]) -> DemoCcxt:
    """The demo trader's CCXT testnet account on the running fake exchange
    (``options``: its broker_options, the fake's URLs) and the fake's markets
    as BINANCE instruments. Idempotent; credentials, fields or URLs changed
    (the fake on another port) are put back."""
    from brokers.ccxt.exchange import ccxt_exchange_for_account, ccxt_markets_load
    from brokers.ccxt.markets import ccxt_markets_import, markets_select
    from marketdata.venues import ccxt_venue

    changes: list[str] = []
    account = _demo_account_ensure(
        owner=owner,
        kind=BrokerKind.CCXT,
        name="CCXT",
        label=DEMO_CCXT_LABEL,
        base_currency="USDT",
        credentials={"api_key": DEMO_CCXT_API_KEY, "secret": DEMO_CCXT_SECRET},
        fields={"exchange_id": DEMO_CCXT_EXCHANGE, "environment": Environment.PAPER, "broker_options": options},
        changes=changes,
    )
    exchange = ccxt_exchange_for_account(account)
    ccxt_markets_load(exchange, reload=True)
    result = ccxt_markets_import(
        venue=ccxt_venue(DEMO_CCXT_EXCHANGE), markets=markets_select(exchange, None), precision_mode=exchange.precisionMode
    )
    if result["created"]:
        changes.append(f"imported {', '.join(result['created'])}")
    symbols = sorted(result["created"] + result["updated"])
    return DemoCcxt(account_id=account.pk, symbols=symbols, changes=changes)


# --- the Kite demo account (the fake Kite: REST, login page, ticker) --------------------------------

DEMO_KITE_LABEL = "Kite demo (fake server)"
CALLBACK_PATH = "api/v1/brokers/kite/callback"
POSTBACK_PATH = "api/v1/brokers/kite/postback"


@dataclass
class FakeKiteProcess:
    proc: subprocess.Popen[bytes]
    api_url: str
    ticker_url: str

    @property
    def login_url(self) -> str:
        from brokers.kite.fake.server import LOGIN_PATH

        return self.api_url + LOGIN_PATH

    def env(self) -> dict[str, str]:
        """What points this process's Kite accounts at the fake."""
        return {"KITE_API_URL": self.api_url, "KITE_LOGIN_URL": self.login_url, "KITE_TICKER_URL": self.ticker_url}


def demo_fake_kite_start(*, terminal_url: str, port: int = 0, ticker_port: int = 0, walk: float = 1.0) -> FakeKiteProcess:
    """Start ``manage.py run_fake_kite`` (the demo app, its login sending the
    browser back to ``terminal_url``'s callback, postbacks to its postback
    endpoint, prices walking every ``walk`` s) on 127.0.0.1 and wait until it
    answers. Raises RuntimeError when it does not. It keeps no state: a
    restart starts its book afresh, and the demo account logs in again."""
    port = port or _free_port()
    ticker_port = ticker_port or _free_port()
    api_url = f"http://127.0.0.1:{port}"
    argv = ["run_fake_kite", "--port", str(port), "--ticker-port", str(ticker_port), "--walk", str(walk)]
    argv += ["--redirect-url", terminal_url + CALLBACK_PATH, "--postback-url", terminal_url + POSTBACK_PATH]
    # Any Kite answer (a TokenException without a session: 403) means it is up.
    proc = _fake_start(argv, what="the fake Kite server", probe=api_url + "/user/profile", up=403, ports=f"ports {port}, {ticker_port}")
    return FakeKiteProcess(proc=proc, api_url=api_url, ticker_url=f"ws://127.0.0.1:{ticker_port}")


@dataclass
class DemoKite:
    account_id: int
    symbols: list[str]
    changes: list[str] = field(default_factory=list)


def demo_kite_account_ensure(*, owner: User) -> DemoKite:
    """The demo trader's Kite account on the fake's demo app (Kite user
    ``DEMO_USER_ID``) and the fake's instruments as NSE instruments quoted by
    the Kite ticker. Idempotent; credentials or fields changed are put back.
    The account is ``login_required`` until its owner logs in (the fake's
    login page logs in at once)."""
    from brokers.kite.fake.demo import DEMO_API_KEY, DEMO_API_SECRET, DEMO_INSTRUMENTS, DEMO_USER_ID
    from brokers.kite.instruments import COLUMNS, kite_instruments_import

    changes: list[str] = []
    account = _demo_account_ensure(
        owner=owner,
        kind=BrokerKind.KITE,
        name="Kite",
        label=DEMO_KITE_LABEL,
        base_currency="INR",
        credentials={"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET},
        fields={"broker_user_id": DEMO_USER_ID, "environment": Environment.LIVE},
        changes=changes,
    )
    rows = [
        dict(
            zip(
                COLUMNS,
                (str(token), str(token >> 8), symbol, name, str(price), "", "0", str(tick), "1", "EQ", segment, exchange),
                strict=True,
            )
        )
        for token, exchange, symbol, name, price, tick, segment in DEMO_INSTRUMENTS
    ]
    result = kite_instruments_import(rows)
    if result.created:
        changes.append(f"imported {result.created} Kite instruments")
    from brokers.kite.protocol import kite_symbol

    symbols = [kite_symbol(exchange, symbol) for _token, exchange, symbol, *_rest in DEMO_INSTRUMENTS]
    return DemoKite(account_id=account.pk, symbols=symbols, changes=changes)
