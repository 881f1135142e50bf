"""FakeCcxtExchange: an HTTP server on 127.0.0.1 answering as Binance's REST
API does, for ccxt's ``binance`` (kind ``spot``) or ``binanceusdm`` (kind
``futures``): signed endpoints check the X-MBX-APIKEY key and the HMAC-SHA256
signature and timestamp; errors are Binance's ``{"code": -XXXX, "msg": ...}``
with its HTTP statuses.

    with FakeCcxtExchange("spot") as fake:
        fake.add_account("key", "secret", {"USDT": "10000"})
        account options: {"urls": {"api": fake.api_urls()}}
        fake.set_price("BTCUSDT", "50000")      # limit orders cross, fill
        fake.fault("timeout_after_accept")      # the next order is booked, its answer lost
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from brokers.ccxt.fake import payloads
from brokers.ccxt.fake.engine import FUTURES, SPOT, Account, Engine, Order, Rejected, ms
from brokers.ccxt.fake.streams import FakeBinanceStreams

MAX_BODY = 64 * 1024
RECV_WINDOW_MS = 5000
EXCHANGE_IDS = {SPOT: "binance", FUTURES: "binanceusdm"}

# fault -> (HTTP status, Binance code, message); "timeout"/"timeout_after_accept" hold the answer instead.
FAULTS: dict[str, tuple[int, int, str]] = {
    "rate_limit": (
        429,
        -1003,
        "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. Please use the websocket for live updates to avoid polling the API.",
    ),
    "auth": (401, -2015, "Invalid API-key, IP, or permissions for action."),
    "api_key_invalid": (401, -2014, "API-key format invalid."),
    "insufficient_funds": (400, -2010, "Account has insufficient balance for requested action."),
    "margin_insufficient": (400, -2019, "Margin is insufficient."),
    "server_error": (500, -1001, "Internal error; unable to process your request. Please try again."),
    "unavailable": (503, 0, ""),
    "timeout": (0, 0, ""),
    "timeout_after_accept": (0, 0, ""),
}


@dataclass
class Fault:
    kind: str
    count: int
    path: str
    method: str
    seconds: float


class Hold(Exception):
    """Answer nothing for a while, then drop the connection."""


class FakeCcxtExchange:
    def __init__(
        self, kind: str = SPOT, *, latency: float = 0.0, port: int = 0, host: str = "127.0.0.1", streams: bool = False, ws_port: int = 0
    ) -> None:
        self.kind = kind
        self.host = host
        self.latency = latency
        self.engine = Engine(kind)
        self.calls: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Binance's market streams (ccxt.pro) beside the REST API, fed by the engine's price moves.
        self.streams: FakeBinanceStreams | None = None
        if streams:
            self.streams = FakeBinanceStreams(self.engine, host=host, port=ws_port)
            self.engine.price_listeners.append(self.streams.trade)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeCcxtExchange:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"fake-ccxt-{self.kind}", daemon=True
            )
            self._thread.start()
            if self.streams is not None:
                self.streams.start()
        return self

    def stop(self) -> None:
        if self.streams is not None:
            self.streams.stop()
        if self._thread is not None:
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeCcxtExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def exchange_id(self) -> str:
        """The ccxt exchange id this fake answers as."""
        return EXCHANGE_IDS[self.kind]

    def api_urls(self) -> dict[str, str]:
        """ccxt's ``urls["api"]`` pointing every Binance API this fake serves
        here (with the market streams' ``ws`` URLs when it streams)."""
        return fake_api_urls(self.url, ws=self.streams.ws_urls() if self.streams is not None else None)

    def ccxt_options(self) -> dict[str, Any]:
        """An account's broker_options pointing ccxt at this fake."""
        return {"urls": {"api": self.api_urls()}}

    # --- control --------------------------------------------------------------------------

    def add_account(self, api_key: str, secret: str, balances: dict[str, Any]) -> None:
        self.engine.add_account(api_key, secret, {k: Decimal(str(v)) for k, v in balances.items()})

    def set_price(self, symbol: str, price: Decimal | int | str) -> None:
        """The market trades at ``price`` (Binance's id, BTCUSDT): resting limit orders it reaches fill."""
        self.engine.set_price(symbol, Decimal(str(price)))

    def walk(self, step: float, rng: random.Random) -> None:
        """Move every market's price by a random fraction within ``step``
        (to its tick, never below one): the demo's market."""
        with self.engine.lock:
            markets = [(m.symbol, m.price, m.tick) for m in self.engine.markets.values()]
        for symbol, price, tick in markets:
            moved = price * (1 + Decimal(str(rng.uniform(-step, step))))
            self.set_price(symbol, max(tick, (moved / tick).to_integral_value() * tick))

    def fault(self, kind: str, count: int = 1, *, path: str = "", method: str = "", seconds: float = 2.0) -> None:
        """Misbehave on the next ``count`` requests (to ``path``/``method`` when given)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        with self._lock:
            self._faults.append(Fault(kind, count, path, method.upper(), seconds))

    def configure(self, *, latency: float | None = None) -> None:
        if latency is not None:
            self.latency = max(0.0, float(latency))

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()

    def orders(self) -> list[dict[str, Any]]:
        """Every order the fake holds (for assertions)."""
        return self.engine.orders_snapshot()

    def balances(self, api_key: str) -> dict[str, Decimal]:
        with self.engine.lock:
            account = self.engine.accounts[api_key]
            return {
                a: account.balances.get(a, Decimal(0)) + account.locked.get(a, Decimal(0))
                for a in set(account.balances) | set(account.locked)
            }

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (not fault.path or fault.path == path) and (not fault.method or fault.method == method):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- requests -------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: str, body: str, api_key: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            if path in self.calls or len(self.calls) < 500:
                self.calls[f"{method} {path}"] += 1
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(method, path)
        after_accept = False
        if fault is not None:
            if fault.kind == "timeout":
                self._hold(fault.seconds)
            if fault.kind == "timeout_after_accept":
                after_accept = True
            elif fault.kind == "unavailable":
                return 503, "<html><body><h1>503 Service Unavailable</h1></body></html>", {}
            else:
                status, code, msg = FAULTS[fault.kind]
                headers = {"Retry-After": "1"} if status == 429 else {}
                return status, {"code": code, "msg": msg}, headers
        try:
            result = self._route(method, path, query, body, api_key)
        except Rejected as exc:
            return exc.status, {"code": exc.code, "msg": exc.msg}, {}
        if after_accept and fault is not None:
            self._hold(fault.seconds)
        return 200, result, {}

    def _hold(self, seconds: float) -> None:
        self._stopping.wait(seconds)
        raise Hold

    def _signed(self, method: str, query: str, body: str, api_key: str) -> tuple[Account, dict[str, str]]:
        if not api_key:
            raise Rejected(401, -2014, "API-key format invalid.")
        account = self.engine.accounts.get(api_key)
        if account is None:
            raise Rejected(401, -2015, "Invalid API-key, IP, or permissions for action.")
        payload = body if method in ("POST", "PUT") and body else query
        signed, _, signature = payload.rpartition("&signature=")
        expected = hmac.new(account.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            raise Rejected(400, -1022, "Signature for this request is not valid.")
        params = dict(parse_qsl(signed, keep_blank_values=True))
        try:
            timestamp = int(params.get("timestamp", "0"))
            window = int(params.get("recvWindow", RECV_WINDOW_MS))
        except ValueError:
            raise Rejected(400, -1100, "Illegal characters found in parameter 'timestamp'.") from None
        if abs(ms() - timestamp) > window:
            raise Rejected(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return account, params

    def _route(self, method: str, path: str, query: str, body: str, api_key: str) -> Any:
        e = self.engine
        public = dict(parse_qsl(query, keep_blank_values=True))
        spot = self.kind == SPOT
        prefix = "/api/v3" if spot else "/fapi/v1"
        # public
        if method == "GET":
            if path in ("/api/v3/ping", "/fapi/v1/ping"):
                return {}
            if path in ("/api/v3/time", "/fapi/v1/time"):
                return {"serverTime": ms()}
            if path == "/api/v3/exchangeInfo":
                return payloads.exchange_info(e, SPOT)
            if path == "/fapi/v1/exchangeInfo":
                return payloads.exchange_info(e, FUTURES)
            if path == "/dapi/v1/exchangeInfo":
                return {"timezone": "UTC", "serverTime": ms(), "rateLimits": payloads.RATE_LIMITS, "exchangeFilters": [], "symbols": []}
            if path == f"{prefix}/ticker/24hr":
                with e.lock:
                    if public.get("symbol"):
                        return payloads.ticker(e, e.market(public["symbol"]))
                    if public.get("symbols"):
                        try:
                            wanted = json.loads(public["symbols"])
                        except ValueError:
                            raise Rejected(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
                        if not isinstance(wanted, list) or len(wanted) > 100:
                            raise Rejected(400, -1100, "Illegal characters found in parameter 'symbols'.")
                        return [payloads.ticker(e, e.market(str(s))) for s in wanted]
                    return [payloads.ticker(e, m) for m in e.markets.values()]
            if path == f"{prefix}/klines":
                interval = public.get("interval", "")
                if interval not in payloads.INTERVALS:
                    raise Rejected(400, -1120, "Invalid interval.")
                limit = max(1, min(_int(public.get("limit"), 500), 1000 if spot else 1500))  # Binance's most per call
                start = _int(public.get("startTime"), -1)
                end = _int(public.get("endTime"), -1)
                with e.lock:
                    market = e.market(public.get("symbol", ""))
                    return payloads.klines(market, interval, limit, start if start >= 0 else None, end if end >= 0 else None)
        account, params = self._signed(method, query, body, api_key)
        with e.lock:
            if spot:
                return self._spot(method, path, account, params)
            return self._futures(method, path, account, params)

    def _order_fields(self, params: dict[str, str]) -> dict[str, Any]:
        price = _decimal(params.get("price"), "price") if params.get("price") else None
        return {
            "symbol": params.get("symbol", ""),
            "side": params.get("side", ""),
            "type_": params.get("type", ""),
            "qty": _decimal(params.get("quantity"), "quantity"),
            "price": price,
            "time_in_force": params.get("timeInForce", "GTC"),
            "client_order_id": params.get("newClientOrderId", ""),
            "reduce_only": params.get("reduceOnly", "false").lower() == "true",
            "stop_price": _decimal(params.get("stopPrice"), "stopPrice") if params.get("stopPrice") else None,
        }

    def _spot(self, method: str, path: str, account: Account, params: dict[str, str]) -> Any:
        e = self.engine
        if path == "/api/v3/account" and method == "GET":
            return payloads.spot_account(account)
        if path == "/api/v3/order":
            if method == "POST":
                if "reduceOnly" in params:
                    raise Rejected(400, -1104, "Not all sent parameters were read.")
                order = e.place(account, **self._order_fields(params))
                kind = params.get("newOrderRespType", "FULL").upper()
                if kind == "ACK":
                    return {
                        "symbol": order.symbol,
                        "orderId": order.order_id,
                        "orderListId": -1,
                        "clientOrderId": order.client_order_id,
                        "transactTime": order.created,
                    }
                return payloads.spot_order(order, full=kind == "FULL")
            if method == "GET":
                return payloads.spot_order(
                    e.find(account.api_key, params.get("symbol", ""), params.get("orderId"), params.get("origClientOrderId"))
                )
            if method == "DELETE":
                order = e.cancel(account, params.get("symbol", ""), params.get("orderId"), params.get("origClientOrderId"))
                return payloads.spot_order(order, cancel_id=params.get("newClientOrderId") or f"cancel{order.order_id}")
        if path == "/api/v3/order/cancelReplace" and method == "POST":
            symbol = params.get("symbol", "")
            old = e.cancel(account, symbol, params.get("cancelOrderId"), params.get("cancelOrigClientOrderId"))
            fields = self._order_fields(params)
            new = e.place(account, **fields)
            return {
                "cancelResult": "SUCCESS",
                "newOrderResult": "SUCCESS",
                "cancelResponse": payloads.spot_order(old, cancel_id=params.get("cancelNewClientOrderId") or f"cancel{old.order_id}"),
                "newOrderResponse": payloads.spot_order(new, full=True),
            }
        if path == "/api/v3/openOrders" and method == "GET":
            wanted = params.get("symbol")
            if wanted:
                e.market(wanted)
            return [payloads.spot_order(o) for o in self._mine(account, wanted) if o.open]
        if path == "/api/v3/allOrders" and method == "GET":
            e.market(params.get("symbol", ""))
            rows = [o for o in self._mine(account, params["symbol"]) if o.created >= _int(params.get("startTime"), 0)]
            return [payloads.spot_order(o) for o in rows[-_limit(params, 500, 1000) :]]
        if path == "/api/v3/myTrades" and method == "GET":
            e.market(params.get("symbol", ""))
            return self._trades(account, params)
        raise Rejected(404, -1000, f"Unknown endpoint {method} {path}.")

    def _futures(self, method: str, path: str, account: Account, params: dict[str, str]) -> Any:
        e = self.engine
        if path in ("/fapi/v3/account", "/fapi/v2/account") and method == "GET":
            return payloads.futures_account(e, account)
        if path in ("/fapi/v3/positionRisk", "/fapi/v2/positionRisk") and method == "GET":
            return payloads.position_risk(e, account, params.get("symbol"))
        if path == "/fapi/v1/leverageBracket" and method == "GET":
            return payloads.leverage_brackets(e)
        if path == "/fapi/v1/positionSide/dual" and method == "GET":
            return {"dualSidePosition": False}
        if path == "/fapi/v1/order":
            symbol = params.get("symbol", "")
            if method == "POST":
                order = e.place(account, **self._order_fields(params))
                return payloads.futures_order(order, with_time=False)
            if method == "GET":
                return payloads.futures_order(e.find(account.api_key, symbol, params.get("orderId"), params.get("origClientOrderId")))
            if method == "DELETE":
                return payloads.futures_order(e.cancel(account, symbol, params.get("orderId"), params.get("origClientOrderId")))
            if method == "PUT":
                order = e.amend(
                    account,
                    symbol,
                    params.get("orderId"),
                    params.get("origClientOrderId"),
                    _decimal(params.get("quantity"), "quantity"),
                    _decimal(params.get("price"), "price"),
                )
                return payloads.futures_order(order)
        if path == "/fapi/v1/openOrders" and method == "GET":
            wanted = params.get("symbol")
            if wanted:
                e.market(wanted)
            return [payloads.futures_order(o) for o in self._mine(account, wanted) if o.open]
        if path == "/fapi/v1/allOrders" and method == "GET":
            e.market(params.get("symbol", ""))
            rows = [o for o in self._mine(account, params["symbol"]) if o.updated >= _int(params.get("startTime"), 0)]
            return [payloads.futures_order(o) for o in rows[-_limit(params, 500, 1000) :]]
        if path == "/fapi/v1/userTrades" and method == "GET":
            if params.get("symbol"):
                e.market(params["symbol"])
            return self._trades(account, params)
        raise Rejected(404, -1000, f"Unknown endpoint {method} {path}.")

    def _mine(self, account: Account, symbol: str | None) -> list[Order]:
        return [o for o in self.engine.orders.values() if o.api_key == account.api_key and (not symbol or o.symbol == symbol)]

    def _trades(self, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
        since = _int(params.get("startTime"), 0)
        rows = [r for r in payloads.trades(self.engine, self._mine(account, params.get("symbol"))) if r["time"] >= since]
        if params.get("orderId"):
            rows = [r for r in rows if str(r["orderId"]) == params["orderId"]]
        limit = _limit(params, 500, 1000)
        if params.get("fromId"):
            rows = [r for r in rows if r["id"] >= _int(params["fromId"], 0)]
        elif not params.get("startTime") and not params.get("orderId"):
            return rows[-limit:]  # Binance: "otherwise the most recent trades are returned"
        return rows[:limit]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise Rejected(400, -1100, "Illegal characters found in a parameter.") from None


def _limit(params: dict[str, str], default: int, most: int) -> int:
    return max(1, min(_int(params.get("limit"), default), most))


def _decimal(value: str | None, name: str) -> Decimal:
    if value in (None, ""):
        raise Rejected(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise Rejected(400, -1100, f"Illegal characters found in parameter '{name}'.") from None
    if not result.is_finite():
        raise Rejected(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return result


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeCcxtExchange


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30
    # The headers and the body go out in two writes: with Nagle's algorithm on, the body waited for the
    # client's delayed ACK of the headers (~40 ms an answer), which no real exchange's server adds.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"code": -1000, "msg": "Request too large."}, {})
            return
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            status, payload, headers = self.server.fake.answer(
                self.command, parts.path, parts.query, body, self.headers.get("X-MBX-APIKEY", "")
            )
        except Hold:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(payload, str) else "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def fake_api_urls(url: str, *, ws: dict[str, str] | None = None) -> dict[str, Any]:
    """ccxt's ``urls["api"]`` pointing every Binance API a fake at ``url``
    serves there; ``ws``: ccxt.pro's market-stream URLs (FakeBinanceStreams.ws_urls)."""
    u = url.rstrip("/")
    urls: dict[str, Any] = {
        "public": f"{u}/api/v3",
        "private": f"{u}/api/v3",
        "v1": f"{u}/api/v1",
        "fapiPublic": f"{u}/fapi/v1",
        "fapiPublicV2": f"{u}/fapi/v2",
        "fapiPublicV3": f"{u}/fapi/v3",
        "fapiPrivate": f"{u}/fapi/v1",
        "fapiPrivateV2": f"{u}/fapi/v2",
        "fapiPrivateV3": f"{u}/fapi/v3",
        "dapiPublic": f"{u}/dapi/v1",
        "dapiPrivate": f"{u}/dapi/v1",
        "dapiPrivateV2": f"{u}/dapi/v2",
    }
    if ws:
        urls["ws"] = dict(ws)
    return urls
