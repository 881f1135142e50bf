from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import read_secret
from brokers.crypto import CredentialError, encrypt_value


class Command(BaseCommand):
    help = (
        "Encrypt a value under the newest BROKER_ENCRYPTION_KEYS key and print its stored form (enc:v1:...). "
        "Without --value the value is read from stdin, or prompted for without echo on a terminal."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--value", help="The plaintext (prefer stdin: arguments stay in the shell history).")

    def handle(self, *args: Any, value: str | None, **options: Any) -> None:
        if value is None:
            value = read_secret("Value to encrypt: ")
        if not value:
            raise CommandError("Nothing to encrypt: the value is empty.")
        try:
            self.stdout.write(encrypt_value(value))
        except CredentialError as exc:
            raise CommandError(str(exc)) from exc
