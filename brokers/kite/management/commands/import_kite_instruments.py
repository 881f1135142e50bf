from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.base import BrokerError
from brokers.kite.instruments import kite_instruments_import, rows_from_csv
from brokers.models import BrokerAccount, BrokerKind
from core.exceptions import DomainError

MAX_FILE = 200 * 1024 * 1024  # bytes: Kite's whole master is some 10 MB


class Command(BaseCommand):
    help = (
        "Import Kite's instrument master (GET /instruments, CSV) with the session of Kite account ACCOUNT_ID "
        "(logged in), or from --file: every instrument as EXCHANGE:tradingsymbol with tick and lot size, expiry, "
        "strike, option type, segment and its instrument token, futures and options linked to their underlying. "
        "Shows a progress bar and a summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int)
        parser.add_argument("--file", default="", help="Read this CSV (Kite's columns) instead of asking Kite.")

    def handle(self, *args: Any, **options: Any) -> None:
        account = BrokerAccount.objects.filter(pk=options["account_id"], kind=BrokerKind.KITE).first()
        if account is None:
            raise CommandError(f"No Kite account {options['account_id']}.")
        try:
            if options["file"]:
                path = Path(options["file"])
                if not path.is_file() or path.stat().st_size > MAX_FILE:
                    raise CommandError(f"{path}: not a readable file of at most {MAX_FILE // 2**20} MB.")
                rows: Any = list(rows_from_csv(path.read_text(encoding="utf-8")))
            else:
                self.stderr.write("Fetching the instrument master from Kite...")
                from brokers.kite.adapter import KiteBroker

                rows = KiteBroker(account).instruments()
        except (BrokerError, ValueError, OSError) as exc:
            raise CommandError(str(getattr(exc, "message", "") or exc)) from None
        total = len(rows)
        shown = [-1]

        def progress(done: int) -> None:
            mark = done * 100 // total if total else 100
            if mark != shown[0] and options["verbosity"] > 0:
                shown[0] = mark
                bar = "#" * (mark // 4)
                self.stderr.write(f"\r[{bar:<25}] {mark:3d}% {done:,}/{total:,}", ending="")
                self.stderr.flush()

        try:
            summary = kite_instruments_import(rows, progress=progress)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if shown[0] >= 0:
            self.stderr.write("")
        venues = ", ".join(f"{venue} {n:,}" for venue, n in sorted(summary.by_venue.items()))
        self.stdout.write(
            f"Kite instruments: {total:,} rows; {summary.created:,} created, {summary.updated:,} updated, "
            f"{summary.unchanged:,} unchanged, {summary.linked:,} linked to their underlying, {summary.skipped:,} skipped."
        )
        if venues:
            self.stdout.write(f"By exchange: {venues}.")
        for moved in summary.moved_aside:
            self.stdout.write(moved.message())
        for problem in summary.problems:
            self.stdout.write(f"Skipped {problem}")
