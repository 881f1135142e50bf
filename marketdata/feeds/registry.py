"""Broker feeds: live quotes and trades from brokers, next to the simulator.

A broker package (``brokers/kis``...) implements a ``FeedProvider`` and
registers it in its ``AppConfig.ready()`` (marketdata never imports brokers).
Registering is cheap: nothing connects until the market-data loop
(``marketdata.broker_feeds``) runs, in the ``marketdata`` process in
production or in-process on the embedded default. Each step asks every
provider for its current feeds (the provider opens and closes connections
as accounts and instruments change), polls them like the simulator and
turns their ticks into 1-minute bars (stored), quotes (cache) and the
``quotes:``/``bars:`` stream events, through the same services and listeners
as simulated ticks.

A push feed (a WebSocket) fills a ``PushFeed``: a bounded, thread-safe
buffer the step drains; what overflows it is dropped and counted.

Each instrument has exactly one quote source (``Instrument.quote_source``):
a feed's ticks and quotes count only for instruments whose source is its
provider's ``source``; others are dropped and counted, so two feeds never
write one symbol's bars.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from django.core.cache import cache

from core.decimals import plain_decimal
from marketdata.bars import BarBuilder
from marketdata.feeds.base import Feed, FeedBatch
from marketdata.instrument_cache import instruments_version
from marketdata.models import Bar, Instrument
from marketdata.services import ticks_ingest
from marketdata.simulation import market_update_notify
from marketdata.types import Bar as BarData
from marketdata.types import Quote, Tick

logger = logging.getLogger(__name__)

BROKER_FEEDS_LOOP = "marketdata.broker_feeds"
STATUS_KEY_PREFIX = "md:feed:"
RELOAD_INSTRUMENTS_EVERY = 30.0
DEFAULT_MAX_TICKS = 20_000
STATUS_REFRESH = 5.0  # seconds between rewrites of an unchanged provider status
STATUS_TTL = 60.0


@runtime_checkable
class FeedProvider(Protocol):
    """What a broker package registers: the live feeds of one quote source."""

    name: str
    source: str  # the Instrument.quote_source its feeds serve ("kis", "kite", "ccxt")

    def feeds(self) -> list[Feed]:
        """The feeds to poll now. Called from the loop's worker thread (the ORM
        may be used); opens and closes connections as needed, never blocks on
        a socket."""
        ...

    def stop(self) -> None:
        """Close every connection (bounded in time)."""
        ...


_providers: dict[str, FeedProvider] = {}
_providers_lock = threading.Lock()


def register_feed_provider(provider: FeedProvider) -> None:
    """Register (or replace) the provider named ``provider.name``."""
    with _providers_lock:
        _providers[provider.name] = provider


def unregister_feed_provider(name: str) -> FeedProvider | None:
    with _providers_lock:
        return _providers.pop(name, None)


def feed_providers() -> list[FeedProvider]:
    with _providers_lock:
        return list(_providers.values())


def feed_providers_stop() -> None:
    """Stop every provider's connections (the loop's ``on_stop``)."""
    for provider in feed_providers():
        try:
            provider.stop()
        except Exception:
            logger.exception("stopping feed provider %s failed", provider.name)


# --- push feeds -----------------------------------------------------------------------------


class PushFeed:
    """A feed its connection pushes into from any thread; ``poll`` drains it.

    Ticks queue in order up to ``max_ticks``; past that the oldest are
    dropped and counted in ``dropped``. Quotes keep the latest per symbol
    (a newer quote supersedes an older one, so they never overflow)."""

    def __init__(self, name: str, *, max_ticks: int = DEFAULT_MAX_TICKS) -> None:
        self.name = name
        self.last_tick_time: float | None = None
        self.dropped = 0
        # Kept by the connection: frames it could not read, times it connected again.
        self.malformed = 0
        self.reconnects = 0
        self._ticks: deque[Tick] = deque(maxlen=max(1, max_ticks))
        self._quotes: dict[str, Quote] = {}
        self._symbols: list[str] = []
        self._lock = threading.Lock()

    def push(self, ticks: list[Tick] | None = None, quotes: list[Quote] | None = None) -> None:
        with self._lock:
            for tick in ticks or ():
                if len(self._ticks) == self._ticks.maxlen:
                    self.dropped += 1
                self._ticks.append(tick)
            for quote in quotes or ():
                self._quotes[quote.symbol] = quote

    def poll(self, now: float) -> FeedBatch:
        with self._lock:
            ticks, quotes = list(self._ticks), list(self._quotes.values())
            self._ticks.clear()
            self._quotes.clear()
        if ticks:
            self.last_tick_time = now
        return FeedBatch(ticks=ticks, quotes=quotes)

    def set_symbols(self, symbols: list[str]) -> None:
        with self._lock:
            self._symbols = sorted(symbols)

    def symbols(self) -> list[str]:
        with self._lock:
            return list(self._symbols)

    def pending(self) -> int:
        with self._lock:
            return len(self._ticks)


# --- the loop step -------------------------------------------------------------------------------


@dataclass
class _Runtime:
    builder: BarBuilder = field(default_factory=BarBuilder)
    # symbol: (instrument id, quote source) of every active instrument
    instruments: dict[str, tuple[int, str]] = field(default_factory=dict)
    loaded_at: float = 0.0
    instruments_version: int = -1
    steps: int = 0
    foreign: int = 0  # ticks and quotes dropped: their instrument takes quotes from another source


_runtime = _Runtime()
_status_written: dict[str, float] = {}
_step_lock = threading.Lock()


def _instruments(now: float) -> dict[str, tuple[int, str]]:
    # An instrument written (imported for a venue, renamed): reload at once,
    # so a new broker instrument takes its feed's quotes from the next step.
    version = instruments_version()
    if now - _runtime.loaded_at > RELOAD_INSTRUMENTS_EVERY or not _runtime.instruments or version != _runtime.instruments_version:
        rows = Instrument.objects.filter(active=True).exclude(quote_source="simulator").values_list("symbol", "id", "quote_source")
        _runtime.instruments = {symbol: (pk, source) for symbol, pk, source in rows}
        _runtime.loaded_at = now
        _runtime.instruments_version = version
    return _runtime.instruments


def instruments_reload() -> None:
    """Re-read the instruments at the next step (an instrument's source changed)."""
    _runtime.loaded_at = 0.0


def broker_feeds_step(now: float | None = None) -> tuple[list[Quote], int]:
    """One step of the broker-feed loop: poll every registered provider's
    feeds, store their ticks as 1-minute bars and their quotes, hand both to
    the listeners (paper matching, the broadcaster). Returns (quotes, ticks)."""
    now = now if now is not None else time.time()
    providers = feed_providers()
    if not providers:
        return [], 0
    with _step_lock:
        instruments = _instruments(now)
        ticks: list[Tick] = []
        quotes: list[Quote] = []
        for provider in providers:
            try:
                feeds = provider.feeds()
            except Exception:
                logger.exception("feed provider %s failed", provider.name)
                continue
            for feed in feeds:
                try:
                    batch = feed.poll(now)
                except Exception:
                    logger.exception("feed %s failed", feed.name)
                    continue
                own_ticks = [t for t in batch.ticks if instruments.get(t.symbol, (0, ""))[1] == provider.source]
                own_quotes = [q for q in batch.quotes if instruments.get(q.symbol, (0, ""))[1] == provider.source]
                _runtime.foreign += len(batch.ticks) - len(own_ticks) + len(batch.quotes) - len(own_quotes)
                ticks.extend(own_ticks)
                quotes.extend(own_quotes)
            _status_store(provider, feeds, now)
        _runtime.steps += 1
        if not ticks and not quotes:
            return [], 0
        ids = {symbol: pk for symbol, (pk, _) in instruments.items()}
        ticks.sort(key=lambda t: t.time)  # the bar builder folds in time order
        _open_bars_resume(_runtime.builder, ids, ticks)
        touched = ticks_ingest(builder=_runtime.builder, instrument_ids=ids, ticks=ticks, quotes=quotes)
    market_update_notify(quotes, touched)
    return quotes, len(ticks)


def _open_bars_resume(builder: BarBuilder, ids: dict[str, int], ticks: list[Tick]) -> None:
    """A symbol's first ticks in this process continue the minute's stored bar
    (a restart, another process that held the connection before): the bar is
    extended, never replaced by its last seconds."""
    first: dict[str, int] = {}
    for tick in ticks:
        if tick.symbol not in builder.bars and tick.symbol not in first and tick.symbol in ids:
            first[tick.symbol] = int(tick.time) - int(tick.time) % 60
    for symbol, minute in first.items():
        row = (
            Bar.objects.filter(instrument_id=ids[symbol], resolution="1", time=datetime.fromtimestamp(minute, UTC))
            .values_list("open", "high", "low", "close", "volume")
            .first()
        )
        if row is not None:
            builder.bars[symbol] = BarData(minute, *(plain_decimal(value) for value in row))


def _status_store(provider: FeedProvider, feeds: list[Feed], now: float) -> None:
    last = max((f.last_tick_time for f in feeds if f.last_tick_time is not None), default=None)
    key = STATUS_KEY_PREFIX + provider.name
    previous = cache.get(key) or {}
    status = {
        "name": provider.name,
        "feeds": len(feeds),
        "symbols": sum(len(f.symbols()) for f in feeds),
        "last_tick_time": last if last is not None else previous.get("last_tick_time"),
        "dropped": sum(int(getattr(f, "dropped", 0)) for f in feeds),
        "malformed": sum(int(getattr(f, "malformed", 0)) for f in feeds),
        "reconnects": sum(int(getattr(f, "reconnects", 0)) for f in feeds),
        "refused": _runtime.foreign,
    }
    if status != previous or now - _status_written.get(provider.name, 0.0) > STATUS_REFRESH:
        cache.set(key, status, timeout=STATUS_TTL)
        _status_written[provider.name] = now


def broker_feeds_status(*, ran_only: bool = False) -> list[dict[str, Any]]:
    """Per registered provider: ``name``, ``feeds``, ``symbols``,
    ``last_tick_time``, ``dropped`` (buffer overflow), ``refused`` (ticks
    and quotes of instruments quoted by another source), ``malformed``
    (frames unread) and ``reconnects``. Shared through the
    cache: the loop may run in another process. ``ran_only``: only the
    providers the loop has polled lately."""
    out = []
    for provider in feed_providers():
        status = cache.get(STATUS_KEY_PREFIX + provider.name)
        if status is None and ran_only:
            continue
        out.append(
            status
            or {
                "name": provider.name,
                "feeds": 0,
                "symbols": 0,
                "last_tick_time": None,
                "dropped": 0,
                "refused": 0,
                "malformed": 0,
                "reconnects": 0,
            }
        )
    return out


def runtime_reset() -> None:
    """Forget the open bars, the instrument map and the registered providers'
    shared status (tests)."""
    global _runtime
    with _step_lock:
        _runtime = _Runtime()
        _status_written.clear()
        cache.delete_many([STATUS_KEY_PREFIX + provider.name for provider in feed_providers()])
