from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error, note
from accounts.services import user_get_by_email
from brokers.models import BrokerKind, Environment, PositionMode
from brokers.services import CREDENTIAL_FIELDS, broker_account_create
from core.exceptions import DomainError


class Command(BaseCommand):
    help = "Create a broker account for a user and print its id. Set its secrets afterwards with set_broker_credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The owner's email.")
        parser.add_argument("--kind", required=True, choices=BrokerKind.values)
        parser.add_argument("--label", required=True)
        parser.add_argument("--environment", choices=Environment.values, default=Environment.PAPER)
        parser.add_argument("--position-mode", choices=PositionMode.values, default=PositionMode.NETTING)
        parser.add_argument(
            "--base-currency",
            default=None,
            help="Default by kind: KRW for kis, INR for kite, USDT for ccxt (its quote currency), USD for paper.",
        )
        parser.add_argument("--exchange-id", default="", help="CCXT exchange id, e.g. binance (required for ccxt).")
        parser.add_argument(
            "--testnet", action="store_true", help="CCXT: trade the exchange's sandbox/testnet (environment paper; the default)."
        )
        parser.add_argument(
            "--options",
            default="",
            help='CCXT: options for the exchange (JSON), e.g. \'{"options": {"defaultType": "future"}}\' or {"urls": {"api": {...}}}.',
        )
        parser.add_argument("--account-number", default="", help="Broker-side account number (KIS).")
        parser.add_argument("--product-code", default="", help="Broker-side product code (KIS).")
        parser.add_argument("--broker-user-id", default="", help="Broker-side user id (Kite).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["testnet"]:
            if options["environment"] == Environment.LIVE:
                raise CommandError("--testnet and --environment live contradict each other.")
            options["environment"] = Environment.PAPER
        broker_options: dict[str, Any] = {}
        if options["options"]:
            try:
                broker_options = json.loads(options["options"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--options is not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
        broker_fields = {
            "exchange_id": options["exchange_id"],
            "broker_account_number": options["account_number"],
            "broker_product_code": options["product_code"],
            "broker_user_id": options["broker_user_id"],
        }
        try:
            owner = user_get_by_email(email=options["email"])
            account = broker_account_create(
                owner=owner,
                kind=options["kind"],
                label=options["label"],
                environment=options["environment"],
                position_mode=options["position_mode"],
                base_currency=options["base_currency"],
                **{name: value for name, value in broker_fields.items() if value},
                **({"broker_options": broker_options} if broker_options else {}),
            )
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(str(account.pk))
        needed = list(CREDENTIAL_FIELDS[account.kind])
        if account.kind == BrokerKind.CCXT:
            from brokers.ccxt_options import ccxt_required_credentials

            needed = ccxt_required_credentials(account.exchange_id)
        hint = (
            f" Next: manage.py set_broker_credentials --account-id {account.pk} " + " ".join(f"--field {n}" for n in needed)
            if needed
            else ""
        )
        note(
            self,
            f"Created {account.kind} account #{account.pk} {account.label!r} ({account.environment}, {account.base_currency}) "
            f"for {owner.email}.{hint}",
        )
