"""Bar arithmetic on column lists. Pure Python, no Django.

Columns are parallel lists ``t, o, h, l, c, v`` (unix seconds; numbers of one
type: floats for UDF, Decimals where exactness matters). Aggregation is exact:
open of the first bar, close of the last, max high, min low, summed volume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from marketdata.sessions import parse_session, period_first_day, period_start_of_day, segment_at, trading_day
from marketdata.types import CALENDAR_RESOLUTIONS, INTRADAY_RESOLUTIONS, Bar, Tick

Columns = tuple[list[int], list[Any], list[Any], list[Any], list[Any], list[Any]]


def empty_columns() -> Columns:
    return [], [], [], [], [], []


def resolution_seconds(resolution: str) -> int:
    """Nominal length of a bar (months as 31 days), for range arithmetic."""
    if resolution in INTRADAY_RESOLUTIONS:
        return INTRADAY_RESOLUTIONS[resolution] * 60
    return {"1D": 86_400, "1W": 7 * 86_400, "1M": 31 * 86_400}[resolution]


def bucket_function(resolution: str, tz_name: str = "UTC", session: str = "24x7") -> Callable[[int], int | None]:
    """Maps a bar start to the start of the ``resolution`` bar holding it
    (None: outside the session, in no bar above 1 minute).

    Days, weeks and months are session days in the instrument's timezone,
    starting at local midnight. Intraday bars count from the open of the
    session range holding them (NSE 60-minute bars start 09:15, 10:15...);
    an instrument trading 24x7 keeps bars at multiples of their length in UTC.
    """
    if resolution in INTRADAY_RESOLUTIONS:
        size = INTRADAY_RESOLUTIONS[resolution] * 60
        if parse_session(session).always_open:
            return lambda t: t - t % size
    elif resolution not in CALENDAR_RESOLUTIONS:
        raise ValueError(f"unsupported resolution {resolution!r}")
    else:
        size = 0
    # Bars come in time order: keep the session range (or closed stretch) of the
    # last one, so a lookup in the timezone happens once per range, not per bar.
    # One tuple, replaced whole: a bucket function may be shared by threads.
    state: tuple[int, int, int | None] = (0, 0, None)  # range start, end, period start (None: closed)

    def bucket(t: int) -> int | None:
        nonlocal state
        start, end, period = state
        if not start <= t < end:
            segment = segment_at(t, tz_name, session)
            start, end, period = segment.start, segment.end, None
            if segment.day is not None:
                period = start if size else period_start_of_day(segment.day, resolution, tz_name)
            state = (start, end, period)
        if period is None:
            return None
        return t - (t - start) % size if size else period

    return bucket


def bucket_fetch_start(ts: int, resolution: str, tz_name: str = "UTC", session: str = "24x7") -> int:
    """Where to start reading finer bars so the ``resolution`` bar holding
    ``ts`` (or, outside the session, the next one) is read whole."""
    if resolution in INTRADAY_RESOLUTIONS:
        size = INTRADAY_RESOLUTIONS[resolution] * 60
        if parse_session(session).always_open:
            return ts - ts % size
        segment = segment_at(ts, tz_name, session)
        return ts if segment.day is None else ts - (ts - segment.start) % size
    segment = segment_at(ts, tz_name, session)
    day = segment.day if segment.day is not None else segment_at(segment.end, tz_name, session).day
    if day is None:
        return ts
    # The period's first trading day opens first (an overnight session opens the evening before).
    first = period_first_day(day, resolution)
    while first <= day:
        opened = trading_day(first, tz_name, session)
        if opened is not None:
            return min(opened.open, ts)
        first += timedelta(days=1)
    return ts


def aggregate(columns: Columns, bucket: Callable[[int], int | None]) -> Columns:
    """Aggregate time-sorted bars into coarser ones."""
    t_in, o_in, h_in, l_in, c_in, v_in = columns
    t_out, o_out, h_out, l_out, c_out, v_out = empty_columns()
    current: int | None = None
    for i in range(len(t_in)):
        start = bucket(t_in[i])
        if start is None:
            continue
        if start != current:
            current = start
            t_out.append(start)
            o_out.append(o_in[i])
            h_out.append(h_in[i])
            l_out.append(l_in[i])
            c_out.append(c_in[i])
            v_out.append(v_in[i])
            continue
        if h_in[i] > h_out[-1]:
            h_out[-1] = h_in[i]
        if l_in[i] < l_out[-1]:
            l_out[-1] = l_in[i]
        c_out[-1] = c_in[i]
        v_out[-1] += v_in[i]
    return t_out, o_out, h_out, l_out, c_out, v_out


def slice_columns(columns: Columns, start: int, end: int | None = None) -> Columns:
    return tuple(col[start:end] for col in columns)  # type: ignore[return-value]


@dataclass
class BarBuilder:
    """Aggregates ticks into 1-minute bars per symbol.

    ``add`` returns the bars it touched, the current one last; a bar is
    complete once a tick of a later minute arrives (``completed``)."""

    bars: dict[str, Bar] = field(default_factory=dict)
    completed: list[tuple[str, Bar]] = field(default_factory=list)

    def add(self, tick: Tick) -> Bar:
        minute = int(tick.time) - int(tick.time) % 60
        bar = self.bars.get(tick.symbol)
        if bar is not None and bar.time == minute:
            bar.merge_tick(tick.price, tick.size)
            return bar
        if bar is not None and minute < bar.time:
            # A late tick for a closed minute: fold it into that minute's bar
            # only if we still hold it; never reopen a bar that has gone.
            return bar
        if bar is not None:
            self.completed.append((tick.symbol, bar))
        bar = Bar(time=minute, open=tick.price, high=tick.price, low=tick.price, close=tick.price, volume=tick.size)
        self.bars[tick.symbol] = bar
        return bar

    def drain_completed(self) -> list[tuple[str, Bar]]:
        done, self.completed = self.completed, []
        return done


def columns_from_rows(rows: Sequence[tuple], convert: Callable[[Any], Any] | None = float) -> Columns:
    """(datetime|int, o, h, l, c, v) rows to columns with ``convert`` applied to
    the numbers (None: they are converted already). Transposes with
    ``itemgetter`` per column: ``zip(*rows)`` would make an iterator per row."""
    if not rows:
        return empty_columns()
    times = list(map(itemgetter(0), rows))
    t = times if isinstance(times[0], int) else [int(d.timestamp()) for d in times]
    if convert is None:
        numbers = [list(map(itemgetter(i), rows)) for i in range(1, 6)]
    else:
        numbers = [list(map(convert, map(itemgetter(i), rows))) for i in range(1, 6)]
    return t, numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]


def decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
