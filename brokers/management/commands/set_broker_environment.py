from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.cli import command_error
from brokers.models import Environment
from brokers.services import broker_account_get, broker_account_set_environment
from core.exceptions import DomainError


class Command(BaseCommand):
    help = "Switch a broker account between its paper/testnet and live environments."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-id", type=int, required=True)
        parser.add_argument("--environment", required=True, choices=Environment.values)

    def handle(self, *args: Any, account_id: int, environment: str, **options: Any) -> None:
        try:
            account = broker_account_get(account_id=account_id)
            previous = account.environment
            account = broker_account_set_environment(account=account, environment=environment)
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(f"Account #{account.pk} {account.label!r}: environment {previous} -> {account.environment}.")
