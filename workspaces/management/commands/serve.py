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
        if settings.SIMULATOR_ENABLED:
            # First start: the demo instruments and 30 days of 1-minute history
            # (about ten seconds); later starts fill only the gap since the last run.
            call_command("seed_market", stdout=self.stdout)
        call_command("bootstrap_demo", url=f"http://{_url_host(host)}:{port}/", stdout=self.stdout)
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
