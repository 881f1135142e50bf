from __future__ import annotations

import os
import sys
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from accounts.management.cli import command_error
from core.exceptions import DomainError
from marketdata.csvio import MAX_LISTED_REJECTIONS, bars_import_csv, instrument_for_import
from marketdata.types import SUPPORTED_RESOLUTIONS, normalize_resolution


class Progress:
    """A one-line percentage of the bytes read, redrawn on stderr."""

    def __init__(self, out: OutputWrapper, label: str, total: int | None) -> None:
        self.out, self.label, self.total = out, label, total
        self.shown: int | None = None

    def __call__(self, done: int) -> None:
        mark = done * 100 // self.total if self.total else done // 1_000_000
        if mark == self.shown:
            return
        self.shown = mark
        text = f"{mark}%" if self.total else f"{mark} MB"
        self.out.write(f"\r{self.label}: {text}", style_func=str, ending="")
        self.out.flush()

    def finish(self) -> None:
        if self.shown is not None:
            self.out.write("", style_func=str)
            self.out.flush()


class Command(BaseCommand):
    help = (
        "Import OHLCV bars from a CSV file into an instrument. The header row names the columns "
        "time,open,high,low,close,volume[,open_interest] (any order); time is the start of the bar, as unix "
        "seconds or ISO 8601, a time without an offset being local time in --timezone. Every row is checked: "
        "unparsable fields, prices not above 0, high below max(open, close), low above min(open, close), "
        "negative volume, a time that is not the start of a bar of --resolution (days, weeks and months start "
        "at 00:00 in the instrument's timezone), and a time seen before in the file: the first row with a time "
        "wins and later ones are rejected. An empty volume is 0. Good rows load even when others are rejected; "
        "bars already stored at the same times are replaced, so importing again updates. The summary lists "
        f"rejected rows by line number (the first {MAX_LISTED_REJECTIONS}, then a count). Fails only when the "
        "file cannot be read or the symbol is unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The CSV file, or - for standard input.")
        parser.add_argument("--symbol", required=True, help="The instrument to load the bars into.")
        parser.add_argument(
            "--resolution", default="1", help=f"Bar resolution of the file: {', '.join(SUPPORTED_RESOLUTIONS)} (default 1)."
        )
        parser.add_argument("--timezone", default="UTC", help="Timezone of times written without an offset (default UTC).")
        parser.add_argument("--create-instrument", action="store_true", help="Create the instrument (default fields) if it is unknown.")
        parser.add_argument("--dry-run", action="store_true", help="Check and count, write nothing.")

    def handle(self, *args: Any, file: str, symbol: str, resolution: str, timezone: str, **options: Any) -> None:
        canonical = normalize_resolution(resolution)
        if canonical is None:
            raise CommandError(f"Unsupported resolution {resolution!r}: use one of {', '.join(SUPPORTED_RESOLUTIONS)}.")
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"Unknown timezone {timezone!r}.") from None
        dry_run = options["dry_run"]
        try:
            instrument, created = instrument_for_import(symbol=symbol, create=options["create_instrument"], dry_run=dry_run)
        except DomainError as exc:
            raise command_error(exc) from exc
        if created:
            self.stderr.write(
                f"{'Would create' if dry_run else 'Created'} instrument {symbol} with default fields; review it in the admin."
            )
        stream: IO[bytes]
        try:
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        total = None if file == "-" else os.fstat(stream.fileno()).st_size
        progress = Progress(self.stderr, f"Reading {file}", total) if options["verbosity"] > 0 else None
        try:
            summary = bars_import_csv(instrument=instrument, stream=stream, resolution=canonical, tz=tz, dry_run=dry_run, progress=progress)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        except DomainError as exc:
            raise command_error(exc) from exc
        finally:
            if progress is not None:
                progress.finish()
            if file != "-":
                stream.close()
        for line in summary.report():
            self.stdout.write(line)
