"""REST order entry benchmark: POST /api/v1/accounts/{id}/orders (one order)
and /accounts/{id}/batch-orders (100 orders) through a real daphne process on
the embedded path (eager Celery: the send to the paper venue happens inside
the request, after commit), against the floor of a bare authenticated DRF
endpoint (GET /api/v1/me, same API key) measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench .venv/bin/python bench/oms_rest_bench.py

Needs PostgreSQL. Whatever database DATABASE_URL names, the benchmark runs in
its own database ``terminal_bench_oms`` on that server (created and migrated
when missing). The server gets no REDIS_URL (embedded path), risk limits
lifted, and its periodic loops slowed to one run at start (the simulator's
first tick gives the instrument a fresh quote; nothing then competes with the
requests). Each run uses fresh paper accounts, so every phase starts with an
empty book. Orders are limit buys far below the market: they rest.

``OMS_BENCH_SERVER_REDIS_URL=redis://.../N`` (a Redis database of its own)
gives the server that REDIS_URL instead: the production path, where the
request commits and enqueues and a real Celery worker (started beside daphne,
on the same two cores) sends the orders to the paper venue. The run reports how
long the worker took to send them all; leftovers (none expected) are canceled
and this server's messages taken off the queue. Written to
``oms_rest_production.json``.

Prints a table and writes ``bench/results/oms_rest.json``.
Goals: send_order median latency <= 2.5 x the floor's; batch orders/s >= 10 x
single-order orders/s.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.processes import ORDER_SERVER_ENV  # noqa: E402 - after the path

BENCH_DB = "terminal_bench_oms"
SYMBOL = "BENCH:OMS:" + time.strftime("%Y%m%d%H%M%S")  # fresh per run: earlier runs' resting orders never match again
SINGLE = int(os.environ.get("OMS_BENCH_SINGLE", "400"))  # sequential single orders (and as many floor requests)
THREADS = 2  # client threads of the concurrent phase
CONCURRENT = int(os.environ.get("OMS_BENCH_CONCURRENT", "400"))  # single orders over THREADS threads
BATCHES = int(os.environ.get("OMS_BENCH_BATCHES", "20"))
BATCH_SIZE = 100
WARMUP = 30
GOAL_LATENCY_RATIO = 2.5
GOAL_BATCH_RATIO = 10.0
ORDER = {"symbol": SYMBOL, "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00", "time_in_force": "gtc"}
SERVER_ENV = {
    **ORDER_SERVER_ENV,
    "SIMULATOR_ENABLED": "true",
    "SIMULATOR_TICK_INTERVAL": "3600",
    "RISK_CHECK_BUYING_POWER": "false",
    "RISK_MAX_ORDER_QTY": "1000000000",
    "RISK_MAX_ORDER_NOTIONAL": "0",
}


def _setup() -> dict:
    """Migrate; a user, a trade key, fresh paper accounts, the instrument."""
    from bench.database import bench_django_setup

    os.environ.pop("REDIS_URL", None)  # the embedded path, here and in the server
    bench_django_setup(BENCH_DB, program="oms_rest_bench")
    from accounts.models import User
    from accounts.services import api_key_create, user_create
    from brokers.services import broker_account_create
    from marketdata.models import Instrument
    from marketdata.services import instrument_upsert

    # Earlier runs' instruments go quiet: no quotes, so no matching of their books.
    Instrument.objects.filter(symbol__startswith="BENCH:OMS").exclude(symbol=SYMBOL).update(active=False)
    instrument_upsert(
        symbol=SYMBOL,
        description="OMS REST bench",
        type="stock",
        session="24x7",
        sim_params={"price": 100.0, "volatility": 0.2, "volume_per_second": 10},
        active=True,
    )
    user = User.objects.filter(email="oms@bench.local").first() or user_create(email="oms@bench.local", password=None)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    accounts = {
        name: broker_account_create(owner=user, kind="paper", label=f"bench {name} {stamp}").pk
        for name in ("warmup", "single", "concurrent", "batch")
    }
    return {"key": api_key_create(user=user, name=f"oms bench {stamp}", scope="trade").key, "accounts": accounts}


SERVER_REDIS_URL = os.environ.get("OMS_BENCH_SERVER_REDIS_URL", "")


def _start_server(port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(SERVER_ENV)
    if SERVER_REDIS_URL:
        env.update(REDIS_URL=SERVER_REDIS_URL, RUN_LOOPS_IN_PROCESS="false")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text()[-3000:]}")
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/health/live", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"daphne did not start: {log.read_text()[-3000:]}")


def _start_worker(log: Path) -> subprocess.Popen:
    """The production path's Celery worker: it sends the enqueued orders to the paper venue."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(SERVER_ENV)
    env.update(REDIS_URL=SERVER_REDIS_URL, RUN_LOOPS_IN_PROCESS="false", CELERY_TASK_ALWAYS_EAGER="false")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc


def _drain(accounts: dict[str, int], timeout: float = 300.0) -> float | None:
    """Seconds until the worker has sent every order of the run (None: not in time)."""
    from oms.models import Order, OrderStatus

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not Order.objects.filter(account_id__in=accounts.values(), status=OrderStatus.PENDING_NEW).exists():
            return round(time.monotonic() - started, 2)
        time.sleep(0.5)
    return None


def _cleanup_production_run(accounts: dict[str, int], server_pid: int) -> None:
    """The production variant leaves its orders unsent: cancel them (a later
    server's sweeper would send them) and take this server's messages off the
    Redis queue (a worker of another database must never run them)."""
    import redis

    from oms.models import Order, OrderStatus
    from oms.services.amend import order_cancel

    for order in Order.objects.filter(account_id__in=accounts.values(), status=OrderStatus.PENDING_NEW, sent_at=None):
        order_cancel(order=order, actor=None, source="cli")
    queue = redis.Redis.from_url(SERVER_REDIS_URL)
    origin = f"gen{server_pid}@"
    removed = 0
    for raw in queue.lrange("celery", 0, -1):
        if json.loads(raw).get("headers", {}).get("origin", "").startswith(origin):
            removed += queue.lrem("celery", 1, raw)
    print(f"production variant: unsent orders canceled, {removed} queued messages removed")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Client:
    def __init__(self, base: str, key: str) -> None:
        import requests

        self.base = base
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": key, "Content-Type": "application/json"})

    def timed(self, method: str, path: str, body: object = None, expect: int = 200) -> tuple[float, object]:
        data = None if body is None else json.dumps(body)
        started = time.perf_counter()
        response = self.session.request(method, self.base + path, data=data, timeout=120)
        elapsed = time.perf_counter() - started
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return elapsed, response.json()


def _wait_for_quote(client: Client) -> dict:
    if SERVER_REDIS_URL:
        return {}  # no loops in that server; limit orders need no quote
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, body = client.timed("GET", f"/api/v1/quotes?symbols={SYMBOL}")
        rows = body.get("results", body) if isinstance(body, dict) else body
        for row in rows or []:
            if row.get("symbol") == SYMBOL and row.get("last") and not row.get("stale"):
                return row
        time.sleep(0.2)
    raise RuntimeError(f"no fresh quote for {SYMBOL} from the server's simulator")


def main() -> None:
    setup = _setup()
    from django.db.models import Count

    from oms.models import Order
    from tests.servers import free_port

    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = _start_server(port, results_dir / "oms_rest-daphne.log")
    worker = _start_worker(results_dir / "oms_rest-worker.log") if SERVER_REDIS_URL else None
    accounts = setup["accounts"]
    drained_in_s = None
    try:
        client = Client(f"http://127.0.0.1:{port}", setup["key"])
        quote = _wait_for_quote(client)
        orders_path = {name: f"/api/v1/accounts/{pk}/orders" for name, pk in accounts.items()}
        for _ in range(WARMUP):
            client.timed("POST", orders_path["warmup"], ORDER, expect=202)
            client.timed("GET", "/api/v1/me")
        client.timed("POST", f"/api/v1/accounts/{accounts['warmup']}/batch-orders", {"orders": [ORDER] * BATCH_SIZE}, expect=202)

        # 1. Sequential, interleaved with the floor so drift hits both alike.
        send_lat: list[float] = []
        floor_lat: list[float] = []
        for _ in range(SINGLE):
            elapsed, body = client.timed("POST", orders_path["single"], ORDER, expect=202)
            assert isinstance(body, dict) and body["ok"], body
            send_lat.append(elapsed)
            floor_lat.append(client.timed("GET", "/api/v1/me")[0])

        # 2. Two client threads sending single orders.
        concurrent_lat: list[float] = []
        lock = threading.Lock()
        errors: list[str] = []

        def sender(n: int) -> None:
            own = Client(client.base, setup["key"])
            for _ in range(n):
                try:
                    elapsed, _ = own.timed("POST", orders_path["concurrent"], ORDER, expect=202)
                except Exception as exc:  # reported, never hidden
                    errors.append(str(exc))
                    return
                with lock:
                    concurrent_lat.append(elapsed)

        threads = [threading.Thread(target=sender, args=(CONCURRENT // THREADS,)) for _ in range(THREADS)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        concurrent_wall = time.perf_counter() - started
        if errors:
            raise RuntimeError(f"concurrent phase: {errors[:3]}")

        # 3. Batches of 100.
        batch_lat: list[float] = []
        batch_path = f"/api/v1/accounts/{accounts['batch']}/batch-orders"
        for _ in range(BATCHES):
            elapsed, body = client.timed("POST", batch_path, {"orders": [ORDER] * BATCH_SIZE}, expect=202)
            assert isinstance(body, list) and len(body) == BATCH_SIZE and all(r["ok"] for r in body), str(body)[:300]
            batch_lat.append(elapsed)
        if worker is not None:
            drained_in_s = _drain(accounts)
        statuses = {
            name: dict(Order.objects.filter(account_id=pk).values_list("status").annotate(n=Count("id")).order_by())
            for name, pk in accounts.items()
            if name != "warmup"
        }
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        if SERVER_REDIS_URL:
            _cleanup_production_run(accounts, server.pid)

    single_rate = SINGLE / sum(send_lat)
    concurrent_rate = len(concurrent_lat) / concurrent_wall
    batch_rate = BATCHES * BATCH_SIZE / sum(batch_lat)
    tenth = max(1, SINGLE // 10)
    results = {
        "benchmark": "oms_rest",
        "path": "production: daphne commits and enqueues to Redis; a real Celery worker sends to the paper venue; PostgreSQL"
        if SERVER_REDIS_URL
        else "embedded: daphne, eager Celery (send to the paper venue inside the request), PostgreSQL",
        "quote_at_start": quote,
        "send_order": {
            "requests": SINGLE,
            "median_ms": _ms(statistics.median(send_lat)),
            "p99_ms": _ms(_pct(send_lat, 0.99)),
            "orders_per_s": round(single_rate, 1),
            "first_tenth_median_ms": _ms(statistics.median(send_lat[:tenth])),
            "last_tenth_median_ms": _ms(statistics.median(send_lat[-tenth:])),
        },
        "floor_me": {"requests": SINGLE, "median_ms": _ms(statistics.median(floor_lat)), "p99_ms": _ms(_pct(floor_lat, 0.99))},
        "send_order_2_threads": {
            "requests": len(concurrent_lat),
            "median_ms": _ms(statistics.median(concurrent_lat)),
            "p99_ms": _ms(_pct(concurrent_lat, 0.99)),
            "orders_per_s": round(concurrent_rate, 1),
        },
        "batch_orders": {
            "batches": BATCHES,
            "batch_size": BATCH_SIZE,
            "median_ms": _ms(statistics.median(batch_lat)),
            "p99_ms": _ms(_pct(batch_lat, 0.99)),
            "orders_per_s": round(batch_rate, 1),
            "first_batch_ms": _ms(batch_lat[0]),
            "last_batch_ms": _ms(batch_lat[-1]),
        },
        "ratios": {
            "send_median_to_floor_median": round(statistics.median(send_lat) / statistics.median(floor_lat), 3),
            "send_p99_to_floor_p99": round(_pct(send_lat, 0.99) / _pct(floor_lat, 0.99), 3),
            "batch_to_single_orders_per_s": round(batch_rate / single_rate, 3),
        },
        "goals": {"send_to_floor_median_max": GOAL_LATENCY_RATIO, "batch_to_single_min": GOAL_BATCH_RATIO},
        "order_statuses": statuses,
        "worker_drained_all_orders_in_s": drained_in_s,
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    results["goals"]["met"] = {
        "latency": results["ratios"]["send_median_to_floor_median"] <= GOAL_LATENCY_RATIO,
        "batch": results["ratios"]["batch_to_single_orders_per_s"] >= GOAL_BATCH_RATIO,
    }
    out = results_dir / ("oms_rest_production.json" if SERVER_REDIS_URL else "oms_rest.json")
    out.write_text(json.dumps(results, indent=2, default=str))

    rows = [
        ("send_order (sequential)", results["send_order"]),
        ("floor GET /me", results["floor_me"]),
        (f"send_order ({THREADS} threads)", results["send_order_2_threads"]),
        (f"batch-orders x{BATCH_SIZE}", results["batch_orders"]),
    ]
    print(f"{'case':28s} {'median ms':>10s} {'p99 ms':>10s} {'orders/s':>10s}")
    for name, row in rows:
        rate = row.get("orders_per_s")
        print(f"{name:28s} {row['median_ms']:10.2f} {row['p99_ms']:10.2f} {rate if rate is not None else '-':>10}")
    r = results["ratios"]
    print(f"send/floor median {r['send_median_to_floor_median']} (goal <= {GOAL_LATENCY_RATIO}); p99 {r['send_p99_to_floor_p99']}")
    print(f"batch/single orders/s {r['batch_to_single_orders_per_s']} (goal >= {GOAL_BATCH_RATIO})")
    print(
        f"single order median, first vs last {tenth}: {results['send_order']['first_tenth_median_ms']} -> "
        f"{results['send_order']['last_tenth_median_ms']} ms; batch first vs last: "
        f"{results['batch_orders']['first_batch_ms']} -> {results['batch_orders']['last_batch_ms']} ms"
    )
    print(f"order statuses: {statuses}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
