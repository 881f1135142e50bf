"""Days, weeks and months come from the maintained daily aggregate, which must
equal aggregating the 1-minute bars on read (the reference) for every kind of
session, the forming day included, and stay so when an import rewrites past
minutes; history resolves its instrument without a query of its own."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from marketdata.csvio import bars_import_csv, iso_utc
from marketdata.models import DailyBar
from marketdata.selectors import bars_history, history_target
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.types import Bar

MARKETS = {
    # symbol: (timezone, session)
    "NYS:AGG": ("America/New_York", "0930-1600:23456"),
    "NSE:AGG": ("Asia/Kolkata", "0915-1530:23456"),
    "KRX:AGG": ("Asia/Seoul", "0900-1530:23456"),
    "CME:AGG": ("America/Chicago", "1700-1600:23456"),  # overnight: the evening belongs to the next day
    "CRYPTO:AGG": ("UTC", "24x7"),
}
FIRST_DAY = date(2026, 1, 26)  # across a month end and New York's change to EDT on 8 March
DAYS = 45
STEP = 17 * 60  # one minute in every 17: every hour of the day, in session and out
NOW = int(datetime(2026, 3, 11, 15, 7, tzinfo=UTC).timestamp())  # New York and 24x7 mid-day: a forming day


def _minutes(seed: int, start: int, end: int) -> list[Bar]:
    rng = random.Random(seed)
    price = 10_000
    out = []
    for t in range(start - start % 60, end, STEP):
        o = price
        c = max(100, o + rng.randint(-40, 40))
        h, lo = max(o, c) + rng.randint(0, 20), min(o, c) - rng.randint(0, 20)
        volume = Decimal(rng.randint(0, 400)) / 4  # quarters: exact in floats too
        out.append(Bar(time=t, open=Decimal(o) / 100, high=Decimal(h) / 100, low=Decimal(lo) / 100, close=Decimal(c) / 100, volume=volume))
        price = c
    return out


@pytest.fixture
def markets(db):
    instruments = {}
    start = int(datetime.combine(FIRST_DAY, datetime.min.time(), UTC).timestamp()) - 86_400
    for n, (symbol, (tz_name, session)) in enumerate(MARKETS.items()):
        instrument = instrument_upsert(symbol=symbol, timezone=tz_name, session=session, tick_size=Decimal("0.01"))
        bars = _minutes(n, start, NOW)
        # Written as the simulator does: a day's chunk per call.
        for i in range(0, len(bars), 90):
            bars_upsert_many(resolution="1", bars=[(instrument.pk, bar) for bar in bars[i : i + 90]])
        instruments[symbol] = instrument
    return instruments


def _requests(tz_name: str) -> list[dict]:
    tz = ZoneInfo(tz_name)
    mid = int(datetime(2026, 2, 18, 11, 23, tzinfo=tz).timestamp())
    day = int(datetime(2026, 2, 9, tzinfo=tz).timestamp())  # a Monday: a day's and a week's start
    month = int(datetime(2026, 3, 1, tzinfo=tz).timestamp())
    end = NOW + 1
    return [
        {"countback": 1, "end": end},
        {"countback": 7, "end": end},
        {"countback": 500, "end": end},
        {"countback": 3, "end": mid},  # the last day cut mid-day
        {"start": 0, "end": end},
        {"start": mid, "end": end},
        {"start": mid - 20 * 86_400, "end": mid},
        {"start": day, "end": day},  # the one bar starting there
        {"start": month, "end": month},
        {"start": day + 3600, "end": day + 3600},  # no bar starts there
        {"start": int(datetime(2025, 6, 1, tzinfo=UTC).timestamp()), "end": int(datetime(2025, 7, 1, tzinfo=UTC).timestamp())},
    ]


def _assert_equal_to_the_reference(instrument) -> None:
    stored = history_target(name=instrument.symbol).stored
    for resolution in ("1D", "1W", "1M"):
        for request in _requests(instrument.timezone):
            for convert in (Decimal, float):
                kwargs = dict(instrument=instrument, resolution=resolution, convert=convert, **request)
                maintained = bars_history(stored=stored, **kwargs)
                reference = bars_history(from_minutes=True, **kwargs)
                assert maintained.columns == reference.columns, (resolution, request, convert)
                assert maintained.next_time == reference.next_time, (resolution, request)


@pytest.mark.django_db
@pytest.mark.parametrize("symbol", list(MARKETS))
def test_days_weeks_and_months_from_the_aggregate_equal_the_minutes_aggregated_on_read(markets, symbol):
    instrument = markets[symbol]
    assert DailyBar.objects.filter(instrument=instrument).count() >= 30
    today = bars_history(instrument=instrument, resolution="1D", end=NOW + 1, countback=1, convert=Decimal)
    assert today.columns[0], "the forming day has its bar"
    _assert_equal_to_the_reference(instrument)


@pytest.mark.django_db
@pytest.mark.parametrize("symbol", ["NYS:AGG", "CME:AGG", "CRYPTO:AGG"])
def test_an_import_that_rewrites_past_minutes_leaves_the_aggregate_exact(markets, symbol):
    instrument = markets[symbol]
    tz = ZoneInfo(instrument.timezone)
    before = bars_history(instrument=instrument, resolution="1D", end=NOW + 1, countback=60, convert=Decimal)
    # Rewrite a past day's minutes: a lower high, a new low, less volume, and one new minute.
    base = int(datetime(2026, 2, 12, 10, 0, tzinfo=tz).timestamp())
    stored = instrument.bars.filter(
        resolution="1", time__gte=datetime.fromtimestamp(base, UTC), time__lt=datetime.fromtimestamp(base + 6 * 3600, UTC)
    ).values_list("time", flat=True)
    rows = ["time,open,high,low,close,volume"]
    rows += [f"{iso_utc(int(t.timestamp()))},50.00,50.25,1.50,50.10,0.25" for t in stored]
    rows.append(f"{iso_utc(base + 60)},60.00,60.00,60.00,60.00,1")
    summary = bars_import_csv(instrument=instrument, stream=io.StringIO("\n".join(rows) + "\n"), resolution="1")
    assert summary.rejected == 0 and summary.updated > 0
    after = bars_history(instrument=instrument, resolution="1D", end=NOW + 1, countback=60, convert=Decimal)
    assert after.columns != before.columns
    _assert_equal_to_the_reference(instrument)


@pytest.mark.django_db
def test_a_new_session_regroups_the_days(markets):
    instrument = instrument_upsert(symbol="NYS:AGG", session="0930-1200:23456")
    _assert_equal_to_the_reference(instrument)


@pytest.mark.django_db
def test_the_command_builds_the_aggregate_for_existing_minutes(markets):
    expected = {
        symbol: list(DailyBar.objects.filter(instrument=i).values_list("time", "open", "high", "low", "close", "volume"))
        for symbol, i in markets.items()
    }
    DailyBar.objects.all().delete()
    call_command("build_daily_bars", stdout=io.StringIO())
    for symbol, instrument in markets.items():
        rows = list(DailyBar.objects.filter(instrument=instrument).values_list("time", "open", "high", "low", "close", "volume"))
        assert rows == expected[symbol]


@pytest.mark.django_db
@pytest.mark.parametrize("resolution", ["1", "1D", "1W"])
def test_a_history_read_is_one_query_once_the_instrument_is_known(markets, resolution, django_assert_num_queries):
    history_target(name="NYS:AGG")
    with django_assert_num_queries(1):
        target = history_target(name="NYS:AGG")
        history = bars_history(instrument=target.instrument, stored=target.stored, resolution=resolution, end=NOW + 1, countback=300)
    assert len(history) == 300 if resolution == "1" else len(history) > 0


@pytest.mark.django_db
def test_history_over_http_costs_one_query_more_than_me(alice_api, markets, django_assert_num_queries):
    url = f"/api/v1/datafeed/history?symbol=NYS:AGG&resolution=1D&countback=20&to={NOW + 1}"
    assert alice_api.get(url).status_code == 200  # the process learns the instrument
    alice_api.get("/api/v1/me")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as me:
        assert alice_api.get("/api/v1/me").status_code == 200
    with django_assert_num_queries(len(me) + 1):
        response = alice_api.get(url)
    assert response.status_code == 200 and len(response.json()["t"]) == 20


@pytest.mark.django_db
def test_an_instrument_written_is_looked_up_afresh(markets, alice_api):
    url = f"/api/v1/datafeed/history?symbol=NYS:AGG&resolution=1D&countback=5&to={NOW + 1}"
    first = alice_api.get(url).json()
    instrument_upsert(symbol="NYS:AGG", timezone="Asia/Tokyo")
    second = alice_api.get(url).json()
    assert first["t"] != second["t"], "days start at midnight in the new timezone"
    midnight = datetime.fromtimestamp(second["t"][-1], ZoneInfo("Asia/Tokyo"))
    assert (midnight.hour, midnight.minute) == (0, 0)
    assert midnight.date() <= datetime.fromtimestamp(NOW, ZoneInfo("Asia/Tokyo")).date() + timedelta(days=1)
