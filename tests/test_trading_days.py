"""Days and intraday bars follow each instrument's session in its timezone:
the quote's day fields agree with the 1D bar, intraday bars count from the
session open (live and history alike), a contract expires at its session
close, and ``history`` with ``from == to`` answers the bar at ``from``."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.test import override_settings

from brokers.paper.rules import day_order_expiry
from core.exceptions import InvalidInput
from marketdata.bars import aggregate, bucket_function, columns_from_rows
from marketdata.csvio import bars_export_csv, bars_import_csv, iso_utc
from marketdata.feeds.simulated import SimInstrument, SimulatedFeed
from marketdata.models import Instrument
from marketdata.selectors import bars_history
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.sessions import contract_expired, contract_expiry, next_session_close
from marketdata.simulation import demo_instruments_ensure, runtime_reset, sim_instruments, simulator_step
from marketdata.streaming import Broadcaster, subscribers_add
from marketdata.types import Bar
from streams.publish import group_for

NY = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
SEOUL = ZoneInfo("Asia/Seoul")
TUESDAY = date(2026, 3, 17)  # New York is on EDT since 8 March


def at(tz: ZoneInfo, hour: int, minute: int, second: int = 0, day: date = TUESDAY) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=tz).timestamp())


MARKETS = {
    # symbol: (exchange, timezone, session, a moment in the session)
    "NYS:DAY": ("NYSE", "America/New_York", "0930-1600:23456", at(NY, 11, 20, 29)),
    "NSE:DAY": ("NSE", "Asia/Kolkata", "0915-1530:23456", at(KOLKATA, 10, 47, 29)),
    "KRX:DAY": ("KRX", "Asia/Seoul", "0900-1530:23456", at(SEOUL, 13, 5, 29)),
    "CRYPTO:DAY": ("SIMEX", "UTC", "24x7", at(UTC, 14, 30, 29)),
}


@pytest.fixture
def fresh_runtime():
    runtime_reset()
    yield
    runtime_reset()


def simulated(symbol: str) -> Instrument:
    exchange, tz_name, session, _ = MARKETS[symbol]
    return instrument_upsert(
        symbol=symbol,
        exchange=exchange,
        type="crypto" if session == "24x7" else "stock",
        tick_size=Decimal("0.01"),
        timezone=tz_name,
        session=session,
        sim_params={"price": 100.0, "volatility": 0.4, "volume_per_second": 10},
    )


# --- the quote's day fields --------------------------------------------------------------


@pytest.mark.django_db
@override_settings(SIMULATOR_HISTORY_DAYS=3)
@pytest.mark.parametrize("symbol", list(MARKETS))
def test_the_quotes_day_fields_agree_with_the_daily_bar(alice_api, fresh_runtime, symbol):
    simulated(symbol)
    now = MARKETS[symbol][3]
    cache.delete(f"md:quote:{symbol}")
    try:
        simulator_step(now + 0.5)  # history up to now, then the live second

        udf = alice_api.get(f"/api/v1/datafeed/quotes?symbols={symbol}").json()["d"][0]["v"]
        day = alice_api.get(f"/api/v1/datafeed/history?symbol={symbol}&resolution=1D&from={now - 6 * 86_400}&to={now + 1}").json()
        rest = alice_api.get(f"/api/v1/quotes?symbols={symbol}").json()
        days = alice_api.get(f"/api/v1/history-bars?symbol={symbol}&resolution=1D&countback=2&to={now + 1}").json()["bars"]
    finally:
        cache.delete(f"md:quote:{symbol}")

    assert day["s"] == "ok" and len(day["t"]) >= 2
    today = len(day["t"]) - 1
    # The daily bar of today is the session day in the instrument's timezone.
    tz = ZoneInfo(MARKETS[symbol][1])
    assert datetime.fromtimestamp(day["t"][today], tz) == datetime.combine(datetime.fromtimestamp(now, tz).date(), datetime.min.time(), tz)
    assert udf["lp"] == day["c"][today]
    assert udf["open_price"] == day["o"][today]
    assert udf["high_price"] == day["h"][today]
    assert udf["low_price"] == day["l"][today]
    assert udf["volume"] == day["v"][today]
    assert udf["prev_close_price"] == day["c"][today - 1]
    assert udf["ch"] == pytest.approx(day["c"][today] - day["c"][today - 1], abs=1e-9)
    assert udf["chp"] == pytest.approx((day["c"][today] - day["c"][today - 1]) / day["c"][today - 1] * 100)

    # The REST forms say the same in exact decimals.
    (quote,) = rest["results"]
    yesterday, current = days
    assert Decimal(quote["day_open"]) == Decimal(current["open"])
    assert Decimal(quote["prev_close"]) == Decimal(yesterday["close"])
    assert Decimal(quote["change"]) == Decimal(current["close"]) - Decimal(yesterday["close"])


def test_day_fields_roll_with_the_session_day_not_at_utc_midnight():
    # Seoul trades 09:00-15:30 KST (00:00-06:30 UTC): the previous close is
    # yesterday's 15:29:59 KST, not the price a second before UTC midnight.
    kr = SimInstrument(symbol="KR", type="stock", tick_size=Decimal("1"), price=70_000.0, session="0900-1530:23456", timezone="Asia/Seoul")
    feed = SimulatedFeed([kr], seed=7)
    quote = feed.quote("KR", at(SEOUL, 10, 0))
    monday_close = feed.minute_bars("KR", at(SEOUL, 15, 29, day=date(2026, 3, 16)), at(SEOUL, 15, 30, day=date(2026, 3, 16)))
    assert quote.prev_close == monday_close[-1][4]
    first_minute = feed.minute_bars("KR", at(SEOUL, 9, 0), at(SEOUL, 9, 1))[0]
    assert quote.day_open == first_minute[1]
    assert quote.day_low is not None and quote.day_high is not None
    session_bars = feed.minute_bars("KR", at(SEOUL, 9, 0), at(SEOUL, 10, 0))
    assert quote.day_high >= max(b[2] for b in session_bars) and quote.day_low <= min(b[3] for b in session_bars)


# --- intraday bars from the session open ------------------------------------------------------


def _minutes(tz: ZoneInfo, open_: tuple[int, int], close: tuple[int, int], day: date = TUESDAY) -> list[tuple]:
    start, end = at(tz, *open_, day=day), at(tz, *close, day=day)
    return [(t, Decimal(1), Decimal(2), Decimal(0), Decimal(1), Decimal(1)) for t in range(start, end, 60)]


@pytest.mark.parametrize(
    ("tz", "session", "open_", "close", "resolution", "starts"),
    [
        (KOLKATA, "0915-1530:23456", (9, 15), (15, 30), "60", ["09:15", "10:15", "11:15", "12:15", "13:15", "14:15", "15:15"]),
        (KOLKATA, "0915-1530:23456", (9, 15), (15, 30), "240", ["09:15", "13:15"]),
        (NY, "0930-1600:23456", (9, 30), (16, 0), "60", ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]),
        (NY, "0930-1600:23456", (9, 30), (10, 15), "30", ["09:30", "10:00"]),
        (SEOUL, "0900-1530:23456", (9, 0), (15, 30), "240", ["09:00", "13:00"]),
    ],
)
def test_intraday_bars_count_from_the_session_open(tz, session, open_, close, resolution, starts):
    columns = columns_from_rows(_minutes(tz, open_, close), None)
    bars = aggregate(columns, bucket_function(resolution, tz.key, session))
    assert [datetime.fromtimestamp(t, tz).strftime("%H:%M") for t in bars[0]] == starts
    assert sum(bars[5]) == len(columns[0])  # every minute in exactly one bar


def test_a_session_with_a_break_restarts_its_bars_after_it_and_24x7_keeps_utc_multiples():
    lunch = "0930-1130:23456,1245-1500:23456"
    minutes = _minutes(NY, (9, 30), (11, 30)) + _minutes(NY, (12, 45), (15, 0))
    bars = aggregate(columns_from_rows(minutes, None), bucket_function("60", "America/New_York", lunch))
    assert [datetime.fromtimestamp(t, NY).strftime("%H:%M") for t in bars[0]] == ["09:30", "10:30", "12:45", "13:45", "14:45"]
    # A minute outside the session is in no bar above one minute, as in no day.
    assert bucket_function("60", "America/New_York", lunch)(at(NY, 12, 0)) is None
    # 24x7: multiples of the length in UTC, whatever the timezone.
    assert bucket_function("240", "Asia/Kolkata", "24x7")(at(KOLKATA, 10, 47)) == at(UTC, 4, 0)


@pytest.mark.django_db
def test_history_aggregates_nse_hours_from_0915(alice_api):
    infy = instrument_upsert(symbol="NSE:SESS", exchange="NSE", timezone="Asia/Kolkata", session="0915-1530:23456")
    rows = _minutes(KOLKATA, (9, 15), (15, 30)) + _minutes(KOLKATA, (9, 15), (15, 30), day=date(2026, 3, 18))
    bars_upsert_many(resolution="1", bars=[(infy.id, Bar(t, o, h, lo, c, v)) for t, o, h, lo, c, v in rows])
    # from in the middle of a bar: the bar holding it is read whole.
    body = alice_api.get(f"/api/v1/datafeed/history?symbol=NSE:SESS&resolution=60&from={at(KOLKATA, 10, 40)}&to={at(KOLKATA, 13, 15)}")
    body = body.json()
    assert [datetime.fromtimestamp(t, KOLKATA).strftime("%H:%M") for t in body["t"]] == ["10:15", "11:15", "12:15"]
    assert body["v"] == [60.0, 60.0, 60.0]
    counted = alice_api.get(
        f"/api/v1/datafeed/history?symbol=NSE:SESS&resolution=60&countback=3&to={at(KOLKATA, 9, 16, day=date(2026, 3, 18))}"
    )
    local = [datetime.fromtimestamp(t, KOLKATA).strftime("%d %H:%M") for t in counted.json()["t"]]
    assert local == ["17 14:15", "17 15:15", "18 09:15"]


@pytest.mark.django_db
@override_settings(SIMULATOR_HISTORY_DAYS=1, BAR_BROADCASTER_ENABLED=True)
def test_the_live_forming_bar_starts_at_the_session_open_and_equals_history(fresh_runtime, settings):
    settings.BAR_BROADCASTER_RESOLUTIONS = ["60"]
    simulated("NSE:DAY")
    channel = "bars:NSE:DAY:60"
    cache.delete(f"md:subs:{channel}")
    subscribers_add(channel, 1)
    broadcaster = Broadcaster()
    layer = get_channel_layer()
    now = at(KOLKATA, 10, 47, 29)

    async def scenario() -> list[dict]:
        listener = await layer.new_channel()
        await layer.group_add(group_for(channel), listener)
        frames = []
        for step in (now, now + 1, now + 40):
            _, touched = await sync_to_async(simulator_step)(step + 0.5)
            await sync_to_async(broadcaster.bars_update)(touched)
            await sync_to_async(broadcaster.bars_publish)(step + 0.5)
            frames.append(json.loads((await asyncio.wait_for(layer.receive(listener), 5))["frame"])["data"])
        return frames

    try:
        frames = async_to_sync(scenario)()
    finally:
        subscribers_add(channel, -1)
        cache.delete("md:quote:NSE:DAY")
    live = frames[-1]
    assert datetime.fromtimestamp(live["ts"], KOLKATA).strftime("%H:%M") == "10:15"
    history = bars_history(instrument=Instrument.objects.get(symbol="NSE:DAY"), resolution="60", end=now + 41, countback=1, convert=Decimal)
    t, o, h, lo, c, v = (col[-1] for col in history.columns)
    assert live["ts"] == t
    assert [Decimal(live[k]) for k in ("open", "high", "low", "close", "volume")] == [o, h, lo, c, v]


# --- from == to --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_history_with_from_equal_to_answers_the_bar_at_from(alice_api):
    aapl = instrument_upsert(symbol="NYS:ONE", exchange="NYSE", timezone="America/New_York", session="0930-1600:23456")
    rows = _minutes(NY, (9, 30), (16, 0))
    bars_upsert_many(resolution="1", bars=[(aapl.id, Bar(t, o, h, lo, c, v)) for t, o, h, lo, c, v in rows])

    def history(resolution: str, moment: int):
        return alice_api.get(f"/api/v1/datafeed/history?symbol=NYS:ONE&resolution={resolution}&from={moment}&to={moment}")

    first = rows[0][0]
    response = history("1", first + 120)
    assert response.status_code == 200
    assert response.json() == {"s": "ok", "t": [first + 120], "o": [1.0], "h": [2.0], "l": [0.0], "c": [1.0], "v": [1.0]}
    # The whole bar at from, not the part before it.
    assert history("60", at(NY, 10, 30)).json() == {
        "s": "ok",
        "t": [at(NY, 10, 30)],
        "o": [1.0],
        "h": [2.0],
        "l": [0.0],
        "c": [1.0],
        "v": [60.0],
    }
    assert history("1D", at(NY, 0, 0)).json()["v"] == [390.0]
    # No bar starts there: no_data, pointing at the bar before.
    assert history("1", first + 90).json() == {"s": "no_data", "nextTime": first + 60}
    assert history("60", at(NY, 10, 0)).json() == {"s": "no_data", "nextTime": at(NY, 9, 30)}
    assert history("1", first - 3600).json() == {"s": "no_data"}
    # from after to stays an error.
    assert alice_api.get(f"/api/v1/datafeed/history?symbol=NYS:ONE&resolution=1&from={first + 60}&to={first}").status_code == 422


# --- expiries ------------------------------------------------------------------------------------


def test_a_contract_expires_at_its_session_close_on_the_expiry_date_in_its_timezone():
    thursday = date(2026, 3, 26)
    assert contract_expiry(thursday, "Asia/Kolkata", "0915-1530:23456") == at(KOLKATA, 15, 30, day=thursday)
    assert contract_expiry(thursday, "America/New_York", "0930-1600:23456") == at(NY, 16, 0, day=thursday)
    # A 24x7 contract's day ends at midnight in its timezone.
    assert contract_expiry(thursday, "Asia/Seoul", "24x7") == at(SEOUL, 0, 0, day=date(2026, 3, 27))
    # Expiring on a day without a session: the last close before it.
    assert contract_expiry(date(2026, 3, 28), "Asia/Kolkata", "0915-1530:23456") == at(KOLKATA, 15, 30, day=date(2026, 3, 27))
    close = at(KOLKATA, 15, 30, day=thursday)
    assert not contract_expired(thursday, "Asia/Kolkata", "0915-1530:23456", close - 1)
    assert contract_expired(thursday, "Asia/Kolkata", "0915-1530:23456", close)
    assert not contract_expired(None, "UTC", "24x7", close)


def test_day_orders_and_contracts_share_the_session_close():
    now = at(KOLKATA, 11, 0)
    assert day_order_expiry("0915-1530:23456", "Asia/Kolkata", now) == next_session_close(now, "Asia/Kolkata", "0915-1530:23456")
    assert day_order_expiry("0915-1530:23456", "Asia/Kolkata", now) == contract_expiry(TUESDAY, "Asia/Kolkata", "0915-1530:23456")
    # A 24x7 instrument's day order lives until midnight where it trades, as its 1D bar.
    assert day_order_expiry("24x7", "Asia/Seoul", at(SEOUL, 23, 0)) == at(SEOUL, 0, 0, day=date(2026, 3, 18))
    assert day_order_expiry("24x7", "UTC", at(UTC, 23, 0)) == at(UTC, 0, 0, day=date(2026, 3, 18))


@pytest.mark.django_db
def test_the_simulator_prices_and_stops_a_contract_at_its_expiry_moment():
    index = instrument_upsert(symbol="NSE:IDX", type="index", tick_size=Decimal("0.05"), sim_params={"price": 20_000.0})
    expiry = date(2026, 3, 26)
    instrument_upsert(
        symbol="NSE:IDX-F",
        type="future",
        tick_size=Decimal("0.05"),
        timezone="Asia/Kolkata",
        session="0915-1530:23456",
        expiry=expiry,
        underlying=index,
        sim_params={"open_interest": 1000},
    )
    (future,) = [i for i in sim_instruments() if i.symbol == "NSE:IDX-F"]
    close = at(KOLKATA, 15, 30, day=expiry)
    assert future.expiry_ts == close  # the time to expiry runs to 15:30 IST, not 15:30 UTC
    feed = SimulatedFeed(sim_instruments(), seed=3)
    last = feed.minute_bars("NSE:IDX-F", close - 3600, close + 3600)
    assert last[-1][0] == close - 60  # the last minute traded, then nothing
    feed.last_second["NSE:IDX-F"] = close - 2
    assert [q.symbol for q in feed.poll(close - 1).quotes] == ["NSE:IDX", "NSE:IDX-F"]
    assert [q.symbol for q in feed.poll(close + 1).quotes] == ["NSE:IDX"]


@pytest.mark.django_db
def test_the_demo_front_month_lives_until_its_close_on_expiry_day():
    expiry_day = datetime(2026, 3, 26, 12, 0, tzinfo=UTC).timestamp()  # the last Thursday of March, before the close
    demo_instruments_ensure(now=expiry_day)
    futures = sorted(Instrument.objects.filter(type="future").values_list("expiry", flat=True))
    assert futures[0] == date(2026, 3, 26)


# --- CSV import and export follow the same bars -------------------------------------------------


@pytest.mark.django_db
@override_settings(HISTORY_MAX_BARS=10)
def test_csv_takes_and_writes_hourly_bars_from_the_session_open():
    infy = instrument_upsert(symbol="NSE:CSV", exchange="NSE", timezone="Asia/Kolkata", session="0915-1530:23456")
    # A broker's hourly candles start at 09:15 IST; 09:00 is no bar of this session, 08:00 is before it.
    text = "time,open,high,low,close,volume\n" + "".join(
        f"{at(KOLKATA, h, m)},100,101,99,100.5,10\n" for h, m in ((9, 15), (10, 15), (11, 15), (10, 0), (8, 0))
    )
    summary = bars_import_csv(instrument=infy, stream=io.StringIO(text), resolution="60")
    assert (summary.inserted, summary.rejected) == (3, 2)
    reasons = {r.line: r.reason for r in summary.rejections}
    assert "not the start of a 60-minute bar" in reasons[5] and "outside the session" in reasons[6]

    # Exported hourly bars are whole, though read in windows of a few bars.
    rows = _minutes(KOLKATA, (9, 15), (15, 30)) + _minutes(KOLKATA, (9, 15), (15, 30), day=date(2026, 3, 18))
    other = instrument_upsert(symbol="NSE:CSV2", exchange="NSE", timezone="Asia/Kolkata", session="0915-1530:23456")
    bars_upsert_many(resolution="1", bars=[(other.id, Bar(t, o, h, lo, c, v)) for t, o, h, lo, c, v in rows])
    out = io.StringIO()
    assert bars_export_csv(instrument=other, stream=out, resolution="60") == 14
    lines = out.getvalue().splitlines()[1:]
    assert lines[0].startswith(iso_utc(at(KOLKATA, 9, 15))) and lines[-1].startswith(iso_utc(at(KOLKATA, 15, 15, day=date(2026, 3, 18))))
    assert [line.rsplit(",", 2)[-2] for line in lines] == ["60", "60", "60", "60", "60", "60", "15"] * 2


@pytest.mark.django_db
def test_a_daily_bar_of_an_overnight_session_includes_the_evening_before(alice_api):
    # CME-like: the Monday session opens on Sunday 18:00 New York.
    futures = instrument_upsert(symbol="CME:DAY", timezone="America/New_York", session="1800-1700:23456")
    sunday, monday = date(2026, 3, 15), TUESDAY.replace(day=16)
    rows = _minutes(NY, (18, 0), (23, 0), day=sunday) + _minutes(NY, (0, 0), (17, 0), day=monday)
    bars_upsert_many(resolution="1", bars=[(futures.id, Bar(t, o, h, lo, c, v)) for t, o, h, lo, c, v in rows])
    midnight = at(NY, 0, 0, day=monday)
    body = alice_api.get(f"/api/v1/datafeed/history?symbol=CME:DAY&resolution=1D&from={midnight}&to={midnight + 86_400}").json()
    assert body["t"] == [midnight] and body["v"] == [len(rows)]


# --- sessions and timezones that cannot be read are refused ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [("session", "0975-1600"), ("session", "9:30-16:00"), ("timezone", "Mars/Olympus")])
def test_an_unreadable_session_or_timezone_is_refused_where_instruments_are_written(field, value):
    with pytest.raises(InvalidInput) as refused:
        instrument_upsert(symbol="BAD:ONE", **{field: value})
    assert list(refused.value.fields) == [field]
    assert not Instrument.objects.filter(symbol="BAD:ONE").exists()


@pytest.mark.django_db
def test_the_admin_shows_an_unreadable_session_on_its_field(admin_client):
    form = {
        "symbol": "BAD:ADMIN",
        "type": "stock",
        "currency": "USD",
        "tick_size": "0.01",
        "lot_size": "1",
        "multiplier": "1",
        "session": "0930-2500",
        "timezone": "Asia/Nowhere",
        "broker_codes": "{}",
        "sim_params": "{}",
    }
    response = admin_client.post("/admin/marketdata/instrument/add/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"session", "timezone"}
    assert not Instrument.objects.filter(symbol="BAD:ADMIN").exists()


@pytest.mark.parametrize(
    ("session", "tz_name", "start"),
    [
        ("0900-1530:23456", "Asia/Seoul", at(SEOUL, 8, 57)),  # across the open
        ("0900-1530:23456", "Asia/Seoul", at(SEOUL, 15, 27)),  # across the close
        ("24x7", "America/New_York", at(NY, 23, 57)),  # across local midnight
    ],
)
def test_a_long_running_feed_and_a_fresh_one_quote_the_same_day(session, tz_name, start):
    spec = SimInstrument(symbol="X", type="stock", tick_size=Decimal("0.01"), price=100.0, session=session, timezone=tz_name)
    running = SimulatedFeed([spec], seed=5)
    running.last_second["X"] = start - 1
    for now in range(start, start + 6 * 60, 7):
        for quote in running.poll(now + 0.25).quotes:
            fresh = SimulatedFeed([spec], seed=5).quote("X", now)
            assert (quote.day_open, quote.day_high, quote.day_low, quote.volume, quote.prev_close) == (
                fresh.day_open,
                fresh.day_high,
                fresh.day_low,
                fresh.volume,
                fresh.prev_close,
            )
            assert quote.day_low <= quote.last <= quote.day_high
