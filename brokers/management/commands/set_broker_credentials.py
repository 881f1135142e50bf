from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.cli import command_error, note, read_secret
from brokers.ccxt_options import CCXT_TO_OURS, ccxt_required_credentials
from brokers.crypto import CredentialError
from brokers.models import BrokerKind
from brokers.services import CREDENTIAL_FIELDS, broker_account_credential_names, broker_account_get, broker_account_set_credentials
from core.exceptions import DomainError


class Command(BaseCommand):
    help = (
        "Store secrets of a broker account, merged into those already stored (--replace drops the others). "
        "--field NAME=VALUE, or --field NAME to be prompted (no echo; from stdin, one line per field, when not a terminal), "
        "or --stdin-json to read a JSON object from stdin. Prints the field names stored, never the values."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-id", type=int, required=True)
        parser.add_argument("--field", action="append", default=[], metavar="NAME[=VALUE]", help="Repeatable.")
        parser.add_argument("--stdin-json", action="store_true", help='Read {"name": "value", ...} from stdin.')
        parser.add_argument("--replace", action="store_true", help="Discard stored fields not given here.")

    def handle(self, *args: Any, account_id: int, field: list[str], stdin_json: bool, replace: bool, **options: Any) -> None:
        try:
            account = broker_account_get(account_id=account_id)
        except DomainError as exc:
            raise command_error(exc) from exc
        credentials = self._read_stdin_json() if stdin_json else {}
        if account.kind == BrokerKind.CCXT:  # ccxt's spelling (apiKey) taken as ours (api_key)
            credentials = {CCXT_TO_OURS.get(k, k): v for k, v in credentials.items()}
        for item in field:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not name:
                raise CommandError(f"--field {item!r}: expected NAME=VALUE or NAME.")
            if not sep:
                if stdin_json:
                    raise CommandError(f"--field {name}: cannot prompt for a value while --stdin-json reads stdin; give NAME=VALUE.")
                value = read_secret(f"{name}: ", whole=False)
            credentials[CCXT_TO_OURS.get(name, name) if account.kind == BrokerKind.CCXT else name] = value
        if not credentials and not replace:
            raise CommandError("No credentials given: use --field NAME=VALUE, --field NAME or --stdin-json.")
        try:
            account = broker_account_set_credentials(account=account, credentials=credentials, merge=not replace)
            stored = broker_account_credential_names(account=account)
        except DomainError as exc:
            raise command_error(exc) from exc
        except CredentialError as exc:  # merging needs the stored secrets
            raise CommandError(f"{exc} Use --replace to overwrite them.") from exc
        self.stdout.write(f"Account #{account.pk} credentials stored: {', '.join(stored) or 'none'}")
        required = list(CREDENTIAL_FIELDS[account.kind])
        if account.kind == BrokerKind.CCXT and account.exchange_id:
            # The exchange's own list (ccxt's requiredCredentials: a password for OKX, a uid for some...).
            required = ccxt_required_credentials(account.exchange_id)
        missing = [name for name in required if name not in stored]
        if missing:
            note(self, f"Still missing for a {account.kind} account: {', '.join(missing)}.")

    def _read_stdin_json(self) -> dict[str, Any]:
        try:
            data = json.loads(sys.stdin.read())
        except json.JSONDecodeError as exc:
            # Never echo the input: it holds secrets.
            raise CommandError(f"--stdin-json: stdin is not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(data, dict):
            raise CommandError("--stdin-json: expected a JSON object of field names to values.")
        return data
