"""Market-data writes: instruments, bars (upsert), ticks into bars and quotes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from core.exceptions import InvalidInput, NotFound
from marketdata.bars import BarBuilder
from marketdata.dailybars import daily_bars_after_minutes, daily_bars_rebuild
from marketdata.instrument_cache import instruments_changed
from marketdata.models import Bar, Instrument, InstrumentType
from marketdata.quotes import quotes_store
from marketdata.sessions import session_problem, timezone_problem
from marketdata.types import Bar as BarData
from marketdata.types import Quote, Tick, normalize_resolution
from marketdata.venues import SIM, symbol_compose, venue_name_problem

INSTRUMENT_FIELDS = {
    "description",
    "exchange",
    "type",
    "currency",
    "tick_size",
    "lot_size",
    "multiplier",
    "session",
    "timezone",
    "expiry",
    "strike",
    "option_type",
    "underlying",
    "broker_codes",
    "sim_params",
    "active",
    "venue",
    "code",
    "quote_source",
    "risk_free_rate",  # option models (marketdata.fo): null = settings.FO_RISK_FREE_RATE
    "dividend_yield",
    "segment",  # the broker's segment (Kite's NFO-OPT, INDICES...)
    "min_amount",
    "min_notional",
}


def instrument_upsert(*, symbol: str, **fields: Any) -> Instrument:
    """Create or update an instrument by symbol."""
    unknown = set(fields) - INSTRUMENT_FIELDS
    if unknown:
        raise InvalidInput(fields={k: ["Unknown field."] for k in sorted(unknown)})
    if "type" in fields and fields["type"] not in InstrumentType.values:
        raise InvalidInput(fields={"type": [f"Must be one of {', '.join(InstrumentType.values)}."]})
    # Days, bars and expiries are computed from these two: refuse what cannot be read.
    problems = {
        name: [problem]
        for name, check in (("session", session_problem), ("timezone", timezone_problem))
        if name in fields and (problem := check(str(fields[name]))) is not None
    }
    if problems:
        raise InvalidInput(fields=problems)
    with transaction.atomic():
        before = Instrument.objects.filter(symbol=symbol).values_list("timezone", "session").first()
        if before is None:
            fields.setdefault("code", symbol if fields.get("venue", SIM) == SIM else "")
        if (problem := instrument_naming_problem(symbol, fields)) is not None:
            raise InvalidInput(problem, fields={"venue": [problem]})
        instrument, _ = Instrument.objects.update_or_create(symbol=symbol, defaults=fields)
        if before is not None and before != (instrument.timezone, instrument.session):
            # Its trading days moved: the daily aggregate is regrouped.
            daily_bars_rebuild(instrument=instrument)
        instruments_changed()
    return instrument


def instrument_naming_problem(symbol: str, fields: dict[str, Any]) -> str | None:
    """Why ``symbol`` cannot carry ``fields``' venue and code (``marketdata.venues``):
    a broker's instrument is ``VENUE:CODE``; a simulated one is its code."""
    venue = fields.get("venue")
    if venue is None:
        return None
    if (problem := venue_name_problem(str(venue))) is not None:
        return problem
    code = fields.get("code")
    if venue != SIM and code is not None and symbol != symbol_compose(str(venue), str(code)):
        return f"A {venue} instrument is named {venue}:<code>, not {symbol[:64]}."
    return None


def daily_bars_build(*, symbols: Sequence[str] | None = None) -> dict[str, int]:
    """(Re)build the daily aggregate of the ``symbols`` (default: every
    instrument) from their stored minutes: {symbol: days stored}."""
    instruments = Instrument.objects.order_by("symbol")
    if symbols is not None:
        instruments = instruments.filter(symbol__in=symbols)
        missing = sorted(set(symbols) - set(instruments.values_list("symbol", flat=True)))
        if missing:
            raise NotFound(f"Unknown symbol '{missing[0][:64]}'.", code="unknown_symbol")
    return {instrument.symbol: daily_bars_rebuild(instrument=instrument) for instrument in instruments}


def instruments_set_active(*, instrument_ids: Iterable[int], active: bool) -> int:
    with transaction.atomic():
        changed = Instrument.objects.filter(pk__in=list(instrument_ids)).update(active=active)
        instruments_changed()
    return changed


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0


def bars_upsert(*, instrument: Instrument, resolution: str, bars: Sequence[BarData]) -> UpsertResult:
    """Insert bars, replacing any stored at the same (instrument, resolution, time)."""
    canonical = normalize_resolution(resolution)
    if canonical is None:
        raise InvalidInput(fields={"resolution": ["Unsupported."]})
    if not bars:
        return UpsertResult()
    times = [datetime.fromtimestamp(b.time, UTC) for b in bars]
    existing = set(Bar.objects.filter(instrument=instrument, resolution=canonical, time__in=times).values_list("time", flat=True))
    rows = [
        Bar(
            instrument=instrument,
            resolution=canonical,
            time=stamp,
            open=b.open,
            high=b.high,
            low=b.low,
            close=b.close,
            volume=b.volume,
            open_interest=b.open_interest,
        )
        for stamp, b in zip(times, bars, strict=True)
    ]
    with transaction.atomic():
        Bar.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["instrument", "resolution", "time"],
            update_fields=["open", "high", "low", "close", "volume", "open_interest"],
        )
        if canonical == "1":
            daily_bars_after_minutes(minutes=[(instrument.pk, b.time) for b in bars])
        else:
            instruments_changed()  # the resolutions it stores: where history reads from
    updated = sum(1 for stamp in times if stamp in existing)
    return UpsertResult(inserted=len(rows) - updated, updated=updated)


_UPSERT_CHUNK = 5000


def _upsert_sql() -> str:
    table = connection.ops.quote_name(Bar._meta.db_table)
    q = connection.ops.quote_name
    # Identifiers come from the model; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({q('instrument_id')}, {q('resolution')}, {q('time')}, {q('open')}, {q('high')}, {q('low')}, "  # noqa: S608
        f"{q('close')}, {q('volume')}, {q('open_interest')}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT ({q('instrument_id')}, {q('resolution')}, {q('time')}) DO UPDATE SET "
        f"{q('open')} = EXCLUDED.{q('open')}, {q('high')} = EXCLUDED.{q('high')}, {q('low')} = EXCLUDED.{q('low')}, "
        f"{q('close')} = EXCLUDED.{q('close')}, {q('volume')} = EXCLUDED.{q('volume')}, "
        f"{q('open_interest')} = EXCLUDED.{q('open_interest')}"
    )
    return sql


def bars_upsert_many(*, resolution: str, bars: Sequence[tuple[int, BarData]]) -> None:
    """Upsert bars of several instruments (``(instrument_id, bar)``) in one
    transaction: the live loop's minutes and the simulator's backfill. Minutes
    update their days' ``DailyBar`` rows in the same transaction.

    A parameterised executemany with ON CONFLICT (SQLite and PostgreSQL alike):
    model instances for hundreds of thousands of rows cost ten times more."""
    if not bars:
        return
    adapt_dt = connection.ops.adapt_datetimefield_value
    adapt_dec = connection.ops.adapt_decimalfield_value
    params = [
        (
            instrument_id,
            resolution,
            adapt_dt(datetime.fromtimestamp(b.time, UTC)),
            adapt_dec(b.open),
            adapt_dec(b.high),
            adapt_dec(b.low),
            adapt_dec(b.close),
            adapt_dec(b.volume),
            None if b.open_interest is None else adapt_dec(b.open_interest),
        )
        for instrument_id, b in bars
    ]
    sql = _upsert_sql()
    with transaction.atomic(), connection.cursor() as cursor:
        for i in range(0, len(params), _UPSERT_CHUNK):
            cursor.executemany(sql, params[i : i + _UPSERT_CHUNK])
        if resolution == "1":
            daily_bars_after_minutes(minutes=[(instrument_id, b.time) for instrument_id, b in bars])
        else:
            instruments_changed()


def ticks_ingest(
    *, builder: BarBuilder, instrument_ids: dict[str, int], ticks: Iterable[Tick], quotes: Iterable[Quote] = ()
) -> list[tuple[str, BarData]]:
    """Fold ticks into 1-minute bars, store the bars they touched and the
    latest quotes. Returns (symbol, bar) for every bar touched, current last."""
    touched: dict[tuple[str, int], BarData] = {}
    for tick in ticks:
        bar = builder.add(tick)
        touched[(tick.symbol, bar.time)] = bar
    for symbol, bar in builder.drain_completed():
        touched[(symbol, bar.time)] = bar
    quotes = list(quotes)
    # A bar's open interest is the feed's latest at the bar's last update (buildup signals read it).
    open_interest = {q.symbol: q.open_interest for q in quotes if q.open_interest is not None}
    for (symbol, _), bar in touched.items():
        if symbol in open_interest:
            bar.open_interest = open_interest[symbol]
    bars_upsert_many(
        resolution="1",
        bars=[(instrument_ids[symbol], bar) for (symbol, _), bar in touched.items() if symbol in instrument_ids],
    )
    quotes_store(quotes)
    return sorted(((symbol, bar) for (symbol, _), bar in touched.items()), key=lambda item: item[1].time)


def decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))
