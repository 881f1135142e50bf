"""The fake Kite server against the official kiteconnect client, over real
sockets: the envelope and HTTP codes, headers, the session checksum, CSV
instruments, and order updates to listeners and the postback URL."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from brokers.kite.client import kite_checksum
from tests import kite_support
from tests.kite_support import API_KEY, API_SECRET, USER_ID

fake_kite = kite_support.fake_kite  # the fixture


def _client(fake, token=None) -> KiteConnect:
    return KiteConnect(API_KEY, access_token=token, root=fake.api_url, timeout=5)


def test_the_session_checksum_is_checked_and_the_request_token_is_single_use(fake_kite):
    request_token = fake_kite.exchange.issue_request_token(API_KEY)
    kite = _client(fake_kite)
    with pytest.raises(kite_errors.TokenException):
        kite.generate_session(request_token, api_secret="not-the-secret")
    session = kite.generate_session(request_token, api_secret=API_SECRET)
    assert session["user_id"] == USER_ID and session["access_token"]
    with pytest.raises(kite_errors.TokenException):  # used once already
        _client(fake_kite).generate_session(request_token, api_secret=API_SECRET)
    assert kite_checksum("a", "b", "c") == __import__("hashlib").sha256(b"abc").hexdigest()


def test_calls_need_the_version_header_and_a_valid_token(fake_kite):
    token = fake_kite.issue_session(API_KEY)
    url = f"{fake_kite.api_url}/user/margins"
    no_version = requests.get(url, headers={"Authorization": f"token {API_KEY}:{token}"}, timeout=5)
    assert no_version.status_code == 400 and no_version.json()["error_type"] == "InputException"
    bad_token = requests.get(url, headers={"X-Kite-Version": "3", "Authorization": f"token {API_KEY}:nope"}, timeout=5)
    assert bad_token.status_code == 403 and bad_token.json() == {
        "status": "error",
        "message": "Incorrect `api_key` or `access_token`.",
        "data": None,
        "error_type": "TokenException",
    }
    margins = _client(fake_kite, token).margins()
    assert margins["equity"]["available"]["cash"] == 1_000_000 and "commodity" in margins


def test_instruments_answer_csv(fake_kite):
    token = fake_kite.issue_session(API_KEY)
    answer = requests.get(
        f"{fake_kite.api_url}/instruments", headers={"X-Kite-Version": "3", "Authorization": f"token {API_KEY}:{token}"}, timeout=5
    )
    assert answer.headers["content-type"].startswith("text/csv")
    assert (
        answer.text.splitlines()[0]
        == "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange"
    )
    rows = _client(fake_kite, token).instruments()
    assert {r["tradingsymbol"] for r in rows} == {"INFY", "NIFTY 50"}


def test_orders_move_and_every_change_reaches_listeners_and_the_postback_url(fake_kite):
    received: list[dict] = []
    heard: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        fake_kite.postback_url = f"http://127.0.0.1:{hook.server_address[1]}/postback"
        fake_kite.order_listeners.append(heard.append)
        kite = _client(fake_kite, fake_kite.issue_session(API_KEY))
        order_id = kite.place_order(
            variety="regular",
            exchange="NSE",
            tradingsymbol="INFY",
            transaction_type="BUY",
            quantity=2,
            product="CNC",
            order_type="LIMIT",
            price=1400,
            tag="abc123",
        )
        assert kite.order_history(order_id)[-1]["status"] == "OPEN"
        fake_kite.set_price("NSE", "INFY", Decimal(1399))
        assert fake_kite.wait_idle()
        assert [o["status"] for o in heard] == ["OPEN", "COMPLETE"]
        assert [o["status"] for o in received] == ["OPEN", "COMPLETE"]
        done = received[-1]
        assert done["user_id"] == USER_ID and done["tag"] == "abc123" and done["filled_quantity"] == 2
        assert done["checksum"] == kite_checksum(done["order_id"], done["order_timestamp"], API_SECRET)
        trades = kite.order_trades(order_id)
        assert [(t["quantity"], t["average_price"]) for t in trades] == [(2, 1399)]
        with pytest.raises(kite_errors.InputException):
            kite.place_order(
                variety="regular",
                exchange="NSE",
                tradingsymbol="INFY",
                transaction_type="BUY",
                quantity=1,
                product="CNC",
                order_type="MARKET",
                tag="not-alnum!",
            )
    finally:
        hook.shutdown()
        hook.server_close()
