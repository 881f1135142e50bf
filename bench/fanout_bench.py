"""Fan-out benchmark: quote updates to 1, 100 and 1,000 subscribed WebSocket
clients, side by side in one run, on three servers:

- ``gateway``: the real gateway (``/api/v1/ws``, ``quotes:<symbol>``) as the
  Procfile runs it (uvicorn, uvloop, httptools, websockets; one worker), with
  the Redis channel layer: one group subscription per process (the hub);
- ``channels_bare`` (the "before" figure): a bare Channels consumer per client,
  each in the group, so one channel-layer message and one handler per client;
- ``floor``: no framework: one Redis pub/sub subscriber writing the same
  pre-encoded frames to the same sockets (``bench/fanout_floor.py``).

The clients run in a separate process from the publisher (this one). For each
server and client count, several rounds of updates: p50/p99 publish-to-receipt
latency (the median over rounds), server CPU per frame (the server process's
CPU time during the round / frames delivered) and drops.

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
ROUNDS = int(os.environ.get("FANOUT_ROUNDS", "3"))
UPDATES = int(os.environ.get("FANOUT_UPDATES", "10"))
# Seconds between updates: more than the 50 ms coalescing window, and long
# enough for one fan-out to finish before the next (the latency of one update,
# not of a queue): 0.1 s plus 1 ms per client.
INTERVAL = float(os.environ.get("FANOUT_INTERVAL", "0.1"))
INTERVAL_PER_CLIENT = float(os.environ.get("FANOUT_INTERVAL_PER_CLIENT", "0.001"))
SYMBOL = "BENCH:FANOUT"
CHANNEL = f"quotes:{SYMBOL}"
FLOOR_CHANNEL = "bench:fanout:floor"
GOALS = {"p99_ratio_max": 1.3, "cpu_per_frame_ratio_max": 1.5, "drops": 0}
# The Procfile's web process, one worker.
UVICORN = ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets", "--lifespan", "off", "--no-access-log"]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the clients' process -------------------------------------------------------------------------


async def clients_main(kind: str, url: str, count: int, key: str) -> None:
    import websockets

    headers = {"X-API-Key": key} if kind == "gateway" else {}
    sockets = []
    for start in range(0, count, 100):  # connect in waves: bounded concurrency
        sockets.extend(
            await asyncio.gather(
                *[
                    websockets.connect(url, additional_headers=headers, open_timeout=60, max_queue=None, ping_interval=None)
                    for _ in range(start, min(count, start + 100))
                ]
            )
        )
    for ws in sockets:
        if kind == "gateway":
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"op": "subscribe", "channel": CHANNEL}))
            for _ in range(2):  # subscribed, snapshot
                await asyncio.wait_for(ws.recv(), 60)
        else:
            assert json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] == "ready"
    latencies: dict[int, list[float]] = {}
    received: dict[int, int] = {}

    async def reader(ws) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):
            async for text in ws:
                now = time.time()
                frame = json.loads(text)
                if frame.get("type") != "update":
                    continue
                data = frame["data"]
                latencies.setdefault(data["round"], []).append(now - data["sent_at"])
                received[data["round"]] = received.get(data["round"], 0) + 1

    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    for task in readers:
        task.cancel()
    await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
    print(json.dumps({"latencies": latencies, "received": received}), flush=True)


# --- the publisher (this process) ---------------------------------------------------------------


def setup_database() -> str:
    """Migrate, create the instrument and a read key; return the key."""
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


def start_server(kind: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "RUN_LOOPS_IN_PROCESS": "false",
        "SIMULATOR_ENABLED": "false",
        "WS_HEARTBEAT_INTERVAL": "600",
        "LOG_LEVEL": "WARNING",
        "CHANNEL_LAYER_CAPACITY": "5000",
        "DB_POOL_MAX_SIZE": "10",
    }
    bin_dir = Path(sys.executable).parent
    if kind == "floor":
        command = [sys.executable, str(ROOT / "bench" / "fanout_floor.py"), str(port), os.environ["REDIS_URL"], FLOOR_CHANNEL]
    else:
        app = "config.asgi:application" if kind == "gateway" else "bench.floor_asgi:application"
        command = [str(bin_dir / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), *UVICORN]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_raise_nofile)
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            time.sleep(0.5)
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{kind} did not start: {log.read_text()[-2000:]}")


async def publish_rounds(kind: str, clients: int, server_pid: int) -> list[dict]:
    import redis.asyncio as redis
    from channels.layers import get_channel_layer

    from streams.publish import build_event, group_for

    layer = get_channel_layer()
    floor_redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    pause = INTERVAL + INTERVAL_PER_CLIENT * clients
    rounds = []
    seq = int(time.time() * 1000)
    for number in range(ROUNDS):
        cpu_before = _cpu_seconds(server_pid)
        for _ in range(UPDATES):
            seq += 1
            event = build_event(
                CHANNEL, seq, {"symbol": SYMBOL, "last": str(seq % 1000), "round": number, "sent_at": time.time()}, latest=True
            )
            if kind == "floor":
                await floor_redis.publish(FLOOR_CHANNEL, event["frame"])
            else:
                await layer.group_send(group_for(CHANNEL), event)
            await asyncio.sleep(pause)
        await asyncio.sleep(0.5)
        rounds.append({"round": number, "cpu_s": _cpu_seconds(server_pid) - cpu_before})
    await floor_redis.aclose()
    return rounds


def run_case(kind: str, url: str, clients: int, key: str, server_pid: int) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--clients", kind, url, str(clients), key],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_raise_nofile,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"clients did not connect: {line!r}")
        time.sleep(0.5)
        rounds = asyncio.run(publish_rounds(kind, clients, server_pid))
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        measured = json.loads(proc.stdout.readline())
    finally:
        with contextlib.suppress(Exception):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
    per_round = []
    for r in rounds:
        lat = measured["latencies"].get(str(r["round"]), [])
        got = measured["received"].get(str(r["round"]), 0)
        per_round.append(
            {
                "p50_ms": _percentile(lat, 0.5) * 1000,
                "p99_ms": _percentile(lat, 0.99) * 1000,
                "received": got,
                "drops": clients * UPDATES - got,
                "cpu_us_per_frame": r["cpu_s"] / got * 1e6 if got else float("nan"),
            }
        )
    return {
        "server": kind,
        "clients": clients,
        "rounds": ROUNDS,
        "updates_per_round": UPDATES,
        "p50_ms": round(statistics.median(r["p50_ms"] for r in per_round), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in per_round), 3),
        "cpu_us_per_frame": round(statistics.median(r["cpu_us_per_frame"] for r in per_round), 2),
        "drops": sum(r["drops"] for r in per_round),
        "per_round": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in per_round],
    }


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("Set REDIS_URL (the benchmark measures the Redis channel layer).")
    _raise_nofile()
    key = setup_database()
    from tests.servers import free_port

    logs = ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    ports = {kind: free_port() for kind in ("gateway", "channels_bare", "floor")}
    urls = {
        "gateway": f"ws://127.0.0.1:{ports['gateway']}/api/v1/ws",
        "channels_bare": f"ws://127.0.0.1:{ports['channels_bare']}/floor",
        "floor": f"ws://127.0.0.1:{ports['floor']}/",
    }
    servers = {kind: start_server(kind, port, logs / f"fanout-{kind}.log") for kind, port in ports.items()}
    results: dict = {
        "server_setup": "uvicorn " + " ".join(UVICORN) + " (the Procfile's web process, one worker); Redis channel layer",
        "rounds": ROUNDS,
        "updates_per_round": UPDATES,
        "interval_s": INTERVAL,
        "interval_per_client_s": INTERVAL_PER_CLIENT,
        "goals": GOALS,
        "cases": [],
    }
    try:
        for clients in CLIENT_COUNTS:
            for kind in ("floor", "gateway", "channels_bare"):
                case = run_case(kind, urls[kind], clients, key, servers[kind].pid)
                results["cases"].append(case)
                print(
                    f"{kind:13s} clients={clients:5d} p50={case['p50_ms']:8.2f} ms p99={case['p99_ms']:8.2f} ms "
                    f"cpu/frame={case['cpu_us_per_frame']:7.2f} us drops={case['drops']}",
                    flush=True,
                )
                time.sleep(1.0)
    finally:
        for proc in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    by = {(c["server"], c["clients"]): c for c in results["cases"]}
    summary = {}
    for clients in CLIENT_COUNTS:
        floor, gateway = by[("floor", clients)], by[("gateway", clients)]
        summary[str(clients)] = {
            "p99_ratio_gateway_to_floor": round(gateway["p99_ms"] / floor["p99_ms"], 3) if floor["p99_ms"] else None,
            "cpu_ratio_gateway_to_floor": round(gateway["cpu_us_per_frame"] / floor["cpu_us_per_frame"], 3)
            if floor["cpu_us_per_frame"]
            else None,
            "cpu_ratio_before_to_floor": round(by[("channels_bare", clients)]["cpu_us_per_frame"] / floor["cpu_us_per_frame"], 3)
            if floor["cpu_us_per_frame"]
            else None,
            "gateway_drops": gateway["drops"],
        }
        print(f"clients={clients:5d} gateway/floor: {summary[str(clients)]}")
    results["ratios"] = summary
    top = str(max(CLIENT_COUNTS))
    results["goals_met"] = {
        "p99": summary[top]["p99_ratio_gateway_to_floor"] is not None
        and summary[top]["p99_ratio_gateway_to_floor"] <= GOALS["p99_ratio_max"],
        "cpu_per_frame": summary[top]["cpu_ratio_gateway_to_floor"] is not None
        and summary[top]["cpu_ratio_gateway_to_floor"] <= GOALS["cpu_per_frame_ratio_max"],
        "drops": summary[top]["gateway_drops"] == 0,
    }
    print(f"goals at {top} clients (p99 <= 1.3x floor, cpu/frame <= 1.5x floor, 0 drops): {results['goals_met']}")
    (logs / "fanout.json").write_text(json.dumps(results, indent=2))
    print(f"written {logs / 'fanout.json'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        _raise_nofile()
        asyncio.run(clients_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
    else:
        main()
