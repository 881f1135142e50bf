"""FakeKisServer: the REST and WebSocket sides of the fake on 127.0.0.1,
each in its own daemon thread, over one Exchange."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.kis.fake.exchange import Exchange
from brokers.kis.fake.faults import Faults
from brokers.kis.fake.persist import state_load, state_read, state_save
from brokers.kis.fake.records import Event
from brokers.kis.fake.rest import RestServer
from brokers.kis.fake.ws import WsServer

SETTINGS = {
    "token_ttl": int,
    "token_interval": float,
    "reuse_token": bool,
    "partial_fill_qty": int,
    "balance_page_size": int,
    "daily_ccld_page_size": int,
    "ping_interval": float,
    "rate_per_second": float,
    "ws_one_session_per_key": bool,
}


class FakeKisServer:
    """A KIS Open API server for tests and the demo. ``with FakeKisServer() as kis:``
    then point a client at ``kis.rest_url`` and ``kis.ws_url + protocol.WS_PATH``."""

    def __init__(
        self, *, latency: float = 0.0, rest_port: int = 0, ws_port: int = 0, host: str = "127.0.0.1", state_path: str | Path | None = None
    ) -> None:
        self.host = host
        # A JSON file the state is read from at start and written to at stop (and by save_state).
        self.state_path = Path(state_path) if state_path else None
        self.state_loaded = False
        self.latency = latency
        self.exchange = Exchange()
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self.balance_page_size = 0  # 0: KIS's (50 live, 20 paper)
        self.daily_ccld_page_size = 0  # 0: 100 live, 15 paper
        self.ping_interval = 10.0  # seconds between PINGPONG frames
        # >0: TR calls per second per app key over this answer EGW00201 (KIS: 20 live, 2 paper)
        self.rate_per_second = 0.0
        self.ws_one_session_per_key = True  # a second session with a key in use is refused (reported)
        self._recent: dict[str, deque[float]] = {}
        self._rest = RestServer((host, rest_port), self)
        self._rest_thread: threading.Thread | None = None
        self._ws = WsServer(self, host, ws_port)
        self.exchange.listener = self._on_events

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKisServer:
        if self._rest_thread is None:
            if self.state_path is not None:
                data = state_read(self.state_path)
                if data is not None:
                    state_load(self.exchange, data)
                    self.state_loaded = True
            self._rest_thread = threading.Thread(
                target=self._rest.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-kis-rest", daemon=True
            )
            self._rest_thread.start()
            self._ws.start()
        return self

    def stop(self) -> None:
        if self._rest_thread is not None:
            self._rest.shutdown()
            self._rest.close_all()
            self._rest.server_close()
            self._rest_thread.join(timeout=5)
            self._rest_thread = None
            self._ws.stop()
            self.save_state()

    def save_state(self) -> None:
        """Write the state to state_path (when set)."""
        if self.state_path is not None:
            state_save(self.exchange, self.state_path)

    def __enter__(self) -> FakeKisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._rest.server_address[1]}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self._ws.port}"

    # --- state ------------------------------------------------------------------------------

    def add_account(
        self,
        app_key: str,
        app_secret: str,
        cano: str,
        product_code: str = "01",
        hts_id: str = "",
        cash_krw: Decimal = Decimal("100000000"),
        environment: str = "paper",
    ) -> None:
        self.exchange.add_account(
            app_key=app_key,
            app_secret=app_secret,
            cano=cano,
            product_code=product_code,
            hts_id=hts_id,
            cash_krw=Decimal(cash_krw),
            environment=environment,
        )

    def set_price(self, code: str, price: Decimal | int | str, *, name: str = "") -> None:
        self.exchange.set_price(code, price, name=name)

    def add_holding(
        self, cano: str, code: str, qty: int, avg_price: Decimal | int | str, name: str = "", *, product_code: str = "01"
    ) -> None:
        self.exchange.add_holding(cano, code, qty, avg_price, name, product_code=product_code)

    def fault(self, kind: str, count: int = 1, **params: Any) -> None:
        """Misbehave on the next ``count`` matching requests; ``path=`` targets one endpoint."""
        path = str(params.pop("path", ""))
        self.faults.add(kind, count, path, **params)
        if kind == "ws_drop":
            self._ws.poke()

    def configure(self, **settings: Any) -> None:
        for name, value in settings.items():
            if name not in SETTINGS:
                raise ValueError(f"unknown setting {name!r}")
            value = SETTINGS[name](value)
            if name in ("token_ttl", "token_interval", "reuse_token", "partial_fill_qty"):
                setattr(self.exchange, name, value)
            else:
                setattr(self, name, value)

    def reset(self, *, calls: bool = True, faults: bool = True, state: bool = True) -> None:
        if calls:
            with self._calls_lock:
                self.calls.clear()
            self._ws.pings_sent = self._ws.pongs_received = 0
        if faults:
            self.faults.clear()
        if state:
            listener = self.exchange.listener
            self.exchange = Exchange()
            self.exchange.listener = listener

    def count(self, path: str) -> None:
        with self._calls_lock:
            if path in self.calls or len(self.calls) < 1000:  # bounded: junk paths stop counting
                self.calls[path] += 1

    def over_rate(self, app_key: str) -> bool:
        """Whether this TR call exceeds rate_per_second for its app key (a sliding second)."""
        if self.rate_per_second <= 0:
            return False
        now = time.monotonic()
        with self._calls_lock:
            recent = self._recent.get(app_key)
            if recent is None:
                if len(self._recent) >= 1000:
                    self._recent.clear()
                recent = self._recent[app_key] = deque()
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            if len(recent) >= self.rate_per_second:
                return True
            recent.append(now)
            return False

    def fill(self, odno: str, qty: int = 0, price: Decimal | int | str | None = None) -> None:
        """Fill (part of) an open order now, whatever the price does."""
        self.exchange.fill(odno, qty, price)

    def reject(self, odno: str) -> None:
        """The exchange refuses what remains of an open order."""
        self.exchange.reject(odno)

    def set_prices(self, code: str, prices: list[Decimal | int | str]) -> None:
        """Several trades at once: one H0STCNT0 frame with a record each."""
        self.exchange.set_prices(code, prices)

    def expire_tokens(self) -> None:
        """Every access token expires now: the next TR call answers EGW00123."""
        self.exchange.expire_tokens()

    def orders(self) -> list[dict[str, Any]]:
        """The day's orders as the fake holds them (for assertions)."""
        return self.exchange.orders_snapshot()

    @property
    def pings_sent(self) -> int:
        return self._ws.pings_sent

    @property
    def pongs_received(self) -> int:
        return self._ws.pongs_received

    def _on_events(self, events: list[Event]) -> None:
        self._ws.publish(events)
