"""Orders end to end: from ``POST`` to the paper venue holding the order and
its fill booked in the OMS (the deal and the position), for marketable
orders, with the default risk checks on (only the orders-per-second limit is
lifted: a batch of 100 is over its default of 50).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/order_e2e_bench.py [--rounds 3] [--modes production,eager]

Needs PostgreSQL and, for the production mode, Redis (its own database: the
run purges this server's Celery queue at the end). Whatever database
DATABASE_URL names, the run uses ``ORDER_E2E_BENCH_DB`` (default
``terminal_bench_e2e``) on that server, created and migrated when missing.

Modes, each with fresh paper accounts:

* ``production``: uvicorn (the Procfile's ``web``) with the connection pool,
  and one Celery worker process (``--pool=solo``) that sends the orders to
  the paper venue; this process keeps the instrument's quote fresh in Redis.
* ``eager``: one daphne process on the embedded path (no REDIS_URL): the send
  runs in the request after commit; its own simulator quotes the instrument.

Phases (medians over ``--rounds`` rounds): ``single`` (orders one after the
other: latency from the POST to the deal in the database, and orders/s),
``4 clients`` (4 threads, one account each: orders/s), ``batch 100``
(``POST /batch-orders`` of 100, then wait for the 100 deals: latency and
orders/s). The end is seen by polling the database every millisecond from
this process. Prints a table with the ratios and writes
``bench/results/order_e2e.json`` (with the query counts per path before and
after the issue-14 work, from ``tests/test_oms_query_budget.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.processes import ORDER_SERVER_ENV, wait_http  # noqa: E402 - after the path

BENCH_DB = os.environ.get("ORDER_E2E_BENCH_DB", "terminal_bench_e2e")
SYMBOL = "BENCH:E2E"
SINGLE = 30  # sequential orders per round
CONCURRENT = 4  # clients
PER_CLIENT = 15  # orders per client per round
BATCHES = 2  # batches of BATCH per round
BATCH = 100
POLL = 0.001
TIMEOUT = 120.0

# Queries per path (SQLite figures of tests/test_oms_query_budget.py, each
# transaction counting its SAVEPOINT and RELEASE), before (5e16ef1) and after.
QUERIES = {
    "POST one order": {"before": 16, "after": 15},
    "POST batch of 2 / 20 / 40": {"before": "15 / 87 / 167", "after": "10 / 10 / 10"},
    "worker: send 1 resting order": {"before": 24, "after": 19},
    "worker: send a batch of N resting orders": {"before": "24 per order", "after": "19 (any N)"},
    "worker: send 1 marketable order + book its fill": {"before": "55, then 43", "after": 39},
    "the same on real commits (BEGIN/COMMIT counted)": {"before": 38, "after": 29},
    "worker: send N marketable orders + book their fills": {"before": "about 19 + 14 per order, then 40", "after": "36 (any N)"},
    "paper placement, 0 vs 200 resting on its symbol": {
        "before": "same queries, every resting row read",
        "after": "19 = 19, none read or summed",
    },
}

# RUN_LOOPS_IN_PROCESS is set per mode below. The one limit lifted: a batch of 100 is over 50/s.
COMMON_ENV = {**ORDER_SERVER_ENV, "PAPER_STARTING_CASH": "1000000000000"}


def _free_port() -> int:
    import socket

    if os.environ.get("BENCH_PORT"):  # a port of one's own on a shared machine
        return int(os.environ["BENCH_PORT"])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(mode: str, port: int, redis_url: str, logs: Path) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(COMMON_ENV)
    bin_dir = Path(sys.executable).parent
    procs = []
    if mode == "production":
        env.update(REDIS_URL=redis_url, RUN_LOOPS_IN_PROCESS="false", SIMULATOR_ENABLED="false", CELERY_TASK_ALWAYS_EAGER="false")
        web = [str(bin_dir / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
        web += ["--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log"]
        worker = [
            str(bin_dir / "celery"),
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "-l",
            os.environ.get("ORDER_E2E_WORKER_LOG", "WARNING"),
        ]
        # ORDER_E2E_WORKER_DB_POOL=false: the worker on one persistent connection instead of the pool.
        worker_env = {**env, "DB_POOL": os.environ.get("ORDER_E2E_WORKER_DB_POOL", "true")}
        for name, cmd, cmd_env in (("web", web, env), ("worker", worker, worker_env)):
            out = open(logs / f"e2e-{mode}-{name}.log", "wb")  # noqa: SIM115 (kept open for the process)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=cmd_env, stdout=out, stderr=subprocess.STDOUT))
    else:
        env.update(RUN_LOOPS_IN_PROCESS="true", SIMULATOR_ENABLED="true", SIMULATOR_TICK_INTERVAL="1")
        out = open(logs / f"e2e-{mode}-web.log", "wb")  # noqa: SIM115
        cmd = [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
    wait_http(f"http://127.0.0.1:{port}/api/v1/health/live", procs[0], logs / f"e2e-{mode}-web.log")
    return procs


class QuoteKeeper(threading.Thread):
    """Production mode: a fresh quote of the instrument in Redis every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        from decimal import Decimal

        from marketdata.quotes import quote_store
        from marketdata.types import Quote

        while not self.stop.is_set():
            quote_store(
                Quote(
                    symbol=SYMBOL,
                    time=time.time(),
                    last=Decimal(100),
                    bid=Decimal("99.99"),
                    ask=Decimal("100.01"),
                    bid_size=Decimal(10**9),
                    ask_size=Decimal(10**9),
                )
            )
            self.stop.wait(0.5)


def _order(cid: str) -> dict:
    # Marketable: a buy limit far above the ask fills at once at the ask.
    return {"symbol": SYMBOL, "side": "buy", "order_type": "limit", "qty": "1", "price": "120.00", "client_order_id": cid}


def _booked(account_id: int, cids: list[str]) -> int:
    from oms.models import Deal

    return Deal.objects.filter(account_id=account_id, order__client_order_id__in=cids, position__isnull=False).count()


def _wait_booked(account_id: int, cids: list[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while _booked(account_id, cids) < len(cids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(cids) - _booked(account_id, cids)} of {len(cids)} orders not booked in {TIMEOUT} s")
        time.sleep(POLL)


def _check_venue(account_id: int, cids: list[str]) -> None:
    from brokers.paper.models import PaperOrder

    held = PaperOrder.objects.filter(account_id=account_id, client_order_id__in=cids, status="filled").count()
    assert held == len(cids), (held, len(cids))


class Client:
    def __init__(self, base: str, key: str) -> None:
        import requests

        self.base = base
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": key})

    def get(self, path: str) -> None:
        response = self.session.get(self.base + path, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")

    def post(self, path: str, body: object) -> object:
        response = self.session.post(self.base + path, json=body, timeout=60)
        if response.status_code != 202:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
        return response.json()


def _accounts(user, label: str, n: int) -> list[int]:
    from brokers.services import broker_account_create

    return [broker_account_create(owner=user, kind="paper", label=f"e2e {label} {i} {uuid.uuid4().hex[:6]}").pk for i in range(n)]


def _round(client_for, user, mode: str) -> dict:
    from django.db import close_old_connections

    figures: dict = {}
    # single, sequential
    [account] = _accounts(user, f"{mode} single", 1)
    client = client_for()
    latencies, posts, me = [], [], []
    wall = 0.0
    for _ in range(SINGLE):
        cid = uuid.uuid4().hex[:20]
        t0 = time.perf_counter()
        client.post(f"/api/v1/accounts/{account}/orders", _order(cid))
        posts.append(time.perf_counter() - t0)  # the POST until its 202; the rest is the queue and the worker
        _wait_booked(account, [cid])
        latencies.append(time.perf_counter() - t0)
        wall += latencies[-1]
        t0 = time.perf_counter()  # GET /me interleaved: the request floor of the goals
        client.get("/api/v1/me")
        me.append(time.perf_counter() - t0)
    figures["single"] = {
        "median_ms": statistics.median(latencies) * 1000,
        "orders_per_s": SINGLE / wall,
        "me_median_ms": statistics.median(me) * 1000,
        "post_median_ms": statistics.median(posts) * 1000,
    }
    # 4 clients, one account each
    accounts = _accounts(user, f"{mode} concurrent", CONCURRENT)
    errors: list[BaseException] = []

    def run(account_id: int) -> None:
        c = client_for()
        try:
            for _ in range(PER_CLIENT):
                cid = uuid.uuid4().hex[:20]
                c.post(f"/api/v1/accounts/{account_id}/orders", _order(cid))
                _wait_booked(account_id, [cid])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(a,)) for a in accounts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    figures["4 clients"] = {"orders_per_s": CONCURRENT * PER_CLIENT / (time.perf_counter() - started)}
    # batches of 100
    [account] = _accounts(user, f"{mode} batch", 1)
    batch_latencies = []
    started = time.perf_counter()
    for _ in range(BATCHES):
        cids = [uuid.uuid4().hex[:20] for _ in range(BATCH)]
        t0 = time.perf_counter()
        client.post(f"/api/v1/accounts/{account}/batch-orders", {"orders": [_order(c) for c in cids]})
        _wait_booked(account, cids)
        batch_latencies.append(time.perf_counter() - t0)
        _check_venue(account, cids)
    wall = time.perf_counter() - started
    figures["batch 100"] = {"median_ms": statistics.median(batch_latencies) * 1000, "orders_per_s": BATCHES * BATCH / wall}
    return figures


def _paper_placement(user, resting: int = 2000, samples: int = 40) -> dict:
    """In process: one paper placement (``PaperBroker.place_order``, a resting
    limit buy) with none and with ``resting`` orders resting on its symbol."""
    from decimal import Decimal

    from brokers.base import OrderRequest
    from brokers.paper.adapter import PaperBroker
    from brokers.services import broker_account_create
    from marketdata.quotes import quote_store
    from marketdata.types import Quote

    def request(price: str = "50.00") -> OrderRequest:
        cid = uuid.uuid4().hex[:20]
        return OrderRequest(client_order_id=cid, symbol=SYMBOL, side="buy", order_type="limit", qty=Decimal(1), price=Decimal(price))

    def timed(broker: PaperBroker) -> float:
        quote_store(Quote(symbol=SYMBOL, time=time.time(), last=Decimal(100), bid=Decimal("99.99"), ask=Decimal("100.01")))
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            broker.place_order(request())
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    figures = {}
    for n in (0, resting):
        account = broker_account_create(owner=user, kind="paper", label=f"e2e placement {n} {uuid.uuid4().hex[:6]}")
        broker = PaperBroker(account)
        for start in range(0, n, 500):
            broker.place_orders([request("40.00") for _ in range(min(500, n - start))])
        timed(broker)  # warm
        figures[f"{n} resting ms"] = round(timed(broker), 3)
    figures["ratio"] = round(figures[f"{resting} resting ms"] / figures["0 resting ms"], 3)
    return figures


def _median_of(rounds: list[dict], phase: str, key: str) -> float:
    return round(statistics.median(r[phase][key] for r in rounds), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="production,eager")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    redis_url = os.environ.get("REDIS_URL", "")
    if "production" in modes and not redis_url:
        sys.exit("the production mode needs REDIS_URL (a Redis database of its own)")
    if "production" in modes:
        import redis

        redis.Redis.from_url(redis_url).delete("celery")  # a failed run's leftovers
    from bench.database import bench_django_setup

    bench_django_setup(BENCH_DB, program="order_e2e_bench")
    from accounts.models import User
    from accounts.services import api_key_create, user_create
    from marketdata.services import instrument_upsert

    instrument_upsert(
        symbol=SYMBOL, description="e2e bench", type="stock", session="24x7", sim_params={"price": 100.0, "volatility": 0.0001}, active=True
    )
    user = User.objects.filter(email="e2e@bench.local").first() or user_create(email="e2e@bench.local", password=None)
    key = api_key_create(user=user, name=f"e2e {uuid.uuid4().hex[:6]}", scope="trade").key
    logs = ROOT / "var"
    logs.mkdir(exist_ok=True)
    results: dict = {"modes": {}, "queries": QUERIES, "paper_placement": _paper_placement(user)}
    for mode in modes:
        port = _free_port()
        keeper = None
        procs = _start(mode, port, redis_url, logs)
        try:
            if mode == "production":
                keeper = QuoteKeeper()
                keeper.start()
            time.sleep(2.0)  # a first quote (eager: the simulator's first tick)
            base = f"http://127.0.0.1:{port}"
            _round(lambda base=base: Client(base, key), user, mode)  # warm-up
            rounds = [_round(lambda base=base: Client(base, key), user, mode) for _ in range(args.rounds)]
        finally:
            if keeper is not None:
                keeper.stop.set()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        summary = {
            "single_median_ms": _median_of(rounds, "single", "median_ms"),
            "single_orders_per_s": _median_of(rounds, "single", "orders_per_s"),
            "me_median_ms": _median_of(rounds, "single", "me_median_ms"),
            "post_median_ms": _median_of(rounds, "single", "post_median_ms"),
            "4_clients_orders_per_s": _median_of(rounds, "4 clients", "orders_per_s"),
            "batch_100_median_ms": _median_of(rounds, "batch 100", "median_ms"),
            "batch_100_orders_per_s": _median_of(rounds, "batch 100", "orders_per_s"),
        }
        summary["single_vs_me"] = round(summary["single_median_ms"] / summary["me_median_ms"], 2)
        summary["batch_vs_single_throughput"] = round(summary["batch_100_orders_per_s"] / summary["single_orders_per_s"], 2)
        summary["4_clients_vs_single_throughput"] = round(summary["4_clients_orders_per_s"] / summary["single_orders_per_s"], 2)
        results["modes"][mode] = {"summary": summary, "rounds": rounds}
    if "production" in modes:
        import redis

        # Nothing should be left; a failed run's leftovers must not reach a later one.
        redis.Redis.from_url(redis_url).delete("celery")
    print(f"\norders end to end (marketable, POST -> venue fill -> deal and position booked), {args.rounds} rounds, medians")
    print(
        f"{'mode':<12}{'/me ms':>8}{'POST ms':>9}{'single ms':>11}{'single//me':>11}{'single o/s':>12}{'4 clients o/s':>15}"
        f"{'batch100 ms':>13}{'batch o/s':>11}{'batch/single':>14}"
    )
    for mode, data in results["modes"].items():
        s = data["summary"]
        print(
            f"{mode:<12}{s['me_median_ms']:>8.2f}{s['post_median_ms']:>9.2f}{s['single_median_ms']:>11.2f}{s['single_vs_me']:>11.2f}"
            f"{s['single_orders_per_s']:>12.1f}{s['4_clients_orders_per_s']:>15.1f}"
            f"{s['batch_100_median_ms']:>13.1f}{s['batch_100_orders_per_s']:>11.1f}{s['batch_vs_single_throughput']:>14.2f}"
        )
    p = results["paper_placement"]
    print(
        f"\npaper placement in process: {p['0 resting ms']:.2f} ms with 0 resting, {p['2000 resting ms']:.2f} ms with 2,000 (x{p['ratio']})"
    )
    print("\nqueries per path (tests/test_oms_query_budget.py), before -> after")
    for name, q in QUERIES.items():
        print(f"  {name:<52} {q['before']!s:>36} -> {q['after']}")
    results["environment"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "rounds": args.rounds,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "order_e2e.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten {out / 'order_e2e.json'}")


if __name__ == "__main__":
    main()
