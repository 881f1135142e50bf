"""CCXT order path benchmark: what our stack adds to an order sent to a crypto
exchange through ccxt, measured end to end (until the order is AT THE
EXCHANGE), beside the paper path, in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench .venv/bin/python bench/ccxt_bench.py

Needs PostgreSQL; runs in its own database ``terminal_bench_ccxt`` on that
server (created and migrated when missing). Three processes on 127.0.0.1:

* the fake exchange (``brokers.ccxt.fake``, answering as Binance spot does,
  every request after a fixed 20 ms), in a child process that records the
  moment each order is booked (``time.perf_counter``: CLOCK_MONOTONIC, one
  clock for every process) and tells this process;
* one daphne on the embedded path (no REDIS_URL: eager Celery, so the order is
  sent inside the request after its commit), the risk limits, the throttles
  and ccxt's own rate limiter lifted (the account's ``rateLimit`` option: the
  figure is our cost, not Binance's rule), no broker feeds, the simulator
  ticking once at start (the paper instrument's quote);
* this process, the client, and the floor.

| case | what is timed |
|---|---|
| ``ccxt`` | ``POST /api/v1/accounts/{id}/orders`` (a limit buy of 0.001 BINANCE:BTC/USDT at 40,000: it rests) until the fake has booked it |
| ``floor`` | the same order through ccxt itself in this process (``binance.create_order``, markets loaded beforehand, its rate limiter off) until the fake has booked it: the least a ccxt client must do |
| ``paper`` | ``POST /api/v1/accounts/{id}/orders`` on a paper account (a limit buy far below the market) until its 202: the paper venue books inside the request |
| ``*_batch`` | 100 orders: ``POST /api/v1/accounts/{id}/batch-orders`` until the fake has booked the 100th (paper: its 202); the floor sends its 100 one after another |

``added = ccxt - floor`` at p50 and p99 per round; orders/s single = orders
of the phase / its wall time (one order at a time), batch = 100 / the batch's
time. Rounds interleave the cases one order at a time (drift hits all alike);
the run reports the medians over the rounds and every round's figures, and
the exchange requests our path made per order (counted by the fake).

Prints a table and writes ``bench/results/ccxt_order.json``.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.processes import ORDER_SERVER_ENV, wait_http  # noqa: E402 - after the path

# Without the CCXT adapter (brokers.ccxt.adapter) only the floor and the paper path run.
HAVE_ADAPTER = importlib.util.find_spec("brokers.ccxt.adapter") is not None
BENCH_DB = os.environ.get("CCXT_BENCH_DB", "terminal_bench_ccxt")
ROUNDS = int(os.environ.get("CCXT_BENCH_ROUNDS", "5"))
ORDERS = int(os.environ.get("CCXT_BENCH_ORDERS", "50"))  # single orders per round and case
BATCH = 100
WARMUP = 10
LATENCY = float(os.environ.get("CCXT_BENCH_LATENCY", "0.02"))
# Ports (daphne, the fake exchange): CCXT_BENCH_PORT and the next one when set, else free ones.
PORT = int(os.environ.get("CCXT_BENCH_PORT", "0"))
STAMP = time.strftime("%Y%m%d%H%M%S")
API_KEY, FLOOR_KEY = f"bench{STAMP}ours", f"bench{STAMP}floor"
SECRET = "ccxt-bench-secret-" + "x" * 40
MARKET_ID, CCXT_SYMBOL = "BTCUSDT", "BTC/USDT"
SYMBOL = f"BINANCE:{CCXT_SYMBOL}"
PAPER_SYMBOL = "BENCH:CCXTP:" + STAMP
CCXT_ORDER = {"symbol": SYMBOL, "side": "buy", "order_type": "limit", "qty": "0.001", "price": "40000", "time_in_force": "gtc"}
PAPER_ORDER = {"symbol": PAPER_SYMBOL, "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00", "time_in_force": "gtc"}
SERVER_ENV = {
    **ORDER_SERVER_ENV,
    "SIMULATOR_ENABLED": "true",
    "SIMULATOR_TICK_INTERVAL": "3600",
    "BROKER_FEEDS_ENABLED": "false",
    "RISK_CHECK_BUYING_POWER": "false",
    "RISK_MAX_ORDER_QTY": "1000000000",
    "RISK_MAX_ORDER_NOTIONAL": "0",
}


# --- the fake exchange, in its own process --------------------------------------------------------


def _fake_main(conn: Any, latency: float, keys: tuple[str, ...]) -> None:
    """The child: a fake Binance spot recording when each order is booked, per API key."""
    from brokers.ccxt.fake import FakeCcxtExchange

    fake = FakeCcxtExchange("spot", latency=latency, port=PORT + 1 if PORT else 0).start()
    # The keys come from the parent: this process's import of the module stamps its own.
    for key in keys:
        fake.add_account(key, SECRET, {"USDT": "1000000000", "BTC": "1000"})
    fake.set_price(MARKET_ID, "50000")
    booked: dict[str, list[float]] = {key: [] for key in keys}
    changed = threading.Condition()
    place = fake.engine.place

    def recording_place(account: Any, **fields: Any) -> Any:
        order = place(account, **fields)
        with changed:
            booked.setdefault(account.api_key, []).append(time.perf_counter())
            changed.notify_all()
        return order

    fake.engine.place = recording_place  # type: ignore[method-assign]
    conn.send({"url": fake.url, "options": fake.ccxt_options()})
    while True:
        request = conn.recv()
        if request[0] == "stop":
            fake.stop()
            conn.send("stopped")
            return
        if request[0] == "count":
            with changed:
                conn.send(len(booked[request[1]]))
        elif request[0] == "wait":  # ("wait", key, first, last, timeout): booking times [first, last)
            _, key, first, last, timeout = request
            deadline = time.monotonic() + timeout
            with changed:
                while len(booked[key]) < last and (left := deadline - time.monotonic()) > 0:
                    changed.wait(left)
                conn.send(booked[key][first:last] if len(booked[key]) >= last else None)
        elif request[0] == "calls":
            conn.send(dict(fake.calls))


class FakeProcess:
    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fake_main, args=(child, latency, (API_KEY, FLOOR_KEY)), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the fake exchange did not start")
        started = self.conn.recv()
        self.url, self.options = started["url"], started["options"]
        self.lock = threading.Lock()

    def ask(self, *request: Any) -> Any:
        with self.lock:
            self.conn.send(request)
            return self.conn.recv()

    def count(self, key: str) -> int:
        return int(self.ask("count", key))

    def booked(self, key: str, first: int, last: int, timeout: float = 60.0) -> list[float]:
        times = self.ask("wait", key, first, last, timeout)
        if times is None:
            raise RuntimeError(f"the fake did not book orders {first}..{last - 1} of {key} within {timeout} s")
        return list(times)

    def stop(self) -> None:
        try:
            self.ask("stop")
        finally:
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()


# --- set-up ----------------------------------------------------------------------------------------


def _setup(fake: FakeProcess) -> dict[str, Any]:
    """Migrate; a user, a trade key, a CCXT testnet account on the fake (ccxt's rate limiter off),
    its BTC/USDT market imported, a paper account and its instrument."""
    from bench.database import bench_django_setup

    os.environ.pop("REDIS_URL", None)  # the embedded path, here and in the server
    bench_django_setup(BENCH_DB, program="ccxt_bench")
    from accounts.models import User
    from accounts.services import api_key_create, user_create
    from brokers.services import broker_account_create
    from marketdata.models import Instrument
    from marketdata.services import instrument_upsert

    user = User.objects.filter(email="ccxt@bench.local").first() or user_create(email="ccxt@bench.local", password=None)
    ccxt_id = _ccxt_account(user, fake) if HAVE_ADAPTER else 0
    Instrument.objects.filter(symbol__startswith="BENCH:CCXTP").exclude(symbol=PAPER_SYMBOL).update(active=False)
    instrument_upsert(
        symbol=PAPER_SYMBOL,
        description="CCXT bench (paper)",
        type="stock",
        session="24x7",
        sim_params={"price": 100.0, "volatility": 0.2, "volume_per_second": 10},
        active=True,
    )
    paper = broker_account_create(owner=user, kind="paper", label=f"bench paper {STAMP}")
    key = api_key_create(user=user, name=f"ccxt bench {STAMP}", scope="trade").key
    return {"key": key, "ccxt": ccxt_id, "paper": paper.pk}


def _ccxt_account(user: Any, fake: FakeProcess) -> int:
    from django.core.management import call_command

    from brokers.services import broker_account_create

    account = broker_account_create(
        owner=user,
        kind="ccxt",
        label=f"bench {STAMP}",
        environment="paper",
        base_currency="USDT",
        exchange_id="binance",
        credentials={"api_key": API_KEY, "secret": SECRET},
    )
    account.broker_options = {**fake.options, "rateLimit": 1}
    account.save(update_fields=["broker_options"])
    call_command("import_ccxt_markets", str(account.pk), "--symbols", CCXT_SYMBOL)
    return int(account.pk)


def _floor_exchange(fake: FakeProcess) -> Any:
    import ccxt

    exchange = ccxt.binance({"apiKey": FLOOR_KEY, "secret": SECRET, "enableRateLimit": False, "timeout": 30000})
    exchange.set_sandbox_mode(True)
    exchange.urls["api"] = {**exchange.urls["api"], **fake.options["urls"]["api"]}
    exchange.load_markets()
    return exchange


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Api:
    def __init__(self, base: str, key: str) -> None:
        import requests

        self.base = base
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": key, "Content-Type": "application/json"})

    def post(self, path: str, body: Any) -> dict[str, Any] | list[dict[str, Any]]:
        answer = self.session.post(self.base + path, data=json.dumps(body), timeout=120)
        if answer.status_code != 202:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def get(self, path: str) -> Any:
        return self.session.get(self.base + path, timeout=30).json()


def _order(template: dict[str, str]) -> dict[str, str]:
    return {**template, "client_order_id": "b" + uuid.uuid4().hex[:20]}


class Bench:
    def __init__(self, api: Api, fake: FakeProcess, floor: Any, accounts: dict[str, int]) -> None:
        self.api, self.fake, self.floor, self.accounts = api, fake, floor, accounts

    def ccxt(self) -> float:
        """One order through our REST API until the fake booked it."""
        n = self.fake.count(API_KEY)
        started = time.perf_counter()
        answer = self.api.post(f"/api/v1/accounts/{self.accounts['ccxt']}/orders", _order(CCXT_ORDER))
        if not answer.get("ok"):  # type: ignore[union-attr]
            raise RuntimeError(f"ccxt order refused: {answer}")
        return self.fake.booked(API_KEY, n, n + 1)[0] - started

    def floor_order(self) -> float:
        n = self.fake.count(FLOOR_KEY)
        started = time.perf_counter()
        self.floor.create_order(CCXT_SYMBOL, "limit", "buy", 0.001, 40000, {"newClientOrderId": "f" + uuid.uuid4().hex[:20]})
        return self.fake.booked(FLOOR_KEY, n, n + 1)[0] - started

    def paper(self) -> float:
        started = time.perf_counter()
        answer = self.api.post(f"/api/v1/accounts/{self.accounts['paper']}/orders", _order(PAPER_ORDER))
        elapsed = time.perf_counter() - started
        if not answer.get("ok"):  # type: ignore[union-attr]
            raise RuntimeError(f"paper order refused: {answer}")
        return elapsed

    def ccxt_batch(self) -> float:
        n = self.fake.count(API_KEY)
        started = time.perf_counter()
        results = self.api.post(
            f"/api/v1/accounts/{self.accounts['ccxt']}/batch-orders", {"orders": [_order(CCXT_ORDER) for _ in range(BATCH)]}
        )
        if not all(r.get("ok") for r in results):  # type: ignore[union-attr]
            raise RuntimeError(f"ccxt batch refused: {str(results)[:500]}")
        return max(self.fake.booked(API_KEY, n, n + BATCH, timeout=120)) - started

    def floor_batch(self) -> float:
        started = time.perf_counter()
        for _ in range(BATCH):
            self.floor.create_order(CCXT_SYMBOL, "limit", "buy", 0.001, 40000, {"newClientOrderId": "f" + uuid.uuid4().hex[:20]})
        n = self.fake.count(FLOOR_KEY)
        return max(self.fake.booked(FLOOR_KEY, n - BATCH, n)) - started

    def paper_batch(self) -> float:
        started = time.perf_counter()
        results = self.api.post(
            f"/api/v1/accounts/{self.accounts['paper']}/batch-orders", {"orders": [_order(PAPER_ORDER) for _ in range(BATCH)]}
        )
        elapsed = time.perf_counter() - started
        if not all(r.get("ok") for r in results):  # type: ignore[union-attr]
            raise RuntimeError(f"paper batch refused: {str(results)[:500]}")
        return elapsed


def _wait_for_quote(api: Api) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/quotes?symbols={PAPER_SYMBOL}")
        rows = body.get("results", body) if isinstance(body, dict) else body
        if any(row.get("symbol") == PAPER_SYMBOL and row.get("last") for row in rows or []):
            return
        time.sleep(0.2)
    print(f"no quote for {PAPER_SYMBOL} yet: its limit orders rest without one")


def main() -> None:
    from tests.servers import free_port

    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    fake = FakeProcess(LATENCY)
    server = None
    try:
        setup = _setup(fake)
        from django.db.models import Count

        from oms.models import Order

        port = PORT or free_port()
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        log = results_dir / "ccxt_order-daphne.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                cwd=ROOT,
                env={**env, **SERVER_ENV},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_http(f"http://127.0.0.1:{port}/api/v1/health/live", server, log, timeout=90)
        api = Api(f"http://127.0.0.1:{port}", setup["key"])
        _wait_for_quote(api)
        bench = Bench(api, fake, _floor_exchange(fake), {"ccxt": setup["ccxt"], "paper": setup["paper"]})

        # Warm-up; and the REST answer of a ccxt order comes after its ack is booked (eager path).
        cases = [("ccxt", bench.ccxt)] if HAVE_ADAPTER else []
        cases += [("floor", bench.floor_order), ("paper", bench.paper)]
        batches = {"ccxt": bench.ccxt_batch, "floor": bench.floor_batch, "paper": bench.paper_batch}
        for _ in range(WARMUP):
            for _name, run in cases:
                run()
        if HAVE_ADAPTER:
            last = Order.objects.filter(account_id=setup["ccxt"]).order_by("-id").first()
            if last is None or last.status != "new" or not last.broker_order_id:
                raise RuntimeError(f"the ccxt order is not acknowledged by the exchange: {last and (last.status, last.broker_order_id)}")

        before = fake.ask("calls")
        ours_orders = 0
        rounds = []
        for _ in range(ROUNDS):
            samples: dict[str, list[float]] = {name: [] for name, _ in cases}
            walls = dict.fromkeys(samples, 0.0)
            for _ in range(ORDERS):
                for name, run in cases:
                    t0 = time.perf_counter()
                    samples[name].append(run())
                    walls[name] += time.perf_counter() - t0
            batch = {name: batches[name]() for name in samples}
            ours_orders += ORDERS + BATCH
            row: dict[str, float] = {}
            for name, values in samples.items():
                row[f"{name}_p50_ms"] = _ms(statistics.median(values))
                row[f"{name}_p99_ms"] = _ms(_pct(values, 0.99))
                row[f"{name}_orders_per_s"] = round(ORDERS / walls[name], 1)
                row[f"{name}_batch_ms"] = _ms(batch[name])
                row[f"{name}_batch_orders_per_s"] = round(BATCH / batch[name], 1)
            if HAVE_ADAPTER:
                row["added_p50_ms"] = _ms(statistics.median(samples["ccxt"]) - statistics.median(samples["floor"]))
                row["added_p99_ms"] = _ms(_pct(samples["ccxt"], 0.99) - _pct(samples["floor"], 0.99))
            rounds.append(row)
        after = fake.ask("calls")
        floor_orders = ROUNDS * (ORDERS + BATCH)
        calls = {path: n - before.get(path, 0) for path, n in after.items() if n - before.get(path, 0)}
        calls["POST /api/v3/order"] = calls.get("POST /api/v3/order", 0) - floor_orders  # the floor's own
        statuses = dict(
            Order.objects.filter(account_id=setup["ccxt"] or setup["paper"]).values_list("status").annotate(n=Count("id")).order_by()
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        fake.stop()

    names = sorted(rounds[0])
    medians = {name: round(statistics.median(r[name] for r in rounds), 3) for name in names}
    results = {
        "benchmark": "ccxt_order",
        "ccxt_adapter": HAVE_ADAPTER,
        "path": "embedded: daphne, eager Celery (the order is sent inside the request, after commit), PostgreSQL; "
        "ccxt's rate limiter lifted; timed until the fake exchange booked the order (paper: until the 202)",
        "fake_latency_ms": _ms(LATENCY),
        "rounds": ROUNDS,
        "orders_per_round": ORDERS,
        "batch_size": BATCH,
        "median_over_rounds": medians,
        "per_round": rounds,
        "exchange_requests_per_order": {path: round(n / ours_orders, 3) for path, n in sorted(calls.items()) if n > 0},
        "order_statuses": statuses,
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    out = results_dir / "ccxt_order.json"
    out.write_text(json.dumps(results, indent=2, default=str))

    m = medians
    print(
        f"\nCCXT order path, fake latency {results['fake_latency_ms']} ms, {ROUNDS} rounds x {ORDERS} orders + a batch of {BATCH} (medians over rounds)"
    )
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}{'orders/s':>10}{'batch ms':>10}{'batch o/s':>11}")
    for name, label in (("ccxt", "ccxt (REST -> at the fake)"), ("floor", "floor (ccxt direct)"), ("paper", "paper (REST -> 202)")):
        if f"{name}_p50_ms" not in m:
            print(f"{label:28}  (not run: the CCXT adapter is not installed)")
            continue
        print(
            f"{label:28}{m[f'{name}_p50_ms']:>10}{m[f'{name}_p99_ms']:>10}{m[f'{name}_orders_per_s']:>10}"
            f"{m[f'{name}_batch_ms']:>10}{m[f'{name}_batch_orders_per_s']:>11}"
        )
    if HAVE_ADAPTER:
        print(f"{'added by us (ccxt - floor)':28}{m['added_p50_ms']:>10}{m['added_p99_ms']:>10}")
    print(f"exchange requests per order: {results['exchange_requests_per_order']}")
    print(f"orders: {statuses}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
