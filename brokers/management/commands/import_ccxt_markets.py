from __future__ import annotations

from typing import Any

import ccxt
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error
from brokers.base import BrokerError
from brokers.ccxt.exchange import ccxt_exchange_for_account, ccxt_markets_load
from brokers.ccxt.markets import ccxt_markets_import, markets_select
from brokers.models import BrokerKind
from brokers.services import broker_account_get
from core.exceptions import DomainError
from marketdata.venues import ccxt_venue


class Command(BaseCommand):
    help = (
        "Create (or refresh) the instruments of a CCXT account's exchange from its markets: VENUE:SYMBOL "
        "(BINANCE:BTC/USDT), lot and tick from ccxt's precision (by the exchange's precisionMode), minimum "
        "amount and notional, the quote currency. All markets, or those named with --symbols."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int)
        parser.add_argument("--symbols", nargs="+", default=[], metavar="SYMBOL", help="ccxt symbols: BTC/USDT BTC/USDT:USDT")

    def handle(self, *args: Any, account_id: int, symbols: list[str], **options: Any) -> None:
        try:
            account = broker_account_get(account_id=account_id)
            if account.kind != BrokerKind.CCXT:
                raise CommandError(f"Account #{account.pk} is a {account.kind} account, not a CCXT one.")
            exchange = ccxt_exchange_for_account(account)
            ccxt_markets_load(exchange, reload=True)
            chosen = markets_select(exchange, symbols or None)
            result = ccxt_markets_import(venue=ccxt_venue(account.exchange_id), markets=chosen, precision_mode=exchange.precisionMode)
        except DomainError as exc:
            raise command_error(exc) from exc
        except (BrokerError, ccxt.BaseError, ValueError) as exc:
            raise CommandError(str(exc)[:300]) from exc
        self.stdout.write(f"{len(result['created'])} created, {len(result['updated'])} refreshed.")
        for symbol in result["created"][:50]:
            self.stdout.write(f"created {symbol}")
