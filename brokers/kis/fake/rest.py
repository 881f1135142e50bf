"""The fake's REST side: a bounded threading HTTP/1.1 server that answers
KIS's auth endpoints and TR calls as documented (see the package docstring
for the codes it chooses where KIS documents none), plus the control API
under /_fake/."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from brokers.kis import protocol
from brokers.kis.fake import inquiries, quotations
from brokers.kis.fake.control import control
from brokers.kis.fake.exchange import App, Rejected
from brokers.kis.fake.records import digits

if TYPE_CHECKING:
    from brokers.kis.fake.server import FakeKisServer

logger = logging.getLogger(__name__)
MAX_CONNECTIONS = 256  # keep-alive connections each hold a thread until idle for Handler.timeout
MAX_BODY = 64 * 1024
JSON_TYPE = "application/json; charset=UTF-8"
ERR_HEADER = "EGW00205"  # (chosen) a bad tr_id/custtype/body header for this server
ERR_BAD_REQUEST = "EGW00002"  # (chosen) an unreadable request
ERR_INTERNAL = "EGW00500"  # (chosen) the http_500 fault


class Gateway(Exception):
    """An answer other than a TR's normal one: status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def tr_error(msg_cd: str, msg1: str, status: int = 500) -> Gateway:
    return Gateway(status, {"rt_cd": "1", "msg_cd": msg_cd, "msg1": msg1})


def oauth_error(code: str, description: str) -> Gateway:
    return Gateway(403, {"error_code": code, "error_description": description})


def _allowed(path: str, environment: str) -> dict[str, str]:
    """tr_id -> its meaning, for this path on this environment's server."""
    ids = protocol.tr_ids(environment)
    prefix = "T" if environment == "live" else "V"
    legacy = {k: v for k, v in protocol.LEGACY_TR.items() if k.startswith(prefix)}
    if path == protocol.ORDER_CASH_PATH:
        return {ids.buy: "buy", ids.sell: "sell", **{k: v for k, v in legacy.items() if v in ("buy", "sell")}}
    if path == protocol.ORDER_RVSECNCL_PATH:
        return {ids.revise_cancel: "revise_cancel", **{k: v for k, v in legacy.items() if v == "revise_cancel"}}
    return {
        protocol.INQUIRE_BALANCE_PATH: {ids.balance: "balance"},
        protocol.INQUIRE_DAILY_CCLD_PATH: {ids.daily_ccld: "daily_ccld"},
        protocol.INQUIRE_PRICE_PATH: {protocol.PRICE_TR: "price"},
        protocol.DAILY_CHART_PATH: {protocol.DAILY_CHART_TR: "daily_chart"},
        protocol.MINUTE_CHART_PATH: {protocol.MINUTE_CHART_TR: "minute_chart"},
    }.get(path, {})


POST_TRS = {protocol.ORDER_CASH_PATH, protocol.ORDER_RVSECNCL_PATH}
GET_TRS = {
    protocol.INQUIRE_BALANCE_PATH,
    protocol.INQUIRE_DAILY_CCLD_PATH,
    protocol.INQUIRE_PRICE_PATH,
    protocol.DAILY_CHART_PATH,
    protocol.MINUTE_CHART_PATH,
}


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], fake: FakeKisServer) -> None:
        super().__init__(address, Handler)
        self.fake = fake
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=5):  # at capacity: refuse rather than queue forever
            self.shutdown_request(request)
            return
        with self.sockets_lock:
            self.open_sockets.add(request)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self.sockets_lock:
            if request in self.open_sockets:
                self.open_sockets.discard(request)
                self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout during a slow fault) is no news; anything else is a bug.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.exception("fake KIS: a request from %s failed", client_address)

    def close_all(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15  # seconds a connection may sit idle or half-sent
    server_version = "FakeKIS/1.0"
    server: RestServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: tests and the demo read .calls, not an access log

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib's own refusals (a bad request line, headers too long) answer JSON too.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send(code, {"rt_cd": "1", "msg_cd": ERR_BAD_REQUEST, "msg1": (message or "Bad Request")[:200]}, {"connection": "close"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # --- plumbing ------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = self.headers.get("content-length", "0")
        if not digits(length) or int(length) > MAX_BODY:
            self.close_connection = True
            raise tr_error(ERR_BAD_REQUEST, "요청 본문이 올바르지 않습니다.", 400)
        return self.rfile.read(int(length)) if int(length) else b""

    def _send(self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", JSON_TYPE)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        path = url.path
        try:
            raw = self._read_body()
        except Gateway as exc:
            self._send(exc.status, exc.body)
            return
        if path.startswith("/_fake/"):
            status, answer = control(fake, method, path, raw, dict(parse_qsl(url.query)))
            self._send(status, answer)
            return
        fake.count(path)
        fault = fake.faults.take(path)
        delay = fake.latency + (float(fault.params.get("seconds", 1.0)) if fault and fault.kind == "slow" else 0.0)
        if delay:
            time.sleep(delay)
        headers: dict[str, str] = {}
        try:
            if fault is not None:
                self._fault_before(fault)
            status, answer, headers = self._route(method, path, url.query, raw)
        except Gateway as exc:
            status, answer = exc.status, exc.body
        except Rejected as exc:
            status, answer = 200, {"rt_cd": "1", "msg_cd": exc.msg_cd, "msg1": exc.msg1}
        except Exception:  # a bug of the fake or an input it did not foresee: answer, say so
            logger.exception("fake KIS: %s %s failed", method, path)
            status, answer = 500, {"rt_cd": "1", "msg_cd": ERR_INTERNAL, "msg1": "fake KIS server error"}
        if fault is not None and fault.kind == "lose_response":
            self.close_connection = True  # done and booked; the answer is lost
            return
        if fault is not None and fault.kind == "malformed":
            self._send(200, b'{"rt_cd":"0","msg_cd":"APBK0013","output":{"ODNO":', headers)
            return
        self._send(status, answer, headers)

    @staticmethod
    def _fault_before(fault: Any) -> None:
        if fault.kind == "http_500":
            raise tr_error(ERR_INTERNAL, "내부 서버 오류입니다. (fake)")
        if fault.kind == "token_expired":
            raise tr_error(protocol.ERR_TOKEN_EXPIRED, "기간이 만료된 token 입니다.")
        if fault.kind == "rate_limit":
            raise tr_error(protocol.ERR_RATE_LIMIT, "초당 거래건수를 초과하였습니다.")
        if fault.kind == "token_too_soon":
            raise oauth_error(protocol.ERR_TOKEN_TOO_SOON, "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)")

    def _json(self, raw: bytes, *, oauth: bool) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            if oauth:
                raise oauth_error(ERR_BAD_REQUEST, "요청 본문이 JSON이 아닙니다.")
            raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NOT JSON")
        return body

    # --- routes ----------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: str, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        fake = self.server.fake
        exchange = fake.exchange
        if method == "POST" and path in (protocol.TOKEN_PATH, protocol.APPROVAL_PATH, protocol.REVOKE_PATH):
            body = self._json(raw, oauth=True)
            if body.get("grant_type", "client_credentials") != "client_credentials":
                raise oauth_error("EGW00002", "grant_type이 올바르지 않습니다.")
            try:
                if path == protocol.TOKEN_PATH:
                    token, expires, left = exchange.issue_token(str(body.get("appkey", "")), str(body.get("appsecret", "")))
                    return (
                        200,
                        {
                            "access_token": token,
                            "access_token_token_expired": expires.strftime(protocol.TOKEN_EXPIRED_FORMAT),
                            "token_type": "Bearer",
                            "expires_in": left,
                        },
                        {},
                    )
                if path == protocol.APPROVAL_PATH:
                    key = exchange.issue_approval_key(str(body.get("appkey", "")), str(body.get("secretkey", "")))
                    return 200, {"approval_key": key}, {}
                exchange.revoke_token(str(body.get("appkey", "")), str(body.get("appsecret", "")), str(body.get("token", "")))
                return 200, {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}, {}
            except Rejected as exc:
                raise oauth_error(exc.msg_cd, exc.msg1) from None
        if method == "POST" and path == protocol.HASHKEY_PATH:
            try:
                exchange._app(self.headers.get("appkey", ""), self.headers.get("appsecret", ""))  # noqa: SLF001
            except Rejected as exc:
                raise tr_error(exc.msg_cd, exc.msg1) from None
            body = self._json(raw, oauth=False)
            digest = hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
            return 200, {"JsonBody": body, "HASH": digest}, {}
        if path in POST_TRS or path in GET_TRS:
            if (method == "POST") != (path in POST_TRS):
                raise Gateway(405, {"rt_cd": "1", "msg_cd": ERR_BAD_REQUEST, "msg1": "Method Not Allowed"})
            return self._tr(path, query, raw)
        raise Gateway(404, {"rt_cd": "1", "msg_cd": "EGW00404", "msg1": "Not Found"})

    def _tr(self, path: str, query: str, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        fake = self.server.fake
        exchange = fake.exchange
        auth = self.headers.get("authorization", "")
        bearer = auth[7:] if auth[:7].lower() == "bearer " else ""
        try:
            app = exchange.check_tr(self.headers.get("appkey", ""), self.headers.get("appsecret", ""), bearer)
        except Rejected as exc:
            raise tr_error(exc.msg_cd, exc.msg1) from None
        if fake.over_rate(app.app_key):
            raise tr_error(protocol.ERR_RATE_LIMIT, "초당 거래건수를 초과하였습니다.")
        tr_id = self.headers.get("tr_id", "")
        meaning = _allowed(path, app.environment).get(tr_id)
        if meaning is None:
            raise tr_error(ERR_HEADER, f"tr_id {tr_id[:20]!r} is not served here ({app.environment}).")
        if self.headers.get("custtype", "") not in ("P", "B"):
            raise tr_error(ERR_HEADER, "custtype 헤더가 올바르지 않습니다.")
        tr_cont = self.headers.get("tr_cont", "").strip()
        headers = {"tr_id": tr_id, "tr_cont": "", "gt_uid": secrets.token_hex(16)}
        if path in POST_TRS:
            body = self._json(raw, oauth=False)
            if any(not isinstance(v, str) or k != k.upper() for k, v in body.items()):
                raise Rejected("OPSQ2001", "ERROR : INPUT FIELD: keys UPPERCASE, values strings")
            answer = self._order(app, meaning, body)
        else:
            try:
                params = dict(parse_qsl(query, keep_blank_values=True, max_num_fields=50))
            except ValueError:
                raise Rejected("OPSQ2001", "ERROR : TOO MANY INPUT FIELDS") from None
            answer, headers["tr_cont"] = self._inquiry(app, meaning, params, tr_cont)
        return 200, answer, headers

    def _order(self, app: App, meaning: str, body: dict[str, str]) -> dict[str, Any]:
        exchange = self.server.fake.exchange
        if meaning == "revise_cancel":
            order = exchange.revise_cancel(app, body)
            msg = "정정주문이 완료되었습니다." if body.get("RVSE_CNCL_DVSN_CD") == protocol.RVSE_REVISE else "취소주문이 완료되었습니다."
        else:
            side = protocol.SIDE_BUY if meaning == "buy" else protocol.SIDE_SELL
            order = exchange.order_cash(app, side, body)
            msg = "주문 전송 완료 되었습니다."
        return {
            "rt_cd": protocol.RT_OK,
            "msg_cd": "APBK0013",
            "msg1": msg,
            "output": {"KRX_FWDG_ORD_ORGNO": order.orgno, "ODNO": order.odno, "ORD_TMD": order.ord_tmd},
        }

    def _inquiry(self, app: App, meaning: str, params: dict[str, str], tr_cont: str) -> tuple[dict[str, Any], str]:
        fake = self.server.fake
        exchange = fake.exchange
        cont = ""
        if meaning in ("balance", "daily_ccld"):
            with exchange.lock:
                account = exchange.account_for(app, params.get("CANO", ""), params.get("ACNT_PRDT_CD", ""))
            if meaning == "balance":
                size = fake.balance_page_size or (protocol.BALANCE_PAGE_LIVE if app.environment == "live" else protocol.BALANCE_PAGE_PAPER)
                ctx = (params.get("CTX_AREA_FK100", ""), params.get("CTX_AREA_NK100", ""))
                answer, cont = inquiries.balance(exchange, account, size, tr_cont, ctx)
            else:
                size = fake.daily_ccld_page_size or (100 if app.environment == "live" else 15)
                answer, cont = inquiries.daily_ccld(exchange, account, params, size, tr_cont)
        elif meaning == "price":
            answer = quotations.price(exchange, params)
        elif meaning == "daily_chart":
            answer = quotations.daily_chart(exchange, params)
        else:
            answer = quotations.minute_chart(exchange, params)
        return {"rt_cd": protocol.RT_OK, "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.", **answer}, cont
