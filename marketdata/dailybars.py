"""The maintained daily aggregate (``DailyBar``): one row per instrument and
trading day, recomputed from the day's stored 1-minute bars whenever one of
them is written, in the same transaction (``marketdata.services`` is the one
writer of minutes and calls ``daily_bars_refresh``).

A day is the instrument's trading day (``marketdata.sessions``): its row starts
at local midnight and holds the minutes inside the day's session ranges, exactly
as the on-read aggregation of ``marketdata.bars.bucket_function("1D")`` groups
them. Each refresh recomputes the whole day in SQL (first open, max high, min
low, last close, summed volume), so a rewritten past minute, a late one or an
import that replaces minutes leaves the row exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from marketdata.models import Bar, DailyBar, Instrument
from marketdata.sessions import segment_at, trading_day, zone


def trading_days_of(times: Iterable[int], tz_name: str, session: str) -> set[date]:
    """The trading days holding the minute starts ``times`` (minutes outside the
    session belong to no day)."""
    days: set[date] = set()
    start = end = 0
    day: date | None = None
    for t in sorted(set(times)):
        if not start <= t < end:
            segment = segment_at(t, tz_name, session)
            start, end, day = segment.start, segment.end, segment.day
        if day is not None:
            days.add(day)
    return days


def _refresh_sql(ranges: int) -> str:
    q = connection.ops.quote_name
    bar, daily = q(Bar._meta.db_table), q(DailyBar._meta.db_table)
    in_day = " OR ".join([f"({q('time')} >= %s AND {q('time')} < %s)"] * ranges)
    where = f"{q('instrument_id')} = %s AND {q('resolution')} = '1' AND ({in_day})"
    # Identifiers come from the models; every value is a parameter.
    return (
        f"INSERT INTO {daily} ({q('instrument_id')}, {q('time')}, {q('open')}, {q('high')}, {q('low')}, {q('close')}, "  # noqa: S608
        f"{q('volume')}, {q('first_minute')}, {q('last_minute')}) "
        f"SELECT %s, %s, "
        f"(SELECT {q('open')} FROM {bar} WHERE {where} ORDER BY {q('time')} ASC LIMIT 1), "
        f"MAX({q('high')}), MIN({q('low')}), "
        f"(SELECT {q('close')} FROM {bar} WHERE {where} ORDER BY {q('time')} DESC LIMIT 1), "
        f"SUM({q('volume')}), MIN({q('time')}), MAX({q('time')}) "
        f"FROM {bar} WHERE {where} HAVING COUNT(*) > 0 "
        f"ON CONFLICT ({q('instrument_id')}, {q('time')}) DO UPDATE SET "
        + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in ("open", "high", "low", "close", "volume", "first_minute", "last_minute"))
    )


def daily_bars_refresh(*, instrument_id: int, tz_name: str, session: str, days: Iterable[date]) -> None:
    """Recompute the daily rows of ``days`` from the stored minutes (a day left
    with no minute loses its row). Call inside the transaction that wrote them."""
    adapt = connection.ops.adapt_datetimefield_value
    tz = zone(tz_name)
    # No savepoint: the caller's transaction holds the minutes and their days.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for day in sorted(set(days)):
            found = trading_day(day, tz_name, session)
            if found is None:
                continue
            key = adapt(datetime.combine(day, datetime.min.time(), tz).astimezone(UTC))
            bounds: list[Any] = [instrument_id]
            for open_, close in found.ranges:
                bounds += [adapt(datetime.fromtimestamp(open_, UTC)), adapt(datetime.fromtimestamp(close, UTC))]
            cursor.execute(_refresh_sql(len(found.ranges)), [instrument_id, key, *bounds, *bounds, *bounds])
            if cursor.rowcount == 0:
                DailyBar.objects.filter(instrument_id=instrument_id, time=datetime.combine(day, datetime.min.time(), tz)).delete()


def daily_bars_after_minutes(*, minutes: Iterable[tuple[int, int]]) -> None:
    """Refresh the days holding the written minutes ``(instrument_id, unix
    seconds)``: one query for the instruments' sessions, one statement per day."""
    by_instrument: dict[int, list[int]] = defaultdict(list)
    for instrument_id, t in minutes:
        by_instrument[instrument_id].append(t)
    if not by_instrument:
        return
    zones = Instrument.objects.filter(pk__in=list(by_instrument)).values_list("pk", "timezone", "session")
    for instrument_id, tz_name, session in zones:
        days = trading_days_of(by_instrument[instrument_id], tz_name, session)
        daily_bars_refresh(instrument_id=instrument_id, tz_name=tz_name, session=session, days=days)


def daily_bars_rebuild(*, instrument: Instrument) -> int:
    """Rebuild every daily row of ``instrument`` from its stored minutes (after
    a change of its session or timezone, or for data stored before the
    aggregate existed). Returns the number of days stored."""
    return daily_bars_rebuild_of(instrument_id=instrument.pk, tz_name=instrument.timezone, session=instrument.session)


def daily_bars_rebuild_of(*, instrument_id: int, tz_name: str, session: str) -> int:
    """``daily_bars_rebuild`` by the instrument's id, timezone and session: what a
    migration passes from its historical model (never today's Instrument)."""
    minutes = Bar.objects.filter(instrument_id=instrument_id, resolution="1").values_list("time", flat=True)
    first, last = minutes.order_by("time").first(), minutes.order_by("-time").first()
    with transaction.atomic():
        DailyBar.objects.filter(instrument_id=instrument_id).delete()
        if first is None or last is None:
            return 0
        tz = zone(tz_name)
        # Every local date from the day before the first minute (an overnight
        # session's evening belongs to the next day) to the day after the last.
        day = first.astimezone(tz).date() - timedelta(days=1)
        days = []
        while day <= last.astimezone(tz).date() + timedelta(days=1):
            days.append(day)
            day += timedelta(days=1)
        daily_bars_refresh(instrument_id=instrument_id, tz_name=tz_name, session=session, days=days)
    return DailyBar.objects.filter(instrument_id=instrument_id).count()
