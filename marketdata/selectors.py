"""Market-data reads: instruments, history (as columns), quotes."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.db.models import BigIntegerField, Exists, Func, OuterRef, Q, QuerySet

from core.exceptions import InvalidInput, NotFound
from marketdata.bars import (
    Columns,
    aggregate,
    bucket_fetch_start,
    bucket_function,
    columns_from_rows,
    empty_columns,
    resolution_seconds,
    slice_columns,
)
from marketdata.instrument_cache import cached
from marketdata.models import Bar, DailyBar, Instrument
from marketdata.quotes import quotes_get
from marketdata.sessions import period_start_of_day, zone
from marketdata.types import CALENDAR_RESOLUTIONS, SUPPORTED_RESOLUTIONS, Quote, normalize_resolution

logger = logging.getLogger(__name__)

_SOURCES = {
    "1": ("1",),
    "5": ("5", "1"),
    "15": ("15", "5", "1"),
    "30": ("30", "15", "5", "1"),
    "60": ("60", "30", "15", "5", "1"),
    "240": ("240", "60", "1"),
    "1D": ("1D", "1"),
    "1W": ("1W", "1D", "1"),
    "1M": ("1M", "1D", "1"),
}
_COLUMNS = ("time", "open", "high", "low", "close", "volume")


def instrument_get(*, symbol: str) -> Instrument:
    instrument = Instrument.objects.filter(symbol=symbol).first()
    if instrument is None:
        raise NotFound(f"Unknown symbol '{symbol[:64]}'.", code="unknown_symbol")
    return instrument


def instrument_resolve(*, name: str, queryset: QuerySet[Instrument] | None = None) -> Instrument:
    """The instrument a chart names: its symbol, or ``EXCHANGE:SYMBOL`` for one
    whose own symbol has no exchange prefix (``NASDAQ:AAPL``)."""
    qs = Instrument.objects.all() if queryset is None else queryset
    instrument = qs.filter(symbol=name).first()
    if instrument is None and ":" in name:
        exchange, _, symbol = name.partition(":")
        instrument = qs.filter(symbol=symbol, exchange__iexact=exchange).first()
    if instrument is None:
        raise NotFound(f"Unknown symbol '{name[:64]}'.", code="unknown_symbol")
    return instrument


@dataclass(frozen=True)
class HistoryTarget:
    """What a history request needs about an instrument, cached per process
    (``marketdata.instrument_cache``): the row, and the resolutions besides 1
    minute it stores bars at."""

    instrument: Instrument
    stored: frozenset[str]


_COARSE = tuple(r for r in SUPPORTED_RESOLUTIONS if r != "1")


def _history_target_load(name: str) -> HistoryTarget:
    # One query: the row and, per resolution, whether it stores bars at it.
    flags = {f"stored_{r}": Exists(Bar.objects.filter(instrument=OuterRef("pk"), resolution=r)) for r in _COARSE}
    instrument = instrument_resolve(name=name, queryset=Instrument.objects.annotate(**flags))
    stored = frozenset(r for r in _COARSE if getattr(instrument, f"stored_{r}"))
    return HistoryTarget(instrument=instrument, stored=stored)


def history_target(*, name: str) -> HistoryTarget:
    """The instrument a chart names (as ``instrument_resolve``) and its stored
    resolutions, without a query once this process has looked it up."""
    return cached(name, _history_target_load)


class _NotTradable(LookupError):
    pass


def _tradable_load(key: str) -> Instrument:
    instrument = Instrument.objects.filter(symbol=key.removeprefix("tradable:"), active=True).first()
    if instrument is None:
        raise _NotTradable(key)  # unknown or inactive: never cached
    return instrument


def instrument_tradable(*, symbol: str) -> Instrument | None:
    """The active instrument of ``symbol`` (exact symbol), or None; without a
    query once this process has looked it up (``marketdata.instrument_cache``:
    an instrument written elsewhere is seen within its CHECK_EVERY). The row
    is shared: read it, never change it."""
    try:
        return cached(f"tradable:{symbol}", _tradable_load)
    except _NotTradable:
        return None


def _instrument_load(key: str) -> Instrument:
    instrument = Instrument.objects.filter(symbol=key.removeprefix("instrument:")).first()
    if instrument is None:
        raise _NotTradable(key)  # unknown: never cached
    return instrument


def instruments_cached(*, symbols: Iterable[str]) -> dict[str, Instrument]:
    """The instruments of ``symbols`` (active or not) by symbol, unknown ones
    left out; without a query once this process has looked each one up
    (``marketdata.instrument_cache``, as ``instrument_tradable``). The rows
    are shared: read them, never change them."""
    found: dict[str, Instrument] = {}
    for symbol in set(symbols):
        try:
            found[symbol] = cached(f"instrument:{symbol}", _instrument_load)
        except _NotTradable:
            continue
    return found


def instruments_by_symbol(*, symbols: Iterable[str]) -> dict[str, Instrument]:
    return {i.symbol: i for i in Instrument.objects.filter(symbol__in=set(symbols))}


def instrument_exchanges() -> list[str]:
    """Exchanges of the active instruments, for the chart's exchange filter."""
    return list(
        Instrument.objects.filter(active=True).exclude(exchange="").order_by("exchange").values_list("exchange", flat=True).distinct()
    )


def quotes_lookup(*, symbols: Sequence[str]) -> list[tuple[str, Instrument | None, Quote | None]]:
    """Each requested symbol (in order, as requested) with its instrument and
    latest quote, either None when unknown; at most DATAFEED_MAX_QUOTE_SYMBOLS."""
    cap = settings.DATAFEED_MAX_QUOTE_SYMBOLS
    if len(symbols) > cap:
        raise InvalidInput(
            f"Too many symbols: {len(symbols)}; at most {cap} per request.",
            code="too_many_symbols",
            fields={"symbols": [f"At most {cap}."]},
        )
    instruments = instruments_by_symbol(symbols=symbols)
    quotes = quotes_get(instruments)
    return [(symbol, instruments.get(symbol), quotes.get(symbol)) for symbol in symbols]


_STREAM_STATS_DEFAULT: dict[str, Any] = {
    "broadcasts_sent": 0,
    "broadcasts_skipped": 0,
    "errors": 0,
    "subscribers": {"quotes": 0, "bars": 0, "channels": 0},
}


def datafeed_health(*, now: float | None = None) -> dict[str, Any]:
    """Feeds with their last tick, plus the stream counters (shared through the
    cache: the feed loop and the broadcaster may run in another process)."""
    from marketdata.feeds.registry import broker_feeds_status
    from marketdata.simulation import simulator_feed_status

    now = now if now is not None else time.time()
    feeds = [simulator_feed_status()]
    for feed in feeds:
        last = feed.get("last_tick_time")
        feed["stale"] = bool(feed.get("enabled")) and (last is None or now - last > settings.QUOTE_STALE_SECONDS)
    # Broker feeds that ran: informational (a market closed for the night is
    # not an outage; each account's connection is on its status).
    for broker_feed in broker_feeds_status(ran_only=True):
        feeds.append({"enabled": settings.BROKER_FEEDS_ENABLED, "steps": 0, **broker_feed, "stale": False})
    stats = dict(_STREAM_STATS_DEFAULT)
    try:
        from marketdata.streaming import broadcast_stats
    except ImportError:
        pass
    else:
        try:
            stats.update(broadcast_stats())
        except Exception:  # the cache is down: health still answers
            logger.warning("broadcast stats unavailable", exc_info=True)
    status = "degraded" if any(feed["stale"] for feed in feeds) else "ok"
    return {"status": status, "time": int(now), "feeds": feeds, **stats}


def instruments_list(
    *, type: str = "", exchange: str = "", venue: str = "", active: bool | None = None, search: str = ""
) -> QuerySet[Instrument]:
    """Every instrument (active or not, unless asked), for the REST list."""
    qs = Instrument.objects.all()
    if type:
        qs = qs.filter(type=type)
    if exchange:
        qs = qs.filter(exchange__iexact=exchange)
    if venue:
        qs = qs.filter(venue=venue.strip().upper())
    if active is not None:
        qs = qs.filter(active=active)
    if search:
        qs = qs.filter(Q(symbol__icontains=search) | Q(description__icontains=search))
    return qs


def instruments_search(*, query: str = "", type: str = "", exchange: str = "", limit: int = 30) -> QuerySet[Instrument]:
    qs = Instrument.objects.filter(active=True)
    if query:
        qs = qs.filter(Q(symbol__icontains=query) | Q(description__icontains=query))
    if type:
        qs = qs.filter(type=type)
    if exchange:
        qs = qs.filter(exchange__iexact=exchange)
    return qs.order_by("symbol")[: max(1, min(limit, 200))]


def resolution_or_error(value: Any) -> str:
    resolution = normalize_resolution(str(value)) if value not in (None, "") else None
    if resolution is None:
        raise InvalidInput(
            f"Unsupported resolution '{str(value)[:10]}'.", code="unsupported_resolution", fields={"resolution": ["Unsupported."]}
        )
    return resolution


@dataclass
class History:
    columns: Columns
    next_time: int | None = None  # set when there is no data in the range

    def __len__(self) -> int:
        return len(self.columns[0])


def _source_resolution(instrument: Instrument, resolution: str, stored: Collection[str] | None) -> str:
    for candidate in _SOURCES[resolution]:
        if candidate == "1":
            return candidate
        if stored is None:
            if Bar.objects.filter(instrument=instrument, resolution=candidate).exists():
                return candidate
        elif candidate in stored:
            return candidate
    return "1"


def _aligned_start(instrument: Instrument, resolution: str, start: int) -> int:
    return bucket_fetch_start(start, resolution, instrument.timezone, instrument.session)


class _UnixSeconds(Func):
    """Unix seconds of a timestamptz, computed by PostgreSQL: no datetime per row."""

    template = "FLOOR(EXTRACT(EPOCH FROM %(expressions)s))::bigint"
    output_field = BigIntegerField()


def _float_rows_postgresql(qs: QuerySet) -> list[tuple]:
    """Run the ORM's SQL for ``qs`` on a cursor that decodes numeric as float.

    psycopg's float loader parses the numeric text straight to a float: the
    same correctly rounded value as ``float(Decimal(text))``, without building
    a Decimal per value (the bulk of a 100,000-bar read)."""
    from psycopg.types.numeric import FloatLoader

    sql, params = qs.query.get_compiler(using=qs.db).as_sql()
    with connections[qs.db].cursor() as cursor:
        cursor.cursor.adapters.register_loader("numeric", FloatLoader)
        cursor.execute(sql, params)
        return cursor.fetchall()


def _rows(qs: QuerySet, convert: Callable[[Any], Any], limit: int | None, times: tuple[str, ...] = ()) -> tuple[list[tuple], bool]:
    """``time, open, high, low, close, volume`` (then the time columns ``times``)
    of ``qs`` in time order; with ``limit``, the newest ``limit`` rows. Returns
    the rows and whether they hold unix seconds and floats already."""
    # The UDF hot path on PostgreSQL: unix seconds from the server, floats
    # from the cursor; identical numbers, a fraction of the Python work.
    fast = convert is float and connections[qs.db].vendor == "postgresql"
    names = (*_COLUMNS, *times)
    columns: tuple[Any, ...] = tuple(_UnixSeconds(n) if fast and (n == "time" or n in times) else n for n in names)
    # countback: the newest ``limit`` bars, read backwards and turned round.
    ordered = qs.order_by("-time" if limit is not None else "time").values_list(*columns)[:limit]
    rows = _float_rows_postgresql(ordered) if fast else list(ordered)
    if limit is not None:
        rows.reverse()
    return rows, fast


def _at(moment: int) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _fetch(
    instrument: Instrument, source: str, start: int | None, end: int, convert: Callable[[Any], Any], limit: int | None = None
) -> Columns:
    qs = Bar.objects.filter(instrument=instrument, resolution=source, time__lt=_at(end))
    if start is not None:
        qs = qs.filter(time__gte=_at(start))
    rows, fast = _rows(qs, convert, limit)
    return columns_from_rows(rows, None if fast else convert)


def _unix(value: Any) -> int:
    return value if isinstance(value, int) else int(value.timestamp())


def _daily(
    instrument: Instrument, resolution: str, since: int | None, end: int, convert: Callable[[Any], Any], countback: int | None
) -> Columns:
    """1D, 1W or 1M bars from the maintained daily aggregate (``DailyBar``),
    equal to aggregating the 1-minute bars on read: the days with a minute in
    [since, end) (every day before ``end`` when ``since`` is None), the last
    one cut at ``end`` when it runs past it, grouped into weeks or months."""
    # A day's key (local midnight) lies within a day or so of its minutes:
    # bounds on it keep the read on the (instrument, time) index.
    per_period = {"1D": 1, "1W": 7, "1M": 31}[resolution]
    limit = None if countback is None else (countback if resolution == "1D" else per_period * (countback + 1))
    fast = convert is float and connection.vendor == "postgresql"
    if fast:
        # The UDF hot path: one prepared statement, no query building per request.
        params: list[Any] = [instrument.pk, _at(end + 2 * 86_400), _at(end)]
        if since is not None:
            params += [_at(since - 2 * 86_400), _at(since)]
        if limit is not None:
            params.append(limit)
        rows = _float_rows_sql(_daily_sql(since is not None, limit is not None), params)
        if limit is not None:
            rows.reverse()
    else:
        qs = DailyBar.objects.filter(instrument=instrument, time__lt=_at(end + 2 * 86_400), first_minute__lt=_at(end))
        if since is not None:
            qs = qs.filter(time__gte=_at(since - 2 * 86_400), last_minute__gte=_at(since))
        rows, fast = _rows(qs, convert, limit, times=("first_minute", "last_minute"))
    columns = columns_from_rows(rows, None if fast else convert)
    if rows and _unix(rows[-1][7]) >= end:
        # The last day runs past ``end``: its bar holds the minutes before ``end`` only.
        minutes = _fetch(instrument, "1", _unix(rows[-1][6]), end, convert)
        part = aggregate(minutes, bucket_function("1D", instrument.timezone, instrument.session))
        columns = slice_columns(columns, 0, -1)
        for column, value in zip(columns, part, strict=True):
            column.extend(value)
    if resolution != "1D":
        columns = aggregate(columns, _day_period_bucket(resolution, instrument.timezone))
    if countback is not None:
        columns = slice_columns(columns, max(0, len(columns[0]) - countback))
    return columns


@functools.cache
def _daily_sql(since: bool, limit: bool) -> str:
    q = connection.ops.quote_name

    def unix(column: str) -> str:
        return f"FLOOR(EXTRACT(EPOCH FROM {q(column)}))::bigint"

    # Identifiers come from the model; every value is a parameter.
    sql = (
        f"SELECT {unix('time')}, {q('open')}, {q('high')}, {q('low')}, {q('close')}, {q('volume')}, "  # noqa: S608
        f"{unix('first_minute')}, {unix('last_minute')} FROM {q(DailyBar._meta.db_table)} "
        f"WHERE {q('instrument_id')} = %s AND {q('time')} < %s AND {q('first_minute')} < %s"
    )
    if since:
        sql += f" AND {q('time')} >= %s AND {q('last_minute')} >= %s"
    return sql + f" ORDER BY {q('time')} {'DESC LIMIT %s' if limit else 'ASC'}"


def _float_rows_sql(sql: str, params: Sequence[Any]) -> list[tuple]:
    from psycopg.types.numeric import FloatLoader

    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("numeric", FloatLoader)
        cursor.execute(sql, params)
        return cursor.fetchall()


def _day_period_bucket(resolution: str, tz_name: str) -> Callable[[int], int | None]:
    """Maps a day's start (local midnight) to the start of its week or month."""
    tz = zone(tz_name)
    memo: dict[int, int] = {}

    def bucket(t: int) -> int:
        if t not in memo:
            memo[t] = period_start_of_day(datetime.fromtimestamp(t, tz).date(), resolution, tz_name)
        return memo[t]

    return bucket


def bars_history(
    *,
    instrument: Instrument,
    resolution: str,
    end: int,
    start: int | None = None,
    countback: int | None = None,
    convert: Callable[[Any], Any] = float,
    stored: Collection[str] | None = None,
    from_minutes: bool = False,
) -> History:
    """Bars of ``resolution`` starting in [start, end) — or the last
    ``countback`` before ``end``, which wins over ``start`` — as columns.
    ``start == end`` asks for the one bar starting at ``start``.

    Read from the bars stored at ``resolution`` or the nearest finer stored
    resolution; ``stored`` names the resolutions besides 1 minute the
    instrument stores (``history_target``; None: looked up). Days, weeks and
    months over 1-minute bars come from the maintained daily aggregate, or,
    with ``from_minutes``, are aggregated from the minutes on read (the
    reference the aggregate must equal)."""
    cap = settings.HISTORY_MAX_BARS
    if countback is not None:
        if countback <= 0:
            raise InvalidInput("countback must be positive.", fields={"countback": ["Must be > 0."]})
        if countback > cap:
            raise InvalidInput(
                f"countback {countback} is over the cap of {cap} bars.", code="over_cap", fields={"countback": [f"At most {cap}."]}
            )
        start = None
    elif start is None:
        raise InvalidInput("Give from or countback.", fields={"from": ["Required without countback."]})
    else:
        if start > end:
            raise InvalidInput("from must be before to, or equal to it.", fields={"from": ["Must not be after to."]})
        span = (end - start) // resolution_seconds(resolution)
        if span > cap:
            raise InvalidInput(
                f"The range holds up to {span} bars, over the cap of {cap}; narrow it or use countback.",
                code="over_cap",
                fields={"from": [f"At most {cap} bars per request."]},
            )

    source = _source_resolution(instrument, resolution, stored)
    direct = source == resolution
    bucket = None if direct else bucket_function(resolution, instrument.timezone, instrument.session)
    daily = source == "1" and resolution in CALENDAR_RESOLUTIONS and not from_minutes

    if daily and countback is not None:
        columns = _daily(instrument, resolution, None, end, convert, countback)
        first_requested = None
    elif daily:
        assert start is not None
        reach = end if start != end else start + resolution_seconds(resolution) + 86_400
        columns = _daily(instrument, resolution, _aligned_start(instrument, resolution, start), reach, convert, None)
        if start == end:
            at = columns[0].index(start) if start in columns[0] else None
            columns = empty_columns() if at is None else slice_columns(columns, at, at + 1)
        first_requested = start
    elif countback is not None:
        if direct:
            columns = _fetch(instrument, source, None, end, convert, limit=countback)
        else:
            window = countback * resolution_seconds(resolution) + 86_400
            while True:
                window_start = _aligned_start(instrument, resolution, end - window)
                columns = aggregate(_fetch(instrument, source, window_start, end, convert), bucket)  # type: ignore[arg-type]
                if (
                    len(columns[0]) >= countback
                    or not Bar.objects.filter(
                        instrument=instrument, resolution=source, time__lt=datetime.fromtimestamp(window_start, UTC)
                    ).exists()
                ):
                    break
                window *= 2
            columns = tuple(col[-countback:] for col in columns)  # type: ignore[assignment]
        first_requested = None
    elif start == end:
        # The bar at ``start``: read the whole bar (nominal length plus a day
        # for DST and overnight sessions), keep it only if it starts there.
        aligned = start if direct else _aligned_start(instrument, resolution, start)
        reach = start + 1 if direct else start + resolution_seconds(resolution) + 86_400
        columns = _fetch(instrument, source, aligned, reach, convert)
        if not direct:
            columns = aggregate(columns, bucket)  # type: ignore[arg-type]
        at = columns[0].index(start) if start in columns[0] else None
        columns = empty_columns() if at is None else slice_columns(columns, at, at + 1)
        first_requested = start
    else:
        assert start is not None
        aligned = start if direct else _aligned_start(instrument, resolution, start)
        columns = _fetch(instrument, source, aligned, end, convert)
        if not direct:
            columns = aggregate(columns, bucket)  # type: ignore[arg-type]
        first_requested = start

    if columns[0]:
        return History(columns=columns)
    # No data: point the client at the newest bar before the range.
    before = first_requested if first_requested is not None else end
    previous = (
        Bar.objects.filter(instrument=instrument, resolution=source, time__lt=datetime.fromtimestamp(before, UTC))
        .order_by("-time")
        .values_list("time", flat=True)
        .first()
    )
    next_time = None
    if previous is not None:
        stamp = int(previous.timestamp())
        # A bar outside the session belongs to no coarser bar: point at it as it is.
        next_time = stamp if bucket is None else (bucket(stamp) or stamp)
    return History(columns=empty_columns(), next_time=next_time)
