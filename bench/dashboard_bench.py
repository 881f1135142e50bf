"""The dashboard's first load in headless Chromium against the embedded
default (SQLite, in-memory layers, the simulator in the daphne process).

    .venv/bin/python bench/dashboard_bench.py [--runs 5] [--json bench/results/dashboard.json]

Builds its own database under a temporary directory (migrated; the demo
instruments with a day of 1-minute bars for the watchlist's symbols; a trader
with a paper account), starts daphne on a free port, logs in once, then loads
``/`` ``--runs`` times, each in a fresh browser context (empty cache, same
session), and records per load: bytes on the wire (Chrome's encoded lengths,
WebSocket frames excluded), requests, DOMContentLoaded, load, the chart's
first candle and the watchlist's first live price (ms from navigation start).
Prints JSON with every run and the median and worst of each figure; the
browser test ``test_the_first_load_stays_within_its_budget`` asserts the budget.
Needs /usr/bin/chromium and node_modules (make npm).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WATCHLIST = ["AAPL", "MSFT", "BTC/USDT", "ETH/USDT", "NSE:INFY", "005930"]
EMAIL = "bench@example.com"
PASSWORD = "bench-pass-123"  # noqa: S105 - a throwaway user in a throwaway database


def setup_database(directory: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{directory / 'bench.sqlite3'}"
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from accounts.services import user_create
    from brokers.services import broker_account_create
    from marketdata.feeds.simulated import SimulatedFeed
    from marketdata.simulation import demo_instruments_ensure, sim_instruments, simulator_backfill

    call_command("migrate", verbosity=0)
    demo_instruments_ensure()
    feed = SimulatedFeed([i for i in sim_instruments() if i.symbol in WATCHLIST], settings.SIMULATOR_SEED)
    simulator_backfill(feed=feed, until=time.time(), days=1)
    user = user_create(email=EMAIL, password=PASSWORD)
    broker_account_create(owner=user, label="Bench paper", base_currency="USD")


def summarize(runs: list[dict]) -> dict:
    keys = ["bytes", "requests", "dom_content_loaded_ms", "load_ms", "first_candle_ms", "first_price_ms"]
    return {key: {"median": statistics.median(r[key] for r in runs), "max": max(r[key] for r in runs)} for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "dashboard.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        directory = Path(tmp)
        setup_database(directory)
        from playwright.sync_api import sync_playwright

        from tests.browser_support import launch, login, measure_first_load
        from tests.servers import run_daphne

        with run_daphne(directory, SIMULATOR_HISTORY_DAYS="0", LOG_LEVEL="WARNING") as server, sync_playwright() as playwright:
            browser = launch(playwright)
            context = browser.new_context()
            page = context.new_page()
            login(page, server.url, EMAIL, PASSWORD)
            state = context.storage_state()
            context.close()
            runs = [measure_first_load(browser, server.url, state) for _ in range(args.runs)]
            browser.close()
    result = {
        "bench": "dashboard_first_load",
        "server": "daphne, embedded default (SQLite, in-memory layers, simulator in process)",
        "browser": "/usr/bin/chromium headless",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "runs": runs,
        "summary": summarize(runs),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
