from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error
from brokers.paper.services import paper_ledger_adjust
from brokers.services import broker_account_get
from core.exceptions import DomainError


class Command(BaseCommand):
    help = "Deposit to (a positive amount) or withdraw from (a negative amount) a paper account's ledger, in any currency."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-id", type=int, required=True)
        parser.add_argument("--currency", required=True, help="e.g. KRW, INR, USDT")
        parser.add_argument("--amount", required=True, help="a plain decimal: 5000000 deposits, -250.5 withdraws")
        parser.add_argument("--note", default="", help="what the entry is for (at most 200 characters)")

    def handle(self, *args: Any, account_id: int, currency: str, amount: str, note: str, **options: Any) -> None:
        if not re.fullmatch(r"-?[0-9]{1,18}(\.[0-9]{1,10})?", amount.strip()):
            raise CommandError(f"--amount {amount!r} is not a plain decimal (e.g. 5000000 or -250.5).")
        try:
            broker_account_get(account_id=account_id)
            entry = paper_ledger_adjust(account_id=account_id, currency=currency, amount=Decimal(amount.strip()), note=note)
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(f"Account #{account_id}: {entry.kind} of {abs(entry.amount).normalize():f} {entry.currency} booked.")
