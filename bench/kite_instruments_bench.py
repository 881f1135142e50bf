"""Kite's instrument master imported in bulk: a generated 100,000-row CSV in
Kite's columns (cash-market stocks and indices, their futures and options)
through ``rows_from_csv`` and ``kite_instruments_import``, three times: cold
(every instrument created, derivatives linked to their underlying), warm
(nothing changed) and a re-listing (every lot size changed). JSON out.

    .venv/bin/python bench/kite_instruments_bench.py [--rows 100000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench .venv/bin/python bench/kite_instruments_bench.py

Embedded default: the SQLite database ``var/bench_kite_instruments.sqlite3``.
With a PostgreSQL DATABASE_URL: that database (migrated first). The
generated instruments (tradingsymbols starting ``ZB``) are deleted at the end. Writes ``bench/results/kite_instruments.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "ZB"


def generate_csv(rows: int, *, lot: int = 1) -> str:
    """Kite's CSV: per underlying one NSE stock, 3 futures and options around it
    (strikes x CE/PE x 3 expiries), until ``rows``; 4 indices first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "instrument_token",
            "exchange_token",
            "tradingsymbol",
            "name",
            "last_price",
            "expiry",
            "strike",
            "tick_size",
            "lot_size",
            "instrument_type",
            "segment",
            "exchange",
        ]
    )
    token, written = 1000, 0
    expiries = [date(2030, 1, 31) + timedelta(days=28 * i) for i in range(3)]

    def row(symbol: str, name: str, expiry: str, strike: float, kind: str, segment: str, exchange: str, lot_size: int) -> None:
        nonlocal token, written
        token += 1
        written += 1
        writer.writerow([token, token >> 8, symbol, name, 0, expiry, strike, 0.05, lot_size, kind, segment, exchange])

    for index in range(4):
        row(f"{PREFIX}IDX {index}", f"{PREFIX}IDX {index}", "", 0, "EQ", "INDICES", "NSE", 0)
    n = 0
    while written < rows:
        n += 1
        stock = f"{PREFIX}{n:05d}"
        row(stock, f"{stock} LTD", "", 0, "EQ", "NSE", "NSE", 1)
        for expiry in expiries:
            if written >= rows:
                break
            row(f"{stock}{expiry:%y%b}FUT".upper(), stock, expiry.isoformat(), 0, "FUT", "NFO-FUT", "NFO", lot)
            for strike in range(100, 100 + 10 * 10, 10):
                for kind in ("CE", "PE"):
                    if written >= rows:
                        break
                    row(
                        f"{stock}{expiry:%y%b}{strike}{kind}".upper(), stock, expiry.isoformat(), float(strike), kind, "NFO-OPT", "NFO", lot
                    )
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if urlparse(database_url).scheme not in ("postgres", "postgresql", "pgsql"):
        var_dir = Path(os.environ.get("VAR_DIR", ROOT / "var"))
        var_dir.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'bench_kite_instruments.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from brokers.kite.instruments import kite_instruments_import, rows_from_csv
    from marketdata.models import Instrument

    Instrument.objects.filter(code__startswith=PREFIX).delete()
    results = {}
    try:
        for phase, lot in (("cold", 50), ("warm", 50), ("relisted", 75)):
            text = generate_csv(args.rows, lot=lot)
            started = time.perf_counter()
            parsed = list(rows_from_csv(text))
            parsed_at = time.perf_counter()
            summary = kite_instruments_import(parsed)
            done = time.perf_counter()
            results[phase] = {
                "seconds": round(done - started, 3),
                "parse_seconds": round(parsed_at - started, 3),
                "import_seconds": round(done - parsed_at, 3),
                "rows_per_second": round(len(parsed) / (done - started)),
                "created": summary.created,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "linked": summary.linked,
                "skipped": summary.skipped,
            }
        linked = Instrument.objects.filter(code__startswith=PREFIX, underlying__isnull=False).count()
    finally:
        Instrument.objects.filter(code__startswith=PREFIX, type__in=["future", "option"]).delete()
        Instrument.objects.filter(code__startswith=PREFIX).delete()
    out = {
        "benchmark": "kite_instruments_import",
        "rows": args.rows,
        "database": connection.vendor,
        "phases": results,
        "derivatives_linked": linked,
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    print(json.dumps(out, indent=2))
    path = ROOT / "bench" / "results" / "kite_instruments.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
