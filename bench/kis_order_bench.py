"""KIS order path benchmark: what our stack adds to a KIS order, against the
fake KIS server answering every REST call after a fixed 20 ms.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench .venv/bin/python bench/kis_order_bench.py

Needs PostgreSQL; runs in its own database ``terminal_bench_kis`` on that
server (created and migrated when missing). Three processes on 127.0.0.1:

* the fake KIS server (``manage.py run_fake_kis --latency 0.02``), two fake
  accounts on two app keys (ours and the floor's, so neither's token rule
  touches the other), 005930 at 71,000 KRW;
* one daphne on the embedded path (no REDIS_URL: eager Celery, so the order is
  sent to KIS inside the request, after its commit, and the ack is booked
  before the answer), KIS pacing lifted (KIS allows 2 requests/s on paper; the
  figure is our cost, not KIS's rule), no broker feeds, no simulator, the
  periodic loops slowed to one run at start;
* this process, the client.

| case | what is timed |
|---|---|
| ``send_order`` | ``POST /api/v1/accounts/{id}/orders`` (a limit buy of 1 x KRX:005930 at 60,000: it rests) until its 202 answer, by which the order is at the venue and its ack (``new``, broker order id) is committed: checked on the first orders |
| ``floor`` | the same order sent straight to the fake's ``order-cash`` with ``requests`` (one keep-alive session, a token obtained beforehand): one HTTP call, the least any client must do |

``added = send_order - floor`` at p50 and p99, per round; rounds interleave
the two one order at a time (drift hits both alike); the run reports the
medians over the rounds, every round's figures, and the KIS calls our path
made per order (counted by the fake).

Prints a table and writes ``bench/results/kis_order.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.processes import ORDER_SERVER_ENV, wait_http  # noqa: E402 - after the path

BENCH_DB = os.environ.get("KIS_BENCH_DB", "terminal_bench_kis")
ROUNDS = int(os.environ.get("KIS_BENCH_ROUNDS", "5"))
ORDERS = int(os.environ.get("KIS_BENCH_ORDERS", "100"))  # per round, and as many floor calls
WARMUP = 20
LATENCY = float(os.environ.get("KIS_BENCH_LATENCY", "0.02"))
CODE = "005930"
SYMBOL = f"KRX:{CODE}"
PRICE = 71000
LIMIT = "60000"  # below the market, within the day's band: the order rests
STAMP = time.strftime("%Y%m%d%H%M%S")
APP_KEY = f"PSbench{STAMP}ours"  # fresh per run: tokens stored by earlier runs name other keys
FLOOR_APP_KEY = f"PSbench{STAMP}floor"
APP_SECRET = "bench-app-secret-" + "x" * 40
CANO, FLOOR_CANO = "50000001", "50000002"
ORDER = {"symbol": SYMBOL, "side": "buy", "order_type": "limit", "qty": "1", "price": LIMIT, "time_in_force": "day"}
SERVER_ENV = {
    **ORDER_SERVER_ENV,
    "SIMULATOR_ENABLED": "false",
    "BROKER_FEEDS_ENABLED": "false",
    "KIS_RATE_PAPER": "100000",
    "KIS_RATE_BURST": "1000",
}


def _setup() -> dict[str, Any]:
    """Migrate; a user, a trade key, a KIS paper account on a fresh app key, the instrument."""
    from bench.database import bench_django_setup

    os.environ.pop("REDIS_URL", None)  # the embedded path, here and in the server
    bench_django_setup(BENCH_DB, program="kis_order_bench")
    from accounts.models import User
    from accounts.services import api_key_create, user_create
    from brokers.services import broker_account_create
    from marketdata.instruments import instrument_ensure_for_venue

    instrument_ensure_for_venue("KRX", CODE, name="SAMSUNG ELECTRONICS")
    user = User.objects.filter(email="kis@bench.local").first() or user_create(email="kis@bench.local", password=None)
    account = broker_account_create(
        owner=user,
        kind="kis",
        label=f"bench {STAMP}",
        base_currency="KRW",
        broker_account_number=CANO,
        broker_product_code="01",
        credentials={"app_key": APP_KEY, "app_secret": APP_SECRET},
    )
    return {"key": api_key_create(user=user, name=f"kis bench {STAMP}", scope="trade").key, "account_id": account.pk}


def _start(argv: list[str], env: dict[str, str], log: Path, probe: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_http(probe, proc, log)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Fake:
    """The fake's control API, and the floor: one order straight to order-cash."""

    def __init__(self, rest_url: str) -> None:
        import requests

        from brokers.kis import protocol

        self.protocol = protocol
        self.url = rest_url
        self.session = requests.Session()
        self.headers: dict[str, str] = {}

    def control(self, op: str, **body: Any) -> dict[str, Any]:
        answer = self.session.post(f"{self.url}/_fake/{op}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def calls(self) -> dict[str, int]:
        return self.session.get(f"{self.url}/_fake/calls", timeout=10).json()["calls"]

    def login(self) -> None:
        p = self.protocol
        body = {"grant_type": "client_credentials", "appkey": FLOOR_APP_KEY, "appsecret": APP_SECRET}
        token = self.session.post(self.url + p.TOKEN_PATH, json=body, timeout=10).json()["access_token"]
        self.headers = {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {token}",
            "appkey": FLOOR_APP_KEY,
            "appsecret": APP_SECRET,
            "tr_id": p.PAPER_TR.buy,
            "custtype": "P",
        }

    def floor_order(self) -> float:
        body = {"CANO": FLOOR_CANO, "ACNT_PRDT_CD": "01", "PDNO": CODE, "ORD_DVSN": "00", "ORD_QTY": "1", "ORD_UNPR": LIMIT}
        started = time.perf_counter()
        answer = self.session.post(self.url + self.protocol.ORDER_CASH_PATH, json=body, headers=self.headers, timeout=30)
        elapsed = time.perf_counter() - started
        if answer.json().get("rt_cd") != "0":
            raise RuntimeError(f"floor order refused: {answer.text[:300]}")
        return elapsed


class Api:
    def __init__(self, base: str, key: str, account_id: int) -> None:
        import requests

        self.base = base
        self.path = f"/api/v1/accounts/{account_id}/orders"
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": key, "Content-Type": "application/json"})
        self.body = json.dumps(ORDER)

    def send_order(self) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        answer = self.session.post(self.base + self.path, data=self.body, timeout=60)
        elapsed = time.perf_counter() - started
        if answer.status_code != 202 or not answer.json().get("ok"):
            raise RuntimeError(f"send_order: {answer.status_code} {answer.text[:500]}")
        return elapsed, answer.json()

    def order(self, order_id: int) -> dict[str, Any]:
        return self.session.get(f"{self.base}/api/v1/orders/{order_id}", timeout=10).json()


def main() -> None:
    setup = _setup()
    from django.db.models import Count

    from oms.models import Order
    from tests.servers import free_port

    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    python = str(Path(sys.executable))
    rest_port, ws_port, port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    fake_proc = _start(
        [python, "manage.py", "run_fake_kis", "--port", str(rest_port), "--ws-port", str(ws_port), "--latency", str(LATENCY)],
        env,
        results_dir / "kis_order-fake.log",
        f"http://127.0.0.1:{rest_port}/_fake/calls",
    )
    server = None
    try:
        fake = Fake(f"http://127.0.0.1:{rest_port}")
        for app_key, cano in ((APP_KEY, CANO), (FLOOR_APP_KEY, FLOOR_CANO)):
            fake.control("add_account", app_key=app_key, app_secret=APP_SECRET, cano=cano, cash_krw="10000000000")
        fake.control("set_price", code=CODE, price=str(PRICE), name="SAMSUNG ELECTRONICS")
        server_env = {
            **env,
            **SERVER_ENV,
            "KIS_PAPER_REST_URL": fake.url,
            "KIS_PAPER_WS_URL": f"ws://127.0.0.1:{ws_port}",
        }
        server = _start(
            [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            server_env,
            results_dir / "kis_order-daphne.log",
            f"http://127.0.0.1:{port}/api/v1/health/live",
        )
        api = Api(f"http://127.0.0.1:{port}", setup["key"], setup["account_id"])
        fake.login()

        # Warm-up; and the answer really comes after the ack is booked: each of
        # these orders is already at the venue (new, with its broker order id).
        for _ in range(WARMUP):
            _, body = api.send_order()
            seen = api.order(body["order_id"])
            if seen["status"] != "new" or not seen.get("broker_order_id"):
                raise RuntimeError(f"the answer came before the ack was booked: {seen}")
            fake.floor_order()

        before = fake.calls()
        rounds = []
        for _ in range(ROUNDS):
            ours: list[float] = []
            floor: list[float] = []
            for _ in range(ORDERS):
                ours.append(api.send_order()[0])
                floor.append(fake.floor_order())
            rounds.append(
                {
                    "send_order_p50_ms": _ms(statistics.median(ours)),
                    "send_order_p99_ms": _ms(_pct(ours, 0.99)),
                    "floor_p50_ms": _ms(statistics.median(floor)),
                    "floor_p99_ms": _ms(_pct(floor, 0.99)),
                    "added_p50_ms": _ms(statistics.median(ours) - statistics.median(floor)),
                    "added_p99_ms": _ms(_pct(ours, 0.99) - _pct(floor, 0.99)),
                }
            )
        after = fake.calls()
        floor_orders = ROUNDS * ORDERS
        ours_calls = {path: n - before.get(path, 0) for path, n in after.items() if n - before.get(path, 0)}
        # The floor's own calls went to order-cash too: take them out.
        ours_calls[fake.protocol.ORDER_CASH_PATH] = ours_calls.get(fake.protocol.ORDER_CASH_PATH, 0) - floor_orders
        statuses = dict(Order.objects.filter(account_id=setup["account_id"]).values_list("status").annotate(n=Count("id")).order_by())
    finally:
        if server is not None:
            _stop(server)
        _stop(fake_proc)

    def median_of(name: str) -> float:
        return round(statistics.median(r[name] for r in rounds), 3)

    results = {
        "benchmark": "kis_order",
        "path": "embedded: daphne, eager Celery (the order is sent to KIS inside the request, after commit), PostgreSQL, KIS pacing lifted",
        "fake_latency_ms": _ms(LATENCY),
        "rounds": ROUNDS,
        "orders_per_round": ORDERS,
        "median_over_rounds": {
            name: median_of(name)
            for name in ("send_order_p50_ms", "send_order_p99_ms", "floor_p50_ms", "floor_p99_ms", "added_p50_ms", "added_p99_ms")
        },
        "per_round": rounds,
        "kis_calls_per_order": {path: round(n / floor_orders, 3) for path, n in sorted(ours_calls.items()) if n},
        "order_statuses": statuses,
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    out = results_dir / "kis_order.json"
    out.write_text(json.dumps(results, indent=2, default=str))

    m = results["median_over_rounds"]
    print(f"\nKIS order path, fake latency {results['fake_latency_ms']} ms, {ROUNDS} rounds x {ORDERS} orders (medians over rounds)")
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'send_order (REST)':24}{m['send_order_p50_ms']:>10}{m['send_order_p99_ms']:>10}")
    print(f"{'floor (order-cash)':24}{m['floor_p50_ms']:>10}{m['floor_p99_ms']:>10}")
    print(f"{'added by us':24}{m['added_p50_ms']:>10}{m['added_p99_ms']:>10}")
    print(f"KIS calls per order: {results['kis_calls_per_order']}")
    print(f"orders: {statuses}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
