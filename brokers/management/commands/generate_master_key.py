from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.management.cli import note
from brokers.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new Fernet key for BROKER_ENCRYPTION_KEYS (alone on stdout; the how-to goes to stderr)."

    def handle(self, *args: Any, **options: Any) -> None:
        key = generate_key()
        self.stdout.write(key)
        note(
            self,
            "Prepend it (newest first): BROKER_ENCRYPTION_KEYS=<this key>,<current keys> in the environment "
            "(or var/local.env), restart every process, run `manage.py rotate_broker_keys`, then drop the old key.",
        )
