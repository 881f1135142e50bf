"""The fake Binance market streams at the protocol level, as Binance's
WebSocket Streams documentation has them: live SUBSCRIBE/UNSUBSCRIBE answered
``{"result": null, "id": n}``, LIST_SUBSCRIPTIONS, the combined property,
error frames for bad requests, raw and combined payloads with Binance's field
names, the server's pings."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from brokers.ccxt.fake import FakeCcxtExchange


@pytest.fixture
def fake() -> Iterator[FakeCcxtExchange]:
    with FakeCcxtExchange("spot", streams=True) as fake:
        yield fake


def ask(ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps(request))
    return json.loads(ws.recv(timeout=5))


def test_subscribe_list_unsubscribe_and_the_combined_property(fake):
    assert fake.streams is not None
    with connect(fake.streams.ws_urls()["spot"] + "/0") as ws:
        assert ask(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@kline_1m"], "id": 1}) == {"result": None, "id": 1}
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {"result": ["btcusdt@trade", "ethusdt@kline_1m"], "id": 3}
        assert ask(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {"result": False, "id": 2}
        fake.set_price("BTCUSDT", "50010")
        trade = json.loads(ws.recv(timeout=5))
        assert trade["e"] == "trade" and trade["s"] == "BTCUSDT" and trade["p"] == "50010.00000000" and trade["q"] == "0.00001000"
        assert {"E", "t", "T", "m", "M"} <= set(trade)
        assert ask(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 312}) == {"result": None, "id": 312}
        assert ask(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}) == {"result": None, "id": 5}
        fake.set_price("ETHUSDT", "3001")
        kline = json.loads(ws.recv(timeout=5))
        assert kline["stream"] == "ethusdt@kline_1m" and kline["data"]["e"] == "kline"
        k = kline["data"]["k"]
        assert (k["i"], k["o"], k["c"], k["x"]) == ("1m", "3001.00000000", "3001.00000000", False) and k["T"] - k["t"] == 59_999


def test_a_combined_stream_sends_the_full_ticker(fake):
    assert fake.streams is not None
    with connect(fake.streams.url + "/stream?streams=btcusdt@ticker/ethusdt@trade") as ws:
        fake.set_price("BTCUSDT", "50100")
        frame = json.loads(ws.recv(timeout=5))
        assert frame["stream"] == "btcusdt@ticker"
        ticker = frame["data"]
        assert ticker["e"] == "24hrTicker" and ticker["c"] == "50100.00000000"
        assert Decimal(ticker["b"]) < Decimal(ticker["c"]) < Decimal(ticker["a"])
        assert {"E", "s", "p", "P", "w", "x", "Q", "B", "A", "o", "h", "l", "v", "q", "O", "C", "F", "L", "n"} <= set(ticker)


def test_bad_requests_are_answered_with_binances_error_frames(fake):
    assert fake.streams is not None
    with connect(fake.streams.url + "/ws") as ws:
        assert ask(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": -1})["code"] == 2
        answer = ask(ws, {"method": "PLEASE", "params": [], "id": 7})
        assert answer["code"] == 2 and "unknown variant" in answer["msg"] and answer["id"] == 7
        assert ask(ws, {"method": "SET_PROPERTY", "params": ["colour", True], "id": 8}) == {"code": 0, "msg": "Unknown property", "id": 8}
        assert ask(ws, {"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 9})["code"] == 1
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=5))["code"] == 3
        assert ask(ws, {"method": "SUBSCRIBE", "params": ["nosuch@ticker"], "id": 10})["code"] == 2
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 11}) == {"result": [], "id": 11}


def test_the_server_pings_and_drop_closes_without_a_close_frame(fake):
    assert fake.streams is not None
    fake.streams.ping_interval = 0.1
    with connect(fake.streams.url + "/ws", ping_interval=None) as ws:
        deadline = time.monotonic() + 5
        while fake.streams.pongs < 2:  # the client's library answers each ping
            assert time.monotonic() < deadline, "no pongs"
            time.sleep(0.05)
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {"result": [], "id": 1}
        fake.streams.drop()
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=5)
