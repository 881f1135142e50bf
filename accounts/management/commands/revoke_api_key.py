from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.cli import command_error
from accounts.services import api_key_get, api_key_revoke
from core.exceptions import DomainError


class Command(BaseCommand):
    help = "Revoke an API key, found by id or by its public prefix. Revoking twice is harmless."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--id", type=int, dest="api_key_id", help="The key's id.")
        which.add_argument("--prefix", help="The key's public prefix (abcd1234 or tt_abcd1234).")

    def handle(self, *args: Any, api_key_id: int | None, prefix: str | None, **options: Any) -> None:
        try:
            api_key = api_key_get(api_key_id=api_key_id, prefix=prefix)
            already = api_key.is_revoked
            api_key = api_key_revoke(api_key=api_key)
        except DomainError as exc:
            raise command_error(exc) from exc
        state = "was already revoked" if already else "revoked"
        assert api_key.revoked_at is not None
        self.stdout.write(
            f"API key #{api_key.pk} {api_key.name!r} ({api_key.prefix}) of {api_key.user.email} {state} at {api_key.revoked_at.isoformat()}."
        )
