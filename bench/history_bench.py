"""UDF history benchmark, in process and over HTTP on the production setup.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench REDIS_URL=redis://127.0.0.1:6379/6 \
        .venv/bin/python bench/history_bench.py

1. In process: ``history`` of 100,000 one-minute bars through the real Django
   stack against the floor — the raw query plus orjson and nothing more (unix
   seconds from the server, numerics decoded as floats by the cursor, the
   columns taken out with ``itemgetter``, one ``orjson.dumps``: exactly the
   work the endpoint cannot skip) — and a DRF ModelSerializer of the same rows.
2. Over HTTP on the production setup (uvicorn as the Procfile runs it, the
   PostgreSQL pool, Redis): 401 daily bars (``resolution=1D&countback=401``)
   beside ``GET /api/v1/me`` (same key, same server), interleaved, several
   rounds; the medians of the per-round medians. Also the same 401 daily bars
   in process. The benchmark generates the two years of 1-minute bars those
   days need (an NYSE-like session in New York: about 196,000 minutes) for its
   own instrument and deletes it at the end.

Needs PostgreSQL (and REDIS_URL for part 2; without it part 2 is skipped).
Whatever database DATABASE_URL names, the benchmark runs in its own database
``terminal_bench`` on that server (created and migrated when missing) and
keeps the 100,000 minutes there between runs. ``BENCH_PROJECT_ROOT`` runs
another checkout's code (a "before" figure); results are written next to this
file, ``bench/results/history.json``.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("BENCH_PROJECT_ROOT") or HERE.parent).resolve()
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get("HISTORY_BENCH_DB", "terminal_bench")
SYMBOL = "BENCH:HIST"
BARS = 100_000
RUNS = int(os.environ.get("HISTORY_BENCH_RUNS", "15"))
WARMUP = 2
FIRST_BAR = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
DAILY_SYMBOL = "BENCH:DAILY"
DAILY_BARS = 401
DAILY_TZ, DAILY_SESSION = "America/New_York", "0930-1600:23456"
DAILY_LAST_DAY = date(2025, 12, 31)
DAILY_YEARS = 2
HTTP_ROUNDS = int(os.environ.get("HISTORY_BENCH_ROUNDS", "7"))
HTTP_REQUESTS = int(os.environ.get("HISTORY_BENCH_REQUESTS", "100"))  # per path, per round
HTTP_WARMUP = int(os.environ.get("HISTORY_BENCH_HTTP_WARMUP", "30"))
GOAL_FLOOR_RATIO = 1.2  # history of 100k 1-minute bars / floor at most
GOAL_DAILY_TO_ME = 1.3  # 401 daily bars over HTTP / GET /me at most
GOAL_SERIALIZER_RATIO = 10.0  # modelserializer / history at least
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "RUN_LOOPS_IN_PROCESS": "false",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "LOG_LEVEL": "WARNING",
    "THROTTLE_USER": "100000000/min",
    "PYTHONUNBUFFERED": "1",
    "DB_POOL": "true",
    "DB_POOL_MAX_SIZE": "10",  # the Procfile's web default (WEB_DB_POOL_MAX_SIZE)
}


def _setup() -> None:
    from bench.database import bench_django_setup

    bench_django_setup(BENCH_DB, program="history_bench")


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


def _daily_minutes(instrument_id: int) -> list:
    """Two years of NYSE-like minutes (09:30-16:00 New York, weekdays)."""
    from marketdata.types import Bar

    rng = random.Random(20251231)
    tz = ZoneInfo(DAILY_TZ)
    cents = 1_000_000
    out = []
    day = DAILY_LAST_DAY - timedelta(days=365 * DAILY_YEARS)
    while day <= DAILY_LAST_DAY:
        if day.weekday() < 5:
            open_ = int(datetime(day.year, day.month, day.day, 9, 30, tzinfo=tz).timestamp())
            for minute in range(390):
                o = cents
                c = max(100, o + rng.randint(-30, 30))
                h, lo = max(o, c) + rng.randint(0, 15), min(o, c) - rng.randint(0, 15)
                out.append(
                    (
                        instrument_id,
                        Bar(
                            time=open_ + 60 * minute,
                            open=Decimal(o).scaleb(-2),
                            high=Decimal(h).scaleb(-2),
                            low=Decimal(lo).scaleb(-2),
                            close=Decimal(c).scaleb(-2),
                            volume=Decimal(rng.randint(1, 900)),
                        ),
                    )
                )
                cents = c
        day += timedelta(days=1)
    return out


def _daily_data() -> int:
    """A fresh instrument with two years of minutes, written as the simulator
    writes them (a day per call, through the one bar-writing service). Returns
    the ``to`` of the request (the day after the last)."""
    from marketdata.models import Instrument
    from marketdata.services import bars_upsert_many, instrument_upsert

    Instrument.objects.filter(symbol=DAILY_SYMBOL).delete()
    instrument = instrument_upsert(
        symbol=DAILY_SYMBOL, description="History benchmark, daily", exchange="BENCH", timezone=DAILY_TZ, session=DAILY_SESSION
    )
    minutes = _daily_minutes(instrument.id)
    started = time.perf_counter()
    for i in range(0, len(minutes), 390):
        bars_upsert_many(resolution="1", bars=minutes[i : i + 390])
    print(f"generated {len(minutes):,} minutes of {DAILY_SYMBOL} in {time.perf_counter() - started:.1f} s")
    return int(datetime.combine(DAILY_LAST_DAY + timedelta(days=1), datetime.min.time(), UTC).timestamp())


def _daily_cleanup() -> None:
    from marketdata.models import Instrument

    Instrument.objects.filter(symbol=DAILY_SYMBOL).delete()


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
    "SELECT FLOOR(EXTRACT(EPOCH FROM time))::bigint, open, high, low, close, volume FROM marketdata_bar "
    "WHERE instrument_id=%s AND resolution='1' AND time < %s ORDER BY time DESC LIMIT 100000"
)


def floor(instrument_id: int, end: int) -> bytes:
    """The raw query plus orjson and nothing more: unix seconds from the
    server, numerics decoded as floats by the cursor, each column taken out
    with ``itemgetter``, one orjson call. The least work any Python server does
    for this body."""
    import orjson
    from django.db import connection
    from psycopg.types.numeric import FloatLoader

    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("numeric", FloatLoader)
        cursor.execute(FLOOR_SQL, [instrument_id, datetime.fromtimestamp(end, UTC)])
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


class _Http:
    """One keep-alive HTTP/1.1 connection (http.client: the lightest client)."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"X-API-Key": key}

    def get(self, path: str) -> tuple[float, bytes]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed * 1000, body


def _uvicorn(port: int) -> list[str]:
    # As the Procfile's web process runs it.
    return [
        str(BIN / "uvicorn"),
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--ws",
        "websockets",
        "--lifespan",
        "off",
        "--no-access-log",
    ]


def _wait_up(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health/live")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-3000:]}")


def _over_http(key: str, daily_url: str, redis_url: str) -> dict:
    """401 daily bars beside GET /me on uvicorn + the pool, interleaved."""
    from tests.servers import free_port

    port = free_port()
    log = HERE / "results" / "history-uvicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_POOL")} | SERVER_ENV | {"REDIS_URL": redis_url}
    with open(log, "wb") as out:
        proc = subprocess.Popen(_uvicorn(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_up(port, proc, log)
        client = _Http(port, key)
        _, body = client.get(daily_url)
        assert len(json.loads(body)["t"]) == DAILY_BARS, "401 daily bars over HTTP"
        for _ in range(HTTP_WARMUP):
            client.get("/api/v1/me")
            client.get(daily_url)
        medians: dict[str, list[float]] = {"me": [], "daily": []}
        for _ in range(HTTP_ROUNDS):
            client.conn.close()
            client = _Http(port, key)
            client.get("/api/v1/me")
            me, daily = [], []
            for _ in range(HTTP_REQUESTS):
                me.append(client.get("/api/v1/me")[0])
                daily.append(client.get(daily_url)[0])
            medians["me"].append(statistics.median(me))
            medians["daily"].append(statistics.median(daily))
        client.conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    me_ms, daily_ms = statistics.median(medians["me"]), statistics.median(medians["daily"])
    return {
        "server": "uvicorn (uvloop, httptools), 1 worker, PostgreSQL pool max 10, Redis: as the Procfile",
        "rounds": HTTP_ROUNDS,
        "requests_per_path_per_round": HTTP_REQUESTS,
        "me_median_ms": round(me_ms, 2),
        "daily_401_median_ms": round(daily_ms, 2),
        "daily_401_over_me": round(daily_ms / me_ms, 3),
        "daily_401_over_me_goal_max": GOAL_DAILY_TO_ME,
        "me_round_medians_ms": [round(x, 2) for x in medians["me"]],
        "daily_401_round_medians_ms": [round(x, 2) for x in medians["daily"]],
    }


def main() -> None:
    redis_url = os.environ.get("REDIS_URL", "")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # no log line per request
    (HERE / "results").mkdir(parents=True, exist_ok=True)
    _setup()
    import django
    from django.conf import settings
    from django.db import connection
    from django.test import Client, override_settings

    instrument_id, end = _ensure_data()
    key = _api_key()
    url = f"/api/v1/datafeed/history?symbol={SYMBOL}&resolution=1&from={FIRST_BAR}&to={end}&countback={BARS}"
    client = Client()
    samples: dict[str, list[float]] = {"history": [], "floor": [], "modelserializer": [], "daily_401": []}
    daily_end = _daily_data()
    daily_url = f"/api/v1/datafeed/history?symbol={DAILY_SYMBOL}&resolution=1D&countback={DAILY_BARS}&to={daily_end}"
    try:
        with override_settings(DEBUG=False, DATAFEED_PUBLIC=False):
            # The Django path and the floor must answer the very same body.
            body = history_through_django(client, url, key)
            assert body == floor(instrument_id, end), "history and floor bodies differ"
            assert len(json.loads(body)["t"]) == BARS
            assert len(json.loads(history_through_django(client, daily_url, key))["t"]) == DAILY_BARS
            for _ in range(WARMUP):
                history_through_django(client, url, key)
                floor(instrument_id, end)
                model_serializer(instrument_id, end)
                history_through_django(client, daily_url, key)
            # Round-robin, so drift (cache, autovacuum) spreads over all.
            for _ in range(RUNS):
                samples["history"].append(_timed(history_through_django, client, url, key)[0])
                samples["floor"].append(_timed(floor, instrument_id, end)[0])
                samples["modelserializer"].append(_timed(model_serializer, instrument_id, end)[0])
                samples["daily_401"].append(_timed(history_through_django, client, daily_url, key)[0])
        connection.close()
        http_figures = _over_http(key, daily_url, redis_url) if redis_url else None
    finally:
        _daily_cleanup()

    results = {name: _summary(values) for name, values in samples.items()}
    history_over_floor = results["history"]["median_ms"] / results["floor"]["median_ms"]
    serializer_over_history = results["modelserializer"]["median_ms"] / results["history"]["median_ms"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0]
    goals = [history_over_floor <= GOAL_FLOOR_RATIO, serializer_over_history >= GOAL_SERIALIZER_RATIO]
    if http_figures is not None:
        goals.append(http_figures["daily_401_over_me"] <= GOAL_DAILY_TO_ME)
    report = {
        "benchmark": "udf_history",
        "code": str(ROOT),
        "bars": BARS,
        "runs": RUNS,
        "warmup": WARMUP,
        "request": url,
        "daily_request": daily_url,
        "results": results,
        "samples_ms": {name: [round(x, 2) for x in values] for name, values in samples.items()},
        "ratios": {
            "history_over_floor": round(history_over_floor, 3),
            "history_over_floor_goal_max": GOAL_FLOOR_RATIO,
            "modelserializer_over_history": round(serializer_over_history, 2),
            "modelserializer_over_history_goal_min": GOAL_SERIALIZER_RATIO,
        },
        "http": http_figures,
        "goals_met": all(goals),
        "environment": {
            "python": platform.python_version(),
            "django": django.get_version(),
            "postgresql": server_version,
            "database": settings.DATABASES["default"]["NAME"],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }

    print(f"\nUDF history, in process, {RUNS} runs each (PostgreSQL {server_version})\n")
    print(f"{'':<44}{'median ms':>12}{'p90 ms':>10}{'min ms':>10}")
    labels = {
        "history": f"history, {BARS:,} 1-minute bars",
        "floor": "floor (raw query + orjson)",
        "modelserializer": "DRF ModelSerializer + JSONRenderer",
        "daily_401": f"history, {DAILY_BARS} daily bars",
    }
    for name, label in labels.items():
        r = results[name]
        print(f"{label:<44}{r['median_ms']:>12.2f}{r['p90_ms']:>10.2f}{r['min_ms']:>10.2f}")
    print(f"\nhistory / floor            {history_over_floor:6.2f}   (goal <= {GOAL_FLOOR_RATIO})")
    print(f"modelserializer / history  {serializer_over_history:6.2f}   (goal >= {GOAL_SERIALIZER_RATIO})")
    if http_figures is None:
        print("\nover HTTP: skipped (set REDIS_URL for the production setup)")
    else:
        print(f"\nover HTTP, {http_figures['server']}; medians of {HTTP_ROUNDS} rounds x {HTTP_REQUESTS} requests")
        print(f"GET /api/v1/me                {http_figures['me_median_ms']:8.2f} ms")
        print(f"history, {DAILY_BARS} daily bars       {http_figures['daily_401_median_ms']:8.2f} ms")
        print(f"daily / me                    {http_figures['daily_401_over_me']:8.2f}   (goal <= {GOAL_DAILY_TO_ME})")

    out = HERE / "results" / "history.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
