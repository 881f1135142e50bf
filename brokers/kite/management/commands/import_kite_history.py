from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from brokers.base import BrokerError
from brokers.kite.history import RESOLUTIONS, kite_history_import
from brokers.models import BrokerAccount, BrokerKind
from core.exceptions import DomainError

MAX_DAYS = 2000


class Command(BaseCommand):
    help = "Store Kite's historical candles (with OI) of SYMBOL as bars, with the session of Kite account ACCOUNT_ID."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int)
        parser.add_argument("symbol", help="EXCHANGE:tradingsymbol, e.g. NSE:INFY (its instrument token from the master).")
        parser.add_argument("--interval", default="day", choices=sorted(RESOLUTIONS))
        parser.add_argument("--days", type=int, default=30, help=f"How many days back (at most {MAX_DAYS}).")

    def handle(self, *args: Any, **options: Any) -> None:
        account = BrokerAccount.objects.filter(pk=options["account_id"], kind=BrokerKind.KITE).first()
        if account is None:
            raise CommandError(f"No Kite account {options['account_id']}.")
        if not 1 <= options["days"] <= MAX_DAYS:
            raise CommandError(f"--days is 1 to {MAX_DAYS}.")
        end = timezone.now()
        try:
            result = kite_history_import(
                account=account,
                symbol=options["symbol"],
                interval=options["interval"],
                start=end - timedelta(days=options["days"]),
                end=end,
            )
        except BrokerError as exc:
            raise CommandError(exc.message) from None
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{options['symbol']}: {result.inserted} bars stored, {result.updated} replaced ({options['interval']}).")
