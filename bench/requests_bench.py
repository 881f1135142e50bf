"""Per-request overhead on the production path: ``GET /api/v1/me`` against a
plain Django view returning constant JSON (``GET /bench/floor``, same server,
same middleware), on daphne and on uvicorn, without and with the database
connection pool, side by side in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench REDIS_URL=redis://127.0.0.1:6379/6 \
        .venv/bin/python bench/requests_bench.py

Needs PostgreSQL and Redis: the servers run in the production mode (Redis
cache, channel layer and Celery broker; no loops in the web process) on the
database DATABASE_URL names (migrated here). Four servers run at once, each
on its own port: {daphne, uvicorn} x {no pool (``DB_POOL=false``: the
persistent-connection settings of before), pool}. Only one is sent requests
at a time.

Each round sends every server ``REQUESTS`` sequential requests to each path,
interleaved (/me, floor, /me, ...), over one keep-alive connection; servers
take turns within a round so drift hits all alike. Figures are the median of
the per-round medians. Then, per server:

- connections per 100 requests: the database's ``pg_stat_database.sessions``
  (sessions opened) and ``xact_commit`` before and after 100 ``GET /me``
  (PostgreSQL flushes a backend's counters up to 10 s late: the run waits);
- 4 concurrent clients: requests/s and the most connections the server held
  (sampled from ``pg_stat_activity``); the phase stops early when a server
  holds more than ``CONNECTION_GUARD`` connections (PostgreSQL is shared).

Before the servers start, in this process, each from 200 fresh threads (as a
request's sync code runs): sending a fire-and-forget task with the Redis
result backend of before (a backend built per thread, a subscription to the
result) against none, and a sync publish through ``async_to_sync`` (a new
event loop and Redis connection each time, as in a Celery worker before)
against ``streams.publish.publish``.

Prints a table and writes ``bench/results/requests.json``.
Goal (issue 14): ``GET /me`` median <= 1.5 x the floor's on the chosen setup.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from bench.processes import wait_http  # noqa: E402 - after the path

ROUNDS = int(os.environ.get("REQUESTS_BENCH_ROUNDS", "5"))
REQUESTS = int(os.environ.get("REQUESTS_BENCH_REQUESTS", "200"))  # per path, per server, per round
WARMUP = 50
CONCURRENT_CLIENTS = 4
CONCURRENT_REQUESTS = 100  # per client
CONNECTION_GUARD = 30  # the concurrent phase stops before it takes more of a shared PostgreSQL
STATS_FLUSH_WAIT = 11.0  # PostgreSQL 15 flushes an idle backend's counters within 10 s
GOAL_ME_TO_FLOOR = 1.5
APP_NAME = "requests_bench"  # the bench's own connections, left out of the counts

SERVERS = {
    "daphne": lambda port: [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
    "uvicorn": lambda port: [
        str(BIN / "uvicorn"),
        "config.asgi:application",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "off",
    ],
}
POOL_MODES = {"no pool": {"DB_POOL": "false"}, "pool": {"DB_POOL": "true"}}
# Another checkout's code (a "before" figure), served side by side in the same
# run as the setup "<server>:pool-before" (the same database: /me reads keys only).
BEFORE_ROOT = os.environ.get("REQUESTS_BENCH_BEFORE_ROOT")
if BEFORE_ROOT:
    POOL_MODES["pool-before"] = POOL_MODES["pool"]
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "RUN_LOOPS_IN_PROCESS": "false",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "LOG_LEVEL": "WARNING",
    "THROTTLE_USER": "100000000/min",
    "PYTHONUNBUFFERED": "1",
}


def _urls() -> tuple[str, str]:
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if urlparse(database_url).scheme not in ("postgres", "postgresql", "pgsql") or not redis_url:
        sys.exit("requests_bench needs the production services: DATABASE_URL=postgres://... and REDIS_URL=redis://...")
    return database_url, redis_url


def _pg_dsn(database_url: str) -> str:
    return urlunparse(urlparse(database_url)._replace(scheme="postgresql"))


def _server_name(server: str, mode: str) -> str:
    return f"{APP_NAME}-{server}-{mode.replace(' ', '_')}"


def _with_application_name(database_url: str, name: str) -> str:
    parsed = urlparse(database_url)
    query = "&".join(part for part in (parsed.query, f"application_name={name}") if part)
    return urlunparse(parsed._replace(query=query))


def _setup() -> str:
    """Migrate; a user and a read API key. Returns the key."""
    os.environ["DB_POOL"] = "false"  # this process only sets up
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from accounts.services import api_key_create, user_create

    user = User.objects.filter(email="requests@bench.local").first() or user_create(email="requests@bench.local", password=None)
    key = api_key_create(user=user, name=f"requests bench {time.strftime('%Y%m%d-%H%M%S')}", scope="read").key
    connections.close_all()
    return key


def _start(name: str, cmd: list[str], env: dict[str, str], log: Path, root: Path = ROOT) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


class Client:
    """One keep-alive HTTP/1.1 connection (http.client: the lightest client)."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"X-API-Key": key}

    def get(self, path: str) -> float:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed

    def close(self) -> None:
        self.conn.close()


def _db_counters(conn, db: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = %s", (db,)).fetchone()
    return int(row[0]), int(row[1])


def _connections_per_100(conn, db: str, port: int, key: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    time.sleep(STATS_FLUSH_WAIT)
    sessions_before, commits_before = _db_counters(conn, db)
    client = Client(port, key)  # a fresh one: servers close keep-alive connections idle for seconds
    for _ in range(100):
        client.get("/api/v1/me")
    client.close()
    time.sleep(STATS_FLUSH_WAIT)
    sessions_after, commits_after = _db_counters(conn, db)
    # The reading connection's own first query is one more transaction.
    return {"sessions_opened": sessions_after - sessions_before, "transactions_committed": commits_after - commits_before - 1}


def _concurrent(port: int, key: str, dsn: str, server_name: str) -> dict[str, float | bool]:
    import psycopg

    peak = 0
    done, guard_hit = threading.Event(), threading.Event()

    def sample() -> None:
        nonlocal peak
        with psycopg.connect(dsn, autocommit=True, application_name=APP_NAME) as conn:
            while not done.is_set():
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (server_name,)).fetchone()
                peak = max(peak, int(row[0]))
                if peak > CONNECTION_GUARD:
                    guard_hit.set()
                time.sleep(0.005)

    errors: list[str] = []
    sent = [0] * CONCURRENT_CLIENTS

    def client_run(n: int) -> None:
        client = Client(port, key)
        try:
            for _ in range(CONCURRENT_REQUESTS):
                if guard_hit.is_set():
                    return
                client.get("/api/v1/me")
                sent[n] += 1
        except Exception as exc:  # reported, never hidden
            errors.append(str(exc))
        finally:
            client.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client_run, args=(n,)) for n in range(CONCURRENT_CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    wall = time.perf_counter() - started
    done.set()
    sampler.join(timeout=10)
    if errors:
        raise RuntimeError(f"concurrent phase: {errors[:3]}")
    return {"requests_per_s": round(sum(sent) / wall, 1), "peak_connections": peak, "stopped_at_guard": guard_hit.is_set()}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


SEND_SAMPLES = 200


def _in_new_threads(func, n: int = SEND_SAMPLES) -> list[float]:  # type: ignore[no-untyped-def]
    """Time ``func()`` once in each of ``n`` fresh threads, as a request's sync code runs."""
    times: list[float] = []

    def run() -> None:
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)

    for _ in range(n):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    return times


def _enqueue_and_publish(redis_url: str) -> dict[str, dict[str, float]]:
    """In this process, from fresh threads: one fire-and-forget task sent with
    the Redis result backend of before vs none (now), and one sync publish
    through async_to_sync (before) vs the process's publisher (now)."""
    import redis
    from asgiref.sync import async_to_sync
    from celery import Celery
    from django.conf import settings

    from config.celery import app
    from streams.publish import apublish, publish

    queue = "bench-requests"  # no worker reads it; emptied below
    before_app = Celery("bench-before", broker=redis_url, backend=redis_url, set_as_current=False)
    before_app.conf.task_ignore_result = False
    figures = {}
    try:
        before = _in_new_threads(lambda: before_app.send_task("core.ping", queue=queue))
        now = _in_new_threads(lambda: app.send_task("core.ping", queue=queue))
        figures["send_task"] = {"before_median_ms": _ms(statistics.median(before)), "now_median_ms": _ms(statistics.median(now))}
    finally:
        redis.Redis.from_url(redis_url).delete(queue)
    if settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
        before = _in_new_threads(lambda: async_to_sync(apublish)("quotes:BENCH:REQ", 1, {"n": 1}))
        now = _in_new_threads(lambda: publish("quotes:BENCH:REQ", 1, {"n": 1}))
        figures["sync_publish"] = {"before_median_ms": _ms(statistics.median(before)), "now_median_ms": _ms(statistics.median(now))}
    return figures


def main() -> None:
    database_url, redis_url = _urls()
    key = _setup()
    in_process = _enqueue_and_publish(redis_url)
    import psycopg

    from tests.servers import free_port

    dsn = _pg_dsn(database_url)
    db = urlparse(database_url).path.lstrip("/")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("DB_POOL")}
    base_env.update(SERVER_ENV, DATABASE_URL=database_url, REDIS_URL=redis_url)

    setups = [(server, mode) for server in SERVERS for mode in POOL_MODES]
    if os.environ.get("REQUESTS_BENCH_SETUPS"):  # e.g. "uvicorn:pool": spares a shared PostgreSQL the unpooled servers
        chosen = {tuple(item.split(":", 1)) for item in os.environ["REQUESTS_BENCH_SETUPS"].split(",")}
        setups = [setup for setup in setups if setup in chosen]
    procs: dict[tuple[str, str], tuple[subprocess.Popen, int]] = {}
    samples: dict[tuple[str, str], dict[str, list[float]]] = {s: {"me": [], "floor": []} for s in setups}
    round_medians: dict[tuple[str, str], dict[str, list[float]]] = {s: {"me": [], "floor": []} for s in setups}
    extra: dict[tuple[str, str], dict] = {}
    try:
        for server, mode in setups:
            port = free_port()
            log = results_dir / f"requests-{server}-{mode.replace(' ', '_')}.log"
            # Each server names its connections, so they can be counted apart.
            env = base_env | POOL_MODES[mode] | {"DATABASE_URL": _with_application_name(database_url, _server_name(server, mode))}
            root = Path(BEFORE_ROOT) if BEFORE_ROOT and mode == "pool-before" else ROOT
            procs[(server, mode)] = (_start(server, SERVERS[server](port), env, log, root), port)
        for (server, mode), (proc, port) in procs.items():
            wait_http(f"http://127.0.0.1:{port}/api/v1/health/live", proc, results_dir / f"requests-{server}-{mode.replace(' ', '_')}.log")

        clients = {setup: Client(port, key) for setup, (_, port) in procs.items()}
        for client in clients.values():
            for _ in range(WARMUP):
                client.get("/api/v1/me")
                client.get("/bench/floor")

        for round_no in range(ROUNDS):
            order = setups[round_no % len(setups) :] + setups[: round_no % len(setups)]
            for setup in order:
                # Idle while the others ran: servers close keep-alive connections after seconds.
                clients[setup].close()
                clients[setup] = Client(procs[setup][1], key)
                clients[setup].get("/bench/floor")
                me, floor = [], []
                for _ in range(REQUESTS):
                    me.append(clients[setup].get("/api/v1/me"))
                    floor.append(clients[setup].get("/bench/floor"))
                samples[setup]["me"] += me
                samples[setup]["floor"] += floor
                round_medians[setup]["me"].append(statistics.median(me))
                round_medians[setup]["floor"].append(statistics.median(floor))
            print(f"round {round_no + 1}/{ROUNDS} done", flush=True)

        for client in clients.values():
            client.close()
        with psycopg.connect(dsn, autocommit=True, application_name=APP_NAME) as conn:
            for setup in setups:
                extra[setup] = {"per_100_me": _connections_per_100(conn, db, procs[setup][1], key)}
        for setup in setups:
            try:
                extra[setup]["concurrent_me"] = _concurrent(procs[setup][1], key, dsn, _server_name(*setup))
            except RuntimeError as exc:  # e.g. a shared PostgreSQL out of connections: the figures above stand
                print(f"{setup}: concurrent phase failed: {exc}"[:500], flush=True)
                extra[setup]["concurrent_me"] = {"error": str(exc)[:500]}
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    rows = {}
    for setup in setups:
        me = statistics.median(round_medians[setup]["me"])
        floor = statistics.median(round_medians[setup]["floor"])
        rows[f"{setup[0]}, {setup[1]}"] = {
            "me_median_ms": _ms(me),
            "floor_median_ms": _ms(floor),
            "me_to_floor": round(me / floor, 3),
            "me_round_medians_ms": [_ms(v) for v in round_medians[setup]["me"]],
            "floor_round_medians_ms": [_ms(v) for v in round_medians[setup]["floor"]],
            "me_p90_ms": _ms(statistics.quantiles(samples[setup]["me"], n=10)[-1]),
            "floor_p90_ms": _ms(statistics.quantiles(samples[setup]["floor"], n=10)[-1]),
            **extra[setup],
        }

    def ratio(a: str, b: str, field: str = "me_median_ms") -> float | None:
        return round(rows[a][field] / rows[b][field], 3) if a in rows and b in rows else None

    with psycopg.connect(dsn, autocommit=True, application_name=APP_NAME) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        max_connections = conn.execute("SHOW max_connections").fetchone()[0]
    results = {
        "benchmark": "requests",
        "path": "production mode: PostgreSQL, Redis cache/channel layer/Celery broker, API key auth, no loops in the web process",
        "rounds": ROUNDS,
        "requests_per_path_per_round": REQUESTS,
        "setups": rows,
        "ratios": {
            "me_no_pool_to_pool_daphne": ratio("daphne, no pool", "daphne, pool"),
            "me_no_pool_to_pool_uvicorn": ratio("uvicorn, no pool", "uvicorn, pool"),
            "me_daphne_to_uvicorn_pool": ratio("daphne, pool", "uvicorn, pool"),
            "floor_daphne_to_uvicorn": ratio("daphne, pool", "uvicorn, pool", "floor_median_ms"),
        },
        "in_process_from_fresh_threads": in_process,
        "goal_me_to_floor_max": GOAL_ME_TO_FLOOR,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "daphne": version("daphne"),
            "uvicorn": version("uvicorn"),
            "postgresql": pg_version,
            "max_connections": max_connections,
            "loadavg": os.getloadavg(),
        },
    }
    out = results_dir / "requests.json"
    out.write_text(json.dumps(results, indent=2))

    print(
        f"{'setup':20s} {'/me ms':>8s} {'floor ms':>9s} {'/me÷floor':>9s} {'/me p90':>8s} "
        f"{'sessions/100':>12s} {'xacts/100':>9s} {'4 clients r/s':>13s} {'peak conns':>10s}"
    )
    for name, row in rows.items():
        per100, conc = row["per_100_me"], row["concurrent_me"]
        concurrent = (
            f"{'failed':>13s} {'':>10s}"
            if "error" in conc
            else f"{conc['requests_per_s']:13.1f} {conc['peak_connections']:>9d}{'+' if conc['stopped_at_guard'] else ' '}"
        )
        print(
            f"{name:20s} {row['me_median_ms']:8.2f} {row['floor_median_ms']:9.2f} {row['me_to_floor']:9.2f} {row['me_p90_ms']:8.2f} "
            f"{per100['sessions_opened']:12d} {per100['transactions_committed']:9d} {concurrent}"
        )
    print("ratios:", json.dumps(results["ratios"]))
    for name, row in in_process.items():
        print(f"{name} from a fresh thread: before {row['before_median_ms']} ms, now {row['now_median_ms']} ms")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
