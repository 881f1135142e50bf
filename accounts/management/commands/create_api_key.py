from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.management.cli import command_error, note
from accounts.models import ApiKeyScope
from accounts.services import api_key_create, user_get_by_email
from core.exceptions import DomainError


class Command(BaseCommand):
    help = "Issue an API key for a user. The key is printed once, alone on stdout; details go to stderr."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The user's email.")
        parser.add_argument("--name", required=True, help="A name to recognise the key by.")
        parser.add_argument("--scope", choices=ApiKeyScope.values, default=ApiKeyScope.READ, help="read (default) or trade.")
        parser.add_argument("--keys", action="store_true", help="Add the keys scope: it may create and revoke keys no wider than itself.")
        parser.add_argument("--expires-days", type=int, default=None, help="Expire after this many days (default: never).")

    def handle(self, *args: Any, email: str, name: str, scope: str, keys: bool, expires_days: int | None, **options: Any) -> None:
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be a positive number of days.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            user = user_get_by_email(email=email)
            issued = api_key_create(user=user, name=name, scope=scope, manage_keys=keys, expires_at=expires_at)
        except DomainError as exc:
            raise command_error(exc) from exc
        api_key = issued.api_key
        expiry = api_key.expires_at.isoformat() if api_key.expires_at else "never"
        note(
            self,
            f"Issued API key #{api_key.pk} {api_key.name!r} (prefix {api_key.prefix}, scope {api_key.scope}{' + keys' if api_key.manage_keys else ''}) for {user.email}; "
            f"expires: {expiry}. Copy it now: it is shown only this once.",
        )
        self.stdout.write(issued.key)
