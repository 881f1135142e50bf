"""UDF history benchmark: 100,000 one-minute bars through the real Django stack,
against the floor (raw SQL + the same conversion + orjson) and a DRF
ModelSerializer rendering of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench .venv/bin/python bench/history_bench.py

Needs PostgreSQL. Whatever database DATABASE_URL names, the benchmark runs in
its own database ``terminal_bench`` on that server (created and migrated when
missing) and keeps its bars there between runs. Prints a table and writes
``bench/results/history.json``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "terminal_bench"
SYMBOL = "BENCH:HIST"
BARS = 100_000
RUNS = 15
WARMUP = 2
FIRST_BAR = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
GOAL_FLOOR_RATIO = 1.5  # history / floor at most
GOAL_SERIALIZER_RATIO = 10.0  # modelserializer / history at least


def _bench_database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit("history_bench needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/terminal_bench")
    return urlunparse(parsed._replace(path=f"/{BENCH_DB}"))


def _ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    maintenance = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
            print(f"created database {BENCH_DB}")


def _setup() -> None:
    url = _bench_database_url()
    _ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _bars() -> list:
    from marketdata.types import Bar

    rng = random.Random(20240101)
    cents = 1_900_000  # 19000.00
    out = []
    for i in range(BARS):
        o = cents
        c = max(100, o + rng.randint(-300, 300))
        h = max(o, c) + rng.randint(0, 150)
        lo = min(o, c) - rng.randint(0, 150)
        out.append(
            Bar(
                time=FIRST_BAR + 60 * i,
                open=Decimal(o).scaleb(-2),
                high=Decimal(h).scaleb(-2),
                low=Decimal(lo).scaleb(-2),
                close=Decimal(c).scaleb(-2),
                volume=Decimal(rng.randint(1, 5000)),
            )
        )
        cents = c
    return out


def _ensure_data() -> tuple[int, int]:
    """The instrument's id and the ``to`` of the request (after the last bar)."""
    from marketdata.models import Bar
    from marketdata.services import bars_upsert_many, instrument_upsert

    instrument = instrument_upsert(symbol=SYMBOL, description="History benchmark", exchange="BENCH", tick_size=Decimal("0.01"))
    if Bar.objects.filter(instrument=instrument, resolution="1").count() != BARS:
        Bar.objects.filter(instrument=instrument).delete()
        started = time.perf_counter()
        bars_upsert_many(resolution="1", bars=[(instrument.id, bar) for bar in _bars()])
        print(f"inserted {BARS} bars in {time.perf_counter() - started:.1f} s")
    return instrument.id, FIRST_BAR + 60 * BARS


def _api_key() -> str:
    from accounts.models import User
    from accounts.services import api_key_create, user_create

    user = User.objects.filter(email="bench@example.com").first() or user_create(email="bench@example.com", password="bench-pass-123")
    return api_key_create(user=user, name=f"history bench {int(time.time())}", scope="read").key


# --- the three contenders -------------------------------------------------------------------


def history_through_django(client, url: str, key: str) -> bytes:
    response = client.get(url, HTTP_X_API_KEY=key)
    assert response.status_code == 200, response.content[:300]
    return response.content


FLOOR_SQL = (
    "SELECT time, open, high, low, close, volume FROM marketdata_bar "
    "WHERE instrument_id=%s AND resolution='1' AND time < %s ORDER BY time DESC LIMIT 100000"
)


def floor(instrument_id: int, end: int) -> bytes:
    """The least work a Python server can do for this body: one raw query,
    each column taken out with ``itemgetter``, float(Decimal) and
    datetime.timestamp() per value, one orjson call."""
    import orjson
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(FLOOR_SQL, [instrument_id, datetime.fromtimestamp(end, UTC)])
        rows = cursor.fetchall()
    rows.reverse()
    return orjson.dumps(
        {
            "s": "ok",
            "t": [int(d.timestamp()) for d in map(itemgetter(0), rows)],
            "o": list(map(float, map(itemgetter(1), rows))),
            "h": list(map(float, map(itemgetter(2), rows))),
            "l": list(map(float, map(itemgetter(3), rows))),
            "c": list(map(float, map(itemgetter(4), rows))),
            "v": list(map(float, map(itemgetter(5), rows))),
        }
    )


FAST_SQL = FLOOR_SQL.replace("SELECT time,", "SELECT FLOOR(EXTRACT(EPOCH FROM time))::bigint,")


def floor_fast(instrument_id: int, end: int) -> bytes:
    """For reference, not a goal: the floor with the hot path's own tricks (unix
    seconds from the server, numerics decoded as floats by the cursor), so the
    gap to ``history`` is the cost of the Django and DRF stack alone."""
    import orjson
    from django.db import connection
    from psycopg.types.numeric import FloatLoader

    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("numeric", FloatLoader)
        cursor.execute(FAST_SQL, [instrument_id, datetime.fromtimestamp(end, UTC)])
        rows = cursor.fetchall()
    rows.reverse()
    t, o, h, lo, c, v = (list(map(itemgetter(i), rows)) for i in range(6))
    return orjson.dumps({"s": "ok", "t": t, "o": o, "h": h, "l": lo, "c": c, "v": v})


def model_serializer(instrument_id: int, end: int) -> bytes:
    from rest_framework import serializers
    from rest_framework.renderers import JSONRenderer

    from marketdata.models import Bar

    class BarModelSerializer(serializers.ModelSerializer):
        class Meta:
            model = Bar
            fields = ["time", "open", "high", "low", "close", "volume"]

    rows = list(
        Bar.objects.filter(instrument_id=instrument_id, resolution="1", time__lt=datetime.fromtimestamp(end, UTC)).order_by("-time")[:BARS]
    )
    rows.reverse()
    return JSONRenderer().render(BarModelSerializer(rows, many=True).data)


# --- measuring ------------------------------------------------------------------------------------


def _timed(fn, *args) -> tuple[float, bytes]:
    gc.collect()
    started = time.perf_counter()
    body = fn(*args)
    return (time.perf_counter() - started) * 1000, body


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(statistics.quantiles(ordered, n=10, method="inclusive")[-1], 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


def main() -> None:
    _setup()
    import django
    from django.conf import settings
    from django.db import connection
    from django.test import Client, override_settings

    instrument_id, end = _ensure_data()
    key = _api_key()
    url = f"/api/v1/datafeed/history?symbol={SYMBOL}&resolution=1&from={FIRST_BAR}&to={end}&countback={BARS}"
    client = Client()
    samples: dict[str, list[float]] = {"history": [], "floor": [], "modelserializer": [], "floor_fast": []}
    with override_settings(DEBUG=False, DATAFEED_PUBLIC=False):
        # The Django path and the floor must answer the very same body.
        body = history_through_django(client, url, key)
        assert body == floor(instrument_id, end), "history and floor bodies differ"
        assert body == floor_fast(instrument_id, end), "history and floor_fast bodies differ"
        assert len(json.loads(body)["t"]) == BARS
        for _ in range(WARMUP):
            history_through_django(client, url, key)
            floor(instrument_id, end)
            model_serializer(instrument_id, end)
            floor_fast(instrument_id, end)
        # Round-robin, so drift (cache, autovacuum) spreads over all three.
        for _ in range(RUNS):
            samples["history"].append(_timed(history_through_django, client, url, key)[0])
            samples["floor"].append(_timed(floor, instrument_id, end)[0])
            samples["modelserializer"].append(_timed(model_serializer, instrument_id, end)[0])
            samples["floor_fast"].append(_timed(floor_fast, instrument_id, end)[0])

    results = {name: _summary(values) for name, values in samples.items()}
    history_over_floor = results["history"]["median_ms"] / results["floor"]["median_ms"]
    serializer_over_history = results["modelserializer"]["median_ms"] / results["history"]["median_ms"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0]
    report = {
        "benchmark": "udf_history",
        "bars": BARS,
        "runs": RUNS,
        "warmup": WARMUP,
        "request": url,
        "results": results,
        "samples_ms": {name: [round(x, 2) for x in values] for name, values in samples.items()},
        "ratios": {
            "history_over_floor": round(history_over_floor, 3),
            "history_over_floor_goal_max": GOAL_FLOOR_RATIO,
            "modelserializer_over_history": round(serializer_over_history, 2),
            "modelserializer_over_history_goal_min": GOAL_SERIALIZER_RATIO,
            "history_over_floor_fast": round(results["history"]["median_ms"] / results["floor_fast"]["median_ms"], 3),
        },
        "goals_met": history_over_floor <= GOAL_FLOOR_RATIO and serializer_over_history >= GOAL_SERIALIZER_RATIO,
        "environment": {
            "python": platform.python_version(),
            "django": django.get_version(),
            "postgresql": server_version,
            "database": settings.DATABASES["default"]["NAME"],
            "machine": platform.machine(),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }

    print(f"\nUDF history, {BARS:,} one-minute bars, {RUNS} runs each (PostgreSQL {server_version})\n")
    print(f"{'':<34}{'median ms':>12}{'p90 ms':>10}{'min ms':>10}")
    labels = {
        "history": "history (Django + DRF, orjson)",
        "floor": "floor (raw SQL + orjson)",
        "modelserializer": "DRF ModelSerializer + JSONRenderer",
        "floor_fast": "floor, hot-path tricks (reference)",
    }
    for name, label in labels.items():
        r = results[name]
        print(f"{label:<34}{r['median_ms']:>12.1f}{r['p90_ms']:>10.1f}{r['min_ms']:>10.1f}")
    print(f"\nhistory / floor            {history_over_floor:6.2f}   (goal <= {GOAL_FLOOR_RATIO})")
    print(f"modelserializer / history  {serializer_over_history:6.2f}   (goal >= {GOAL_SERIALIZER_RATIO})")
    print(f"history / floor_fast       {report['ratios']['history_over_floor_fast']:6.2f}   (the stack's own cost; no goal)")

    out = ROOT / "bench" / "results" / "history.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
