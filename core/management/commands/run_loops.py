"""The ``marketdata`` process of the Procfile: every registered loop (simulator
ticks, paper matching, broadcasters, sweepers) until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import loops

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the registered periodic loops until SIGTERM/SIGINT, then stop them cleanly."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", default="", help="Comma-separated loop names (default: all registered loops).")

    def handle(self, *args: Any, only: str, **options: Any) -> None:
        registered = loops.registered_loops()
        names = [name.strip() for name in only.split(",") if name.strip()] or None
        if names is not None:
            unknown = sorted(set(names) - set(registered))
            if unknown:
                raise CommandError(f"Unknown loop(s): {', '.join(unknown)}. Registered: {', '.join(sorted(registered)) or 'none'}.")
        if settings.RUN_LOOPS_IN_PROCESS:
            logger.warning("RUN_LOOPS_IN_PROCESS is on: the web process runs these loops too")
        asyncio.run(_run_until_signalled(names))


async def _run_until_signalled(names: list[str] | None) -> None:
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        event_loop.add_signal_handler(signum, stop.set)
    started = loops.start_in_process(names)
    # With nothing to run the process still stays up: under honcho, a process
    # that exits takes the whole Procfile down with it.
    logger.info("run_loops running: %s", ", ".join(started) or "no loops registered")
    try:
        await stop.wait()
    finally:
        logger.info("run_loops stopping")
        await loops.stop_all()
    logger.info("run_loops stopped")
