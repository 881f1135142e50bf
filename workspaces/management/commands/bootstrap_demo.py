"""Create (once) and print the demo credentials of the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from workspaces.demo import DemoCredentials, demo_bootstrap


class Command(BaseCommand):
    help = "Create the demo trader, staff user, API key and paper account if needed, and print working credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Address to print for the server.")
        parser.add_argument("--file", default=None, help="Where the plaintexts are kept (default: VAR_DIR/demo.json).")

    def handle(self, *args: Any, url: str, file: str | None, **options: Any) -> None:
        demo_path = Path(file) if file else Path(settings.VAR_DIR) / "demo.json"
        credentials = demo_bootstrap(demo_path=demo_path, url=url)
        self.stdout.write(format_credentials(credentials, demo_path))


def format_credentials(c: DemoCredentials, demo_path: Path) -> str:
    base = c.url.rstrip("/")
    lines = [
        "",
        "=" * 72,
        f"Trading terminal: {base}/",
        f"  admin           {base}/admin/",
        f"  REST API docs   {base}/api/v1/docs",
        f"  WebSocket       {base.replace('http', 'ws', 1)}/api/v1/ws",
        "",
        f"  trader          {c.trader_email}",
        f"  trader password {c.trader_password}",
        f"  staff           {c.staff_email}",
        f"  staff password  {c.staff_password}",
        f"  API key         {c.api_key}",
        f"  paper account   {c.account_id}",
        "",
        f"  try: curl -H 'X-API-Key: {c.api_key}' {base}/api/v1/me",
        f"  (kept in {demo_path}; {'; '.join(c.changes) if c.changes else 'nothing changed'})",
        "=" * 72,
        "",
    ]
    return "\n".join(lines)
