"""``make run``: migrate, print the demo credentials, then become daphne."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from core.static_files import collect_if_stale

ASGI_APP = "config.asgi:application"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - only shown, never bound here
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Command(BaseCommand):
    help = "Run the terminal on one daphne process (HTTP + WebSocket), after migrate and bootstrap_demo."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        collect_if_stale(self.stdout)  # hashed, compressed static files (a clean clone: the first run)
        if settings.SIMULATOR_ENABLED:
            # First start: the demo instruments and 30 days of 1-minute history
            # (about ten seconds); later starts fill only the gap since the last run.
            call_command("seed_market", stdout=self.stdout)
        url = f"http://{_url_host(host)}:{port}/"
        call_command("bootstrap_demo", url=url, stdout=self.stdout)
        if settings.DEMO_FAKE_BROKERS:
            self._start_demo_brokers(url)
        self.stdout.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        connections.close_all()

        argv = ["daphne", "-b", host, "-p", str(port), ASGI_APP]
        os.chdir(settings.BASE_DIR)  # daphne imports the app from the working directory
        daphne = Path(sys.executable).parent / "daphne"
        executable = str(daphne) if daphne.exists() else shutil.which("daphne")
        if executable:
            # Replace this process so signals (Ctrl-C, SIGTERM) reach daphne directly.
            os.execv(executable, argv)  # noqa: S606 - fixed argv, no shell
        from daphne.cli import CommandLineInterface

        CommandLineInterface().run(argv[1:])

    def _start_demo_brokers(self, url: str) -> None:
        """DEMO_FAKE_BROKERS: the fake KIS server beside daphne (it ends with it)
        and the demo trader's KIS paper account against it."""
        from accounts.services import user_get_by_email
        from brokers.demo import demo_fake_kis_start, demo_kis_account_ensure
        from workspaces.demo import DEMO_TRADER_EMAIL

        trader = user_get_by_email(email=DEMO_TRADER_EMAIL)
        kis = demo_kis_account_ensure(owner=trader)
        fake = demo_fake_kis_start(rest_port=settings.DEMO_KIS_REST_PORT, ws_port=settings.DEMO_KIS_WS_PORT)
        # daphne, exec'd below, reads its settings afresh: its KIS paper accounts talk to the fake.
        os.environ.update(fake.env())
        lines = [
            f"  KIS account     {kis.account_id} (paper, KRW) on the fake KIS server {fake.rest_url}",
            f"  KRX instruments {', '.join(kis.symbols)}",
            f"  try: curl -H 'X-API-Key: <API key>' {url}api/v1/auth/kis/status",
            f"  ({'; '.join(kis.changes) if kis.changes else 'nothing changed'})",
            *self._demo_ccxt_lines(trader),
            *self._demo_kite_lines(trader, url),
            "=" * 72,
            "",
        ]
        self.stdout.write("\n".join(lines))

    def _demo_kite_lines(self, trader: Any, url: str) -> list[str]:
        """The fake Kite (REST, login page, ticker) beside daphne, and the demo
        trader's Kite account on it, to log in to once per start; a failure
        is said and the demo goes on."""
        from brokers.demo import demo_fake_kite_start, demo_kite_account_ensure

        try:
            kite = demo_kite_account_ensure(owner=trader)
            fake = demo_fake_kite_start(terminal_url=url, port=settings.DEMO_KITE_PORT, ticker_port=settings.DEMO_KITE_TICKER_PORT)
        except Exception as exc:
            return [f"  Kite demo account not available: {exc}"]
        # daphne, exec'd below, reads its settings afresh: its Kite accounts talk to the fake.
        os.environ.update(fake.env())
        return [
            f"  Kite account    {kite.account_id} (INR) on the fake Kite {fake.api_url}",
            f"  Kite instruments {', '.join(kite.symbols)}",
            f"  log in to Kite (as the demo trader): {url}api/v1/accounts/{kite.account_id}/kite/login",
            f"  ({'; '.join(kite.changes) if kite.changes else 'nothing changed'})",
        ]

    def _demo_ccxt_lines(self, trader: Any) -> list[str]:
        """The fake exchange (Binance spot) beside daphne, and the demo trader's
        CCXT testnet account on it; a failure is said and the demo goes on."""
        from brokers.demo import demo_ccxt_account_ensure, demo_fake_ccxt_start

        try:
            fake = demo_fake_ccxt_start()
            ccxt = demo_ccxt_account_ensure(owner=trader, options=fake.options())
        except Exception as exc:
            return [f"  CCXT demo account not available: {exc}"]
        return [
            f"  CCXT account    {ccxt.account_id} (testnet, USDT) on the fake exchange {fake.url}",
            f"  CCXT instruments {', '.join(ccxt.symbols)}",
            f"  ({'; '.join(ccxt.changes) if ccxt.changes else 'nothing changed'})",
        ]
