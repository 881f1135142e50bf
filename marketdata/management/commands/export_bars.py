from __future__ import annotations

from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error
from core.exceptions import DomainError
from marketdata.csvio import bars_export_csv, parse_timestamp
from marketdata.selectors import instrument_get
from marketdata.types import SUPPORTED_RESOLUTIONS, normalize_resolution


def _time(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise CommandError(f"{name}: {exc}.") from None


class Command(BaseCommand):
    help = (
        "Export an instrument's bars as CSV (time,open,high,low,close,volume,open_interest; time in ISO 8601 "
        "UTC, decimals exact), the format import_bars reads. Resolutions coarser than the stored bars are "
        "aggregated as the charts show them; each bar is whole. --from and --to select bars by their start "
        "time, [from, to); each takes unix seconds or ISO 8601 (UTC when no offset is given). Open interest "
        "is written for bars stored at the requested resolution."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--resolution", default="1", help=f"One of {', '.join(SUPPORTED_RESOLUTIONS)} (default 1).")
        parser.add_argument("--from", dest="start", help="First bar start to include (default: the first stored).")
        parser.add_argument("--to", dest="end", help="Bars starting before this (default: up to the last stored).")
        parser.add_argument("--output", default="-", help="File to write, or - for standard output (default).")

    def handle(self, *args: Any, symbol: str, resolution: str, start: str | None, end: str | None, output: str, **options: Any) -> None:
        canonical = normalize_resolution(resolution)
        if canonical is None:
            raise CommandError(f"Unsupported resolution {resolution!r}: use one of {', '.join(SUPPORTED_RESOLUTIONS)}.")
        start_ts, end_ts = _time("--from", start), _time("--to", end)
        if start_ts is not None and end_ts is not None and start_ts >= end_ts:
            raise CommandError("--from must be before --to.")
        try:
            instrument = instrument_get(symbol=symbol)
        except DomainError as exc:
            raise command_error(exc) from exc
        stream: TextIO
        try:
            stream = self.stdout if output == "-" else open(output, "w", encoding="utf-8", newline="")  # type: ignore[assignment]  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        try:
            count = bars_export_csv(instrument=instrument, stream=stream, resolution=canonical, start=start_ts, end=end_ts)
        except DomainError as exc:
            raise command_error(exc) from exc
        finally:
            if output != "-":
                stream.close()
        if options["verbosity"] > 0:
            self.stderr.write(f"Exported {count} {canonical} bars of {symbol} to {'standard output' if output == '-' else output}.")
