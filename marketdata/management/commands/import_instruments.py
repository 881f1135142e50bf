from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.cli import command_error
from core.exceptions import DomainError
from marketdata.instruments import code_and_name, instruments_import_for_venue


class Command(BaseCommand):
    help = (
        "Create (or update the names of) a broker venue's instruments, named VENUE:CODE (KRX:005930). "
        "Codes as CODE or CODE=NAME (005930=Samsung Electronics); no network needed. A simulated instrument "
        "of the same name is moved aside to SIM:<symbol>, with its bars, orders and positions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", required=True, help="KRX, NSE, BSE, NFO or a CCXT exchange id.")
        parser.add_argument("codes", nargs="+", metavar="CODE[=NAME]")

    def handle(self, *args: Any, venue: str, codes: list[str], **options: Any) -> None:
        try:
            result = instruments_import_for_venue(venue=venue, items=[code_and_name(text) for text in codes])
        except DomainError as exc:
            raise command_error(exc) from exc
        for line in result.messages():
            self.stdout.write(line)
