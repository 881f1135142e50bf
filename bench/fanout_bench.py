"""Fan-out benchmark: one quote update to 1, 100 and 1,000 subscribed WebSocket
clients on one daphne process with the Redis channel layer.

For each client count it measures publish-to-receipt latency (p50, p99) and
drops, through the real gateway (``/api/v1/ws``, ``quotes:<symbol>``) and,
side by side in the same run, through the floor: a bare Channels consumer
forwarding the same pre-encoded frames from the same group to the same clients.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/terminal_bench \\
    REDIS_URL=redis://127.0.0.1:6379/6 .venv/bin/python bench/fanout_bench.py

Traffic stays on 127.0.0.1; every loop is bounded. Writes bench/results/fanout.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

CLIENT_COUNTS = [int(n) for n in os.environ.get("FANOUT_CLIENTS", "1,100,1000").split(",")]
UPDATES = int(os.environ.get("FANOUT_UPDATES", "20"))
# Seconds between updates: at least the 50 ms coalescing window, and long
# enough for one fan-out to finish before the next (the latency of one update,
# not of a queue): 0.1 s plus 1.5 ms per client.
INTERVAL = float(os.environ.get("FANOUT_INTERVAL", "0.1"))
INTERVAL_PER_CLIENT = float(os.environ.get("FANOUT_INTERVAL_PER_CLIENT", "0.0015"))
SYMBOL = "BENCH:FANOUT"


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def setup_database() -> str:
    """Migrate, create the instrument and a trade key; return the key."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from accounts.services import api_key_create, user_create
    from marketdata.services import instrument_upsert

    instrument_upsert(symbol=SYMBOL, description="fan-out bench", type="stock")
    user = User.objects.filter(email="fanout@bench.local").first() or user_create(email="fanout@bench.local", password=None)
    return api_key_create(user=user, name="fanout bench", scope="read").key


def start_server(app: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "RUN_LOOPS_IN_PROCESS": "false",
        "SIMULATOR_ENABLED": "false",
        "WS_HEARTBEAT_INTERVAL": "600",
        "LOG_LEVEL": "WARNING",
        "CHANNEL_LAYER_CAPACITY": "5000",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), app],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile,
        )
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/health/live", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{app} did not start: {log.read_text()[-2000:]}")


async def run_case(url: str, clients: int, key: str | None, gateway: bool) -> dict:
    import websockets

    from streams.publish import apublish

    latencies: list[float] = []
    received = [0] * clients
    sockets = []
    headers = {"X-API-Key": key} if key else {}
    for start in range(0, clients, 100):  # connect in waves: bounded concurrency
        batch = await asyncio.gather(
            *[
                websockets.connect(url, additional_headers=headers, open_timeout=30, max_queue=None)
                for _ in range(start, min(clients, start + 100))
            ]
        )
        sockets.extend(batch)
    if gateway:
        for ws in sockets:
            await ws.recv()  # hello
            await ws.send(json.dumps({"op": "subscribe", "channel": f"quotes:{SYMBOL}"}))
        for ws in sockets:
            for _ in range(2):  # subscribed, snapshot
                await asyncio.wait_for(ws.recv(), 30)
    else:
        for ws in sockets:
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "ready"
    done = asyncio.Event()
    finished = [0]

    async def reader(index: int, ws) -> None:  # type: ignore[no-untyped-def]
        try:
            while received[index] < UPDATES:
                frame = json.loads(await ws.recv())
                if frame.get("type") != "update":
                    continue
                latencies.append(time.time() - frame["data"]["sent_at"])
                received[index] += 1
        except Exception:
            pass
        finally:
            finished[0] += 1
            if finished[0] == clients:
                done.set()

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(0.5)
    base_seq = int(time.time() * 1000)
    for n in range(UPDATES):
        await apublish(f"quotes:{SYMBOL}", base_seq + n + 1, {"symbol": SYMBOL, "last": str(100 + n), "sent_at": time.time()}, latest=True)
        await asyncio.sleep(INTERVAL + INTERVAL_PER_CLIENT * clients)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 20)
    for task in readers:
        task.cancel()
    await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
    expected = clients * UPDATES
    got = sum(received)
    return {
        "clients": clients,
        "updates": UPDATES,
        "received": got,
        "drops": expected - got,
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
    }


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("Set REDIS_URL (the benchmark measures the Redis channel layer).")
    _raise_nofile()
    key = setup_database()
    from tests.servers import free_port

    logs = ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    gateway_port, floor_port = free_port(), free_port()
    gateway = start_server("config.asgi:application", gateway_port, logs / "fanout-gateway.log")
    floor = start_server("bench.floor_asgi:application", floor_port, logs / "fanout-floor.log")
    results: dict = {"updates_per_case": UPDATES, "interval_s": INTERVAL, "interval_per_client_s": INTERVAL_PER_CLIENT, "cases": []}
    try:
        for clients in CLIENT_COUNTS:
            for name, url, auth, is_gateway in (
                ("gateway", f"ws://127.0.0.1:{gateway_port}/api/v1/ws", key, True),
                ("floor", f"ws://127.0.0.1:{floor_port}/floor", None, False),
            ):
                case = asyncio.run(run_case(url, clients, auth, is_gateway))
                case["server"] = name
                results["cases"].append(case)
                print(f"{name:8s} clients={clients:5d} p50={case['p50_ms']:8.2f} ms p99={case['p99_ms']:8.2f} ms drops={case['drops']}")
                time.sleep(1.0)
    finally:
        for proc in (gateway, floor):
            proc.terminate()
            proc.wait(timeout=10)
    by = {(c["server"], c["clients"]): c for c in results["cases"]}
    top = max(CLIENT_COUNTS)
    ratio = by[("gateway", top)]["p99_ms"] / by[("floor", top)]["p99_ms"] if by[("floor", top)]["p99_ms"] else None
    results["p99_ratio_gateway_to_floor_at_max_clients"] = round(ratio, 3) if ratio else None
    results["goal"] = {"p99_ratio_max": 1.5, "drops": 0}
    print(f"p99 ratio gateway/floor at {top} clients: {results['p99_ratio_gateway_to_floor_at_max_clients']} (goal <= 1.5)")
    (logs / "fanout.json").write_text(json.dumps(results, indent=2))
    print(f"written {logs / 'fanout.json'}")


if __name__ == "__main__":
    main()
