"""Live market streams: ``quotes:<symbol>`` and ``bars:<symbol>:<resolution>``.

Only channels with subscribers are computed and sent: the gateway tells the
handlers who subscribes, and ``streams.subscribers`` counts them per process
(in Redis in production, so the ``marketdata`` process sees the web
processes' clients).
Quotes are throttled per symbol (at most one update per
``QUOTE_THROTTLE_INTERVAL``, always the latest); bars are published every
``BAR_BROADCASTER_INTERVAL`` when they changed. Counters ``broadcasts_sent``,
``broadcasts_skipped`` and ``errors`` are kept in the cache too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache

from accounts.models import User
from core.decimals import decimal_str
from core.exceptions import InvalidInput, NotFound
from marketdata.bars import Columns, bucket_function
from marketdata.instrument_cache import instruments_version
from marketdata.models import Instrument
from marketdata.quotes import quote_as_dict, quote_get
from marketdata.selectors import bars_history, instrument_get
from marketdata.types import Bar as BarData
from marketdata.types import Quote, normalize_resolution
from streams.publish import publish
from streams.registry import ChannelHandler
from streams.subscribers import subscriber_add, subscriber_totals

logger = logging.getLogger(__name__)

_COUNTERS = ("broadcasts_sent", "broadcasts_skipped", "errors")
_COUNTER_PREFIX = "md:stat:"


# --- subscriber counts ---------------------------------------------------------------


def subscribers_add(channel: str, delta: int) -> None:
    subscriber_add(channel, delta)


def subscriber_counts(channels: list[str]) -> dict[str, int]:
    totals = subscriber_totals()
    return {c: totals.get(c, 0) for c in channels}


def subscribed_channels(prefix: str) -> dict[str, int]:
    return dict(sorted(subscriber_totals(prefix).items()))


# --- counters --------------------------------------------------------------------------


class _Counters:
    """Counted in process, added to the shared cache counters once per step."""

    def __init__(self) -> None:
        self.pending: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.pending[name] += n

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, defaultdict(int)
        for name, n in pending.items():
            if not n:
                continue
            key = _COUNTER_PREFIX + name
            try:
                cache.add(key, 0, timeout=None)
                cache.incr(key, n)
            except Exception:
                logger.warning("counter %s not flushed", name, exc_info=True)


counters = _Counters()


def broadcast_stats() -> dict[str, Any]:
    values = cache.get_many([_COUNTER_PREFIX + n for n in _COUNTERS])
    stats: dict[str, Any] = {n: int(values.get(_COUNTER_PREFIX + n, 0)) for n in _COUNTERS}
    quotes = subscribed_channels("quotes:")
    bars = subscribed_channels("bars:")
    stats["subscribers"] = {"quotes": sum(quotes.values()), "bars": sum(bars.values()), "channels": len(quotes) + len(bars)}
    return stats


# --- wire forms ---------------------------------------------------------------------------


_s = decimal_str


def bar_payload(symbol: str, resolution: str, bar: BarData) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "resolution": resolution,
        "time": datetime.fromtimestamp(bar.time, UTC).isoformat().replace("+00:00", "Z"),
        "ts": bar.time,
        "open": _s(bar.open),
        "high": _s(bar.high),
        "low": _s(bar.low),
        "close": _s(bar.close),
        "volume": _s(bar.volume),
    }


def split_bars_channel(channel: str) -> tuple[str, str]:
    """``bars:<symbol>:<resolution>``; the symbol may itself hold ``:``."""
    body = channel[len("bars:") :]
    symbol, sep, resolution = body.rpartition(":")
    if not sep or not symbol:
        raise InvalidInput("Bars channels are bars:<symbol>:<resolution>.", code="unknown_channel", fields={"channel": ["Malformed."]})
    canonical = normalize_resolution(resolution)
    if canonical is None:
        raise InvalidInput(
            f"Unsupported resolution '{resolution[:10]}'.", code="unsupported_resolution", fields={"channel": ["Bad resolution."]}
        )
    return symbol, canonical


# --- channel handlers ----------------------------------------------------------------------


class QuotesChannel(ChannelHandler):
    prefix = "quotes"
    latest_value = True
    description = "Latest quote of a symbol: last, bid/ask with sizes, volume, open interest, change, day range, stale flag."

    @staticmethod
    def symbol(channel: str) -> str:
        symbol = channel[len("quotes:") :]
        if not channel.startswith("quotes:") or not symbol:
            raise InvalidInput("Quote channels are quotes:<symbol>.", code="unknown_channel", fields={"channel": ["Malformed."]})
        return symbol

    async def authorize(self, *, user: User, channel: str) -> None:
        await database_sync_to_async(instrument_get)(symbol=self.symbol(channel))

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        # Off the event loop: without the simulator loop in this process the
        # quote is computed from the simulated instruments (a database read).
        quote = await database_sync_to_async(quote_get)(self.symbol(channel))
        if quote is None:
            return 0, None
        return int(quote.time * 1000), quote_as_dict(quote)

    async def on_subscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscribers_add)(channel, 1)

    async def on_unsubscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscribers_add)(channel, -1)

    def asyncapi_channels(self) -> dict[str, Any]:
        return {
            "quotes:{symbol}": {
                "description": self.description + f" At most one update per {settings.QUOTE_THROTTLE_INTERVAL}s per symbol.",
                "parameters": {"symbol": {"schema": {"type": "string"}, "description": "e.g. AAPL, BTC/USDT, NSE:INFY"}},
                "subscribe": {"message": {"name": "quote", "payload": {"$ref": "#/components/schemas/Quote"}}},
            }
        }

    def asyncapi_schemas(self) -> dict[str, Any]:
        decimal = {"type": ["string", "null"], "description": "decimal as a string"}
        fields = ("last", "bid", "ask", "bid_size", "ask_size", "volume", "open_interest", "change")
        return {
            "Quote": {
                "type": ["object", "null"],
                "description": "null in a snapshot while the symbol has no quote yet",
                "properties": {
                    "symbol": {"type": "string"},
                    **{name: decimal for name in fields},
                    "change_percent": decimal,
                    **{name: decimal for name in ("day_open", "day_high", "day_low", "prev_close")},
                    "time": {"type": "string", "format": "date-time"},
                    "ts": {"type": "number", "description": "unix seconds"},
                    "stale": {"type": "boolean", "description": f"older than {settings.QUOTE_STALE_SECONDS}s"},
                },
                "additionalProperties": True,
            }
        }


class BarsChannel(ChannelHandler):
    prefix = "bars"
    latest_value = True
    description = "The current (forming) bar of a symbol at a resolution; op bars.subscribe is a shorthand."

    def canonical(self, channel: str) -> str:
        try:
            symbol, resolution = split_bars_channel(channel)
        except InvalidInput:
            return channel
        return f"bars:{symbol}:{resolution}"

    async def authorize(self, *, user: User, channel: str) -> None:
        symbol, resolution = split_bars_channel(channel)
        served = {normalize_resolution(r) for r in settings.BAR_BROADCASTER_RESOLUTIONS}
        if not settings.BAR_BROADCASTER_ENABLED or resolution not in served:
            raise InvalidInput(f"Bars at {resolution} are not streamed on this server.", code="unsupported_resolution")
        await database_sync_to_async(instrument_get)(symbol=symbol)

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        symbol, resolution = split_bars_channel(channel)
        bar = await database_sync_to_async(current_bar)(symbol, resolution)
        seq = int(time.time() * 1000)
        return seq, None if bar is None else bar_payload(symbol, resolution, bar)

    async def on_subscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscribers_add)(channel, 1)

    async def on_unsubscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscribers_add)(channel, -1)

    def asyncapi_channels(self) -> dict[str, Any]:
        return {
            "bars:{symbol}:{resolution}": {
                "description": self.description
                + " Resolutions 1, 5, 15, 30, 60, 240, 1D, 1W, 1M (D/W/M accepted; frames use the canonical name).",
                "parameters": {"symbol": {"schema": {"type": "string"}}, "resolution": {"schema": {"type": "string"}}},
                "subscribe": {"message": {"name": "bar", "payload": {"$ref": "#/components/schemas/Bar"}}},
            }
        }

    def asyncapi_schemas(self) -> dict[str, Any]:
        decimal = {"type": "string", "description": "decimal as a string"}
        return {
            "Bar": {
                "type": ["object", "null"],
                "description": "null in a snapshot while the symbol has no bar yet",
                "properties": {
                    "symbol": {"type": "string"},
                    "resolution": {"type": "string"},
                    "time": {"type": "string", "format": "date-time", "description": "the bar's open time"},
                    "ts": {"type": "integer", "description": "unix seconds"},
                    **{name: decimal for name in ("open", "high", "low", "close", "volume")},
                },
            }
        }


def current_bar(symbol: str, resolution: str) -> BarData | None:
    """The latest bar of ``resolution`` (aggregated from stored bars)."""
    try:
        instrument = instrument_get(symbol=symbol)
    except NotFound:
        return None
    history = bars_history(instrument=instrument, resolution=resolution, end=int(time.time()) + 60, countback=1, convert=Decimal)
    if not len(history):
        return None
    return _last_bar(history.columns)


def _last_bar(columns: Columns) -> BarData:
    t, o, h, lo, c, v = columns
    return BarData(time=t[-1], open=o[-1], high=h[-1], low=lo[-1], close=c[-1], volume=v[-1])


# --- publishing --------------------------------------------------------------------------------


@dataclass
class _AggState:
    bucket_start: int
    done: BarData | None  # minutes of the bucket before ``minute``
    minute: int
    current: BarData | None  # the minute being built
    dirty: bool = True


def _combine(a: BarData | None, b: BarData | None) -> BarData | None:
    if a is None:
        return None if b is None else BarData(b.time, b.open, b.high, b.low, b.close, b.volume)
    if b is None:
        return BarData(a.time, a.open, a.high, a.low, a.close, a.volume)
    return BarData(a.time, a.open, max(a.high, b.high), min(a.low, b.low), b.close, a.volume + b.volume)


class Broadcaster:
    """Turns the simulator's (or a broker feed's) updates into stream frames."""

    def __init__(self) -> None:
        self.last_quote_sent: dict[str, float] = {}
        self.pending_quotes: dict[str, Quote] = {}
        self.aggs: dict[str, _AggState] = {}
        self.timezones: dict[str, tuple[str, str]] = {}
        self.buckets: dict[tuple[str, str, str], Callable[[int], int | None]] = {}
        self.last_bar_publish = 0.0
        self.instruments_version = -1
        self.lock = threading.Lock()

    # quotes ----------------------------------------------------------------------

    def quotes_update(self, quotes: list[Quote], now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self.lock:
            for quote in quotes:
                self.pending_quotes[quote.symbol] = quote
            if not self.pending_quotes:
                return
            counts = subscriber_counts([f"quotes:{s}" for s in self.pending_quotes])
            interval = settings.QUOTE_THROTTLE_INTERVAL
            due = []
            for symbol, quote in list(self.pending_quotes.items()):
                if counts.get(f"quotes:{symbol}", 0) <= 0:
                    del self.pending_quotes[symbol]  # nobody listens: not computed, not sent
                    continue
                if now - self.last_quote_sent.get(symbol, 0.0) < interval:
                    counters.add("broadcasts_skipped")  # superseded or held for the next window
                    continue
                del self.pending_quotes[symbol]
                self.last_quote_sent[symbol] = now
                due.append(quote)
        for quote in due:
            ok = publish(f"quotes:{quote.symbol}", int(quote.time * 1000), quote_as_dict(quote, now), latest=True)
            counters.add("broadcasts_sent" if ok else "errors")

    # bars ------------------------------------------------------------------------

    def _zone(self, symbol: str) -> tuple[str, str]:
        if symbol not in self.timezones:
            row = Instrument.objects.filter(symbol=symbol).values_list("timezone", "session").first()
            self.timezones[symbol] = row or ("UTC", "24x7")
        return self.timezones[symbol]

    def bars_update(self, touched: list[tuple[str, BarData]]) -> None:
        """Fold 1-minute bars (in time order) into every subscribed bar channel."""
        channels = subscribed_channels("bars:")
        version = instruments_version()
        with self.lock:
            if version != self.instruments_version:
                # An instrument changed (a session, or a name moved aside to
                # SIM:<symbol>): forming bars start again from what is stored.
                self.timezones.clear()
                self.aggs.clear()
                self.instruments_version = version
            for gone in set(self.aggs) - set(channels):
                del self.aggs[gone]
            if not channels:
                return
            by_symbol: dict[str, list[str]] = defaultdict(list)
            for channel in channels:
                try:
                    symbol, _ = split_bars_channel(channel)
                except InvalidInput:
                    continue
                by_symbol[symbol].append(channel)
            for symbol, minute_bar in touched:
                for channel in by_symbol.get(symbol, ()):
                    self._fold(channel, symbol, minute_bar)

    def _fold(self, channel: str, symbol: str, minute_bar: BarData) -> None:
        _, resolution = split_bars_channel(channel)
        tz_name, session = self._zone(symbol)
        # The same buckets as history: session-aligned in the instrument's timezone.
        key = (resolution, tz_name, session)
        if key not in self.buckets:
            self.buckets[key] = bucket_function(resolution, tz_name, session)
        bucket = self.buckets[key](minute_bar.time)
        if bucket is None:
            return
        state = self.aggs.get(channel)
        if state is None or bucket > state.bucket_start:
            done = None
            if state is None:
                # First sight: the bucket's minutes already stored, before this one.
                done = self._stored_part(symbol, resolution, bucket, minute_bar.time)
            state = _AggState(bucket_start=bucket, done=done, minute=minute_bar.time, current=None)
            self.aggs[channel] = state
        elif bucket < state.bucket_start:
            return  # a late minute of a finished bar
        if minute_bar.time > state.minute:
            state.done = _combine(state.done, state.current)
            state.minute = minute_bar.time
        elif minute_bar.time < state.minute:
            return
        state.current = BarData(bucket, minute_bar.open, minute_bar.high, minute_bar.low, minute_bar.close, minute_bar.volume)
        state.dirty = True

    @staticmethod
    def _stored_part(symbol: str, resolution: str, bucket: int, before: int) -> BarData | None:
        if before <= bucket:
            return None
        instrument = Instrument.objects.filter(symbol=symbol).first()
        if instrument is None:
            return None
        history = bars_history(instrument=instrument, resolution=resolution, start=bucket, end=before, convert=Decimal)
        if not len(history):
            return None
        bar = _last_bar(history.columns)
        bar.time = bucket
        return bar

    def bars_publish(self, now: float | None = None) -> int:
        now = now if now is not None else time.time()
        with self.lock:
            due = [(c, s) for c, s in self.aggs.items() if s.dirty]
            for _, state in due:
                state.dirty = False
            frames = []
            for channel, state in due:
                bar = _combine(state.done, state.current)
                if bar is not None:
                    symbol, resolution = split_bars_channel(channel)
                    bar.time = state.bucket_start
                    frames.append((channel, bar_payload(symbol, resolution, bar)))
        seq = int(now * 1000)
        for channel, payload in frames:
            ok = publish(channel, seq, payload, latest=True)
            counters.add("broadcasts_sent" if ok else "errors")
        return len(frames)


broadcaster = Broadcaster()


def on_market_update(quotes: list[Quote], touched: list[tuple[str, BarData]]) -> None:
    """Update listener of the simulator step (and broker feeds)."""
    broadcaster.quotes_update(quotes)
    if settings.BAR_BROADCASTER_ENABLED:
        wanted = set(settings.BAR_BROADCASTER_SYMBOLS)
        broadcaster.bars_update([(s, b) for s, b in touched if not wanted or s in wanted])
    counters.flush()


def bar_broadcast_step() -> None:
    """The bar broadcaster loop: publish changed bars of subscribed channels."""
    broadcaster.bars_publish()
    counters.flush()
