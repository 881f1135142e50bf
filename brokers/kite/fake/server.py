"""FakeKiteServer: Kite Connect v3's REST API at its root on 127.0.0.1 (as the
official client joins paths with urljoin), its login page, and order updates
pushed to ``order_listeners`` and the postback URL.

    with FakeKiteServer() as kite:
        kite.add_app(API_KEY, API_SECRET, "AB1234", redirect_url=callback)
        kite.add_instrument(Instrument(408065, "NSE", "INFY", last_price=Decimal(1500)))
        settings.KITE_API_URL, settings.KITE_LOGIN_URL = kite.api_url, kite.login_url

Answers as Kite documents them: ``{"status": "success", "data": ...}``; errors
``{"status": "error", "error_type": ..., "message": ...}`` with Kite's HTTP
codes (TokenException 403, InputException 400, NetworkException 503, 429 when
rate limited); ``/instruments`` as CSV. Every call but the login's needs
``X-Kite-Version: 3`` and ``Authorization: token api_key:access_token``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from brokers.kite.fake.exchange import Exchange, Instrument, KiteError, input_error, now_ist

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
MAX_BODY = 64 * 1024
LOGIN_PATH = "/connect/login"


def checksum(*parts: str) -> str:
    import hashlib

    return hashlib.sha256("".join(parts).encode()).hexdigest()


@dataclass
class Fault:
    kind: str  # error | lose_response | rate_limit | token_exception | network
    path: str = ""  # a path prefix ("" any)
    method: str = ""  # "" any
    count: int = 1
    params: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], fake: FakeKiteServer) -> None:
        super().__init__(address, _Handler)
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            if len(self.open_sockets) >= 128:  # bounded: refuse rather than queue forever
                self.shutdown_request(request)
                return
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up is no news for a test server

    def close_all(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15
    server_version = "FakeKite/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        length = self.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            self._send(400, _error_body(input_error("Bad request body.")), JSON_TYPE)
            return
        raw = self.rfile.read(int(length)) if int(length) else b""
        query = {k: v for k, v in parse_qs(url.query).items()}
        form = dict(parse_qsl(raw.decode("utf-8", "replace"))) if raw else {}
        fake.count(method, url.path)
        fault = fake.take_fault(method, url.path)
        content_type: str = JSON_TYPE
        headers: dict[str, str] = {}
        try:
            if fault is not None and fault.kind != "lose_response":
                raise _fault_error(fault)
            status, body, content_type, headers = fake.route(method, url.path, query, form, self.headers)
        except KiteError as exc:
            status, body = exc.status, _error_body(exc)
        except Exception:
            logger.exception("fake Kite: %s %s failed", method, url.path)
            status, body = 500, _error_body(KiteError(500, "GeneralException", "fake Kite server error"))
            content_type = JSON_TYPE
        if fault is not None and fault.kind == "lose_response":
            self.close_connection = True  # done, and the answer is lost
            return
        self._send(status, body, content_type, headers)


def _fault_error(fault: Fault) -> KiteError:
    if fault.kind == "rate_limit":
        return KiteError(429, "NetworkException", "Too many requests")
    if fault.kind == "token_exception":
        return KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
    if fault.kind == "network":
        return KiteError(503, "NetworkException", "Couldn't connect to the OMS.")
    return KiteError(
        int(fault.params.get("status", 400)),
        str(fault.params.get("error_type", "InputException")),
        str(fault.params.get("message", "fault")),
    )


def _error_body(exc: KiteError) -> bytes:
    return json.dumps({"status": "error", "message": exc.message, "data": None, "error_type": exc.error_type}).encode()


def _ok(data: Any) -> tuple[int, bytes, str, dict[str, str]]:
    return 200, json.dumps({"status": "success", "data": data}, default=str).encode(), JSON_TYPE, {}


class FakeKiteServer:
    """The fake Kite. ``order_listeners``: callables given each order's new
    state (Kite's postback shape) on every status change; ``postback_url``:
    where the postback JSON (with its checksum) is POSTed."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.exchange = Exchange()
        self.exchange.on_order = self._on_order
        self.order_listeners: list[Callable[[dict[str, Any]], object]] = []
        self.postback_url: str | None = None
        self.postbacks_sent: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None
        self._updates: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._dispatcher: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def login_url(self) -> str:
        return f"{self.api_url}{LOGIN_PATH}"

    def start(self) -> FakeKiteServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-kite", daemon=True)
            self._thread.start()
            self._dispatcher = threading.Thread(target=self._dispatch, name="fake-kite-updates", daemon=True)
            self._dispatcher.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._thread = None
        if self._dispatcher is not None:
            self._updates.put(None)
            self._dispatcher.join(timeout=5)
            self._dispatcher = None

    def __enter__(self) -> FakeKiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- set-up ---------------------------------------------------------------------------

    def add_app(self, api_key: str, api_secret: str, user_id: str, *, redirect_url: str = "", cash: Decimal | int = 1_000_000) -> None:
        self.exchange.add_app(api_key, api_secret, user_id, redirect_url=redirect_url, cash=cash)

    def add_instrument(self, instrument: Instrument) -> Instrument:
        return self.exchange.add_instrument(instrument)

    def set_price(self, exchange: str, tradingsymbol: str, price: Decimal | int | str) -> None:
        self.exchange.set_price(exchange, tradingsymbol, price)

    def set_holdings(self, user_id: str, rows: list[dict[str, Any]]) -> None:
        with self.exchange.lock:
            self.exchange.accounts[user_id].holdings = [dict(r) for r in rows]

    def set_cash(self, user_id: str, equity: Decimal | int | str, commodity: Decimal | int | str = 0) -> None:
        with self.exchange.lock:
            account = self.exchange.accounts[user_id]
            account.cash, account.commodity_cash = Decimal(str(equity)), Decimal(str(commodity))

    def issue_session(self, api_key: str) -> str:
        """An access token for ``api_key`` as a login would give (tests)."""
        request_token = self.exchange.issue_request_token(api_key)
        app = self.exchange.apps[api_key]
        return self._session(api_key, request_token, checksum(api_key, request_token, app.api_secret))["access_token"]

    def expire_sessions(self) -> None:
        self.exchange.expire_sessions()

    def fault(self, kind: str, *, path: str = "", method: str = "", count: int = 1, **params: Any) -> None:
        """The next ``count`` matching requests fail as ``kind``: error
        (status, error_type, message), rate_limit (429), token_exception (403),
        network (503), lose_response (done, then the connection closes unanswered)."""
        with self._lock:
            self.faults.append(Fault(kind=kind, path=path, method=method.upper(), count=count, params=params))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if path.startswith(fault.path) and (not fault.method or fault.method == method):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.calls[f"{method} {path}"] += 1
            self.requests.append((method, path))
            del self.requests[:-1000]

    def login(self, api_key: str, redirect_params: str = "") -> str:
        """Where Kite's login page sends the browser after a successful login:
        the app's redirect URL with a fresh request token (and the redirect params)."""
        app = self.exchange.apps[api_key]
        request_token = self.exchange.issue_request_token(api_key)
        params = {"action": "login", "type": "login", "status": "success", "request_token": request_token}
        params.update(dict(parse_qsl(redirect_params)))
        sep = "&" if "?" in app.redirect_url else "?"
        return f"{app.redirect_url}{sep}{urlencode(params)}"

    # --- order updates ----------------------------------------------------------------------

    def _on_order(self, user_id: str, order: dict[str, Any]) -> None:
        with self._idle:
            self._pending += 1
        self._updates.put((user_id, order))

    def _dispatch(self) -> None:
        while True:
            item = self._updates.get()
            if item is None:
                return
            user_id, order = item
            try:
                self._deliver(user_id, order)
            except Exception:
                logger.exception("fake Kite: an order update was not delivered")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def postback_body(self, user_id: str, order: dict[str, Any]) -> dict[str, Any]:
        app = next((a for a in self.exchange.apps.values() if a.user_id == user_id), None)
        body = dict(order)
        body.update(
            user_id=user_id,
            app_id=0,
            unfilled_quantity=order.get("pending_quantity", 0),
            checksum=checksum(str(order["order_id"]), str(order["order_timestamp"]), app.api_secret if app else ""),
        )
        return body

    def _deliver(self, user_id: str, order: dict[str, Any]) -> None:
        body = self.postback_body(user_id, order)
        for listener in list(self.order_listeners):
            try:
                listener(dict(body))
            except Exception:
                logger.exception("fake Kite: an order listener failed")
        if self.postback_url:
            request = urllib.request.Request(  # noqa: S310 - a URL the test set
                self.postback_url, data=json.dumps(body).encode(), headers={"content-type": JSON_TYPE}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - a URL the test set
                    answer.read()
            except Exception as exc:
                logger.info("fake Kite: postback to %s failed: %s", self.postback_url, exc)
            self.postbacks_sent.append(body)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every order update so far reached the listeners and the postback URL."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    # --- routes -------------------------------------------------------------------------

    def _session(self, api_key: str, request_token: str, sum_: str) -> dict[str, Any]:
        ex = self.exchange
        with ex.lock:
            app = ex.apps.get(api_key)
            if app is None:
                raise KiteError(403, "TokenException", "Invalid `api_key`.")
            if request_token not in app.request_tokens:
                raise KiteError(403, "TokenException", "Token is invalid or has expired.")
            if sum_ != checksum(api_key, request_token, app.api_secret):
                raise KiteError(403, "TokenException", "Invalid `checksum`.")
            app.request_tokens.discard(request_token)
            import secrets

            access_token = secrets.token_hex(16)
            app.access_tokens.add(access_token)
        return {
            "user_id": app.user_id,
            "user_name": "Fake Kite user",
            "user_shortname": "Fake",
            "email": "fake@example.invalid",
            "user_type": "individual",
            "broker": "ZERODHA",
            "exchanges": ["NSE", "BSE", "NFO", "BFO", "MCX", "CDS"],
            "products": ["CNC", "NRML", "MIS", "MTF"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "api_key": api_key,
            "access_token": access_token,
            "public_token": secrets.token_hex(8),
            "refresh_token": "",
            "login_time": now_ist(),
            "meta": {"demat_consent": "consent"},
            "avatar_url": None,
        }

    def _authed(self, headers: Any) -> str:
        if headers.get("X-Kite-Version") != "3":
            raise input_error("Missing or invalid `X-Kite-Version` header.")
        auth = str(headers.get("Authorization") or "")
        scheme, _, creds = auth.partition(" ")
        api_key, _, access_token = creds.partition(":")
        if scheme != "token" or not api_key or not access_token:
            raise KiteError(403, "TokenException", "Missing or invalid `Authorization` header.")
        return self.exchange.app_of(api_key, access_token).user_id

    def route(
        self, method: str, path: str, query: dict[str, list[str]], form: dict[str, str], headers: Any
    ) -> tuple[int, bytes, str, dict[str, str]]:
        ex = self.exchange
        parts = [p for p in path.split("/") if p]
        if method == "GET" and path == LOGIN_PATH:
            api_key = (query.get("api_key") or [""])[0]
            if api_key not in ex.apps or (query.get("v") or [""])[0] != "3":
                raise input_error("Invalid `api_key` or `v`.")
            location = self.login(api_key, (query.get("redirect_params") or [""])[0])
            return 302, b"", "text/html", {"location": location}
        if path == "/session/token" and method == "POST":
            if headers.get("X-Kite-Version") != "3":
                raise input_error("Missing or invalid `X-Kite-Version` header.")
            for name in ("api_key", "request_token", "checksum"):
                if not form.get(name):
                    raise input_error(f"Missing `{name}`.")
            return _ok(self._session(form["api_key"], form["request_token"], form["checksum"]))
        user_id = self._authed(headers)
        if path == "/session/token" and method == "DELETE":
            return _ok(True)
        if method == "GET" and path == "/user/profile":
            return _ok({"user_id": user_id, "user_name": "Fake Kite user", "broker": "ZERODHA"})
        if method == "GET" and parts[:2] == ["user", "margins"]:
            margins = ex.margins_of(user_id)
            if len(parts) == 3:
                if parts[2] not in margins:
                    raise input_error("Invalid segment.")
                return _ok(margins[parts[2]])
            return _ok(margins)
        if parts[:1] == ["orders"]:
            # kiteconnect sends a DELETE's parameters (parent_order_id) in the query.
            given = {k: v[0] for k, v in query.items() if v} if method == "DELETE" else form
            return self._orders(method, parts, given, user_id)
        if method == "GET" and path == "/trades":
            return _ok(ex.trades_of(user_id))
        if method == "GET" and path == "/portfolio/positions":
            return _ok(ex.positions_of(user_id))
        if method == "GET" and path == "/portfolio/holdings":
            return _ok(list(ex.accounts[user_id].holdings))
        if method == "GET" and parts[:1] == ["instruments"]:
            if len(parts) == 4 and parts[1] == "historical":
                if not parts[2].isdigit():
                    raise input_error("Invalid `instrument_token`.")
                candles = ex.historical(int(parts[2]), parts[3], None, None)
                oi = (query.get("oi") or ["0"])[0] == "1"
                return _ok({"candles": [c if oi else c[:6] for c in candles]})
            if len(parts) > 2:
                raise KiteError(404, "GeneralException", "Route not found.")
            text = ex.instruments_csv(parts[1] if len(parts) == 2 else None)
            return 200, text.encode(), CSV_TYPE, {}
        if method == "GET" and parts[:1] == ["quote"]:
            return _ok(self._quotes(query.get("i") or []))
        raise KiteError(404, "GeneralException", "Route not found.")

    def _orders(self, method: str, parts: list[str], form: dict[str, str], user_id: str) -> tuple[int, bytes, str, dict[str, str]]:
        ex = self.exchange
        if method == "GET":
            if len(parts) == 1:
                return _ok(ex.orders_of(user_id))
            if len(parts) == 2:
                return _ok(list(ex.order(user_id, parts[1])))
            if len(parts) == 3 and parts[2] == "trades":
                ex.order(user_id, parts[1])
                return _ok(ex.trades_of(user_id, parts[1]))
        if method == "POST" and len(parts) == 2:
            return _ok({"order_id": ex.place(user_id, parts[1], form)})
        if method == "PUT" and len(parts) == 3:
            return _ok({"order_id": ex.modify(user_id, parts[1], parts[2], form)})
        if method == "DELETE" and len(parts) == 3:
            return _ok({"order_id": ex.cancel(user_id, parts[1], parts[2], parent_order_id=form.get("parent_order_id", ""))})
        raise KiteError(404, "GeneralException", "Route not found.")

    def _quotes(self, keys: list[str]) -> dict[str, Any]:
        out = {}
        for key in keys[:500]:
            exchange, _, symbol = key.partition(":")
            token = self.exchange.by_symbol.get((exchange, symbol))
            if token is None:
                continue
            inst = self.exchange.instruments[token]
            out[key] = {"instrument_token": token, "last_price": float(inst.last_price), "ohlc": {}, "depth": {"buy": [], "sell": []}}
        return out
