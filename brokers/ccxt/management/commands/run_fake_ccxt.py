from __future__ import annotations

import json
import os
import random
import signal
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.ccxt.fake import FakeCcxtExchange

DEFAULT_BALANCES = {"spot": {"USDT": "1000000", "BNB": "100"}, "futures": {"USDT": "1000000"}}


class Command(BaseCommand):
    help = (
        "Run a fake exchange answering as Binance's REST API (spot: ccxt's binance; futures: binanceusdm) and its "
        "market streams (ccxt.pro) on 127.0.0.1 until interrupted; prints the ccxt options (broker_options) that "
        "point a CCXT account at it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", choices=["spot", "futures"], default="spot")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=0, help="Port (0: a free one).")
        parser.add_argument("--ws-port", type=int, default=0, help="Port of the market streams (0: a free one).")
        parser.add_argument("--no-streams", action="store_true", help="No market streams (a CCXT account on it polls).")
        parser.add_argument("--walk", type=float, default=0.0, help="Move every price by up to this fraction each second (0: still).")
        parser.add_argument("--latency", type=float, default=0.0, help="Seconds added to every answer.")
        parser.add_argument("--api-key", default="fake-ccxt-demo-key", help="The API key the fake accepts.")
        parser.add_argument("--secret", default="fake-ccxt-demo-secret", help="Its secret.")
        parser.add_argument("--price", default="50000", help="BTC's price in USDT.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            price = Decimal(options["price"])
        except InvalidOperation as exc:
            raise CommandError("--price must be a number.") from exc
        if not price.is_finite() or price <= 0:
            raise CommandError("--price must be positive.")
        if options["latency"] < 0 or options["latency"] > 60:
            raise CommandError("--latency must be between 0 and 60 seconds.")
        if not 0 <= options["walk"] <= 0.1:
            raise CommandError("--walk must be between 0 and 0.1.")
        kind = options["kind"]
        # SIGTERM/SIGINT taken synchronously by this thread (the server threads inherit the mask).
        signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        parent = os.getppid()
        rng = random.Random()  # noqa: S311 - a demo's prices, not a secret
        with FakeCcxtExchange(
            kind,
            latency=options["latency"],
            port=options["port"],
            host=options["host"],
            streams=not options["no_streams"],
            ws_port=options["ws_port"],
        ) as fake:
            fake.add_account(options["api_key"], options["secret"], DEFAULT_BALANCES[kind])
            fake.set_price("BTCUSDT", price)
            streams = f", market streams at {fake.streams.url}" if fake.streams is not None else ""
            self.stdout.write(f"fake {fake.exchange_id} ({kind}) at {fake.url}{streams}")
            self.stdout.write(f"api key {options['api_key']}; broker_options: {json.dumps(fake.ccxt_options(), sort_keys=True)}")
            self.stdout.flush()
            reason = ""
            while not reason:
                got = signal.sigtimedwait(signals, 1.0)
                if got is not None:
                    reason = signal.Signals(got.si_signo).name
                elif os.getppid() != parent:
                    reason = "parent process gone"
                elif options["walk"]:
                    fake.walk(options["walk"], rng)
            self.stdout.write(f"fake exchange stopping ({reason})")
        self.stdout.write("fake exchange stopped")
        self.stdout.flush()
