from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error
from brokers.models import BrokerKind
from brokers.services import broker_account_get
from core.exceptions import DomainError
from marketdata.instruments import code_and_name, instruments_import_for_venue
from marketdata.venues import venues_of


class Command(BaseCommand):
    help = (
        "Create the KRX instruments a KIS account trades: KRX:<code> (stock, KRW, Asia/Seoul, 0900-1530, "
        "KRX tick bands, quotes from KIS). KIS has no instrument master: give the codes, with names where "
        "known (005930=Samsung Electronics). A simulated instrument of the same name is moved aside."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int)
        parser.add_argument("codes", nargs="+", metavar="CODE[=NAME]")

    def handle(self, *args: Any, account_id: int, codes: list[str], **options: Any) -> None:
        try:
            account = broker_account_get(account_id=account_id)
            if account.kind != BrokerKind.KIS:
                raise CommandError(f"Account #{account.pk} is a {account.kind} account, not a KIS one.")
            (venue,) = venues_of(kind=BrokerKind.KIS)
            result = instruments_import_for_venue(venue=venue, items=[code_and_name(text) for text in codes])
        except DomainError as exc:
            raise command_error(exc) from exc
        for line in result.messages():
            self.stdout.write(line)
