"""The market simulator: a geometric random walk per instrument that is a pure
function of (seed, symbol, time).

Why a pure function: history generated on first start, the ticks of the live
loop, a restarted process and a second process must all agree on the price of
a symbol at a given second, whatever the wall clock did. So no state is carried
from tick to tick. The log price is Brownian motion built in two levels from a
counter-based generator (Philox keyed by seed, symbol and day):

* daily anchors: a random walk over day numbers (one normal per day);
* inside a day: one normal per second, tied to the two anchors by a Brownian
  bridge, which is exactly Brownian motion conditioned on its end points.

Prices land on the tick size; trades (volume) are drawn per second from the same
keyed stream. Pure numpy; no Django.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np

SECONDS_PER_DAY = 86_400
EPOCH = date(2026, 1, 1).toordinal()  # day 0 of the anchor walk
_ANCHOR_DAYS = 40_000  # anchors exist for +-109 years around the epoch
_YEAR_SECONDS = 365 * SECONDS_PER_DAY


@dataclass(frozen=True)
class SimSpec:
    symbol: str
    start_price: float  # the price at the epoch's first second
    volatility: float = 0.3  # annualised
    tick_size: Decimal = Decimal("0.01")
    volume_per_second: float = 5.0  # mean trade size per second
    spread_ticks: int = 1
    depth: float = 50.0  # mean quoted size at the top of the book
    seed: int = 0


def _key(spec: SimSpec, tag: str, index: int = 0) -> int:
    digest = hashlib.blake2b(f"{spec.seed}|{spec.symbol}|{tag}|{index}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def _rng(spec: SimSpec, tag: str, index: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=_key(spec, tag, index)))


@dataclass
class DayPath:
    """One day of a symbol: price (in ticks) and traded volume per second."""

    day: int  # days since EPOCH
    ticks: np.ndarray  # int64[86400]: price of second s, in ticks
    volume: np.ndarray  # int32[86400]: volume traded in second s
    bid_size: np.ndarray  # int32[86400]
    ask_size: np.ndarray  # int32[86400]

    @property
    def start(self) -> int:
        return (EPOCH + self.day - date(1970, 1, 1).toordinal()) * SECONDS_PER_DAY


class Simulator:
    """Evaluates simulated prices; caches a few day paths per symbol."""

    def __init__(self, cache_days: int = 32) -> None:
        self._anchors: dict[SimSpec, tuple[np.ndarray, np.ndarray]] = {}
        self._days: OrderedDict[tuple[SimSpec, int], DayPath] = OrderedDict()
        self._cache_days = cache_days

    # --- the walk -----------------------------------------------------------------

    def _anchor(self, spec: SimSpec, day: int) -> float:
        """Log price at the first second of ``day`` (days since EPOCH)."""
        walks = self._anchors.get(spec)
        if walks is None:
            sigma_day = spec.volatility / math.sqrt(365)
            forward = np.concatenate([[0.0], np.cumsum(_rng(spec, "anchors+").standard_normal(_ANCHOR_DAYS))]) * sigma_day
            backward = np.concatenate([[0.0], np.cumsum(_rng(spec, "anchors-").standard_normal(_ANCHOR_DAYS))]) * sigma_day
            walks = (forward, backward)
            self._anchors[spec] = walks
        forward, backward = walks
        if abs(day) >= _ANCHOR_DAYS:
            raise ValueError("day outside the simulated range")
        offset = forward[day] if day >= 0 else backward[-day]
        return math.log(spec.start_price) + float(offset)

    def day_path(self, spec: SimSpec, day: int) -> DayPath:
        cached = self._days.get((spec, day))
        if cached is not None:
            self._days.move_to_end((spec, day))
            return cached
        rng = _rng(spec, "day", day)
        sigma_second = spec.volatility / math.sqrt(_YEAR_SECONDS)
        walk = np.empty(SECONDS_PER_DAY + 1)
        walk[0] = 0.0
        np.cumsum(rng.standard_normal(SECONDS_PER_DAY), out=walk[1:])
        walk *= sigma_second
        a0, a1 = self._anchor(spec, day), self._anchor(spec, day + 1)
        fraction = np.arange(SECONDS_PER_DAY + 1) / SECONDS_PER_DAY
        log_price = a0 + walk - fraction * (walk[-1] - (a1 - a0))  # the Brownian bridge
        tick = float(spec.tick_size)
        ticks = np.maximum(np.rint(np.exp(log_price[:-1]) / tick), 1).astype(np.int64)
        volume = rng.poisson(spec.volume_per_second, SECONDS_PER_DAY).astype(np.int32)
        bid_size = rng.poisson(spec.depth, SECONDS_PER_DAY).astype(np.int32) + 1
        ask_size = rng.poisson(spec.depth, SECONDS_PER_DAY).astype(np.int32) + 1
        path = DayPath(day=day, ticks=ticks, volume=volume, bid_size=bid_size, ask_size=ask_size)
        self._days[(spec, day)] = path
        while len(self._days) > self._cache_days:
            self._days.popitem(last=False)
        return path

    # --- evaluation -----------------------------------------------------------------

    @staticmethod
    def locate(ts: int) -> tuple[int, int]:
        """(day since EPOCH, second of day) of unix time ``ts``."""
        days_since_unix, second = divmod(int(ts), SECONDS_PER_DAY)
        return days_since_unix + date(1970, 1, 1).toordinal() - EPOCH, second

    def price(self, spec: SimSpec, ts: float) -> Decimal:
        day, second = self.locate(int(ts))
        return Decimal(int(self.day_path(spec, day).ticks[second])) * spec.tick_size

    def second(self, spec: SimSpec, ts: int) -> tuple[Decimal, int, Decimal, Decimal, int, int]:
        """(last, volume, bid, ask, bid_size, ask_size) of the second ``ts``."""
        day, s = self.locate(ts)
        path = self.day_path(spec, day)
        last_ticks = int(path.ticks[s])
        spread = max(spec.spread_ticks, 1)
        # The last trade printed at the ask (a buy) or at the bid (a sell).
        bought = bool(path.volume[s] % 2)
        bid_ticks = max(last_ticks - spread if bought else last_ticks, 1)
        ask_ticks = bid_ticks + spread
        tick = spec.tick_size
        return (
            Decimal(last_ticks) * tick,
            int(path.volume[s]),
            Decimal(bid_ticks) * tick,
            Decimal(ask_ticks) * tick,
            int(path.bid_size[s]),
            int(path.ask_size[s]),
        )

    def minute_bars(self, spec: SimSpec, start: int, end: int) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, int]]:
        """1-minute bars (time, open, high, low, close, volume) for minutes
        starting in [start, end): exactly what the live ticks of those
        seconds aggregate to."""
        start -= start % 60
        bars: list[tuple[int, Decimal, Decimal, Decimal, Decimal, int]] = []
        tick = spec.tick_size
        t = start
        while t < end:
            day, second = self.locate(t)
            path = self.day_path(spec, day)
            last_second = min(SECONDS_PER_DAY, second + (end - t + 59) // 60 * 60)
            prices = path.ticks[second:last_second].reshape(-1, 60)
            volumes = path.volume[second:last_second].reshape(-1, 60).sum(axis=1)
            opens, highs, lows, closes = prices[:, 0], prices.max(axis=1), prices.min(axis=1), prices[:, -1]
            for i in range(prices.shape[0]):
                bars.append(
                    (
                        t + i * 60,
                        Decimal(int(opens[i])) * tick,
                        Decimal(int(highs[i])) * tick,
                        Decimal(int(lows[i])) * tick,
                        Decimal(int(closes[i])) * tick,
                        int(volumes[i]),
                    )
                )
            t += prices.shape[0] * 60
        return bars
