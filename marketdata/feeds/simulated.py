"""The simulated feed: ticks and quotes from the simulator's pure price paths.

Base instruments (stocks, indices, crypto) walk on their own; futures and
options are priced from their underlying each second. Live ticks and the
history generated on first start use the same arithmetic, so the 1-minute bars
built from live ticks equal the generated ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np

from marketdata.feeds.base import FeedBatch
from marketdata.feeds.derivatives import RATE, YEAR, option_prices
from marketdata.feeds.simulator import SECONDS_PER_DAY, SimSpec, Simulator
from marketdata.sessions import TradingDay, parse_session, previous_trading_day, segment_at, trading_day_at, zone
from marketdata.types import Quote, Tick

MAX_CATCH_UP_SECONDS = 300  # a longer gap is filled by the history backfill


@dataclass(frozen=True)
class SimInstrument:
    symbol: str
    type: str
    tick_size: Decimal
    session: str = "24x7"
    timezone: str = "UTC"
    price: float | None = None  # start price of a base instrument
    volatility: float = 0.3
    volume_per_second: float = 5.0
    underlying: str | None = None
    expiry_ts: float | None = None  # marketdata.sessions.contract_expiry: the session close on the expiry date
    strike: float | None = None
    call: bool = True
    open_interest: float | None = None
    # The name its price path is drawn for, when not its symbol: an
    # instrument moved aside (NSE:INFY -> SIM:NSE:INFY) keeps its path.
    seed_name: str = ""


# Seconds already evaluated: (unix seconds, price ticks, volumes), contiguous.
_Known = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _DayStats:
    """A trading day's running statistics, in ticks."""

    day: date | None
    upto: int  # the last second folded in
    open: int
    high: int
    low: int
    prev_close: int
    volume: int = 0


def _symbol_factor(symbol: str) -> int:
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=2).digest(), "little") % 7 + 1


class SimulatedFeed:
    name = "simulator"

    def __init__(self, instruments: list[SimInstrument], seed: int, simulator: Simulator | None = None) -> None:
        self.sim = simulator or Simulator()
        self.seed = seed
        self.instruments = {i.symbol: i for i in instruments}
        self.specs: dict[str, SimSpec] = {}
        for inst in instruments:
            if inst.underlying is None and inst.price:
                self.specs[inst.symbol] = SimSpec(
                    symbol=inst.seed_name or inst.symbol,
                    start_price=inst.price,
                    volatility=inst.volatility,
                    tick_size=inst.tick_size,
                    volume_per_second=inst.volume_per_second,
                    seed=seed,
                )
        # Derivatives whose underlying is not simulated cannot be priced.
        self.instruments = {s: i for s, i in self.instruments.items() if s in self.specs or (i.underlying in self.specs)}
        self.last_second: dict[str, int] = {}
        self.last_tick_time: float | None = None
        self._open_memo: dict[tuple[str, int], bool] = {}
        self.day_stats: dict[str, _DayStats] = {}
        self._days: dict[str, tuple[TradingDay, int, int]] = {}  # symbol: (day, valid from, valid until)

    def symbols(self) -> list[str]:
        return sorted(self.instruments)

    def in_session(self, symbol: str, ts: int) -> bool:
        """Whether ``symbol`` trades at ``ts`` (the loop quotes it only then)."""
        return symbol in self.instruments and self._is_open(self.instruments[symbol], ts)

    # --- arithmetic shared by live ticks and history ----------------------------------

    def _base_spec(self, inst: SimInstrument) -> SimSpec:
        return self.specs[inst.symbol if inst.underlying is None else inst.underlying]

    def _prices_ticks(self, inst: SimInstrument, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Price (in ticks of ``inst``) and volume for unix ``seconds`` of one day."""
        spec = self._base_spec(inst)
        day, first = self.sim.locate(int(seconds[0]))
        path = self.sim.day_path(spec, day)
        index = first + (seconds - seconds[0])
        base_ticks = path.ticks[index]
        volume = path.volume[index].astype(np.int64)
        if inst.underlying is None:
            return base_ticks, volume
        spot = base_ticks.astype(np.float64) * float(spec.tick_size)
        years = np.maximum((inst.expiry_ts or 0) - seconds.astype(np.float64), 0.0) / YEAR
        if inst.type == "future":
            value = spot * np.exp(RATE * years)
        else:
            value = option_prices(spot, float(inst.strike or 0), years, inst.volatility, inst.call)
        ticks = np.maximum(np.rint(value / float(inst.tick_size)), 1).astype(np.int64)
        return ticks, (volume * _symbol_factor(inst.seed_name or inst.symbol)) // 3

    def _is_open(self, inst: SimInstrument, ts: int) -> bool:
        if inst.expiry_ts is not None and ts >= inst.expiry_ts:
            return False  # an expired contract trades no more
        session = parse_session(inst.session)
        if session.always_open:
            return True
        key = (inst.symbol, ts - ts % 60)
        if key not in self._open_memo:
            if len(self._open_memo) > 100_000:
                self._open_memo.clear()
            self._open_memo[key] = session.is_open(datetime.fromtimestamp(key[1], zone(inst.timezone)))
        return self._open_memo[key]

    def minute_bars(self, symbol: str, start: int, end: int) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, int]]:
        """Complete 1-minute bars for minutes in [start, end) while in session."""
        inst = self.instruments[symbol]
        tick = inst.tick_size
        start -= start % 60
        end -= end % 60
        bars = []
        t = start
        while t < end:
            day_end = t - t % SECONDS_PER_DAY + SECONDS_PER_DAY
            stop = min(end, day_end)
            seconds = np.arange(t, stop, dtype=np.int64)
            prices, volumes = self._prices_ticks(inst, seconds)
            prices = prices.reshape(-1, 60)
            volumes = volumes.reshape(-1, 60).sum(axis=1)
            opens, highs, lows, closes = prices[:, 0], prices.max(axis=1), prices.min(axis=1), prices[:, -1]
            for i in range(prices.shape[0]):
                minute = t + i * 60
                if not self._is_open(inst, minute):
                    continue
                bars.append(
                    (
                        minute,
                        Decimal(int(opens[i])) * tick,
                        Decimal(int(highs[i])) * tick,
                        Decimal(int(lows[i])) * tick,
                        Decimal(int(closes[i])) * tick,
                        int(volumes[i]),
                    )
                )
            t = stop
        return bars

    # --- live ---------------------------------------------------------------------------

    def poll(self, now: float) -> FeedBatch:
        batch = FeedBatch()
        now_second = int(now)
        for symbol, inst in self.instruments.items():
            first = max(self.last_second.get(symbol, now_second - 1) + 1, now_second - MAX_CATCH_UP_SECONDS)
            if first > now_second:
                continue
            self.last_second[symbol] = now_second
            # Seconds of one call may straddle midnight: split per day.
            t = first
            while t <= now_second:
                stop = min(now_second + 1, t - t % SECONDS_PER_DAY + SECONDS_PER_DAY)
                seconds = np.arange(t, stop, dtype=np.int64)
                prices, volumes = self._prices_ticks(inst, seconds)
                self._day_stats(inst, int(seconds[-1]), (seconds, prices, volumes))
                for second, price_ticks, size in zip(seconds.tolist(), prices.tolist(), volumes.tolist(), strict=True):
                    if self._is_open(inst, second):
                        batch.ticks.append(
                            Tick(symbol=symbol, time=float(second), price=Decimal(price_ticks) * inst.tick_size, size=Decimal(size))
                        )
                t = stop
            if self._is_open(inst, now_second):
                batch.quotes.append(self.quote(symbol, now_second))
        if batch.ticks:
            self.last_tick_time = now
        return batch

    # --- the trading day ------------------------------------------------------------------

    def _day_of(self, inst: SimInstrument, ts: int) -> TradingDay | None:
        """The trading day in progress at ``ts`` (the one just closed until the next open)."""
        cached = self._days.get(inst.symbol)
        if cached is not None and cached[1] <= ts < cached[2]:
            return cached[0]
        day = trading_day_at(ts, inst.timezone, inst.session)
        if day is None:
            return None
        after = segment_at(day.close, inst.timezone, inst.session)
        self._days[inst.symbol] = (day, day.open, after.end if after.day is None else after.start)
        return day

    def _prices_between(self, inst: SimInstrument, lo: int, hi: int, known: _Known | None) -> tuple[np.ndarray, np.ndarray]:
        """Price ticks and volumes of the seconds [lo, hi), taken from ``known``
        (seconds already evaluated) when it holds them."""
        if known is not None:
            first = int(known[0][0])
            if first <= lo and hi <= first + len(known[0]):
                return known[1][lo - first : hi - first], known[2][lo - first : hi - first]
        prices, volumes = [], []
        t = lo
        while t < hi:  # _prices_ticks reads one simulator day at a time
            stop = min(hi, t - t % SECONDS_PER_DAY + SECONDS_PER_DAY)
            p, v = self._prices_ticks(inst, np.arange(t, stop, dtype=np.int64))
            prices.append(p)
            volumes.append(v)
            t = stop
        return np.concatenate(prices), np.concatenate(volumes)

    def _day_stats(self, inst: SimInstrument, ts: int, known: _Known | None = None) -> _DayStats | None:
        """The quote's day fields at ``ts``: the trading day's in-session seconds
        up to ``ts`` — exactly the seconds its 1D bar is built from — and the
        previous trading day's last in-session price. Kept incrementally."""
        day = self._day_of(inst, ts)
        if day is None:
            return None
        stats = self.day_stats.get(inst.symbol)
        if stats is None or stats.day != day.day or ts < stats.upto:
            (first,), _ = self._prices_between(inst, day.open, day.open + 1, known)
            previous = previous_trading_day(day.day, inst.timezone, inst.session)
            prev_close = first
            if previous is not None:
                (prev_close,), _ = self._prices_between(inst, previous.close - 1, previous.close, known)
            stats = _DayStats(day=day.day, upto=day.open - 1, open=int(first), high=int(first), low=int(first), prev_close=int(prev_close))
            self.day_stats[inst.symbol] = stats
        if ts > stats.upto:
            for start, end in day.ranges:
                lo, hi = max(start, stats.upto + 1), min(end, ts + 1)
                if lo < hi:
                    prices, volumes = self._prices_between(inst, lo, hi, known)
                    stats.high = max(stats.high, int(prices.max()))
                    stats.low = min(stats.low, int(prices.min()))
                    stats.volume += int(volumes.sum())
            stats.upto = ts
        return stats

    def quote(self, symbol: str, ts: int) -> Quote:
        inst = self.instruments[symbol]
        tick = inst.tick_size
        seconds = np.array([ts], dtype=np.int64)
        prices, volumes = self._prices_ticks(inst, seconds)
        last = int(prices[0])
        stats = self._day_stats(inst, ts, (seconds, prices, volumes))
        if stats is None:  # no session opened in the last two weeks
            stats = _DayStats(day=None, upto=ts, open=last, high=last, low=last, prev_close=last)
        day_open, day_high, day_low, day_volume, prev_close = stats.open, stats.high, stats.low, stats.volume, stats.prev_close
        day, second = self.sim.locate(ts)
        path = self.sim.day_path(self._base_spec(inst), day)
        spread = 1 if inst.underlying is None else max(1, last // 500)
        # The last trade printed at the ask (a buy) or at the bid (a sell).
        bid = max(last - spread, 1) if path.volume[second] % 2 else last
        ask = bid + spread
        open_interest = None
        if inst.open_interest is not None:
            open_interest = Decimal(int(inst.open_interest * (1 + 0.05 * np.sin(day / 3.0)) + day_volume // 4))
        return Quote(
            symbol=symbol,
            time=float(ts),
            last=Decimal(last) * tick,
            bid=Decimal(bid) * tick,
            ask=Decimal(ask) * tick,
            bid_size=Decimal(int(path.bid_size[second])),
            ask_size=Decimal(int(path.ask_size[second])),
            volume=Decimal(day_volume),
            open_interest=open_interest,
            day_open=Decimal(day_open) * tick,
            day_high=Decimal(day_high) * tick,
            day_low=Decimal(day_low) * tick,
            prev_close=Decimal(prev_close) * tick,
        )


def utc_now() -> float:
    return datetime.now(UTC).timestamp()
