"""A fake Binance WebSocket market-stream server on 127.0.0.1 (spot
``wss://stream.binance.com:9443/ws``, USD-M ``wss://fstream.binance.com/ws``)
for ccxt.pro's ``binance``/``binanceusdm``, fed by the fake exchange's
engine: its price moves are the streams' trades, tickers and candles.

As Binance's market streams:

- raw streams on ``.../ws`` (ccxt appends ``/<n>``; USD-M's ccxt inserts
  ``/market`` or ``/public`` before ``/ws``) and ``.../ws/<stream>``; combined
  streams on ``.../stream?streams=a/b`` (payloads wrapped as ``{"stream": name,
  "data": payload}``), the ``combined`` property switchable either way;
- text requests ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [streams],
  "id": n}`` answered ``{"result": null, "id": n}``; ``LIST_SUBSCRIPTIONS``,
  ``SET_PROPERTY``/``GET_PROPERTY`` (``combined``); a bad request answered
  with the documented ``{"code": n, "msg": ..., "id": ...}``;
- streams ``<symbol>@ticker`` (``24hrTicker``), ``<symbol>@miniTicker``
  (``24hrMiniTicker``), ``<symbol>@trade`` (``trade``) and
  ``<symbol>@kline_<interval>`` (``kline``), Binance's field names and
  number strings; at most 1,024 streams per connection;
- a ping frame every ``ping_interval`` seconds; a client whose pong does not
  come within ``pong_timeout`` is dropped (``pongs`` counts the answers).

Controls: ``trade(symbol, price, qty)`` (the engine's ``set_price`` calls it),
``drop()`` aborts every connection (no close frame), ``send_raw(text)`` sends a
frame as it is (malformed frames); ``requests`` lists every request received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from brokers.ccxt.fake.engine import FUTURES, Engine, Market, plain
from brokers.fake_ws import FakeWsServer

OUTBOX = 2000  # frames queued per connection; a client further behind is dropped
MAX_STREAMS = 1024  # Binance's limit per connection
MAX_CONNECTIONS = 64
INTERVALS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400, "1d": 86400}
logger = logging.getLogger(__name__)
logger.setLevel(logging.WARNING)  # websockets logs every connection at INFO


def _ms() -> int:
    return int(time.time() * 1000)


def stream_ws_urls(url: str, kind: str) -> dict[str, str]:
    """ccxt.pro's ``urls["api"]["ws"]`` market-stream entries for a fake of
    ``kind`` at ``url`` (the spot path holds ``/stream``, as Binance's spot
    host name does: ccxt tells spot connections from futures ones by it)."""
    u = url.rstrip("/")
    if kind == FUTURES:
        return {"linear": f"{u}/fstream/ws"}
    return {"spot": f"{u}/stream/ws", "margin": f"{u}/stream/ws"}


@dataclass
class Day:
    """A symbol's rolling statistics, as the fake's streams report them."""

    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    last_qty: Decimal = Decimal(0)
    volume: Decimal = Decimal(0)
    quote_volume: Decimal = Decimal(0)
    first_id: int = 0
    last_id: int = 0
    count: int = 0
    opened: int = field(default_factory=_ms)
    # the open candle per interval: (open time ms, open, high, low, close, volume, quote volume, trades, first id)
    candles: dict[str, list[Any]] = field(default_factory=dict)


@dataclass(eq=False)
class Connection:
    ws: ServerConnection
    combined: bool
    outbox: asyncio.Queue[str]
    streams: set[str] = field(default_factory=set)


class FakeBinanceStreams(FakeWsServer):
    """``with FakeBinanceStreams(engine) as streams:`` then point ccxt's
    ``urls["api"]["ws"]`` at ``streams.ws_urls()``."""

    thread_name = "fake-binance-streams"

    def __init__(self, engine: Engine, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.engine = engine
        self.ping_interval = 20.0  # Binance pings every 20 s (spot) and waits a minute for the pong
        self.pong_timeout = 60.0
        self.pongs = 0
        self._pong_tasks: set[asyncio.Task[None]] = set()
        self.connections: set[Connection] = set()
        self.connects = 0
        self.requests: list[dict[str, Any]] = []
        self.days: dict[str, Day] = {}
        self._trade_ids = 100_000_001
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def ws_urls(self) -> dict[str, str]:
        """ccxt's ``urls["api"]["ws"]`` market-stream entries pointing here."""
        return stream_ws_urls(self.url, self.engine.kind)

    # --- controls (any thread) ---------------------------------------------------------------------

    def trade(self, symbol: str, price: Decimal, qty: Decimal | None = None, *, buyer_maker: bool = False) -> None:
        """A trade of ``qty`` (the market's lot step when None) at ``price``:
        the day's statistics and candles move, the symbol's streams are sent."""
        with self.engine.lock:
            market = self.engine.market(symbol)
            step = market.step
        qty = step if qty is None else Decimal(qty)
        now = _ms()
        with self._lock:
            self._trade_ids += 1
            trade_id = self._trade_ids
            day = self.days.get(symbol)
            if day is None:
                day = self.days[symbol] = Day(open=price, high=price, low=price, last=price, first_id=trade_id)
            day.high, day.low, day.last, day.last_qty = max(day.high, price), min(day.low, price), price, qty
            day.volume += qty
            day.quote_volume += qty * price
            day.last_id, day.count = trade_id, day.count + 1
            for interval, seconds in INTERVALS.items():
                start = now - now % (seconds * 1000)
                candle = day.candles.get(interval)
                if candle is None or candle[0] != start:
                    candle = day.candles[interval] = [start, price, price, price, price, Decimal(0), Decimal(0), 0, trade_id]
                candle[2], candle[3], candle[4] = max(candle[2], price), min(candle[3], price), price
                candle[5] += qty
                candle[6] += qty * price
                candle[7] += 1
            payloads = {
                "trade": self._trade_payload(market, trade_id, price, qty, now, buyer_maker),
                "ticker": self._ticker_payload(market, day, now),
                "miniTicker": self._mini_ticker_payload(market, day, now),
            }
            for interval in INTERVALS:
                payloads[f"kline_{interval}"] = self._kline_payload(market, day, interval, now)
        lower = symbol.lower()
        self.call(self._publish, {f"{lower}@{name}": payload for name, payload in payloads.items()})

    def drop(self) -> None:
        """Abort every connection, without a close frame (a network drop)."""
        self.call(self.abort_all)

    def send_raw(self, frame: str) -> None:
        """Send a text frame as it is to every connection (a malformed one)."""
        self.call(self._send_all, frame)

    def subscriptions(self) -> list[set[str]]:
        """Each open connection's streams."""
        return [set(c.streams) for c in list(self.connections)]

    # --- payloads (Binance's field names) ---------------------------------------------------------

    def _trade_payload(self, m: Market, trade_id: int, price: Decimal, qty: Decimal, now: int, buyer_maker: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"e": "trade", "E": now, "s": m.symbol, "t": trade_id, "p": plain(price), "q": plain(qty), "T": now}
        body["m"] = buyer_maker
        if self.engine.kind == FUTURES:
            body["X"] = "MARKET"
        else:
            body["M"] = True
        return body

    def _ticker_payload(self, m: Market, day: Day, now: int) -> dict[str, Any]:
        change = day.last - day.open
        percent = (change / day.open * 100) if day.open else Decimal(0)
        vwap = day.quote_volume / day.volume if day.volume else day.last
        body: dict[str, Any] = {
            "e": "24hrTicker",
            "E": now,
            "s": m.symbol,
            "p": plain(change),
            "P": f"{percent.quantize(Decimal('0.001')):f}",
            "w": plain(vwap),
        }
        if self.engine.kind != FUTURES:
            body["x"] = plain(day.open)
        body.update({"c": plain(day.last), "Q": plain(day.last_qty)})
        if self.engine.kind != FUTURES:  # USD-M's ticker stream carries no book prices
            body.update({"b": plain(day.last - m.tick), "B": "1.00000000", "a": plain(day.last + m.tick), "A": "1.00000000"})
        body.update(
            {
                "o": plain(day.open),
                "h": plain(day.high),
                "l": plain(day.low),
                "v": plain(day.volume),
                "q": plain(day.quote_volume),
                "O": day.opened,
                "C": now,
                "F": day.first_id,
                "L": day.last_id,
                "n": day.count,
            }
        )
        return body

    def _mini_ticker_payload(self, m: Market, day: Day, now: int) -> dict[str, Any]:
        return {
            "e": "24hrMiniTicker",
            "E": now,
            "s": m.symbol,
            "c": plain(day.last),
            "o": plain(day.open),
            "h": plain(day.high),
            "l": plain(day.low),
            "v": plain(day.volume),
            "q": plain(day.quote_volume),
        }

    def _kline_payload(self, m: Market, day: Day, interval: str, now: int) -> dict[str, Any]:
        start, o, h, low, c, volume, quote_volume, count, first_id = day.candles[interval]
        return {
            "e": "kline",
            "E": now,
            "s": m.symbol,
            "k": {
                "t": start,
                "T": start + INTERVALS[interval] * 1000 - 1,
                "s": m.symbol,
                "i": interval,
                "f": first_id,
                "L": day.last_id,
                "o": plain(o),
                "c": plain(c),
                "h": plain(h),
                "l": plain(low),
                "v": plain(volume),
                "n": count,
                "x": False,
                "q": plain(quote_volume),
                "V": "0.00000000",
                "Q": "0.00000000",
                "B": "0",
            },
        }

    def _latest(self, stream: str) -> dict[str, Any] | None:
        """A ticker stream's current payload (Binance sends tickers each second, so a new subscriber has one at once)."""
        symbol, _, name = stream.partition("@")
        if name not in ("ticker", "miniTicker"):
            return None
        market = self.engine.markets.get(symbol.upper())
        if market is None:
            return None
        with self.engine.lock:
            price = market.price
        with self._lock:
            day = self.days.get(market.symbol)
            if day is None:  # no trade yet: the day opens at the market's price
                day = self.days[market.symbol] = Day(open=price, high=price, low=price, last=price)
            now = _ms()
            return self._ticker_payload(market, day, now) if name == "ticker" else self._mini_ticker_payload(market, day, now)

    def _known(self, stream: str) -> bool:
        symbol, _, name = stream.partition("@")
        if symbol.upper() not in self.engine.markets:
            return False
        return name in ("ticker", "miniTicker", "trade") or (name.startswith("kline_") and name[6:] in INTERVALS)

    # --- the loop ------------------------------------------------------------------------------------

    def clients(self) -> set[Connection]:
        return self.connections

    def serve_options(self) -> dict[str, Any]:
        return {"ping_interval": None, "compression": None, "logger": logger}  # pings sent by _pings at ping_interval

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._pings()]

    async def _pings(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(min(0.5, max(self.ping_interval, 0.05)))
            if self.ping_interval <= 0 or loop.time() - last < self.ping_interval:
                continue
            last = loop.time()
            for connection in list(self.connections):
                with contextlib.suppress(ConnectionClosed, RuntimeError):
                    waiter = await connection.ws.ping()
                    task = asyncio.create_task(self._pong(connection, waiter))
                    self._pong_tasks.add(task)
                    task.add_done_callback(self._pong_tasks.discard)

    async def _pong(self, connection: Connection, waiter: Any) -> None:
        """Count the client's pong; a client silent for ``pong_timeout`` is dropped, as Binance drops it."""
        try:
            await asyncio.wait_for(waiter, self.pong_timeout)
            self.pongs += 1
        except TimeoutError:
            connection.ws.transport.abort()
        except (ConnectionClosed, asyncio.CancelledError):
            pass

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        segments = [s for s in parts.path.split("/") if s]
        if len(self.connections) >= MAX_CONNECTIONS or not segments:
            await ws.close(1008, "Too many connections" if segments else "Invalid path")
            return
        combined = segments[-1] == "stream" and "ws" not in segments
        if not combined and "ws" not in segments:
            await ws.close(1008, "Invalid path")
            return
        connection = Connection(ws, combined, asyncio.Queue(OUTBOX))
        if combined:
            wanted = (parse_qs(parts.query).get("streams") or [""])[0].split("/")
        else:  # /ws/<stream>: one raw stream; /ws/<n> (ccxt's numbering) or /ws: none until subscribed
            tail = segments[segments.index("ws") + 1 :] if "ws" in segments else []
            wanted = [tail[0]] if tail and "@" in tail[0] else []
        connection.streams.update(s for s in wanted if s and self._known(s))
        self.connections.add(connection)
        self.connects += 1
        try:
            await self.converse(connection, lambda message: self._on_request(connection, message))
        finally:
            self.connections.discard(connection)

    def _answer(self, connection: Connection, body: dict[str, Any]) -> None:
        self.enqueue(connection, json.dumps(body))

    def _on_request(self, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._answer(connection, {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"})
            return
        if not isinstance(request, dict):
            self._answer(connection, {"code": 2, "msg": "Invalid request: expected a JSON object"})
            return
        self.requests.append(request)
        request_id = request.get("id")
        if request_id is not None and (not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 0):
            self._answer(connection, {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"})
            return
        method = request.get("method")
        params = request.get("params", [])
        if method is None:
            self._answer(connection, {"code": 2, "msg": "Invalid request: missing field `method`", "id": request_id})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._answer(
                    connection, {"code": 2, "msg": "Invalid request: invalid type: expected a sequence of strings", "id": request_id}
                )
                return
            if method == "SUBSCRIBE":
                unknown = [p for p in params if not self._known(p)]
                if unknown:
                    self._answer(connection, {"code": 2, "msg": f"Invalid request: unknown stream {unknown[0][:60]}", "id": request_id})
                    return
                if len(connection.streams | set(params)) > MAX_STREAMS:
                    self._answer(connection, {"code": 2, "msg": "Invalid request: too many streams", "id": request_id})
                    return
                connection.streams.update(params)
            else:
                connection.streams.difference_update(params)
            self._answer(connection, {"result": None, "id": request_id})
            if method == "SUBSCRIBE":
                for stream in params:
                    latest = self._latest(stream)
                    if latest is not None:
                        self._send_stream(connection, stream, latest)
            return
        if method == "LIST_SUBSCRIPTIONS":
            self._answer(connection, {"result": sorted(connection.streams), "id": request_id})
            return
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                self._answer(connection, {"code": 0, "msg": "Unknown property", "id": request_id})
                return
            if method == "GET_PROPERTY":
                self._answer(connection, {"result": connection.combined, "id": request_id})
                return
            if len(params) != 2 or not isinstance(params[1], bool):
                self._answer(connection, {"code": 1, "msg": "Invalid value type: expected Boolean", "id": request_id})
                return
            connection.combined = params[1]
            self._answer(connection, {"result": None, "id": request_id})
            return
        self._answer(
            connection,
            {
                "code": 2,
                "msg": f"Invalid request: unknown variant `{str(method)[:40]}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
                "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                "id": request_id,
            },
        )

    def _send_stream(self, connection: Connection, stream: str, payload: dict[str, Any]) -> None:
        self.enqueue(connection, json.dumps({"stream": stream, "data": payload} if connection.combined else payload))

    def _publish(self, payloads: dict[str, dict[str, Any]]) -> None:
        for connection in list(self.connections):
            for stream, payload in payloads.items():
                if stream in connection.streams:
                    self._send_stream(connection, stream, payload)

    def _send_all(self, frame: str) -> None:
        for connection in list(self.connections):
            self.enqueue(connection, frame)
