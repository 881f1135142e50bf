"""The simulator: a pure function of (seed, symbol, time), and the feed built on it."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from marketdata.bars import BarBuilder
from marketdata.feeds.derivatives import option_price
from marketdata.feeds.simulated import SimInstrument, SimulatedFeed
from marketdata.feeds.simulator import SECONDS_PER_DAY, SimSpec, Simulator

SPEC = SimSpec(symbol="SIM", start_price=100.0, volatility=0.3, seed=11)
DAY = 75  # days since the simulator's epoch (2026-01-01)
MIDNIGHT = int(datetime(2026, 3, 17, tzinfo=UTC).timestamp())  # the start of day 75
EXPIRY = MIDNIGHT + 200 * SECONDS_PER_DAY
ROOT = Path(__file__).resolve().parent.parent

BASE = SimInstrument(symbol="SIM", type="stock", tick_size=Decimal("0.01"), price=100.0, volatility=0.3)
FUTURE = SimInstrument(symbol="SIM-F", type="future", tick_size=Decimal("0.05"), underlying="SIM", expiry_ts=EXPIRY)
CALL = SimInstrument(
    symbol="SIM-C100", type="option", tick_size=Decimal("0.05"), underlying="SIM", expiry_ts=EXPIRY, strike=100.0, call=True, volatility=0.2
)
NYSE = SimInstrument(
    symbol="NYS", type="stock", tick_size=Decimal("0.01"), price=50.0, session="0930-1600:23456", timezone="America/New_York"
)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# --- determinism --------------------------------------------------------------------------


def test_a_day_is_the_same_whatever_was_evaluated_before(monkeypatch):
    reference = Simulator().day_path(SPEC, DAY).ticks.copy()

    # Another simulator that saw other days first, in another order, with a
    # clock that lies: the path of the day does not move.
    monkeypatch.setattr("time.time", lambda: 4_000_000_000.0)
    monkeypatch.setattr("time.monotonic", lambda: 1.0)
    other = Simulator(cache_days=2)
    for day in (DAY + 9, DAY - 40, DAY + 1, DAY - 1):
        other.day_path(SPEC, day)
    assert np.array_equal(other.day_path(SPEC, DAY).ticks, reference)

    backwards = Simulator()
    for day in range(DAY + 3, DAY - 1, -1):
        path = backwards.day_path(SPEC, day)
    assert np.array_equal(path.ticks, reference)


def test_minute_bars_do_not_depend_on_evaluation_order():
    start = MIDNIGHT + 3600
    forward = SimulatedFeed([BASE, FUTURE], seed=11)
    one = [forward.minute_bars("SIM-F", start + i * 600, start + (i + 1) * 600) for i in range(3)]
    backward = SimulatedFeed([BASE, FUTURE], seed=11)
    other = [backward.minute_bars("SIM-F", start + i * 600, start + (i + 1) * 600) for i in (2, 1, 0)][::-1]
    assert one == other
    assert sum(one, []) == SimulatedFeed([BASE, FUTURE], seed=11).minute_bars("SIM-F", start, start + 1800)


def test_a_fresh_process_with_another_timezone_and_hash_seed_agrees():
    script = (
        "from marketdata.feeds.simulator import Simulator, SimSpec; import hashlib, numpy as np;"
        f"p = Simulator().day_path(SimSpec(symbol='SIM', start_price=100.0, volatility=0.3, seed=11), {DAY});"
        "print(hashlib.sha256(np.ascontiguousarray(p.ticks).tobytes()).hexdigest())"
    )
    env = {**os.environ, "TZ": "Asia/Tokyo", "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == digest(Simulator().day_path(SPEC, DAY).ticks)


def test_another_seed_or_symbol_gives_another_path():
    sim = Simulator()
    reference = sim.day_path(SPEC, DAY).ticks
    reseeded = SimSpec(symbol="SIM", start_price=100.0, volatility=0.3, seed=12)
    renamed = SimSpec(symbol="SIM2", start_price=100.0, volatility=0.3, seed=11)
    for spec in (reseeded, renamed):
        ticks = sim.day_path(spec, DAY).ticks
        assert not np.array_equal(ticks, reference)
        assert np.mean(ticks != reference) > 0.9


# --- shape of the walk --------------------------------------------------------------------


def test_a_day_joins_the_next_at_midnight():
    sim = Simulator()
    day_moves = []
    for day in range(DAY, DAY + 10):
        last = sim.day_path(SPEC, day).ticks[-1]
        first = sim.day_path(SPEC, day + 1).ticks[0]
        # One second of a 30% walk is ~5e-5; a gap would be like a day's move (~1.6e-2).
        assert abs(math.log(first / last)) < 1e-3
        day_moves.append(abs(math.log(last / sim.day_path(SPEC, day).ticks[0])))
    assert max(day_moves) > 2e-3


def test_prices_are_whole_ticks_and_at_least_one_tick():
    feed = SimulatedFeed([BASE, FUTURE, CALL], seed=11)
    for symbol in ("SIM", "SIM-F", "SIM-C100"):
        tick = feed.instruments[symbol].tick_size
        for bar in feed.minute_bars(symbol, MIDNIGHT, MIDNIGHT + 3600):
            for price in bar[1:5]:
                assert price >= tick and price % tick == 0
    # A penny stock with a wild walk is floored at one tick, never 0.
    penny = SimSpec(symbol="PENNY", start_price=0.02, volatility=3.0, seed=1)
    ticks = Simulator().day_path(penny, DAY + 200).ticks
    assert ticks.min() >= 1
    assert Simulator().price(penny, MIDNIGHT + 200 * SECONDS_PER_DAY) >= penny.tick_size


@pytest.mark.parametrize(("volatility", "price", "tick"), [(0.3, 100.0, "0.01"), (0.6, 60_000.0, "0.1")])
def test_volatility_of_30_days_of_minute_closes_matches_the_spec(volatility, price, tick):
    spec = SimSpec(symbol=f"VOL{volatility}", start_price=price, volatility=volatility, tick_size=Decimal(tick), seed=3)
    sim = Simulator()
    closes = np.concatenate([sim.day_path(spec, day).ticks[59::60] for day in range(DAY - 30, DAY)]).astype(np.float64)
    annualised = np.diff(np.log(closes)).std() * math.sqrt(365 * 24 * 60)
    assert 0.5 * volatility < annualised < 1.5 * volatility


# --- the feed -----------------------------------------------------------------------------


def poll_minutes(feed: SimulatedFeed, start: int, minutes: int) -> dict[str, list[tuple]]:
    """Poll once a minute from ``start`` and fold the ticks into 1-minute bars."""
    builder = BarBuilder()
    feed.last_second.update({symbol: start - 1 for symbol in feed.symbols()})
    for n in range(1, minutes + 2):
        for tick in feed.poll(start + n * 60 - 1 + 0.4).ticks:
            builder.add(tick)
    bars: dict[str, list[tuple]] = {}
    for symbol, bar in builder.drain_completed():
        bars.setdefault(symbol, []).append((bar.time, bar.open, bar.high, bar.low, bar.close, int(bar.volume)))
    return bars


def test_bars_built_from_ticks_equal_the_generated_history_across_midnight():
    start = MIDNIGHT - 5 * 60
    feed = SimulatedFeed([BASE, FUTURE, CALL], seed=11)
    built = poll_minutes(feed, start, 10)
    history = SimulatedFeed([BASE, FUTURE, CALL], seed=11)
    for symbol in ("SIM", "SIM-F", "SIM-C100"):
        assert built[symbol] == history.minute_bars(symbol, start, start + 10 * 60), symbol
        assert len(built[symbol]) == 10


def test_calls_rise_and_puts_fall_with_the_underlying():
    assert option_price(110, 100, 0.5, 0.2, call=True) > option_price(100, 100, 0.5, 0.2, call=True)
    assert option_price(110, 100, 0.5, 0.2, call=False) < option_price(100, 100, 0.5, 0.2, call=False)

    # At the money, where either option moves by about half the underlying's move.
    strike = float(round(Simulator().price(SPEC, MIDNIGHT)))
    call_at, put_at = (
        SimInstrument(
            symbol=s, type="option", tick_size=Decimal("0.05"), underlying="SIM", expiry_ts=EXPIRY, strike=strike, call=c, volatility=0.2
        )
        for s, c in (("SIM-C", True), ("SIM-P", False))
    )
    feed = SimulatedFeed([BASE, call_at, put_at], seed=11)
    # Every half hour for three days: time decay over half an hour is ~0.0003,
    # far below a tick, so the option moves with the underlying alone.
    seconds = range(MIDNIGHT, MIDNIGHT + 3 * SECONDS_PER_DAY, 1800)
    spot, call, put = (np.diff([float(feed.quote(symbol, s).last) for s in seconds]) for symbol in ("SIM", "SIM-C", "SIM-P"))
    moved = np.abs(spot) > 0.3  # enough to move either option by at least one 0.05 tick
    assert moved.sum() > 10
    assert np.all(np.sign(call[moved]) == np.sign(spot[moved]))
    assert np.all(np.sign(put[moved]) == -np.sign(spot[moved]))


def test_futures_trade_above_spot_with_a_positive_rate():
    feed = SimulatedFeed([BASE, FUTURE], seed=11)
    spot = feed.minute_bars("SIM", MIDNIGHT, MIDNIGHT + 3600)
    future = feed.minute_bars("SIM-F", MIDNIGHT, MIDNIGHT + 3600)
    for s, f in zip(spot, future, strict=True):
        assert f[4] > s[4]
        # Cost of carry for ~200 days at 4%: about 2.2%.
        assert 1.01 < f[4] / s[4] < 1.04


def test_quotes_have_bid_below_ask_and_last_within_the_day_range():
    feed = SimulatedFeed([BASE, FUTURE, CALL], seed=11)
    start = MIDNIGHT - 120
    feed.last_second.update({symbol: start - 1 for symbol in feed.symbols()})
    seen = 0
    for now in range(start, start + 300, 7):
        for quote in feed.poll(now + 0.5).quotes:
            assert quote.bid is not None and quote.ask is not None
            assert quote.bid < quote.ask
            assert quote.day_low is not None and quote.day_high is not None
            assert quote.day_low <= quote.last <= quote.day_high
            assert quote.time == float(now)
            seen += 1
    assert seen == 3 * len(range(start, start + 300, 7))
    # A quote asked for directly, ahead of the polled seconds, stays in its day range.
    ahead = feed.quote("SIM", start + 5000)
    assert ahead.day_low <= ahead.last <= ahead.day_high


def test_a_session_limited_instrument_ticks_only_in_session():
    ny = ZoneInfo("America/New_York")
    open_ = int(datetime(2026, 3, 16, 9, 30, tzinfo=ny).timestamp())  # a Monday
    feed = SimulatedFeed([NYSE], seed=11)
    feed.last_second["NYS"] = open_ - 121
    batch = feed.poll(open_ + 119)
    assert batch.ticks and min(t.time for t in batch.ticks) == open_
    assert all(datetime.fromtimestamp(t.time, ny).time() >= datetime(2026, 1, 1, 9, 30).time() for t in batch.ticks)

    saturday = int(datetime(2026, 3, 21, 12, 0, tzinfo=ny).timestamp())
    feed.last_second["NYS"] = saturday - 200
    assert feed.poll(saturday) == type(batch)()  # no ticks, no quote

    day = feed.minute_bars("NYS", open_ - 9 * 3600, open_ + 15 * 3600)
    assert len(day) == 390  # 09:30 to 16:00
    assert day[0][0] == open_ and day[-1][0] == open_ + 389 * 60
