"""CSV export of order and deal lists (``?format=csv``): every row matching the
filters, streamed in chunks rather than paginated, with the wire forms'
columns and values (decimals as plain strings, times ISO 8601 UTC)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Model, QuerySet
from django.http import StreamingHttpResponse

CHUNK = 500


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as in JSON
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True) if value else ""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value):
        # A free-text value (strategy_id, a broker message) that a spreadsheet
        # would run as a formula: quoted as OWASP advises; numbers stay numbers.
        return "'" + value
    return value


def _line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_cell(v) for v in values])
    return buffer.getvalue()


async def _rows(queryset: QuerySet[Any], columns: list[str], payload_of: Callable[[Any], dict[str, Any]]) -> AsyncIterator[str]:
    # An async iterator: under daphne the rows go out chunk by chunk while the
    # next chunk is read (a sync iterator would be read whole into memory first).
    yield _line(columns)
    async for row in queryset.aiterator(chunk_size=CHUNK):
        payload = payload_of(row)
        yield _line(payload[c] for c in columns)


def csv_response(
    queryset: QuerySet[Model], *, columns: list[str], payload_of: Callable[[Any], dict[str, Any]], filename: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_rows(queryset, columns, payload_of), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
