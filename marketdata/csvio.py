"""Bars as CSV: import (parse, validate, upsert, summarise) and export.

The format, both ways: a header row naming the columns
``time,open,high,low,close,volume[,open_interest]`` (any order, any case),
then one bar per row. ``time`` is the start of the bar, as unix seconds or ISO
8601; the export writes ISO 8601 UTC (``2026-01-02T14:30:00Z``) and decimals
exactly as stored, so an exported file imports back into identical bars.

Every row is checked; good rows load even when others are refused, and the
summary names each refused row by line number. Only a file that cannot be read
as bar CSV at all (no header, a required column missing) raises.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from django.conf import settings
from django.db.models import DecimalField

from core.decimals import plain_decimal
from core.exceptions import InvalidInput, NotFound
from marketdata.bars import bucket_fetch_start, bucket_function, resolution_seconds
from marketdata.models import Bar, Instrument
from marketdata.selectors import bars_history, instrument_get
from marketdata.services import bars_upsert, instrument_upsert
from marketdata.sessions import period_start, zone
from marketdata.types import INTRADAY_RESOLUTIONS, SUPPORTED_RESOLUTIONS, normalize_resolution
from marketdata.types import Bar as BarData

CSV_COLUMNS = ("time", "open", "high", "low", "close", "volume", "open_interest")
REQUIRED_COLUMNS = CSV_COLUMNS[:6]
MAX_LISTED_REJECTIONS = 50
UPSERT_CHUNK_ROWS = 1000


def _digits(name: str) -> tuple[int, int]:
    model_field = Bar._meta.get_field(name)
    assert isinstance(model_field, DecimalField) and model_field.max_digits and model_field.decimal_places is not None
    return model_field.max_digits, model_field.decimal_places


# (max_digits, decimal_places) of the Bar columns. A value that does not fit
# would be rounded by the database, so it is refused instead.
_PRICE_DIGITS = _digits("open")
_VOLUME_DIGITS = _digits("volume")
_UNIX_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")


class BarFileError(InvalidInput):
    """The file as a whole cannot be read as bar CSV."""

    code = "bad_bar_file"


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class ImportSummary:
    """What an import did (or, for a dry run, would do)."""

    symbol: str
    resolution: str
    dry_run: bool = False
    rows: int = 0  # data rows read, blank lines not counted
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first MAX_LISTED_REJECTIONS
    ignored_columns: list[str] = field(default_factory=list)
    first_time: int | None = None
    last_time: int | None = None

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_LISTED_REJECTIONS:
            self.rejections.append(Rejection(line, reason))

    def report(self) -> list[str]:
        """The summary as lines of text, for the command and for logs."""
        verb = ("would insert", "would update") if self.dry_run else ("inserted", "updated")
        lines = [
            f"{'Dry run, nothing written. ' if self.dry_run else ''}{self.symbol} at resolution {self.resolution}: "
            f"{self.rows} rows read; {verb[0]} {self.inserted}, {verb[1]} {self.updated}, rejected {self.rejected}."
        ]
        if self.first_time is not None and self.last_time is not None:
            lines.append(f"Bars from {iso_utc(self.first_time)} to {iso_utc(self.last_time)}.")
        if self.ignored_columns:
            lines.append(f"Ignored columns: {', '.join(self.ignored_columns)}.")
        if self.rejections:
            lines.append("Rejected rows:")
            lines.extend(f"  line {r.line}: {r.reason}" for r in self.rejections)
            if self.rejected > len(self.rejections):
                lines.append(f"  ... and {self.rejected - len(self.rejections)} more rejected rows.")
        return lines


# --- time ------------------------------------------------------------------------------


def iso_utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _RowError(ValueError):
    pass


def parse_timestamp(text: str, tz: tzinfo = UTC, previous: int | None = None) -> int:
    """Unix seconds of ``text``: unix seconds, or ISO 8601 (a time without an
    offset is local time in ``tz``).

    A local time the clocks skip (DST gap) is refused. One they repeat (DST
    end) is its first occurrence, unless ``previous`` (the time of the row
    before) is already past it: rows in time order then walk through the
    repeated hour twice, as the clocks did."""
    text = text.strip()
    if not text:
        raise _RowError("time is empty")
    if _UNIX_SECONDS.fullmatch(text):
        value = Decimal(text)
        if value != value.to_integral_value():
            raise _RowError(f"time {text} is not a whole second")
        ts = int(value)
        try:
            datetime.fromtimestamp(ts, UTC)
        except (OverflowError, OSError, ValueError):
            raise _RowError(f"time {text} is out of range (unix seconds expected)") from None
        return ts
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"time {text[:40]!r} is neither unix seconds nor ISO 8601") from None
    if moment.microsecond:
        raise _RowError(f"time {text[:40]} is not a whole second")
    if moment.tzinfo is not None:
        return int(moment.timestamp())
    first = moment.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise _RowError(f"local time {text[:40]} does not exist in {tz} (clocks skip it)")
    early, late = int(first.timestamp()), int(moment.replace(tzinfo=tz, fold=1).timestamp())
    if early != late and previous is not None and early <= previous < late:
        return late
    return early


def _check_aligned(ts: int, resolution: str, instrument_tz: str, session: str = "24x7") -> None:
    """Bars start where the terminal's own bars start: intraday bars from the
    session open in the instrument's timezone (multiples of their length in
    UTC for 24x7 instruments), days/weeks/months at local midnight."""
    if resolution in INTRADAY_RESOLUTIONS:
        # One-minute bars are kept wherever they are; coarser ones only in the session.
        start = ts - ts % 60 if resolution == "1" else bucket_function(resolution, instrument_tz, session)(ts)
        if start is None:
            raise _RowError(
                f"time {iso_utc(ts)} is outside the session {session} ({instrument_tz}): no {resolution}-minute bar starts there"
            )
        if start != ts:
            raise _RowError(f"time {iso_utc(ts)} is not the start of a {resolution}-minute bar")
        return
    if period_start(ts, resolution, instrument_tz) != ts:
        where = {"1D": "a day", "1W": "a week (Monday)", "1M": "a month"}[resolution]
        raise _RowError(f"time {iso_utc(ts)} is not the start of {where} at 00:00 {instrument_tz} (check --timezone)")


# --- numbers ---------------------------------------------------------------------------


def _parse_decimal(name: str, text: str, limits: tuple[int, int]) -> Decimal:
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _RowError(f"{name} {text[:40]!r} is not a number") from None
    if not value.is_finite():
        raise _RowError(f"{name} {text[:40]!r} is not a finite number")
    digits, places = limits
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -places:
        raise _RowError(f"{name} {text[:40]} has more than {places} decimal places")
    if abs(value) >= 10 ** (digits - places):
        raise _RowError(f"{name} {text[:40]} is too large")
    return value


def _parse_bar(values: dict[str, str]) -> tuple[BarData | None, list[str]]:
    """The bar of a row's fields (its time still unset), or the reasons it is refused."""
    errors: list[str] = []
    numbers: dict[str, Decimal | None] = {}
    for name in ("open", "high", "low", "close"):
        try:
            numbers[name] = _parse_decimal(name, values[name], _PRICE_DIGITS)
        except _RowError as exc:
            errors.append(str(exc))
    for name in ("volume", "open_interest"):
        text = values.get(name, "").strip()
        if not text:
            # An index has no volume; open interest is optional.
            numbers[name] = Decimal(0) if name == "volume" else None
            continue
        try:
            numbers[name] = _parse_decimal(name, text, _VOLUME_DIGITS)
        except _RowError as exc:
            errors.append(str(exc))
    if errors:
        return None, errors
    o, h, lo, c = (numbers[n] for n in ("open", "high", "low", "close"))
    assert o is not None and h is not None and lo is not None and c is not None
    errors.extend(
        f"{name} {value} is not above 0" for name, value in zip(("open", "high", "low", "close"), (o, h, lo, c), strict=True) if value <= 0
    )
    if h < max(o, c):
        errors.append(f"high {h} is below max(open, close) {max(o, c)}")
    if lo > min(o, c):
        errors.append(f"low {lo} is above min(open, close) {min(o, c)}")
    volume, open_interest = numbers["volume"], numbers["open_interest"]
    assert volume is not None
    if volume < 0:
        errors.append(f"volume {volume} is negative")
    if open_interest is not None and open_interest < 0:
        errors.append(f"open_interest {open_interest} is negative")
    if errors:
        return None, errors
    return BarData(time=0, open=o, high=h, low=lo, close=c, volume=volume, open_interest=open_interest), []


# --- import ----------------------------------------------------------------------------


def _lines(stream: Iterable[Any], counter: list[int]) -> Iterator[str]:
    """Text lines of a binary or text stream, counting bytes read into ``counter``.

    Undecodable bytes become U+FFFD: the row holding them is refused, the file
    is not."""
    first = True
    for raw in stream:
        if isinstance(raw, bytes):
            counter[0] += len(raw)
            line = raw.decode("utf-8", errors="replace")
        else:
            counter[0] += len(raw.encode("utf-8", errors="replace"))
            line = raw
        if first:
            line = line.removeprefix("\ufeff")
            first = False
        yield line


def _header(row: list[str] | None) -> tuple[dict[str, int], list[str]]:
    """Column positions by name, and the names of the columns ignored."""
    if row is None:
        raise BarFileError("The file is empty: a header row naming the columns is required.")
    names = [name.strip().lower() for name in row]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in CSV_COLUMNS:
            if name in columns:
                raise BarFileError(f"Column '{name}' appears twice in the header.")
            columns[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise BarFileError(
            f"The header lacks {', '.join(missing)}: expected {','.join(REQUIRED_COLUMNS)}[,open_interest], got {','.join(names)[:200]!r}.",
            fields={"header": [f"Missing: {', '.join(missing)}."]},
        )
    ignored = [row[i].strip() for i, name in enumerate(names) if name not in CSV_COLUMNS and name]
    return columns, ignored


def instrument_for_import(*, symbol: str, create: bool, dry_run: bool = False) -> tuple[Instrument, bool]:
    """The instrument bars are imported into, and whether it is new. With
    ``create`` an unknown symbol is created with default fields (left unsaved
    on a dry run); without, it is NotFound."""
    try:
        return instrument_get(symbol=symbol), False
    except NotFound:
        if not create:
            raise
    if dry_run:
        return Instrument(symbol=symbol), True
    return instrument_upsert(symbol=symbol), True


def bars_import_csv(
    *,
    instrument: Instrument,
    stream: IO[Any] | Iterable[Any],
    resolution: str,
    tz: tzinfo | str = UTC,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Validate every row of a bar CSV and upsert the good ones, in chunks.

    A row is refused when a field does not parse, a price is not above zero,
    high is below max(open, close) or low above min(open, close), volume or
    open interest is negative, the time is not the start of a ``resolution``
    bar, or an earlier row already had its time (the first row with a time
    wins). Bars already stored at the same times are replaced.

    ``stream`` yields bytes or text lines; ``progress`` is called with the
    bytes read so far. A dry run validates and counts without writing."""
    canonical = normalize_resolution(resolution)
    if canonical is None:
        raise InvalidInput(f"Unsupported resolution '{str(resolution)[:10]}'.", fields={"resolution": ["Unsupported."]})
    local = zone(tz) if isinstance(tz, str) else tz
    summary = ImportSummary(symbol=instrument.symbol, resolution=canonical, dry_run=dry_run)
    read = [0]
    reader = csv.reader(_lines(stream, read))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BarFileError(f"The header row is not CSV: {exc}.") from None
    columns, summary.ignored_columns = _header(header)
    width = len(header or ())
    seen: dict[int, int] = {}  # time -> line of the row that loaded it
    previous: int | None = None
    pending: list[BarData] = []

    def flush() -> None:
        if pending:
            _store(instrument, canonical, pending, summary)
            pending.clear()
        if progress is not None:
            progress(read[0])

    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            summary.rows += 1
            summary.reject(reader.line_num, f"not CSV: {exc}")
            continue
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        summary.rows += 1
        if len(row) < width or any(cell.strip() for cell in row[width:]):
            summary.reject(line, f"expected {width} fields, found {len(row)}")
            continue
        values = {name: row[index] for name, index in columns.items()}
        errors: list[str] = []
        ts: int | None = None
        try:
            ts = parse_timestamp(values["time"], local, previous)
            previous = ts
            _check_aligned(ts, canonical, instrument.timezone, instrument.session)
        except _RowError as exc:
            errors.append(str(exc))
        bar, bar_errors = _parse_bar(values)
        errors.extend(bar_errors)
        if not errors and ts in seen:
            errors.append(f"duplicate time {iso_utc(ts)} (line {seen[ts]} has it; the first row wins)")  # type: ignore[arg-type]
        if errors:
            summary.reject(line, "; ".join(errors))
            continue
        assert bar is not None and ts is not None
        bar.time = ts
        seen[ts] = line
        pending.append(bar)
        summary.first_time = ts if summary.first_time is None else min(summary.first_time, ts)
        summary.last_time = ts if summary.last_time is None else max(summary.last_time, ts)
        if len(pending) >= UPSERT_CHUNK_ROWS:
            flush()
    flush()
    return summary


def _store(instrument: Instrument, resolution: str, bars: list[BarData], summary: ImportSummary) -> None:
    if not summary.dry_run:
        result = bars_upsert(instrument=instrument, resolution=resolution, bars=bars)
        summary.inserted += result.inserted
        summary.updated += result.updated
        return
    existing = 0
    if instrument.pk is not None:
        times = [datetime.fromtimestamp(b.time, UTC) for b in bars]
        existing = Bar.objects.filter(instrument=instrument, resolution=resolution, time__in=times).count()
    summary.inserted += len(bars) - existing
    summary.updated += existing


# --- export ----------------------------------------------------------------------------


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(plain_decimal(Decimal(value)), "f")


def _stored_range(instrument: Instrument) -> tuple[int, int] | None:
    """First and last stored bar start over every resolution (index lookups)."""
    stamps: list[int] = []
    for resolution in SUPPORTED_RESOLUTIONS:
        times = Bar.objects.filter(instrument=instrument, resolution=resolution).values_list("time", flat=True)
        for moment in (times.order_by("time").first(), times.order_by("-time").first()):
            if moment is not None:
                stamps.append(int(moment.timestamp()))
    return (min(stamps), max(stamps)) if stamps else None


class _Grid:
    """Bar boundaries of a resolution in an instrument's timezone and session:
    the first moment of each bar, where the history selector starts reading
    it, so windows never cut a bar in two."""

    # Far enough past one boundary to be inside the next period, never past it
    # (days last 23 to 25 hours, months 28 to 31 days).
    _CALENDAR_STEP = {"1D": 36 * 3600, "1W": 10 * 86_400, "1M": 45 * 86_400}

    def __init__(self, resolution: str, tz_name: str, session: str = "24x7") -> None:
        self.resolution = resolution
        self.tz_name = tz_name
        self.session = session

    def floor(self, ts: int) -> int:
        return bucket_fetch_start(ts, self.resolution, self.tz_name, self.session)

    def next(self, ts: int) -> int:
        """The first boundary after ``ts``."""
        if self.resolution in INTRADAY_RESOLUTIONS:
            # A length later is inside the next bar, or in a closed stretch (no bar to cut).
            return self.floor(self.floor(ts) + INTRADAY_RESOLUTIONS[self.resolution] * 60)
        return self.floor(self.floor(ts) + self._CALENDAR_STEP[self.resolution])

    def ceil(self, ts: int) -> int:
        return ts if self.floor(ts) == ts else self.next(ts)


def _merge(into: list[Any], row: list[Any]) -> None:
    """Fold ``row`` (the same bar start, later source bars) into ``into``."""
    into[2] = max(into[2], row[2])
    into[3] = min(into[3], row[3])
    into[4] = row[4]
    into[5] += row[5]
    into[6] = row[6] if row[6] is not None else into[6]


def bars_export_csv(
    *,
    instrument: Instrument,
    stream: IO[str],
    resolution: str,
    start: int | None = None,
    end: int | None = None,
) -> int:
    """Write the bars of ``resolution`` starting in [start, end) (default: all
    stored) as CSV; returns the number of bars written.

    Coarser resolutions are aggregated from stored bars exactly as the charts
    get them (``bars_history`` with Decimals), each bar whole: the range is
    widened to bar boundaries before reading. ``open_interest`` is written for
    bars stored at ``resolution`` itself."""
    canonical = normalize_resolution(resolution)
    if canonical is None:
        raise InvalidInput(f"Unsupported resolution '{str(resolution)[:10]}'.", fields={"resolution": ["Unsupported."]})
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    stored = _stored_range(instrument)
    if stored is None:
        return 0
    grid = _Grid(canonical, instrument.timezone, instrument.session)
    # Read whole bars: from the boundary at or before the first one wanted to
    # the boundary at or after the end; bars starting outside [start, end) are
    # then left out.
    window = grid.floor(stored[0] if start is None else max(start, grid.floor(stored[0])))
    limit = grid.ceil(stored[1] + 1 if end is None else min(end, stored[1] + 1))
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    # Source rows per read stay bounded (about a month of minutes), and the
    # bar count per read under the history cap.
    step = max(2 * resolution_seconds(canonical), min(settings.HISTORY_MAX_BARS, 50_000) * 60)
    written = 0
    held: list[Any] | None = None  # the last bar, until the next window shows it is whole
    while window < limit:
        window_end = min(limit, grid.floor(window + step))
        if window_end <= window:
            window_end = min(limit, grid.next(window))
        history = bars_history(instrument=instrument, resolution=canonical, start=window, end=window_end, convert=_identity)
        open_interest = _open_interest(instrument, canonical, window, window_end)
        for t, o, h, lo, c, v in zip(*history.columns, strict=True):
            row = [t, o, h, lo, c, v, open_interest.get(t)]
            if held is not None and held[0] == t:
                # One bar read in two windows: an overnight session's evening
                # belongs to the next day's bar, across the midnight boundary.
                _merge(held, row)
                continue
            if held is not None:
                written += _write(writer, held, low, high)
            held = row
        window = window_end
    if held is not None:
        written += _write(writer, held, low, high)
    return written


def _identity(value: Any) -> Any:
    return value


def _open_interest(instrument: Instrument, resolution: str, start: int, end: int) -> dict[int, Decimal]:
    rows = Bar.objects.filter(
        instrument=instrument,
        resolution=resolution,
        time__gte=datetime.fromtimestamp(start, UTC),
        time__lt=datetime.fromtimestamp(end, UTC),
        open_interest__isnull=False,
    ).values_list("time", "open_interest")
    return {int(t.timestamp()): oi for t, oi in rows if oi is not None}


def _write(writer: Any, row: list[Any], low: float, high: float) -> int:
    if not low <= row[0] < high:
        return 0
    writer.writerow([iso_utc(row[0]), *(_text(v) for v in row[1:])])
    return 1
