"""Market-data reads: instruments, history (as columns), quotes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from core.exceptions import InvalidInput, NotFound
from marketdata.bars import Columns, aggregate, bucket_function, columns_from_rows, empty_columns, resolution_seconds
from marketdata.models import Bar, Instrument
from marketdata.sessions import period_start
from marketdata.types import INTRADAY_RESOLUTIONS, normalize_resolution

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


def _source_resolution(instrument: Instrument, resolution: str) -> str:
    for candidate in _SOURCES[resolution]:
        if candidate == "1" or Bar.objects.filter(instrument=instrument, resolution=candidate).exists():
            return candidate
    return "1"


def _aligned_start(instrument: Instrument, resolution: str, start: int) -> int:
    if resolution in INTRADAY_RESOLUTIONS:
        size = INTRADAY_RESOLUTIONS[resolution] * 60
        return start - start % size
    return period_start(start, resolution, instrument.timezone, "24x7") or start


def _fetch(
    instrument: Instrument, source: str, start: int | None, end: int, convert: Callable[[Any], Any], limit: int | None = None
) -> Columns:
    qs = Bar.objects.filter(instrument=instrument, resolution=source, time__lt=datetime.fromtimestamp(end, UTC))
    if start is not None:
        qs = qs.filter(time__gte=datetime.fromtimestamp(start, UTC))
    if limit is not None:
        rows = list(qs.order_by("-time").values_list(*_COLUMNS)[:limit])
        rows.reverse()
    else:
        rows = list(qs.order_by("time").values_list(*_COLUMNS))
    return columns_from_rows(rows, convert)


def bars_history(
    *,
    instrument: Instrument,
    resolution: str,
    end: int,
    start: int | None = None,
    countback: int | None = None,
    convert: Callable[[Any], Any] = float,
) -> History:
    """Bars of ``resolution`` starting in [start, end) — or the last
    ``countback`` before ``end``, which wins over ``start`` — as columns."""
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
        if start >= end:
            raise InvalidInput("from must be before to.", fields={"from": ["Must be before to."]})
        span = (end - start) // resolution_seconds(resolution)
        if span > cap:
            raise InvalidInput(
                f"The range holds up to {span} bars, over the cap of {cap}; narrow it or use countback.",
                code="over_cap",
                fields={"from": [f"At most {cap} bars per request."]},
            )

    source = _source_resolution(instrument, resolution)
    direct = source == resolution
    bucket = None if direct else bucket_function(resolution, instrument.timezone, instrument.session)

    if countback is not None:
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
        next_time = stamp if bucket is None else bucket(stamp)
    return History(columns=empty_columns(), next_time=next_time)
