"""Load and soak on 127.0.0.1 (issue 8, the proving ground; not CI).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench .venv/bin/python bench/load_bench.py \\
        [--levels 10,50,150] [--rounds 3] [--orders 10] [--soak-seconds 60 --soak-clients 100] [--long]

Everything runs on its own: a private redis-server on a free port, the
benchmark's own PostgreSQL database (``LOAD_BENCH_DB``, default
``terminal_bench_load``, created and migrated), uvicorn as the Procfile's
``web`` line runs it, one Celery worker, and for the soak Celery beat (the
database scheduler's periodic tasks) and the marketdata process
(``run_loops``: the simulator at full speed).

* load: at each level, that many clients (asyncio, one paper account each)
  send ``--orders`` marketable orders one after the other; an order counts
  when its fill is booked (the deal in the database, the order filled at the
  paper venue). Per level, medians over ``--rounds``: orders/s end to end,
  POST latency p50/p99, and the answers by status (back-pressure is 429/503,
  never 500: the run fails on a 500).
* soak: ``--soak-clients`` WebSocket clients subscribed to the simulator's
  quotes for ``--soak-seconds`` (``--long``: 500 clients for 30 minutes),
  connecting in waves of 10 over ``--ramp-seconds``,
  reporting every process's RSS (web, worker, beat, marketdata, redis) every
  ``--rss-interval`` seconds, with a verdict per process: flat when its
  growth over the second half (least squares) is at most
  ``--flat-mb-per-min``; updates received,
  updates out of order (quotes are conflated: skipped seqs are by design),
  error frames by code and early closes, and the p99 of
  an update's age on arrival.

Writes ``bench/results/load.json`` and prints it. Stops by itself.
``--tracemalloc DIR`` runs the Python processes under ``bench/tracemalloc_run.py``
(slower: a diagnosis, not a figure), each writing where its memory grew.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.database import bench_database_url, bench_django_setup  # noqa: E402

SYMBOL = "BENCH:LOAD"
SOAK_SYMBOLS = ("AAPL", "MSFT", "BTC/USDT")  # the simulator's; BTC/USDT trades around the clock
# A round fails when no order of it was booked for this long (a stall, not a
# slow machine: 1,500 orders at a few per second take longer than any fixed deadline).
BOOK_STALL_TIMEOUT = 120.0


def _free_port() -> int:
    """A free port on 127.0.0.1: any, or one of ``TEST_PORTS`` (``24000-24999``) when set."""
    import random
    import socket

    low, _, high = os.environ.get("TEST_PORTS", "").partition("-")
    for candidate in random.sample(range(int(low), int(high) + 1), int(high) + 1 - int(low)) if high else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port in TEST_PORTS={os.environ['TEST_PORTS']}")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stack:
    """Private Redis, uvicorn, a Celery worker and (optional) run_loops."""

    def __init__(self, database_url: str, logs: Path, *, loops: bool, tracemalloc: Path | None = None) -> None:
        self.logs, self.procs = logs, {}
        self.tracemalloc = tracemalloc
        self.redis_port, self.port = _free_port(), _free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
        self.env.update(
            DATABASE_URL=database_url,
            REDIS_URL=self.redis_url,
            RUN_LOOPS_IN_PROCESS="false",
            SIMULATOR_ENABLED="true" if loops else "false",
            SIMULATOR_TICK_INTERVAL="0.25",
            CELERY_TASK_ALWAYS_EAGER="false",
            RISK_MAX_ORDERS_PER_SECOND="0",
            THROTTLE_ORDERS="1000000/min",
            THROTTLE_USER="1000000/min",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        self.loops = loops

    def _spawn(self, name: str, cmd: list[str], **extra: str) -> None:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the process)
        if self.tracemalloc is not None and name != "redis":
            # Bench only: the process under tracemalloc, its growth written to <dir>/<name>.txt.
            wrapper = [sys.executable, str(ROOT / "bench" / "tracemalloc_run.py"), str(self.tracemalloc / f"{name}.txt")]
            cmd = cmd[1:] if cmd[0] == sys.executable else cmd  # the wrapper runs the script
            wrapper += ["--interval", os.environ.get("TRACEMALLOC_INTERVAL", "60"), "--start-file", str(self.tracemalloc / "start")]
            cmd = [*wrapper, "--", *cmd]
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **extra}, stdout=out, stderr=subprocess.STDOUT)

    def start_redis(self) -> None:
        self._spawn(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        )
        time.sleep(0.5)

    def start(self) -> None:
        import requests

        bin_dir = Path(sys.executable).parent
        web = [str(bin_dir / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(self.port)]
        web += ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets", "--lifespan", "off", "--no-access-log"]
        web += ["--limit-concurrency", "2000"]
        self._spawn("web", web, DB_POOL_MAX_SIZE="10")
        worker = [str(bin_dir / "celery"), "-A", "config", "worker", "--pool=solo", "--without-gossip", "--without-mingle", "-l", "WARNING"]
        self._spawn("worker", worker, DB_POOL_MAX_SIZE="2")
        if self.loops:
            schedule = str(self.logs / "beat-schedule")
            beat = [str(bin_dir / "celery"), "-A", "config", "beat", "-l", "WARNING", "--schedule", schedule]
            self._spawn("beat", [*beat, "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"], DB_POOL_MAX_SIZE="1")
            self._spawn("marketdata", [sys.executable, "manage.py", "run_loops"], DB_POOL_MAX_SIZE="6")
        deadline = time.monotonic() + 300  # a loaded machine starts slowly
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/api/v1/health/live", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.procs["web"].poll() is not None:
                raise RuntimeError((self.logs / "web.log").read_text()[-3000:])
            time.sleep(0.2)

    def rss(self) -> dict[str, float]:
        return {name: round(_rss_mb(p.pid), 1) for name, p in self.procs.items() if p.poll() is None}

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- load ---------------------------------------------------------------------------------------


async def _client(session, base: str, account_id: int, orders: int, tag: str, latencies: list, statuses: dict) -> list[str]:
    import aiohttp

    sent = []
    for n in range(orders):
        cid = f"{tag}-{account_id}-{n}"
        body = {"symbol": SYMBOL, "side": "buy", "order_type": "limit", "qty": "1", "price": "120.00", "client_order_id": cid}
        for _attempt in range(50):
            started = time.perf_counter()
            try:
                async with session.post(f"{base}/api/v1/accounts/{account_id}/orders", json=body) as response:
                    await response.read()
                    latencies.append(time.perf_counter() - started)
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if response.status == 202 or (response.status == 409 and statuses.get("connection_error")):
                        sent.append(cid)  # 409 after a reset: the first send of this client order id was accepted
                        break
                    if response.status >= 500 and response.status != 503:
                        raise RuntimeError(f"server error {response.status}")
                    retry_after = float(response.headers.get("Retry-After", "0.2"))
            except aiohttp.ClientError:
                # Refused or reset past uvicorn's --limit-concurrency: counted, retried
                # with the same client order id (a second send of it is refused).
                statuses["connection_error"] = statuses.get("connection_error", 0) + 1
                retry_after = 0.5
            await asyncio.sleep(retry_after)
    return sent


def _booked(cids: list[str]) -> int:
    from oms.models import Deal

    return Deal.objects.filter(order__client_order_id__in=cids, position__isnull=False).count()


def load_round(stack: Stack, key: str, accounts: list[int], orders: int) -> dict:
    import aiohttp

    tag = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    statuses: dict = {}

    async def run() -> list[str]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers={"X-API-Key": key}, connector=connector) as session:
            base = f"http://127.0.0.1:{stack.port}"
            results = await asyncio.gather(*[_client(session, base, a, orders, tag, latencies, statuses) for a in accounts])
        return [cid for sent in results for cid in sent]

    started = time.monotonic()
    cids = asyncio.run(run())
    posted = time.monotonic() - started
    booked, progress_at = 0, time.monotonic()
    while booked < len(cids):
        time.sleep(0.05)
        now_booked = _booked(cids)
        if now_booked > booked:
            booked, progress_at = now_booked, time.monotonic()
        elif time.monotonic() - progress_at > BOOK_STALL_TIMEOUT:
            raise RuntimeError(f"{len(cids) - booked} of {len(cids)} orders not booked: none booked for {BOOK_STALL_TIMEOUT}s")
    elapsed = time.monotonic() - started
    from brokers.paper.models import PaperOrder

    at_venue = PaperOrder.objects.filter(client_order_id__in=cids, status="filled").count()
    assert at_venue == len(cids), (at_venue, len(cids))
    errors = sum(v for k, v in statuses.items() if k != 202)
    statuses = {str(k): v for k, v in statuses.items()}
    return {
        "orders": len(cids),
        "orders_per_s": len(cids) / elapsed,
        "accepted_per_s": len(cids) / posted,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "error_rate": errors / max(1, sum(statuses.values())),
        "statuses": statuses,
    }


def run_load(stack: Stack, user, key: str, levels: list[int], rounds: int, orders: int) -> list[dict]:
    from brokers.services import broker_account_create

    out = []
    for level in levels:
        accounts = [
            broker_account_create(owner=user, kind="paper", label=f"load {level} {i} {uuid.uuid4().hex[:6]}").pk for i in range(level)
        ]
        results = [load_round(stack, key, accounts, orders) for _ in range(rounds)]
        statuses: dict[str, int] = {}
        for r in results:
            for k, v in r["statuses"].items():
                statuses[str(k)] = statuses.get(str(k), 0) + v
        row = {
            "clients": level,
            "orders_per_round": results[0]["orders"],
            "orders_per_s": round(statistics.median(r["orders_per_s"] for r in results), 1),
            "accepted_per_s": round(statistics.median(r["accepted_per_s"] for r in results), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 1),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in results), 1),
            "error_rate": round(statistics.median(r["error_rate"] for r in results), 4),
            "statuses": statuses,
            "loadavg_1m": round(os.getloadavg()[0], 2),  # the machine, shared with other work
        }
        assert "500" not in statuses
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


# --- soak ---------------------------------------------------------------------------------------


async def _soak(url: str, key: str, clients: int, seconds: float, ramp: float) -> dict:
    import websockets

    received, gaps, errors, closes, ages = 0, 0, 0, 0, []
    codes: Counter[str] = Counter()

    async def one(n: int) -> None:
        nonlocal received, gaps, errors, closes
        channel = f"quotes:{SOAK_SYMBOLS[n % len(SOAK_SYMBOLS)]}"
        try:
            async with websockets.connect(url, additional_headers={"X-API-Key": key}, open_timeout=60, max_queue=None) as ws:
                await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
                last_seq = None
                end = time.monotonic() + seconds
                while (left := end - time.monotonic()) > 0:
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
                    except TimeoutError:
                        break
                    kind = frame.get("type")
                    if kind == "ping":  # the gateway's heartbeat: unanswered, it closes the client
                        await ws.send(json.dumps({"op": "pong", "data": frame.get("data")}))
                    elif kind == "error":
                        errors += 1
                        codes[str(((frame.get("data") or {}).get("error") or {}).get("code"))] += 1
                    elif kind == "snapshot":
                        last_seq = frame.get("seq")
                    elif kind == "update":
                        received += 1
                        seq = frame.get("seq")
                        # Quotes are a latest-value channel (conflated): skipped seqs are by
                        # design; one going backwards would be an ordering bug.
                        if isinstance(seq, int) and isinstance(last_seq, int) and seq <= last_seq:
                            gaps += 1
                        last_seq = seq if isinstance(seq, int) else last_seq
                        sent_at = (frame.get("data") or {}).get("time")
                        if isinstance(sent_at, str):
                            ages.append(time.time() - datetime.fromisoformat(sent_at.replace("Z", "+00:00")).timestamp())
        except websockets.ConnectionClosed:
            closes += 1

    tasks = []
    waves = max(1, -(-clients // 10))
    for start in range(0, clients, 10):  # connect in waves of 10 over ramp seconds
        tasks += [asyncio.create_task(one(n)) for n in range(start, min(clients, start + 10))]
        await asyncio.sleep(ramp / waves)
    await asyncio.gather(*tasks)
    return {
        "updates_received": received,
        "seq_out_of_order": gaps,
        "error_frames": errors,
        "error_codes": dict(codes),
        "closed_early": closes,
        "p99_update_age_ms": round(_percentile(ages, 0.99) * 1000, 1),
    }


class RssSampler(threading.Thread):
    """Every process's RSS every ``interval`` seconds, from the soak's start."""

    def __init__(self, stack: Stack, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.stack, self.interval = stack, interval
        self.samples: list[dict] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def sample(self) -> None:
        self.samples.append({"t": round(time.monotonic() - self.started, 1), "rss_mb": self.stack.rss()})

    def run(self) -> None:
        self.sample()
        while not self.stop.wait(self.interval):
            self.sample()

    def finish(self) -> list[dict]:
        self.stop.set()
        self.join()
        self.sample()
        return self.samples


def _slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return float("nan")
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return float("nan")
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def rss_verdict(samples: list[dict], flat_mb_per_min: float) -> dict[str, dict]:
    """Per process: RSS at the start, the middle and the end, the peak, the
    growth over each half, and whether memory is flat after warm-up: the
    least-squares slope over the second half at most ``flat_mb_per_min``."""
    if not samples:
        return {}
    end_t = samples[-1]["t"]
    names = [n for n in samples[-1]["rss_mb"] if all(n in s["rss_mb"] for s in samples)]
    out = {}
    for name in names:
        series = [(s["t"], s["rss_mb"][name]) for s in samples]
        mid = min(series, key=lambda p: abs(p[0] - end_t / 2))
        first_half = [p for p in series if p[0] <= end_t / 2]
        second_half = [p for p in series if p[0] >= end_t / 2]
        slope = _slope_mb_per_min(second_half)
        out[name] = {
            "start": series[0][1],
            "mid": mid[1],
            "end": series[-1][1],
            "max": max(v for _, v in series),
            "growth_first_half_mb": round(mid[1] - series[0][1], 1),
            "growth_second_half_mb": round(series[-1][1] - mid[1], 1),
            "first_half_mb_per_min": round(_slope_mb_per_min(first_half), 2),
            "second_half_mb_per_min": round(slope, 2),
            "flat": bool(slope <= flat_mb_per_min),
        }
    return out


def run_soak(stack: Stack, key: str, clients: int, seconds: float, ramp: float, rss_interval: float, flat_mb_per_min: float) -> dict:
    time.sleep(3)  # the simulator's first ticks
    sampler = RssSampler(stack, rss_interval)
    sampler.start()
    if stack.tracemalloc is not None:
        # Tracing starts once the clients are connected and the first updates are through.
        threading.Timer(min(60.0, seconds / 4), (stack.tracemalloc / "start").touch).start()
    result = asyncio.run(_soak(f"ws://127.0.0.1:{stack.port}/api/v1/ws", key, clients, seconds, ramp))
    samples = sampler.finish()
    before, after = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    verdict = rss_verdict(samples, flat_mb_per_min)
    result |= {
        "clients": clients,
        "seconds": seconds,
        "ramp_seconds": ramp,
        "rss_mb_start": before,
        "rss_mb_end": after,
        "rss_growth_mb": {k: round(after[k] - before[k], 1) for k in after if k in before},
        "rss_flat_mb_per_min": flat_mb_per_min,
        "rss_verdict": verdict,
        "rss_all_flat": all(v["flat"] for v in verdict.values()),
        "rss_samples": samples,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="10,50,150")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=10, help="orders per client per round")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--soak-clients", type=int, default=100)
    parser.add_argument("--long", action="store_true", help="the long soak: 500 clients for 30 minutes")
    parser.add_argument("--ramp-seconds", type=float, default=60.0, help="the soak's clients connect in waves of 10 over this many seconds")
    parser.add_argument("--rss-interval", type=float, default=30.0, help="seconds between RSS samples in the soak")
    parser.add_argument(
        "--flat-mb-per-min", type=float, default=0.3, help="the most RSS growth over the soak's second half still called flat"
    )
    parser.add_argument(
        "--tracemalloc", metavar="DIR", help="run web, worker, beat and marketdata under tracemalloc; their growth to DIR/<name>.txt"
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    args = parser.parse_args()
    if args.long:
        args.soak_seconds, args.soak_clients = 1800.0, 500
    if shutil.which("redis-server") is None:
        sys.exit("load_bench needs redis-server on the PATH (a private one is started)")

    logs = Path(tempfile.mkdtemp(prefix="load-bench-"))
    database_url = bench_database_url(os.environ.get("LOAD_BENCH_DB", "terminal_bench_load"), program="load_bench")
    tracemalloc = Path(args.tracemalloc).resolve() if args.tracemalloc else None
    if tracemalloc is not None:
        tracemalloc.mkdir(parents=True, exist_ok=True)
        (tracemalloc / "start").unlink(missing_ok=True)
    stack = Stack(database_url, logs, loops=not args.skip_soak, tracemalloc=tracemalloc)
    stack.start_redis()
    # This process's cache (the quote the keeper writes) is the stack's Redis.
    os.environ["REDIS_URL"] = stack.redis_url
    try:
        bench_django_setup(os.environ.get("LOAD_BENCH_DB", "terminal_bench_load"), program="load_bench")
        _main(args, stack, logs)
    finally:
        stack.stop()


def _main(args: argparse.Namespace, stack: Stack, logs: Path) -> None:
    from decimal import Decimal

    from accounts.services import api_key_create, user_create
    from marketdata.services import instrument_upsert
    from marketdata.simulation import demo_instruments_ensure

    demo_instruments_ensure()
    instrument_upsert(symbol=SYMBOL, type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    user = user_create(email=f"load-{uuid.uuid4().hex[:8]}@example.com", password=uuid.uuid4().hex)
    key = api_key_create(user=user, name="load", scope="trade").key

    report: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "logs": str(logs), "loadavg_start": os.getloadavg()}
    stack.start()
    if not args.skip_load:
        from bench.order_e2e_bench import QuoteKeeper

        keeper = _quote_keeper(QuoteKeeper)
        report["load"] = run_load(stack, user, key, [int(x) for x in args.levels.split(",")], args.rounds, args.orders)
        keeper.stop.set()
    if not args.skip_soak:
        report["soak"] = run_soak(
            stack, key, args.soak_clients, args.soak_seconds, args.ramp_seconds, args.rss_interval, args.flat_mb_per_min
        )
    report["rss_mb_end"] = stack.rss()
    report["loadavg_end"] = os.getloadavg()
    out = ROOT / "bench" / "results" / "load.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _quote_keeper(keeper_class):  # type: ignore[no-untyped-def]
    """The e2e bench's keeper, quoting this bench's instrument in the private Redis."""
    import bench.order_e2e_bench as e2e

    e2e.SYMBOL = SYMBOL
    keeper = keeper_class()
    keeper.start()
    return keeper


if __name__ == "__main__":
    main()
