"""A fake Kite ticker (``wss://ws.kite.trade``) on 127.0.0.1, for the tests,
the demo and the benchmark: an asyncio WebSocket server in its own thread.

As Kite: the handshake carries ``api_key`` and ``access_token`` query
parameters (an unknown pair is refused with HTTP 403); text requests
``{"a": "subscribe"|"unsubscribe", "v": [tokens]}`` and ``{"a": "mode", "v":
[mode, [tokens]]}`` (a subscription starts in quote mode, as Kite's does, and
the token's latest packet is sent at once); binary frames packed exactly as
PROTOCOLS.md says (big-endian, ``uint16`` count, ``uint16`` length + packet);
a 1-byte heartbeat every ``heartbeat_interval`` seconds; order updates as
text frames ``{"type": "order", "data": {...}}`` to the connections of the
order's user. At most 3,000 tokens per connection: a subscription past that
is refused with ``{"type": "error", "data": ...}`` (the fake's choice of
words; Kite documents the limit, not the message).

Controls: ``tick(token, ...)`` moves an instrument and sends its packet to
the connections subscribed to it; ``order_update(order)``; ``drop()`` aborts
every connection (no close frame); ``send_raw(frame)`` sends bytes as they are
(malformed frames).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from brokers.fake_ws import FakeWsServer
from brokers.kite.ticker import (
    DEPTH_LEVELS,
    MAX_TOKENS_PER_CONNECTION,
    MODE_LTP,
    MODE_QUOTE,
    MODES,
    SEGMENT_INDICES,
    price_exponent,
)

OUTBOX = 2000  # frames queued per connection; a client further behind is dropped
MAX_CONNECTIONS = 64
logger = logging.getLogger(__name__)
logger.setLevel(logging.WARNING)  # websockets logs every connection at INFO

Authenticator = Callable[[str, str], str | None]  # (api_key, access_token) -> the user id, or None


# --- packing (the wire format, exactly as documented) ------------------------------------------


def to_wire_price(value: Decimal | int | str, token: int) -> int:
    """A price in the token's integer units (paise; CDS ÷1e7; BCD ÷1e4)."""
    return int(Decimal(str(value)).scaleb(price_exponent(token)).to_integral_value())


@dataclass
class InstrumentState:
    """An instrument as the fake's market has it (prices as Decimals)."""

    token: int
    last_price: Decimal = Decimal(0)
    last_quantity: int = 0
    average_price: Decimal = Decimal(0)
    volume: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0
    open: Decimal = Decimal(0)
    high: Decimal = Decimal(0)
    low: Decimal = Decimal(0)
    close: Decimal = Decimal(0)
    last_trade_time: int = 0
    oi: int = 0
    oi_day_high: int = 0
    oi_day_low: int = 0
    exchange_timestamp: int = 0
    # (price, quantity, orders), best first
    bids: list[tuple[Decimal, int, int]] = field(default_factory=list)
    asks: list[tuple[Decimal, int, int]] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return self.token & 0xFF == SEGMENT_INDICES


def pack_packet(state: InstrumentState, mode: str) -> bytes:
    """The packet of ``mode`` for the instrument (an index's 8/28/32 bytes, else 8/44/184)."""
    t = state.token

    def p(value: Decimal) -> int:
        return to_wire_price(value, t)

    if mode == MODE_LTP:
        return struct.pack(">Ii", t, p(state.last_price))
    if state.is_index:
        head = struct.pack(
            ">Iiiiiii",
            t,
            p(state.last_price),
            p(state.high),
            p(state.low),
            p(state.open),
            p(state.close),
            p(state.last_price - state.close),
        )
        return head if mode == MODE_QUOTE else head + struct.pack(">I", state.exchange_timestamp)
    quote = struct.pack(
        ">IiIiIIIiiii",
        t,
        p(state.last_price),
        state.last_quantity,
        p(state.average_price),
        state.volume,
        state.buy_quantity,
        state.sell_quantity,
        p(state.open),
        p(state.high),
        p(state.low),
        p(state.close),
    )
    if mode == MODE_QUOTE:
        return quote
    full = quote + struct.pack(">IIIII", state.last_trade_time, state.oi, state.oi_day_high, state.oi_day_low, state.exchange_timestamp)
    for side in (state.bids, state.asks):
        levels = list(side[:DEPTH_LEVELS]) + [(Decimal(0), 0, 0)] * (DEPTH_LEVELS - len(side[:DEPTH_LEVELS]))
        for price, quantity, orders in levels:
            full += struct.pack(">IiH2x", quantity, p(price), orders)
    return full


def pack_frame(packets: Iterable[bytes]) -> bytes:
    """Packets into one binary frame: ``uint16`` count, then ``uint16`` length + bytes each."""
    packets = list(packets)
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(pkt)) + pkt for pkt in packets)


HEARTBEAT = b"\x00"


# --- the server ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    ws: ServerConnection
    user_id: str
    api_key: str
    outbox: asyncio.Queue[str | bytes]
    modes: dict[int, str] = field(default_factory=dict)  # subscribed token -> mode


class FakeKiteTicker(FakeWsServer):
    """``with FakeKiteTicker(authenticate) as ticker:`` then connect to
    ``ticker.url + "?api_key=..&access_token=.."``."""

    thread_name = "fake-kite-ticker"

    def __init__(self, authenticate: Authenticator | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.heartbeat_interval = 1.0
        self.max_tokens = MAX_TOKENS_PER_CONNECTION
        self.tokens: dict[tuple[str, str], str] = {}  # (api_key, access_token) -> user id
        self._authenticate = authenticate
        self.instruments: dict[int, InstrumentState] = {}
        self.connections: set[Connection] = set()
        self.connects = 0
        self.refused = 0
        self.requests: list[dict[str, Any]] = []  # every request received, in order
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- controls (any thread) ---------------------------------------------------------------------

    def allow(self, api_key: str, access_token: str, user_id: str) -> None:
        """Accept connections with this pair, as ``user_id``'s (besides ``authenticate``)."""
        with self._lock:
            self.tokens[(api_key, access_token)] = user_id

    def revoke(self, api_key: str, access_token: str) -> None:
        with self._lock:
            self.tokens.pop((api_key, access_token), None)

    def tick(self, token: int, **changes: Any) -> InstrumentState:
        """Change an instrument (``last_price``, ``volume``, ``bids`` ... as
        InstrumentState's fields) and send its packet to its subscribers."""
        with self._lock:
            state = self.instruments.setdefault(token, InstrumentState(token))
            for name, value in changes.items():
                if not hasattr(state, name):
                    raise AttributeError(f"InstrumentState has no {name!r}")
                if isinstance(getattr(state, name), Decimal):
                    value = Decimal(str(value))
                setattr(state, name, value)
        self.call(self._broadcast, [token])
        return state

    def order_update(self, order: dict[str, Any]) -> None:
        """An order changed: a text frame to its user's connections (by the
        order's ``user_id`` or ``placed_by``); a hook for the REST fake's
        ``order_listeners``."""
        user = str(order.get("user_id") or order.get("placed_by") or "")
        frame = json.dumps({"type": "order", "data": order}, default=str)
        self.call(self._send_where, lambda c: c.user_id == user, frame)

    def message(self, kind: str, data: Any) -> None:
        """A text frame ``{"type": kind, "data": data}`` to every connection ("error", "message")."""
        self.call(self._send_where, lambda c: True, json.dumps({"type": kind, "data": data}))

    def send_raw(self, frame: bytes | str) -> None:
        """Send a frame as it is to every connection (a malformed one, a heartbeat)."""
        self.call(self._send_where, lambda c: True, frame)

    def drop(self) -> None:
        """Abort every connection, without a close frame (a network drop)."""
        self.call(self.abort_all)

    def subscriptions(self) -> list[dict[int, str]]:
        """Each connection's subscribed tokens and modes."""
        return [dict(c.modes) for c in list(self.connections)]

    # --- the loop ------------------------------------------------------------------------------------

    def clients(self) -> set[Connection]:
        return self.connections

    def serve_options(self) -> dict[str, Any]:
        # Kite's heartbeat is the 1-byte frame
        return {"process_request": self._check_request, "ping_interval": None, "compression": None, "logger": logger}

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.every(lambda: self.heartbeat_interval, self._heartbeat)]

    def _heartbeat(self) -> None:
        for connection in list(self.connections):
            self.enqueue(connection, HEARTBEAT)

    def _user_of(self, api_key: str, access_token: str) -> str | None:
        with self._lock:
            user = self.tokens.get((api_key, access_token))
        if user is None and self._authenticate is not None:
            user = self._authenticate(api_key, access_token)
        return user

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        api_key = (query.get("api_key") or [""])[0]
        access_token = (query.get("access_token") or [""])[0]
        if not api_key or not access_token or self._user_of(api_key, access_token) is None:
            self.refused += 1
            return connection.respond(HTTPStatus.FORBIDDEN, "Invalid api_key or access_token.\n")
        if len(self.connections) >= MAX_CONNECTIONS:
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too many connections.\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        api_key, access_token = query["api_key"][0], query["access_token"][0]
        connection = Connection(ws, self._user_of(api_key, access_token) or "", api_key, asyncio.Queue(OUTBOX))
        self.connections.add(connection)
        self.connects += 1
        try:
            await self.converse(connection, lambda message: self._on_request(connection, message))
        finally:
            self.connections.discard(connection)

    def _error_to(self, connection: Connection, text: str) -> None:
        self.enqueue(connection, json.dumps({"type": "error", "data": text}))

    def _on_request(self, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
            action, value = request["a"], request["v"]
        except (ValueError, KeyError, TypeError):
            self._error_to(connection, "Invalid message")
            return
        self.requests.append(request)
        if action in ("subscribe", "unsubscribe"):
            tokens = value
            mode = MODE_QUOTE
        elif action == "mode" and isinstance(value, list) and len(value) == 2 and value[0] in MODES:
            mode, tokens = value
        else:
            self._error_to(connection, "Invalid message")
            return
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in tokens):
            self._error_to(connection, "Invalid instrument tokens")
            return
        if action == "unsubscribe":
            for token in tokens:
                connection.modes.pop(token, None)
            return
        new = [t for t in tokens if t not in connection.modes]
        if action == "subscribe" and len(connection.modes) + len(new) > self.max_tokens:
            self._error_to(connection, f"Maximum {self.max_tokens} instruments per connection")
            return
        for token in tokens if action == "mode" else new:
            if action == "mode" and token not in connection.modes:
                continue  # a mode applies to subscribed tokens only
            connection.modes[token] = mode
        self._send_latest(connection, tokens)

    def _send_latest(self, connection: Connection, tokens: list[int]) -> None:
        with self._lock:
            packets = [
                pack_packet(self.instruments[t], connection.modes[t]) for t in tokens if t in self.instruments and t in connection.modes
            ]
        if packets:
            self.enqueue(connection, pack_frame(packets))

    def _broadcast(self, tokens: list[int]) -> None:
        for connection in list(self.connections):
            self._send_latest(connection, tokens)

    def _send_where(self, wanted: Callable[[Connection], bool], frame: str | bytes) -> None:
        for connection in list(self.connections):
            if wanted(connection):
                self.enqueue(connection, frame)
