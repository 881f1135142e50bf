from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import DomainError
from marketdata.services import daily_bars_build


class Command(BaseCommand):
    help = (
        "Build the daily aggregate (one row per trading day, from the stored 1-minute bars) of every instrument, "
        "or of the --symbol ones: for data stored before the aggregate existed. Safe to run again; once built, "
        "every write of 1-minute bars keeps it exact."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", action="append", default=[], help="An instrument's symbol (repeatable; default: all).")

    def handle(self, *args: Any, symbol: list[str], **options: Any) -> None:
        started = time.monotonic()
        try:
            built = daily_bars_build(symbols=symbol or None)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        for name, days in built.items():
            self.stdout.write(f"{name}: {days} days")
        self.stdout.write(f"Built the daily bars of {len(built)} instruments in {time.monotonic() - started:.1f}s.")
