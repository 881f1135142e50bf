"""The OMS commands of the CLI: thin wrappers over ``commands_run`` (the same
validation, rules and results as REST and WebSocket; source ``cli``). Each
prints the command result as JSON on stdout; a refusal exits 1 naming why."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.cli import command_error
from brokers.services import broker_account_get
from core.exceptions import DomainError
from oms.models import Source
from oms.services.commands import Command, command_check, commands_run


class OmsCommand(BaseCommand):
    command = ""  # the wire command: send_order, cancel_order...

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-id", type=int, required=True, help="The broker account (any owner: staff tool).")
        parser.add_argument("--idempotency-key", help="Run at most once per key and account; a replay prints the stored result.")
        self.add_payload_arguments(parser)

    def add_payload_arguments(self, parser: CommandParser) -> None:
        """The payload flags of this command."""

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = broker_account_get(account_id=options["account_id"])
            command = command_check(Command(command=self.command, payload=self.payload(options)))
            outcome = commands_run(
                account=account, commands=[command], actor=None, source=Source.CLI, idempotency_key=options.get("idempotency_key")
            )
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(json.dumps(outcome.body, sort_keys=True))


def present(options: dict[str, Any], *names: str) -> dict[str, Any]:
    """The payload fields given on the command line (flags left out are absent)."""
    return {name: options[name] for name in names if options.get(name) is not None}
