"""The broker-token path under a stampede: 200 concurrent callers (4 processes
x 50 threads) ask ``token_get`` for one KIS app key at the same moment,
against the fake KIS server on 127.0.0.1.

Each round uses a fresh app key: a cold round (no token stored: one caller
issues it under the named lock, the others wait for it and re-read), then a
warm round (the token is stored: every caller reads it, no lock). Reported per
round kind, medians over the rounds: upstream ``/oauth2/tokenP`` calls, each
caller's time in ``token_get`` (p50, p99, max) and the time from the common
start until the last caller was served.

    .venv/bin/python bench/kis_token_bench.py [--rounds 5] [--latency 0.1]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/kis_token_bench.py

Embedded default (no ``REDIS_URL``): file locks and the SQLite database
``var/bench_kis_token.sqlite3``. Production mode: Redis locks and the
PostgreSQL database ``terminal_bench_kis_token`` on DATABASE_URL's server
(created when missing). Either is migrated first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROCESSES = 4
THREADS = 50
PG_DATABASE = "terminal_bench_kis_token"


def _database_url() -> str:
    database_url = os.environ.get("DATABASE_URL", "")
    if os.environ.get("REDIS_URL") and urlparse(database_url).scheme in ("postgres", "postgresql", "pgsql"):
        import psycopg

        parsed = urlparse(database_url)
        dsn = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))  # the server's own database
        with psycopg.connect(dsn, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]).fetchone():
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        return urlunparse(parsed._replace(path="/" + PG_DATABASE))
    var_dir = Path(os.environ.get("VAR_DIR", ROOT / "var"))
    return f"sqlite:///{var_dir / 'bench_kis_token.sqlite3'}"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _round(kis, app_key: str, app_secret: str, env: dict[str, str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from brokers.kis import protocol
    from tests.token_callers import run_callers

    before = kis.calls[protocol.TOKEN_PATH]
    results = run_callers(kis.rest_url, app_key, app_secret, processes=PROCESSES, threads=THREADS, env=env, cwd=str(ROOT))
    latencies = [lat for r in results for lat in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    values = {v for r in results for v in r["values"]}
    start_at = min(r["start_at"] for r in results)
    return {
        "served": len(latencies),
        "errors": len(errors),
        "distinct_tokens": len(values),
        "upstream_calls": kis.calls[protocol.TOKEN_PATH] - before,
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "all_served_ms": round((max(r["last_finished_at"] for r in results) - start_at) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.1, help="the fake's answer delay in seconds (default 0.1)")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = _database_url()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from brokers.kis.fake import FakeKisServer

    call_command("migrate", verbosity=0)
    connections.close_all()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["BROKER_ENCRYPTION_KEYS"] = ",".join(settings.BROKER_ENCRYPTION_KEYS)
    env["VAR_DIR"] = str(settings.VAR_DIR)

    rows: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    with FakeKisServer(latency=args.latency) as kis:
        for _ in range(args.rounds):
            app_key, app_secret = "PS" + secrets.token_hex(17), secrets.token_hex(40)
            kis.add_account(app_key, app_secret, "50000001")
            rows["cold"].append(_round(kis, app_key, app_secret, env))
            rows["warm"].append(_round(kis, app_key, app_secret, env))

    medians = {kind: {field: statistics.median(r[field] for r in runs) for field in runs[0]} for kind, runs in rows.items()}
    mode = "production (Redis locks, PostgreSQL)" if settings.REDIS_URL else "embedded (file locks, SQLite)"
    results = {
        "benchmark": "kis_token",
        "mode": mode,
        "callers": f"{PROCESSES} processes x {THREADS} threads",
        "fake_latency_s": args.latency,
        "rounds": args.rounds,
        "medians": medians,
        "samples": rows,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        },
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "kis_token.json"
    out.write_text(json.dumps(results, indent=2))

    print(f"{mode}; {results['callers']}; fake latency {args.latency * 1000:.0f} ms; medians of {args.rounds} rounds")
    print(
        f"{'round':6s} {'served':>6s} {'errors':>6s} {'tokenP calls':>12s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'all served ms':>13s}"
    )
    for kind, m in medians.items():
        print(
            f"{kind:6s} {m['served']:6.0f} {m['errors']:6.0f} {m['upstream_calls']:12.0f} "
            f"{m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {m['max_ms']:8.2f} {m['all_served_ms']:13.2f}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
