"""``manage.py kis_check ACCOUNT_ID``: what works for a KIS account against its
configured server (token, approval key, a price query, the balance), one
line each, as the upstream terminal's diagnostics script printed them."""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error
from brokers.kis_accounts import CHECK_CODE, kis_account_check
from brokers.services import broker_account_get
from core.exceptions import DomainError

MARKS = {True: "✓", False: "✗", None: "·"}


class Command(BaseCommand):
    help = "Check a KIS account against its configured server: access token, approval key, a price query, the balance. Exit 1 on a failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int)
        parser.add_argument("--code", default=CHECK_CODE, help=f"The 6-digit stock code of the price query (default {CHECK_CODE}).")

    def handle(self, *args: Any, account_id: int, code: str, **options: Any) -> None:
        if not re.fullmatch(r"[0-9A-Z]{6}", code):
            raise CommandError(f"--code must be a 6-character KRX code such as {CHECK_CODE}.")
        try:
            account = broker_account_get(account_id=account_id)
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(f"KIS account #{account.pk} {account.label!r} ({account.environment})")
        lines = kis_account_check(account=account, code=code)
        for line in lines:
            self.stdout.write(f"{MARKS[line.ok]} {line.name}: {line.detail}")
        failed = [line.name for line in lines if line.ok is False]
        if failed:
            raise CommandError(f"{len(failed)} check(s) failed: {', '.join(failed)}.")
        self.stdout.write("All checks passed.")
