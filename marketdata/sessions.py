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

    def day_ranges(self, day: date, tz: ZoneInfo) -> tuple[tuple[int, int], ...]:
        """The trading ranges of session day ``day`` as unix seconds [open, close),
        in time order; empty when it does not trade. A session that never
        closes trades the whole local day."""
        return _day_ranges(self, day, tz)


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


def session_problem(text: str) -> str | None:
    """Why ``text`` is no session string, or None."""
    try:
        parse_session(text)
    except ValueError as exc:
        return f"{exc} (TradingView notation: 24x7, 0930-1600:23456, 1800-1700:23456...)."
    return None


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is no IANA timezone, or None."""
    try:
        zone(name)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return f"Unknown timezone {name[:64]!r} (an IANA name such as America/New_York or Asia/Kolkata)."
    return None


def period_start(ts: int, resolution: str, tz_name: str, session: str = "24x7") -> int | None:
    """Start (unix seconds) of the 1D/1W/1M period holding ``ts``, in the
    instrument's timezone and session; None when ``ts`` is outside the session."""
    tz = zone(tz_name)
    local = datetime.fromtimestamp(ts, tz)
    day = parse_session(session).session_day(local)
    if day is None:
        return None
    return period_start_of_day(day, resolution, tz_name)


def period_first_day(day: date, resolution: str) -> date:
    """The first calendar day of the 1D/1W/1M period holding ``day``."""
    if resolution == "1W":
        return day - timedelta(days=day.weekday())
    if resolution == "1M":
        return day.replace(day=1)
    return day


def period_start_of_day(day: date, resolution: str, tz_name: str) -> int:
    """Start (unix seconds, local midnight) of the 1D/1W/1M period holding session day ``day``."""
    return int(datetime.combine(period_first_day(day, resolution), time(0), zone(tz_name)).timestamp())


# --- trading days -------------------------------------------------------------------------
#
# One rule for "the day" everywhere: a trading day is a session day in the
# instrument's timezone, made of the session's ranges (a 24x7 instrument's day
# is its local calendar day). The 1D bar, the quote's day fields (open, high,
# low, previous close, change), intraday bar alignment, day-order expiry and
# contract expiry all follow it.


def _local_midnight(day: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tz).timestamp())


@lru_cache(maxsize=4096)
def _day_ranges(session: Session, day: date, tz: ZoneInfo) -> tuple[tuple[int, int], ...]:
    if session.always_open:
        return ((_local_midnight(day, tz), _local_midnight(day + timedelta(days=1), tz)),)
    ranges = []
    for rng in session.ranges:
        if day.isoweekday() not in rng.days:
            continue
        # Wall-clock arithmetic from local midnight, so 09:30 stays 09:30 on a DST day.
        midnight = datetime.combine(day, time(0), tz)
        start = midnight + timedelta(minutes=rng.start - (1440 if rng.overnight else 0))
        end = midnight + timedelta(minutes=rng.end)
        ranges.append((int(start.timestamp()), int(end.timestamp())))
    return tuple(sorted(ranges))


@dataclass(frozen=True)
class TradingDay:
    day: date  # the session day, in the instrument's timezone
    ranges: tuple[tuple[int, int], ...]  # unix seconds [open, close) of each session range, in order

    @property
    def open(self) -> int:
        return self.ranges[0][0]

    @property
    def close(self) -> int:
        return self.ranges[-1][1]


@dataclass(frozen=True)
class Segment:
    """A stretch of time: a session range of ``day``, or (``day`` None) a
    closed stretch that ends at the next open."""

    start: int
    end: int
    day: date | None


_LOOKAHEAD_DAYS = 15  # the longest closed stretch searched for (weekends, sparse sessions)


def segment_at(ts: int, tz_name: str, session: str = "24x7") -> Segment:
    """The session range holding ``ts``, or the closed stretch from ``ts`` up to
    the next open (to ``ts`` + 1 day when none comes within two weeks)."""
    tz = zone(tz_name)
    parsed = parse_session(session)
    local_day = datetime.fromtimestamp(ts, tz).date()
    next_open: int | None = None
    # A moment of local date L trades for session day L or, in an overnight
    # range, L + 1; later days only matter for the next open.
    for offset in range(_LOOKAHEAD_DAYS):
        day = local_day + timedelta(days=offset)
        for start, end in _day_ranges(parsed, day, tz):
            if start <= ts < end:
                return Segment(start, end, day)
            if start > ts and (next_open is None or start < next_open):
                next_open = start
        if next_open is not None and offset >= 1:
            break
    return Segment(ts, next_open if next_open is not None else ts + 86_400, None)


def trading_day(day: date, tz_name: str, session: str = "24x7") -> TradingDay | None:
    """Session day ``day`` with its ranges, or None when it does not trade."""
    ranges = _day_ranges(parse_session(session), day, zone(tz_name))
    return TradingDay(day, ranges) if ranges else None


def trading_day_at(ts: int, tz_name: str, session: str = "24x7") -> TradingDay | None:
    """The trading day in progress at ``ts``: the latest one that opened at or
    before ``ts`` (after its close, until the next open, the day just ended).
    None only when no session opened in the two weeks before ``ts``."""
    tz = zone(tz_name)
    parsed = parse_session(session)
    local_day = datetime.fromtimestamp(ts, tz).date()
    for offset in range(1, -_LOOKAHEAD_DAYS, -1):
        day = local_day + timedelta(days=offset)
        ranges = _day_ranges(parsed, day, tz)
        if ranges and ranges[0][0] <= ts:
            return TradingDay(day, ranges)
    return None


def previous_trading_day(day: date, tz_name: str, session: str = "24x7") -> TradingDay | None:
    """The last trading day before session day ``day``."""
    for offset in range(1, _LOOKAHEAD_DAYS):
        found = trading_day(day - timedelta(days=offset), tz_name, session)
        if found is not None:
            return found
    return None


def session_close(day: date, tz_name: str, session: str = "24x7") -> int | None:
    """When session day ``day`` closes (unix seconds): the end of its last
    range; the next local midnight for a session that never closes. None when
    the session does not trade that day."""
    found = trading_day(day, tz_name, session)
    return None if found is None else found.close


def next_session_close(now: float, tz_name: str, session: str = "24x7") -> int | None:
    """The first session close after ``now`` (a moment outside the session
    belongs to the next one); None when none comes within two weeks."""
    tz = zone(tz_name)
    parsed = parse_session(session)
    local_day = datetime.fromtimestamp(now, tz).date()
    # From yesterday: an overnight range that opened yesterday may close today.
    for offset in range(-1, _LOOKAHEAD_DAYS):
        ranges = _day_ranges(parsed, local_day + timedelta(days=offset), tz)
        if ranges and ranges[-1][1] > now:
            return ranges[-1][1]
    return None


def contract_expiry(expiry: date, tz_name: str, session: str = "24x7") -> int:
    """The moment a contract expires: its session's close on the expiry date, in
    its timezone. When the session does not trade that day, the close of the
    last trading day before it (the contract cannot trade past it)."""
    close = session_close(expiry, tz_name, session)
    if close is not None:
        return close
    earlier = previous_trading_day(expiry, tz_name, session)
    # A session that trades on no day near the expiry: the end of the expiry date.
    return earlier.close if earlier is not None else _local_midnight(expiry + timedelta(days=1), zone(tz_name))


def contract_expired(expiry: date | None, tz_name: str, session: str, now: float) -> bool:
    """True once a contract with ``expiry`` (None: never expires) has expired."""
    return expiry is not None and now >= contract_expiry(expiry, tz_name, session)
