"""The OMS commands of the CLI: thin wrappers over ``commands_run`` (the same
specs, rules and results as REST and WebSocket; source ``cli``). Each
command's flags are its payload spec's fields (``--symbol``, ``--qty``...),
so a field added to a spec is a flag at once. Each prints the command result
as JSON on stdout; a refusal exits 1 naming why."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from rest_framework import serializers

from accounts.management.cli import command_error
from brokers.services import broker_account_get
from core.exceptions import DomainError
from oms.models import Source
from oms.services.commands import COMMANDS, command_for, commands_run
from oms.specs import MAX_ID
from oms.specs.fields import BooleanField, IdField


def cli_id(text: str) -> int:
    """An id flag: ASCII digits within the bigint range (``int()`` alone
    would take ``" 7"`` and ``"٧"``)."""
    if re.fullmatch(r"[0-9]{1,19}", text) is None or not 1 <= int(text) <= MAX_ID:
        raise argparse.ArgumentTypeError(f"an id is 1 to {MAX_ID} in ASCII digits, not {text[:30]!r}")
    return int(text)


def _add_field_flag(parser: CommandParser, name: str, field: serializers.Field) -> None:
    flag = "--" + name.replace("_", "-")
    help_text = str(field.help_text or "")
    if isinstance(field, BooleanField):
        parser.add_argument(flag, action="store_true", default=None, help=help_text)
    elif isinstance(field, IdField):
        parser.add_argument(flag, type=cli_id, required=field.required, help=help_text)
    elif isinstance(field, serializers.ListField) and isinstance(field.child, IdField):
        parser.add_argument(flag, type=cli_id, nargs="+", required=field.required, help=help_text)
    elif isinstance(field, serializers.ChoiceField):
        parser.add_argument(flag, choices=list(field.choices), required=field.required, help=help_text)
    else:
        parser.add_argument(flag, required=field.required, help=help_text)


class OmsCommand(BaseCommand):
    command = ""  # the wire command: send_order, cancel_order...

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-id", type=cli_id, required=True, help="The broker account (any owner: staff tool).")
        parser.add_argument("--idempotency-key", help="Run at most once per key and account; a replay prints the stored result.")
        for name, field in self.payload_fields().items():
            _add_field_flag(parser, name, field)

    def payload_fields(self) -> dict[str, serializers.Field]:
        return dict(COMMANDS[self.command].spec().fields)

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        """The payload fields given on the command line (flags left out are absent)."""
        return {name: options[name] for name in self.payload_fields() if options.get(name) is not None}

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = broker_account_get(account_id=options["account_id"])
            command = command_for(account=account, command=self.command, payload=self.payload(options))
            outcome = commands_run(
                account=account, commands=[command], actor=None, source=Source.CLI, idempotency_key=options.get("idempotency_key")
            )
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(json.dumps(outcome.body, sort_keys=True))
