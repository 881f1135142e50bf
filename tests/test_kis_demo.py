"""The demo's second broker: with DEMO_FAKE_BROKERS, ``manage.py serve`` (what
``make run`` starts) brings up the fake KIS server and a KIS paper account of
the demo trader against it, which connects, quotes and trades; the fake ends
with the server."""

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
from pathlib import Path
from typing import Any

import pytest
import requests

from brokers.demo import DEMO_KIS_LABEL, demo_kis_account_ensure
from brokers.kis.fake.demo import DEMO_APP_KEY, DEMO_APP_SECRET, DEMO_CANO, DEMO_HTS_ID, DEMO_STOCKS
from brokers.models import BrokerAccount
from brokers.services import broker_account_credentials, broker_account_update
from marketdata.models import Instrument
from tests.servers import ROOT, free_port, server_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_kis_account_and_instruments_are_made_once(alice):
    first = demo_kis_account_ensure(owner=alice)
    assert first.changes and f"created the KIS demo account #{first.account_id}" in first.changes
    account = BrokerAccount.objects.get(pk=first.account_id)
    assert (account.kind, account.environment, account.base_currency, account.label) == ("kis", "paper", "KRW", DEMO_KIS_LABEL)
    assert (account.broker_account_number, account.broker_user_id) == (DEMO_CANO, DEMO_HTS_ID)
    assert broker_account_credentials(account=account) == {"app_key": DEMO_APP_KEY, "app_secret": DEMO_APP_SECRET}
    assert first.symbols == [f"KRX:{code}" for code in DEMO_STOCKS]
    for instrument in Instrument.objects.filter(symbol__in=first.symbols):
        assert (instrument.venue, instrument.quote_source, instrument.currency) == ("KRX", "kis", "KRW")

    again = demo_kis_account_ensure(owner=alice)
    assert again.account_id == first.account_id
    assert again.changes == []
    assert BrokerAccount.objects.filter(kind="kis").count() == 1

    broker_account_update(account=account, broker_account_number="50999999", credentials={"app_secret": "changed"}, merge_credentials=True)
    repaired = demo_kis_account_ensure(owner=alice)
    assert repaired.account_id == first.account_id and repaired.changes
    account.refresh_from_db()
    assert account.broker_account_number == DEMO_CANO
    assert broker_account_credentials(account=account)["app_secret"] == DEMO_APP_SECRET


# --- serve, for real ----------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            result = check()
            if result:
                return result
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s\n{log()}")


@pytest.mark.server
def test_serve_with_demo_fake_brokers_brings_up_a_kis_account_that_trades(tmp_path: Path):
    port, rest_port, ws_port = free_port(), free_port(), free_port()
    env = server_env(
        DEMO_FAKE_BROKERS="1",
        DEMO_KIS_REST_PORT=str(rest_port),
        DEMO_KIS_WS_PORT=str(ws_port),
        VAR_DIR=str(tmp_path),
        SIMULATOR_ENABLED="false",
        CELERY_TASK_ALWAYS_EAGER="true",
        KIS_RATE_PAPER="50",
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
        _wait("serve answers", lambda: requests.get(base + "/health/live", timeout=2).status_code == 200, 90, log)
        assert _port_open(rest_port) and _port_open(ws_port), log()
        printed = log()
        assert "KIS account" in printed and f"http://127.0.0.1:{rest_port}" in printed, printed
        demo = json.loads((tmp_path / "demo.json").read_text())
        headers = {"X-API-Key": demo["api_key"]}

        # The CCXT testnet account on the fake exchange, beside it: USDT funds through ccxt.
        found = re.search(r"CCXT account\s+(\d+) \(testnet, USDT\)", printed)
        assert found, printed
        ccxt_funds = requests.get(f"{base}/accounts/{found.group(1)}/funds", headers=headers, timeout=30)
        assert ccxt_funds.status_code == 200 and "USDT" in ccxt_funds.text, ccxt_funds.text

        status = requests.get(base + "/auth/kis/status", headers=headers, timeout=10)
        assert status.status_code == 200, status.text
        account_id = status.json()["account_id"]
        assert status.json()["configured"] is True
        assert DEMO_APP_SECRET not in status.text

        # It connects: KRW funds from the fake's demo account, a live KIS quote.
        funds = requests.get(f"{base}/accounts/{account_id}/funds", headers=headers, timeout=30)
        assert funds.status_code == 200, funds.text
        assert "100000000" in funds.text.replace(",", ""), funds.text
        _wait(
            "a quote of KRX:005930 from the KIS feed",
            lambda: [
                q for q in requests.get(base + "/quotes?symbols=KRX:005930", headers=headers, timeout=5).json()["results"] if q["last"]
            ],
            60,
            log,
        )

        # It trades: a market buy filled at the fake, booked as a deal and a position.
        sent = requests.post(
            f"{base}/accounts/{account_id}/orders",
            headers=headers,
            json={"symbol": "KRX:005930", "side": "buy", "order_type": "market", "qty": "3", "time_in_force": "day"},
            timeout=30,
        )
        assert sent.status_code == 202, sent.text
        order_id = sent.json()["order_id"]
        order = _wait(
            "the demo order filled",
            lambda: (o := requests.get(f"{base}/orders/{order_id}", headers=headers, timeout=5).json())["status"] == "filled" and o,
            60,
            log,
        )
        assert order["filled_qty"] == "3"
        positions = requests.get(f"{base}/accounts/{account_id}/positions", headers=headers, timeout=10).json()
        assert any(p["symbol"] == "KRX:005930" for p in positions["results"]), positions

        # The fake ends with the server, even when only the server is killed, and keeps its state.
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        # Its stop joins the REST and WebSocket threads (up to 5 s each) and saves
        # its state: a loaded machine may take a while.
        _wait("the fake KIS server gone", lambda: not _port_open(rest_port) and not _port_open(ws_port), 45, log)
        assert (tmp_path / "fake_kis_demo.json").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
