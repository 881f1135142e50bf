"""Trading sessions in TradingView's notation, and calendar periods (day,
week, month) in an instrument's own timezone. Pure Python, no Django.

Session strings: ``24x7``; ``0930-1600:23456`` (days 1=Sunday .. 7=Saturday);
``0930-1600`` without days trades Monday to Friday, as TradingView reads it
("non-24x7 symbols are non-trading on Saturday and Sunday" unless days are
given); several ranges joined by ``,``; a range whose end is before its start
runs overnight and belongs to the next day's session (``1800-1700:23456`` =
Sunday 18:00 to Friday 17:00 with a daily break). ``0000-0000`` is the whole
day, like ``0000-2400``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class SessionRange:
    start: int  # minutes after midnight
    end: int  # minutes after midnight; <= start means overnight
    days: frozenset[int]  # ISO weekdays (1=Monday..7=Sunday) of the session day

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True)
class Session:
    ranges: tuple[SessionRange, ...]
    always_open: bool = False

    def session_day(self, local: datetime) -> date | None:
        """The trading day a local time belongs to, or None when closed."""
        if self.always_open:
            return local.date()
        minute = local.hour * 60 + local.minute
        for rng in self.ranges:
            if rng.overnight:
                if minute >= rng.start:
                    day = local.date() + timedelta(days=1)
                elif minute < rng.end:
                    day = local.date()
                else:
                    continue
            else:
                if not (rng.start <= minute < rng.end):
                    continue
                day = local.date()
            if day.isoweekday() in rng.days:
                return day
        return None

    def is_open(self, local: datetime) -> bool:
        return self.session_day(local) is not None

    def close_time(self, day: date, tz: ZoneInfo) -> datetime | None:
        """When the session of ``day`` closes (UTC), or None if it does not trade."""
        if self.always_open:
            return None
        ends = [datetime.combine(day, time(0), tz) + timedelta(minutes=rng.end) for rng in self.ranges if day.isoweekday() in rng.days]
        return max(ends).astimezone(UTC) if ends else None


_ALL_DAYS = frozenset(range(1, 8))
_WEEKDAYS = frozenset(range(1, 6))


def _tv_days(spec: str) -> frozenset[int]:
    # TradingView: 1=Sunday .. 7=Saturday. ISO: 1=Monday .. 7=Sunday.
    return frozenset(7 if d == "1" else int(d) - 1 for d in spec)


def _minutes(hhmm: str) -> int | None:
    """Minutes after midnight of ``HHMM`` (``2400`` allowed), None when invalid."""
    hours, minutes = int(hhmm[:2]), int(hhmm[2:])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 60 + minutes


@lru_cache(maxsize=256)
def parse_session(text: str) -> Session:
    text = (text or "24x7").strip()
    if text.lower() == "24x7":
        return Session(ranges=(), always_open=True)
    ranges = []
    for part in text.split(","):
        part = part.strip()
        hours, _, days = part.partition(":")
        if days.strip("1234567"):
            raise ValueError(f"Bad session days: {part!r}")
        start_s, sep, end_s = hours.partition("-")
        if not sep or len(start_s) != 4 or len(end_s) != 4 or not (start_s + end_s).isdigit():
            raise ValueError(f"Bad session range: {part!r}")
        start, end = _minutes(start_s), _minutes(end_s)
        if start is None or end is None or start == 1440:
            raise ValueError(f"Bad session range: {part!r}")
        if start == end == 0:
            end = 1440  # "0000-0000": the whole day, not a day-long overnight range
        ranges.append(SessionRange(start=start, end=end, days=_tv_days(days) if days else _WEEKDAYS))
    if all(r.start == 0 and r.end == 1440 and r.days == _ALL_DAYS for r in ranges):
        return Session(ranges=(), always_open=True)
    return Session(ranges=tuple(ranges))


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name or "UTC")


def period_start(ts: int, resolution: str, tz_name: str, session: str = "24x7") -> int | None:
    """Start (unix seconds) of the 1D/1W/1M period holding ``ts``, in the
    instrument's timezone and session; None when ``ts`` is outside the session."""
    tz = zone(tz_name)
    local = datetime.fromtimestamp(ts, tz)
    day = parse_session(session).session_day(local)
    if day is None:
        return None
    if resolution == "1W":
        day = day - timedelta(days=day.weekday())
    elif resolution == "1M":
        day = day.replace(day=1)
    return int(datetime.combine(day, time(0), tz).timestamp())
