"""``rebuild_positions``: recompute positions from their deals and compare
with the stored rows. Differences are printed; ``--fix`` stores the rebuilt
values. Without ``--fix`` a difference exits 1 (for cron and CI checks)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.models import BrokerAccount
from oms.services.positions import positions_rebuild


class Command(BaseCommand):
    help = "Recompute positions from deals; report differences (exit 1), or store the rebuilt values with --fix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-id", type=int, help="One broker account (default: every account).")
        parser.add_argument("--fix", action="store_true", help="Store the positions rebuilt from deals.")

    def handle(self, *args: Any, account_id: int | None, fix: bool, **options: Any) -> None:
        accounts = BrokerAccount.objects.order_by("id")
        if account_id is not None:
            accounts = accounts.filter(pk=account_id)
            if not accounts.exists():
                raise CommandError(f"No broker account {account_id}.")
        total = 0
        for account in accounts:
            differences = positions_rebuild(account=account, save=fix)
            for difference in differences:
                self.stdout.write(json.dumps({"account_id": account.pk, **difference}, default=str))
            total += len(differences)
        if not total:
            self.stdout.write("no differences")
        elif fix:
            self.stdout.write(f"fixed {total} position(s)")
        else:
            raise CommandError(f"{total} position(s) differ from their deals; run again with --fix to store the rebuilt values.")
