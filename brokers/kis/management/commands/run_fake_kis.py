from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokers.kis import protocol
from brokers.kis.fake import FakeKisServer
from brokers.kis.fake.demo import DEMO_APP_KEY, DEMO_CANO, DEMO_HTS_ID, demo_seed, demo_walk

SAVE_EVERY = 5.0  # seconds between state saves


class Command(BaseCommand):
    help = "Run the fake KIS server (REST and WebSocket) until interrupted; --demo seeds an account and moves prices."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=0, help="REST port (0: a free one).")
        parser.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0: a free one).")
        parser.add_argument("--latency", type=float, default=0.0, help="Seconds added to every REST answer.")
        parser.add_argument("--demo", action="store_true", help="Seed the demo account and KRX prices, and move them.")
        parser.add_argument("--tick", type=float, default=1.0, help="Seconds between demo price moves.")
        parser.add_argument(
            "--state",
            default="",
            help="A JSON file that keeps the fake's accounts, orders and tokens across restarts (saved every few seconds).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # SIGTERM/SIGINT are taken synchronously by the main loop (sigtimedwait), never
        # by a handler that could interrupt a lock holder. The mask is set before any
        # thread starts, so every thread inherits it and the signal waits for the loop.
        signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        parent = os.getppid()
        stop = threading.Event()
        with FakeKisServer(
            host=options["host"],
            rest_port=options["port"],
            ws_port=options["ws_port"],
            latency=options["latency"],
            state_path=options["state"] or None,
        ) as fake:
            self.stdout.write(f"fake KIS REST {fake.rest_url}  WebSocket {fake.ws_url}{protocol.WS_PATH}", ending="\n")
            self.stdout.flush()
            walker = None
            if options["demo"]:
                if not fake.state_loaded:
                    demo_seed(fake)
                self.stdout.write(f"demo account app key {DEMO_APP_KEY}, CANO {DEMO_CANO}-01, HTS id {DEMO_HTS_ID}")
                self.stdout.flush()
                walker = threading.Thread(target=demo_walk, args=(fake, stop), kwargs={"interval": options["tick"]}, daemon=True)
                walker.start()
            reason = _wait_for_stop(signals, parent, fake.save_state)
            self.stdout.write(f"fake KIS server stopping ({reason})")
            self.stdout.flush()
            stop.set()
            if walker is not None:
                walker.join(timeout=5)
        self.stdout.write("fake KIS server stopped")
        self.stdout.flush()


def _wait_for_stop(signals: set[signal.Signals], parent: int, save: Callable[[], None]) -> str:
    """Until a stop signal arrives or the parent process is gone (the demo's fake
    must end with serve even if the parent-death signal was lost), saving the
    state every SAVE_EVERY seconds. Returns why it stopped."""
    last_save = time.monotonic()
    while True:
        got = signal.sigtimedwait(signals, 1.0)
        if got is not None:
            return signal.Signals(got.si_signo).name
        if os.getppid() != parent:
            return "parent process gone"
        if time.monotonic() - last_save >= SAVE_EVERY:
            save()
            last_save = time.monotonic()
