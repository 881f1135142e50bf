from __future__ import annotations

import random
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokers.kite.fake import FakeKiteServer
from brokers.kite.fake.demo import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    DEMO_USER_ID,
    demo_fake_kite_set_up,
    demo_price_step,
    session_authenticator,
)
from brokers.kite.fake.ticker import FakeKiteTicker


class Command(BaseCommand):
    help = (
        "Run the fake Kite server (REST API, login page, ticker) until interrupted, with a demo app "
        f"(api_key {DEMO_API_KEY}, api_secret {DEMO_API_SECRET}, user {DEMO_USER_ID}), INFY, RELIANCE and the NIFTY 50 index; "
        "point KITE_API_URL, KITE_LOGIN_URL and KITE_TICKER_URL at it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=0, help="0: a free one.")
        parser.add_argument("--ticker-port", type=int, default=0, help="The ticker WebSocket's port (0: a free one).")
        parser.add_argument(
            "--redirect-url",
            default="http://127.0.0.1:8000/api/v1/brokers/kite/callback",
            help="The demo app's redirect URL (the terminal's callback).",
        )
        parser.add_argument("--postback-url", default="", help="Where order updates are POSTed (the terminal's postback endpoint).")
        parser.add_argument("--walk", type=float, default=0.0, help="Move the prices every this many seconds (0: never).")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with FakeKiteServer(host=options["host"], port=options["port"]) as fake:
            ticker = FakeKiteTicker(session_authenticator(fake), host=options["host"], port=options["ticker_port"])
            with ticker:
                demo_fake_kite_set_up(fake, ticker, redirect_url=options["redirect_url"])
                fake.postback_url = options["postback_url"] or None
                self.stdout.write(f"fake Kite API {fake.api_url}  login {fake.login_url}  ticker {ticker.url}")
                self.stdout.write(f"demo app api_key {DEMO_API_KEY}, api_secret {DEMO_API_SECRET}, Kite user {DEMO_USER_ID}")
                self.stdout.flush()
                rng = random.Random(20261205)  # noqa: S311 - a demo's prices
                walk = options["walk"]
                try:
                    while not stop.wait(walk if walk > 0 else 1.0):
                        if walk > 0:
                            demo_price_step(fake, ticker, rng)
                except KeyboardInterrupt:
                    stop.set()
