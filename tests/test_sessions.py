"""Trading sessions (TradingView notation) and calendar periods in an exchange's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from marketdata.sessions import parse_session, period_start

NY = ZoneInfo("America/New_York")
# 2026: US clocks go forward on Sunday 8 March and back on Sunday 1 November.
MONDAY = date(2026, 3, 2)


def local(day: date, hour: int, minute: int = 0, tz: ZoneInfo = NY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_24x7_is_always_open_and_never_closes():
    session = parse_session("24x7")
    assert session.always_open
    for moment in (local(MONDAY, 0), local(date(2026, 3, 7), 23, 59), local(date(2026, 3, 8), 2, 30)):
        assert session.is_open(moment)
        assert session.session_day(moment) == moment.date()
    assert session.close_time(MONDAY, NY) is None
    assert parse_session("") == session == parse_session("0000-2400:1234567")


@pytest.mark.parametrize(
    ("day", "hour", "minute", "open_"),
    [
        (MONDAY, 9, 29, False),
        (MONDAY, 9, 30, True),  # the start is inside
        (MONDAY, 12, 0, True),
        (MONDAY, 15, 59, True),
        (MONDAY, 16, 0, False),  # the end is outside
        (date(2026, 3, 6), 10, 0, True),  # Friday
        (date(2026, 3, 7), 10, 0, False),  # Saturday
        (date(2026, 3, 8), 10, 0, False),  # Sunday
    ],
)
def test_day_session_on_weekdays(day, hour, minute, open_):
    session = parse_session("0930-1600:23456")
    moment = local(day, hour, minute)
    assert session.is_open(moment) is open_
    assert session.session_day(moment) == (day if open_ else None)


@pytest.mark.parametrize(
    ("day", "hour", "minute", "session_day"),
    [
        (date(2026, 3, 1), 17, 59, None),  # Sunday before the open
        (date(2026, 3, 1), 18, 0, MONDAY),  # Sunday evening trades for Monday
        (date(2026, 3, 1), 19, 0, MONDAY),
        (MONDAY, 0, 0, MONDAY),
        (MONDAY, 16, 59, MONDAY),
        (MONDAY, 17, 0, None),  # the daily break
        (MONDAY, 17, 30, None),
        (MONDAY, 18, 0, date(2026, 3, 3)),  # Monday evening trades for Tuesday
        (date(2026, 3, 6), 16, 59, date(2026, 3, 6)),  # Friday's last minute
        (date(2026, 3, 6), 17, 30, None),  # Friday after the close
        (date(2026, 3, 6), 19, 0, None),  # would be Saturday's session: none
        (date(2026, 3, 7), 12, 0, None),  # Saturday
    ],
)
def test_overnight_session_belongs_to_the_next_day(day, hour, minute, session_day):
    session = parse_session("1800-1700:23456")
    assert session.session_day(local(day, hour, minute)) == session_day


def test_close_time_is_the_local_close_in_utc_across_dst():
    session = parse_session("0930-1600:23456")
    assert session.close_time(date(2026, 3, 6), NY) == datetime(2026, 3, 6, 21, 0, tzinfo=UTC)  # EST
    assert session.close_time(date(2026, 3, 9), NY) == datetime(2026, 3, 9, 20, 0, tzinfo=UTC)  # EDT
    assert session.close_time(date(2026, 3, 7), NY) is None  # Saturday
    overnight = parse_session("1800-1700:23456")
    assert overnight.close_time(MONDAY, NY) == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    split = parse_session("0930-1200:23456,1300-1600:23456")
    assert split.close_time(MONDAY, NY) == datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    assert not split.is_open(local(MONDAY, 12, 30)) and split.is_open(local(MONDAY, 13, 0))


def test_a_session_without_days_trades_monday_to_friday_as_tradingview_reads_it():
    session = parse_session("0930-1600")
    assert session.is_open(local(MONDAY, 10))
    assert not session.is_open(local(date(2026, 3, 7), 10))
    assert not session.is_open(local(date(2026, 3, 8), 10))


def test_0000_0000_is_the_whole_day_not_the_next_one():
    session = parse_session("0000-0000:1234567")
    assert session.session_day(local(MONDAY, 10)) == MONDAY
    assert session.session_day(local(MONDAY, 0)) == MONDAY


@pytest.mark.parametrize("text", ["0975-1600", "2500-0100", "2430-0100", "930-1600", "0930-1600:89", "0930", "abcd-efgh", "2400-0100"])
def test_malformed_sessions_are_refused(text):
    with pytest.raises(ValueError):
        parse_session(text)


# --- calendar periods ------------------------------------------------------------------


def test_day_start_is_local_midnight_on_both_sides_of_the_spring_change():
    # Sunday 8 March 2026 lasts 23 hours in New York.
    assert period_start(utc(2026, 3, 8, 17, 0), "1D", "America/New_York") == utc(2026, 3, 8, 5, 0)  # 00:00 EST
    assert period_start(utc(2026, 3, 9, 4, 30), "1D", "America/New_York") == utc(2026, 3, 9, 4, 0)  # 00:00 EDT
    assert period_start(utc(2026, 3, 9, 3, 59), "1D", "America/New_York") == utc(2026, 3, 8, 5, 0)  # 23:59 EDT on the 8th
    assert utc(2026, 3, 9, 4, 0) - utc(2026, 3, 8, 5, 0) == 23 * 3600


def test_day_start_in_the_repeated_hour_of_the_autumn_change():
    # 01:30 happens twice on 1 November 2026; both belong to a 25-hour day.
    first, second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)
    start = utc(2026, 11, 1, 4, 0)  # 00:00 EDT
    assert period_start(first, "1D", "America/New_York") == start
    assert period_start(second, "1D", "America/New_York") == start
    assert period_start(utc(2026, 11, 2, 5, 0), "1D", "America/New_York") == start + 25 * 3600


def test_week_starts_on_monday_and_month_on_the_first_across_dst():
    # Sunday 8 March (after the change) is in the week of Monday 2 March (before it).
    assert period_start(utc(2026, 3, 8, 17, 0), "1W", "America/New_York") == utc(2026, 3, 2, 5, 0)
    assert period_start(utc(2026, 3, 9, 14, 0), "1W", "America/New_York") == utc(2026, 3, 9, 4, 0)
    assert period_start(utc(2026, 3, 31, 12, 0), "1M", "America/New_York") == utc(2026, 3, 1, 5, 0)  # EST
    assert period_start(utc(2026, 4, 2, 12, 0), "1M", "America/New_York") == utc(2026, 4, 1, 4, 0)  # EDT
    # 03:00 UTC on 1 April is still 31 March in New York.
    assert period_start(utc(2026, 4, 1, 3, 0), "1M", "America/New_York") == utc(2026, 3, 1, 5, 0)


def test_period_start_follows_the_session():
    sunday_evening = utc(2026, 3, 1, 23, 0)  # 18:00 EST on Sunday
    assert period_start(sunday_evening, "1D", "America/New_York", "1800-1700:23456") == utc(2026, 3, 2, 5, 0)
    assert period_start(sunday_evening, "1D", "America/New_York", "0930-1600:23456") is None
    assert period_start(sunday_evening, "1D", "America/New_York") == utc(2026, 3, 1, 5, 0)
