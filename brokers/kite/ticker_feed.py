"""The Kite ticker feed: live packets into quotes and bars, order-update text
frames into order events.

One connection per Kite credential (api key + the user's access token) that
is logged in, opened by the market-data loop (``marketdata.feeds.registry``)
in the process that wins the credential's lease (``brokers.locks``), as the
KIS feed does. The instruments whose quote source is ``kite`` and which carry
an instrument token (``Instrument.broker_codes["kite"]``) are spread over the
connections, each streamed once, in full mode (depth and OI), at most
3,000 per connection (Kite's limit) and ``KITE_TICKER_MAX_CONNECTIONS`` per
api key (Kite allows 3): more connections of the same credential take the
rest, and what is left over is not streamed and the feed state says so.

Packets become quotes (best bid/ask and sizes from the depth, the depth and
OI in ``extra``) and, when the last price or the day's volume moved, ticks
(size: the volume's increase) that the loop folds into 1-minute bars. Prices
are in INR as the parser reads them. Order-update text frames go, off the
socket's loop, to ``on_order(account_id, order)`` (``brokers.kite.updates``):
the same path postbacks take, so an update seen on both is applied once.

A dropped connection (or one silent past ``KITE_TICKER_READ_TIMEOUT``: Kite
sends a heartbeat every second) reconnects with exponential back-off and
jitter and subscribes again. A malformed frame or packet is counted
(``PushFeed.malformed``) and skipped. A 403 at the handshake means the
access token is no longer valid: the connection waits for a new login.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

from brokers.feed_connections import LeasedFeedProvider, in_worker
from brokers.health import feed_state_set
from brokers.kite.ticker import MAX_TOKENS_PER_CONNECTION, MODE_FULL, KiteTick, mode_message, parse_binary, parse_text, subscribe_message
from brokers.locks import Lease
from core.masking import mask_text
from marketdata.feeds.registry import PushFeed
from marketdata.types import Quote, Tick

logger = logging.getLogger(__name__)

SOURCE = "kite"  # Instrument.quote_source of the instruments it streams
CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 5.0
MAX_FRAME = 1 << 20  # 3,000 full packets are 558 KB
STABLE_AFTER = 30.0  # a connection up this long resets the back-off
CLOCK_SKEW = 600.0  # an exchange time further than this from ours: stamped on arrival
SUBSCRIBE_CHUNK = 500  # tokens per subscribe/mode request
MAX_PENDING_UPDATES = 1000

# (api_key, access_token) of an account, or None when it is not logged in.
Credentials = Callable[[Any], "tuple[str, str] | None"]
OrderHandler = Callable[[int, dict[str, Any]], object]


# --- what to connect -----------------------------------------------------------------------


@dataclass(frozen=True)
class AccountPlan:
    account_id: int
    user_id: str  # Kite's user id (the account's broker_user_id)


@dataclass(frozen=True)
class ConnectionPlan:
    key: str  # the credential's digest and the connection's number (never the secrets)
    ws_url: str
    api_key: str = field(repr=False)
    access_token: str = field(repr=False)
    accounts: tuple[AccountPlan, ...] = ()
    tokens: tuple[tuple[int, str], ...] = ()  # (instrument token, symbol)
    over_limit: int = 0  # instruments no connection had room for

    @property
    def url(self) -> str:
        return f"{self.ws_url}?{urlencode({'api_key': self.api_key, 'access_token': self.access_token})}"


def _digest(api_key: str, access_token: str) -> str:
    return hashlib.sha256(f"{api_key}:{access_token}".encode()).hexdigest()[:16]


def instrument_token(codes: Any) -> int | None:
    """The instrument token of ``Instrument.broker_codes`` (``{"kite": 408065}``), if valid."""
    raw = codes.get(SOURCE) if isinstance(codes, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    try:
        token = int(raw)
    except ValueError:
        return None
    return token if 0 < token < 2**32 else None


def plan_connections(credentials: Credentials) -> list[ConnectionPlan]:
    """The connections the logged-in Kite accounts and the ``kite``-quoted
    instruments need: one per credential at least (its order updates), more
    for the instruments past 3,000, up to ``KITE_TICKER_MAX_CONNECTIONS`` per
    api key; each instrument on one connection only."""
    from brokers.models import AccountStatus, BrokerAccount
    from marketdata.models import Instrument

    groups: dict[tuple[str, str], list[AccountPlan]] = {}
    accounts = BrokerAccount.objects.filter(kind=SOURCE).exclude(status__in=[AccountStatus.DISABLED, AccountStatus.NOT_CONFIGURED])
    for account in accounts.order_by("pk"):
        try:
            pair = credentials(account)
        except Exception as exc:
            logger.warning("Kite account %s: no ticker (%s)", account.pk, mask_text(str(exc))[:200])
            continue
        if pair is None:
            continue
        groups.setdefault(pair, []).append(AccountPlan(account.pk, account.broker_user_id))
    if not groups:
        return []
    rows = Instrument.objects.filter(active=True, quote_source=SOURCE).order_by("symbol").values_list("broker_codes", "symbol")
    tokens = [(token, symbol) for codes, symbol in rows if (token := instrument_token(codes)) is not None]
    per_connection = max(1, min(int(settings.KITE_TICKER_MAX_TOKENS), MAX_TOKENS_PER_CONNECTION))
    per_api_key: dict[str, int] = {}
    url = settings.KITE_TICKER_URL.rstrip("/")
    plans: list[ConnectionPlan] = []
    for (api_key, access_token), members in groups.items():
        digest = _digest(api_key, access_token)
        index = 0
        while True:
            if per_api_key.get(api_key, 0) >= int(settings.KITE_TICKER_MAX_CONNECTIONS):
                break
            mine, tokens = tokens[:per_connection], tokens[per_connection:]
            per_api_key[api_key] = per_api_key.get(api_key, 0) + 1
            plans.append(ConnectionPlan(f"{digest}:{index}", url, api_key, access_token, tuple(members) if index == 0 else (), tuple(mine)))
            index += 1
            if not tokens:
                break
    if tokens:
        logger.warning("Kite ticker: %d instruments over the connections' limits are not streamed", len(tokens))
        plans = [ConnectionPlan(p.key, p.ws_url, p.api_key, p.access_token, p.accounts, p.tokens, over_limit=len(tokens)) for p in plans]
    return plans


# --- packets into quotes and ticks -------------------------------------------------------------


def _positive(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value > 0 else None


def _depth(levels: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [{"price": str(level.price), "quantity": level.quantity, "orders": level.orders} for level in levels if level.quantity > 0]


def tick_to_quote(tick: KiteTick, symbol: str, at: float) -> Quote:
    """A packet as a quote of ``symbol``; the depth, OI and average price in ``extra``."""
    best_bid = next((b for b in tick.bids if b.quantity > 0), None)
    best_ask = next((a for a in tick.asks if a.quantity > 0), None)
    extra: dict[str, Any] = {}
    if tick.average_price is not None:
        extra["average_price"] = str(tick.average_price)
    if tick.buy_quantity is not None:
        extra["total_buy_quantity"] = tick.buy_quantity
        extra["total_sell_quantity"] = tick.sell_quantity
    if tick.oi is not None:
        extra["oi_day_high"] = tick.oi_day_high
        extra["oi_day_low"] = tick.oi_day_low
    if tick.bids or tick.asks:
        extra["depth"] = {"buy": _depth(tick.bids), "sell": _depth(tick.asks)}
    return Quote(
        symbol=symbol,
        time=at,
        last=tick.last_price,
        bid=best_bid.price if best_bid else None,
        ask=best_ask.price if best_ask else None,
        bid_size=Decimal(best_bid.quantity) if best_bid else None,
        ask_size=Decimal(best_ask.quantity) if best_ask else None,
        volume=Decimal(tick.volume or 0),
        open_interest=Decimal(tick.oi) if tick.oi else None,
        day_open=_positive(tick.open),
        day_high=_positive(tick.high),
        day_low=_positive(tick.low),
        prev_close=_positive(tick.close),
        extra=extra,
    )


def tick_time(tick: KiteTick, received: float) -> float:
    """The exchange's time of the packet, or the arrival when absent or implausible."""
    stamp = tick.last_trade_time or tick.exchange_timestamp
    return float(stamp) if stamp and abs(stamp - received) <= CLOCK_SKEW else received


class PacketConverter:
    """Packets of the subscribed tokens into quotes and trade ticks; keeps
    each token's last price and volume to emit a tick only on a move."""

    def __init__(self) -> None:
        self.symbols: dict[int, str] = {}
        self._last: dict[int, tuple[Decimal, int | None]] = {}

    def set_tokens(self, tokens: tuple[tuple[int, str], ...]) -> None:
        self.symbols = dict(tokens)
        self._last = {t: v for t, v in self._last.items() if t in self.symbols}

    def convert(self, ticks: list[KiteTick], received: float) -> tuple[list[Tick], list[Quote]]:
        out_ticks: list[Tick] = []
        quotes: list[Quote] = []
        for tick in ticks:
            symbol = self.symbols.get(tick.instrument_token)
            if symbol is None or tick.last_price <= 0:
                continue  # unsubscribed meanwhile, or no trade yet
            at = tick_time(tick, received)
            quotes.append(tick_to_quote(tick, symbol, at))
            previous = self._last.get(tick.instrument_token)
            self._last[tick.instrument_token] = (tick.last_price, tick.volume)
            if previous is None:
                size = Decimal(tick.last_quantity or 0)
            else:
                last_price, last_volume = previous
                if tick.volume is not None and last_volume is not None:
                    # a volume lower than the last: a new day's
                    size = Decimal(tick.volume if tick.volume < last_volume else tick.volume - last_volume)
                else:
                    size = Decimal(0)
                if size == 0 and tick.last_price == last_price:
                    continue  # only the book moved: a quote, no trade
            out_ticks.append(Tick(symbol=symbol, time=at, price=tick.last_price, size=size))
        return out_ticks, quotes


# --- one connection ------------------------------------------------------------------------------


@dataclass
class ConnectionStats:
    connects: int = 0
    frames: int = 0
    packets: int = 0
    heartbeats: int = 0
    order_updates: int = 0
    updates_dropped: int = 0
    malformed: int = 0
    failures: int = 0


@dataclass
class TickerConnection:
    """One ticker WebSocket; its coroutine runs on the provider's loop."""

    plan: ConnectionPlan
    on_order: OrderHandler
    executor: concurrent.futures.Executor
    feed: PushFeed = field(init=False)
    converter: PacketConverter = field(default_factory=PacketConverter)
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    connected: bool = False
    subscribed: tuple[int, ...] = ()
    last_message_at: datetime | None = None
    error: str = ""
    lease: Lease | None = None
    task: asyncio.Task[Any] | None = None
    _plan_changed: asyncio.Event | None = None
    _pending: int = 0
    _pending_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.feed = PushFeed(f"kite:{self.plan.key[:12]}")
        self.set_plan(self.plan)

    @property
    def label(self) -> str:
        return self.plan.key[:12]

    def set_plan(self, plan: ConnectionPlan) -> None:
        """On the connection's loop (or before it runs)."""
        self.plan = plan
        self.converter.set_tokens(plan.tokens)
        self.feed.set_symbols([symbol for _, symbol in plan.tokens])
        if self._plan_changed is not None:
            self._plan_changed.set()

    async def run(self) -> None:
        """Connect, subscribe, read; on any failure back off and again. Ends only when cancelled."""
        failures = 0
        self._plan_changed = asyncio.Event()
        self.task = asyncio.current_task()
        while True:
            started = time.monotonic()
            try:
                await self._connect_and_read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {mask_text(str(exc))[:200]}"
                logger.warning("Kite ticker %s: connection failed: %s", self.label, self.error)
            finally:
                self.connected = False
                self.subscribed = ()
            self.stats.failures += 1
            failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
            await asyncio.sleep(self.backoff(failures))

    @staticmethod
    def backoff(failures: int) -> float:
        """Exponential in the failures in a row, capped, with jitter (half to full)."""
        initial = float(settings.KITE_TICKER_BACKOFF_INITIAL)
        ceiling = float(settings.KITE_TICKER_BACKOFF_MAX)
        delay = min(ceiling, initial * (2 ** min(max(failures - 1, 0), 16)))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    async def _connect_and_read(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(
            self.plan.url,
            open_timeout=CONNECT_TIMEOUT,
            close_timeout=2,
            max_size=MAX_FRAME,
            ping_interval=None,  # Kite's heartbeat is its 1-byte frame, watched by the read timeout
            compression=None,
            user_agent_header=None,
        ) as ws:
            self.connected = True
            self.error = ""
            self.stats.connects += 1
            self.feed.reconnects = self.stats.connects - 1
            logger.info("Kite ticker %s: connected", self.label)
            await self._subscribe(ws)
            assert self._plan_changed is not None
            timeout = float(settings.KITE_TICKER_READ_TIMEOUT)
            while True:
                if self._plan_changed.is_set():
                    self._plan_changed.clear()
                    await self._subscribe(ws)
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    raise ConnectionError(f"no message (not even a heartbeat) for {timeout:g}s") from None
                self.handle(message)

    async def _subscribe(self, ws: Any) -> None:
        """Subscribe what the plan adds (in full mode), unsubscribe what it dropped."""
        from brokers.kite.ticker import unsubscribe_message

        wanted = [token for token, _ in self.plan.tokens]
        have = set(self.subscribed)
        new = [t for t in wanted if t not in have]
        gone = sorted(have - set(wanted))
        for start in range(0, len(gone), SUBSCRIBE_CHUNK):
            await asyncio.wait_for(ws.send(unsubscribe_message(gone[start : start + SUBSCRIBE_CHUNK])), SEND_TIMEOUT)
        for start in range(0, len(new), SUBSCRIBE_CHUNK):
            chunk = new[start : start + SUBSCRIBE_CHUNK]
            await asyncio.wait_for(ws.send(subscribe_message(chunk)), SEND_TIMEOUT)
            await asyncio.wait_for(ws.send(mode_message(MODE_FULL, chunk)), SEND_TIMEOUT)
        self.subscribed = tuple(wanted)

    def handle(self, message: str | bytes) -> None:
        """One frame; what cannot be read is counted and skipped."""
        received = time.time()
        self.last_message_at = datetime.fromtimestamp(received, UTC)
        self.stats.frames += 1
        if isinstance(message, bytes):
            parsed = parse_binary(message)
            if parsed.heartbeat:
                self.stats.heartbeats += 1
                return
            if parsed.malformed:
                self.stats.malformed += parsed.malformed
                self.feed.malformed += parsed.malformed
                logger.warning("Kite ticker %s: %d malformed packets skipped (%d bytes)", self.label, parsed.malformed, len(message))
            self.stats.packets += len(parsed.ticks)
            ticks, quotes = self.converter.convert(parsed.ticks, received)
            self.feed.push(ticks, quotes)
            return
        text = parse_text(message)
        if text is None:
            self.stats.malformed += 1
            self.feed.malformed += 1
            logger.warning("Kite ticker %s: malformed text frame skipped (%d chars)", self.label, len(message))
        elif text.type == "order":
            self._order(text.data)
        elif text.type == "error":
            self.error = mask_text(str(text.data))[:200]
            logger.warning("Kite ticker %s: error message: %s", self.label, self.error)

    def _account_of(self, order: dict[str, Any]) -> int | None:
        user = str(order.get("user_id") or order.get("placed_by") or "")
        matches = [a.account_id for a in self.plan.accounts if a.user_id and a.user_id == user]
        if len(matches) == 1:
            return matches[0]
        return self.plan.accounts[0].account_id if not user and len(self.plan.accounts) == 1 else None

    def _order(self, order: dict[str, Any]) -> None:
        self.stats.order_updates += 1
        account_id = self._account_of(order)
        if account_id is None:
            logger.warning("Kite ticker %s: an order update of a user it does not serve", self.label)
            return
        with self._pending_lock:
            if self._pending >= MAX_PENDING_UPDATES:
                self.stats.updates_dropped += 1
                logger.warning("Kite ticker %s: order updates backlogged; one left to postbacks and the sync", self.label)
                return
            self._pending += 1

        def work() -> None:
            try:
                self.on_order(account_id, order)
            except Exception:
                logger.exception("Kite ticker: order update not applied")
            finally:
                with self._pending_lock:
                    self._pending -= 1

        try:
            self.executor.submit(in_worker, work)
        except RuntimeError:  # the pool is shut down: the feed is stopping
            with self._pending_lock:
                self._pending -= 1

    def signature(self) -> tuple[object, ...]:
        return (self.connected, self.subscribed, self.error, self.plan)

    def state_write(self) -> None:
        error = self.error
        if self.plan.over_limit:
            note = f"{self.plan.over_limit} instruments over the ticker's connection limits not streamed"
            error = f"{error}; {note}" if error else note
        for account in self.plan.accounts:
            feed_state_set(
                account.account_id,
                connected=self.connected,
                subscriptions=[f"{MODE_FULL}:{token}" for token in self.subscribed],
                last_message_at=self.last_message_at,
                error=error,
                notices="websocket and postbacks",
            )


# --- every connection of this process ------------------------------------------------------------


def _credentials(account: Any) -> tuple[str, str] | None:
    from brokers.kite.updates import ticker_credentials

    return ticker_credentials(account)


def _on_order(account_id: int, order: dict[str, Any]) -> object:
    from brokers.kite.updates import order_update_deliver

    return order_update_deliver(account_id, order, via="ticker")


class KiteTickerProvider(LeasedFeedProvider):
    """The ``kite`` feed provider: re-plans every ``KITE_TICKER_RELOAD_INTERVAL``,
    opens the connections whose lease it gets (``brokers.feed_connections``)."""

    name = "kite"
    source = SOURCE
    lease_prefix = "kite-ticker:"
    thread_name = "kite-ticker"

    def __init__(
        self,
        *,
        credentials: Credentials = _credentials,
        on_order: OrderHandler = _on_order,
        planner: Callable[[Credentials], list[ConnectionPlan]] = plan_connections,
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.on_order = on_order
        self.planner = planner

    def reload_interval(self) -> float:
        return float(settings.KITE_TICKER_RELOAD_INTERVAL)

    def plan(self) -> list[ConnectionPlan]:
        return self.planner(self.credentials)

    def connection_for(self, plan: ConnectionPlan, executor: concurrent.futures.Executor) -> TickerConnection:
        return TickerConnection(plan=plan, on_order=self.on_order, executor=executor)


provider = KiteTickerProvider()
