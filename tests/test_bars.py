"""Bar arithmetic (aggregation, building from ticks) and the simulator loop that stores bars and quotes."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.test import override_settings

from marketdata.bars import BarBuilder, aggregate, bucket_function, columns_from_rows
from marketdata.feeds.simulated import SimulatedFeed
from marketdata.models import Bar
from marketdata.quotes import quote_get, quote_is_stale
from marketdata.services import instrument_upsert
from marketdata.simulation import demo_instruments_ensure, runtime_reset, sim_instruments, simulator_backfill, simulator_step
from marketdata.types import Tick

NY = ZoneInfo("America/New_York")


def random_bars(start: int, count: int, step: int, seed: int = 5) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    """Valid bars every ``step`` seconds with a few gaps, prices in cents, volumes in tenths."""
    rng = random.Random(seed)
    rows, price = [], 10_000
    for i in range(count):
        if rng.random() < 0.05:
            continue  # a gap
        open_ = price
        price = max(100, price + rng.randint(-50, 50))
        high = max(open_, price) + rng.randint(0, 20)
        low = min(open_, price) - rng.randint(0, 20)
        volume = Decimal(rng.randint(0, 30)) / 10
        rows.append((start + i * step, Decimal(open_) / 100, Decimal(high) / 100, Decimal(low) / 100, Decimal(price) / 100, volume))
    return rows


def expected(rows: list[tuple], key) -> list[tuple]:
    """Aggregation written out the long way: group, then first/max/min/last/sum."""
    groups: dict[int, list[tuple]] = defaultdict(list)
    for row in rows:
        groups[key(row[0])].append(row)
    return [
        (
            start,
            group[0][1],
            max(r[2] for r in group),
            min(r[3] for r in group),
            group[-1][4],
            sum((r[5] for r in group), Decimal(0)),
        )
        for start, group in sorted(groups.items())
    ]


def as_rows(columns) -> list[tuple]:
    return list(zip(*columns, strict=True))


def local_midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=NY).timestamp())


@pytest.mark.parametrize("minutes", [5, 15, 60, 240])
def test_intraday_aggregation_matches_a_direct_computation(minutes):
    rows = random_bars(int(datetime(2026, 3, 6, 20, 7, tzinfo=UTC).timestamp()), 3 * 1440, 60)
    size = minutes * 60
    got = as_rows(aggregate(columns_from_rows(rows, convert=Decimal), bucket_function(str(minutes), "America/New_York")))
    assert got == expected(rows, lambda t: t - t % size)


@pytest.mark.parametrize(
    ("resolution", "period"),
    [
        ("1D", lambda d: d),
        ("1W", lambda d: d - timedelta(days=d.weekday())),
        ("1M", lambda d: d.replace(day=1)),
    ],
)
def test_calendar_aggregation_in_new_york_across_the_dst_change(resolution, period):
    # Hourly bars from mid February to the end of April: the clocks change on 8 March.
    rows = random_bars(int(datetime(2026, 2, 14, 3, 0, tzinfo=UTC).timestamp()), 75 * 24, 3600)
    got = as_rows(aggregate(columns_from_rows(rows, convert=Decimal), bucket_function(resolution, "America/New_York")))
    want = expected(rows, lambda t: local_midnight(period(datetime.fromtimestamp(t, NY).date())))
    assert got == want
    assert len(got) > 2


def test_volumes_are_summed_exactly_as_decimals():
    start = 1_773_000_000 - 1_773_000_000 % 3600
    rows = [(start + i * 60, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal("0.1")) for i in range(60)]
    (volume,) = aggregate(columns_from_rows(rows, convert=Decimal), bucket_function("60"))[5]
    assert volume == Decimal("6.0") and isinstance(volume, Decimal)
    # The same in floats is not exact: the reason history keeps Decimals where it matters.
    (float_volume,) = aggregate(columns_from_rows(rows), bucket_function("60"))[5]
    assert float_volume != 6.0


def test_calendar_bars_leave_out_minutes_outside_the_session():
    open_ = int(datetime(2026, 3, 9, 9, 30, tzinfo=NY).timestamp())
    rows = random_bars(open_ - 3600, 9 * 60, 60)  # 08:30 to 17:30
    got = as_rows(aggregate(columns_from_rows(rows, convert=Decimal), bucket_function("1D", "America/New_York", "0930-1600:23456")))
    in_session = [r for r in rows if open_ <= r[0] < open_ + 390 * 60]
    assert got == expected(in_session, lambda t: local_midnight(date(2026, 3, 9)))


def test_bar_builder_rolls_minutes_and_reports_completed_bars():
    builder = BarBuilder()
    minute = 1_773_000_000 - 1_773_000_000 % 60

    def tick(symbol: str, second: int, price: str, size: str = "1") -> Tick:
        return Tick(symbol=symbol, time=float(minute + second), price=Decimal(price), size=Decimal(size))

    for t in (tick("A", 0, "10"), tick("A", 5, "12"), tick("A", 30, "9"), tick("A", 59, "11", "2"), tick("B", 10, "100")):
        current = builder.add(t)
    assert builder.drain_completed() == []
    assert current.time == minute

    rolled = builder.add(tick("A", 61, "11.5"))
    assert (rolled.time, rolled.open, rolled.close, rolled.volume) == (minute + 60, Decimal("11.5"), Decimal("11.5"), Decimal(1))
    done = builder.drain_completed()
    assert len(done) == 1
    symbol, bar = done[0]
    assert symbol == "A"
    assert (bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        minute,
        Decimal(10),
        Decimal(12),
        Decimal(9),
        Decimal(11),
        Decimal(5),
    )
    assert builder.drain_completed() == []
    # A late tick for the finished minute does not reopen or change it.
    builder.add(tick("A", 40, "1"))
    assert (bar.low, builder.bars["A"].low) == (Decimal(9), Decimal("11.5"))
    # B's minute is still open: B has no later tick yet.
    assert builder.bars["B"].time == minute


# --- the simulator loop ------------------------------------------------------------------

NOW = datetime(2026, 3, 17, 14, 30, 20, tzinfo=UTC).timestamp()


@pytest.fixture
def fresh_runtime():
    runtime_reset()
    yield
    runtime_reset()


@pytest.mark.django_db
@override_settings(SIMULATOR_HISTORY_DAYS=1)
def test_simulator_step_stores_minute_bars_and_fresh_quotes(fresh_runtime):
    demo_instruments_ensure(now=NOW)
    minute = int(NOW) - int(NOW) % 60
    quotes, touched = simulator_step(NOW)

    aapl = Bar.objects.filter(instrument__symbol="AAPL", resolution="1")
    assert aapl.count() == 1440 + 1  # a day of history and the current minute
    assert int(aapl.order_by("-time").first().time.timestamp()) == minute
    quote = quote_get("AAPL")
    assert quote is not None and quote.time == int(NOW)
    assert not quote_is_stale(quote, now=NOW)
    assert {q.symbol for q in quotes} >= {"AAPL", "BTC/USDT", "DEMO:IDX"}
    first = aapl.get(time=datetime.fromtimestamp(minute, UTC))
    assert first.close == quote.last
    assert ("AAPL", minute) in {(symbol, bar.time) for symbol, bar in touched}

    # One second later the same bar grows; no new row.
    simulator_step(NOW + 1)
    later = aapl.get(time=datetime.fromtimestamp(minute, UTC))
    assert aapl.count() == 1440 + 1
    assert later.volume >= first.volume and later.high >= first.high and later.low <= first.low
    assert later.close == quote_get("AAPL").last
    assert quote_get("AAPL").time == int(NOW) + 1

    # The stored minute is the one the simulator itself would generate.
    feed = SimulatedFeed(sim_instruments(), seed=settings.SIMULATOR_SEED)
    (_, o, h, lo, c, v), *_ = feed.minute_bars("AAPL", minute - 60, minute)
    before = aapl.get(time=datetime.fromtimestamp(minute - 60, UTC))
    assert (before.open, before.high, before.low, before.close, before.volume) == (o, h, lo, c, v)


@pytest.mark.django_db
def test_backfill_is_idempotent_and_fills_only_the_gap():
    instrument_upsert(symbol="SIM:A", tick_size=Decimal("0.01"), sim_params={"price": 100.0, "volatility": 0.3})
    instrument_upsert(symbol="SIM:B", tick_size=Decimal("0.5"), sim_params={"price": 2000.0, "volatility": 0.5})
    feed = SimulatedFeed(sim_instruments(), seed=42)
    until = NOW

    assert simulator_backfill(feed=feed, until=until, days=1) == 2 * 1440
    assert simulator_backfill(feed=feed, until=until, days=1) == 0
    assert Bar.objects.count() == 2 * 1440

    # A restart ten minutes later adds the ten missing minutes, nothing else.
    assert simulator_backfill(feed=feed, until=until + 600, days=1) == 2 * 10
    assert Bar.objects.count() == 2 * 1450
    assert Bar.objects.filter(instrument__symbol="SIM:A").values("time").distinct().count() == 1450
