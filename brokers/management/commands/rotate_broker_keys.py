from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from brokers.services import broker_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored broker credential under the newest BROKER_ENCRYPTION_KEYS key. "
        "Exits non-zero when some row no configured key decrypts (such rows are left unchanged)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = broker_keys_rotate()
        self.stdout.write(f"Rotated: {result.rotated}. Failed: {result.failed}.")
        if result.failed:
            ids = ", ".join(str(pk) for pk in result.failed_ids)
            raise CommandError(
                f"{result.failed} account(s) hold credentials that no configured key decrypts (ids: {ids}); they were left unchanged. "
                "Keep the old key in BROKER_ENCRYPTION_KEYS until they are re-entered."
            )
