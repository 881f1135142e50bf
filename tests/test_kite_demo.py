"""The demo's Kite account: with DEMO_FAKE_BROKERS, ``manage.py serve`` (what
``make run`` starts) brings up the fake Kite (REST, login page, ticker) and a
Kite account of the demo trader on its demo app; the trader logs in through
the fake's login page, sees live quotes from the ticker and trades, the fill
coming back by postback; the fake ends with the server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from brokers.demo import DEMO_KITE_LABEL, demo_kite_account_ensure
from brokers.kite.fake.demo import DEMO_API_KEY, DEMO_API_SECRET, DEMO_USER_ID
from brokers.models import BrokerAccount
from brokers.services import broker_account_credentials, broker_account_update
from marketdata.models import Instrument
from tests.servers import ROOT, server_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_kite_account_and_instruments_are_made_once(alice):
    first = demo_kite_account_ensure(owner=alice)
    assert f"created the Kite demo account #{first.account_id}" in first.changes
    account = BrokerAccount.objects.get(pk=first.account_id)
    assert (account.kind, account.base_currency, account.label, account.broker_user_id) == ("kite", "INR", DEMO_KITE_LABEL, DEMO_USER_ID)
    assert broker_account_credentials(account=account) == {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET}
    assert first.symbols == ["NSE:INFY", "NSE:RELIANCE", "NSE:NIFTY_50"]
    infy = Instrument.objects.get(symbol="NSE:INFY")
    assert (infy.venue, infy.quote_source, infy.currency, infy.broker_codes["kite"], infy.tick_size) == (
        "NSE",
        "kite",
        "INR",
        408065,
        Decimal("0.05"),
    )
    assert Instrument.objects.get(symbol="NSE:NIFTY_50").type == "index"

    again = demo_kite_account_ensure(owner=alice)
    assert again.account_id == first.account_id and again.changes == []
    broker_account_update(account=account, broker_user_id="XX9999", credentials={"api_secret": "changed"}, merge_credentials=True)
    repaired = demo_kite_account_ensure(owner=alice)
    assert repaired.account_id == first.account_id and repaired.changes
    account.refresh_from_db()
    assert account.broker_user_id == DEMO_USER_ID
    assert broker_account_credentials(account=account)["api_secret"] == DEMO_API_SECRET
    assert BrokerAccount.objects.filter(owner=alice, kind="kite").count() == 1


# --- serve, for real ----------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ports(count: int) -> list[int]:
    """Free ports of 21000-21999 (this suite's range for servers it starts)."""
    found: list[int] = []
    for port in range(21000 + os.getpid() % 500, 22000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError("no free ports in 21000-21999")


def _wait(what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, KeyError, ValueError):
            result = check()
            if result:
                return result
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s\n{log()}")


@pytest.mark.server
def test_serve_with_demo_fake_brokers_brings_up_a_kite_account_to_log_in_to_and_trade(tmp_path: Path):
    port, kite_port, ticker_port = _ports(3)
    env = server_env(
        DEMO_FAKE_BROKERS="1",
        DEMO_KITE_PORT=str(kite_port),
        DEMO_KITE_TICKER_PORT=str(ticker_port),
        VAR_DIR=str(tmp_path),
        SIMULATOR_ENABLED="false",
        CELERY_TASK_ALWAYS_EAGER="true",
        KITE_TICKER_RELOAD_INTERVAL="1",
    )
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        _wait("serve answers", lambda: requests.get(base + "/health/live", timeout=2).status_code == 200, 120, log)
        assert _port_open(kite_port) and _port_open(ticker_port), log()
        printed = log()
        found = re.search(r"Kite account\s+(\d+) \(INR\) on the fake Kite http://127.0.0.1:(\d+)", printed)
        assert found and int(found.group(2)) == kite_port, printed
        account_id = int(found.group(1))
        assert f"{base}/accounts/{account_id}/kite/login" in printed, printed
        demo = json.loads((tmp_path / "demo.json").read_text())
        session = requests.Session()
        session.headers["X-API-Key"] = demo["api_key"]

        # Not logged in yet: its orders are refused at once.
        order = {"symbol": "NSE:INFY", "side": "buy", "order_type": "market", "qty": "2", "time_in_force": "day"}
        refused = session.post(f"{base}/accounts/{account_id}/orders", json=order, timeout=30)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "broker_login_required", refused.text

        # The login link: the terminal -> the fake's login page -> the terminal's callback.
        login = session.get(f"{base}/accounts/{account_id}/kite/login", timeout=30)
        assert login.status_code == 200, login.text
        assert [r.status_code for r in login.history] == [302, 302]
        assert login.history[1].url.startswith(f"http://127.0.0.1:{kite_port}/connect/login")
        assert (login.json()["status"], login.json()["kite_user_id"]) == ("active", DEMO_USER_ID)

        funds = session.get(f"{base}/accounts/{account_id}/funds", timeout=30)
        assert funds.status_code == 200 and funds.json()["currency"] == "INR", funds.text
        _wait(
            "a quote of NSE:INFY from the Kite ticker",
            lambda: [q for q in session.get(base + "/quotes?symbols=NSE:INFY", timeout=5).json()["results"] if q["last"]],
            60,
            log,
        )

        # It trades: a market buy filled at the fake, the fill back by postback, booked as a position.
        sent = session.post(f"{base}/accounts/{account_id}/orders", json=order, timeout=30)
        assert sent.status_code == 202, sent.text
        order_id = sent.json()["order_id"]
        filled = _wait(
            "the demo order filled",
            lambda: (o := session.get(f"{base}/orders/{order_id}", timeout=5).json())["status"] == "filled" and o,
            60,
            log,
        )
        assert filled["filled_qty"] == "2"
        positions = session.get(f"{base}/accounts/{account_id}/positions", timeout=10).json()
        assert any(p["symbol"] == "NSE:INFY" for p in positions["results"]), positions

        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        _wait("the fake Kite gone", lambda: not _port_open(kite_port) and not _port_open(ticker_port), 45, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
