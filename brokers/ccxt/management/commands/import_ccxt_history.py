from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.management.cli import command_error
from brokers.base import BrokerError
from brokers.ccxt.history import RESOLUTIONS, ccxt_history_import
from brokers.models import BrokerAccount, BrokerKind
from core.exceptions import DomainError

MAX_DAYS = 3650


class Command(BaseCommand):
    help = (
        "Store a CCXT exchange's OHLCV candles of SYMBOL (VENUE:SYMBOL, e.g. BINANCE:BTC/USDT) as bars, "
        "through CCXT account ACCOUNT_ID, paced within the exchange's rate limit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int)
        parser.add_argument("symbol", help="VENUE:SYMBOL, an instrument imported with import_ccxt_markets.")
        parser.add_argument("--timeframe", default="1d", choices=list(RESOLUTIONS))
        parser.add_argument("--days", type=int, default=30, help=f"How many days back (at most {MAX_DAYS}).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["days"] <= MAX_DAYS:
            raise CommandError(f"--days is 1 to {MAX_DAYS}.")
        end = timezone.now()
        try:
            account = BrokerAccount.objects.filter(pk=options["account_id"], kind=BrokerKind.CCXT).first()
            if account is None:
                raise CommandError(f"No CCXT account {options['account_id']}.")
            result = ccxt_history_import(
                account=account,
                symbol=options["symbol"],
                timeframe=options["timeframe"],
                start=end - timedelta(days=options["days"]),
                end=end,
                progress=lambda done: self.stdout.write(f"... {done.inserted + done.updated} bars"),
            )
        except DomainError as exc:
            raise command_error(exc) from exc
        except BrokerError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{options['symbol']}: {result.inserted} bars stored, {result.updated} replaced ({options['timeframe']}).")
